//! SD-JWT presentations (RFC 9901, Selective Disclosure for JWTs) in the
//! SD-JWT VC profile: `<issuer JWS>~<disclosure>~…~<key binding JWT>`.
//! Verification here is the format's own, with no trust decision: the
//! issuer's signature with a key the caller chose (from the trust list),
//! every disclosure against the `_sd` digests it must match exactly once,
//! and the key binding JWT against the holder key in `cnf`, the expected
//! `aud` and `nonce`, a fresh `iat` and `sd_hash` over the presentation.
//! What the credential says (a PID, its country) is the caller's to judge.

use std::collections::HashSet;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use crate::limits::{MAX_CLOCK_SKEW_S, MAX_SD_JWT_BYTES, MAX_SD_JWT_DISCLOSURES};
use crate::oidc::OidcKey;
use crate::oidc::jws::{JwsError, Typ, UnverifiedJws, key_from_jwk};
use crate::text::Timestamp;

/// Longest age of a key binding JWT (`iat`) accepted.
pub const MAX_KEY_BINDING_AGE_S: u64 = 5 * 60;
/// Deepest nesting of disclosed objects and arrays processed.
pub const MAX_SD_JWT_DEPTH: usize = 8;

/// Why an SD-JWT presentation is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdJwtError {
    #[error("SD-JWT presentation has {0} bytes, at most {max} are allowed", max = MAX_SD_JWT_BYTES)]
    TooLarge(usize),
    #[error("SD-JWT presentation has {0} disclosures, at most {max} are allowed", max = MAX_SD_JWT_DISCLOSURES)]
    TooManyDisclosures(usize),
    #[error("not an SD-JWT presentation: {0}")]
    Shape(&'static str),
    #[error("SD-JWT {part}: {error}")]
    Jws { part: &'static str, error: JwsError },
    #[error("the SD-JWT's issuer signature does not verify with the issuer's keys")]
    IssuerSignature,
    #[error("the SD-JWT uses _sd_alg {0:?}; only sha-256 is accepted")]
    DigestAlgorithm(String),
    #[error("disclosure {index} is not a base64url JSON array of 2 or 3 members")]
    Disclosure { index: usize },
    #[error("disclosure {index} matches no digest of the credential (tampered or extra)")]
    UnmatchedDisclosure { index: usize },
    #[error("a digest of the credential is matched twice")]
    DuplicateDigest,
    #[error("disclosed claim {0:?} is not allowed or already present")]
    ClaimName(String),
    #[error("the credential is nested deeper than {MAX_SD_JWT_DEPTH} levels")]
    TooDeep,
    #[error("the presentation has no key binding JWT")]
    NoKeyBinding,
    #[error("the credential has no holder key (cnf.jwk)")]
    NoHolderKey,
    #[error("the key binding JWT is not signed by the credential's holder key")]
    KeyBindingSignature,
    #[error("the key binding JWT's {claim} is wrong: {problem}")]
    KeyBinding {
        claim: &'static str,
        problem: &'static str,
    },
    #[error("the credential claim {claim}: {problem}")]
    Claim {
        claim: &'static str,
        problem: &'static str,
    },
    #[error("the credential expired at {0}")]
    Expired(Timestamp),
    #[error("the credential is not valid before {0}")]
    NotYetValid(Timestamp),
}

impl SdJwtError {
    /// The reason code a refusal for this error carries.
    pub fn reason(&self) -> crate::evidence::ReasonCode {
        use crate::evidence::ReasonCode;
        match self {
            SdJwtError::TooLarge(_) => ReasonCode::TooLarge,
            SdJwtError::IssuerSignature | SdJwtError::KeyBindingSignature => {
                ReasonCode::BadSignature
            }
            SdJwtError::KeyBinding { claim: "aud", .. } => ReasonCode::WrongAudience,
            SdJwtError::KeyBinding { claim: "nonce", .. } => ReasonCode::Replayed,
            SdJwtError::Expired(_) => ReasonCode::Expired,
            SdJwtError::NotYetValid(_) => ReasonCode::NotYetValid,
            _ => ReasonCode::Malformed,
        }
    }
}

/// What the key binding must show.
#[derive(Debug, Clone)]
pub struct KeyBindingPolicy<'a> {
    /// The verifier's client id: the KB-JWT's `aud`.
    pub audience: &'a str,
    /// The nonce of the verifier's request; `None` when the caller checks
    /// it itself (the gateway, which never saw the request, checks that
    /// the nonce is used once).
    pub nonce: Option<&'a str>,
    pub now: Timestamp,
}

