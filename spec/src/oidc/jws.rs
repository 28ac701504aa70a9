//! Compact JWS (RFC 7515): three base64url parts, a protected header whose
//! `alg` is one of ours, and a signature checked with *ring* against a key
//! the caller chose from the trust list.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_bytes::ByteBuf;
use serde_json::{Map, Value};

use super::{JwsAlgorithm, OidcKey, OidcPublicKey};

/// Why a JWS is refused before its claims are looked at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    #[error("not a compact JWS: {0}")]
    Shape(&'static str),
    #[error("encrypted ID tokens (JWE) are not accepted")]
    Encrypted,
    #[error("the JWS {part} is not valid base64url")]
    Base64 { part: &'static str },
    #[error("the JWS {part} is not a JSON object: {problem}")]
    Json { part: &'static str, problem: String },
    #[error("the JWS header has no alg")]
    NoAlgorithm,
    #[error("the JWS algorithm {0:?} is not accepted (RS256, PS256, ES256 or EdDSA)")]
    Algorithm(String),
    #[error("the JWS header has crit: extensions are not understood here")]
    Critical,
    #[error("the JWS header's typ is {found:?}; expected {expected}")]
    Type {
        found: String,
        expected: &'static str,
    },
}

/// What a JWS's `typ` header must be.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Typ {
    /// An ID token: `JWT`, or no `typ`.
    JwtOrNone,
    /// Exactly this media type (`dc+sd-jwt`, `kb+jwt`).
    Exactly(&'static str),
}

impl Typ {
    fn describe(self) -> &'static str {
        match self {
            Typ::JwtOrNone => "JWT or none",
            Typ::Exactly(t) => t,
        }
    }
}

/// A compact JWS split and decoded, its signature not yet checked.
pub(crate) struct UnverifiedJws<'a> {
    signing_input: &'a [u8],
    signature: Vec<u8>,
    pub alg: JwsAlgorithm,
    pub kid: Option<String>,
    pub payload: Map<String, Value>,
}

impl<'a> UnverifiedJws<'a> {
    /// An ID token: `typ` is `JWT` or absent.
    pub fn parse(token: &'a str) -> Result<UnverifiedJws<'a>, JwsError> {
        Self::parse_typed(token, Typ::JwtOrNone)
    }

    /// A JWS whose `typ` must be as given.
    pub fn parse_typed(token: &'a str, typ: Typ) -> Result<UnverifiedJws<'a>, JwsError> {
        let parts: Vec<&str> = token.split('.').collect();
        match parts.len() {
            3 => {}
            5 => return Err(JwsError::Encrypted),
            _ => return Err(JwsError::Shape("expected three parts separated by dots")),
        }
        let header = object("header", &decode("header", parts[0])?)?;
        let alg = match header.get("alg") {
            Some(Value::String(name)) => {
                JwsAlgorithm::from_name(name).ok_or_else(|| JwsError::Algorithm(name.clone()))?
            }
            Some(other) => return Err(JwsError::Algorithm(other.to_string())),
            None => return Err(JwsError::NoAlgorithm),
        };
        if header.contains_key("crit") {
            return Err(JwsError::Critical);
        }
        let found = header.get("typ").map(|t| t.as_str().unwrap_or_default());
        let fits = match (typ, found) {
            (Typ::JwtOrNone, None) => true,
            (Typ::JwtOrNone, Some(t)) => t.eq_ignore_ascii_case("JWT"),
            (Typ::Exactly(expected), Some(t)) => t == expected,
            (Typ::Exactly(_), None) => false,
        };
        if !fits {
            return Err(JwsError::Type {
                found: found.unwrap_or("(none)").to_owned(),
                expected: typ.describe(),
            });
        }
        let kid = header.get("kid").and_then(Value::as_str).map(str::to_owned);
        let payload = object("payload", &decode("payload", parts[1])?)?;
        let signature = decode("signature", parts[2])?;
        let signing_input = &token.as_bytes()[..parts[0].len() + 1 + parts[1].len()];
        Ok(UnverifiedJws {
            signing_input,
            signature,
            alg,
            kid,
            payload,
        })
    }

    /// Whether `key` made the signature (with the header's algorithm).
    pub fn verified_by(&self, key: &OidcKey) -> bool {
        if !key.allows(self.alg) {
            return false;
        }
        let (input, sig) = (self.signing_input, self.signature.as_slice());
        match (&key.key, self.alg) {
            (OidcPublicKey::Rsa { n, e }, JwsAlgorithm::RS256) => RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, input, sig)
                .is_ok(),
            (OidcPublicKey::Rsa { n, e }, JwsAlgorithm::PS256) => RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PSS_2048_8192_SHA256, input, sig)
                .is_ok(),
            (OidcPublicKey::P256 { x, y }, JwsAlgorithm::ES256) => {
                let mut point = Vec::with_capacity(65);
                point.push(0x04);
                point.extend_from_slice(x);
                point.extend_from_slice(y);
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(input, sig)
                    .is_ok()
            }
            (OidcPublicKey::Ed25519 { x }, JwsAlgorithm::EdDSA) => {
                UnparsedPublicKey::new(&signature::ED25519, x.as_slice())
                    .verify(input, sig)
                    .is_ok()
            }
            _ => false,
        }
    }
}

