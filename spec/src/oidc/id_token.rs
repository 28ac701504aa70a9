//! Verifying an OpenID Connect ID token, field by field (`SPEC.md` §9.4):
//! the issuer in the trust list, its signature with a key listed for that
//! issuer, the audience (the carrying home node's client id), the times,
//! the nonce, the level of assurance from `acr`, the person's identifier
//! with the same country rules as a COSE assertion, and the person's names.

use serde_json::{Map, Value};

use super::jws::{JwsError, UnverifiedJws};
use super::{IdentifierKind, OidcProvider};
use crate::assertion::{
    AssertionError, AssertionPolicy, IdentityClaims, VerifiedAssertion, check_provider_vouches,
};
use crate::cose::Digest;
use crate::ids::{NodeId, Recipient};
use crate::limits::*;
use crate::text::Timestamp;
use crate::trust::{IdentityProviderEntry, LevelOfAssurance, TrustList};

/// Why an ID token is refused (what is particular to ID tokens; times,
/// levels and country rules are [`AssertionError`]s as for assertions).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdTokenError {
    #[error("ID token has {0} bytes, at most {max} are allowed", max = MAX_ID_TOKEN_BYTES)]
    TooLarge(usize),
    #[error("ID token: {0}")]
    Jws(#[from] JwsError),
    #[error("ID token issuer {0:?} is not an identity provider of the trust list")]
    UnknownIssuer(String),
    #[error(
        "ID token of {issuer} is signed with key {kid:?}, which the trust list does not list for it (a new key needs a new trust list version)"
    )]
    UnknownKey { issuer: NodeId, kid: Option<String> },
    #[error("ID token of {issuer}: the signature does not verify")]
    BadSignature { issuer: NodeId },
    #[error("ID token claim {claim}: {problem}")]
    Claim {
        claim: &'static str,
        problem: &'static str,
    },
    #[error("ID token of {issuer}: its identifier claim {claim} is not a valid {kind}")]
    Identifier {
        issuer: NodeId,
        claim: String,
        kind: &'static str,
    },
    #[error("home node {node} is not a client of identity provider {issuer} in the trust list")]
    NoClient { issuer: NodeId, node: NodeId },
    #[error("ID token is for {found:?}, not for this node's client id {expected:?}")]
    Audience {
        expected: String,
        found: Vec<String>,
    },
    #[error("ID token of {issuer} has acr {acr:?}, which the trust list does not map to a level")]
    UnknownAcr { issuer: NodeId, acr: String },
    #[error("ID token is valid for {0} s, at most {max} s is allowed", max = MAX_ID_TOKEN_LIFETIME_S)]
    LifetimeTooLong(u64),
}

impl IdTokenError {
    /// The reason code a refusal for this error carries.
    pub fn reason(&self) -> crate::evidence::ReasonCode {
        use crate::evidence::ReasonCode;
        match self {
            IdTokenError::TooLarge(_) => ReasonCode::TooLarge,
            IdTokenError::UnknownIssuer(_) | IdTokenError::UnknownKey { .. } => {
                ReasonCode::UnknownSigner
            }
            IdTokenError::BadSignature { .. } => ReasonCode::BadSignature,
            IdTokenError::NoClient { .. } | IdTokenError::Audience { .. } => {
                ReasonCode::WrongAudience
            }
            IdTokenError::UnknownAcr { .. } => ReasonCode::AssuranceTooLow,
            _ => ReasonCode::Malformed,
        }
    }
}

/// Checks OpenID Connect ID tokens.
pub struct IdToken;

impl IdToken {
    /// Verifies `token` for `policy.audience` (the home node that carries
    /// it, whose client id at the issuer must be the token's `aud`). As for
    /// an assertion, the caller must still refuse a nonce it has seen.
    pub fn verify(
        token: &str,
        trust: &TrustList,
        policy: &AssertionPolicy,
    ) -> Result<VerifiedAssertion, AssertionError> {
        if token.len() > MAX_ID_TOKEN_BYTES {
            return Err(IdTokenError::TooLarge(token.len()).into());
        }
        let jws = UnverifiedJws::parse(token).map_err(IdTokenError::from)?;
        let (idp, oidc) = issuer(trust, &jws.payload)?;
        check_signature(&jws, idp, oidc)?;
        let claims = &jws.payload;
        check_audience(claims, idp, oidc, &policy.audience)?;
        let times = Times::of(claims)?;
        let level = level(claims, idp, oidc)?;
        let subject = identifier(claims, idp, oidc)?;
        check_provider_vouches(idp, &subject, level)?;
        let identity = IdentityClaims {
            issuer: idp.id.clone(),
            subject,
            family_name: text(claims, "family_name")?.to_owned(),
            given_names: text(claims, "given_name")?.to_owned(),
            birth_date: text(claims, "birthdate")?.to_owned(),
            level_of_assurance: level,
            audience: policy.audience.clone(),
            nonce: text(claims, "nonce")?.as_bytes().to_vec(),
            issued_at: times.issued_at,
            expires_at: times.expires_at,
        };
        identity.validate_person()?;
        times.check(policy.now)?;
        policy.require_level(level)?;
        Ok(VerifiedAssertion {
            claims: identity,
            digest: Digest::of(token.as_bytes()),
            authenticated_at: times.authenticated_at,
        })
    }
}