/// A presentation split into its parts, nothing verified yet.
pub struct SdJwtPresentation<'a> {
    issuer_jws: &'a str,
    disclosures: Vec<&'a str>,
    key_binding: Option<&'a str>,
    /// Everything up to and including the last `~`: what `sd_hash` covers.
    bound_part: &'a str,
}

/// A verified presentation: the credential's claims with the disclosed
/// ones put in place, and when it was presented.
#[derive(Debug, Clone)]
pub struct VerifiedSdJwt {
    pub claims: Map<String, Value>,
    /// The issuer JWS's `kid`, if any.
    pub issuer_kid: Option<String>,
    pub presented_at: Timestamp,
    /// The key binding's `nonce`: the verifier's request it answers.
    pub nonce: String,
}

impl<'a> SdJwtPresentation<'a> {
    pub fn parse(presentation: &'a str) -> Result<SdJwtPresentation<'a>, SdJwtError> {
        if presentation.len() > MAX_SD_JWT_BYTES {
            return Err(SdJwtError::TooLarge(presentation.len()));
        }
        let last_tilde = presentation
            .rfind('~')
            .ok_or(SdJwtError::Shape("no ~ separator"))?;
        let (bound_part, kb) = presentation.split_at(last_tilde + 1);
        let mut parts = bound_part[..last_tilde].split('~');
        let issuer_jws = parts.next().unwrap_or_default();
        let disclosures: Vec<&str> = parts.collect();
        if disclosures.len() > MAX_SD_JWT_DISCLOSURES {
            return Err(SdJwtError::TooManyDisclosures(disclosures.len()));
        }
        if issuer_jws.is_empty() || disclosures.iter().any(|d| d.is_empty()) {
            return Err(SdJwtError::Shape("an empty part"));
        }
        Ok(SdJwtPresentation {
            issuer_jws,
            disclosures,
            key_binding: (!kb.is_empty()).then_some(kb),
            bound_part,
        })
    }

    /// The issuer JWS's claims before verification (to find its issuer).
    pub fn unverified_issuer(&self) -> Result<Option<String>, SdJwtError> {
        let jws = self.issuer()?;
        Ok(jws
            .payload
            .get("iss")
            .and_then(Value::as_str)
            .map(str::to_owned))
    }

    /// The issuer JWS's claims before verification (where its status list is).
    pub fn unverified_claims(&self) -> Result<Map<String, Value>, SdJwtError> {
        Ok(self.issuer()?.payload)
    }

    fn issuer(&self) -> Result<UnverifiedJws<'a>, SdJwtError> {
        UnverifiedJws::parse_typed(self.issuer_jws, Typ::Exactly("dc+sd-jwt")).map_err(|error| {
            SdJwtError::Jws {
                part: "issuer JWT",
                error,
            }
        })
    }

