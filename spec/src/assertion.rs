//! `IdentityAssertion`: an identity provider's signed statement that a person
//! (BSN or eIDAS person id) logged in, for one audience (a home node or the
//! gateway), with a fresh nonce, for at most five minutes.

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use crate::cbor::{self, CborError};
use crate::cose::{self, Digest, ObjectKind};
use crate::ids::{CountryCode, NodeId, Recipient};
use crate::limits::*;
use crate::text::{FieldError, Timestamp, check_date, check_line};
use crate::trust::{IdentityProviderEntry, LevelOfAssurance, Signer, TrustList, VerifyError};

/// The content of an identity assertion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityClaims {
    /// The identity provider's id; must be the signer's.
    pub issuer: NodeId,
    pub subject: Recipient,
    pub family_name: String,
    pub given_names: String,
    /// `YYYY-MM-DD`.
    pub birth_date: String,
    pub level_of_assurance: LevelOfAssurance,
    /// The node the assertion is for.
    pub audience: NodeId,
    #[serde(with = "crate::bytes::vec_hex")]
    pub nonce: Vec<u8>,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
}

/// What the verifier requires of an assertion.
#[derive(Debug, Clone)]
pub struct AssertionPolicy {
    /// This verifier's own node id.
    pub audience: NodeId,
    pub min_level: LevelOfAssurance,
    pub now: Timestamp,
}

impl AssertionPolicy {
    /// A login at `level` is enough for this verifier.
    pub fn require_level(&self, level: LevelOfAssurance) -> Result<(), AssertionError> {
        if level < self.min_level {
            return Err(AssertionError::LevelTooLow {
                found: level,
                required: self.min_level,
            });
        }
        Ok(())
    }
}

/// The country whose people the federation serves: eIDAS person
/// identifiers must be issued for it (`CC/NL/…`), and only its own identity
/// providers may assert a BSN.
pub const HOME_COUNTRY: CountryCode = CountryCode::NL;

/// Why an identity assertion is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssertionError {
    #[error("identity assertion: {0}")]
    Verify(#[from] VerifyError),
    #[error("identity assertion content: {0}")]
    Content(#[from] CborError),
    #[error("identity assertion: {0}")]
    Field(#[from] FieldError),
    #[error("identity assertion nonce has {0} bytes, expected {min}..={max}", min = MIN_NONCE_BYTES, max = MAX_NONCE_BYTES)]
    Nonce(usize),
    #[error("identity assertion is valid for {0} s, at most {max} s is allowed", max = MAX_ASSERTION_LIFETIME_S)]
    LifetimeTooLong(u64),
    #[error("identity assertion expired at {0}")]
    Expired(Timestamp),
    #[error("identity assertion issued at {0}, in the future")]
    NotYetValid(Timestamp),
    #[error("identity assertion is for {found}, not for this node ({expected})")]
    WrongAudience { expected: NodeId, found: NodeId },
    #[error(
        "identity assertion level of assurance is {found:?}, at least {required:?} is required"
    )]
    LevelTooLow {
        found: LevelOfAssurance,
        required: LevelOfAssurance,
    },
    #[error("identity provider {issuer} may assert at most {max:?}, this claims {claimed:?}")]
    LevelAboveProvider {
        issuer: NodeId,
        max: LevelOfAssurance,
        claimed: LevelOfAssurance,
    },
    #[error("identity assertion names issuer {claimed}, but was signed by {signer}")]
    IssuerMismatch { claimed: NodeId, signer: String },
    #[error(
        "identity provider {issuer} vouches for {provider_country}, but the person identifier was issued by {id_country}"
    )]
    CountryMismatch {
        issuer: NodeId,
        provider_country: CountryCode,
        id_country: CountryCode,
    },
    #[error("the person identifier is for use in {found}, not here ({expected})")]
    WrongDestination {
        expected: CountryCode,
        found: CountryCode,
    },
    #[error("{0}")]
    IdToken(#[from] crate::oidc::IdTokenError),
    #[error("{0}")]
    Pid(#[from] crate::pid::PidError),
    #[error(
        "identity provider {issuer} vouches for {provider_country}; only a provider of {home} may assert a BSN"
    )]
    ForeignBsn {
        issuer: NodeId,
        provider_country: CountryCode,
        home: CountryCode,
    },
}

