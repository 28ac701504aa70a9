//! `estafette-pki verify FILE`: says in plain words whether a certificate,
//! envelope, evidence, message, assertion or trust list is valid, and why not.

use estafette_spec::assertion::AssertionPolicy;
use estafette_spec::bundle::ProofBundle;
use estafette_spec::cose::ObjectKind;
use estafette_spec::evidence::EvidenceEvent;
use estafette_spec::receipt::{CheckpointCache, SignedCheckpoint, verify_cosignatures};
use estafette_spec::{
    Envelope, Evidence, IdentityAssertion, IdentityClaims, LevelOfAssurance, SignedMessage,
    Timestamp, TrustList,
};
use rustls::client::danger::ServerCertVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::{Federation, PkiError, tls};

/// The verdict on one file.
#[derive(Debug, Clone)]
pub struct Explanation {
    pub valid: bool,
    /// What the object is.
    pub what: String,
    /// Facts found, one per line.
    pub facts: Vec<String>,
    /// Why it is not valid (when it is not).
    pub problem: Option<String>,
}

impl std::fmt::Display for Explanation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verdict = if self.valid { "VALID" } else { "NOT VALID" };
        writeln!(f, "{verdict}: {}", self.what)?;
        for fact in &self.facts {
            writeln!(f, "  - {fact}")?;
        }
        if let Some(problem) = &self.problem {
            writeln!(f, "  Why not: {problem}")?;
        }
        Ok(())
    }
}

/// Explains `bytes` (a PEM certificate or a COSE object) against the
/// federation's root, CRL and trust list, at time `now`.
pub fn explain(fed: &Federation, bytes: &[u8], now: Timestamp) -> Result<Explanation, PkiError> {
    if bytes.starts_with(b"-----BEGIN CERTIFICATE-----") {
        return explain_certificate(fed, bytes, now);
    }
    let root = fed.root_public_key()?;
    // A trust list is verified with the root key alone.
    if let Some(ObjectKind::TrustList) = peek_kind(bytes) {
        return Ok(explain_trust_list(bytes, &root, now));
    }
    // So is a proof bundle: it carries the trust list it verifies against.
    if let Ok(bundle) = ProofBundle::decode(bytes) {
        return Ok(explain_bundle(&bundle, &root, now));
    }
    let trust = fed.trust_list(now)?;
    if Evidence::split(bytes).is_ok() {
        return Ok(explain_evidence(bytes, &trust));
    }
    if SignedCheckpoint::parse(bytes).is_ok() {
        return Ok(explain_checkpoint(bytes, &trust));
    }
    Ok(match peek_kind(bytes) {
        Some(ObjectKind::Message) => explain_message(bytes, &trust),
        Some(ObjectKind::Envelope) => explain_envelope(bytes, &trust, now),
        Some(ObjectKind::Attestation) => explain_attestation(bytes, &trust, now),
        Some(ObjectKind::Assertion) => explain_assertion(bytes, &trust, now),
        Some(ObjectKind::TrustList) | None => invalid(
            "file",
            "this is neither a PEM certificate, evidence, a checkpoint nor a COSE object of a known kind",
        ),
    })
}

/// What an event proves, in words a recipient or a judge reads.
pub fn event_meaning(event: EvidenceEvent) -> &'static str {
    match event {
        EvidenceEvent::SubmissionAcceptance => {
            "sent: the gateway accepted the letter from the agency"
        }
        EvidenceEvent::SubmissionRejection => "not sent: the gateway refused the agency's letter",
        EvidenceEvent::RelayAcceptance => {
            "on its way: a relay node stored the letter and took responsibility for it"
        }
        EvidenceEvent::RelayRejection => "a relay node refused the letter",
        EvidenceEvent::RelayFailure => "a relay node gave up forwarding the letter",
        EvidenceEvent::ContentConsignment => {
            "delivered: the letter was put in the recipient's inbox"
        }
        EvidenceEvent::ConsignmentNotification => {
            "notified: the recipient was told a letter is waiting"
        }
        EvidenceEvent::ConsignmentNotificationFailure => "the recipient could not be notified",
        EvidenceEvent::ContentHandover => "opened: the letter was opened",
        EvidenceEvent::PaperFallback => "on paper: the letter was (also) sent by post",
        EvidenceEvent::PaperFailure => "not on paper: no postal address is known",
    }
}

