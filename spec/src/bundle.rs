//! The proof bundle (SPEC.md §16): everything needed to prove, offline and
//! years later, what happened to one letter: its evidence objects (records
//! with their receipts, checkpoints and cosignatures) and the signed trust
//! list they verify against. An agency fetches it, gives the recipient a
//! copy, and a court checks it with the federation's root key alone.

use ed25519_dalek::VerifyingKey;

use crate::cbor::{self, CborError};
use crate::evidence::{Evidence, EvidenceError, VerifiedEvidence};
use crate::ids::MessageId;
use crate::limits::{MAX_EVIDENCE_BYTES, MAX_TRUST_LIST_BYTES};
use crate::text::Timestamp;
use crate::trust::{TrustList, TrustListError};

/// The first element of a bundle: what the file is, and its version.
pub const BUNDLE_FORMAT: &str = "estafette-proof-bundle/v1";
/// The media type of a bundle file.
pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.estafette.proof-bundle.v1+cbor";
/// Most evidence objects in one bundle (a letter's whole trail is a few
/// dozen; a delivery carries at most 512).
pub const MAX_BUNDLE_EVIDENCE: usize = 512;
/// Largest bundle: the largest trust list and the most evidence.
pub const MAX_BUNDLE_BYTES: usize =
    MAX_TRUST_LIST_BYTES + MAX_BUNDLE_EVIDENCE * (MAX_EVIDENCE_BYTES + 8) + 1024;

/// Why a bundle is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("not a proof bundle: {0}")]
    Cbor(#[from] CborError),
    #[error("not a proof bundle of this version (found {0:?}, expected {BUNDLE_FORMAT:?})")]
    Format(String),
    #[error("the bundle holds no evidence")]
    Empty,
    #[error("the bundle holds {0} evidence objects; at most {MAX_BUNDLE_EVIDENCE}")]
    TooMany(usize),
    #[error("the bundle is not in its one encoding")]
    NotCanonical,
    #[error("the bundle's trust list: {0}")]
    TrustList(#[from] TrustListError),
    #[error("the bundle's evidence: {0}")]
    Evidence(#[from] EvidenceError),
    #[error("the evidence is of message {found}, the bundle says {expected}")]
    OtherMessage { expected: MessageId, found: String },
}

impl BundleError {
    /// A stable code for tools and the web.
    pub fn code(&self) -> &'static str {
        match self {
            BundleError::Cbor(_)
            | BundleError::Format(_)
            | BundleError::Empty
            | BundleError::TooMany(_)
            | BundleError::NotCanonical => "malformed",
            BundleError::TrustList(_) => "trust_list",
            BundleError::Evidence(_) => "evidence",
            BundleError::OtherMessage { .. } => "other_message",
        }
    }
}

/// One letter's proof: `[format, message id, trust list, [evidence…]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofBundle {
    pub message_id: MessageId,
    /// The signed trust list (COSE_Sign1, §9) the receipts verify against.
    pub trust_list: Vec<u8>,
    /// Evidence objects (`[record, receipt]`, §7), in chain order.
    pub evidence: Vec<Vec<u8>>,
}

type Wire = (
    String,
    serde_bytes::ByteBuf,
    serde_bytes::ByteBuf,
    Vec<serde_bytes::ByteBuf>,
);

impl ProofBundle {
    pub fn encode(&self) -> Vec<u8> {
        cbor::to_vec(&(
            BUNDLE_FORMAT,
            serde_bytes::Bytes::new(self.message_id.as_bytes()),
            serde_bytes::Bytes::new(&self.trust_list),
            self.evidence
                .iter()
                .map(|e| serde_bytes::Bytes::new(e))
                .collect::<Vec<_>>(),
        ))
    }

    /// Reads a bundle (its form only: [`Self::verify`] checks it).
    pub fn decode(bytes: &[u8]) -> Result<ProofBundle, BundleError> {
        let (format, message_id, trust_list, evidence): Wire =
            cbor::from_slice(bytes, MAX_BUNDLE_BYTES)?;
        if format != BUNDLE_FORMAT {
            return Err(BundleError::Format(format));
        }
        if evidence.is_empty() {
            return Err(BundleError::Empty);
        }
        if evidence.len() > MAX_BUNDLE_EVIDENCE {
            return Err(BundleError::TooMany(evidence.len()));
        }
        let message_id: [u8; 16] = message_id
            .as_slice()
            .try_into()
            .map_err(|_| BundleError::Format("a message id of another length".into()))?;
        let bundle = ProofBundle {
            message_id: MessageId::from_bytes(message_id),
            trust_list: trust_list.into_vec(),
            evidence: evidence.into_iter().map(|e| e.into_vec()).collect(),
        };
        if bundle.encode() != bytes {
            return Err(BundleError::NotCanonical);
        }
        Ok(bundle)
    }

    /// Verifies the bundle with the federation's root key as of `at` (when
    /// the trust list was in force): the trust list, every receipt against
    /// it, the chain, and that every record is of the bundle's message.
    pub fn verify(
        &self,
        root: &VerifyingKey,
        at: Timestamp,
    ) -> Result<(TrustList, Vec<VerifiedEvidence>), BundleError> {
        let trust = TrustList::verify(&self.trust_list, root, at)?;
        let chain = Evidence::verify_chain(&self.evidence, &trust)?;
        for verified in &chain {
            if verified.record.message_id != Some(self.message_id) {
                return Err(BundleError::OtherMessage {
                    expected: self.message_id,
                    found: verified
                        .record
                        .message_id
                        .map_or_else(|| "none".into(), |m| m.to_string()),
                });
            }
        }
        Ok((trust, chain))
    }
}
