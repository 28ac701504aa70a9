//! SD-JWT presentations: the issuer's signature, every disclosure matched
//! once against the credential's digests, and the key binding to the
//! holder's key, this verifier, this request's nonce and this presentation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use estafette_spec::fixtures::T0;
use estafette_spec::oidc::keys_from_jwks;
use estafette_spec::sd_jwt::{KeyBindingPolicy, SdJwtError, SdJwtPresentation};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

const AUD: &str = "x509_san_dns:home-1.test";
const NONCE: &str = "request-nonce-0123456789";

fn key() -> EcdsaKeyPair {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap()
}

fn jwk(key: &EcdsaKeyPair, kid: &str) -> Value {
    let p = key.public_key().as_ref();
    json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": B64.encode(&p[1..33]), "y": B64.encode(&p[33..65])})
}

fn jws(key: &EcdsaKeyPair, header: Value, payload: &Value) -> String {
    let input = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(payload.to_string())
    );
    let sig = key.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
    format!("{input}.{}", B64.encode(sig.as_ref()))
}

fn disclosure(salt: &str, name: &str, value: Value) -> String {
    B64.encode(json!([salt, name, value]).to_string())
}

fn digest(disclosure: &str) -> String {
    B64.encode(Sha256::digest(disclosure.as_bytes()))
}

/// A German PID: issuer JWS and its disclosures.
struct Pid {
    issuer: EcdsaKeyPair,
    holder: EcdsaKeyPair,
    disclosures: Vec<String>,
    payload: Value,
}

impl Pid {
    fn new() -> Pid {
        let disclosures: Vec<String> = [
            ("s1", "family_name", json!("Müller")),
            ("s2", "given_name", json!("Jonas")),
            ("s3", "birth_date", json!("1985-07-14")),
            ("s4", "issuing_country", json!("DE")),
            (
                "s5",
                "personal_administrative_number",
                json!("DE-4711-0815"),
            ),
        ]
        .into_iter()
        .map(|(s, n, v)| disclosure(s, n, v))
        .collect();
        let holder = key();
        let mut sd: Vec<String> = disclosures.iter().map(|d| digest(d)).collect();
        sd.push(B64.encode(Sha256::digest(b"a decoy digest")));
        let payload = json!({
            "iss": "https://pid.de.test", "vct": "urn:eudi:pid:1",
            "iat": T0.0 - 86_400, "exp": T0.0 + 365 * 86_400,
            "_sd_alg": "sha-256", "_sd": sd,
            "cnf": {"jwk": jwk(&holder, "holder")},
        });
        Pid {
            issuer: key(),
            holder,
            disclosures,
            payload,
        }
    }

    fn issuer_keys(&self) -> Vec<estafette_spec::oidc::OidcKey> {
        keys_from_jwks(
            json!({"keys": [jwk(&self.issuer, "pid-de-1")]})
                .to_string()
                .as_bytes(),
        )
        .unwrap()
    }

    fn issuer_jws(&self) -> String {
        jws(
            &self.issuer,
            json!({"alg": "ES256", "typ": "dc+sd-jwt", "kid": "pid-de-1"}),
            &self.payload,
        )
    }

    /// The presentation of `disclosures`, bound by `signer` with `kb` claims changed.
    fn present(
        &self,
        disclosures: &[String],
        signer: Option<&EcdsaKeyPair>,
        change: impl FnOnce(&mut serde_json::Map<String, Value>),
    ) -> String {
        let mut bound = self.issuer_jws() + "~";
        for d in disclosures {
            bound += d;
            bound += "~";
        }
        let Some(signer) = signer else {
            return bound;
        };
        let mut kb = json!({
            "iat": T0.0 - 5, "aud": AUD, "nonce": NONCE,
            "sd_hash": B64.encode(Sha256::digest(bound.as_bytes())),
        });
        change(kb.as_object_mut().unwrap());
        bound.clone() + &jws(signer, json!({"alg": "ES256", "typ": "kb+jwt"}), &kb)
    }

    fn good(&self) -> String {
        self.present(&self.disclosures, Some(&self.holder), |_| {})
    }
}

fn policy() -> KeyBindingPolicy<'static> {
    KeyBindingPolicy {
        audience: AUD,
        nonce: Some(NONCE),
        now: T0,
    }
}

fn verify(pid: &Pid, presentation: &str) -> Result<serde_json::Map<String, Value>, SdJwtError> {
    SdJwtPresentation::parse(presentation)?
        .verify(&pid.issuer_keys(), &policy())
        .map(|v| v.claims)
}

#[test]
fn a_presentation_gives_the_disclosed_claims() {
    let pid = Pid::new();
    let claims = verify(&pid, &pid.good()).unwrap();
    assert_eq!(claims["given_name"], "Jonas");
    assert_eq!(claims["issuing_country"], "DE");
    assert_eq!(claims["personal_administrative_number"], "DE-4711-0815");
    assert!(
        !claims.contains_key("_sd"),
        "digests are replaced by claims"
    );
    // Disclosing less is fine: an undisclosed claim is just absent.
    let some = pid.present(&pid.disclosures[..2], Some(&pid.holder), |_| {});
    let claims = verify(&pid, &some).unwrap();
    assert!(claims.contains_key("family_name") && !claims.contains_key("birth_date"));
}

