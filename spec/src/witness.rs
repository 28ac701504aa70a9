//! Witnesses and auditors of evidence logs: the rules, without I/O.
//!
//! A **witness** (another federation member, named in the trust list)
//! cosigns a node's checkpoint only if it is consistent with the last one it
//! cosigned for that log (C2SP tlog-witness: the node sends the size it
//! believes the witness knows and a consistency proof from there). A log
//! that forks (shows two histories) therefore cannot gather cosignatures
//! for both. An **auditor** follows a log over time and reports any
//! checkpoint that does not extend the one before.

use ed25519_dalek::SigningKey;

use crate::ids::NodeId;
use crate::merkle::{self, Hash, MerkleError};
use crate::receipt::{CheckpointCache, Cosignature, ReceiptError, SignedCheckpoint};
use crate::trust::TrustList;

/// What a witness or an auditor remembers of one log: the latest checkpoint
/// it accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogHead {
    pub origin: String,
    pub tree_size: u64,
    pub root: Hash,
}

impl LogHead {
    pub fn of(checkpoint: &SignedCheckpoint) -> LogHead {
        LogHead {
            origin: checkpoint.checkpoint.origin.clone(),
            tree_size: checkpoint.checkpoint.tree_size,
            root: checkpoint.checkpoint.root,
        }
    }
}

/// Why a witness does not cosign (with tlog-witness's HTTP status).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WitnessRefusal {
    /// 403: not a log this witness is named for, or a bad checkpoint.
    #[error("checkpoint refused: {0}")]
    Checkpoint(#[from] ReceiptError),
    #[error("{witness} is not a witness of log {origin:?}")]
    NotAWitness { witness: NodeId, origin: String },
    /// 400.
    #[error("old size {old_size} is beyond the checkpoint's {tree_size}")]
    OldSizeBeyond { old_size: u64, tree_size: u64 },
    /// 409: the sender must start from the size the witness knows.
    #[error("this witness knows log {origin:?} at {known_size} records, not {old_size}")]
    Conflict {
        origin: String,
        known_size: u64,
        old_size: u64,
    },
    /// 409: a second root for a size the witness cosigned.
    #[error(
        "log {origin:?} has another root for {tree_size} records than the one cosigned: a fork"
    )]
    Fork { origin: String, tree_size: u64 },
    /// 422: the new tree does not extend the old one.
    #[error("log {origin:?} at {new_size} records does not extend its {old_size}: {error}")]
    Inconsistent {
        origin: String,
        old_size: u64,
        new_size: u64,
        error: MerkleError,
    },
}

impl WitnessRefusal {
    /// The HTTP status tlog-witness answers this refusal with.
    pub fn http_status(&self) -> u16 {
        match self {
            WitnessRefusal::Checkpoint(_) | WitnessRefusal::NotAWitness { .. } => 403,
            WitnessRefusal::OldSizeBeyond { .. } => 400,
            WitnessRefusal::Conflict { .. } | WitnessRefusal::Fork { .. } => 409,
            WitnessRefusal::Inconsistent { .. } => 422,
        }
    }
}

/// A checkpoint offered to a witness: the size the log believes the witness
/// knows, the consistency proof from there, the checkpoint.
#[derive(Debug, Clone)]
pub struct CheckpointOffer<'a> {
    pub old_size: u64,
    pub consistency: &'a [Hash],
    pub checkpoint: &'a SignedCheckpoint,
}

