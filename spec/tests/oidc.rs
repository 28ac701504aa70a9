//! OpenID Connect ID tokens: the four accepted algorithms verify with keys
//! from the trust list, and every refusal names what was wrong.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use estafette_spec::assertion::AssertionPolicy;
use estafette_spec::fixtures::{self, T0};
use estafette_spec::oidc::{
    IdToken, IdTokenError, IdentifierKind, JwsAlgorithm, JwsError, OidcKey, OidcProvider,
    OidcProviderError, OidcPublicKey, keys_from_jwks,
};
use estafette_spec::*;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use serde_json::{Value, json};

const NONCE: &str = "nonce-0123456789abcdef";

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A test signer of one algorithm, with its key as the trust list holds it.
enum TestSigner {
    Rsa(
        RsaKeyPair,
        &'static dyn signature::RsaEncoding,
        &'static str,
    ),
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

impl TestSigner {
    fn rs256() -> TestSigner {
        let der = include_bytes!("data/test-rsa-2048.pk8");
        TestSigner::Rsa(
            RsaKeyPair::from_pkcs8(der).unwrap(),
            &signature::RSA_PKCS1_SHA256,
            "RS256",
        )
    }
    fn ps256() -> TestSigner {
        let der = include_bytes!("data/test-rsa-2048.pk8");
        TestSigner::Rsa(
            RsaKeyPair::from_pkcs8(der).unwrap(),
            &signature::RSA_PSS_SHA256,
            "PS256",
        )
    }
    fn es256() -> TestSigner {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        TestSigner::Ecdsa(EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap())
    }
    fn eddsa() -> TestSigner {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        TestSigner::Ed25519(Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap())
    }

    fn alg(&self) -> &'static str {
        match self {
            TestSigner::Rsa(_, _, name) => name,
            TestSigner::Ecdsa(_) => "ES256",
            TestSigner::Ed25519(_) => "EdDSA",
        }
    }

    /// The public key as a JWK, as a provider publishes it.
    fn jwk(&self, kid: &str) -> Value {
        match self {
            TestSigner::Rsa(pair, _, _) => {
                let c = signature::RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
                json!({"kty": "RSA", "kid": kid, "use": "sig", "n": b64(&c.n), "e": b64(&c.e)})
            }
            TestSigner::Ecdsa(pair) => {
                let point = pair.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "kid": kid,
                    "x": b64(&point[1..33]), "y": b64(&point[33..65])})
            }
            TestSigner::Ed25519(pair) => {
                json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "alg": "EdDSA",
                    "x": b64(pair.public_key().as_ref())})
            }
        }
    }

    fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let rng = SystemRandom::new();
        let signature = match self {
            TestSigner::Rsa(pair, encoding, _) => {
                let mut sig = vec![0; pair.public().modulus_len()];
                pair.sign(*encoding, &rng, input.as_bytes(), &mut sig)
                    .unwrap();
                sig
            }
            TestSigner::Ecdsa(pair) => pair.sign(&rng, input.as_bytes()).unwrap().as_ref().to_vec(),
            TestSigner::Ed25519(pair) => pair.sign(input.as_bytes()).as_ref().to_vec(),
        };
        format!("{input}.{}", b64(&signature))
    }

    fn token(&self, kid: &str, claims: &Value) -> String {
        self.sign(
            &json!({"alg": self.alg(), "kid": kid, "typ": "JWT"}),
            claims,
        )
    }
}

/// The fixtures' trust list with the national provider's keys replaced by
/// `jwks` (as `estafette-pki` would add them).
fn trust_with_national_keys(jwks: &Value) -> TrustList {
    let mut content = fixtures::trust_list_content();
    let keys = keys_from_jwks(jwks.to_string().as_bytes()).unwrap();
    national(&mut content).keys = keys;
    TrustList::new(content).unwrap()
}

fn national(content: &mut TrustListContent) -> &mut OidcProvider {
    content.identity_providers[0].oidc.as_mut().unwrap()
}

