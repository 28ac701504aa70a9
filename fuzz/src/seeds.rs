//! The first inputs of each target: the objects of `spec/vectors` (valid and
//! invalid), and for the targets that sign the fuzzer's bytes, the payloads
//! and claims inside those vectors, so that mutation starts from objects the
//! decoders accept.

use std::path::Path;

use estafette_spec::cose::UnverifiedSign1;
use estafette_spec::fixtures::{self, T0};

/// A named seed input of one target.
#[derive(Clone)]
pub struct Seed {
    pub name: String,
    pub bytes: Vec<u8>,
}

fn seed(name: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Seed {
    Seed {
        name: name.into(),
        bytes: bytes.into(),
    }
}

/// Every file of `vectors` (the `spec/vectors` directory), by name.
fn vector_files(vectors: &Path) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(vectors)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        files.push((name, std::fs::read(&path)?));
    }
    files.sort();
    Ok(files)
}

/// The seeds of `target`, from the vectors in `vectors`.
pub fn seeds(target: &str, vectors: &Path) -> std::io::Result<Vec<Seed>> {
    let files = vector_files(vectors)?;
    let with_ext = |ext: &str| {
        files
            .iter()
            .filter(|(n, _)| n.ends_with(ext))
            .map(|(n, b)| seed(n.clone(), b.clone()))
            .collect::<Vec<_>>()
    };
    Ok(match target {
        "cbor" => [with_ext(".cose"), with_ext(".cbor")].concat(),
        "cose_objects" => {
            let mut seeds = with_ext(".cose");
            seeds.extend(
                files
                    .iter()
                    .filter(|(n, _)| n.contains("bundle"))
                    .map(|(n, b)| seed(n.clone(), b.clone())),
            );
            seeds
        }
        "signed_payloads" => signed_payload_seeds(&files),
        "relay_frames" => relay_frame_seeds(&files),
        "identity_proofs" => identity_seeds(&files),
        "identifiers" => identifier_seeds(),
        "configs" => config_seeds(),
        _ => Vec::new(),
    })
}

/// The payload of every valid COSE vector, behind the byte that makes
/// `signed_payloads` sign it as its kind.
fn signed_payload_seeds(files: &[(String, Vec<u8>)]) -> Vec<Seed> {
    let mut out = Vec::new();
    use crate::harness::SignedKind;
    for (pick, kind) in crate::harness::SIGNED_KINDS.into_iter().enumerate() {
        for (name, bytes) in files {
            let payload = match kind {
                SignedKind::Object(kind) if name.ends_with(".cose") => {
                    match UnverifiedSign1::parse(bytes, kind).and_then(|o| o.payload_of_verified())
                    {
                        Ok(payload) => payload,
                        Err(_) => continue,
                    }
                }
                SignedKind::LoggedEvidence if name.starts_with("evidence-") => {
                    match estafette_spec::Evidence::split(bytes) {
                        Ok((record, _)) => record,
                        Err(_) => continue,
                    }
                }
                _ => continue,
            };
            let mut input = vec![u8::try_from(pick).unwrap_or_default()];
            input.extend(payload);
            out.push(seed(format!("{name}.payload"), input));
        }
    }
    out
}

fn relay_frame_seeds(files: &[(String, Vec<u8>)]) -> Vec<Seed> {
    use estafette_spec::relay::{self, Offer, Request, Response};
    let mut out: Vec<Seed> = files
        .iter()
        .filter(|(n, _)| n.ends_with(".cbor"))
        .map(|(n, b)| seed(n.clone(), b.clone()))
        .collect();
    let vector = |name: &str| {
        files
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b.clone())
            .unwrap_or_default()
    };
    let offer = Request::Offer(Offer {
        hops_taken: 1,
        previous_evidence: None,
        envelope: vector("envelope.cose"),
    });
    out.push(seed("offer", relay::encode(&offer)));
    let evidence = vector("evidence-2-relay-acceptance.cbor");
    let delivery = Request::Evidence(vec![evidence.clone().into()]);
    out.push(seed("evidence-delivery", relay::encode(&delivery)));
    out.push(seed(
        "accepted",
        relay::encode(&Response::Accepted(evidence.into())),
    ));
    out
}

