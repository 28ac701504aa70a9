//! The store's own tests: its tables and operations, fed values.

use super::*;

fn queued(at: Timestamp) -> Placement {
    Placement::Queue(QueueRecord {
        destination: "home.test".parse().unwrap(),
        hops_taken: 0,
        our_evidence: None,
        expires_at: at.plus_s(3600),
        accepted_at: at,
        attempts: 0,
        next_attempt_ms: 0,
        last_error: None,
        envelope: vec![1, 2, 3],
        seq: 0,
    })
}

async fn accept(store: &Store, id: EnvelopeId, at: Timestamp) {
    let op = Op::Accept {
        envelope_id: id,
        evidence: None,
        placement: queued(at),
        now: at,
        extra: None,
        evidence_to: None,
    };
    assert_eq!(store.write(op).await.unwrap(), Outcome::Stored);
}

fn open_store(dir: &tempfile::TempDir) -> Store {
    let path = dir.path().join("data").join("store.redb");
    Store::open(&path, 100, 16, Arc::new(Metrics::new())).unwrap()
}

fn ids(line: &[Waiting]) -> Vec<EnvelopeId> {
    line.iter().map(|w| w.id).collect()
}

#[tokio::test]
async fn a_line_keeps_the_order_of_queuing_and_its_indexes_follow_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir);
    let hop: NodeId = "home.test".parse().unwrap();
    let at = Timestamp(1_800_000_000);
    // Ids in falling byte order: the line's order is the queue's, not
    // the ids'.
    let queued: Vec<EnvelopeId> = (0..5u8)
        .map(|i| EnvelopeId::from_bytes([9 - i; 16]))
        .collect();
    for (i, id) in queued.iter().enumerate() {
        accept(&store, *id, at.plus_s(i as u64)).await;
    }
    assert_eq!(store.queue_lines().unwrap(), [(hop.clone(), 5)]);
    assert_eq!(ids(&store.queue_line(&hop, 10).unwrap()), queued);
    assert_eq!(ids(&store.queue_line(&hop, 2).unwrap()), queued[..2]);
    assert_eq!(store.queue_line(&hop, 1).unwrap()[0].accepted_at, at);
    // Expiring: the first two expire an hour after acceptance (at, at+1).
    let expiring = store.queue_expiring(at.plus_s(3601), 10).unwrap();
    assert_eq!(
        expiring,
        [(queued[0], hop.clone()), (queued[1], hop.clone())]
    );
    assert_eq!(store.queue_expiring(at.plus_s(3601), 1).unwrap().len(), 1);
    // Off the queue (forwarded, given up): out of the line and the
    // expiry index too.
    let op = Op::Forwarded {
        envelope_id: queued[0],
        evidence: None,
    };
    store.write(op).await.unwrap();
    let op = Op::Fail {
        envelope_id: queued[2],
        evidence: vec![],
        to: EvidenceTo::Archive,
    };
    store.write(op).await.unwrap();
    assert_eq!(
        ids(&store.queue_line(&hop, 10).unwrap()),
        [queued[1], queued[3], queued[4]]
    );
    assert_eq!(store.queue_lines().unwrap(), [(hop.clone(), 3)]);
    assert_eq!(store.queue_expiring(at.plus_s(3601), 10).unwrap().len(), 1);
    // Reopened: the places go on after the last one taken.
    drop(store);
    let store = open_store(&dir);
    let newest = EnvelopeId::from_bytes([0; 16]);
    accept(&store, newest, at).await;
    assert_eq!(
        ids(&store.queue_line(&hop, 10).unwrap()),
        [queued[1], queued[3], queued[4], newest]
    );
    for id in [queued[1], queued[3], queued[4], newest] {
        let op = Op::Forwarded {
            envelope_id: id,
            evidence: None,
        };
        store.write(op).await.unwrap();
    }
    assert!(
        store.queue_lines().unwrap().is_empty(),
        "an empty line is dropped"
    );
    assert!(
        store
            .queue_expiring(Timestamp(u64::MAX), 10)
            .unwrap()
            .is_empty()
    );
}