/// A proof bundle: the trust list with the root key as of `now` (use the
/// time the evidence was made when the federation has changed since),
/// every receipt against it, the chain, one message.
fn explain_bundle(
    bundle: &ProofBundle,
    root: &ed25519_dalek::VerifyingKey,
    now: Timestamp,
) -> Explanation {
    let what = format!("proof bundle of message {}", bundle.message_id);
    let (trust, chain) = match bundle.verify(root, now) {
        Ok(verified) => verified,
        Err(e) => return invalid(&what, e),
    };
    let mut facts = vec![format!(
        "carries trust list version {}, signed by this federation's root key",
        trust.content().version
    )];
    for (step, v) in chain.iter().enumerate() {
        let r = &v.record;
        let mut fact = format!(
            "{}. {} — {:?} by {} at {}; {}",
            step + 1,
            event_meaning(r.event),
            r.event,
            r.issuer,
            r.issued_at,
            log_place(&v.log)
        );
        if let Some(reason) = r.reason {
            fact.push_str(&format!("; reason: {}", reason.code()));
        }
        if let Some(actor) = &r.actor {
            fact.push_str(&format!("; opened by: {:?}", actor.role));
        }
        facts.push(fact);
    }
    facts.push(format!(
        "{} records, each linked to a record before it (the first to none), all of this one letter",
        chain.len()
    ));
    valid(what, facts)
}

fn valid(what: String, facts: Vec<String>) -> Explanation {
    Explanation {
        valid: true,
        what,
        facts,
        problem: None,
    }
}

fn explain_trust_list(
    bytes: &[u8],
    root: &ed25519_dalek::VerifyingKey,
    now: Timestamp,
) -> Explanation {
    let t = match TrustList::verify(bytes, root, now) {
        Ok(t) => t,
        Err(e) => return invalid("trust list", e),
    };
    let c = t.content();
    let gateway = c
        .gateway
        .as_ref()
        .map(|g| g.id.to_string())
        .unwrap_or_else(|| "none".into());
    valid(
        format!("trust list version {}", c.version),
        vec![
            "signed by this federation's root key".into(),
            format!("issued {}, next update due {}", c.issued_at, c.next_update),
            format!(
                "{} node(s), gateway {gateway}, {} agency(ies), {} identity provider(s), {} court registry(ies), {} revocation(s)",
                c.nodes.len(),
                c.agencies.len(),
                c.identity_providers.len(),
                c.court_registries.len(),
                c.revoked.len()
            ),
        ],
    )
}

fn explain_message(bytes: &[u8], trust: &TrustList) -> Explanation {
    let m = match SignedMessage::verify(bytes, trust) {
        Ok(m) => m,
        Err(e) => return invalid("signed message", e),
    };
    let agency = trust
        .agency(&m.letter.sender)
        .map(|a| a.name.as_str())
        .unwrap_or("?");
    valid(
        format!("signed message {}", m.letter.message_id),
        vec![
            format!("sealed by agency {} ({agency})", m.letter.sender),
            format!(
                "created {}, nature {:?}",
                m.letter.created_at, m.letter.nature
            ),
            format!(
                "{} attachment(s); SHA-256 {}",
                m.letter.attachments.len(),
                m.digest
            ),
        ],
    )
}

fn explain_envelope(bytes: &[u8], trust: &TrustList, now: Timestamp) -> Explanation {
    let v = match Envelope::verify(bytes, trust, now) {
        Ok(v) => v,
        Err(e) => return invalid("envelope", e),
    };
    let h = &v.content.header;
    valid(
        format!("envelope {}", h.envelope_id),
        vec![
            "signed by the gateway".into(),
            format!("for home node {}, inbox {}", h.home_node, h.inbox_id),
            format!(
                "hop limit {}, created {}, expires {}",
                h.hop_limit, h.created_at, h.expires_at
            ),
            "the letter inside is sealed to the home node; it cannot be read here".into(),
        ],
    )
}