/// The text proofs as they are (first byte 0), and their claims for the
/// signing branches: ID token claims (1 national, 4 German eID), a PID
/// (2: issuer claims, disclosures, key binding claims), a status list (3).
fn identity_seeds(files: &[(String, Vec<u8>)]) -> Vec<Seed> {
    let mut out = Vec::new();
    for (name, bytes) in files
        .iter()
        .filter(|(n, _)| n.ends_with(".jwt") || n.ends_with(".sd-jwt") || n == "keys.json")
    {
        out.push(seed(name.clone(), [&[0u8][..], bytes].concat()));
    }
    let claims = fixtures::id_token_claims("999993653", "fuzz-seed-nonce-0123456789abcdef", T0);
    out.push(seed(
        "id-token-claims",
        [&[1u8][..], claims.to_string().as_bytes()].concat(),
    ));
    let pid = fixtures::TestPid::german("1234567", "fuzz", T0);
    let presentation = pid.present("fuzz-seed-nonce-0123456789abcdef", T0);
    let mut parts: Vec<Vec<u8>> = Vec::new();
    if let Some(issuer) = presentation.split('~').next() {
        parts.push(jws_payload(issuer));
    }
    for disclosure in pid.disclosures() {
        parts.push(base64_decode(&disclosure));
    }
    if let Some(kb) = presentation.rsplit('~').next() {
        parts.push(jws_payload(kb));
    }
    out.push(seed("pid-parts", [vec![2u8], parts.join(&0u8)].concat()));
    let status = fixtures::status_list_token("https://pid.de.test/status/1", 1, &[0, 1, 0], T0);
    out.push(seed(
        "status-list-claims",
        [vec![3u8, 0, 1], jws_payload(&status)].concat(),
    ));
    out
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .unwrap_or_default()
}

/// The decoded payload of a compact JWS.
fn jws_payload(token: &str) -> Vec<u8> {
    token
        .split('.')
        .nth(1)
        .map(base64_decode)
        .unwrap_or_default()
}

fn identifier_seeds() -> Vec<Seed> {
    [
        "999993653",
        "00000001003214345000",
        "DE",
        "DE/NL/1234567",
        "bsn:999993653",
        "eidas:DE/NL/1234567",
        "home-1.test",
        "msg-0123456789abcdef0123456789abcdef",
        "env-0123456789abcdef0123456789abcdef",
        "evd-0123456789abcdef0123456789abcdef",
        "ib-0123456789abcdef0123456789abcdef",
        "mdt-0123456789abcdef0123456789abcdef",
    ]
    .iter()
    .enumerate()
    .map(|(i, text)| seed(format!("identifier-{i}"), text.as_bytes()))
    .collect()
}

fn config_seeds() -> Vec<Seed> {
    use estafette_gateway::config as gateway;
    use estafette_relay::config as relay;
    let import = serde_json::json!([
        { "recipient": "bsn:999993653", "home_node": fixtures::HOME, "active": true, "language": "nl",
          "name": "P. de Vries", "digital_senders": [fixtures::AGENCY_OIN],
          "postal_address": { "street_lines": ["Dorpsstraat 1"], "postal_code": "1234 AB", "city": "Voorbeeld", "country": "NL" } },
        { "recipient": "eidas:DE/NL/1234567", "language": "de", "name": "J. Müller" }
    ]);
    vec![
        seed("relay.toml", relay::example(&relay::InitValues::example())),
        seed(
            "gateway.toml",
            gateway::example(&gateway::GatewayInitValues::example()),
        ),
        seed("import.json", import.to_string()),
    ]
}
