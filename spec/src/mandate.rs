//! Representatives: who may read (or manage) a person's mail, for which
//! senders, and when. Two kinds: a voluntary mandate the holder grants and
//! the representative accepts, and a legal representation proven by a court
//! registry's signed [`Attestation`]. The rules here are pure: the gateway
//! keeps the mandates and asks these functions at every access.

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use crate::cbor::{self, CborError};
use crate::cose::{self, Digest, ObjectKind};
use crate::ids::{NodeId, Oin, Recipient};
use crate::limits::*;
use crate::text::{FieldError, Timestamp, check_count, check_line};
use crate::trust::{Sector, Signer, TrustList, VerifyError};

/// Largest attestation.
pub const MAX_ATTESTATION_BYTES: usize = 8 * 1024;
/// Most senders named in one mandate's scope.
pub const MAX_SCOPE_SENDERS: usize = 1_000;

pub use crate::ids::MandateId;

/// The kinds of legal representation a court appoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LegalKind {
    /// Bewindvoering: the person's money matters.
    FinancialAdministration,
    /// Curatele: everything.
    Guardianship,
    /// Mentorschap: care matters.
    Mentorship,
}

impl LegalKind {
    /// The senders a legal representation of this kind covers.
    pub fn scope(self) -> SenderScope {
        match self {
            LegalKind::FinancialAdministration => SenderScope::Sectors(vec![Sector::Financial]),
            LegalKind::Guardianship => SenderScope::All,
            LegalKind::Mentorship => SenderScope::Sectors(vec![Sector::Care]),
        }
    }
}

/// Which senders' letters a mandate covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SenderScope {
    All,
    /// These agencies.
    Senders(Vec<Oin>),
    /// Agencies the trust list marks with one of these sectors.
    Sectors(Vec<Sector>),
}

impl SenderScope {
    /// Whether letters from `sender` are in scope.
    pub fn covers(&self, sender: &Oin, trust: &TrustList) -> bool {
        match self {
            SenderScope::All => true,
            SenderScope::Senders(list) => list.contains(sender),
            SenderScope::Sectors(sectors) => trust
                .agency(sender)
                .is_some_and(|a| a.sectors.iter().any(|s| sectors.contains(s))),
        }
    }

