//! A batch of Ed25519 checks that accepts exactly what `verify_strict`
//! accepts (see tests/batch.rs for why it is not used, and the bench).

use curve25519_dalek::edwards::CompressedEdwardsY;
use ed25519_dalek::{Signature, VerifyingKey};

/// Most signatures in one batch (the multiscalar multiplication's memory
/// grows with it; beyond a few hundred it gains nothing).
pub const MAX_BATCH: usize = 256;

/// One signature to check: the signed bytes, the signature, the key.
pub struct Item<'a> {
    pub message: &'a [u8],
    pub signature: &'a Signature,
    pub key: &'a VerifyingKey,
}

/// Whether `item` may be checked in a batch: `R` canonical, `R` and the key
/// of prime order.
pub fn batchable(item: &Item<'_>) -> bool {
    let r_bytes = item.signature.r_bytes();
    let Some(r) = CompressedEdwardsY(*r_bytes).decompress() else {
        return false;
    };
    if r.compress().as_bytes() != r_bytes {
        return false;
    }
    let Some(a) = CompressedEdwardsY(item.key.to_bytes()).decompress() else {
        return false;
    };
    !r.is_small_order() && r.is_torsion_free() && !a.is_small_order() && a.is_torsion_free()
}

/// Checks every item in batches where that is exactly as strict;
/// `result[i]` is what `verify_strict` says of item `i`.
pub fn verify_strict_each(items: &[Item<'_>]) -> Vec<bool> {
    let mut result = vec![false; items.len()];
    let mut batch: Vec<usize> = Vec::with_capacity(items.len().min(MAX_BATCH));
    for (i, item) in items.iter().enumerate() {
        if batchable(item) {
            batch.push(i);
        } else {
            result[i] = strict(item);
        }
    }
    for chunk in batch.chunks(MAX_BATCH) {
        let messages: Vec<&[u8]> = chunk.iter().map(|&i| items[i].message).collect();
        let signatures: Vec<Signature> = chunk.iter().map(|&i| *items[i].signature).collect();
        let keys: Vec<VerifyingKey> = chunk.iter().map(|&i| *items[i].key).collect();
        let all =
            chunk.len() > 1 && ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok();
        for &i in chunk {
            // A batch that fails says only that one is bad: find which.
            result[i] = all || strict(&items[i]);
        }
    }
    result
}

pub fn strict(item: &Item<'_>) -> bool {
    item.key.verify_strict(item.message, item.signature).is_ok()
}