impl AssertionError {
    /// The reason code a refusal for this error carries.
    pub fn reason(&self) -> crate::evidence::ReasonCode {
        use crate::evidence::ReasonCode;
        match self {
            AssertionError::Verify(e) => e.reason(),
            AssertionError::Content(e) => e.reason(),
            AssertionError::IdToken(e) => e.reason(),
            AssertionError::Pid(e) => e.reason(),
            AssertionError::Expired(_) => ReasonCode::Expired,
            AssertionError::NotYetValid(_) => ReasonCode::NotYetValid,
            AssertionError::WrongAudience { .. } => ReasonCode::WrongAudience,
            AssertionError::LevelTooLow { .. } | AssertionError::LevelAboveProvider { .. } => {
                ReasonCode::AssuranceTooLow
            }
            AssertionError::IssuerMismatch { .. } => ReasonCode::WrongRole,
            AssertionError::CountryMismatch { .. }
            | AssertionError::WrongDestination { .. }
            | AssertionError::ForeignBsn { .. } => ReasonCode::CountryMismatch,
            _ => ReasonCode::Malformed,
        }
    }
}

impl IdentityClaims {
    pub fn validate(&self) -> Result<(), AssertionError> {
        self.validate_person()?;
        let lifetime = self.expires_at.0.saturating_sub(self.issued_at.0);
        if lifetime > MAX_ASSERTION_LIFETIME_S || self.expires_at <= self.issued_at {
            return Err(AssertionError::LifetimeTooLong(lifetime));
        }
        Ok(())
    }

    /// The checks of the person's fields and the nonce, whatever the proof.
    pub fn validate_person(&self) -> Result<(), AssertionError> {
        check_line("family name", &self.family_name, MAX_SHORT_TEXT_CHARS)?;
        check_line("given names", &self.given_names, MAX_SHORT_TEXT_CHARS)?;
        check_date("birth date", &self.birth_date)?;
        if !(MIN_NONCE_BYTES..=MAX_NONCE_BYTES).contains(&self.nonce.len()) {
            return Err(AssertionError::Nonce(self.nonce.len()));
        }
        Ok(())
    }
}

/// A verified assertion. The caller must still refuse a nonce it has seen
/// (nonces are single use; remembering them is state, kept by the node).
#[derive(Debug, Clone)]
pub struct VerifiedAssertion {
    pub claims: IdentityClaims,
    /// SHA-256 of the assertion bytes: recorded with consent changes.
    pub digest: Digest,
    /// When the person logged in: an assertion's `issued_at`, an ID
    /// token's `auth_time` (a provider's session may be older than the
    /// token). A change needs a login of at most
    /// [`MAX_ASSERTION_LIFETIME_S`] ago.
    pub authenticated_at: Timestamp,
}

/// Signs and checks identity assertions.
pub struct IdentityAssertion;

impl IdentityAssertion {
    pub fn sign(claims: &IdentityClaims, idp_key: &SigningKey) -> Result<Vec<u8>, AssertionError> {
        claims.validate()?;
        Ok(cose::sign(
            ObjectKind::Assertion,
            cbor::to_vec(claims),
            idp_key,
        ))
    }

