//! A person's PID (Person Identification Data) from an EU Digital Identity
//! Wallet as an identity proof (`SPEC.md` §8.3): an SD-JWT VC of type
//! `urn:eudi:pid:1`, presented over OpenID4VP to a home node. Verified here
//! against the PID providers of the trust list: the issuer's signature, the
//! disclosures, the key binding to the home node's client id, validity, the
//! credential's status, and the country rules. The person's registry
//! identifier is derived from the PID ([`pid_subject`]).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use crate::assertion::{
    AssertionError, AssertionPolicy, IdentityClaims, VerifiedAssertion, check_provider_vouches,
};
use crate::cose::Digest;
use crate::ids::{CountryCode, NodeId, Recipient};
use crate::limits::*;
use crate::oidc::OidcKey;
use crate::oidc::jws::{Typ, UnverifiedJws};
use crate::sd_jwt::{KeyBindingPolicy, MAX_KEY_BINDING_AGE_S, SdJwtError, SdJwtPresentation};
use crate::text::{Timestamp, check_line};
use crate::trust::{IdentityProviderEntry, TrustList};

/// The credential type of a PID in SD-JWT VC format (PID Rulebook, ARF
/// Annex 3.01).
pub const PID_VCT: &str = "urn:eudi:pid:1";
/// The credential format of OpenID4VP and its DCQL queries.
pub const PID_FORMAT: &str = "dc+sd-jwt";
/// The claims a home node asks for: the names, the birth date, the country
/// that issued the PID and the identifier the registry key is made from.
/// (The rulebook's `birth_date` is `birthdate` in the SD-JWT VC encoding.)
pub const PID_REQUESTED_CLAIMS: [&str; 5] = [
    "family_name",
    "given_name",
    "birthdate",
    "issuing_country",
    "personal_administrative_number",
];
/// The prefix of a verifier's client id that is the SHA-256 hash of its
/// X.509 certificate (OpenID4VP 1.0 §5.9.3).
pub const X509_HASH_PREFIX: &str = "x509_hash:";

/// What the trust list says about a PID provider: the `iss` of the
/// credentials it issues and the keys it signs them (and its status lists)
/// with. It is the `pid` part of an identity provider entry, whose country
/// and highest level apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PidProvider {
    /// The `iss` of its credentials, exactly (an `https://` URL).
    pub issuer: String,
    /// Its signing keys. A rollover is a new trust list version.
    pub keys: Vec<OidcKey>,
}

impl PidProvider {
    /// The checks the trust list makes of each PID provider part.
    pub fn validate(&self) -> Result<(), crate::oidc::OidcProviderError> {
        crate::oidc::check_issuer(&self.issuer)?;
        crate::oidc::check_keys(&self.keys)
    }
}

/// Why a PID presentation is refused (what is particular to PIDs; times,
/// levels and country rules are [`AssertionError`]s as for every proof).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PidError {
    #[error("PID presentation: {0}")]
    SdJwt(#[from] SdJwtError),
    #[error("PID issuer {0:?} is not a PID provider of the trust list")]
    UnknownIssuer(String),
    #[error("the credential is a {0:?}, not a PID ({PID_VCT})")]
    NotAPid(String),
    #[error("PID claim {claim}: {problem}")]
    Claim {
        claim: &'static str,
        problem: &'static str,
    },
    #[error(
        "this PID does not carry a personal administrative number, which Estafette needs to know it is the same person at every login; log in with your country's eID instead"
    )]
    NoPersonIdentifier,
    #[error("node {0} is not a home node of the trust list, so it has no verifier client id")]
    NoClient(NodeId),
    #[error("PID status: {0}")]
    Status(#[from] StatusError),
}

impl PidError {
    /// The reason code a refusal for this error carries.
    pub fn reason(&self) -> crate::evidence::ReasonCode {
        use crate::evidence::ReasonCode;
        match self {
            PidError::SdJwt(e) => e.reason(),
            PidError::UnknownIssuer(_) => ReasonCode::UnknownSigner,
            PidError::NoClient(_) => ReasonCode::WrongAudience,
            PidError::Status(StatusError::Revoked | StatusError::Suspended) => ReasonCode::Revoked,
            PidError::Status(e) => e.reason(),
            _ => ReasonCode::Malformed,
        }
    }
}

