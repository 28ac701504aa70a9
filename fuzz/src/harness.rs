//! The target functions. Each runs decoders for their errors only: a
//! decoder may refuse anything, but must not panic, loop, or allocate beyond
//! its limits; where two paths must agree, the target asserts it.

use std::path::Path;
use std::str::FromStr;
use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer as _, SigningKey};
use estafette_spec::assertion::{AssertionPolicy, IdentityAssertion};
use estafette_spec::cose::{self, ObjectKind, UnverifiedSign1};
use estafette_spec::fixtures::{self, T0};
use estafette_spec::limits::MAX_TRUST_LIST_BYTES;
use estafette_spec::mandate::Attestation;
use estafette_spec::relay::{self, Receiver, Request, Response};
use estafette_spec::*;
use sha2::{Digest as _, Sha256};

/// The test federation, built once per process (building signs and indexes).
struct Federation {
    trust: TrustList,
    root: ed25519_dalek::VerifyingKey,
    home: NodeId,
    relay: NodeId,
    home_hpke: HpkeKeyPair,
    policy: AssertionPolicy,
    pid_holder: SigningKey,
}

static FEDERATION: LazyLock<Federation> = LazyLock::new(|| Federation {
    trust: fixtures::trust_list(),
    root: fixtures::root_key().verifying_key(),
    home: fixtures::home_id(),
    relay: fixtures::relay_id(),
    home_hpke: fixtures::hpke(fixtures::HOME),
    policy: AssertionPolicy {
        audience: fixtures::home_id(),
        min_level: LevelOfAssurance::Substantial,
        now: T0,
    },
    pid_holder: fixtures::TestPid::german("0", "fuzz", T0).holder,
});

/// What `signed_payloads` makes of its payload: a COSE object of a kind,
/// or an evidence record logged by the relay (evidence carries no signature
/// of its own: its receipt's checkpoint is signed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignedKind {
    Object(ObjectKind),
    LoggedEvidence,
}

/// The kinds `signed_payloads` makes, in the order its first byte picks
/// them (the committed corpus depends on it).
pub const SIGNED_KINDS: [SignedKind; 6] = [
    SignedKind::Object(ObjectKind::Message),
    SignedKind::Object(ObjectKind::Envelope),
    SignedKind::LoggedEvidence,
    SignedKind::Object(ObjectKind::Assertion),
    SignedKind::Object(ObjectKind::Attestation),
    SignedKind::Object(ObjectKind::TrustList),
];

/// The signing key the federation trusts for each of [`SIGNED_KINDS`].
static SIGNERS: LazyLock<[SigningKey; 6]> = LazyLock::new(|| {
    SIGNED_KINDS.map(|kind| match kind {
        SignedKind::Object(ObjectKind::Message) => fixtures::key(fixtures::AGENCY_OIN),
        SignedKind::Object(ObjectKind::Envelope) => fixtures::key(fixtures::GATEWAY),
        SignedKind::LoggedEvidence => fixtures::key(fixtures::RELAY),
        SignedKind::Object(ObjectKind::Assertion) => fixtures::key(fixtures::NATIONAL_IDP),
        SignedKind::Object(ObjectKind::Attestation) => fixtures::key(fixtures::COURT),
        SignedKind::Object(ObjectKind::TrustList) => fixtures::root_key(),
    })
});

/// The CBOR pre-scan and the decoder behind it. Whatever decodes must
/// re-encode to bytes that decode again and encode the same (our encoding
/// is deterministic), and the pre-scan must accept what decodes.
pub fn cbor(data: &[u8]) {
    let scanned = cbor::prescan(data, MAX_TRUST_LIST_BYTES);
    let Ok(value) = cbor::from_slice::<ciborium::Value>(data, MAX_TRUST_LIST_BYTES) else {
        return;
    };
    assert!(scanned.is_ok(), "decoded what the pre-scan refused");
    let encoded = cbor::to_vec(&value);
    let again = cbor::from_slice::<ciborium::Value>(&encoded, MAX_TRUST_LIST_BYTES)
        .unwrap_or_else(|e| panic!("our own encoding does not decode: {e}"));
    assert_eq!(
        cbor::to_vec(&again),
        encoded,
        "encoding is not deterministic"
    );
}