fn policy() -> AssertionPolicy {
    AssertionPolicy {
        audience: fixtures::home_id(),
        min_level: LevelOfAssurance::Substantial,
        now: T0,
    }
}

fn claims() -> Value {
    fixtures::id_token_claims("999999990", NONCE, T0.minus_s(10))
}

fn verify(token: &str, trust: &TrustList) -> Result<VerifiedAssertion, AssertionError> {
    IdToken::verify(token, trust, &policy())
}

#[test]
fn each_accepted_algorithm_verifies_with_its_listed_key() {
    for signer in [
        TestSigner::rs256(),
        TestSigner::ps256(),
        TestSigner::es256(),
        TestSigner::eddsa(),
    ] {
        let trust = trust_with_national_keys(&json!({"keys": [signer.jwk("k1")]}));
        let token = signer.token("k1", &claims());
        let verified = verify(&token, &trust).unwrap_or_else(|e| panic!("{}: {e}", signer.alg()));
        assert_eq!(
            verified.claims.subject,
            "bsn:999999990".parse::<Recipient>().unwrap()
        );
        assert_eq!(verified.claims.issuer.to_string(), fixtures::NATIONAL_IDP);
        assert_eq!(
            verified.claims.level_of_assurance,
            LevelOfAssurance::Substantial
        );
        assert_eq!(verified.claims.nonce, NONCE.as_bytes());
        assert_eq!(verified.authenticated_at, T0.minus_s(10));
        assert_eq!(verified.digest, cose::Digest::of(token.as_bytes()));
        // The signature covers the claims: one changed byte of the payload
        // and the same signature no longer verifies.
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut forged = claims();
        forged["bsn"] = "111222333".into();
        parts[1] = b64(forged.to_string().as_bytes());
        assert!(
            matches!(
                verify(&parts.join("."), &trust),
                Err(AssertionError::IdToken(IdTokenError::BadSignature { .. }))
            ),
            "{}",
            signer.alg()
        );
    }
}

#[test]
fn a_key_of_one_algorithm_does_not_check_another() {
    // An RSA key pinned to RS256 does not accept a PS256 signature by it.
    let signer = TestSigner::ps256();
    let mut jwk = signer.jwk("k1");
    jwk["alg"] = "RS256".into();
    let trust = trust_with_national_keys(&json!({"keys": [jwk]}));
    let err = verify(&signer.token("k1", &claims()), &trust).unwrap_err();
    assert!(
        matches!(
            err,
            AssertionError::IdToken(IdTokenError::UnknownKey { .. })
        ),
        "{err}"
    );
}

#[test]
fn algorithms_outside_the_four_are_refused() {
    let trust = fixtures::trust_list();
    let payload = b64(claims().to_string().as_bytes());
    for alg in ["none", "HS256", "RS512", "ES384"] {
        let header = b64(json!({"alg": alg}).to_string().as_bytes());
        let token = format!("{header}.{payload}.");
        let err = verify(&token, &trust).unwrap_err();
        assert_eq!(
            err,
            AssertionError::IdToken(IdTokenError::Jws(JwsError::Algorithm(alg.into()))),
            "{alg}"
        );
        assert_eq!(err.reason(), ReasonCode::Malformed);
    }
}