/// Why a credential's status cannot be confirmed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusError {
    #[error(
        "the credential has a status list reference, but no status list came with it (the home node fetches it)"
    )]
    Missing,
    #[error("the status list token has {0} bytes, at most {max} are allowed", max = MAX_STATUS_LIST_TOKEN_BYTES)]
    TooLarge(usize),
    #[error("the credential's status reference: {0}")]
    Reference(&'static str),
    #[error("status list token: {0}")]
    Token(&'static str),
    #[error("the status list token is not signed by the PID provider")]
    Signature,
    #[error("the status list token is for {found:?}, not for the credential's list")]
    WrongList { found: String },
    #[error("the status list is stale: issued at {0}, at most {max} s ago is accepted", max = MAX_STATUS_LIST_AGE_S)]
    Stale(Timestamp),
    #[error("the status list expired at {0}")]
    Expired(Timestamp),
    #[error("the credential's index {index} is outside its status list of {entries} entries")]
    OutOfRange { index: u64, entries: u64 },
    #[error("the PID provider has revoked this PID")]
    Revoked,
    #[error("the PID provider has suspended this PID")]
    Suspended,
    #[error("the credential's status is {0:#04x}, not valid")]
    NotValid(u8),
}

impl StatusError {
    pub fn reason(&self) -> crate::evidence::ReasonCode {
        use crate::evidence::ReasonCode;
        match self {
            StatusError::TooLarge(_) => ReasonCode::TooLarge,
            StatusError::Signature => ReasonCode::BadSignature,
            StatusError::Stale(_) | StatusError::Expired(_) => ReasonCode::Expired,
            StatusError::Revoked | StatusError::Suspended | StatusError::NotValid(_) => {
                ReasonCode::Revoked
            }
            _ => ReasonCode::Malformed,
        }
    }
}

/// The verifier client id of home node `node`: `x509_hash:` and the
/// base64url SHA-256 of its TLS certificate as the trust list has it. The
/// node signs its OpenID4VP requests with that certificate's key, and a
/// key binding JWT's `aud` must be this.
pub fn verifier_client_id(trust: &TrustList, node: &NodeId) -> Result<String, PidError> {
    let entry = trust
        .content()
        .nodes
        .iter()
        .find(|n| &n.id == node && n.roles.contains(&crate::trust::NodeRole::Home))
        .ok_or_else(|| PidError::NoClient(node.clone()))?;
    Ok(format!(
        "{X509_HASH_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(entry.tls_cert_sha256.0)
    ))
}

/// The registry identifier of the person a PID is for (`SPEC.md` §8.3):
/// `eidas:CC/NL/PID-` and 32 base64url characters of
/// SHA-256("estafette-pid-v1" ‖ 0 ‖ provider id ‖ 0 ‖ CC ‖ 0 ‖ number), where
/// CC is the provider's country and the number the PID's personal
/// administrative number, unique among those the provider issues. The
/// same PID gives the same identifier at every login; the number is not
/// stored or shown.
pub fn pid_subject(
    provider: &NodeId,
    country: CountryCode,
    administrative_number: &str,
) -> Result<Recipient, PidError> {
    let mut hash = Sha256::new();
    for part in [
        b"estafette-pid-v1".as_slice(),
        provider.as_str().as_bytes(),
        country.as_str().as_bytes(),
    ] {
        hash.update(part);
        hash.update([0]);
    }
    hash.update(administrative_number.as_bytes());
    let encoded = URL_SAFE_NO_PAD.encode(hash.finalize());
    let short = encoded.get(..32).unwrap_or(&encoded);
    format!("eidas:{}/NL/PID-{short}", country.as_str())
        .parse()
        .map_err(|_| PidError::Claim {
            claim: "personal_administrative_number",
            problem: "gives no valid identifier",
        })
}

/// Checks PID presentations.
pub struct PidPresentation;

impl PidPresentation {
    /// Verifies `presentation` (with the status list token the home node
    /// fetched, if the credential names one) for `policy.audience`, the
    /// home node whose verifier client id the key binding names. As for
    /// every proof, the caller must still refuse a nonce it has seen, and a
    /// node that made the request must check the nonce is its own.
    pub fn verify(
        presentation: &str,
        status_list: Option<&str>,
        trust: &TrustList,
        policy: &AssertionPolicy,
    ) -> Result<VerifiedAssertion, AssertionError> {
        let pid_error = |e: PidError| AssertionError::Pid(e);
        let sd = SdJwtPresentation::parse(presentation).map_err(|e| pid_error(e.into()))?;
        let iss = sd
            .unverified_issuer()
            .map_err(|e| pid_error(e.into()))?
            .ok_or(pid_error(PidError::Claim {
                claim: "iss",
                problem: "missing",
            }))?;
        let (idp, provider) = pid_provider(trust, &iss).map_err(pid_error)?;
        let client_id = verifier_client_id(trust, &policy.audience).map_err(pid_error)?;
        let verified = sd
            .verify(
                &provider.keys,
                &KeyBindingPolicy {
                    audience: &client_id,
                    nonce: None,
                    now: policy.now,
                },
            )
            .map_err(|e| pid_error(e.into()))?;
        let claims = &verified.claims;
        match claims.get("vct").and_then(Value::as_str) {
            Some(PID_VCT) => {}
            other => {
                return Err(pid_error(PidError::NotAPid(
                    other.unwrap_or("(none)").chars().take(100).collect(),
                )));
            }
        }
        let subject = subject_of(claims, idp)?;
        // A PID is high by design; the trust list caps what its provider
        // may vouch for.
        let level = idp.max_loa;
        check_provider_vouches(idp, &subject, level)?;
        check_status(claims, status_list, provider, policy.now).map_err(|e| pid_error(e.into()))?;
        let presented_at = verified.presented_at;
        let expires_at = presented_at.plus_s(MAX_KEY_BINDING_AGE_S);
        let identity = IdentityClaims {
            issuer: idp.id.clone(),
            subject,
            family_name: text(claims, "family_name")?.to_owned(),
            given_names: text(claims, "given_name")?.to_owned(),
            birth_date: text(claims, "birthdate")?.to_owned(),
            level_of_assurance: level,
            audience: policy.audience.clone(),
            nonce: verified.nonce.as_bytes().to_vec(),
            issued_at: presented_at,
            expires_at,
        };
        identity.validate_person()?;
        policy.require_level(level)?;
        Ok(VerifiedAssertion {
            claims: identity,
            digest: Digest::of(presentation.as_bytes()),
            // The holder's wallet authenticated them (PIN or biometrics)
            // to sign the key binding.
            authenticated_at: presented_at,
        })
    }
}

/// The person a verified PID is for: of the provider's own country, with
/// the identifier §8.3 makes from the administrative number.
fn subject_of(
    claims: &Map<String, Value>,
    idp: &IdentityProviderEntry,
) -> Result<Recipient, AssertionError> {
    let country: CountryCode = text(claims, "issuing_country")?.parse().map_err(|_| {
        AssertionError::Pid(PidError::Claim {
            claim: "issuing_country",
            problem: "not a two-letter country code",
        })
    })?;
    if country != idp.country {
        return Err(AssertionError::CountryMismatch {
            issuer: idp.id.clone(),
            provider_country: idp.country,
            id_country: country,
        });
    }
    let number = match claims.get("personal_administrative_number") {
        None => return Err(AssertionError::Pid(PidError::NoPersonIdentifier)),
        Some(Value::String(n)) => n,
        Some(_) => {
            return Err(AssertionError::Pid(PidError::Claim {
                claim: "personal_administrative_number",
                problem: "not a string",
            }));
        }
    };
    check_line(
        "personal administrative number",
        number,
        MAX_PID_ADMINISTRATIVE_NUMBER_CHARS,
    )?;
    Ok(pid_subject(&idp.id, idp.country, number)?)
}

/// The trust list's PID provider whose issuer a credential names.
fn pid_provider<'t>(
    trust: &'t TrustList,
    iss: &str,
) -> Result<(&'t IdentityProviderEntry, &'t PidProvider), PidError> {
    trust
        .content()
        .identity_providers
        .iter()
        .find_map(|idp| {
            let pid = idp.pid.as_ref()?;
            (pid.issuer == iss).then_some((idp, pid))
        })
        .ok_or_else(|| PidError::UnknownIssuer(iss.chars().take(100).collect()))
}