/// The trust list's provider whose issuer the token names.
fn issuer<'t>(
    trust: &'t TrustList,
    claims: &Map<String, Value>,
) -> Result<(&'t IdentityProviderEntry, &'t OidcProvider), IdTokenError> {
    let iss = text_claim(claims, "iss")?;
    trust
        .content()
        .identity_providers
        .iter()
        .find_map(|idp| {
            let oidc = idp.oidc.as_ref()?;
            (oidc.issuer == iss).then_some((idp, oidc))
        })
        .ok_or_else(|| IdTokenError::UnknownIssuer(iss.chars().take(100).collect()))
}

/// The signature, with a key the trust list lists for the issuer: the one
/// the `kid` header names, or without a `kid`, any of its keys that fits.
fn check_signature(
    jws: &UnverifiedJws<'_>,
    idp: &IdentityProviderEntry,
    oidc: &OidcProvider,
) -> Result<(), IdTokenError> {
    let mut candidates = oidc
        .keys
        .iter()
        .filter(|k| k.allows(jws.alg))
        .filter(|k| jws.kid.is_none() || k.kid == jws.kid)
        .peekable();
    if candidates.peek().is_none() {
        return Err(IdTokenError::UnknownKey {
            issuer: idp.id.clone(),
            kid: jws.kid.clone(),
        });
    }
    if candidates.any(|key| jws.verified_by(key)) {
        Ok(())
    } else {
        Err(IdTokenError::BadSignature {
            issuer: idp.id.clone(),
        })
    }
}