/// Every COSE object a node takes from outside, as raw bytes: each verifier
/// in turn, and the structure parser for each kind.
pub fn cose_objects(data: &[u8]) {
    let f = &*FEDERATION;
    for kind in ObjectKind::ALL {
        let _ = UnverifiedSign1::parse(data, kind);
    }
    let _ = SignedMessage::verify(data, &f.trust);
    let _ = Envelope::verify(data, &f.trust, T0);
    let _ = Evidence::verify(data, &f.trust);
    let _ = IdentityAssertion::verify(data, &f.trust, &f.policy);
    let _ = Attestation::verify(data, &f.trust, T0);
    let _ = TrustList::verify(data, &f.root, T0);
    // Checkpoints and receipts (SPEC.md §15); a receipt's entry is the
    // input itself, so that a well-formed receipt also reaches the proof.
    let cache = receipt::CheckpointCache::new();
    if let Ok((checkpoint, _)) = receipt::SignedCheckpoint::parse(data) {
        let _ = checkpoint.verify(&f.trust, &cache);
    }
    if let Ok(parsed) = receipt::Receipt::parse(data, data) {
        let _ = parsed.verify(&f.trust, &cache, 1);
    }
    // A proof bundle (SPEC.md §16): the form, then the whole check.
    if let Ok(bundle) = estafette_spec::bundle::ProofBundle::decode(data) {
        let _ = bundle.verify(&f.root, T0);
    }
}

/// The first byte picks a kind; the rest is its payload, signed by the key
/// the federation trusts for that kind, then verified the whole way.
pub fn signed_payloads(data: &[u8]) {
    let Some((&pick, payload)) = data.split_first() else {
        return;
    };
    let index = usize::from(pick) % SIGNED_KINDS.len();
    let f = &*FEDERATION;
    let kind = match SIGNED_KINDS[index] {
        SignedKind::Object(kind) => kind,
        SignedKind::LoggedEvidence => {
            // The payload as a record in the relay's log, then verified.
            let mut log = memory_log::MemoryLog::new(fixtures::RELAY);
            let receipts = log.append(&[payload.to_vec()], &SIGNERS[index], T0);
            for receipt in receipts {
                let _ = Evidence::verify(&Evidence::assemble(payload, &receipt), &f.trust);
            }
            return;
        }
    };
    let signed = cose::sign(kind, payload.to_vec(), &SIGNERS[index]);
    match kind {
        ObjectKind::Message => {
            let _ = SignedMessage::verify(&signed, &f.trust);
        }
        ObjectKind::Envelope => {
            let _ = Envelope::verify(&signed, &f.trust, T0);
            let offer = relay::Offer {
                hops_taken: 0,
                previous_evidence: None,
                envelope: signed,
            };
            check_offer_everywhere(&offer);
        }
        ObjectKind::Assertion => {
            let _ = IdentityAssertion::verify(&signed, &f.trust, &f.policy);
        }
        ObjectKind::Attestation => {
            let _ = Attestation::verify(&signed, &f.trust, T0);
        }
        ObjectKind::TrustList => {
            let _ = TrustList::verify(&signed, &f.root, T0);
        }
    }
}

/// An offer as the relay and as the home node (which also opens it) check it.
fn check_offer_everywhere(offer: &relay::Offer) {
    let f = &*FEDERATION;
    let at_relay = Receiver {
        trust: &f.trust,
        me: &f.relay,
    };
    let _ = at_relay.check_offer(offer, T0, None);
    let at_home = Receiver {
        trust: &f.trust,
        me: &f.home,
    };
    let _ = at_home.check_offer(offer, T0, Some(&f.home_hpke));
}

/// A QUIC stream's body as a node reads it: a request (an offer, an
/// evidence delivery, a citizen request) or the answer to one.
pub fn relay_frames(data: &[u8]) {
    let f = &*FEDERATION;
    match relay::decode::<Request>(data) {
        Ok(Request::Offer(offer)) => check_offer_everywhere(&offer),
        Ok(Request::Evidence(objects)) => {
            for object in &objects {
                let _ = Evidence::verify(object, &f.trust);
            }
        }
        Ok(Request::Citizen(request)) => {
            if request.validate().is_ok()
                && let Some(proof) = &request.identity
            {
                let _ = proof.verify(&f.trust, &f.policy);
            }
        }
        Ok(Request::AddCheckpoint(offer)) => {
            // As a witness that never saw the log, and one that saw a tree
            // of the offered old size with another root.
            if let Ok((checkpoint, _)) = receipt::SignedCheckpoint::parse(&offer.checkpoint) {
                let proof: Vec<_> = offer.consistency.iter().map(|d| d.0).collect();
                let offer = witness::CheckpointOffer {
                    old_size: offer.old_size,
                    consistency: &proof,
                    checkpoint: &checkpoint,
                };
                let known = witness::LogHead {
                    origin: checkpoint.checkpoint.origin.clone(),
                    tree_size: offer.old_size,
                    root: [7; 32],
                };
                let key = fixtures::key(fixtures::GATEWAY);
                for known in [None, Some(&known)] {
                    let _ = witness::cosign(
                        &fixtures::gateway_id(),
                        &key,
                        known,
                        &offer,
                        &f.trust,
                        T0.0,
                    );
                }
            }
        }
        Err(_) => {}
    }
    match relay::decode::<Response>(data) {
        Ok(Response::Accepted(object) | Response::Rejected(object)) => {
            let _ = Evidence::verify(&object, &f.trust);
        }
        Ok(Response::Cosigned(bytes)) => {
            let _ = receipt::Cosignature::from_bytes(&bytes);
        }
        _ => {}
    }
}