/// What a refusal must be.
type Expect = fn(&SdJwtError) -> bool;

#[test]
fn every_refusal_names_its_cause() {
    let pid = Pid::new();
    let stranger = key();
    let mut tampered = pid.disclosures.clone();
    tampered[1] = disclosure("s2", "given_name", json!("Johanna"));
    let mut extra = pid.disclosures.clone();
    extra.push(disclosure("s9", "nationality", json!("NL")));
    let cases: Vec<(&str, String, Expect)> = vec![
        (
            "wrong nonce",
            pid.present(&pid.disclosures, Some(&pid.holder), |c| {
                c.insert("nonce".into(), "another".into());
            }),
            |e| matches!(e, SdJwtError::KeyBinding { claim: "nonce", .. }),
        ),
        (
            "wrong aud",
            pid.present(&pid.disclosures, Some(&pid.holder), |c| {
                c.insert("aud".into(), "x509_san_dns:elsewhere.test".into());
            }),
            |e| matches!(e, SdJwtError::KeyBinding { claim: "aud", .. }),
        ),
        (
            "no key binding",
            pid.present(&pid.disclosures, None, |_| {}),
            |e| *e == SdJwtError::NoKeyBinding,
        ),
        (
            "a key binding by another key",
            pid.present(&pid.disclosures, Some(&stranger), |_| {}),
            |e| *e == SdJwtError::KeyBindingSignature,
        ),
        (
            "a tampered disclosure",
            pid.present(&tampered, Some(&pid.holder), |_| {}),
            |e| matches!(e, SdJwtError::UnmatchedDisclosure { index: 1 }),
        ),
        (
            "an extra disclosure",
            pid.present(&extra, Some(&pid.holder), |_| {}),
            |e| matches!(e, SdJwtError::UnmatchedDisclosure { index: 5 }),
        ),
        (
            "a key binding over other disclosures",
            {
                let other = pid.present(&pid.disclosures[..2], Some(&pid.holder), |_| {});
                let kb = other.rsplit('~').next().unwrap().to_owned();
                pid.present(&pid.disclosures, None, |_| {}) + &kb
            },
            |e| {
                matches!(
                    e,
                    SdJwtError::KeyBinding {
                        claim: "sd_hash",
                        ..
                    }
                )
            },
        ),
        (
            "an old key binding",
            pid.present(&pid.disclosures, Some(&pid.holder), |c| {
                c.insert("iat".into(), (T0.0 - 3600).into());
            }),
            |e| matches!(e, SdJwtError::KeyBinding { claim: "iat", .. }),
        ),
    ];
    for (what, presentation, expected) in cases {
        let err = verify(&pid, &presentation).unwrap_err();
        assert!(expected(&err), "{what}: {err}");
    }
    // Another issuer key: the issuer's signature fails.
    let other = Pid::new();
    let err = SdJwtPresentation::parse(&pid.good())
        .unwrap()
        .verify(&other.issuer_keys(), &policy())
        .unwrap_err();
    assert_eq!(err, SdJwtError::IssuerSignature);
}

#[test]
fn an_expired_credential_is_refused() {
    let mut pid = Pid::new();
    pid.payload["exp"] = (T0.0 - 1).into();
    assert!(matches!(
        verify(&pid, &pid.good()),
        Err(SdJwtError::Expired(_))
    ));
}

#[test]
fn a_digest_twice_and_reserved_names_are_refused() {
    let mut pid = Pid::new();
    let first = pid.payload["_sd"][0].clone();
    pid.payload["_sd"].as_array_mut().unwrap().push(first);
    assert_eq!(
        verify(&pid, &pid.good()).unwrap_err(),
        SdJwtError::DuplicateDigest
    );

    let mut pid = Pid::new();
    let sneaky = disclosure("s7", "_sd", json!(["x"]));
    pid.payload["_sd"]
        .as_array_mut()
        .unwrap()
        .push(digest(&sneaky).into());
    let mut with = pid.disclosures.clone();
    with.push(sneaky);
    let presentation = pid.present(&with, Some(&pid.holder), |_| {});
    assert!(matches!(
        verify(&pid, &presentation),
        Err(SdJwtError::ClaimName(_))
    ));
}

#[test]
fn sizes_are_limited_at_their_edges() {
    let many = format!(
        "a~{}",
        "b~".repeat(estafette_spec::limits::MAX_SD_JWT_DISCLOSURES + 1)
    );
    assert!(matches!(
        SdJwtPresentation::parse(&many),
        Err(SdJwtError::TooManyDisclosures(_))
    ));
    let at = format!(
        "a~{}",
        "b~".repeat(estafette_spec::limits::MAX_SD_JWT_DISCLOSURES)
    );
    assert!(SdJwtPresentation::parse(&at).is_ok());
    let big = "a".repeat(estafette_spec::limits::MAX_SD_JWT_BYTES + 1);
    assert!(matches!(
        SdJwtPresentation::parse(&big),
        Err(SdJwtError::TooLarge(_))
    ));
}