fn explain_evidence(bytes: &[u8], trust: &TrustList) -> Explanation {
    let v = match Evidence::verify(bytes, trust) {
        Ok(v) => v,
        Err(e) => return invalid("evidence", e),
    };
    let r = &v.record;
    let mut facts = vec![
        format!("made by {} at {}", r.issuer, r.issued_at),
        log_place(&v.log),
        match (r.message_id, r.message_digest) {
            (Some(id), Some(digest)) => format!("for message {id} (SHA-256 {digest})"),
            _ => "about an offer that could not be read".into(),
        },
    ];
    if let Some(reason) = r.reason {
        facts.push(format!("reason: {}", reason.code()));
    }
    if let Some(actor) = &r.actor {
        facts.push(format!("opened by: {:?}", actor.role));
    }
    match r.previous {
        Some(p) => facts.push(format!("follows evidence with SHA-256 {p}")),
        None => facts.push("first evidence of its message".into()),
    }
    valid(format!("evidence {:?}", r.event), facts)
}

/// Where a record is, in words: the receipt's proof and checkpoint.
pub fn log_place(place: &estafette_spec::evidence::LogPlace) -> String {
    let witnesses = if place.witnesses.is_empty() {
        "no witness cosignature yet".to_owned()
    } else {
        let names: Vec<String> = place.witnesses.iter().map(|w| w.to_string()).collect();
        format!("cosigned by {}", names.join(", "))
    };
    format!(
        "record {} of {} in evidence log {}, proven by a checkpoint signed at {} ({witnesses})",
        place.leaf_index + 1,
        place.tree_size,
        place.origin,
        place.checkpoint_at
    )
}

fn explain_checkpoint(bytes: &[u8], trust: &TrustList) -> Explanation {
    let checked = SignedCheckpoint::parse(bytes).and_then(|(signed, cosignatures)| {
        let log = signed.verify(trust, &CheckpointCache::new())?;
        let witnesses = verify_cosignatures(&signed.checkpoint, &cosignatures, log, trust)?;
        Ok((signed, log.id.clone(), witnesses))
    });
    let (signed, owner, witnesses) = match checked {
        Ok(c) => c,
        Err(e) => return invalid("evidence log checkpoint", e),
    };
    let c = &signed.checkpoint;
    let mut facts = vec![
        format!("signed by {owner} at {}", c.issued_at),
        format!(
            "{} record(s), root {}",
            c.tree_size,
            estafette_spec::bytes::Hex(&c.root)
        ),
    ];
    facts.push(if witnesses.is_empty() {
        "no witness cosignature".into()
    } else {
        let names: Vec<String> = witnesses.iter().map(|w| w.to_string()).collect();
        format!("cosigned by {}", names.join(", "))
    });
    valid(format!("checkpoint of evidence log {}", c.origin), facts)
}

fn explain_attestation(bytes: &[u8], trust: &TrustList, now: Timestamp) -> Explanation {
    let a = match estafette_spec::mandate::Attestation::verify(bytes, trust, now) {
        Ok(a) => a,
        Err(e) => return invalid("attestation", e),
    };
    let c = &a.content;
    let until = c
        .valid_until
        .map(|u| format!(" until {u}"))
        .unwrap_or_default();
    valid(
        "attestation of legal representation".into(),
        vec![
            format!("signed by court registry {}", c.registry),
            format!(
                "{:?}, case {}, for {}",
                c.kind,
                c.case_reference,
                c.representative.label()
            ),
            format!("from {}{until}", c.valid_from),
        ],
    )
}

/// Checked for the audience it names: the verifier here is not that node.
fn explain_assertion(bytes: &[u8], trust: &TrustList, now: Timestamp) -> Explanation {
    let Some(audience) = peek_claims(bytes).map(|c| c.audience) else {
        return invalid("identity assertion", "its content cannot be read");
    };
    let policy = AssertionPolicy {
        audience: audience.clone(),
        min_level: LevelOfAssurance::Low,
        now,
    };
    match IdentityAssertion::verify(bytes, trust, &policy) {
        Ok(a) => valid(
            "identity assertion".into(),
            vec![
                format!("signed by identity provider {}", a.claims.issuer),
                format!("level of assurance {:?}", a.claims.level_of_assurance),
                format!(
                    "for audience {audience}, valid until {}",
                    a.claims.expires_at
                ),
                "the nonce is single use: the audience refuses a second use".into(),
            ],
        ),
        Err(e) => invalid("identity assertion", e),
    }
}

fn invalid(what: &str, problem: impl std::fmt::Display) -> Explanation {
    Explanation {
        valid: false,
        what: what.into(),
        facts: vec![],
        problem: Some(problem.to_string()),
    }
}