/// Identity proofs: an ID token, a PID presentation and a status list, as
/// raw text (first byte 0), or with the fuzzer's claims signed by the keys
/// the trust list names (other first bytes), so that the claim checks run.
pub fn identity_proofs(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let f = &*FEDERATION;
    match pick % 5 {
        0 => {
            let text = String::from_utf8_lossy(rest);
            let _ = oidc::IdToken::verify(&text, &f.trust, &f.policy);
            let _ = pid::PidPresentation::verify(&text, None, &f.trust, &f.policy);
            let _ = pid::presentation_status_reference(&text);
            let _ = estafette_spec::oidc::keys_from_jwks(rest);
        }
        1 => {
            let (key, kid) = fixtures::oidc_key(fixtures::NATIONAL_IDP);
            let token = sign_raw_jws(rest, &key, Some(&kid), "JWT");
            let _ = oidc::IdToken::verify(&token, &f.trust, &f.policy);
        }
        2 => {
            let presentation = signed_presentation(rest);
            let status = pid::presentation_status_reference(&presentation);
            let list = match status {
                Ok(Some(reference)) => Some(status_list_for(&reference.uri)),
                _ => None,
            };
            let _ =
                pid::PidPresentation::verify(&presentation, list.as_deref(), &f.trust, &f.policy);
        }
        3 => status_list(rest),
        _ => {
            let (key, kid) = fixtures::oidc_key(fixtures::GERMAN_EID);
            let token = sign_raw_jws(rest, &key, Some(&kid), "JWT");
            let _ = oidc::IdToken::verify(&token, &f.trust, &f.policy);
        }
    }
}

/// A compact JWS (EdDSA) whose payload is `payload` exactly, JSON or not.
fn sign_raw_jws(payload: &[u8], key: &SigningKey, kid: Option<&str>, typ: &str) -> String {
    let mut header = serde_json::json!({"alg": "EdDSA", "typ": typ});
    if let Some(kid) = kid {
        header["kid"] = kid.into();
    }
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let signature = key.sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
}

/// An SD-JWT presentation from NUL-separated parts: the issuer's claims
/// (signed by the German PID provider), the disclosures, and the key
/// binding's claims (signed by the fixtures' holder, with the right
/// `sd_hash` filled in when the claims are a JSON object).
fn signed_presentation(data: &[u8]) -> String {
    let mut parts: Vec<&[u8]> = data.split(|&b| b == 0).collect();
    let issuer_claims = parts.first().copied().unwrap_or_default();
    let kb_claims = if parts.len() > 2 { parts.pop() } else { None };
    let (key, kid) = fixtures::oidc_key(fixtures::GERMAN_PID);
    let mut bound = sign_raw_jws(issuer_claims, &key, Some(&kid), pid::PID_FORMAT) + "~";
    for disclosure in parts.iter().skip(1) {
        bound += &URL_SAFE_NO_PAD.encode(disclosure);
        bound += "~";
    }
    let Some(kb_claims) = kb_claims else {
        return bound;
    };
    let kb_payload = match serde_json::from_slice::<serde_json::Value>(kb_claims) {
        Ok(serde_json::Value::Object(mut claims)) => {
            let hash = URL_SAFE_NO_PAD.encode(Sha256::digest(bound.as_bytes()));
            claims.insert("sd_hash".into(), hash.into());
            serde_json::Value::Object(claims).to_string().into_bytes()
        }
        _ => kb_claims.to_vec(),
    };
    let kb = sign_raw_jws(&kb_payload, &FEDERATION.pid_holder, None, "kb+jwt");
    bound + &kb
}

/// A valid status list token for `uri` (every credential valid).
fn status_list_for(uri: &str) -> String {
    fixtures::status_list_token(uri, 1, &[0; 64], T0)
}

