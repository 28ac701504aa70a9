//! An evidence log kept in memory: the same tree, checkpoints and receipts
//! as a node's stored log, for tests, the vectors and tools.

use std::collections::HashMap;

use ed25519_dalek::SigningKey;

use crate::merkle::{self, Hash};
use crate::receipt::{Checkpoint, InclusionProof, Receipt, SignedCheckpoint};
use crate::text::Timestamp;

/// An evidence log kept in memory: the same tree, checkpoints and receipts
/// as a node's stored log, for tests, the vectors and tools. A node keeps
/// its log on disk (the relay crate's `evidence_log`), built on the same
/// [`merkle`] functions.
#[derive(Debug, Clone)]
pub struct MemoryLog {
    origin: String,
    nodes: HashMap<(u8, u64), Hash>,
    size: u64,
}

impl merkle::NodeSource for MemoryLog {
    type Error = std::convert::Infallible;
    fn node(&self, height: u8, index: u64) -> Result<Hash, Self::Error> {
        // Every node the tree's recursions ask for was stored by `append`.
        Ok(self
            .nodes
            .get(&(height, index))
            .copied()
            .unwrap_or_default())
    }
}

impl MemoryLog {
    pub fn new(origin: impl Into<String>) -> MemoryLog {
        MemoryLog {
            origin: origin.into(),
            nodes: HashMap::new(),
            size: 0,
        }
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends `entries` and signs one checkpoint over the log with `key`
    /// at `now`: the receipt of each entry, in order.
    pub fn append(
        &mut self,
        entries: &[Vec<u8>],
        key: &SigningKey,
        now: Timestamp,
    ) -> Vec<Vec<u8>> {
        let first = self.size;
        for entry in entries {
            let Ok(nodes) = merkle::append(&*self, self.size, merkle::leaf_hash(entry));
            for (height, index, hash) in nodes {
                self.nodes.insert((height, index), hash);
            }
            self.size += 1;
        }
        let checkpoint = self.checkpoint(key, now);
        (first..self.size)
            .map(|index| self.receipt(&checkpoint, index))
            .collect()
    }

    /// A checkpoint of the log as it is, signed with `key` at `now`.
    pub fn checkpoint(&self, key: &SigningKey, now: Timestamp) -> SignedCheckpoint {
        let Ok(root) = merkle::stored_root(self, self.size);
        SignedCheckpoint::sign(
            Checkpoint {
                origin: self.origin.clone(),
                tree_size: self.size,
                root,
                issued_at: now,
            },
            key,
        )
    }

    /// The receipt of entry `index` against `checkpoint` (of this log).
    pub fn receipt(&self, checkpoint: &SignedCheckpoint, index: u64) -> Vec<u8> {
        let size = checkpoint.checkpoint.tree_size;
        let Ok(path) = merkle::stored_inclusion_proof(self, index, size);
        Receipt {
            checkpoint: checkpoint.clone(),
            proof: InclusionProof {
                tree_size: size,
                leaf_index: index,
                path: path.unwrap_or_default(),
            },
            cosignatures: Vec::new(),
        }
        .encode()
    }

    /// The consistency proof from `old` to `new` records, `None` unless
    /// 0 < `old` ≤ `new` ≤ the size.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Option<Vec<Hash>> {
        if new > self.size {
            return None;
        }
        let Ok(proof) = merkle::stored_consistency_proof(self, old, new);
        proof
    }
}
