//! The test vectors in `spec/vectors/`: regenerated here from the fixed-seed
//! fixtures, compared byte for byte with the committed files, and each one
//! checked against its expected outcome.
//!
//! After an intended format change: `ESTAFETTE_BLESS_VECTORS=1 cargo test -p
//! estafette-spec --test vectors`, then commit the files with the change.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use coset::{CborSerializable, CoseSign1, TaggedCborSerializable};
use estafette_spec::assertion::AssertionPolicy;
use estafette_spec::bundle::{BUNDLE_MEDIA_TYPE, ProofBundle};
use estafette_spec::cose::ObjectKind;
use estafette_spec::fixtures::{self, FixedRng, T0};
use estafette_spec::memory_log::MemoryLog;
use estafette_spec::*;
use serde_json::json;

type Files = BTreeMap<String, Vec<u8>>;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("vectors")
}

fn letter() -> Letter {
    Letter {
        message_id: MessageId::from_bytes(*b"vector-message-1"),
        sender: fixtures::AGENCY_OIN.parse().unwrap(),
        recipient: "bsn:999999990".parse().unwrap(),
        created_at: T0,
        subject: "Voorlopige aanslag 2027".into(),
        body: "Geachte heer, mevrouw,\n\nU ontvangt hierbij uw voorlopige aanslag.".into(),
        attachments: vec![Attachment {
            name: "aanslag.txt".into(),
            media_type: "text/plain".into(),
            content: b"Te betalen: EUR 120,00".to_vec(),
        }],
        nature: Nature::Decision,
        legal_effect: true,
        expected_action: "Betaal EUR 120,00 voor 1 maart 2027.".into(),
        response_deadline: Some(T0.plus_s(59 * 86_400)),
        language: "nl".into(),
        sender_reference: "VA-2027-000123".into(),
    }
}

fn header(message: &[u8]) -> RoutingHeader {
    RoutingHeader {
        envelope_id: EnvelopeId::from_bytes(*b"vector-envelope1"),
        home_node: fixtures::home_id(),
        inbox_id: InboxId::from_bytes(*b"vector-inbox-001"),
        message_id: letter().message_id,
        message_digest: Digest::of(message),
        hop_limit: 8,
        created_at: T0,
        expires_at: T0.plus_s(7 * 86_400),
    }
}

/// The entries of home-1.test's log in the receipt vectors: five evidence
/// records, the third the ContentConsignment of the vector letter.
fn log_entries(message: &[u8], envelope: &[u8], previous: &[u8], prefix: u8) -> Vec<Vec<u8>> {
    (0..5u8)
        .map(|i| {
            let n = if i == 2 { 3 } else { prefix + i };
            cbor::to_vec(&evidence(
                n,
                EvidenceEvent::ContentConsignment,
                fixtures::home_id(),
                message,
                envelope,
                Some(previous),
            ))
        })
        .collect()
}

const RECEIPT_ENTRY: &str = "log-record.cbor";

/// The receipt vectors: which file, what it verifies to, what it is.
const RECEIPT_VECTORS: &[(&str, &str, &str)] = &[
    (
        "receipt.cose",
        "valid",
        "COSE Receipt of log-record.cbor: leaf 2 of home-1.test's log of 5, cosigned by gateway.test and relay-a.test.",
    ),
    (
        "invalid-receipt-wrong-proof.cose",
        "bad_signature",
        "receipt.cose with one byte of the inclusion path changed: the root it gives is not the signed one.",
    ),
    (
        "invalid-receipt-wrong-size.cose",
        "wrong_tree_size",
        "receipt.cose whose inclusion proof claims a tree of 4 records; the checkpoint signs 5.",
    ),
];

/// Makes the receipt and checkpoint files; gives the consistency proof from
/// checkpoint-3.cose to checkpoint.cose, in hex.
fn receipt_vectors(
    files: &mut Files,
    message: &[u8],
    envelope: &[u8],
    previous: &[u8],
) -> Vec<String> {
    use estafette_spec::merkle;
    use estafette_spec::receipt::*;
    let home = fixtures::key(fixtures::HOME);
    let entries = log_entries(message, envelope, previous, 10);
    let leaves: Vec<merkle::Hash> = entries.iter().map(|e| merkle::leaf_hash(e)).collect();
    let checkpoint = |leaves: &[merkle::Hash], at: u64| Checkpoint {
        origin: fixtures::HOME.into(),
        tree_size: leaves.len() as u64,
        root: merkle::root(leaves),
        issued_at: T0.plus_s(at),
    };
    let at5 = checkpoint(&leaves, 6);
    let cosignatures: Vec<Cosignature> = [fixtures::GATEWAY, fixtures::RELAY]
        .into_iter()
        .map(|w| Cosignature::sign(&at5, T0.0 + 7, &fixtures::key(w)))
        .collect();
    let signed = SignedCheckpoint::sign(at5, &home);
    let receipt = |tree_size, path: Vec<merkle::Hash>| {
        Receipt {
            checkpoint: signed.clone(),
            proof: InclusionProof {
                tree_size,
                leaf_index: 2,
                path,
            },
            cosignatures: cosignatures.clone(),
        }
        .encode()
    };
    let path = merkle::inclusion_proof(2, &leaves).unwrap();
    let mut wrong = path.clone();
    wrong[0][31] ^= 1;
    files.insert(RECEIPT_ENTRY.into(), entries[2].clone());
    files.insert("receipt.cose".into(), receipt(5, path.clone()));
    files.insert("invalid-receipt-wrong-proof.cose".into(), receipt(5, wrong));
    files.insert("invalid-receipt-wrong-size.cose".into(), receipt(4, path));
    files.insert("checkpoint.cose".into(), signed.to_cose(&cosignatures));
    let at3 = SignedCheckpoint::sign(checkpoint(&leaves[..3], 4), &home);
    files.insert("checkpoint-3.cose".into(), at3.to_cose(&[]));
    let forked = log_entries(message, envelope, previous, 20);
    let forked: Vec<merkle::Hash> = forked.iter().map(|e| merkle::leaf_hash(e)).collect();
    let forked = SignedCheckpoint::sign(checkpoint(&forked, 6), &home);
    files.insert("invalid-checkpoint-forked.cose".into(), forked.to_cose(&[]));
    let proof = merkle::consistency_proof(3, &leaves).unwrap();
    files.insert(
        "frame-add-checkpoint.cbor".into(),
        relay::encode(&relay::Request::AddCheckpoint(relay::AddCheckpoint {
            old_size: 3,
            consistency: proof.iter().map(|h| Digest(*h)).collect(),
            checkpoint: signed.to_cose(&[]),
        })),
    );
    proof.iter().map(hex::encode).collect()
}