#[test]
fn header_tricks_are_refused() {
    let trust = fixtures::trust_list();
    let (key, kid) = fixtures::oidc_key(fixtures::NATIONAL_IDP);
    let signer = TestSigner::Ed25519(Ed25519KeyPair::from_seed_unchecked(&key.to_bytes()).unwrap());
    let sign = |header: Value| signer.sign(&header, &claims());
    let crit = sign(json!({"alg": "EdDSA", "kid": kid, "crit": ["exp"]}));
    assert_eq!(
        verify(&crit, &trust).unwrap_err(),
        AssertionError::IdToken(IdTokenError::Jws(JwsError::Critical))
    );
    let typ = sign(json!({"alg": "EdDSA", "kid": kid, "typ": "dc+sd-jwt"}));
    assert!(matches!(
        verify(&typ, &trust).unwrap_err(),
        AssertionError::IdToken(IdTokenError::Jws(JwsError::Type { .. }))
    ));
    // A key embedded in the header is never used: the token is checked
    // against the trust list's key for the kid, and a stranger's is not it.
    let stranger = TestSigner::eddsa();
    let embedded = stranger.sign(
        &json!({"alg": "EdDSA", "kid": kid, "jwk": stranger.jwk(&kid)}),
        &claims(),
    );
    assert!(matches!(
        verify(&embedded, &trust).unwrap_err(),
        AssertionError::IdToken(IdTokenError::BadSignature { .. })
    ));
    let jwe = "a.b.c.d.e";
    assert_eq!(
        verify(jwe, &trust).unwrap_err(),
        AssertionError::IdToken(IdTokenError::Jws(JwsError::Encrypted))
    );
    assert!(matches!(
        verify("only.two", &trust).unwrap_err(),
        AssertionError::IdToken(IdTokenError::Jws(JwsError::Shape(_)))
    ));
    let header = b64(br#"{"alg":"EdDSA"}"#);
    assert!(matches!(
        verify(&format!("{header}.e30.!!"), &trust).unwrap_err(),
        AssertionError::IdToken(IdTokenError::Jws(JwsError::Base64 { .. }))
    ));
}

/// A national token with `change` applied to its claims, signed with the
/// fixtures' key.
fn national_token(change: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
    let mut claims = claims();
    change(claims.as_object_mut().unwrap());
    let (key, kid) = fixtures::oidc_key(fixtures::NATIONAL_IDP);
    fixtures::sign_jws(&claims, &key, Some(&kid))
}

fn german_token(identifier: &str) -> String {
    let mut claims = claims();
    let map = claims.as_object_mut().unwrap();
    map.remove("bsn");
    map.insert("iss".into(), fixtures::GERMAN_OIDC_ISSUER.into());
    map.insert("person_identifier".into(), identifier.into());
    let (key, kid) = fixtures::oidc_key(fixtures::GERMAN_EID);
    fixtures::sign_jws(&claims, &key, Some(&kid))
}

#[test]
fn claims_that_do_not_fit_are_refused_with_their_reason() {
    let trust = fixtures::trust_list();
    let reason = |token: String| verify(&token, &trust).unwrap_err().reason();
    assert!(verify(&national_token(|_| {}), &trust).is_ok());
    let cases: Vec<(&str, String, ReasonCode)> = vec![
        (
            "another audience",
            national_token(|c| {
                c.insert("aud".into(), "someone-else".into());
            }),
            ReasonCode::WrongAudience,
        ),
        (
            "several audiences, azp another",
            national_token(|c| {
                c.insert("aud".into(), json!([fixtures::HOME_CLIENT_ID, "other"]));
                c.insert("azp".into(), "other".into());
            }),
            ReasonCode::WrongAudience,
        ),
        (
            "several audiences, no azp",
            national_token(|c| {
                c.insert("aud".into(), json!([fixtures::HOME_CLIENT_ID, "other"]));
            }),
            ReasonCode::WrongAudience,
        ),
        (
            "expired",
            national_token(|c| {
                c.insert("iat".into(), (T0.0 - 3600).into());
                c.insert("auth_time".into(), (T0.0 - 3600).into());
                c.insert("exp".into(), T0.0.into());
            }),
            ReasonCode::Expired,
        ),
        (
            "issued in the future",
            national_token(|c| {
                c.insert("iat".into(), (T0.0 + 600).into());
                c.insert("exp".into(), (T0.0 + 1200).into());
            }),
            ReasonCode::NotYetValid,
        ),
        (
            "valid for a day",
            national_token(|c| {
                c.insert("exp".into(), (T0.0 + 86_400).into());
            }),
            ReasonCode::Malformed,
        ),
        (
            "no auth_time",
            national_token(|c| {
                c.remove("auth_time");
            }),
            ReasonCode::Malformed,
        ),
        (
            "no nonce",
            national_token(|c| {
                c.remove("nonce");
            }),
            ReasonCode::Malformed,
        ),
        (
            "a short nonce",
            national_token(|c| {
                c.insert("nonce".into(), "short".into());
            }),
            ReasonCode::Malformed,
        ),
        (
            "acr low",
            national_token(|c| {
                c.insert("acr".into(), fixtures::ACR_LOW.into());
            }),
            ReasonCode::AssuranceTooLow,
        ),
        (
            "acr unknown",
            national_token(|c| {
                c.insert("acr".into(), "urn:other:loa:4".into());
            }),
            ReasonCode::AssuranceTooLow,
        ),
        (
            "issuer not in the trust list",
            national_token(|c| {
                c.insert("iss".into(), "https://login.elsewhere.test".into());
            }),
            ReasonCode::UnknownSigner,
        ),
        (
            "no identifier",
            national_token(|c| {
                c.remove("bsn");
            }),
            ReasonCode::Malformed,
        ),
        (
            "an identifier that is no BSN",
            national_token(|c| {
                c.insert("bsn".into(), "123456789".into());
            }),
            ReasonCode::Malformed,
        ),
        (
            "no birth date",
            national_token(|c| {
                c.remove("birthdate");
            }),
            ReasonCode::Malformed,
        ),
        (
            "a German provider naming a French identifier",
            german_token("FR/NL/FR-1234"),
            ReasonCode::CountryMismatch,
        ),
        (
            "a German identifier for use in Belgium",
            german_token("DE/BE/DE-1234"),
            ReasonCode::CountryMismatch,
        ),
        (
            "a German provider naming a BSN",
            german_token("999999990"),
            ReasonCode::Malformed,
        ),
    ];
    for (what, token, expected) in cases {
        assert_eq!(reason(token), expected, "{what}");
    }
}

/// A SAML bridge (SATOSA) passes attributes on as lists: one value in a
/// list counts as that value; two are refused.
#[test]
fn single_values_may_come_as_lists_of_one() {
    let trust = fixtures::trust_list();
    let listed = national_token(|c| {
        for name in ["bsn", "acr", "family_name", "auth_time"] {
            let value = c[name].clone();
            c.insert(name.into(), json!([value]));
        }
    });
    let verified = verify(&listed, &trust).unwrap();
    assert_eq!(verified.claims.family_name, "Jansen");
    assert_eq!(verified.authenticated_at, T0.minus_s(10));
    let two = national_token(|c| {
        c.insert("bsn".into(), json!(["999999990", "111222333"]));
    });
    assert_eq!(
        verify(&two, &trust).unwrap_err().reason(),
        ReasonCode::Malformed
    );
}

#[test]
fn a_refusal_never_carries_the_identifier() {
    let trust = fixtures::trust_list();
    let token = national_token(|c| {
        c.insert("bsn".into(), "123456789".into());
    });
    let message = verify(&token, &trust).unwrap_err().to_string();
    assert!(!message.contains("123456789"), "{message}");
    assert!(message.contains("bsn"), "names the claim: {message}");
}

#[test]
fn a_duplicated_claim_is_refused_rather_than_resolved() {
    let trust = fixtures::trust_list();
    let (key, kid) = fixtures::oidc_key(fixtures::NATIONAL_IDP);
    let signer = TestSigner::Ed25519(Ed25519KeyPair::from_seed_unchecked(&key.to_bytes()).unwrap());
    let body = claims().to_string();
    // The same claims with a second "bsn" member at the end.
    let doubled = format!("{},\"bsn\":\"111222333\"}}", &body[..body.len() - 1]);
    let header = b64(json!({"alg": "EdDSA", "kid": kid}).to_string().as_bytes());
    let input = format!("{header}.{}", b64(doubled.as_bytes()));
    let signature = match &signer {
        TestSigner::Ed25519(pair) => pair.sign(input.as_bytes()),
        _ => unreachable!(),
    };
    let token = format!("{input}.{}", b64(signature.as_ref()));
    let err = verify(&token, &trust).unwrap_err();
    assert!(
        matches!(
            &err,
            AssertionError::IdToken(IdTokenError::Jws(JwsError::Json { .. }))
        ),
        "{err}"
    );
}

#[test]
fn token_size_is_limited_at_its_edge() {
    let trust = fixtures::trust_list();
    let at_limit = "a".repeat(limits::MAX_ID_TOKEN_BYTES);
    let over = "a".repeat(limits::MAX_ID_TOKEN_BYTES + 1);
    assert!(!matches!(
        verify(&at_limit, &trust),
        Err(AssertionError::IdToken(IdTokenError::TooLarge(_)))
    ));
    assert_eq!(
        verify(&over, &trust).unwrap_err(),
        AssertionError::IdToken(IdTokenError::TooLarge(limits::MAX_ID_TOKEN_BYTES + 1))
    );
}

#[test]
fn a_node_that_is_no_client_of_the_provider_is_refused() {
    let mut content = fixtures::trust_list_content();
    national(&mut content).clients.clear();
    let trust = TrustList::new(content).unwrap();
    let err = verify(&national_token(|_| {}), &trust).unwrap_err();
    assert!(
        matches!(err, AssertionError::IdToken(IdTokenError::NoClient { .. })),
        "{err}"
    );
}

#[test]
fn key_rollover_is_a_new_trust_list_version() {
    let old = TestSigner::es256();
    let new = TestSigner::es256();
    let before = trust_with_national_keys(&json!({"keys": [old.jwk("2027-1")]}));
    let during = trust_with_national_keys(&json!({"keys": [old.jwk("2027-1"), new.jwk("2027-2")]}));
    let after = trust_with_national_keys(&json!({"keys": [new.jwk("2027-2")]}));
    let old_token = old.token("2027-1", &claims());
    let new_token = new.token("2027-2", &claims());
    let refused_unknown = |r: Result<VerifiedAssertion, AssertionError>| {
        matches!(
            r,
            Err(AssertionError::IdToken(IdTokenError::UnknownKey { .. }))
        )
    };
    assert!(verify(&old_token, &before).is_ok());
    assert!(refused_unknown(verify(&new_token, &before)));
    assert!(verify(&old_token, &during).is_ok());
    assert!(verify(&new_token, &during).is_ok());
    assert!(refused_unknown(verify(&old_token, &after)));
    assert!(verify(&new_token, &after).is_ok());
    // The message says what to do.
    let message = verify(&new_token, &before).unwrap_err().to_string();
    assert!(
        message.contains("2027-2") && message.contains("trust list"),
        "{message}"
    );
}

#[test]
fn jwks_import_takes_signing_keys_and_skips_the_rest() {
    let rsa = TestSigner::rs256();
    let mut enc = TestSigner::es256().jwk("enc-1");
    enc["use"] = "enc".into();
    let jwks = json!({"keys": [
        rsa.jwk("sig-1"),
        enc,
        {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
        {"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA", "kid": "p384"},
    ]});
    let keys = keys_from_jwks(jwks.to_string().as_bytes()).unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].kid.as_deref(), Some("sig-1"));
    assert!(keys[0].allows(JwsAlgorithm::RS256) && keys[0].allows(JwsAlgorithm::PS256));
    assert!(!keys[0].allows(JwsAlgorithm::ES256));

    let none = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]});
    assert!(matches!(
        keys_from_jwks(none.to_string().as_bytes()),
        Err(OidcProviderError::Missing(_))
    ));
    let short_rsa = json!({"keys": [{"kty": "RSA", "n": b64(&[0xc5; 128]), "e": "AQAB"}]});
    assert!(matches!(
        keys_from_jwks(short_rsa.to_string().as_bytes()),
        Err(OidcProviderError::Key(_))
    ));
    assert!(matches!(
        keys_from_jwks(b"not json"),
        Err(OidcProviderError::Jwks(_))
    ));
}

