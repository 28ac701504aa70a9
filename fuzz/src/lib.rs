//! # estafette-fuzz: what the fuzzers feed, and the replay of what they found
//!
//! One function per fuzz target, each taking arbitrary bytes and running
//! every decoder of one kind of outside input the way a node does. A target
//! fails by panicking (in the decoder, or in one of the invariants checked
//! here); libFuzzer also fails it on a leak, a timeout, or an allocation over
//! its limit. `cargo fuzz` builds the binaries in `fuzz_targets/` around
//! these functions (see `scripts/fuzz`); `tests/corpora.rs` replays every
//! committed corpus and regression input through the same functions in the
//! ordinary test suite, so that a fixed crash stays fixed.
//!
//! Signatures stop random bytes early, so the `signed_payloads` and
//! `identity_proofs` targets sign the fuzzer's bytes with the test
//! federation's own keys first: they reach what a trusted but hostile (or
//! buggy) signer could send.
#![forbid(unsafe_code)]

mod harness;
pub mod seeds;

pub use harness::{
    cbor, configs, cose_objects, identifiers, identity_proofs, relay_frames, signed_payloads,
};

/// A fuzz target: runs on any bytes, fails only by panicking.
pub type Target = fn(&[u8]);

/// Every target by name, as `cargo fuzz` and the corpus directories name them.
pub const TARGETS: [(&str, Target); 7] = [
    ("cbor", cbor),
    ("cose_objects", cose_objects),
    ("signed_payloads", signed_payloads),
    ("relay_frames", relay_frames),
    ("identity_proofs", identity_proofs),
    ("identifiers", identifiers),
    ("configs", configs),
];
