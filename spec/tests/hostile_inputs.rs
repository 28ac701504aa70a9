//! Hostile inputs fail at once with a typed error and without large
//! allocations. A heap profiler (dhat) is this binary's global allocator, so
//! the test measures the peak heap each decode adds. One test function only:
//! dhat counts the whole process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use estafette_spec::cbor::CborError;
use estafette_spec::cose::CoseError;
use estafette_spec::fixtures::{self, FixedRng, T0};
use estafette_spec::*;
use rand_core::RngCore;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Most extra heap any rejection may use on top of its input.
const MAX_EXTRA_HEAP_BYTES: u64 = 64 * 1024;

fn all_decoders(input: &[u8]) -> Vec<String> {
    let trust = fixtures::trust_list();
    let policy = assertion::AssertionPolicy {
        audience: fixtures::home_id(),
        min_level: LevelOfAssurance::Substantial,
        now: T0,
    };
    vec![
        SignedMessage::verify(input, &trust)
            .unwrap_err()
            .to_string(),
        Envelope::verify(input, &trust, T0).unwrap_err().to_string(),
        Evidence::verify(input, &trust).unwrap_err().to_string(),
        IdentityAssertion::verify(input, &trust, &policy)
            .unwrap_err()
            .to_string(),
        TrustList::verify(input, &fixtures::root_key().verifying_key(), T0)
            .unwrap_err()
            .to_string(),
    ]
}

/// Runs every decoder on `input`, returns the peak heap they added and the errors.
fn measure(name: &str, input: &[u8]) -> Vec<String> {
    // The fixture trust list is built inside; build one first so that its own
    // (small, bounded) allocations are part of the baseline measurement too.
    let baseline = dhat::HeapStats::get();
    let started = std::time::Instant::now();
    let errors = all_decoders(input);
    let elapsed = started.elapsed();
    let after = dhat::HeapStats::get();
    // The heap peak is global: either this run raised it (then the rise
    // over the baseline is what it added) or it stayed under the old peak
    // (then what it added is at most the old peak over the baseline). The
    // 100 MiB case therefore runs last.
    let extra = after.max_bytes.max(baseline.max_bytes) - baseline.curr_bytes;
    let extra = extra as u64;
    println!(
        "{name}: input {} bytes, peak extra heap {} bytes, {:?} for all 5 decoders; first error: {}",
        input.len(),
        extra,
        elapsed,
        errors[0]
    );
    // The trust list built for the run is itself a few KiB.
    assert!(
        extra <= MAX_EXTRA_HEAP_BYTES,
        "{name}: decoding used {extra} bytes of extra heap"
    );
    errors
}

#[test]
fn hostile_inputs_fail_at_once_without_large_allocations() {
    let _profiler = dhat::Profiler::builder().testing().build();

    // 2. 10,000 nested arrays.
    let mut deep = vec![0x81u8; 10_000];
    deep.push(0x00);
    let errors = measure("10,000-deep array", &deep);
    // Assertions (8 KiB) refuse 10 KB by size before looking at depth;
    // evidence (12 KiB) and the rest refuse it by its depth.
    assert!(
        errors
            .iter()
            .all(|e| e.contains("nesting deeper than") || e.contains("the limit for this object")),
        "{errors:?}"
    );
    assert_eq!(
        errors
            .iter()
            .filter(|e| e.contains("nesting deeper than"))
            .count(),
        4
    );

    // 3. A byte string header claiming 2^60 bytes, bare and inside a COSE_Sign1.
    let mut claim = vec![0x5b];
    claim.extend_from_slice(&(1u64 << 60).to_be_bytes());
    claim.extend_from_slice(&[0u8; 32]);
    let errors = measure("2^60-byte string header", &claim);
    assert!(
        errors
            .iter()
            .all(|e| e.contains("claims 1152921504606846976 bytes")),
        "{errors:?}"
    );
    let mut in_cose = vec![0xd2, 0x84, 0x40, 0xa0, 0x5b];
    in_cose.extend_from_slice(&(1u64 << 60).to_be_bytes());
    in_cose.extend_from_slice(&[0u8; 64]);
    let errors = measure("2^60-byte payload inside COSE_Sign1", &in_cose);
    assert!(
        errors
            .iter()
            .all(|e| e.contains("claims 1152921504606846976 bytes")),
        "{errors:?}"
    );

    // 4. An array header claiming 2^32 items.
    let mut many = vec![0x9b];
    many.extend_from_slice(&(1u64 << 32).to_be_bytes());
    many.extend_from_slice(&[0u8; 16]);
    let errors = measure("2^32-item array header", &many);
    assert!(
        errors.iter().all(|e| e.contains("items, the limit is")),
        "{errors:?}"
    );

    // 5. Random garbage, many times.
    let mut rng = FixedRng::new("garbage");
    for round in 0..200 {
        let mut garbage = vec![0u8; 1 + (round * 37) % 4096];
        rng.fill_bytes(&mut garbage);
        let errors = all_decoders(&garbage);
        assert_eq!(errors.len(), 5);
    }
    let mut garbage = vec![0u8; 1024 * 1024];
    rng.fill_bytes(&mut garbage);
    measure("1 MiB of random bytes", &garbage);

    // 6. Last (see `measure`): a 100 MiB input: refused by its length alone.
    let huge = vec![0xa5u8; 100 * 1024 * 1024];
    let errors = measure("100 MiB input", &huge);
    assert!(
        errors
            .iter()
            .all(|e| e.contains("the limit for this object is")),
        "{errors:?}"
    );
    drop(huge);

    // The typed errors, for the record.
    assert!(matches!(
        estafette_spec::cbor::prescan(&deep, 1 << 20),
        Err(CborError::TooDeep { .. })
    ));
    let trust = fixtures::trust_list();
    assert!(matches!(
        SignedMessage::verify(&claim, &trust),
        Err(MessageError::Verify(VerifyError::Cose(CoseError::Cbor(
            CborError::LengthBeyondInput { .. }
        ))))
    ));
}
