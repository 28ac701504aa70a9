//! Ed25519 checks one by one (`verify_strict`, what the nodes do) against
//! a batch that accepts exactly the same (tests/batch.rs) and against
//! ed25519-dalek's plain batch, which does not. Prints microseconds per
//! signature; run with `cargo bench -p estafette-spec --bench signatures`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
#[path = "../tests/support/strict_batch.rs"]
mod batch;

use batch::{Item, verify_strict_each};

const ROUNDS: usize = 200;

fn main() {
    for size in [2usize, 8, 64, 256] {
        let keys: Vec<SigningKey> = (0..size)
            .map(|i| SigningKey::from_bytes(&[(i % 251) as u8 + 1; 32]))
            .collect();
        let verifying: Vec<VerifyingKey> = keys.iter().map(|k| k.verifying_key()).collect();
        let messages: Vec<Vec<u8>> = (0..size)
            .map(|i| format!("checkpoint {i}").into_bytes())
            .collect();
        let signatures: Vec<Signature> =
            keys.iter().zip(&messages).map(|(k, m)| k.sign(m)).collect();
        let items: Vec<Item<'_>> = (0..size)
            .map(|i| Item {
                message: &messages[i],
                signature: &signatures[i],
                key: &verifying[i],
            })
            .collect();
        let started = Instant::now();
        for _ in 0..ROUNDS {
            for item in &items {
                assert!(item.key.verify_strict(item.message, item.signature).is_ok());
            }
        }
        let one_by_one = started.elapsed().as_secs_f64() * 1e6 / (ROUNDS * size) as f64;
        let started = Instant::now();
        for _ in 0..ROUNDS {
            assert!(verify_strict_each(&items).iter().all(|ok| *ok));
        }
        let batched = started.elapsed().as_secs_f64() * 1e6 / (ROUNDS * size) as f64;
        // ed25519-dalek's batch alone: faster, but it accepts signatures
        // verify_strict refuses (spec::batch's tests show one).
        let (m, sig, k): (Vec<&[u8]>, Vec<Signature>, Vec<VerifyingKey>) = (
            messages.iter().map(Vec::as_slice).collect(),
            signatures.clone(),
            verifying.clone(),
        );
        let started = Instant::now();
        for _ in 0..ROUNDS {
            assert!(ed25519_dalek::verify_batch(&m, &sig, &k).is_ok());
        }
        let plain = started.elapsed().as_secs_f64() * 1e6 / (ROUNDS * size) as f64;
        println!(
            "{size:>4} signatures: {one_by_one:6.1} µs each one by one (verify_strict), {batched:6.1} µs in a strict-equivalent batch ({:.2}x), {plain:6.1} µs in ed25519-dalek's plain batch ({:.2}x)",
            one_by_one / batched,
            one_by_one / plain
        );
    }
}