/// The kind named by a COSE object's content type, without verifying it.
fn peek_kind(bytes: &[u8]) -> Option<ObjectKind> {
    ObjectKind::ALL.into_iter().find(|kind| {
        match estafette_spec::cose::UnverifiedSign1::parse(bytes, *kind) {
            Ok(_) => true,
            Err(e) => {
                !matches!(e, estafette_spec::cose::CoseError::WrongKind { .. })
                    && !matches!(e, estafette_spec::cose::CoseError::Cbor(_))
                    && !matches!(e, estafette_spec::cose::CoseError::Structure(_))
            }
        }
    })
}

fn peek_claims(bytes: &[u8]) -> Option<IdentityClaims> {
    use coset::{CborSerializable, TaggedCborSerializable};
    let sign1 = coset::CoseSign1::from_tagged_slice(bytes)
        .or_else(|_| coset::CoseSign1::from_slice(bytes))
        .ok()?;
    estafette_spec::cbor::from_slice(
        sign1.payload.as_deref()?,
        estafette_spec::limits::MAX_ASSERTION_BYTES,
    )
    .ok()
}

fn explain_certificate(
    fed: &Federation,
    pem: &[u8],
    now: Timestamp,
) -> Result<Explanation, PkiError> {
    let cert = match CertificateDer::from_pem_slice(pem) {
        Ok(c) => c,
        Err(e) => {
            return Ok(invalid(
                "certificate",
                format!("not a PEM certificate: {e}"),
            ));
        }
    };
    let facts = match tls::facts(&cert) {
        Ok(f) => f,
        Err(e) => return Ok(invalid("certificate", e)),
    };
    let root = tls::load_certs(&fed.root_cert_path())?.remove(0);
    let crl = tls::load_crl(&fed.crl_path())?;
    let mut lines = vec![
        format!("subject: {}", facts.subject),
        format!("serial number: {}", facts.serial_hex),
        format!(
            "valid from {} to {}",
            Timestamp(facts.not_before.max(0) as u64),
            Timestamp(facts.not_after.max(0) as u64)
        ),
    ];
    if facts.is_ca {
        let valid = cert.as_ref() == root.as_ref();
        return Ok(Explanation {
            valid,
            what: "root CA certificate".into(),
            facts: lines,
            problem: (!valid)
                .then(|| "this is a CA certificate, but not this federation's root".into()),
        });
    }
    let unix = UnixTime::since_unix_epoch(std::time::Duration::from_secs(now.0));
    // A node certificate names its node id; an agency certificate its OIN.
    let (what, result) = if let Ok(node) = tls::node_id(&cert) {
        lines.push(format!("node id: {node}"));
        let verifier = tls::server_verifier(&root, vec![crl])?;
        let name = ServerName::try_from(node.as_str().to_owned())
            .map_err(|e| PkiError::Certificate(e.to_string()))?;
        (
            format!("node certificate of {node}"),
            verifier
                .verify_server_cert(&cert, &[], &name, &[], unix)
                .map(|_| ()),
        )
    } else if let Ok(oin) = tls::agency_oin(&cert) {
        lines.push(format!("agency OIN: {oin}"));
        let verifier = tls::client_verifier(&root, vec![crl])?;
        (
            format!("agency certificate of {oin}"),
            verifier.verify_client_cert(&cert, &[], unix).map(|_| ()),
        )
    } else {
        return Ok(invalid(
            "certificate",
            "it names neither a node id (DNS subjectAltName) nor an OIN (subject serialNumber)",
        ));
    };
    Ok(match result {
        Ok(()) => Explanation {
            valid: true,
            what,
            facts: {
                lines.push(
                    "issued by this federation's root, not revoked, within its validity".into(),
                );
                lines
            },
            problem: None,
        },
        Err(e) => Explanation {
            valid: false,
            what,
            facts: lines,
            problem: Some(plain_tls_error(&e)),
        },
    })
}

fn plain_tls_error(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(C::Revoked) => {
            "it is revoked: its serial number is on the federation's CRL".into()
        }
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => {
            "it was not issued by this federation's root".into()
        }
        rustls::Error::InvalidCertificate(C::BadSignature) => {
            "its signature does not verify".into()
        }
        rustls::Error::InvalidCertificate(C::Expired) => "it has expired".into(),
        rustls::Error::InvalidCertificate(C::NotValidYet) => "it is not valid yet".into(),
        other => other.to_string(),
    }
}