/// A status list token with the fuzzer's claims, signed by the PID
/// provider, looked up at an index from the first two bytes.
fn status_list(data: &[u8]) {
    let (index, claims) = match data {
        [a, b, rest @ ..] => (u64::from(u16::from_be_bytes([*a, *b])), rest),
        _ => return,
    };
    let (key, kid) = fixtures::oidc_key(fixtures::GERMAN_PID);
    let token = sign_raw_jws(claims, &key, Some(&kid), "statuslist+jwt");
    let reference = pid::StatusReference {
        index,
        uri: "https://pid.de.test/status/1".into(),
    };
    let keys = [fixtures::oidc_public_key(fixtures::GERMAN_PID)];
    let _ = pid::status_in_list(&token, &reference, &keys, T0);
}

/// The text identifiers of paths, forms and files (an agency API path
/// holds a message id or a recipient; a registry import holds BSNs). What
/// parses must print as text that parses to the same value.
pub fn identifiers(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    round_trip::<Bsn>(text);
    round_trip::<Oin>(text);
    round_trip::<CountryCode>(text);
    round_trip::<EidasPersonId>(text);
    round_trip::<Recipient>(text);
    round_trip::<NodeId>(text);
    round_trip::<MessageId>(text);
    round_trip::<EnvelopeId>(text);
    round_trip::<EvidenceId>(text);
    round_trip::<InboxId>(text);
    round_trip::<ids::MandateId>(text);
}

fn round_trip<T>(text: &str)
where
    T: FromStr + ToString + PartialEq + std::fmt::Debug,
{
    let Ok(value) = text.parse::<T>() else {
        return;
    };
    let printed = value.to_string();
    match printed.parse::<T>() {
        Ok(again) => assert_eq!(again, value, "{printed:?} parses to another value"),
        Err(_) => panic!("{printed:?}, printed from a parsed value, does not parse"),
    }
}

/// The operator's files: a relay node's and the gateway's configuration,
/// and a registry import, as text.
pub fn configs(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz.toml");
    let _ = estafette_relay::Config::parse(text, path);
    let _ = estafette_gateway::config::GatewayConfig::parse(text, path);
    let _ = estafette_gateway::registry::parse_import(text, &FEDERATION.trust);
}

#[cfg(test)]
mod tests {
    //! The signing branches start from inputs the verifiers accept;
    //! otherwise the fuzzer would only ever explore refusals.
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn seed(target: &str, name: &str) -> Vec<u8> {
        let vectors = Path::new(env!("CARGO_MANIFEST_DIR")).join("../spec/vectors");
        crate::seeds::seeds(target, &vectors)
            .unwrap()
            .into_iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no seed {name} for {target}"))
            .bytes
    }

    #[test]
    fn the_signed_id_token_seed_verifies() {
        let claims = seed("identity_proofs", "id-token-claims");
        let (key, kid) = fixtures::oidc_key(fixtures::NATIONAL_IDP);
        let token = sign_raw_jws(&claims[1..], &key, Some(&kid), "JWT");
        let f = &*FEDERATION;
        oidc::IdToken::verify(&token, &f.trust, &f.policy).unwrap();
    }

    #[test]
    fn the_signed_pid_seed_verifies() {
        let parts = seed("identity_proofs", "pid-parts");
        let presentation = signed_presentation(&parts[1..]);
        let f = &*FEDERATION;
        let list = pid::presentation_status_reference(&presentation)
            .unwrap()
            .map(|r| status_list_for(&r.uri));
        pid::PidPresentation::verify(&presentation, list.as_deref(), &f.trust, &f.policy).unwrap();
    }

    #[test]
    fn the_signed_status_list_seed_is_read() {
        let input = seed("identity_proofs", "status-list-claims");
        let (key, kid) = fixtures::oidc_key(fixtures::GERMAN_PID);
        let token = sign_raw_jws(&input[3..], &key, Some(&kid), "statuslist+jwt");
        let reference = pid::StatusReference {
            index: 1,
            uri: "https://pid.de.test/status/1".into(),
        };
        let keys = [fixtures::oidc_public_key(fixtures::GERMAN_PID)];
        assert_eq!(
            pid::status_in_list(&token, &reference, &keys, T0).unwrap(),
            1
        );
    }

    #[test]
    fn the_signed_payload_seeds_verify() {
        let f = &*FEDERATION;
        let message = seed("signed_payloads", "message.cose.payload");
        let signed = cose::sign(ObjectKind::Message, message[1..].to_vec(), &SIGNERS[0]);
        SignedMessage::verify(&signed, &f.trust).unwrap();
        let envelope = seed("signed_payloads", "envelope.cose.payload");
        let signed = cose::sign(ObjectKind::Envelope, envelope[1..].to_vec(), &SIGNERS[1]);
        Envelope::verify(&signed, &f.trust, T0).unwrap();
    }
}