    /// Verifies the presentation: the issuer's signature with one of
    /// `issuer_keys`, the disclosures, validity, and the key binding.
    pub fn verify(
        &self,
        issuer_keys: &[OidcKey],
        policy: &KeyBindingPolicy<'_>,
    ) -> Result<VerifiedSdJwt, SdJwtError> {
        let jws = self.issuer()?;
        let signed = issuer_keys
            .iter()
            .filter(|k| jws.kid.is_none() || k.kid == jws.kid)
            .any(|k| jws.verified_by(k));
        if !signed {
            return Err(SdJwtError::IssuerSignature);
        }
        match jws.payload.get("_sd_alg").and_then(Value::as_str) {
            None | Some("sha-256") => {}
            Some(other) => return Err(SdJwtError::DigestAlgorithm(other.to_owned())),
        }
        let mut claims = jws.payload.clone();
        let mut disclosed = decode_disclosures(&self.disclosures)?;
        let mut seen = HashSet::new();
        process_object(&mut claims, &mut disclosed, &mut seen, 0)?;
        if let Some(index) = disclosed.iter().position(Option::is_some) {
            return Err(SdJwtError::UnmatchedDisclosure { index });
        }
        claims.remove("_sd_alg");
        check_validity(&claims, policy.now)?;
        let (presented_at, nonce) = self.check_key_binding(&claims, policy)?;
        Ok(VerifiedSdJwt {
            claims,
            issuer_kid: jws.kid.clone(),
            presented_at,
            nonce,
        })
    }

    fn check_key_binding(
        &self,
        claims: &Map<String, Value>,
        policy: &KeyBindingPolicy<'_>,
    ) -> Result<(Timestamp, String), SdJwtError> {
        let kb = self.key_binding.ok_or(SdJwtError::NoKeyBinding)?;
        let holder = claims
            .get("cnf")
            .and_then(|c| c.get("jwk"))
            .and_then(|jwk| key_from_jwk(jwk).ok().flatten())
            .ok_or(SdJwtError::NoHolderKey)?;
        let jws = UnverifiedJws::parse_typed(kb, Typ::Exactly("kb+jwt")).map_err(|error| {
            SdJwtError::Jws {
                part: "key binding JWT",
                error,
            }
        })?;
        if !jws.verified_by(&holder) {
            return Err(SdJwtError::KeyBindingSignature);
        }
        let bad = |claim, problem| SdJwtError::KeyBinding { claim, problem };
        let text = |name| jws.payload.get(name).and_then(Value::as_str);
        if text("aud") != Some(policy.audience) {
            return Err(bad("aud", "not this verifier"));
        }
        let nonce = text("nonce").ok_or(bad("nonce", "missing"))?;
        if policy.nonce.is_some_and(|expected| expected != nonce) {
            return Err(bad("nonce", "not the nonce of this request"));
        }
        let sd_hash = URL_SAFE_NO_PAD.encode(Sha256::digest(self.bound_part.as_bytes()));
        if text("sd_hash") != Some(sd_hash.as_str()) {
            return Err(bad("sd_hash", "does not cover this presentation"));
        }
        let iat = jws
            .payload
            .get("iat")
            .and_then(Value::as_u64)
            .map(Timestamp)
            .ok_or(bad("iat", "missing"))?;
        if iat > policy.now.plus_s(MAX_CLOCK_SKEW_S) {
            return Err(bad("iat", "in the future"));
        }
        if policy.now.0.saturating_sub(iat.0) > MAX_KEY_BINDING_AGE_S {
            return Err(bad("iat", "too old"));
        }
        Ok((iat, nonce.to_owned()))
    }
}

/// Each disclosure as (digest, salt-less content), in presentation order.
type Disclosed = Vec<Option<(String, Option<String>, Value)>>;

fn decode_disclosures(disclosures: &[&str]) -> Result<Disclosed, SdJwtError> {
    let mut out = Vec::with_capacity(disclosures.len());
    for (index, d) in disclosures.iter().enumerate() {
        let bad = || SdJwtError::Disclosure { index };
        let json = URL_SAFE_NO_PAD.decode(d).map_err(|_| bad())?;
        let Value::Array(parts) = serde_json::from_slice(&json).map_err(|_| bad())? else {
            return Err(bad());
        };
        let digest = URL_SAFE_NO_PAD.encode(Sha256::digest(d.as_bytes()));
        let entry = match parts.as_slice() {
            [Value::String(_salt), Value::String(name), value] => {
                (digest, Some(name.clone()), value.clone())
            }
            [Value::String(_salt), value] => (digest, None, value.clone()),
            _ => return Err(bad()),
        };
        out.push(Some(entry));
    }
    Ok(out)
}