/// Writes a store as versions before places left it: the queue keyed by
/// envelope id, dedup records without a place; with `numbered`, lines too.
fn write_legacy_store(
    dir: &tempfile::TempDir,
    envelopes: &[(EnvelopeId, QueueRecord)],
    numbered: bool,
) {
    let path = dir.path().join("data");
    private_dir(&path).unwrap();
    let db = Database::create(path.join("store.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut queue = txn.open_table(LEGACY_QUEUE).unwrap();
        let mut dedup = txn.open_table(LEGACY_DEDUP).unwrap();
        let mut lines = txn.open_table(LINES).unwrap();
        let mut lengths = txn.open_table(LINE_LENGTHS).unwrap();
        let mut expiries = txn.open_table(EXPIRIES).unwrap();
        for (id, record) in envelopes {
            queue
                .insert(id.as_bytes(), encode(record).as_slice())
                .unwrap();
            let old = DedupRecord {
                evidence: vec![9],
                accepted_at: record.accepted_at,
                state: EnvelopeState::Queued,
                place: None,
            };
            dedup
                .insert(id.as_bytes(), encode(&old).as_slice())
                .unwrap();
            if numbered {
                let hop = record.destination.as_str();
                lines
                    .insert((hop, record.seq), (*id.as_bytes(), record.accepted_at.0))
                    .unwrap();
                expiries
                    .insert((record.expires_at.0, *id.as_bytes()), hop)
                    .unwrap();
                let length = lengths.get(hop).unwrap().map_or(0, |v| v.value());
                lengths.insert(hop, length + 1).unwrap();
            }
        }
    }
    txn.commit().unwrap();
    use std::os::unix::fs::PermissionsExt;
    let file = path.join("store.redb");
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn legacy_record(at: Timestamp, seq: u64) -> QueueRecord {
    let Placement::Queue(mut record) = queued(at) else {
        unreachable!()
    };
    record.seq = seq;
    record
}

#[tokio::test]
async fn a_queue_from_before_lines_is_numbered_in_order_of_acceptance_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let hop: NodeId = "home.test".parse().unwrap();
    let at = Timestamp(1_800_000_000);
    let (late, early) = (
        EnvelopeId::from_bytes([1; 16]),
        EnvelopeId::from_bytes([2; 16]),
    );
    // As the earliest version left it: the queue by id, no lines.
    let envelopes = [
        (late, legacy_record(at.plus_s(5), 0)),
        (early, legacy_record(at, 0)),
    ];
    write_legacy_store(&dir, &envelopes, false);
    let store = open_store(&dir);
    assert_eq!(store.queue_lines().unwrap(), [(hop.clone(), 2)]);
    assert_eq!(ids(&store.queue_line(&hop, 10).unwrap()), [early, late]);
    assert_eq!(
        store.queue_expiring(at.plus_s(3600), 10).unwrap(),
        [(early, hop)]
    );
    assert_eq!(store.queue_len(), 2);
    assert_eq!(store.queue_get(&early).unwrap().unwrap().seq, 0);
    assert_eq!(store.queue_get(&late).unwrap().unwrap().seq, 1);
}

#[tokio::test]
async fn a_queue_kept_by_envelope_id_is_moved_to_places_at_open_and_goes_on_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let hop: NodeId = "home.test".parse().unwrap();
    let at = Timestamp(1_800_000_000);
    let (first, second) = (
        EnvelopeId::from_bytes([0xee; 16]),
        EnvelopeId::from_bytes([0x11; 16]),
    );
    let mut retried = legacy_record(at, 7);
    retried.attempts = 3;
    retried.next_attempt_ms = 42;
    retried.last_error = Some("unreachable".into());
    write_legacy_store(
        &dir,
        &[(first, retried), (second, legacy_record(at, 8))],
        true,
    );
    let store = open_store(&dir);
    assert_eq!(ids(&store.queue_line(&hop, 10).unwrap()), [first, second]);
    let moved = store.queue_get(&first).unwrap().unwrap();
    assert_eq!(
        (moved.seq, moved.attempts, moved.next_attempt_ms),
        (7, 3, 42)
    );
    assert_eq!(moved.last_error.as_deref(), Some("unreachable"));
    let dedup = store.dedup_get(&first).unwrap().unwrap();
    assert_eq!((dedup.evidence, dedup.place), (vec![9], Some(7)));
    // The next envelope takes the place after the last one moved.
    let third = EnvelopeId::from_bytes([0x55; 16]);
    accept(&store, third, at.plus_s(1)).await;
    assert_eq!(store.queue_get(&third).unwrap().unwrap().seq, 9);
    // Forwarding a moved envelope takes it off the queue and its line.
    let op = Op::Forwarded {
        envelope_id: first,
        evidence: None,
    };
    store.write(op).await.unwrap();
    assert!(store.queue_get(&first).unwrap().is_none());
    assert_eq!(ids(&store.queue_line(&hop, 10).unwrap()), [second, third]);
    drop(store);
    // Opened again: nothing left to move, nothing moved twice.
    let store = open_store(&dir);
    assert_eq!(store.queue_len(), 2);
    assert_eq!(ids(&store.queue_line(&hop, 10).unwrap()), [second, third]);
    let txn = store.database().begin_read().unwrap();
    assert!(matches!(
        txn.open_table(LEGACY_QUEUE),
        Err(redb::TableError::TableDoesNotExist(_))
    ));
    assert!(matches!(
        txn.open_table(LEGACY_DEDUP),
        Err(redb::TableError::TableDoesNotExist(_))
    ));
}

