//! Witnesses cosign only checkpoints that extend the last one they cosigned,
//! and auditors report a log that forks or rewrites its history (SPEC.md §15).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use estafette_spec::fixtures::{self, GATEWAY, HOME, RELAY, T0, key};
use estafette_spec::merkle::{self, Hash, MerkleError};
use estafette_spec::receipt::{Checkpoint, ReceiptError, SignedCheckpoint};
use estafette_spec::witness::{
    AuditFinding, CheckpointOffer, LogHead, WitnessRefusal, audit, cosign,
};

fn leaves(prefix: &str, n: usize) -> Vec<Hash> {
    (0..n)
        .map(|i| merkle::leaf_hash(format!("{prefix} {i}").as_bytes()))
        .collect()
}

fn signed(leaves: &[Hash]) -> SignedCheckpoint {
    let checkpoint = Checkpoint {
        origin: HOME.into(),
        tree_size: leaves.len() as u64,
        root: merkle::root(leaves),
        issued_at: T0,
    };
    SignedCheckpoint::sign(checkpoint, &key(HOME))
}

fn offer<'a>(
    old_size: u64,
    consistency: &'a [Hash],
    checkpoint: &'a SignedCheckpoint,
) -> CheckpointOffer<'a> {
    CheckpointOffer {
        old_size,
        consistency,
        checkpoint,
    }
}

fn witness(
    known: Option<&LogHead>,
    offer: &CheckpointOffer<'_>,
) -> Result<LogHead, WitnessRefusal> {
    let trust = fixtures::trust_list();
    let (head, cosignature) = cosign(
        &fixtures::relay_id(),
        &key(RELAY),
        known,
        offer,
        &trust,
        T0.0,
    )?;
    assert!(cosignature.verify(&offer.checkpoint.checkpoint, &key(RELAY).verifying_key()));
    Ok(head)
}

#[test]
fn a_witness_cosigns_a_log_that_grows() {
    let log = leaves("record", 20);
    let first = signed(&log[..7]);
    let head = witness(None, &offer(0, &[], &first)).unwrap();
    assert_eq!(head.tree_size, 7);
    let second = signed(&log);
    let proof = merkle::consistency_proof(7, &log).unwrap();
    let head = witness(Some(&head), &offer(7, &proof, &second)).unwrap();
    assert_eq!(head, LogHead::of(&second));
    // The same checkpoint again is cosigned again.
    witness(Some(&head), &offer(20, &[], &second)).unwrap();
}

#[test]
fn a_forked_log_is_refused() {
    let log = leaves("record", 8);
    let head = witness(None, &offer(0, &[], &signed(&log))).unwrap();
    // Another history of the same size.
    let other = leaves("rewritten", 8);
    let refusal = witness(Some(&head), &offer(8, &[], &signed(&other))).unwrap_err();
    assert_eq!(
        refusal,
        WitnessRefusal::Fork {
            origin: HOME.into(),
            tree_size: 8
        }
    );
    assert_eq!(refusal.http_status(), 409);
    // A longer history that does not start with the cosigned one, with the
    // consistency proof of its own first 8 records.
    let mut longer = other.clone();
    longer.extend(leaves("more", 5));
    let proof = merkle::consistency_proof(8, &longer).unwrap();
    let refusal = witness(Some(&head), &offer(8, &proof, &signed(&longer))).unwrap_err();
    assert_eq!(
        refusal,
        WitnessRefusal::Inconsistent {
            origin: HOME.into(),
            old_size: 8,
            new_size: 13,
            error: MerkleError::RootMismatch
        }
    );
    assert_eq!(refusal.http_status(), 422);
}

#[test]
fn a_witness_answers_a_stale_size_with_the_size_it_knows() {
    let log = leaves("record", 12);
    let head = witness(None, &offer(0, &[], &signed(&log[..5]))).unwrap();
    let proof = merkle::consistency_proof(3, &log).unwrap();
    let refusal = witness(Some(&head), &offer(3, &proof, &signed(&log))).unwrap_err();
    assert_eq!(
        refusal,
        WitnessRefusal::Conflict {
            origin: HOME.into(),
            known_size: 5,
            old_size: 3
        }
    );
    assert_eq!(
        witness(Some(&head), &offer(13, &[], &signed(&log))).unwrap_err(),
        WitnessRefusal::OldSizeBeyond {
            old_size: 13,
            tree_size: 12
        }
    );
}

#[test]
fn a_witness_cosigns_only_logs_it_is_named_for_and_checkpoints_that_verify() {
    let log = leaves("record", 3);
    let trust = fixtures::trust_list();
    let checkpoint = signed(&log);
    // The home node is not a witness of its own log.
    let refusal = cosign(
        &fixtures::home_id(),
        &key(HOME),
        None,
        &offer(0, &[], &checkpoint),
        &trust,
        T0.0,
    )
    .unwrap_err();
    assert!(matches!(refusal, WitnessRefusal::NotAWitness { .. }));
    // A checkpoint of the home node's log signed by someone else.
    let forged = SignedCheckpoint::sign(checkpoint.checkpoint.clone(), &key(GATEWAY));
    assert!(matches!(
        witness(None, &offer(0, &[], &forged)),
        Err(WitnessRefusal::Checkpoint(
            ReceiptError::OriginNotSigner { .. }
        ))
    ));
}

#[test]
fn an_auditor_reports_split_views_rewrites_and_shrinking() {
    let log = leaves("record", 10);
    let head = |leaves: &[Hash]| LogHead::of(&signed(leaves));
    let at6 = head(&log[..6]);
    assert_eq!(audit(None, &at6, &[]), AuditFinding::First { tree_size: 6 });
    let proof = merkle::consistency_proof(6, &log).unwrap();
    let grew = audit(Some(&at6), &head(&log), &proof);
    assert_eq!(grew, AuditFinding::Grew { from: 6, to: 10 });
    assert!(!grew.is_violation());
    assert_eq!(
        audit(Some(&at6), &at6, &[]),
        AuditFinding::Unchanged { tree_size: 6 }
    );
    let other = leaves("rewritten", 10);
    let split = audit(Some(&head(&log)), &head(&other), &[]);
    assert_eq!(split, AuditFinding::SplitView { tree_size: 10 });
    assert!(split.is_violation());
    let proof = merkle::consistency_proof(6, &other).unwrap();
    let rewritten = audit(Some(&at6), &head(&other), &proof);
    assert_eq!(rewritten, AuditFinding::Rewritten { from: 6, to: 10 });
    assert!(rewritten.is_violation());
    assert_eq!(
        audit(Some(&head(&log)), &at6, &[]),
        AuditFinding::Shrank { from: 10, to: 6 }
    );
}