fn evidence(
    n: u8,
    event: EvidenceEvent,
    issuer: NodeId,
    message: &[u8],
    envelope: &[u8],
    previous: Option<&[u8]>,
) -> EvidenceRecord {
    EvidenceRecord {
        evidence_id: EvidenceId::from_bytes([n; 16]),
        event,
        envelope_id: Some(header(message).envelope_id),
        message_id: Some(letter().message_id),
        message_digest: Some(Digest::of(message)),
        envelope_digest: event.is_relay_event().then(|| Digest::of(envelope)),
        issuer,
        issued_at: T0.plus_s(u64::from(n)),
        reason: None,
        actor: None,
        previous: previous.map(|p| Evidence::chain_digest(p).unwrap()),
    }
}

fn claims() -> IdentityClaims {
    IdentityClaims {
        issuer: fixtures::NATIONAL_IDP.parse().unwrap(),
        subject: "bsn:999999990".parse().unwrap(),
        family_name: "Jansen".into(),
        given_names: "Anna Maria".into(),
        birth_date: "1956-03-14".into(),
        level_of_assurance: LevelOfAssurance::Substantial,
        audience: fixtures::home_id(),
        nonce: b"vector-nonce-0001".to_vec(),
        issued_at: T0.minus_s(60),
        expires_at: T0.plus_s(240),
    }
}

/// A court registry's attestation: a financial administrator for Anna.
fn attestation() -> mandate::AttestationContent {
    mandate::AttestationContent {
        registry: fixtures::COURT.parse().unwrap(),
        kind: mandate::LegalKind::FinancialAdministration,
        case_reference: "C/13/123456 / BW RK 27-101".into(),
        represented: "bsn:999999990".parse().unwrap(),
        representative: mandate::Representative {
            person: "bsn:123456782".parse().unwrap(),
            name: "J. de Boer".into(),
            organisation: Some("KvK 12345678 Bewindvoering De Brug".into()),
        },
        valid_from: T0.minus_s(86_400),
        valid_until: None,
        issued_at: T0.minus_s(86_400),
    }
}

/// A German eID node's assertion of a cross-border worker (no BSN).
fn eidas_claims(id: &str) -> IdentityClaims {
    IdentityClaims {
        issuer: fixtures::GERMAN_EID.parse().unwrap(),
        subject: format!("eidas:{id}").parse().unwrap(),
        family_name: "Müller".into(),
        given_names: "Jonas".into(),
        birth_date: "1984-07-02".into(),
        nonce: b"vector-nonce-0002".to_vec(),
        ..claims()
    }
}

/// Re-encodes a COSE_Sign1 with a replaced payload and the old signature.
fn with_payload(bytes: &[u8], payload: Vec<u8>) -> Vec<u8> {
    let mut sign1 = CoseSign1::from_tagged_slice(bytes).unwrap();
    sign1.payload = Some(payload);
    sign1.to_tagged_vec().unwrap()
}

struct Vector {
    file: &'static str,
    kind: ObjectKind,
    expected: &'static str,
    description: &'static str,
}