#[tokio::test]
async fn dedup_records_kept_by_id_are_moved_to_time_order_at_open_and_still_answer() {
    let dir = tempfile::tempdir().unwrap();
    let at = Timestamp(1_800_000_000);
    let (delivered, queued_id) = (
        EnvelopeId::from_bytes([0x21; 16]),
        EnvelopeId::from_bytes([0x42; 16]),
    );
    write_legacy_store(&dir, &[(queued_id, legacy_record(at, 3))], true);
    {
        // An envelope delivered here, as an earlier version recorded it:
        // a CBOR record by id and an entry in the index by time.
        let db = Database::open(dir.path().join("data").join("store.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        let old = DedupRecord {
            evidence: vec![7, 7],
            accepted_at: at,
            state: EnvelopeState::Delivered,
            place: None,
        };
        txn.open_table(LEGACY_DEDUP)
            .unwrap()
            .insert(delivered.as_bytes(), encode(&old).as_slice())
            .unwrap();
        txn.open_table(LEGACY_DEDUP_BY_TIME)
            .unwrap()
            .insert((at.0, *delivered.as_bytes()), ())
            .unwrap();
        txn.commit().unwrap();
    }
    let store = open_store(&dir);
    let known = store.dedup_get(&delivered).unwrap().unwrap();
    assert_eq!(
        (known.evidence, known.accepted_at, known.state, known.place),
        (vec![7, 7], at, EnvelopeState::Delivered, None)
    );
    let still_queued = store.dedup_get(&queued_id).unwrap().unwrap();
    assert_eq!(
        (still_queued.state, still_queued.place),
        (EnvelopeState::Queued, Some(3))
    );
    // Offered again: the evidence signed the first time, nothing stored.
    let op = Op::Accept {
        envelope_id: delivered,
        evidence: None,
        placement: queued(at.plus_s(9)),
        now: at.plus_s(9),
        extra: None,
        evidence_to: None,
    };
    assert_eq!(
        store.write(op).await.unwrap(),
        Outcome::Duplicate {
            evidence: vec![7, 7]
        }
    );
    assert_eq!(store.queue_len(), 1);
    // Pruning finds the moved records by time: the delivered one goes,
    // the queued one stays.
    let from = (0, [0u8; 16]);
    let before = at.plus_s(1);
    store.write(Op::Prune { before, from }).await.unwrap();
    assert!(store.dedup_get(&delivered).unwrap().is_none());
    assert!(store.dedup_get(&queued_id).unwrap().is_some());
    let txn = store.database().begin_read().unwrap();
    for legacy in [
        txn.open_table(LEGACY_DEDUP).err(),
        txn.open_table(LEGACY_DEDUP_BY_TIME).err(),
    ] {
        assert!(matches!(
            legacy,
            Some(redb::TableError::TableDoesNotExist(_))
        ));
    }
}

#[tokio::test]
async fn a_retry_rewrites_how_the_attempts_went_not_the_envelope() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir);
    let at = Timestamp(1_800_000_000);
    let id = EnvelopeId::from_bytes([3; 16]);
    accept(&store, id, at).await;
    store
        .reschedule(id, 2, 5_000, "no handshake".into())
        .await
        .unwrap();
    let record = store.queue_get(&id).unwrap().unwrap();
    assert_eq!((record.attempts, record.next_attempt_ms), (2, 5_000));
    assert_eq!(record.last_error.as_deref(), Some("no handshake"));
    assert_eq!(record.envelope, [1, 2, 3]);
    let txn = store.database().begin_read().unwrap();
    let stored: QueueRecord = decode(
        txn.open_table(QUEUE)
            .unwrap()
            .get(0)
            .unwrap()
            .unwrap()
            .value(),
    )
    .unwrap();
    assert_eq!(
        (stored.attempts, stored.last_error),
        (0, None),
        "the envelope as written once"
    );
    drop(txn);
    // A reschedule of an envelope no longer queued changes nothing.
    let op = Op::Forwarded {
        envelope_id: id,
        evidence: None,
    };
    store.write(op).await.unwrap();
    store.reschedule(id, 3, 9_000, "late".into()).await.unwrap();
    let txn = store.database().begin_read().unwrap();
    assert!(txn.open_table(RETRIES).unwrap().is_empty().unwrap());
}

