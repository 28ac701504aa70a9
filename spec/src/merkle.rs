//! Merkle trees as Certificate Transparency has them (RFC 9162 §2.1): the
//! hash of a log of records, inclusion proofs (this record is in the log of
//! that size) and consistency proofs (the log of that size is the start of
//! the log of this size). The basis of each node's evidence log: one
//! signed checkpoint covers every record before it, and nobody can rewrite
//! or fork a log without the proofs showing it.
//!
//! Pure functions over leaf hashes; a verifier needs nothing but SHA-256.

use sha2::{Digest as _, Sha256};

// The tiles a log is served in live in their own module; they were born
// here, and callers still name them through `merkle`.
pub use crate::tiles::{
    NeedTile, TILE_HEIGHT, TILE_WIDTH, TileReader, parse_tile_path, tile_path, tiles_of,
};

/// A node of the tree: SHA-256.
pub type Hash = [u8; 32];

/// The most hashes any proof of a tree of at most 2⁶⁴ − 1 leaves holds (an
/// inclusion proof one per level; a consistency proof at most one more).
pub const MAX_PROOF_HASHES: usize = 65;

/// The root of the empty tree: SHA-256 of nothing.
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// Why a proof does not prove what it is offered for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MerkleError {
    #[error("leaf {index} is not in a tree of {size} leaves")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("a tree of {old} leaves cannot be the start of one of {new}")]
    SizesOutOfOrder { old: u64, new: u64 },
    #[error("a proof of {0} hashes is longer than any tree needs")]
    ProofTooLong(usize),
    #[error("the proof has the wrong number of hashes for these sizes")]
    ProofLength,
    #[error(
        "the proof leads to another root: the record is not in this log, or the log was rewritten"
    )]
    RootMismatch,
    #[error("tile {path} has {bytes} bytes, not 32 for each of its hashes")]
    TileLength { path: String, bytes: usize },
}

/// The hash of a record as a leaf: SHA-256(0x00 ‖ record).
pub fn leaf_hash(record: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(record);
    h.finalize().into()
}

/// The hash of an inner node: SHA-256(0x01 ‖ left ‖ right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// MTH: the root of the tree over `leaves` (leaf hashes, in log order).
pub fn root(leaves: &[Hash]) -> Hash {
    let Ok(root) = stored_root(&Leaves(leaves), leaves.len() as u64);
    root
}

/// PATH: the inclusion proof of leaf `index` in the tree over `leaves`.
pub fn inclusion_proof(index: u64, leaves: &[Hash]) -> Result<Vec<Hash>, MerkleError> {
    let size = leaves.len() as u64;
    let Ok(proof) = stored_inclusion_proof(&Leaves(leaves), index, size);
    proof.ok_or(MerkleError::IndexOutOfRange { index, size })
}

/// PROOF: the consistency proof that the tree of the first `old_size`
/// leaves is the start of the tree over all of `leaves`.
pub fn consistency_proof(old_size: u64, leaves: &[Hash]) -> Result<Vec<Hash>, MerkleError> {
    let new = leaves.len() as u64;
    let Ok(proof) = stored_consistency_proof(&Leaves(leaves), old_size, new);
    proof.ok_or(MerkleError::SizesOutOfOrder { old: old_size, new })
}

/// The leaf hashes of a whole tree in memory, as a [`NodeSource`]: each
/// perfect subtree hashed from its leaves when asked for (the same
/// recursions as a stored log, for trees given as a slice).
pub(crate) struct Leaves<'a>(pub(crate) &'a [Hash]);

impl NodeSource for Leaves<'_> {
    type Error = std::convert::Infallible;
    fn node(&self, height: u8, index: u64) -> Result<Hash, Self::Error> {
        let at = |i: u64| {
            i.checked_shl(u32::from(height))
                .and_then(|n| usize::try_from(n).ok())
        };
        let range = at(index)
            .zip(index.checked_add(1).and_then(at))
            .and_then(|(start, end)| self.0.get(start..end));
        // The recursions ask only for subtrees inside the tree.
        Ok(range.map_or(EMPTY_ROOT, |leaves| Leaves(leaves).whole()))
    }
}

