//! The `estafette-pki` CLI builds a whole test federation in a temp dir;
//! revoking an agency shows in the CRL and the trust list; `verify`
//! explains valid and invalid objects.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use estafette_pki::Federation;
use x509_parser::prelude::*;

const AGENCY_1: &str = "00000001003214345000";
const AGENCY_2: &str = "00000003273318220000";

fn pki(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_estafette-pki"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = pki(args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "estafette-pki {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn build_federation(dir: &Path) {
    let d = dir.to_str().unwrap();
    ok(&["init", "--dir", d, "--name", "Test", "--test-federation"]);
    ok(&[
        "issue",
        "agency",
        "--dir",
        d,
        "--oin",
        AGENCY_1,
        "--name",
        "Belastingdienst",
        "--sector",
        "financial",
    ]);
    ok(&[
        "issue",
        "agency",
        "--dir",
        d,
        "--oin",
        AGENCY_2,
        "--name",
        "Gemeente Voorbeeld",
    ]);
    ok(&[
        "issue",
        "gateway",
        "--dir",
        d,
        "--id",
        "gateway.test",
        "--addr",
        "127.0.0.1:8443",
    ]);
    ok(&[
        "issue",
        "node",
        "--dir",
        d,
        "--id",
        "home1.test",
        "--addr",
        "127.0.0.1:4434",
        "--role",
        "home",
    ]);
    ok(&[
        "issue",
        "node",
        "--dir",
        d,
        "--id",
        "relay1.test",
        "--addr",
        "127.0.0.1:4433",
        "--role",
        "transit",
    ]);
    ok(&[
        "route",
        "--dir",
        d,
        "--node",
        "gateway.test",
        "--to",
        "home1.test",
        "--via",
        "relay1.test",
    ]);
    ok(&[
        "issue",
        "idp",
        "--dir",
        d,
        "--id",
        "idp.nl.test",
        "--country",
        "NL",
        "--max-loa",
        "high",
    ]);
    ok(&[
        "issue",
        "idp",
        "--dir",
        d,
        "--id",
        "eid.de.test",
        "--country",
        "DE",
        "--max-loa",
        "substantial",
    ]);
    ok(&["issue", "court-registry", "--dir", d, "--id", "court.test"]);
}

fn crl_serials(path: &Path) -> Vec<String> {
    let pem = std::fs::read(path).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    let (_, crl) = CertificateRevocationList::from_der(&pem.contents).unwrap();
    crl.iter_revoked_certificates()
        .map(|r| hex::encode(r.raw_serial()))
        .collect()
}

#[test]
fn builds_a_whole_test_federation_and_revokes_an_agency() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("fed");
    let d = dir.to_str().unwrap();
    build_federation(&dir);

    let fed = Federation::open(&dir).unwrap();
    let trust = fed.trust_list(estafette_pki::now()).unwrap();
    let c = trust.content();
    assert_eq!(c.agencies.len(), 2);
    assert_eq!(c.nodes.len(), 2);
    assert!(c.gateway.is_some());
    assert_eq!(c.identity_providers.len(), 2);
    assert_eq!(c.court_registries.len(), 1);
    assert!(c.test_federation);
    assert_eq!(c.version, 10, "init + 8 issues + 1 route, one version each");
    assert_eq!(c.gateway.as_ref().unwrap().routes.len(), 1);
    assert!(crl_serials(&fed.crl_path()).is_empty());

    // Keys are never overwritten: issuing the same agency again fails and
    // leaves its key untouched.
    let seal = dir.join(format!("agencies/{AGENCY_1}/seal.key.pem"));
    let before = std::fs::read(&seal).unwrap();
    let out = pki(&[
        "issue", "agency", "--dir", d, "--oin", AGENCY_1, "--name", "Again",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already a member"));
    assert_eq!(std::fs::read(&seal).unwrap(), before);

    // Revoke agency 2 by id.
    let cert_2 = dir.join(format!("agencies/{AGENCY_2}/tls.crt.pem"));
    let valid = ok(&["verify", "--dir", d, cert_2.to_str().unwrap()]);
    assert!(
        valid.starts_with("VALID: agency certificate of 00000003273318220000"),
        "{valid}"
    );
    let serial = fed
        .state()
        .certificates
        .iter()
        .find(|c| c.subject == AGENCY_2)
        .unwrap()
        .serial_hex
        .clone();
    ok(&[
        "revoke",
        "--dir",
        d,
        "--id",
        AGENCY_2,
        "--reason",
        "key compromise",
    ]);

    let fed = Federation::open(&dir).unwrap();
    assert_eq!(crl_serials(&fed.crl_path()), vec![serial.clone()]);
    let trust = fed.trust_list(estafette_pki::now()).unwrap();
    assert_eq!(trust.content().version, 11);
    assert_eq!(trust.content().agencies.len(), 1);
    let revoked = &trust.content().revoked[0];
    assert_eq!(revoked.subject, AGENCY_2);
    assert_eq!(revoked.cert_serials, vec![serial]);
    assert_eq!(revoked.key_ids.len(), 1);
    assert!(trust.is_cert_revoked(&revoked.cert_serials[0]));

    // verify explains the invalid one, with exit code 1.
    let out = pki(&["verify", "--dir", d, cert_2.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("NOT VALID"), "{text}");
    assert!(text.contains("revoked"), "{text}");

    // A node certificate and the trust list verify.
    let node_cert = dir.join("nodes/relay1.test/tls.crt.pem");
    assert!(
        ok(&["verify", "--dir", d, node_cert.to_str().unwrap()])
            .contains("VALID: node certificate of relay1.test")
    );
    let tl = ok(&[
        "verify",
        "--dir",
        d,
        fed.trust_list_path().to_str().unwrap(),
    ]);
    assert!(tl.contains("VALID: trust list version 11"), "{tl}");

    // A trust list with one byte changed does not.
    let mut bytes = std::fs::read(fed.trust_list_path()).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0x40;
    let tampered = tmp.path().join("tampered.cose");
    std::fs::write(&tampered, &bytes).unwrap();
    let out = pki(&["verify", "--dir", d, tampered.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("signature does not verify"));

    // A certificate from another federation is "not issued by this root".
    let other = tmp.path().join("other");
    let o = other.to_str().unwrap();
    ok(&["init", "--dir", o]);
    ok(&[
        "issue", "agency", "--dir", o, "--oin", AGENCY_1, "--name", "Impostor",
    ]);
    let foreign = other.join(format!("agencies/{AGENCY_1}/tls.crt.pem"));
    let out = pki(&["verify", "--dir", d, foreign.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("not issued by this federation's root"));

    // A production federation refuses test OINs.
    let out = pki(&[
        "issue",
        "agency",
        "--dir",
        o,
        "--oin",
        "00000099000000000001",
        "--name",
        "Test",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a test federation"));
}

#[test]
fn signed_objects_are_explained() {
    use estafette_spec::*;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("fed");
    let d = dir.to_str().unwrap();
    build_federation(&dir);
    let fed = Federation::open(&dir).unwrap();
    let now = estafette_pki::now();

    // A letter sealed with agency 1's real seal key.
    let seal =
        estafette_pki::keys::read_ed25519(&dir.join(format!("agencies/{AGENCY_1}/seal.key.pem")))
            .unwrap();
    let letter = Letter {
        message_id: MessageId::from_bytes([7; 16]),
        sender: AGENCY_1.parse().unwrap(),
        recipient: "bsn:999999990".parse().unwrap(),
        created_at: now,
        subject: "Aanslag".into(),
        body: "Tekst".into(),
        attachments: vec![],
        nature: Nature::Decision,
        legal_effect: true,
        expected_action: "Betalen".into(),
        response_deadline: None,
        language: "nl".into(),
        sender_reference: "A-1".into(),
    };
    let message = SignedMessage::sign(&letter, &seal).unwrap();
    let path = tmp.path().join("message.cose");
    std::fs::write(&path, &message).unwrap();
    let out = ok(&["verify", "--dir", d, path.to_str().unwrap()]);
    assert!(out.contains("VALID: signed message msg-0707"), "{out}");
    assert!(out.contains("Belastingdienst"), "{out}");

    // Evidence in the relay's log, but claiming the home node as issuer.
    let relay_key =
        estafette_pki::keys::read_ed25519(&dir.join("nodes/relay1.test/signing.key.pem")).unwrap();
    let record = EvidenceRecord {
        evidence_id: EvidenceId::from_bytes([1; 16]),
        event: EvidenceEvent::RelayAcceptance,
        envelope_id: Some(EnvelopeId::from_bytes([2; 16])),
        message_id: Some(letter.message_id),
        message_digest: Some(Digest::of(&message)),
        envelope_digest: Some(Digest([3; 32])),
        issuer: "home1.test".parse().unwrap(),
        issued_at: now,
        reason: None,
        actor: None,
        previous: None,
    };
    let path = tmp.path().join("evidence.cbor");
    let mut relay_log = estafette_spec::memory_log::MemoryLog::new("relay1.test");
    let logged = |log: &mut estafette_spec::memory_log::MemoryLog, record: &EvidenceRecord| {
        Evidence::log(log, &[record], &relay_key, now)
            .unwrap()
            .remove(0)
    };
    std::fs::write(&path, logged(&mut relay_log, &record)).unwrap();
    let out = pki(&["verify", "--dir", d, path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("names issuer home1.test, but is in the evidence log of relay1.test"),
        "{text}"
    );

    // The same record with the right issuer is valid.
    let record = EvidenceRecord {
        issuer: "relay1.test".parse().unwrap(),
        ..record
    };
    std::fs::write(&path, logged(&mut relay_log, &record)).unwrap();
    let out = ok(&["verify", "--dir", d, path.to_str().unwrap()]);
    assert!(out.contains("VALID: evidence RelayAcceptance"), "{out}");
    assert!(
        out.contains("record 2 of 2 in evidence log relay1.test, proven by a checkpoint signed at"),
        "{out}"
    );

    // An assertion from the German eID node claiming level high: above its maximum.
    let de_key = estafette_pki::keys::read_ed25519(
        &dir.join("identity-providers/eid.de.test/signing.key.pem"),
    )
    .unwrap();
    let claims = IdentityClaims {
        issuer: "eid.de.test".parse().unwrap(),
        subject: "eidas:DE/NL/abc123".parse().unwrap(),
        family_name: "Müller".into(),
        given_names: "Jonas".into(),
        birth_date: "1980-05-01".into(),
        level_of_assurance: LevelOfAssurance::High,
        audience: "home1.test".parse().unwrap(),
        nonce: vec![9; 16],
        issued_at: now,
        expires_at: now.plus_s(300),
    };
    let path = tmp.path().join("assertion.cose");
    std::fs::write(&path, IdentityAssertion::sign(&claims, &de_key).unwrap()).unwrap();
    let out = pki(&["verify", "--dir", d, path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("may assert at most Substantial"));

    // Garbage is explained, not a crash.
    let path = tmp.path().join("garbage.bin");
    std::fs::write(&path, b"\xff\x00garbage").unwrap();
    let out = pki(&["verify", "--dir", d, path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("NOT VALID"));
    let _ = fed;
}

/// A JWKS with one Ed25519 signing key made from `seed`.
fn jwks_file(dir: &Path, name: &str, kid: &str, seed: u8) -> String {
    use base64::Engine as _;
    let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes());
    let path = dir.join(name);
    let jwks = serde_json::json!({"keys": [
        {"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": kid, "x": x},
        // An encryption key the provider also publishes: not for the trust list.
        {"kty": "OKP", "crv": "X25519", "use": "enc", "kid": "enc-1", "x": x},
    ]});
    std::fs::write(&path, jwks.to_string()).unwrap();
    path.to_str().unwrap().to_owned()
}

fn trust_version(dir: &Path) -> u64 {
    Federation::open(dir).unwrap().state().trust_list.version
}

#[test]
fn openid_providers_are_added_registered_and_rolled_over() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("fed");
    build_federation(&dir);
    let d = dir.to_str().unwrap();
    let first = jwks_file(tmp.path(), "first.jwks", "nl-2027-1", 1);
    let provider = |id: &str, country: &str, kind: &str, jwks: &str| {
        pki(&[
            "oidc",
            "provider",
            "--dir",
            d,
            "--id",
            id,
            "--country",
            country,
            "--max-loa",
            "high",
            "--issuer",
            "https://login.nl.example",
            "--identifier-claim",
            "bsn",
            "--identifier-kind",
            kind,
            "--acr",
            "urn:nl:loa:substantial=substantial",
            "--acr",
            "urn:nl:loa:high=high",
            "--jwks",
            jwks,
        ])
    };
    let out = provider("login.nl.example", "NL", "bsn", &first);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ok(&[
        "oidc",
        "client",
        "--dir",
        d,
        "--provider",
        "login.nl.example",
        "--node",
        "home1.test",
        "--client-id",
        "estafette-home1",
    ]);
    let fed = Federation::open(&dir).unwrap();
    let trust = fed.trust_list(estafette_pki::now()).unwrap();
    let entry = trust
        .content()
        .identity_providers
        .iter()
        .find(|p| p.id.as_str() == "login.nl.example")
        .unwrap();
    assert!(
        entry.key.is_none(),
        "an OpenID-only provider has no key of ours"
    );
    let oidc = entry.oidc.as_ref().unwrap();
    assert_eq!(oidc.keys.len(), 1, "the encryption key is left out");
    assert_eq!(oidc.keys[0].kid.as_deref(), Some("nl-2027-1"));
    assert_eq!(
        oidc.client_of(&"home1.test".parse().unwrap()),
        Some("estafette-home1")
    );

    // Refusals change nothing: a foreign provider with BSNs, a client for a
    // transit node, an unknown provider, a JWKS without signing keys.
    let before = trust_version(&dir);
    let out = provider("eid.other.example", "DE", "bsn", &first);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("BSN"), "{stderr}");
    let out = pki(&[
        "oidc",
        "client",
        "--dir",
        d,
        "--provider",
        "login.nl.example",
        "--node",
        "relay1.test",
        "--client-id",
        "x",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a home node"));
    let out = pki(&[
        "oidc",
        "keys",
        "--dir",
        d,
        "--provider",
        "nobody.example",
        "--jwks",
        &first,
    ]);
    assert!(!out.status.success());
    let empty = tmp.path().join("empty.jwks");
    std::fs::write(&empty, r#"{"keys": []}"#).unwrap();
    let out = pki(&[
        "oidc",
        "keys",
        "--dir",
        d,
        "--provider",
        "login.nl.example",
        "--jwks",
        empty.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert_eq!(
        trust_version(&dir),
        before,
        "no refused change was published"
    );

    // Rollover: a snapshot with both keys, then one with the new key only.
    let second = jwks_file(tmp.path(), "second.jwks", "nl-2027-2", 2);
    let both: serde_json::Value = {
        let a: serde_json::Value = serde_json::from_slice(&std::fs::read(&first).unwrap()).unwrap();
        let b: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&second).unwrap()).unwrap();
        serde_json::json!({"keys": [a["keys"][0], b["keys"][0]]})
    };
    let both_path = tmp.path().join("both.jwks");
    std::fs::write(&both_path, both.to_string()).unwrap();
    let stdout = ok(&[
        "oidc",
        "keys",
        "--dir",
        d,
        "--provider",
        "login.nl.example",
        "--jwks",
        both_path.to_str().unwrap(),
    ]);
    assert!(stdout.contains("nl-2027-1, nl-2027-2"), "{stdout}");
    ok(&[
        "oidc",
        "keys",
        "--dir",
        d,
        "--provider",
        "login.nl.example",
        "--jwks",
        &second,
    ]);
    let fed = Federation::open(&dir).unwrap();
    let trust = fed.trust_list(estafette_pki::now()).unwrap();
    let oidc = trust
        .content()
        .identity_providers
        .iter()
        .find(|p| p.id.as_str() == "login.nl.example")
        .unwrap()
        .oidc
        .clone()
        .unwrap();
    assert_eq!(oidc.keys.len(), 1);
    assert_eq!(oidc.keys[0].kid.as_deref(), Some("nl-2027-2"));
    assert_eq!(oidc.clients.len(), 1, "clients survive a rollover");
    assert_eq!(trust_version(&dir), before + 2);
}