fn evidence(n: u8) -> NewEvidence {
    NewEvidence {
        evidence_id: EvidenceId::from_bytes([n; 16]),
        message_id: None,
        bytes: vec![n; 8],
    }
}

/// Gives up envelope `n` (queued for it), its failure evidence to the outbox.
async fn to_outbox(store: &Store, n: u8, at: Timestamp) {
    let envelope_id = EnvelopeId::from_bytes([n; 16]);
    accept(store, envelope_id, at).await;
    let op = Op::Fail {
        envelope_id,
        evidence: vec![evidence(n)],
        to: EvidenceTo::Outbox,
    };
    store.write(op).await.unwrap();
}

fn front(store: &Store) -> Vec<u8> {
    let front = store.outbox_front(10).unwrap();
    for entry in &front {
        assert_eq!(entry.evidence, vec![entry.id.as_bytes()[0]; 8]);
    }
    front.iter().map(|e| e.id.as_bytes()[0]).collect()
}

fn places(store: &Store, n: usize) -> Vec<(u64, EvidenceId)> {
    let front = store.outbox_front(n).unwrap();
    front.into_iter().map(|e| (e.place, e.id)).collect()
}

#[tokio::test]
async fn the_outbox_goes_out_in_order_refused_evidence_goes_to_the_back_and_a_restart_keeps_both() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir);
    let at = Timestamp(1_800_000_000);
    for n in 1..=3 {
        to_outbox(&store, n, at).await;
    }
    assert_eq!(front(&store), [1, 2, 3]);
    assert_eq!(store.outbox_front(2).unwrap().len(), 2, "the limit holds");
    let first = places(&store, 1);
    store
        .write(Op::OutboxToBack { entries: first })
        .await
        .unwrap();
    assert_eq!(front(&store), [2, 3, 1]);
    assert_eq!(store.outbox_len(), 3, "moving is not adding");
    let delivered = places(&store, 1);
    store
        .write(Op::OutboxDone { entries: delivered })
        .await
        .unwrap();
    assert_eq!((front(&store), store.outbox_len()), (vec![3, 1], 2));
    drop(store);

    let store = open_store(&dir);
    assert_eq!(store.outbox_len(), 2);
    to_outbox(&store, 4, at).await;
    assert_eq!(front(&store), [3, 1, 4], "new evidence after what waited");
}