impl Leaves<'_> {
    /// The hash of a perfect subtree given as all its leaves.
    pub(crate) fn whole(&self) -> Hash {
        match self.0 {
            [] => EMPTY_ROOT,
            [leaf] => *leaf,
            leaves => {
                let (left, right) = leaves.split_at(leaves.len() / 2);
                node_hash(&Leaves(left).whole(), &Leaves(right).whole())
            }
        }
    }
}

/// Where a stored log's hashes come from: the hash of the perfect subtree
/// at `height` (2^height leaves) and `index` (its leaves are `index ·
/// 2^height` to `(index + 1) · 2^height − 1`). A log stores each such node
/// once, when its last leaf arrives ([`append`]); proofs for any size are
/// computed from them (RFC 9162's recursions over ranges of leaves).
pub trait NodeSource {
    type Error;
    fn node(&self, height: u8, index: u64) -> Result<Hash, Self::Error>;
}

/// The nodes appending leaf `index` (hash `leaf`) completes, to store: the
/// leaf itself at height 0, then each subtree it is the last leaf of.
/// Reads the left siblings, stored before.
pub fn append<S: NodeSource>(
    source: &S,
    index: u64,
    leaf: Hash,
) -> Result<Vec<(u8, u64, Hash)>, S::Error> {
    let mut out = vec![(0, index, leaf)];
    let (mut hash, mut height, mut i) = (leaf, 0u8, index);
    while i & 1 == 1 {
        hash = node_hash(&source.node(height, i - 1)?, &hash);
        height += 1;
        i >>= 1;
        out.push((height, i, hash));
    }
    Ok(out)
}

/// The largest power of two smaller than `n` (`n` ≥ 2).
fn split64(n: u64) -> u64 {
    1 << (u64::BITS - 1 - (n - 1).leading_zeros())
}

/// MTH of leaves `start..end` (`end` > `start`) of a stored log. Every
/// perfect range the recursion meets is aligned, so it is one stored node.
pub fn range_hash<S: NodeSource>(source: &S, start: u64, end: u64) -> Result<Hash, S::Error> {
    let n = end - start;
    if n.is_power_of_two() && start.is_multiple_of(n) {
        let height = n.trailing_zeros() as u8;
        return source.node(height, start >> height);
    }
    let k = split64(n);
    Ok(node_hash(
        &range_hash(source, start, start + k)?,
        &range_hash(source, start + k, end)?,
    ))
}

/// The root of the first `size` leaves of a stored log.
pub fn stored_root<S: NodeSource>(source: &S, size: u64) -> Result<Hash, S::Error> {
    if size == 0 {
        return Ok(EMPTY_ROOT);
    }
    range_hash(source, 0, size)
}

/// PATH of leaf `index` in the tree of the first `size` leaves of a stored
/// log; `None` when `index` ≥ `size`.
pub fn stored_inclusion_proof<S: NodeSource>(
    source: &S,
    index: u64,
    size: u64,
) -> Result<Option<Vec<Hash>>, S::Error> {
    if index >= size {
        return Ok(None);
    }
    let mut proof = Vec::new();
    stored_path(source, index, 0, size, &mut proof)?;
    Ok(Some(proof))
}

fn stored_path<S: NodeSource>(
    source: &S,
    m: u64,
    start: u64,
    end: u64,
    out: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    if end - start <= 1 {
        return Ok(());
    }
    let k = start + split64(end - start);
    if m < k {
        stored_path(source, m, start, k, out)?;
        out.push(range_hash(source, k, end)?);
    } else {
        stored_path(source, m, k, end, out)?;
        out.push(range_hash(source, start, k)?);
    }
    Ok(())
}