/// `aud` must hold the home node's client id; with several audiences, `azp`
/// must name it too (OpenID Connect Core §3.1.3.7).
fn check_audience(
    claims: &Map<String, Value>,
    idp: &IdentityProviderEntry,
    oidc: &OidcProvider,
    node: &NodeId,
) -> Result<(), IdTokenError> {
    let client = oidc.client_of(node).ok_or_else(|| IdTokenError::NoClient {
        issuer: idp.id.clone(),
        node: node.clone(),
    })?;
    let audiences: Vec<String> = match claims.get("aud") {
        Some(Value::String(one)) => vec![one.clone()],
        Some(Value::Array(many)) if many.len() <= MAX_ID_TOKEN_AUDIENCES => many
            .iter()
            .map(|a| a.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or(IdTokenError::Claim {
                claim: "aud",
                problem: "expected strings",
            })?,
        _ => {
            return Err(IdTokenError::Claim {
                claim: "aud",
                problem: "missing, or not a string or a short array of strings",
            });
        }
    };
    let azp = claims.get("azp").and_then(Value::as_str);
    let named = audiences.iter().any(|a| a == client);
    let azp_fits = match azp {
        Some(azp) => azp == client,
        None => audiences.len() == 1,
    };
    if named && azp_fits {
        Ok(())
    } else {
        Err(IdTokenError::Audience {
            expected: client.to_owned(),
            found: audiences,
        })
    }
}

/// The token's times, in seconds since the epoch.
struct Times {
    issued_at: Timestamp,
    expires_at: Timestamp,
    not_before: Option<Timestamp>,
    authenticated_at: Timestamp,
}

impl Times {
    fn of(claims: &Map<String, Value>) -> Result<Times, IdTokenError> {
        let times = Times {
            issued_at: numeric_date(claims, "iat")?.ok_or(missing("iat"))?,
            expires_at: numeric_date(claims, "exp")?.ok_or(missing("exp"))?,
            not_before: numeric_date(claims, "nbf")?,
            // Required here: a change needs a login of minutes ago, and only
            // auth_time says when the person last logged in.
            authenticated_at: numeric_date(claims, "auth_time")?.ok_or(missing("auth_time"))?,
        };
        let lifetime = times.expires_at.0.saturating_sub(times.issued_at.0);
        if times.expires_at <= times.issued_at || lifetime > MAX_ID_TOKEN_LIFETIME_S {
            return Err(IdTokenError::LifetimeTooLong(lifetime));
        }
        if times.authenticated_at > times.issued_at.plus_s(MAX_CLOCK_SKEW_S) {
            return Err(IdTokenError::Claim {
                claim: "auth_time",
                problem: "after the token was issued",
            });
        }
        Ok(times)
    }

    fn check(&self, now: Timestamp) -> Result<(), AssertionError> {
        if now >= self.expires_at {
            return Err(AssertionError::Expired(self.expires_at));
        }
        let latest = now.plus_s(MAX_CLOCK_SKEW_S);
        if self.issued_at > latest {
            return Err(AssertionError::NotYetValid(self.issued_at));
        }
        if let Some(not_before) = self.not_before
            && not_before > latest
        {
            return Err(AssertionError::NotYetValid(not_before));
        }
        Ok(())
    }
}

/// The level the issuer's `acr` stands for.
fn level(
    claims: &Map<String, Value>,
    idp: &IdentityProviderEntry,
    oidc: &OidcProvider,
) -> Result<LevelOfAssurance, IdTokenError> {
    let acr = text_claim(claims, "acr")?;
    oidc.acr_levels
        .get(acr)
        .copied()
        .ok_or_else(|| IdTokenError::UnknownAcr {
            issuer: idp.id.clone(),
            acr: acr.chars().take(100).collect(),
        })
}

/// The person's identifier from the issuer's identifier claim. The value is
/// personal data: an error names the claim, never the value.
fn identifier(
    claims: &Map<String, Value>,
    idp: &IdentityProviderEntry,
    oidc: &OidcProvider,
) -> Result<Recipient, IdTokenError> {
    let claim = oidc.identifier_claim.as_str();
    let (value, kind) = match single(claims, claim) {
        Some(Value::String(value)) => (value.as_str(), oidc.identifier_kind),
        _ => {
            return Err(IdTokenError::Claim {
                claim: "identifier",
                problem: "the provider's identifier claim is missing or not a string",
            });
        }
    };
    let bad = |kind| IdTokenError::Identifier {
        issuer: idp.id.clone(),
        claim: claim.to_owned(),
        kind,
    };
    match kind {
        IdentifierKind::Bsn => value.parse().map(Recipient::Bsn).map_err(|_| bad("BSN")),
        IdentifierKind::EidasPersonId => value
            .parse()
            .map(Recipient::Eidas)
            .map_err(|_| bad("eIDAS person identifier")),
    }
}

/// A single-valued claim. A SAML bridge passes attributes on as lists, so a
/// list of exactly one value counts as that value; a list of several is
/// not a single value (the caller then finds the wrong type).
fn single<'a>(claims: &'a Map<String, Value>, claim: &str) -> Option<&'a Value> {
    match claims.get(claim)? {
        Value::Array(values) if values.len() == 1 => values.first(),
        value => Some(value),
    }
}

fn missing(claim: &'static str) -> IdTokenError {
    IdTokenError::Claim {
        claim,
        problem: "missing",
    }
}

fn text_claim<'a>(
    claims: &'a Map<String, Value>,
    claim: &'static str,
) -> Result<&'a str, IdTokenError> {
    match single(claims, claim) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(IdTokenError::Claim {
            claim,
            problem: "not a string",
        }),
        None => Err(missing(claim)),
    }
}

fn text<'a>(
    claims: &'a Map<String, Value>,
    claim: &'static str,
) -> Result<&'a str, AssertionError> {
    Ok(text_claim(claims, claim)?)
}

/// A NumericDate (RFC 7519 §2): seconds since the epoch, possibly with a
/// fraction, which is dropped.
fn numeric_date(
    claims: &Map<String, Value>,
    claim: &'static str,
) -> Result<Option<Timestamp>, IdTokenError> {
    let Some(value) = single(claims, claim) else {
        return Ok(None);
    };
    let bad = IdTokenError::Claim {
        claim,
        problem: "not a date in seconds since 1970",
    };
    let Value::Number(number) = value else {
        return Err(bad);
    };
    if let Some(seconds) = number.as_u64() {
        return Ok(Some(Timestamp(seconds)));
    }
    match number.as_f64() {
        Some(f) if f.is_finite() && f >= 0.0 && f < u64::MAX as f64 => {
            Ok(Some(Timestamp(f as u64)))
        }
        _ => Err(bad),
    }
}