const VECTORS: &[Vector] = &[
    Vector {
        file: "trust-list.cose",
        kind: ObjectKind::TrustList,
        expected: "valid",
        description: "The test federation's trust list, signed by the root key.",
    },
    Vector {
        file: "message.cose",
        kind: ObjectKind::Message,
        expected: "valid",
        description: "A SignedMessage from agency 00000001003214345000; content in message.json.",
    },
    Vector {
        file: "envelope.cose",
        kind: ObjectKind::Envelope,
        expected: "valid",
        description: "An Envelope signed by gateway.test whose payload, opened with home-1.test's HPKE key, is exactly message.cose.",
    },
    Vector {
        file: "assertion.cose",
        kind: ObjectKind::Assertion,
        expected: "valid",
        description: "IdentityAssertion by idp.nl.test for audience home-1.test, level substantial.",
    },
    Vector {
        file: "attestation.cose",
        kind: ObjectKind::Attestation,
        expected: "valid",
        description: "Attestation by court registry court.test: J. de Boer (Bewindvoering De Brug) is financial administrator of bsn:999999990.",
    },
    Vector {
        file: "invalid-attestation-wrong-role.cose",
        kind: ObjectKind::Attestation,
        expected: "wrong_role",
        description: "The same attestation signed by an agency's seal key, not a court registry.",
    },
    Vector {
        file: "assertion-eidas.cose",
        kind: ObjectKind::Assertion,
        expected: "valid",
        description: "IdentityAssertion by the German eID node eid.de.test of eidas:DE/NL/DE-4711-0815 (no BSN).",
    },
    Vector {
        file: "invalid-assertion-country-mismatch.cose",
        kind: ObjectKind::Assertion,
        expected: "country_mismatch",
        description: "The German eID node asserting eidas:FR/NL/FR-1234, a person identifier issued by France.",
    },
    Vector {
        file: "invalid-message-bad-signature.cose",
        kind: ObjectKind::Message,
        expected: "bad_signature",
        description: "message.cose with the last signature byte changed.",
    },
    Vector {
        file: "invalid-message-wrong-role.cose",
        kind: ObjectKind::Message,
        expected: "wrong_role",
        description: "The letter of message.cose signed by relay-a.test's node key.",
    },
    Vector {
        file: "invalid-message-revoked-signer.cose",
        kind: ObjectKind::Message,
        expected: "revoked",
        description: "The letter signed by the seal key of the revoked agency 00000001823288444000.",
    },
    Vector {
        file: "invalid-envelope-tampered-header.cose",
        kind: ObjectKind::Envelope,
        expected: "bad_signature",
        description: "envelope.cose with hop_limit changed from 8 to 16, signature kept.",
    },
    Vector {
        file: "invalid-assertion-expired.cose",
        kind: ObjectKind::Assertion,
        expected: "expired",
        description: "An assertion that expired 60 s before the verification time.",
    },
];

const EVIDENCE_KIND: &str = "application/vnd.estafette.evidence.v2+cbor";

/// The evidence vectors: `[record, receipt]` objects (SPEC.md §7, §15).
const EVIDENCE_VECTORS: &[(&str, &str, &str)] = &[
    (
        "evidence-1-submission-acceptance.cbor",
        "valid",
        "SubmissionAcceptance by gateway.test; first of the chain; leaf 0 of the gateway's log.",
    ),
    (
        "evidence-2-relay-acceptance.cbor",
        "valid",
        "RelayAcceptance by relay-a.test; previous = SHA-256 of evidence 1's record.",
    ),
    (
        "evidence-3-content-consignment.cbor",
        "valid",
        "ContentConsignment by home-1.test; previous = SHA-256 of evidence 2's record.",
    ),
    (
        "evidence-paper-failure.cbor",
        "valid",
        "PaperFailure by gateway.test, reason no_postal_address; previous = SHA-256 of evidence 1's record; leaf 1 of the gateway's log.",
    ),
    (
        "invalid-evidence-tampered-record.cbor",
        "bad_signature",
        "evidence 2 with the record's issued_at an hour later, receipt kept.",
    ),
    (
        "invalid-evidence-oversize.cbor",
        "too_large",
        "An evidence object of 13,000+ bytes (limit 12,288).",
    ),
    (
        "invalid-evidence-unknown-signer.cbor",
        "unknown_signer",
        "Evidence in a log whose checkpoint is signed by a key that is not in the trust list.",
    ),
];

/// The proof bundles (SPEC.md §16).
const BUNDLE_VECTORS: &[(&str, &str, &str)] = &[
    (
        "bundle.cbor",
        "valid",
        "The letter's trail (evidence 1, 2, 3) with trust-list.cose.",
    ),
    (
        "invalid-bundle-broken-chain.cbor",
        "evidence",
        "Evidence 1 and 3 without 2: evidence 3's previous is not in the bundle (chain_broken).",
    ),
];

/// The citizen request frame of the vectors: a consent change carried by
/// the home node, with the person's assertion.
fn citizen_request(identity: IdentityProof) -> relay::Request {
    relay::Request::Citizen(Box::new(citizen::CitizenRequest {
        identity: Some(identity),
        action: citizen::CitizenAction::SetConsent {
            sender: fixtures::AGENCY_OIN.parse().unwrap(),
            digital: true,
        },
        inbox_url: Some("https://home-1.test/inbox".into()),
    }))
}