#[test]
fn the_trust_list_refuses_provider_entries_that_cannot_work() {
    let refused = |change: &dyn Fn(&mut TrustListContent)| {
        let mut content = fixtures::trust_list_content();
        change(&mut content);
        TrustList::new(content).unwrap_err()
    };
    // A foreign provider whose tokens would carry a BSN.
    let err = refused(&|c| {
        c.identity_providers[1]
            .oidc
            .as_mut()
            .unwrap()
            .identifier_kind = IdentifierKind::Bsn;
    });
    assert!(
        matches!(err, TrustListError::ForeignBsnProvider(_)),
        "{err}"
    );
    // Two providers with one issuer.
    let err = refused(&|c| {
        let issuer = c.identity_providers[0]
            .oidc
            .as_ref()
            .unwrap()
            .issuer
            .clone();
        c.identity_providers[1].oidc.as_mut().unwrap().issuer = issuer;
    });
    assert!(matches!(err, TrustListError::Duplicate(_)), "{err}");
    // An issuer over plain HTTP.
    let err = refused(&|c| national(c).issuer = "http://login.nl.test".into());
    assert!(matches!(err, TrustListError::OidcProvider { .. }), "{err}");
    // Neither a key for assertions nor an OpenID side.
    let err = refused(&|c| {
        c.identity_providers[0].key = None;
        c.identity_providers[0].oidc = None;
    });
    assert!(
        matches!(err, TrustListError::ProviderWithoutProof(_)),
        "{err}"
    );
    // Too many keys, at the edge.
    let key = OidcKey {
        kid: None,
        alg: None,
        key: OidcPublicKey::Ed25519 {
            x: serde_bytes::ByteBuf::from(vec![7; 32]),
        },
    };
    let with_keys = |n: usize| {
        let mut content = fixtures::trust_list_content();
        national(&mut content).keys = vec![key.clone(); n];
        TrustList::new(content)
    };
    assert!(with_keys(limits::MAX_OIDC_KEYS).is_ok());
    assert!(with_keys(limits::MAX_OIDC_KEYS + 1).is_err());
    // An OpenID-only provider (no assertion key) is fine.
    let mut content = fixtures::trust_list_content();
    content.identity_providers[0].key = None;
    let trust = TrustList::new(content).unwrap();
    assert!(verify(&national_token(|_| {}), &trust).is_ok());
}

#[test]
fn an_identity_proof_verifies_either_kind() {
    let trust = fixtures::trust_list();
    let token = IdentityProof::IdToken(national_token(|_| {}));
    assert!(token.verify(&trust, &policy()).is_ok());
    let claims = IdentityClaims {
        issuer: fixtures::NATIONAL_IDP.parse().unwrap(),
        subject: "bsn:999999990".parse().unwrap(),
        family_name: "Jansen".into(),
        given_names: "Anna".into(),
        birth_date: "1980-04-01".into(),
        level_of_assurance: LevelOfAssurance::Substantial,
        audience: fixtures::home_id(),
        nonce: NONCE.as_bytes().to_vec(),
        issued_at: T0.minus_s(10),
        expires_at: T0.plus_s(200),
    };
    let bytes = IdentityAssertion::sign(&claims, &fixtures::key(fixtures::NATIONAL_IDP)).unwrap();
    let assertion = IdentityProof::Assertion(serde_bytes::ByteBuf::from(bytes));
    let verified = assertion.verify(&trust, &policy()).unwrap();
    assert_eq!(verified.authenticated_at, T0.minus_s(10));
}