#[tokio::test]
async fn an_outbox_kept_by_evidence_id_is_moved_to_places_at_open_in_its_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data").join("store.redb");
    drop(open_store(&dir));
    // As earlier versions left it: records by evidence id, some in a line
    // (place → id), one from before the line with attempt counts.
    #[derive(Serialize)]
    struct EarlierOutboxRecord {
        attempts: u32,
        next_attempt_ms: u64,
        last_error: Option<String>,
        #[serde(with = "serde_bytes")]
        evidence: Vec<u8>,
    }
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut outbox = txn.open_table(LEGACY_OUTBOX).unwrap();
            for n in [7u8, 3, 1] {
                let record = EarlierOutboxRecord {
                    attempts: 3,
                    next_attempt_ms: 99,
                    last_error: Some("gateway down".into()),
                    evidence: vec![n; 8],
                };
                outbox.insert(&[n; 16], encode(&record).as_slice()).unwrap();
            }
            let mut line = txn.open_table(LEGACY_OUTBOX_LINE).unwrap();
            line.insert(10, [3u8; 16]).unwrap();
            line.insert(11, [1u8; 16]).unwrap();
        }
        txn.commit().unwrap();
    }
    let store = open_store(&dir);
    assert_eq!(store.outbox_len(), 3);
    assert_eq!(front(&store), [3, 1, 7], "the line's order, then the rest");
    to_outbox(&store, 9, Timestamp(1_800_000_000)).await;
    assert_eq!(front(&store), [3, 1, 7, 9]);
    let delivered = places(&store, 2);
    store
        .write(Op::OutboxDone { entries: delivered })
        .await
        .unwrap();
    drop(store);
    let store = open_store(&dir);
    assert_eq!((front(&store), store.outbox_len()), (vec![7, 9], 2));
    let txn = store.database().begin_read().unwrap();
    assert!(matches!(
        txn.open_table(LEGACY_OUTBOX),
        Err(redb::TableError::TableDoesNotExist(_))
    ));
    assert!(matches!(
        txn.open_table(LEGACY_OUTBOX_LINE),
        Err(redb::TableError::TableDoesNotExist(_))
    ));
}

#[tokio::test]
async fn an_entry_no_longer_at_its_place_is_neither_taken_out_nor_moved() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir);
    let at = Timestamp(1_800_000_000);
    for n in 1..=2 {
        to_outbox(&store, n, at).await;
    }
    let [(first_place, first), (second_place, _)] = places(&store, 2)[..] else {
        panic!("two entries");
    };
    // Answers naming a place with other evidence (stale) change nothing.
    let stale = vec![(first_place, EvidenceId::from_bytes([2; 16]))];
    store
        .write(Op::OutboxDone {
            entries: stale.clone(),
        })
        .await
        .unwrap();
    store
        .write(Op::OutboxToBack { entries: stale })
        .await
        .unwrap();
    assert_eq!((front(&store), store.outbox_len()), (vec![1, 2], 2));
    // Moved to the back, the first entry's old place names nothing.
    let moved = vec![(first_place, first)];
    store
        .write(Op::OutboxToBack {
            entries: moved.clone(),
        })
        .await
        .unwrap();
    store
        .write(Op::OutboxDone { entries: moved })
        .await
        .unwrap();
    assert_eq!((front(&store), store.outbox_len()), (vec![2, 1], 2));
    assert!(places(&store, 2)[1].0 > second_place);
}

#[tokio::test]
async fn pruning_goes_a_batch_at_a_time_and_a_queued_envelope_does_not_stop_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data").join("store.redb");
    let store = Arc::new(Store::open(&path, 1_000_000, 4096, Arc::new(Metrics::new())).unwrap());
    let at = Timestamp(1_800_000_000);
    let count = PRUNE_BATCH + 2;
    let id = |i: usize| {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&(i as u64).to_be_bytes());
        EnvelopeId::from_bytes(bytes)
    };
    // Every envelope accepted and forwarded, but for the first, which
    // still waits in the queue (the first the index meets).
    let mut writes = tokio::task::JoinSet::new();
    for i in 0..count {
        let store = store.clone();
        writes.spawn(async move {
            accept(&store, id(i), at).await;
            if i > 0 {
                let op = Op::Forwarded {
                    envelope_id: id(i),
                    evidence: None,
                };
                store.write(op).await.unwrap();
            }
        });
    }
    while let Some(done) = writes.join_next().await {
        done.unwrap();
    }
    let known = |store: &Store| {
        (0..count)
            .filter(|&i| store.dedup_get(&id(i)).unwrap().is_some())
            .count()
    };
    let before = at.plus_s(1);
    let from = (0, [0u8; 16]);
    let Outcome::Pruned { next: Some(next) } =
        store.write(Op::Prune { before, from }).await.unwrap()
    else {
        panic!("more than one batch is old enough: the first round says where to go on");
    };
    assert_eq!(
        known(&store),
        count - PRUNE_BATCH + 1,
        "one batch forgotten, the queued one kept"
    );
    assert_eq!(
        store.write(Op::Prune { before, from: next }).await.unwrap(),
        Outcome::Pruned { next: None }
    );
    assert_eq!(known(&store), 1);
    assert!(
        store.dedup_get(&id(0)).unwrap().is_some(),
        "still queued, still known"
    );
    // A later round starts again and finds only the queued one.
    assert_eq!(
        store.write(Op::Prune { before, from }).await.unwrap(),
        Outcome::Pruned { next: None }
    );
    assert_eq!(known(&store), 1);
}