fn generate() -> Files {
    let mut files = Files::new();
    let root = fixtures::root_key();
    files.insert(
        "trust-list.cose".into(),
        TrustList::sign(&fixtures::trust_list_content(), &root),
    );

    let agency = fixtures::key(fixtures::AGENCY_OIN);
    let message = SignedMessage::sign(&letter(), &agency).unwrap();
    files.insert("message.cose".into(), message.clone());
    files.insert(
        "message.json".into(),
        (serde_json::to_string_pretty(&letter()).unwrap() + "\n").into_bytes(),
    );

    let home = fixtures::hpke(fixtures::HOME);
    let mut rng = FixedRng::new("vector envelope");
    let envelope = Envelope::seal(
        header(&message),
        &message,
        &home.public,
        &fixtures::key(fixtures::GATEWAY),
        &mut rng,
    )
    .unwrap();
    files.insert("envelope.cose".into(), envelope.clone());

    // Each node's evidence log; one commit (checkpoint) per record here.
    let mut gateway_log = MemoryLog::new(fixtures::GATEWAY);
    let mut relay_log = MemoryLog::new(fixtures::RELAY);
    let mut home_log = MemoryLog::new(fixtures::HOME);
    let logged = |log: &mut MemoryLog, record: &EvidenceRecord, signer: &str| {
        Evidence::log(log, &[record], &fixtures::key(signer), record.issued_at)
            .unwrap()
            .remove(0)
    };
    let r1 = evidence(
        1,
        EvidenceEvent::SubmissionAcceptance,
        fixtures::gateway_id(),
        &message,
        &envelope,
        None,
    );
    let e1 = logged(&mut gateway_log, &r1, fixtures::GATEWAY);
    let r2 = evidence(
        2,
        EvidenceEvent::RelayAcceptance,
        fixtures::relay_id(),
        &message,
        &envelope,
        Some(&e1),
    );
    let e2 = logged(&mut relay_log, &r2, fixtures::RELAY);
    let r3 = evidence(
        3,
        EvidenceEvent::ContentConsignment,
        fixtures::home_id(),
        &message,
        &envelope,
        Some(&e2),
    );
    let e3 = logged(&mut home_log, &r3, fixtures::HOME);
    let paper_failure = EvidenceRecord {
        envelope_id: None,
        reason: Some(ReasonCode::NoPostalAddress),
        ..evidence(
            4,
            EvidenceEvent::PaperFailure,
            fixtures::gateway_id(),
            &message,
            &envelope,
            Some(&e1),
        )
    };
    let paper_failure = logged(&mut gateway_log, &paper_failure, fixtures::GATEWAY);
    files.insert("evidence-paper-failure.cbor".into(), paper_failure);
    files.insert("evidence-1-submission-acceptance.cbor".into(), e1.clone());
    files.insert("evidence-2-relay-acceptance.cbor".into(), e2.clone());
    files.insert("evidence-3-content-consignment.cbor".into(), e3.clone());
    // The proof bundle of the letter: its trail and the trust list.
    let trust_list = files["trust-list.cose"].clone();
    let message_id = letter().message_id;
    let bundle = |evidence: Vec<Vec<u8>>| {
        ProofBundle {
            message_id,
            trust_list: trust_list.clone(),
            evidence,
        }
        .encode()
    };
    files.insert(
        "bundle.cbor".into(),
        bundle(vec![e1.clone(), e2.clone(), e3.clone()]),
    );
    files.insert(
        "invalid-bundle-broken-chain.cbor".into(),
        bundle(vec![e1.clone(), e3]),
    );
    let (record, receipt) = Evidence::split(&e2).unwrap();
    let mut tampered: EvidenceRecord = cbor::from_slice(&record, 8192).unwrap();
    tampered.issued_at = tampered.issued_at.plus_s(3600);
    files.insert(
        "invalid-evidence-tampered-record.cbor".into(),
        Evidence::assemble(&cbor::to_vec(&tampered), &receipt),
    );

    let assertion =
        IdentityAssertion::sign(&claims(), &fixtures::key(fixtures::NATIONAL_IDP)).unwrap();
    files.insert("assertion.cose".into(), assertion.clone());
    files.insert(
        "assertion-eidas.cose".into(),
        IdentityAssertion::sign(
            &eidas_claims("DE/NL/DE-4711-0815"),
            &fixtures::key(fixtures::GERMAN_EID),
        )
        .unwrap(),
    );
    files.insert(
        "invalid-assertion-country-mismatch.cose".into(),
        IdentityAssertion::sign(
            &eidas_claims("FR/NL/FR-1234"),
            &fixtures::key(fixtures::GERMAN_EID),
        )
        .unwrap(),
    );
    files.insert(
        "attestation.cose".into(),
        mandate::Attestation::sign(&attestation(), &fixtures::key(fixtures::COURT)).unwrap(),
    );
    files.insert(
        "invalid-attestation-wrong-role.cose".into(),
        mandate::Attestation::sign(&attestation(), &fixtures::key(fixtures::AGENCY_OIN)).unwrap(),
    );
    files.insert(
        "frame-citizen-request.cbor".into(),
        relay::encode(&citizen_request(IdentityProof::Assertion(
            serde_bytes::ByteBuf::from(assertion),
        ))),
    );
    id_token_vectors(&mut files);
    pid_vectors(&mut files);

    let mut bad = message.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x01;
    files.insert("invalid-message-bad-signature.cose".into(), bad);
    files.insert(
        "invalid-message-wrong-role.cose".into(),
        SignedMessage::sign(&letter(), &fixtures::key(fixtures::RELAY)).unwrap(),
    );
    let mut revoked_letter = letter();
    revoked_letter.sender = fixtures::REVOKED_AGENCY_OIN.parse().unwrap();
    files.insert(
        "invalid-message-revoked-signer.cose".into(),
        SignedMessage::sign(
            &revoked_letter,
            &fixtures::key(fixtures::REVOKED_AGENCY_OIN),
        )
        .unwrap(),
    );

    let sign1 = CoseSign1::from_tagged_slice(&envelope).unwrap();
    let mut content: EnvelopeContent =
        estafette_spec::cbor::from_slice(sign1.payload.as_deref().unwrap(), 1 << 20).unwrap();
    content.header.hop_limit = 16;
    files.insert(
        "invalid-envelope-tampered-header.cose".into(),
        with_payload(&envelope, estafette_spec::cbor::to_vec(&content)),
    );

    let mut expired = claims();
    expired.issued_at = T0.minus_s(300);
    expired.expires_at = T0.minus_s(60);
    files.insert(
        "invalid-assertion-expired.cose".into(),
        IdentityAssertion::sign(&expired, &fixtures::key(fixtures::NATIONAL_IDP)).unwrap(),
    );

    files.insert(
        "invalid-evidence-oversize.cbor".into(),
        Evidence::assemble(&[0u8; 13_000], &receipt),
    );
    let stranger = evidence(
        4,
        EvidenceEvent::RelayAcceptance,
        fixtures::relay_id(),
        &message,
        &envelope,
        Some(&e1),
    );
    files.insert(
        "invalid-evidence-unknown-signer.cbor".into(),
        logged(&mut MemoryLog::new(fixtures::RELAY), &stranger, "stranger"),
    );

    let consistency = receipt_vectors(&mut files, &message, &envelope, &e2);

    files.insert(
        "keys.json".into(),
        (serde_json::to_string_pretty(&keys_json()).unwrap() + "\n").into_bytes(),
    );
    files.insert(
        "vectors.json".into(),
        (serde_json::to_string_pretty(&manifest(&consistency)).unwrap() + "\n").into_bytes(),
    );
    files
}