    pub fn validate(&self) -> Result<(), FieldError> {
        match self {
            SenderScope::Senders(list) => {
                check_count("scope senders", list.len(), MAX_SCOPE_SENDERS)?;
                if list.is_empty() {
                    return Err(FieldError::Empty {
                        field: "scope senders",
                    });
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// What a representative may do within the scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rights {
    /// Read letters (each opening is ContentHandover evidence naming them).
    pub read: bool,
    /// Manage consent and contact settings.
    pub manage: bool,
}

/// Who represents: a person, possibly for an organisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Representative {
    /// The person who logs in (an employee, for an organisation).
    pub person: Recipient,
    /// How the holder and the evidence name them (never a BSN).
    pub name: String,
    /// The organisation they act for: its OIN or KvK number and name.
    pub organisation: Option<String>,
}

impl Representative {
    pub fn validate(&self) -> Result<(), FieldError> {
        check_line("representative name", &self.name, MAX_SHORT_TEXT_CHARS)?;
        if let Some(o) = &self.organisation {
            check_line("organisation", o, MAX_SHORT_TEXT_CHARS)?;
        }
        Ok(())
    }

    /// The name evidence and access logs show.
    pub fn label(&self) -> String {
        match &self.organisation {
            Some(o) => format!("{} ({o})", self.name),
            None => self.name.clone(),
        }
    }
}

/// The content of a court registry's attestation of legal representation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestationContent {
    /// The court registry; must be the signer.
    pub registry: NodeId,
    pub kind: LegalKind,
    /// The court's case reference.
    pub case_reference: String,
    pub represented: Recipient,
    pub representative: Representative,
    pub valid_from: Timestamp,
    /// Open-ended when absent (until the court ends it).
    pub valid_until: Option<Timestamp>,
    pub issued_at: Timestamp,
}

impl AttestationContent {
    pub fn validate(&self) -> Result<(), FieldError> {
        check_line("case reference", &self.case_reference, MAX_SHORT_TEXT_CHARS)?;
        self.representative.validate()?;
        if self.valid_until.is_some_and(|u| u <= self.valid_from) {
            return Err(FieldError::Invalid {
                field: "valid until",
                problem: "must be after valid from",
            });
        }
        Ok(())
    }
}

/// Why an attestation is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttestationError {
    #[error("attestation: {0}")]
    Verify(#[from] VerifyError),
    #[error("attestation content: {0}")]
    Content(#[from] CborError),
    #[error("attestation: {0}")]
    Field(#[from] FieldError),
    #[error("attestation names registry {claimed}, but was signed by {signer}")]
    IssuerMismatch { claimed: NodeId, signer: String },
    #[error("attestation is valid from {0}, not yet")]
    NotYetValid(Timestamp),
    #[error("attestation ended at {0}")]
    Expired(Timestamp),
}

impl AttestationError {
    pub fn reason(&self) -> crate::evidence::ReasonCode {
        use crate::evidence::ReasonCode;
        match self {
            AttestationError::Verify(e) => e.reason(),
            AttestationError::Content(e) => e.reason(),
            AttestationError::IssuerMismatch { .. } => ReasonCode::WrongRole,
            AttestationError::NotYetValid(_) => ReasonCode::NotYetValid,
            AttestationError::Expired(_) => ReasonCode::Expired,
            AttestationError::Field(_) => ReasonCode::Malformed,
        }
    }
}

/// A verified attestation.
#[derive(Debug, Clone)]
pub struct VerifiedAttestation {
    pub content: AttestationContent,
    pub digest: Digest,
}

/// Signs and checks attestations of legal representation.
pub struct Attestation;

impl Attestation {
    pub fn sign(
        content: &AttestationContent,
        registry_key: &SigningKey,
    ) -> Result<Vec<u8>, AttestationError> {
        content.validate()?;
        Ok(cose::sign(
            ObjectKind::Attestation,
            cbor::to_vec(content),
            registry_key,
        ))
    }

    /// Checks the signature of a court registry of the trust list, that the
    /// content names it, and that the attestation stands at `now`.
    pub fn verify(
        bytes: &[u8],
        trust: &TrustList,
        now: Timestamp,
    ) -> Result<VerifiedAttestation, AttestationError> {
        let (signer, payload) = trust.verify_signed(bytes, ObjectKind::Attestation)?;
        let content: AttestationContent = cbor::from_slice(&payload, MAX_ATTESTATION_BYTES)?;
        content.validate()?;
        let Signer::CourtRegistry(registry) = signer else {
            return Err(AttestationError::IssuerMismatch {
                claimed: content.registry,
                signer: signer.id(),
            });
        };
        if registry.id != content.registry {
            return Err(AttestationError::IssuerMismatch {
                claimed: content.registry,
                signer: registry.id.to_string(),
            });
        }
        if now < content.valid_from {
            return Err(AttestationError::NotYetValid(content.valid_from));
        }
        if let Some(until) = content.valid_until
            && now >= until
        {
            return Err(AttestationError::Expired(until));
        }
        Ok(VerifiedAttestation {
            content,
            digest: Digest::of(bytes),
        })
    }
}

/// Voluntary (granted by the holder) or legal (a court's attestation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MandateKind {
    Voluntary,
    Legal {
        kind: LegalKind,
        registry: NodeId,
        case_reference: String,
        attestation_digest: Digest,
    },
}

/// A mandate as the gateway keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mandate {
    pub id: MandateId,
    pub kind: MandateKind,
    pub holder: Recipient,
    pub representative: Representative,
    pub scope: SenderScope,
    pub rights: Rights,
    pub valid_from: Timestamp,
    pub valid_until: Option<Timestamp>,
    /// The representative accepted (legal representations need not).
    pub accepted: bool,
    pub revoked_at: Option<Timestamp>,
    /// Notifications and paper for letters in scope go to the representative.
    pub correspondence: bool,
    /// Where paper goes when `correspondence` is set (an office address).
    pub office_address: Option<crate::citizen::PostalAddress>,
}

impl Mandate {
    /// Whether the mandate stands at `now` (accepted, started, not ended).
    pub fn stands(&self, now: Timestamp) -> bool {
        self.accepted
            && self.revoked_at.is_none()
            && self.valid_from <= now
            && self.valid_until.is_none_or(|u| now < u)
    }

    pub fn is_legal(&self) -> bool {
        matches!(self.kind, MandateKind::Legal { .. })
    }
}

/// The mandate under which `representative` may act on a letter from
/// `sender` to the holder of `mandates`, at `now`: a legal representation in
/// force that covers the sender; otherwise a voluntary mandate that covers
/// it, unless a legal representation in force covers the sender (then the
/// holder's voluntary mandates for it are suspended).
pub fn governing<'m>(
    mandates: &'m [Mandate],
    representative: &Recipient,
    sender: &Oin,
    need: Rights,
    now: Timestamp,
    trust: &TrustList,
) -> Option<&'m Mandate> {
    let covers = |m: &Mandate| m.stands(now) && m.scope.covers(sender, trust);
    let legal_covers = mandates.iter().any(|m| m.is_legal() && covers(m));
    mandates.iter().find(|m| {
        &m.representative.person == representative
            && covers(m)
            && (m.is_legal() || !legal_covers)
            && (!need.read || m.rights.read)
            && (!need.manage || m.rights.manage)
    })
}

/// The mandate whose representative receives the holder's correspondence
/// for letters from `sender`, if any (legal representations first).
pub fn correspondence_for<'m>(
    mandates: &'m [Mandate],
    sender: &Oin,
    now: Timestamp,
    trust: &TrustList,
) -> Option<&'m Mandate> {
    let eligible =
        |m: &&Mandate| m.correspondence && m.stands(now) && m.scope.covers(sender, trust);
    let legal_covers = mandates
        .iter()
        .any(|m| m.is_legal() && m.stands(now) && m.scope.covers(sender, trust));
    mandates
        .iter()
        .filter(eligible)
        .find(|m| m.is_legal() || !legal_covers)
}