    pub fn verify(
        bytes: &[u8],
        trust: &TrustList,
        policy: &AssertionPolicy,
    ) -> Result<VerifiedAssertion, AssertionError> {
        let (signer, payload) = trust.verify_signed(bytes, ObjectKind::Assertion)?;
        let claims: IdentityClaims = cbor::from_slice(&payload, MAX_ASSERTION_BYTES)?;
        claims.validate()?;
        let Signer::IdentityProvider(idp) = signer else {
            return Err(AssertionError::IssuerMismatch {
                claimed: claims.issuer,
                signer: signer.id(),
            });
        };
        if idp.id != claims.issuer {
            return Err(AssertionError::IssuerMismatch {
                claimed: claims.issuer,
                signer: idp.id.to_string(),
            });
        }
        check_provider_vouches(idp, &claims.subject, claims.level_of_assurance)?;
        if claims.audience != policy.audience {
            return Err(AssertionError::WrongAudience {
                expected: policy.audience.clone(),
                found: claims.audience,
            });
        }
        if policy.now >= claims.expires_at {
            return Err(AssertionError::Expired(claims.expires_at));
        }
        if claims.issued_at > policy.now.plus_s(MAX_CLOCK_SKEW_S) {
            return Err(AssertionError::NotYetValid(claims.issued_at));
        }
        policy.require_level(claims.level_of_assurance)?;
        Ok(VerifiedAssertion {
            authenticated_at: claims.issued_at,
            claims,
            digest: Digest::of(bytes),
        })
    }
}

/// What a provider may vouch for, whatever the proof: eIDAS identifiers of
/// its own country issued for use here, a BSN only from a provider of the
/// home country, a level up to its highest. The identifier stays opaque.
pub(crate) fn check_provider_vouches(
    idp: &IdentityProviderEntry,
    subject: &Recipient,
    level: LevelOfAssurance,
) -> Result<(), AssertionError> {
    match subject {
        Recipient::Eidas(id) => {
            if id.issuing_country() != idp.country {
                return Err(AssertionError::CountryMismatch {
                    issuer: idp.id.clone(),
                    provider_country: idp.country,
                    id_country: id.issuing_country(),
                });
            }
            if id.destination_country() != HOME_COUNTRY {
                return Err(AssertionError::WrongDestination {
                    expected: HOME_COUNTRY,
                    found: id.destination_country(),
                });
            }
        }
        Recipient::Bsn(_) if idp.country != HOME_COUNTRY => {
            return Err(AssertionError::ForeignBsn {
                issuer: idp.id.clone(),
                provider_country: idp.country,
                home: HOME_COUNTRY,
            });
        }
        Recipient::Bsn(_) => {}
    }
    if level > idp.max_loa {
        return Err(AssertionError::LevelAboveProvider {
            issuer: idp.id.clone(),
            max: idp.max_loa,
            claimed: level,
        });
    }
    Ok(())
}

/// A person's proof of a login, as a citizen request carries it: our own
/// COSE assertion (test federations, the demo), an OpenID Connect ID token
/// of a trust-list provider, or a wallet's PID presentation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityProof {
    Assertion(serde_bytes::ByteBuf),
    IdToken(String),
    Pid(PidProof),
}

/// A PID presented over OpenID4VP, with the status list token the home
/// node fetched for it (if the credential names one), so that every
/// verifier checks the same status without fetching it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PidProof {
    /// The SD-JWT presentation with its key binding JWT.
    pub presentation: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_list: Option<String>,
}

impl IdentityProof {
    /// Verifies the proof for `policy.audience`, whichever kind it is.
    pub fn verify(
        &self,
        trust: &TrustList,
        policy: &AssertionPolicy,
    ) -> Result<VerifiedAssertion, AssertionError> {
        match self {
            IdentityProof::Assertion(bytes) => IdentityAssertion::verify(bytes, trust, policy),
            IdentityProof::IdToken(token) => crate::oidc::IdToken::verify(token, trust, policy),
            IdentityProof::Pid(pid) => crate::pid::PidPresentation::verify(
                &pid.presentation,
                pid.status_list.as_deref(),
                trust,
                policy,
            ),
        }
    }

    /// Its size on the wire, for limits.
    pub fn len(&self) -> usize {
        match self {
            IdentityProof::Assertion(bytes) => bytes.len(),
            IdentityProof::IdToken(token) => token.len(),
            IdentityProof::Pid(pid) => {
                pid.presentation.len() + pid.status_list.as_ref().map_or(0, String::len)
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