/// The witness's decision on `offer`, given what it knows of the log
/// (`known`, `None` for a log it never cosigned): the new head to remember
/// and the cosignature, made at `time` with `witness_key`.
pub fn cosign(
    witness: &NodeId,
    witness_key: &SigningKey,
    known: Option<&LogHead>,
    offer: &CheckpointOffer<'_>,
    trust: &TrustList,
    time: u64,
) -> Result<(LogHead, Cosignature), WitnessRefusal> {
    let checkpoint = &offer.checkpoint.checkpoint;
    let log = offer.checkpoint.verify(trust, &CheckpointCache::new())?;
    if !log.witnesses.contains(witness) {
        return Err(WitnessRefusal::NotAWitness {
            witness: witness.clone(),
            origin: checkpoint.origin.clone(),
        });
    }
    if offer.old_size > checkpoint.tree_size {
        return Err(WitnessRefusal::OldSizeBeyond {
            old_size: offer.old_size,
            tree_size: checkpoint.tree_size,
        });
    }
    let known_size = known.map_or(0, |k| k.tree_size);
    if offer.old_size != known_size {
        return Err(WitnessRefusal::Conflict {
            origin: checkpoint.origin.clone(),
            known_size,
            old_size: offer.old_size,
        });
    }
    if let Some(known) = known {
        extends(known, &LogHead::of(offer.checkpoint), offer.consistency)?;
    } else if !offer.consistency.is_empty() {
        return Err(WitnessRefusal::Inconsistent {
            origin: checkpoint.origin.clone(),
            old_size: 0,
            new_size: checkpoint.tree_size,
            error: MerkleError::ProofLength,
        });
    }
    Ok((
        LogHead::of(offer.checkpoint),
        Cosignature::sign(checkpoint, time, witness_key),
    ))
}

/// Checks that `new` extends `old` (same log): equal sizes need equal roots;
/// a larger tree needs a consistency proof from `old`.
pub fn extends(old: &LogHead, new: &LogHead, consistency: &[Hash]) -> Result<(), WitnessRefusal> {
    if old.tree_size == new.tree_size && old.root != new.root {
        return Err(WitnessRefusal::Fork {
            origin: new.origin.clone(),
            tree_size: new.tree_size,
        });
    }
    if old.tree_size == 0 {
        return Ok(());
    }
    merkle::verify_consistency(
        old.tree_size,
        new.tree_size,
        &old.root,
        &new.root,
        consistency,
    )
    .map_err(|error| WitnessRefusal::Inconsistent {
        origin: new.origin.clone(),
        old_size: old.tree_size,
        new_size: new.tree_size,
        error,
    })
}

/// What an auditor found when a log's newest checkpoint met the last one it
/// saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditFinding {
    /// The first checkpoint seen of this log.
    First { tree_size: u64 },
    /// Same size, same root.
    Unchanged { tree_size: u64 },
    /// The log grew and the new tree extends the old.
    Grew { from: u64, to: u64 },
    /// Two roots for one size: the log showed two histories.
    SplitView { tree_size: u64 },
    /// A smaller tree than one seen before.
    Shrank { from: u64, to: u64 },
    /// A larger tree that does not extend the old one: history rewritten.
    Rewritten { from: u64, to: u64 },
}

impl AuditFinding {
    /// Whether this is something to report: the log broke its promise.
    pub fn is_violation(&self) -> bool {
        matches!(
            self,
            AuditFinding::SplitView { .. }
                | AuditFinding::Shrank { .. }
                | AuditFinding::Rewritten { .. }
        )
    }
}

/// Compares a log's newest head with the last one seen, using a consistency
/// proof from the old size to the new.
pub fn audit(previous: Option<&LogHead>, next: &LogHead, consistency: &[Hash]) -> AuditFinding {
    let Some(previous) = previous else {
        return AuditFinding::First {
            tree_size: next.tree_size,
        };
    };
    let (from, to) = (previous.tree_size, next.tree_size);
    if to < from {
        return AuditFinding::Shrank { from, to };
    }
    match extends(previous, next, consistency) {
        Ok(()) if from == to => AuditFinding::Unchanged { tree_size: to },
        Ok(()) => AuditFinding::Grew { from, to },
        Err(WitnessRefusal::Fork { tree_size, .. }) => AuditFinding::SplitView { tree_size },
        Err(_) => AuditFinding::Rewritten { from, to },
    }
}
