//! # estafette-spec: the protocol core
//!
//! Identifiers, wire formats, signing and verification for Estafette, with no
//! I/O: no sockets, no files, no clock, no global randomness. Callers pass in
//! bytes, the current time ([`Timestamp`]) and a random source, and get
//! values or typed errors back. `spec/SPEC.md` is the normative description
//! of everything here.
//!
//! Every signed object is a COSE_Sign1 ([`cose`]) whose protected content
//! type names its kind; every decoder runs the CBOR pre-scan ([`cbor`]) with
//! the limits in [`limits`] before it builds anything.
#![forbid(unsafe_code)]
// No function over about 80 lines (clippy.toml): a long one reads as named steps.
#![warn(clippy::too_many_lines)]

pub mod assertion;
pub mod bundle;
pub mod bytes;
pub mod cbor;
pub mod citizen;
pub mod clock;
pub mod cose;
pub mod envelope;
pub mod escalation;
pub mod evidence;
#[cfg(feature = "fixtures")]
pub mod fixtures;
pub mod identity;
pub mod ids;
pub mod limits;
pub mod mandate;
pub mod memory_log;
pub mod merkle;
pub mod message;
pub mod oidc;
pub mod pid;
pub mod receipt;
pub mod relay;
pub mod sd_jwt;
pub mod text;
pub mod tiles;
pub mod trust;
pub mod witness;

pub use assertion::{
    AssertionError, AssertionPolicy, IdentityAssertion, IdentityClaims, IdentityProof,
    VerifiedAssertion,
};
pub use bytes::{Ed25519PublicKey, X25519PublicKey};
pub use clock::{Clock, ManualClock};
pub use cose::{Digest, KeyId, ObjectKind};
pub use envelope::{
    Envelope, EnvelopeContent, EnvelopeError, HpkeKeyPair, RoutingHeader, VerifiedEnvelope,
};
pub use evidence::{
    Actor, ActorRole, Evidence, EvidenceError, EvidenceEvent, EvidenceRecord, ReasonCode,
    VerifiedEvidence,
};
pub use ids::{
    Bsn, CountryCode, EidasPersonId, EnvelopeId, EvidenceId, InboxId, MessageId, NodeId, Oin,
    Recipient,
};
pub use message::{Attachment, Letter, MessageError, Nature, SignedMessage, VerifiedMessage};
pub use text::{FieldError, Timestamp};
pub use trust::{
    AgencyEntry, CourtRegistryEntry, IdentityProviderEntry, LevelOfAssurance, NodeEntry, NodeRole,
    RevokedEntry, Route, Sector, Signer, SignerRole, TrustError, TrustList, TrustListContent,
    TrustListError, VerifyError,
};
