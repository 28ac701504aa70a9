//! A node's evidence log on disk (SPEC.md §15): records made together share
//! one checkpoint, every receipt verifies offline, the log survives a
//! restart, and what it serves (checkpoints, tiles, consistency proofs) is
//! hashes and counts only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use estafette_relay::evidence_log::{EvidenceLog, LogError};
use estafette_relay::metrics::Metrics;
use estafette_spec::fixtures::{self, RELAY, T0, key};
use estafette_spec::merkle;
use estafette_spec::receipt::CheckpointCache;
use estafette_spec::{
    Digest, EnvelopeId, Evidence, EvidenceEvent, EvidenceId, EvidenceRecord, ManualClock, MessageId,
};

fn record(n: u32) -> EvidenceRecord {
    let mut id = [0u8; 16];
    id[..4].copy_from_slice(&n.to_be_bytes());
    EvidenceRecord {
        evidence_id: EvidenceId::from_bytes(id),
        event: EvidenceEvent::RelayAcceptance,
        envelope_id: Some(EnvelopeId::from_bytes(id)),
        message_id: Some(MessageId::from_bytes(id)),
        message_digest: Some(Digest::of(&id)),
        envelope_digest: Some(Digest::of(&n.to_le_bytes())),
        issuer: fixtures::relay_id(),
        issued_at: T0,
        reason: None,
        actor: None,
        previous: None,
    }
}

fn open(dir: &std::path::Path, origin: &str) -> Result<EvidenceLog, LogError> {
    EvidenceLog::open(
        &dir.join("evidence-log.redb"),
        origin.into(),
        key(RELAY),
        Arc::new(ManualClock::new(T0)),
        Arc::new(Metrics::new()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_made_together_share_a_checkpoint_and_every_receipt_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open(dir.path(), RELAY).unwrap());
    let tasks: Vec<_> = (0..300)
        .map(|n| {
            let log = log.clone();
            tokio::spawn(async move { log.append(&record(n)).await })
        })
        .collect();
    let mut objects = Vec::new();
    for task in tasks {
        let logged = task.await.unwrap().unwrap();
        // The digest given is the one the next record of the letter links to.
        assert_eq!(
            Evidence::chain_digest(&logged.evidence),
            Some(logged.digest)
        );
        objects.push(logged.evidence);
    }
    assert_eq!(log.size(), 300);
    let trust = fixtures::trust_list();
    let cache = CheckpointCache::new();
    let mut leaves = std::collections::BTreeSet::new();
    for object in &objects {
        let verified = Evidence::verify_with(object, &trust, &cache).unwrap();
        assert_eq!(verified.log.origin, RELAY);
        assert!(
            leaves.insert(verified.log.leaf_index),
            "one leaf per record"
        );
    }
    // Records made at once shared commits: fewer checkpoints (signatures)
    // than records, and one signature check per checkpoint.
    assert!(
        cache.len() < 300,
        "{} checkpoints for 300 records",
        cache.len()
    );
    println!(
        "300 records appended concurrently: {} checkpoints",
        cache.len()
    );
}

#[tokio::test]
async fn the_log_survives_a_restart_and_serves_only_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let entries: Vec<Vec<u8>> = {
        let log = open(dir.path(), RELAY).unwrap();
        let mut entries = Vec::new();
        for n in 0..70 {
            let object = log.append(&record(n)).await.unwrap().evidence;
            entries.push(Evidence::split(&object).unwrap().0);
        }
        entries
    };
    let log = open(dir.path(), RELAY).unwrap();
    assert_eq!(log.size(), 70);
    let checkpoint = log.checkpoint().unwrap();
    assert_eq!(checkpoint.checkpoint.tree_size, 70);
    // It goes on from where it was: the next record is leaf 70, and the
    // tree of 70 is the start of the tree of 71.
    let next = log.append(&record(70)).await.unwrap().evidence;
    let verified = Evidence::verify(&next, &fixtures::trust_list()).unwrap();
    assert_eq!(verified.log.leaf_index, 70);
    let grown = log.checkpoint().unwrap();
    let proof = log.consistency_proof(70, 71).unwrap().unwrap();
    merkle::verify_consistency(
        70,
        71,
        &checkpoint.checkpoint.root,
        &grown.checkpoint.root,
        &proof,
    )
    .unwrap();
    // The partial tile of leaves: exactly the 71 leaf hashes.
    let tile = log.tile(0, 0, 71).unwrap().unwrap();
    assert_eq!(tile.len(), 71 * 32);
    for (i, entry) in entries.iter().enumerate() {
        assert_eq!(&tile[i * 32..(i + 1) * 32], &merkle::leaf_hash(entry));
    }
    // The tile of the tree of 70 is its prefix (a reader with the older
    // checkpoint); only the tiles there are.
    assert_eq!(log.tile(0, 0, 70).unwrap().unwrap(), tile[..70 * 32]);
    assert!(log.tile(0, 0, 72).unwrap().is_none());
    assert!(log.tile(0, 0, 256).unwrap().is_none());
    assert!(log.tile(0, 1, 1).unwrap().is_none());
    assert!(log.tile(1, 0, 1).unwrap().is_none());
}

#[tokio::test]
async fn a_log_file_keeps_its_origin() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path(), RELAY).unwrap());
    match open(dir.path(), "relay-a.test/other") {
        Err(LogError::OtherOrigin { found, .. }) => assert_eq!(found, RELAY),
        other => panic!("{:?}", other.map(|_| ())),
    }
}

/// One checkpoint covers at most `MAX_LOG_BATCH` records: more waiting
/// records are taken by the next commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_takes_at_most_max_log_batch_records() {
    use estafette_relay::evidence_log::MAX_LOG_BATCH;
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open(dir.path(), RELAY).unwrap());
    let n = MAX_LOG_BATCH as u32 + 1;
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let log = log.clone();
            tokio::spawn(async move { log.append(&record(i)).await })
        })
        .collect();
    let mut sizes = std::collections::BTreeSet::new();
    for task in tasks {
        let object = task.await.unwrap().unwrap().evidence;
        sizes.insert(Evidence::read_stored(&object).unwrap().log.tree_size);
    }
    assert!(sizes.len() >= 2, "{} records under one checkpoint", n);
    let mut before = 0;
    for size in sizes {
        assert!(size - before <= MAX_LOG_BATCH as u64, "{before} → {size}");
        before = size;
    }
    assert_eq!(before, u64::from(n));
}