fn keys_json() -> serde_json::Value {
    let hex = |b: &[u8]| hex::encode(b);
    let mut signers = serde_json::Map::new();
    for label in [
        "root",
        fixtures::GATEWAY,
        fixtures::RELAY,
        fixtures::HOME,
        fixtures::AGENCY_OIN,
        fixtures::AGENCY2_OIN,
        fixtures::REVOKED_AGENCY_OIN,
        fixtures::NATIONAL_IDP,
        fixtures::GERMAN_EID,
        fixtures::COURT,
        "stranger",
        "holder:jonas-phone",
    ] {
        let key = fixtures::key(label);
        signers.insert(
            label.into(),
            json!({
                "seed": format!("SHA-256(\"estafette test key: {label}\")"),
                "private_key": hex(&key.to_bytes()),
                "public_key": hex(key.verifying_key().as_bytes()),
                "key_id": KeyId::of(&key.verifying_key()).to_string(),
            }),
        );
    }
    let mut hpke_keys = serde_json::Map::new();
    for label in [fixtures::HOME, fixtures::RELAY, fixtures::GATEWAY] {
        let pair = fixtures::hpke(label);
        hpke_keys.insert(
            label.into(),
            json!({
                "ikm": format!("estafette test hpke key: {label}"),
                "private_key": hex(pair.private_bytes().as_slice()),
                "public_key": hex(&pair.public.0),
            }),
        );
    }
    let b64 = |b: &[u8]| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    };
    let mut jwks = serde_json::Map::new();
    for (provider, issuer) in [
        (fixtures::NATIONAL_IDP, fixtures::NATIONAL_OIDC_ISSUER),
        (fixtures::GERMAN_EID, fixtures::GERMAN_OIDC_ISSUER),
        (fixtures::GERMAN_PID, fixtures::GERMAN_PID_ISSUER),
    ] {
        let (key, kid) = fixtures::oidc_key(provider);
        jwks.insert(
            issuer.into(),
            json!({"keys": [{
                "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": kid,
                "x": b64(key.verifying_key().as_bytes()),
                "d": b64(&key.to_bytes()),
            }]}),
        );
    }
    json!({
        "warning": "Test keys only. Every private key here is public.",
        "ed25519": signers,
        "hpke_x25519": hpke_keys,
        "oidc_jwks": jwks,
    })
}

fn manifest(consistency_3_to_5: &[String]) -> serde_json::Value {
    json!({
        "now": T0.0,
        "now_text": T0.to_string(),
        "root_public_key": hex::encode(fixtures::root_key().verifying_key().as_bytes()),
        "trust_list": "trust-list.cose",
        "vectors": VECTORS.iter().map(|v| json!({
            "file": v.file,
            "kind": v.kind.content_type(),
            "expected": v.expected,
            "description": v.description,
        })).collect::<Vec<_>>(),
        "id_token_audience": fixtures::HOME_CLIENT_ID,
        "id_tokens": ID_TOKEN_VECTORS.iter().map(|(file, expected)| json!({
            "file": file,
            "kind": "application/jwt",
            "expected": expected,
        })).collect::<Vec<_>>(),
        "evidence": EVIDENCE_VECTORS.iter().map(|(file, expected, description)| json!({
            "file": file,
            "kind": EVIDENCE_KIND,
            "expected": expected,
            "description": description,
        })).collect::<Vec<_>>(),
        "receipt_entry": RECEIPT_ENTRY,
        "receipt_min_cosignatures": 2,
        "receipts": RECEIPT_VECTORS.iter().map(|(file, expected, description)| json!({
            "file": file,
            "kind": "application/cose; cose-type=\"cose-sign1\"",
            "expected": expected,
            "description": description,
        })).collect::<Vec<_>>(),
        "checkpoints": [
            {"file": "checkpoint.cose", "expected": "valid", "description": "home-1.test's checkpoint of 5 records, cosigned by gateway.test and relay-a.test: the one receipt.cose proves against."},
            {"file": "checkpoint-3.cose", "expected": "valid", "description": "The same log at 3 records."},
            {"file": "invalid-checkpoint-forked.cose", "expected": "split_view", "description": "A validly signed checkpoint of 5 records with another root than checkpoint.cose: a forked log."},
        ],
        "consistency_3_to_5": consistency_3_to_5,
        "bundles": BUNDLE_VECTORS.iter().map(|(file, expected, description)| json!({
            "file": file,
            "kind": BUNDLE_MEDIA_TYPE,
            "expected": expected,
            "description": description,
        })).collect::<Vec<_>>(),
        "pid_audience": fixtures::home_client_id(),
        "pid_nonce": PID_NONCE,
        "pid_status_list": PID_STATUS_LIST,
        "pids": PID_VECTORS.iter().map(|(file, expected, description)| json!({
            "file": file,
            "kind": "application/dc+sd-jwt",
            "expected": expected,
            "description": description,
        })).collect::<Vec<_>>(),
    })
}