#[test]
fn private_data_is_kept_private_and_open_permissions_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let db = data.join("relay.redb");
    drop(Store::open(&db, 100, 16, Arc::new(Metrics::new())).unwrap());
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "the data directory is created 0700");
    assert_eq!(mode(&db), 0o600, "the database file is created 0600");
    // Opened up by someone: refused, with what to do, and nothing changed.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let refused = Store::open(&db, 100, 16, Arc::new(Metrics::new()))
        .err()
        .expect("a directory others can enter is refused");
    assert!(refused.to_string().contains("chmod 700"), "{refused}");
    assert_eq!(mode(&data), 0o755, "not silently changed");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let refused = Store::open(&db, 100, 16, Arc::new(Metrics::new()))
        .err()
        .expect("a database others can read is refused");
    assert!(refused.to_string().contains("chmod 600"), "{refused}");
}

#[tokio::test]
async fn pruning_keeps_what_is_still_queued() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        &dir.path().join("data").join("store.redb"),
        100,
        16,
        Arc::new(Metrics::new()),
    )
    .unwrap();
    let at = Timestamp(1_800_000_000);
    let (forwarded, waiting) = (
        EnvelopeId::from_bytes([1; 16]),
        EnvelopeId::from_bytes([2; 16]),
    );
    accept(&store, forwarded, at).await;
    accept(&store, waiting, at).await;
    let op = Op::Forwarded {
        envelope_id: forwarded,
        evidence: None,
    };
    store.write(op).await.unwrap();

    // Too young: both stay.
    let from = (0, [0u8; 16]);
    store.write(Op::Prune { before: at, from }).await.unwrap();
    assert!(store.dedup_get(&forwarded).unwrap().is_some());
    // Old enough: the forwarded one goes, the queued one stays.
    store
        .write(Op::Prune {
            before: at.plus_s(1),
            from,
        })
        .await
        .unwrap();
    assert!(store.dedup_get(&forwarded).unwrap().is_none());
    assert!(store.dedup_get(&waiting).unwrap().is_some());
}

/// A letter delivered into `inbox` at `at`.
async fn deliver(store: &Store, inbox: InboxId, n: u8, at: Timestamp) -> EnvelopeId {
    let id = EnvelopeId::from_bytes([n; 16]);
    let record = InboxRecord {
        message_id: MessageId::from_bytes([n; 16]),
        received_at: at,
        opened_at: None,
        last_evidence: estafette_spec::Digest::of(&[n]),
        message_digest: estafette_spec::Digest::of(&[n]),
        sender: "00000001003214345000".parse().unwrap(),
        subject: format!("letter {n}"),
        nature: estafette_spec::Nature::Information,
        legal_effect: false,
        expected_action: String::new(),
        response_deadline: None,
    };
    let op = Op::Accept {
        envelope_id: id,
        evidence: None,
        placement: Placement::Inbox {
            inbox_id: inbox,
            record,
            message: vec![n],
        },
        now: at,
        extra: None,
        evidence_to: None,
    };
    assert_eq!(store.write(op).await.unwrap(), Outcome::Stored);
    id
}