fn text<'a>(
    claims: &'a Map<String, Value>,
    claim: &'static str,
) -> Result<&'a str, AssertionError> {
    match claims.get(claim) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(AssertionError::Pid(PidError::Claim {
            claim,
            problem: "not a string",
        })),
        None => Err(AssertionError::Pid(PidError::Claim {
            claim,
            problem: "missing (not disclosed)",
        })),
    }
}

/// A credential's reference into a Token Status List
/// (`status.status_list`, draft-ietf-oauth-status-list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReference {
    pub index: u64,
    /// Where the status list token is fetched (an `https://` URL).
    pub uri: String,
}

/// The status list reference of a credential's claims, if it has one.
pub fn status_reference(
    claims: &Map<String, Value>,
) -> Result<Option<StatusReference>, StatusError> {
    let Some(status) = claims.get("status") else {
        return Ok(None);
    };
    let list = status
        .get("status_list")
        .ok_or(StatusError::Reference("no status_list in status"))?;
    let index = list
        .get("idx")
        .and_then(Value::as_u64)
        .ok_or(StatusError::Reference("idx is not a non-negative integer"))?;
    let uri = list
        .get("uri")
        .and_then(Value::as_str)
        .filter(|u| u.starts_with("https://") && u.len() <= MAX_OIDC_URL_CHARS)
        .ok_or(StatusError::Reference("uri is not a short https:// URL"))?;
    Ok(Some(StatusReference {
        index,
        uri: uri.to_owned(),
    }))
}

