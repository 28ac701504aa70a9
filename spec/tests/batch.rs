//! A measured finding (issue 19): Ed25519 batch verification does not pay
//! where we need `verify_strict`'s answers.
//!
//! ed25519-dalek's `verify_batch` (one multiscalar multiplication for all
//! signatures, random weights) is 2–3x faster per signature, but it is more
//! lenient than `verify_strict`: it reads a non-canonical `R` as the point
//! it decodes to, and when points carry a small-order (torsion) component
//! a random weight can cancel the error. A verifier that batches would
//! accept evidence another verifier refuses. To accept exactly what
//! `verify_strict` accepts, a signature may join a batch only if its `R` is
//! canonically encoded and both `R` and the key are of prime order; those
//! checks cost a scalar multiplication per point, more than the batch
//! saves (`cargo bench -p estafette-spec --bench signatures`: about 0.4x).
//! So the nodes verify one by one (and once per checkpoint, through
//! `CheckpointCache`), and this file keeps the strict-equivalent batch and
//! the counterexample, so that the choice can be revisited with numbers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/strict_batch.rs"]
mod strict_batch;

use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::{Signature, VerifyingKey};
use ed25519_dalek::{Signer, SigningKey};
use sha2::{Digest, Sha512};
use strict_batch::*;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn k(r: &EdwardsPoint, a: &EdwardsPoint, message: &[u8]) -> Scalar {
    let mut h = Sha512::new();
    h.update(r.compress().as_bytes());
    h.update(a.compress().as_bytes());
    h.update(message);
    Scalar::from_bytes_mod_order_wide(&h.finalize().into())
}

/// A signature that `verify_strict` accepts although its key and `R`
/// both carry a torsion component (a "mixed" key): R = rB + T₂ with
/// T₂ = −k·T, so that [s]B − [k]A is exactly R.
fn mixed_order_signature(message: &[u8]) -> (VerifyingKey, Signature) {
    let a = Scalar::from(7u64);
    let torsion = EIGHT_TORSION[1];
    let public = ED25519_BASEPOINT_POINT * a + torsion;
    for r_seed in 1u64.. {
        let r = Scalar::from(r_seed);
        for t2 in EIGHT_TORSION {
            let big_r = ED25519_BASEPOINT_POINT * r + t2;
            let k = k(&big_r, &public, message);
            if -(torsion * k) == t2 {
                let s = r + k * a;
                let mut bytes = [0u8; 64];
                bytes[..32].copy_from_slice(big_r.compress().as_bytes());
                bytes[32..].copy_from_slice(s.as_bytes());
                let key = VerifyingKey::from_bytes(public.compress().as_bytes()).unwrap();
                return (key, Signature::from_bytes(&bytes));
            }
        }
    }
    unreachable!()
}

/// A signature `verify_strict` refuses ([s]B − [k]A is R less a point
/// of order 2) that ed25519-dalek's plain batch accepts, next to
/// `good`: about one R in two makes the random weight of that point even.
fn accepted_by_a_plain_batch(good: &Item<'_>) -> (VerifyingKey, Signature, Vec<u8>) {
    let a = Scalar::from(11u64);
    let public = ED25519_BASEPOINT_POINT * a;
    let key = VerifyingKey::from_bytes(public.compress().as_bytes()).unwrap();
    let message = b"a refused letter".to_vec();
    for r_seed in 1u64..1000 {
        let big_r = ED25519_BASEPOINT_POINT * Scalar::from(r_seed) + EIGHT_TORSION[4];
        let k = k(&big_r, &public, &message);
        let s = Scalar::from(r_seed) + k * a;
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(big_r.compress().as_bytes());
        bytes[32..].copy_from_slice(s.as_bytes());
        let signature = Signature::from_bytes(&bytes);
        let plain = ed25519_dalek::verify_batch(
            &[good.message, &message],
            &[*good.signature, signature],
            &[*good.key, key],
        );
        if plain.is_ok() {
            return (key, signature, message);
        }
    }
    unreachable!("no R in 1000 made the plain batch accept")
}

#[test]
fn a_plain_batch_accepts_what_verify_strict_refuses_and_ours_does_not() {
    let signer = key(1);
    let good_key = signer.verifying_key();
    let good_signature = signer.sign(b"a letter");
    let good = Item {
        message: b"a letter",
        signature: &good_signature,
        key: &good_key,
    };
    let (key, signature, message) = accepted_by_a_plain_batch(&good);
    let bad = Item {
        message: &message,
        signature: &signature,
        key: &key,
    };
    assert!(!strict(&bad));
    assert_eq!(verify_strict_each(&[good, bad]), [true, false]);
}

#[test]
fn the_batch_says_what_verify_strict_says_of_each() {
    let messages: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 1 + i as usize]).collect();
    let keys: Vec<SigningKey> = (0..40u8).map(key).collect();
    let mut signatures: Vec<Signature> =
        messages.iter().zip(&keys).map(|(m, k)| k.sign(m)).collect();
    let mut verifying: Vec<VerifyingKey> = keys.iter().map(|k| k.verifying_key()).collect();
    let mut messages = messages;
    // 5: another message.
    messages[5] = b"something else".to_vec();
    // 9: S one more (no longer the signature).
    let mut bytes = signatures[9].to_bytes();
    bytes[40] ^= 1;
    signatures[9] = Signature::from_bytes(&bytes);
    // 13: R written non-canonically (y + p for a small y is not
    // possible for every R; use the identity's second encoding).
    let mut bytes = signatures[13].to_bytes();
    let mut r = [0u8; 32];
    r[0] = 0xee;
    r[1..31].fill(0xff);
    r[31] = 0x7f;
    bytes[..32].copy_from_slice(&r);
    signatures[13] = Signature::from_bytes(&bytes);
    // 17: R of small order.
    let mut bytes = signatures[17].to_bytes();
    bytes[..32].copy_from_slice(EIGHT_TORSION[2].compress().as_bytes());
    signatures[17] = Signature::from_bytes(&bytes);
    // 21: a mixed-order key and R that verify_strict accepts.
    let (mixed_key, mixed_signature) = mixed_order_signature(&messages[21]);
    verifying[21] = mixed_key;
    signatures[21] = mixed_signature;
    // 25: the same with one bit of the message changed.
    let (mixed_key, mixed_signature) = mixed_order_signature(b"other");
    verifying[25] = mixed_key;
    signatures[25] = mixed_signature;

    let items: Vec<Item<'_>> = (0..40)
        .map(|i| Item {
            message: &messages[i],
            signature: &signatures[i],
            key: &verifying[i],
        })
        .collect();
    let expected: Vec<bool> = items.iter().map(strict).collect();
    assert!(expected[21], "the mixed-order signature verifies strictly");
    assert!(!expected[25]);
    assert_eq!(expected.iter().filter(|ok| !**ok).count(), 5);
    assert_eq!(verify_strict_each(&items), expected);
    assert!(!batchable(&items[13]) && !batchable(&items[17]) && !batchable(&items[21]));
    // All good: one batch, every one accepted.
    let good: Vec<Item<'_>> = (0..40)
        .filter(|i| expected[*i] && *i != 21)
        .map(|i| Item {
            message: &messages[i],
            signature: &signatures[i],
            key: &verifying[i],
        })
        .collect();
    assert!(verify_strict_each(&good).iter().all(|ok| *ok));
    assert!(verify_strict_each(&[]).is_empty());
}