/// An inbox is read a page at a time, newest first, from a cursor; a
/// store from before the index by arrival is indexed when it opens.
#[tokio::test]
async fn an_inbox_pages_newest_first_and_a_store_from_before_is_indexed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let at = Timestamp(1_800_000_000);
    let (inbox, other) = (InboxId::from_bytes([1; 16]), InboxId::from_bytes([2; 16]));
    let mut ids = Vec::new();
    {
        let store = open_store(&dir);
        for n in 0..5u8 {
            ids.push(deliver(&store, inbox, n, at.plus_s(u64::from(n))).await);
        }
        deliver(&store, other, 9, at.plus_s(99)).await;
    }
    {
        // As a store from before the index and the counts kept it.
        let db = Database::open(dir.path().join("data").join("store.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        txn.delete_table(INBOX_BY_TIME).unwrap();
        txn.delete_table(INBOX_UNREAD).unwrap();
        txn.commit().unwrap();
    }
    let store = open_store(&dir);
    let page = |before, limit| store.inbox_page(&inbox, before, limit).unwrap();
    let first = page(None, 2);
    let listed = |p: &InboxPage| p.letters.iter().map(|(id, _)| *id).collect::<Vec<_>>();
    assert_eq!(listed(&first), [ids[4], ids[3]]);
    let second = page(first.next, 2);
    assert_eq!(listed(&second), [ids[2], ids[1]]);
    let last = page(second.next, 2);
    assert_eq!(listed(&last), [ids[0]]);
    assert_eq!(last.next, None, "the last page");
    assert_eq!(page(None, 5).next, None, "exactly a page: no next one");
    assert_eq!(
        listed(&page(None, 100)).len(),
        5,
        "not the other inbox's letter"
    );
    let cursor = first.next.unwrap();
    assert_eq!(cursor.to_string().parse::<InboxCursor>().unwrap(), cursor);
    assert_eq!(store.count_unread(&inbox).unwrap(), 5, "counted at open");
    assert_eq!(store.count_unread(&other).unwrap(), 1);
}

/// An inbox's count of unread letters follows deliveries, openings (the
/// second opening of a letter changes nothing) and a merge, without
/// reading the inbox.
#[tokio::test]
async fn the_unread_count_follows_deliveries_openings_and_merges() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir);
    let at = Timestamp(1_800_000_000);
    let (kept, merged) = (InboxId::from_bytes([3; 16]), InboxId::from_bytes([4; 16]));
    let first = deliver(&store, kept, 1, at).await;
    deliver(&store, kept, 2, at).await;
    deliver(&store, merged, 3, at).await;
    let unread = |inbox| store.count_unread(&inbox).unwrap();
    assert_eq!((unread(kept), unread(merged)), (2, 1));
    for _ in 0..2 {
        let op = Op::MarkOpened {
            inbox_id: kept,
            envelope_id: first,
            opened_at: at.plus_s(5),
            evidence: NewEvidence {
                evidence_id: EvidenceId::from_bytes([9; 16]),
                message_id: Some(MessageId::from_bytes([1; 16])),
                bytes: vec![9],
            },
            access: AccessEntry {
                at: at.plus_s(5),
                envelope_id: first,
                message_id: MessageId::from_bytes([1; 16]),
                actor: estafette_spec::Actor {
                    role: estafette_spec::ActorRole::Holder,
                    representative: None,
                    mandate: None,
                },
            },
        };
        store.write(op).await.unwrap();
        assert_eq!(unread(kept), 1);
    }
    let op = Op::Apply(Box::new(move |tables, txn| {
        tables.merge_inbox(txn, &merged, &kept)?;
        Ok(())
    }));
    store.write(op).await.unwrap();
    assert_eq!((unread(kept), unread(merged)), (2, 0));
    assert_eq!(store.inbox_page(&kept, None, 10).unwrap().letters.len(), 3);
}

#[tokio::test]
async fn below_the_free_space_reserve_new_data_is_refused_and_work_that_ends_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir);
    let at = Timestamp(1_800_000_000);
    let queued_before = EnvelopeId::from_bytes([1; 16]);
    accept(&store, queued_before, at).await;
    // A reserve no disk has: the disk counts as full.
    store.keep_free(u64::MAX);
    let refused = store
        .write(Op::Accept {
            envelope_id: EnvelopeId::from_bytes([2; 16]),
            evidence: None,
            placement: queued(at),
            now: at,
            extra: None,
            evidence_to: None,
        })
        .await;
    assert!(
        matches!(refused, Err(StoreError::DiskFull { .. })),
        "{refused:?}"
    );
    assert!(
        refused.unwrap_err().to_string().contains("try again later"),
        "the refusal says it is retryable"
    );
    assert_eq!(store.metrics.store_disk_full.get(), 1);
    // Nothing of the refused write was made; forwarding still ends work.
    assert_eq!(store.queue_len(), 1);
    let forwarded = Op::Forwarded {
        envelope_id: queued_before,
        evidence: None,
    };
    store.write(forwarded).await.unwrap();
    assert_eq!(store.queue_len(), 0);
    // Space returns: accepted again, without reopening.
    store.keep_free(0);
    accept(&store, EnvelopeId::from_bytes([2; 16]), at).await;
    assert_eq!(store.queue_len(), 1);
    assert_eq!(store.metrics.store_disk_full.get(), 0);
}