/// Takes the disclosure whose digest is `digest` (each is used once).
fn take(disclosed: &mut Disclosed, digest: &str) -> Option<(Option<String>, Value)> {
    disclosed
        .iter_mut()
        .find(|d| d.as_ref().is_some_and(|(x, _, _)| x == digest))
        .and_then(Option::take)
        .map(|(_, name, value)| (name, value))
}

fn process_object(
    object: &mut Map<String, Value>,
    disclosed: &mut Disclosed,
    seen: &mut HashSet<String>,
    depth: usize,
) -> Result<(), SdJwtError> {
    if depth > MAX_SD_JWT_DEPTH {
        return Err(SdJwtError::TooDeep);
    }
    if let Some(digests) = object.remove("_sd") {
        let Value::Array(digests) = digests else {
            return Err(SdJwtError::Claim {
                claim: "_sd",
                problem: "not an array",
            });
        };
        for digest in digests {
            let Some(digest) = digest.as_str() else {
                return Err(SdJwtError::Claim {
                    claim: "_sd",
                    problem: "a digest is not a string",
                });
            };
            if !seen.insert(digest.to_owned()) {
                return Err(SdJwtError::DuplicateDigest);
            }
            // A digest without its disclosure is a claim not disclosed.
            if let Some((name, value)) = take(disclosed, digest) {
                let Some(name) = name else {
                    return Err(SdJwtError::ClaimName("(an array element)".into()));
                };
                if name == "_sd" || name == "..." || object.contains_key(&name) {
                    return Err(SdJwtError::ClaimName(name));
                }
                object.insert(name, value);
            }
        }
    }
    for value in object.values_mut() {
        process_value(value, disclosed, seen, depth + 1)?;
    }
    Ok(())
}

fn process_value(
    value: &mut Value,
    disclosed: &mut Disclosed,
    seen: &mut HashSet<String>,
    depth: usize,
) -> Result<(), SdJwtError> {
    match value {
        Value::Object(object) => process_object(object, disclosed, seen, depth),
        Value::Array(items) => {
            let mut kept = Vec::with_capacity(items.len());
            for item in items.drain(..) {
                let digest = match &item {
                    Value::Object(o) if o.len() == 1 => o.get("...").and_then(Value::as_str),
                    _ => None,
                };
                if let Some(digest) = digest
                    && !seen.insert(digest.to_owned())
                {
                    return Err(SdJwtError::DuplicateDigest);
                }
                match digest {
                    Some(digest) => match take(disclosed, digest) {
                        Some((None, mut element)) => {
                            process_value(&mut element, disclosed, seen, depth + 1)?;
                            kept.push(element);
                        }
                        Some((Some(name), _)) => return Err(SdJwtError::ClaimName(name)),
                        None => {}
                    },
                    None => {
                        let mut item = item;
                        process_value(&mut item, disclosed, seen, depth + 1)?;
                        kept.push(item);
                    }
                }
            }
            *items = kept;
            Ok(())
        }
        _ => Ok(()),
    }
}

/// `exp` and `nbf` of the credential, if it has them.
fn check_validity(claims: &Map<String, Value>, now: Timestamp) -> Result<(), SdJwtError> {
    let date = |name| claims.get(name).and_then(Value::as_u64).map(Timestamp);
    if let Some(exp) = date("exp")
        && now >= exp
    {
        return Err(SdJwtError::Expired(exp));
    }
    if let Some(nbf) = date("nbf")
        && nbf > now.plus_s(MAX_CLOCK_SKEW_S)
    {
        return Err(SdJwtError::NotYetValid(nbf));
    }
    Ok(())
}