/// The status list reference of an unverified presentation: where a home
/// node fetches the status list before verifying.
pub fn presentation_status_reference(
    presentation: &str,
) -> Result<Option<StatusReference>, PidError> {
    let sd = SdJwtPresentation::parse(presentation)?;
    let claims = sd.unverified_claims()?;
    Ok(status_reference(&claims)?)
}

/// The credential is valid according to its provider's status list.
fn check_status(
    claims: &Map<String, Value>,
    token: Option<&str>,
    provider: &PidProvider,
    now: Timestamp,
) -> Result<(), StatusError> {
    let Some(reference) = status_reference(claims)? else {
        return Ok(());
    };
    let token = token.ok_or(StatusError::Missing)?;
    match status_in_list(token, &reference, &provider.keys, now)? {
        0 => Ok(()),
        1 => Err(StatusError::Revoked),
        2 => Err(StatusError::Suspended),
        other => Err(StatusError::NotValid(other)),
    }
}

/// The status of `reference` in the status list token `token`, checked:
/// signed with one of `keys`, for the reference's list, fresh.
pub fn status_in_list(
    token: &str,
    reference: &StatusReference,
    keys: &[OidcKey],
    now: Timestamp,
) -> Result<u8, StatusError> {
    if token.len() > MAX_STATUS_LIST_TOKEN_BYTES {
        return Err(StatusError::TooLarge(token.len()));
    }
    let jws = UnverifiedJws::parse_typed(token, Typ::Exactly("statuslist+jwt"))
        .map_err(|_| StatusError::Token("not a compact JWS of type statuslist+jwt"))?;
    let signed = keys
        .iter()
        .filter(|k| k.allows(jws.alg))
        .filter(|k| jws.kid.is_none() || k.kid == jws.kid)
        .any(|k| jws.verified_by(k));
    if !signed {
        return Err(StatusError::Signature);
    }
    let claims = &jws.payload;
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .ok_or(StatusError::Token("no sub"))?;
    if sub != reference.uri {
        return Err(StatusError::WrongList {
            found: sub.chars().take(100).collect(),
        });
    }
    let date = |name| claims.get(name).and_then(Value::as_u64).map(Timestamp);
    let iat = date("iat").ok_or(StatusError::Token("no iat"))?;
    if iat > now.plus_s(MAX_CLOCK_SKEW_S) {
        return Err(StatusError::Token("issued in the future"));
    }
    if now.0.saturating_sub(iat.0) > MAX_STATUS_LIST_AGE_S {
        return Err(StatusError::Stale(iat));
    }
    if let Some(exp) = date("exp")
        && now >= exp
    {
        return Err(StatusError::Expired(exp));
    }
    let list = claims
        .get("status_list")
        .ok_or(StatusError::Token("no status_list"))?;
    let bits = match list.get("bits").and_then(Value::as_u64) {
        Some(b @ (1 | 2 | 4 | 8)) => b,
        _ => return Err(StatusError::Token("bits is not 1, 2, 4 or 8")),
    };
    let compressed = list
        .get("lst")
        .and_then(Value::as_str)
        .and_then(|l| URL_SAFE_NO_PAD.decode(l).ok())
        .ok_or(StatusError::Token("lst is not base64url"))?;
    let bytes =
        miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(&compressed, MAX_STATUS_LIST_BYTES)
            .map_err(|_| {
                StatusError::Token("lst is not zlib data of at most 1 MiB decompressed")
            })?;
    let entries = bytes.len() as u64 * 8 / bits;
    if reference.index >= entries {
        return Err(StatusError::OutOfRange {
            index: reference.index,
            entries,
        });
    }
    let bit = reference.index * bits;
    let byte = bytes
        .get(usize::try_from(bit / 8).unwrap_or(usize::MAX))
        .copied()
        .unwrap_or_default();
    let mask = ((1u16 << bits) - 1) as u8;
    Ok((byte >> (bit % 8)) & mask)
}