fn decode(part: &'static str, text: &str) -> Result<Vec<u8>, JwsError> {
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| JwsError::Base64 { part })
}

/// A JSON object whose member names are unique: a duplicated claim is
/// refused rather than resolved (RFC 7515 §5.2 lets a parser do either, and
/// two parsers resolving it differently is how tokens are smuggled).
fn object(part: &'static str, bytes: &[u8]) -> Result<Map<String, Value>, JwsError> {
    let unique: UniqueObject = serde_json::from_slice(bytes).map_err(|e| JwsError::Json {
        part,
        problem: e.to_string(),
    })?;
    Ok(unique.0)
}

struct UniqueObject(Map<String, Value>);

impl<'de> serde::Deserialize<'de> for UniqueObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = UniqueObject;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<UniqueObject, A::Error> {
                let mut members = Map::new();
                while let Some((name, value)) = map.next_entry::<String, Value>()? {
                    if members.contains_key(&name) {
                        return Err(serde::de::Error::custom(format!(
                            "member {name:?} appears twice"
                        )));
                    }
                    members.insert(name, value);
                }
                Ok(UniqueObject(members))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// One JWK as a signing key of ours; `None` for a key this verifier does
/// not use (an encryption key, or a kind it does not accept).
pub(crate) fn key_from_jwk(jwk: &Value) -> Result<Option<OidcKey>, String> {
    let text = |name: &str| jwk.get(name).and_then(Value::as_str);
    if text("use").is_some_and(|u| u != "sig") {
        return Ok(None);
    }
    let bytes = |name: &str| -> Result<ByteBuf, String> {
        let value = text(name).ok_or_else(|| format!("no {name}"))?;
        URL_SAFE_NO_PAD
            .decode(value)
            .map(ByteBuf::from)
            .map_err(|_| format!("{name} is not base64url"))
    };
    let key = match (text("kty"), text("crv")) {
        (Some("RSA"), _) => OidcPublicKey::Rsa {
            n: bytes("n")?,
            e: bytes("e")?,
        },
        (Some("EC"), Some("P-256")) => OidcPublicKey::P256 {
            x: bytes("x")?,
            y: bytes("y")?,
        },
        (Some("OKP"), Some("Ed25519")) => OidcPublicKey::Ed25519 { x: bytes("x")? },
        _ => return Ok(None),
    };
    let alg = match text("alg") {
        None => None,
        Some(name) => match JwsAlgorithm::from_name(name) {
            Some(alg) => Some(alg),
            // A key for an algorithm we do not accept (RS512, ES384…).
            None => return Ok(None),
        },
    };
    Ok(Some(OidcKey {
        kid: text("kid").map(str::to_owned),
        alg,
        key,
    }))
}