/// PROOF from `old_size` to `new_size` leaves of a stored log; `None` unless
/// 0 < `old_size` ≤ `new_size`.
pub fn stored_consistency_proof<S: NodeSource>(
    source: &S,
    old_size: u64,
    new_size: u64,
) -> Result<Option<Vec<Hash>>, S::Error> {
    if old_size == 0 || old_size > new_size {
        return Ok(None);
    }
    let mut proof = Vec::new();
    stored_subproof(source, old_size, 0, new_size, true, &mut proof)?;
    Ok(Some(proof))
}

fn stored_subproof<S: NodeSource>(
    source: &S,
    m: u64,
    start: u64,
    end: u64,
    whole: bool,
    out: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    if m == end {
        if !whole {
            out.push(range_hash(source, start, end)?);
        }
        return Ok(());
    }
    let k = start + split64(end - start);
    if m <= k {
        stored_subproof(source, m, start, k, whole, out)?;
        out.push(range_hash(source, k, end)?);
    } else {
        stored_subproof(source, m, k, end, false, out)?;
        out.push(range_hash(source, start, k)?);
    }
    Ok(())
}

/// Checks that `leaf` (a leaf hash) is leaf `index` of the tree of `size`
/// leaves whose root is `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), MerkleError> {
    if &root_from_inclusion(index, size, leaf, proof)? != root {
        return Err(MerkleError::RootMismatch);
    }
    Ok(())
}

/// The root of the tree of `size` leaves that `proof` says holds `leaf` at
/// `index`: the computation of RFC 9162 §2.1.3.2 without the final
/// comparison, for a root that is then checked by a signature over it.
pub fn root_from_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
) -> Result<Hash, MerkleError> {
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    if proof.len() > MAX_PROOF_HASHES {
        return Err(MerkleError::ProofTooLong(proof.len()));
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return Err(MerkleError::ProofLength);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(MerkleError::ProofLength);
    }
    Ok(r)
}