/// Verifies one vector file as a fresh verifier would: with the root key,
/// the trust list file, and the fixed time.
fn outcome(kind: ObjectKind, bytes: &[u8], trust: &TrustList, message: &[u8]) -> String {
    let reason = match kind {
        ObjectKind::TrustList => {
            TrustList::verify(bytes, &fixtures::root_key().verifying_key(), T0)
                .err()
                .map(|e| format!("{e}"))
        }
        ObjectKind::Message => SignedMessage::verify(bytes, trust)
            .err()
            .map(|e| e.reason().code().to_owned()),
        ObjectKind::Envelope => match Envelope::verify(bytes, trust, T0) {
            Ok(v) => {
                assert_eq!(v.open(&fixtures::hpke(fixtures::HOME)).unwrap(), message);
                None
            }
            Err(e) => Some(e.reason().code().to_owned()),
        },
        ObjectKind::Attestation => mandate::Attestation::verify(bytes, trust, T0)
            .err()
            .map(|e| e.reason().code().to_owned()),
        ObjectKind::Assertion => {
            let policy = AssertionPolicy {
                audience: fixtures::home_id(),
                min_level: LevelOfAssurance::Substantial,
                now: T0,
            };
            IdentityAssertion::verify(bytes, trust, &policy)
                .err()
                .map(|e| e.reason().code().to_owned())
        }
    };
    reason.unwrap_or_else(|| "valid".into())
}

#[test]
fn vectors_are_current_and_verify() {
    let generated = generate();
    let dir = dir();
    if std::env::var_os("ESTAFETTE_BLESS_VECTORS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in &generated {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
    let mut stale = Vec::new();
    for (name, bytes) in &generated {
        match std::fs::read(dir.join(name)) {
            Ok(on_disk) if &on_disk == bytes => {}
            Ok(_) => stale.push(format!("{name} differs")),
            Err(_) => stale.push(format!("{name} is missing")),
        }
    }
    assert!(
        stale.is_empty(),
        "spec/vectors is out of date ({}); if the format change is intended, run ESTAFETTE_BLESS_VECTORS=1 cargo test -p estafette-spec --test vectors and update SPEC.md",
        stale.join(", ")
    );

    // Now check every file on disk against its expected outcome.
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let trust = TrustList::verify(
        &read("trust-list.cose"),
        &fixtures::root_key().verifying_key(),
        T0,
    )
    .unwrap();
    let message = read("message.cose");
    for v in VECTORS {
        let got = outcome(v.kind, &read(v.file), &trust, &message);
        assert_eq!(got, v.expected, "{}", v.file);
    }
    let chain: Vec<Vec<u8>> = [
        "evidence-1-submission-acceptance.cbor",
        "evidence-2-relay-acceptance.cbor",
        "evidence-3-content-consignment.cbor",
    ]
    .iter()
    .map(|f| read(f))
    .collect();
    assert_eq!(Evidence::verify_chain(&chain, &trust).unwrap().len(), 3);

    for (file, expected, _) in EVIDENCE_VECTORS {
        let got = Evidence::verify(&read(file), &trust)
            .map_or_else(|e| e.reason().code().to_owned(), |_| "valid".to_owned());
        assert_eq!(&got, expected, "{file}");
    }
    check_receipt_vectors(&trust, &read);
    for (file, expected, _) in BUNDLE_VECTORS {
        let got = ProofBundle::decode(&read(file))
            .and_then(|b| b.verify(&fixtures::root_key().verifying_key(), T0))
            .map_or_else(|e| e.code().to_owned(), |_| "valid".to_owned());
        assert_eq!(&got, expected, "{file}");
    }

    // The citizen request frame decodes to the request, and carries the
    // assertion of the vectors.
    let frame: relay::Request = relay::decode(&read("frame-citizen-request.cbor")).unwrap();
    assert_eq!(
        frame,
        citizen_request(IdentityProof::Assertion(serde_bytes::ByteBuf::from(read(
            "assertion.cose"
        ))))
    );
    let frame: relay::Request =
        relay::decode(&read("frame-citizen-request-id-token.cbor")).unwrap();
    let token = String::from_utf8(read("id-token.jwt")).unwrap();
    assert_eq!(frame, citizen_request(IdentityProof::IdToken(token)));

    for (file, expected) in ID_TOKEN_VECTORS {
        let token = String::from_utf8(read(file)).unwrap();
        let got = match oidc::IdToken::verify(&token, &trust, &id_token_policy()) {
            Ok(_) => "valid".to_owned(),
            Err(e) => e.reason().code().to_owned(),
        };
        assert_eq!(&got, expected, "{file}");
    }

    let status_list = String::from_utf8(read(PID_STATUS_LIST)).unwrap();
    for (file, expected, _) in PID_VECTORS {
        let proof = IdentityProof::Pid(estafette_spec::assertion::PidProof {
            presentation: String::from_utf8(read(file)).unwrap(),
            status_list: Some(status_list.clone()),
        });
        let got = match proof.verify(&trust, &id_token_policy()) {
            Ok(v) => {
                assert_eq!(v.claims.nonce, PID_NONCE.as_bytes());
                "valid".to_owned()
            }
            Err(e) => e.reason().code().to_owned(),
        };
        assert_eq!(&got, expected, "{file}");
    }
}

/// Checks the receipt, checkpoint and consistency vectors as a fresh
/// verifier would, with one cache (so the forked checkpoint meets the one
/// it contradicts).
fn check_receipt_vectors(trust: &TrustList, read: &dyn Fn(&str) -> Vec<u8>) {
    use estafette_spec::merkle;
    use estafette_spec::receipt::*;
    let cache = CheckpointCache::new();
    let entry = read(RECEIPT_ENTRY);
    let record: EvidenceRecord = cbor::from_slice(&entry, 8192).unwrap();
    assert_eq!(record.event, EvidenceEvent::ContentConsignment);
    for (file, expected, _) in RECEIPT_VECTORS {
        let got = Receipt::parse(&read(file), &entry)
            .and_then(|r| r.verify(trust, &cache, 2))
            .map_or_else(|e| e.code().to_owned(), |_| "valid".to_owned());
        assert_eq!(&got, expected, "{file}");
    }
    let checkpoint = |file: &str| -> Result<SignedCheckpoint, ReceiptError> {
        let (signed, cosignatures) = SignedCheckpoint::parse(&read(file))?;
        let log = signed.verify(trust, &cache)?;
        verify_cosignatures(&signed.checkpoint, &cosignatures, log, trust)?;
        Ok(signed)
    };
    let at5 = checkpoint("checkpoint.cose").unwrap();
    let at3 = checkpoint("checkpoint-3.cose").unwrap();
    assert_eq!(
        checkpoint("invalid-checkpoint-forked.cose")
            .unwrap_err()
            .code(),
        "split_view"
    );
    let manifest: serde_json::Value = serde_json::from_slice(&read("vectors.json")).unwrap();
    let proof: Vec<merkle::Hash> = manifest["consistency_3_to_5"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            hex::decode(h.as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap()
        })
        .collect();
    merkle::verify_consistency(3, 5, &at3.checkpoint.root, &at5.checkpoint.root, &proof).unwrap();

    // The add-checkpoint frame: a witness of home-1.test that cosigned the
    // log at 3 records cosigns it at 5.
    let Ok(relay::Request::AddCheckpoint(frame)) =
        relay::decode::<relay::Request>(&read("frame-add-checkpoint.cbor"))
    else {
        panic!("frame-add-checkpoint.cbor is not an add-checkpoint request");
    };
    let (offered, _) = SignedCheckpoint::parse(&frame.checkpoint).unwrap();
    let consistency: Vec<merkle::Hash> = frame.consistency.iter().map(|d| d.0).collect();
    let offer = estafette_spec::witness::CheckpointOffer {
        old_size: frame.old_size,
        consistency: &consistency,
        checkpoint: &offered,
    };
    let known = estafette_spec::witness::LogHead::of(&at3);
    let (head, cosignature) = estafette_spec::witness::cosign(
        &fixtures::relay_id(),
        &fixtures::key(fixtures::RELAY),
        Some(&known),
        &offer,
        trust,
        T0.0,
    )
    .unwrap();
    assert_eq!(head, estafette_spec::witness::LogHead::of(&at5));
    assert!(cosignature.verify(
        &at5.checkpoint,
        &fixtures::key(fixtures::RELAY).verifying_key()
    ));
}

/// The ID token vectors and what a verifier at the home node concludes.
const ID_TOKEN_VECTORS: &[(&str, &str)] = &[
    ("id-token.jwt", "valid"),
    ("id-token-eidas.jwt", "valid"),
    ("invalid-id-token-wrong-audience.jwt", "wrong_audience"),
    ("invalid-id-token-unknown-key.jwt", "unknown_signer"),
    ("invalid-id-token-country-mismatch.jwt", "country_mismatch"),
    ("invalid-id-token-low-acr.jwt", "assurance_too_low"),
];

fn id_token_policy() -> AssertionPolicy {
    AssertionPolicy {
        audience: fixtures::home_id(),
        min_level: LevelOfAssurance::Substantial,
        now: T0,
    }
}

const PID_NONCE: &str = "vector-wallet-nonce-0123";
const PID_STATUS_LIST: &str = "pid-status-list.jwt";
const PID_STATUS_URI: &str = "https://pid.de.test/status/1";

/// The PID vectors, what a home node concludes with the status list
/// `pid-status-list.jwt` (entry 0 valid, 1 revoked), and why.
const PID_VECTORS: &[(&str, &str, &str)] = &[
    (
        "pid-presentation.sd-jwt",
        "valid",
        "Jonas Müller's German PID, all claims disclosed, key bound to the home node",
    ),
    (
        "invalid-pid-wrong-audience.sd-jwt",
        "wrong_audience",
        "the key binding names another verifier",
    ),
    (
        "invalid-pid-no-key-binding.sd-jwt",
        "malformed",
        "no key binding JWT",
    ),
    (
        "invalid-pid-other-holder.sd-jwt",
        "bad_signature",
        "the key binding is signed by a key other than cnf.jwk",
    ),
    (
        "invalid-pid-tampered-disclosure.sd-jwt",
        "malformed",
        "a disclosure changed (given_name), so it matches no digest",
    ),
    (
        "invalid-pid-country-mismatch.sd-jwt",
        "country_mismatch",
        "the German PID provider issues for FR",
    ),
    (
        "invalid-pid-expired.sd-jwt",
        "expired",
        "the credential's exp is past",
    ),
    (
        "invalid-pid-revoked.sd-jwt",
        "revoked",
        "status list entry 1, which the list marks revoked",
    ),
];

fn pid_vectors(files: &mut Files) {
    let pid = |change: &dyn Fn(&mut fixtures::TestPid)| {
        let mut p = fixtures::TestPid::german("DE-PAN-4711-0815", "jonas-phone", T0);
        p.payload["status"] = json!({"status_list": {"idx": 0, "uri": PID_STATUS_URI}});
        change(&mut p);
        p
    };
    let good = pid(&|_| {});
    let all = good.disclosures();
    let aud = fixtures::home_client_id();
    let iat = T0.minus_s(5);
    let mut put = |name: &str, presentation: String| {
        files.insert(name.into(), presentation.into_bytes());
    };
    put("pid-presentation.sd-jwt", good.present(PID_NONCE, iat));
    put(
        "invalid-pid-wrong-audience.sd-jwt",
        good.present_with(
            &all,
            Some(&good.holder),
            "x509_hash:another-verifier",
            PID_NONCE,
            iat,
        ),
    );
    put(
        "invalid-pid-no-key-binding.sd-jwt",
        good.present_with(&all, None, &aud, PID_NONCE, iat),
    );
    put(
        "invalid-pid-other-holder.sd-jwt",
        good.present_with(&all, Some(&fixtures::key("stranger")), &aud, PID_NONCE, iat),
    );
    let mut tampered = all.clone();
    tampered[1] = pid(&|p| p.claims[1].2 = json!("Johanna")).disclosures()[1].clone();
    put(
        "invalid-pid-tampered-disclosure.sd-jwt",
        good.present_with(&tampered, Some(&good.holder), &aud, PID_NONCE, iat),
    );
    put(
        "invalid-pid-country-mismatch.sd-jwt",
        pid(&|p| p.claims[3].2 = json!("FR")).present(PID_NONCE, iat),
    );
    put(
        "invalid-pid-expired.sd-jwt",
        pid(&|p| p.payload["exp"] = (T0.0 - 60).into()).present(PID_NONCE, iat),
    );
    put(
        "invalid-pid-revoked.sd-jwt",
        pid(&|p| p.payload["status"]["status_list"]["idx"] = 1.into()).present(PID_NONCE, iat),
    );
    put(
        PID_STATUS_LIST,
        fixtures::status_list_token(PID_STATUS_URI, 1, &[0, 1], T0.minus_s(3600)),
    );
}

/// ID tokens of the fixtures' OpenID providers (EdDSA: reproducible).
fn id_token_vectors(files: &mut Files) {
    let nonce = "vector-nonce-0123456789";
    let national = fixtures::id_token_claims("999999990", nonce, T0.minus_s(10));
    let (nl_key, nl_kid) = fixtures::oidc_key(fixtures::NATIONAL_IDP);
    let (de_key, de_kid) = fixtures::oidc_key(fixtures::GERMAN_EID);
    let stranger = fixtures::key("stranger");
    let sign = |claims: &serde_json::Value, key: &ed25519_dalek::SigningKey, kid: &str| {
        fixtures::sign_jws(claims, key, Some(kid)).into_bytes()
    };
    let token = sign(&national, &nl_key, &nl_kid);
    files.insert(
        "frame-citizen-request-id-token.cbor".into(),
        relay::encode(&citizen_request(IdentityProof::IdToken(
            String::from_utf8(token.clone()).unwrap(),
        ))),
    );
    files.insert("id-token.jwt".into(), token);
    let german = |identifier: &str| {
        let mut claims = national.clone();
        let map = claims.as_object_mut().unwrap();
        map.remove("bsn");
        map.insert("iss".into(), fixtures::GERMAN_OIDC_ISSUER.into());
        map.insert("person_identifier".into(), identifier.into());
        claims
    };
    files.insert(
        "id-token-eidas.jwt".into(),
        sign(&german("DE/NL/DE-4711-0815"), &de_key, &de_kid),
    );
    files.insert(
        "invalid-id-token-country-mismatch.jwt".into(),
        sign(&german("FR/NL/FR-1234"), &de_key, &de_kid),
    );
    let mut other_audience = national.clone();
    other_audience["aud"] = "another-client".into();
    files.insert(
        "invalid-id-token-wrong-audience.jwt".into(),
        sign(&other_audience, &nl_key, &nl_kid),
    );
    files.insert(
        "invalid-id-token-unknown-key.jwt".into(),
        sign(&national, &stranger, "nl-new-unlisted"),
    );
    let mut low = national.clone();
    low["acr"] = fixtures::ACR_LOW.into();
    files.insert(
        "invalid-id-token-low-acr.jwt".into(),
        sign(&low, &nl_key, &nl_kid),
    );
}

/// Our COSE objects are plain RFC 9052: the Sig_structure can be rebuilt
/// by hand, without coset, and verifies with the public key alone.
#[test]
fn vectors_verify_with_a_hand_built_sig_structure() {
    let bytes = std::fs::read(dir().join("message.cose")).unwrap();
    let sign1 = CoseSign1::from_tagged_slice(&bytes).unwrap();
    let protected = sign1.protected.original_data.clone().unwrap();
    let payload = sign1.payload.clone().unwrap();
    // Sig_structure = ["Signature1", protected, external_aad = h'', payload]
    let value = ciborium::Value::Array(vec![
        ciborium::Value::Text("Signature1".into()),
        ciborium::Value::Bytes(protected),
        ciborium::Value::Bytes(vec![]),
        ciborium::Value::Bytes(payload),
    ]);
    let mut tbs = Vec::new();
    ciborium::into_writer(&value, &mut tbs).unwrap();
    let public = fixtures::key(fixtures::AGENCY_OIN).verifying_key();
    let sig = ed25519_dalek::Signature::from_slice(&sign1.signature).unwrap();
    public.verify_strict(&tbs, &sig).unwrap();
    let _ = sign1.to_vec();
}