/// Checks that the tree of `old_size` leaves with root `old_root` is the
/// start of the tree of `new_size` leaves with root `new_root` (RFC 9162
/// §2.1.4.2). Equal sizes need an empty proof and equal roots.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), MerkleError> {
    if old_size == 0 || old_size > new_size {
        return Err(MerkleError::SizesOutOfOrder {
            old: old_size,
            new: new_size,
        });
    }
    if proof.len() > MAX_PROOF_HASHES {
        return Err(MerkleError::ProofTooLong(proof.len()));
    }
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(MerkleError::ProofLength);
        }
        return if old_root == new_root {
            Ok(())
        } else {
            Err(MerkleError::RootMismatch)
        };
    }
    // A first tree of a power of two leaves is a node of the second: the
    // proof starts from its root, which the proof leaves out.
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let (first, rest) = path.split_first().ok_or(MerkleError::ProofLength)?;
    let (mut fn_, mut sn) = (old_size - 1, new_size - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if sn == 0 {
            return Err(MerkleError::ProofLength);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(MerkleError::ProofLength);
    }
    if &fr != old_root || &sr != new_root {
        return Err(MerkleError::RootMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The reference vectors of RFC 6962's tree (Certificate Transparency's
    //! test data: eight leaves, the roots of every size, and published
    //! inclusion and consistency proofs), then every index and size pair of
    //! larger trees.
    use super::*;

    const LEAVES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];
    const ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn h(text: &str) -> Hash {
        let bytes = hex::decode(text).unwrap();
        bytes.try_into().unwrap()
    }

    fn leaves() -> Vec<Hash> {
        LEAVES
            .iter()
            .map(|l| leaf_hash(&hex::decode(l).unwrap()))
            .collect()
    }

    #[test]
    fn roots_match_the_reference_tree() {
        assert_eq!(EMPTY_ROOT, h(ROOTS[0]));
        let leaves = leaves();
        for size in 0..=8 {
            assert_eq!(root(&leaves[..size]), h(ROOTS[size]), "size {size}");
        }
    }

    #[test]
    fn inclusion_proofs_match_the_reference() {
        let leaves = leaves();
        // (index, size, proof), as published.
        let cases: [(u64, usize, &[&str]); 4] = [
            (
                0,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                5,
                8,
                &[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                3,
                &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
            ),
            (
                1,
                5,
                &[
                    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (index, size, expected) in cases {
            let proof = inclusion_proof(index, &leaves[..size]).unwrap();
            let expected: Vec<Hash> = expected.iter().map(|e| h(e)).collect();
            assert_eq!(proof, expected, "leaf {index} of {size}");
            let leaf = &leaves[index as usize];
            verify_inclusion(index, size as u64, leaf, &proof, &h(ROOTS[size])).unwrap();
            assert_eq!(
                verify_inclusion(index, size as u64, leaf, &proof, &h(ROOTS[0])),
                Err(MerkleError::RootMismatch)
            );
        }
    }

    #[test]
    fn consistency_proofs_match_the_reference() {
        let leaves = leaves();
        let cases: [(u64, usize, &[&str]); 4] = [
            (1, 1, &[]),
            (
                1,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                5,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (old, new, expected) in cases {
            let proof = consistency_proof(old, &leaves[..new]).unwrap();
            let expected: Vec<Hash> = expected.iter().map(|e| h(e)).collect();
            assert_eq!(proof, expected, "{old} → {new}");
            verify_consistency(
                old,
                new as u64,
                &h(ROOTS[old as usize]),
                &h(ROOTS[new]),
                &proof,
            )
            .unwrap();
        }
    }

    /// Leaf hashes of a tree of `n` made-up records.
    fn made_up(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(&(i as u64).to_be_bytes()))
            .collect()
    }

    #[test]
    fn every_leaf_of_every_size_proves_and_nothing_else_does() {
        let all = made_up(40);
        for size in 1..=all.len() {
            let leaves = &all[..size];
            let top = root(leaves);
            for index in 0..size as u64 {
                let proof = inclusion_proof(index, leaves).unwrap();
                let leaf = &leaves[index as usize];
                verify_inclusion(index, size as u64, leaf, &proof, &top).unwrap();
                // Another leaf, another index, a changed hash. (Not another
                // size: a proof binds a leaf to a root; the size that goes
                // with the root is what the signed checkpoint binds.)
                let other = leaf_hash(b"not in the log");
                assert!(verify_inclusion(index, size as u64, &other, &proof, &top).is_err());
                if size > 1 {
                    let wrong = (index + 1) % size as u64;
                    assert!(verify_inclusion(wrong, size as u64, leaf, &proof, &top).is_err());
                    let mut bent = proof.clone();
                    bent[0][0] ^= 1;
                    assert!(verify_inclusion(index, size as u64, leaf, &bent, &top).is_err());
                }
            }
        }
    }

    #[test]
    fn every_pair_of_sizes_is_consistent_and_a_rewrite_is_not() {
        let all = made_up(33);
        let roots: Vec<Hash> = (0..=all.len()).map(|n| root(&all[..n])).collect();
        for new in 1..=all.len() {
            for old in 1..=new {
                let proof = consistency_proof(old as u64, &all[..new]).unwrap();
                verify_consistency(old as u64, new as u64, &roots[old], &roots[new], &proof)
                    .unwrap();
                if old < new {
                    // The same sizes with one early record rewritten.
                    let mut rewritten = all[..new].to_vec();
                    rewritten[0] = leaf_hash(b"rewritten");
                    let forged = root(&rewritten);
                    assert!(
                        verify_consistency(old as u64, new as u64, &roots[old], &forged, &proof)
                            .is_err(),
                        "{old} → {new}"
                    );
                    let mut bent = proof.clone();
                    if let Some(first) = bent.first_mut() {
                        first[31] ^= 1;
                        assert!(
                            verify_consistency(
                                old as u64,
                                new as u64,
                                &roots[old],
                                &roots[new],
                                &bent
                            )
                            .is_err()
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn impossible_sizes_and_long_proofs_are_refused() {
        let leaf = leaf_hash(b"x");
        assert_eq!(
            verify_inclusion(3, 3, &leaf, &[], &leaf),
            Err(MerkleError::IndexOutOfRange { index: 3, size: 3 })
        );
        assert_eq!(
            verify_consistency(5, 4, &leaf, &leaf, &[]),
            Err(MerkleError::SizesOutOfOrder { old: 5, new: 4 })
        );
        assert_eq!(
            verify_consistency(0, 4, &leaf, &leaf, &[]),
            Err(MerkleError::SizesOutOfOrder { old: 0, new: 4 })
        );
        let long = vec![leaf; MAX_PROOF_HASHES + 1];
        assert_eq!(
            verify_inclusion(0, u64::MAX, &leaf, &long, &leaf),
            Err(MerkleError::ProofTooLong(MAX_PROOF_HASHES + 1))
        );
        // The largest tree: every proof is read without overflow.
        for hashes in [0, 1, 63, 64, 65] {
            let proof = vec![leaf; hashes];
            for index in [0, 1, u64::MAX / 2, u64::MAX - 1] {
                assert!(verify_inclusion(index, u64::MAX, &leaf, &proof, &leaf).is_err());
                // (Equal sizes and roots with an empty proof do hold.)
                let held = verify_consistency(index + 1, u64::MAX, &leaf, &leaf, &proof).is_ok();
                assert_eq!(held, index + 1 == u64::MAX && hashes == 0);
            }
        }
        assert_eq!(
            inclusion_proof(0, &[]),
            Err(MerkleError::IndexOutOfRange { index: 0, size: 0 })
        );
    }

    /// A stored log in memory: every node [`append`] gives.
    #[derive(Default)]
    struct Stored(std::collections::HashMap<(u8, u64), Hash>);

    impl NodeSource for Stored {
        type Error = (u8, u64);
        fn node(&self, height: u8, index: u64) -> Result<Hash, (u8, u64)> {
            self.0.get(&(height, index)).copied().ok_or((height, index))
        }
    }

    fn hashes(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    #[test]
    fn a_stored_log_gives_the_proofs_of_the_whole_tree() {
        let leaves = hashes(70);
        let mut stored = Stored::default();
        for (i, leaf) in leaves.iter().enumerate() {
            for (h, j, hash) in append(&stored, i as u64, *leaf).unwrap() {
                stored.0.insert((h, j), hash);
            }
        }
        // Each node stored once: 2n − popcount(n) of them.
        assert_eq!(stored.0.len(), 2 * 70 - 3);
        assert_eq!(stored_root(&stored, 0).unwrap(), EMPTY_ROOT);
        for size in 1..=70u64 {
            let tree = &leaves[..size as usize];
            assert_eq!(
                stored_root(&stored, size).unwrap(),
                root(tree),
                "size {size}"
            );
            for index in 0..size {
                assert_eq!(
                    stored_inclusion_proof(&stored, index, size).unwrap(),
                    Some(inclusion_proof(index, tree).unwrap()),
                    "leaf {index} of {size}"
                );
            }
            assert_eq!(stored_inclusion_proof(&stored, size, size).unwrap(), None);
            for old in 1..=size {
                assert_eq!(
                    stored_consistency_proof(&stored, old, size).unwrap(),
                    Some(consistency_proof(old, tree).unwrap()),
                    "{old} to {size}"
                );
            }
            assert_eq!(stored_consistency_proof(&stored, 0, size).unwrap(), None);
            assert_eq!(
                stored_consistency_proof(&stored, size + 1, size).unwrap(),
                None
            );
        }
    }
}
