//! The contract of [`Records`], one suite run against every backend: redb
//! (the node's database) and PostgreSQL (a server of the test's own).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use estafette_relay::store::NewEvidence;
use estafette_spec::citizen::{Change as Changed, ChangeEntry};
use estafette_spec::{Digest, EvidenceId, MessageId, Recipient, Timestamp};

use super::test_postgres::TestPostgres;
use super::*;
use crate::registry::{MAX_HISTORY_PER_PERSON, PersonRecord};

const ANNA: &str = "bsn:999999990";
const JONAS: &str = "eidas:DE/NL/DE-4711-0815";
const JONAS_BSN: &str = "bsn:123456782";

fn who(text: &str) -> Recipient {
    text.parse().unwrap()
}

fn entry(i: u64) -> ChangeEntry {
    ChangeEntry {
        at: Timestamp(1_800_000_000 + i),
        change: Changed::EmailAdded {
            address: format!("a{i}@example.nl"),
        },
        assertion_digest: None,
    }
}

/// A sealed envelope `id` of letter `message` for the home node, queued
/// at second `at`, that links to `previous`.
fn sealed(
    id: [u8; 16],
    message: [u8; 16],
    at: u64,
    previous: Option<Digest>,
    evidence: Option<NewEvidence>,
) -> SealedEnvelope {
    SealedEnvelope {
        envelope: id.to_vec(),
        header: estafette_spec::RoutingHeader {
            envelope_id: estafette_spec::EnvelopeId::from_bytes(id),
            home_node: "home.test".parse().unwrap(),
            inbox_id: estafette_spec::InboxId::from_bytes(*b"contract-inbox-1"),
            message_id: MessageId::from_bytes(message),
            message_digest: Digest::of(&message),
            hop_limit: 8,
            created_at: Timestamp(1_800_000_000 + at),
            expires_at: Timestamp(1_800_604_800),
        },
        previous,
        evidence,
    }
}

/// Writes and reads everything the gateway keeps, as the desk and the
/// monitor do, and checks each answer.
async fn the_contract(records: Arc<dyn Records>) {
    let r: &dyn Records = records.as_ref();
    people(r).await;
    history(r).await;
    nonces_and_tokens(r).await;
    evidence_and_snapshots(r).await;
    followed_letters(r).await;
    report_counters(r).await;
    people_in_bulk(r).await;
}

/// `count` valid BSNs from prefix `from` up (eight digits and the check
/// digit of the eleven test; prefixes without one skipped).
fn bsns(from: u32, count: usize) -> Vec<Recipient> {
    (from..)
        .filter_map(estafette_spec::Bsn::with_check_digit)
        .map(Recipient::Bsn)
        .take(count)
        .collect()
}

/// Many people written at once (an import) end as if written one by one:
/// the last entry under a key wins, within a batch and across batches;
/// replaced entries give back what they counted for; their letters are due.
async fn people_in_bulk(r: &dyn Records) {
    // More than two of PostgreSQL's batches.
    let keys = bsns(20_000_000, 2_500);
    let mut people: Vec<(Recipient, PersonRecord)> = keys
        .iter()
        .map(|k| (k.clone(), active(None, false)))
        .collect();
    // Repeated in the same batch and in a later one; the last is visited.
    people.push((keys[3].clone(), active(Some(7), true)));
    people.insert(1_500, (keys[10].clone(), active(Some(1), true)));
    people.push((keys[10].clone(), active(Some(9), true)));
    // A person written before (replaced: no longer active).
    people.push((who(ANNA), PersonRecord::new("de")));
    let m = MessageId::from_bytes([0xb7; 16]);
    r.transact(move |w| w.follow(&m, &letter(&keys_first(), 0xb7), b"letter", None))
        .await
        .unwrap();
    assert!(!due(r, 0, 100).contains(&0xb7), "followed, nothing due");
    r.transact(move |w| w.put_people(&people)).await.unwrap();
    let read = r.read().unwrap();
    let session = |k: &Recipient| {
        read.person(k)
            .unwrap()
            .unwrap()
            .activity
            .last_session_at
            .map(|t| t.0)
    };
    assert_eq!(session(&keys[3]), Some(7));
    assert_eq!(session(&keys[10]), Some(9));
    assert_eq!(session(&keys[2_499]), None);
    assert_eq!(read.person(&who(ANNA)).unwrap().unwrap().language, "de");
    drop(read);
    assert!(
        due(r, 0, 100).contains(&0xb7),
        "the letter of a person written is due"
    );
    assert_eq!(counted(r), scanned(r));
    r.transact(move |w| w.forget(&who(&keys_first()), &m))
        .await
        .unwrap();
}

/// The first key of [`people_in_bulk`].
fn keys_first() -> String {
    bsns(20_000_000, 1)[0].to_string()
}

/// The report's counters as a scan of every person and paper item finds
/// them (what the counters must always equal).
pub(super) fn scanned(r: &dyn Records) -> std::collections::BTreeMap<String, i64> {
    let read = r.read().unwrap();
    let mut out = std::collections::BTreeMap::<String, i64>::new();
    read.each_person(&mut |_, person| {
        for name in crate::report::tally::person(&person) {
            *out.entry(name).or_default() += 1;
        }
        Ok(())
    })
    .unwrap();
    for (_, item) in read.paper_queue().unwrap() {
        for name in crate::report::tally::paper(&item) {
            *out.entry(name).or_default() += 1;
        }
    }
    out
}

/// The counters without the ones that went back to 0.
pub(super) fn counted(r: &dyn Records) -> std::collections::BTreeMap<String, i64> {
    let mut counts = r.read().unwrap().report_counts().unwrap();
    counts.retain(|_, n| *n != 0);
    counts
}

/// An active inbox, last visited at `session` (never: `None`), with a
/// verified e-mail address or not.
fn active(session: Option<u64>, working: bool) -> PersonRecord {
    let mut person = PersonRecord::new("nl");
    person.active = true;
    person.activity.last_session_at = session.map(Timestamp);
    if working {
        person
            .contact_channels
            .push(crate::registry::ContactChannel {
                kind: estafette_spec::citizen::ChannelKind::Email,
                address: "someone@example.nl".into(),
                state: estafette_spec::citizen::ChannelState::Verified,
                token_digest: None,
            });
    }
    person
}

/// The report's counters follow every write of a person or a paper item
/// (new, replaced, changed back), the dormancy index finds the active
/// inboxes away long enough with an unread letter, and the waiting index
/// the paper not yet spooled.
async fn report_counters(r: &dyn Records) {
    const NEVER: &str = "bsn:100000009";
    const LONG_AGO: &str = "bsn:100000010";
    const LATELY: &str = "bsn:100000022";
    const QUIET: &str = "bsn:100000034";
    assert_eq!(counted(r), scanned(r), "what the earlier parts wrote");
    let m = |id: u8| MessageId::from_bytes([0xa0 + id; 16]);
    r.transact(move |w| {
        w.put_person(&who(NEVER), &active(None, false))?;
        w.put_person(&who(LONG_AGO), &active(Some(1_000), true))?;
        w.put_person(&who(LATELY), &active(Some(5_000_000), true))?;
        // Active, away long, but nothing unread: not dormant.
        w.put_person(&who(QUIET), &active(Some(1_000), true))?;
        for (id, to) in [(1, NEVER), (2, LONG_AGO), (3, LATELY)] {
            w.follow(&m(id), &letter(to, 0xa0 + id), b"letter", None)?;
        }
        Ok(())
    })
    .await
    .unwrap();
    let dormant = |by: u64| r.read().unwrap().dormant_inboxes(Timestamp(by)).unwrap();
    assert_eq!(dormant(999), 1, "only the one never visited");
    assert_eq!(dormant(2_000), 2);
    assert_eq!(dormant(u64::MAX), 3);
    assert_eq!(counted(r), scanned(r));

    // Visited now: out of the dormant; closed: out of the active ones; a
    // bounced address: without a working channel.
    r.transact(move |w| {
        w.put_person(&who(LONG_AGO), &active(Some(6_000_000), true))?;
        w.put_person(&who(LATELY), &PersonRecord::new("nl"))?;
        w.put_person(&who(QUIET), &active(Some(1_000), false))
    })
    .await
    .unwrap();
    assert_eq!(dormant(u64::MAX), 2);
    assert_eq!(dormant(2_000), 1);
    assert_eq!(counted(r), scanned(r));

    // The letter is read: nobody is dormant for it any more.
    r.transact(move |w| w.forget(&who(NEVER), &m(1)))
        .await
        .unwrap();
    assert_eq!(dormant(2_000), 0);
    paper_counters(r).await;
}

/// Paper: waiting, then spooled; a notice that cannot be printed; a
/// change that fails changes no counter.
async fn paper_counters(r: &dyn Records) {
    let before_active = counted(r)[crate::report::tally::ACTIVE];
    let letter_paper = PaperId([0xb1; 16]);
    let notice = PaperId([0xb2; 16]);
    let mut item = crate::gateway::PaperItem::letter(
        who(ANNA),
        estafette_spec::ReasonCode::NoConsent,
        Timestamp(1),
        None,
        b"signed".to_vec(),
    );
    let mut notice_item = item.clone();
    notice_item.kind = crate::gateway::PaperKind::ChannelNotice;
    notice_item.reason = None;
    {
        let (item, notice_item) = (item.clone(), notice_item.clone());
        r.transact(move |w| {
            w.put_paper(letter_paper, &item)?;
            w.put_paper(notice, &notice_item)
        })
        .await
        .unwrap();
    }
    let waiting = |limit| r.read().unwrap().paper_waiting(limit).unwrap();
    assert_eq!(waiting(10), [letter_paper, notice]);
    assert_eq!(waiting(1), [letter_paper], "the limit");
    assert_eq!(counted(r)["paper_not_spooled"], 2);
    item.spooled_at = Some(Timestamp(2));
    notice_item.failure = Some(estafette_spec::ReasonCode::NoPostalAddress);
    r.transact(move |w| {
        w.put_paper(letter_paper, &item)?;
        w.put_paper(notice, &notice_item)
    })
    .await
    .unwrap();
    assert_eq!(waiting(10), Vec::<PaperId>::new());
    let counts = counted(r);
    assert_eq!(counts, scanned(r));
    assert_eq!(counts.get("paper_not_spooled"), None);
    assert_eq!(counts["paper_letters:no_consent"], 1);
    assert_eq!(counts["paper_notices:channel_notice"], 1);
    assert_eq!(counts["paper_failed:no_postal_address"], 1);
    assert_eq!(counts[crate::report::tally::ACTIVE], before_active);

    // A change that fails changes no counter.
    let failed = r
        .transact(|w| {
            w.put_person(&who("bsn:100000046"), &active(None, true))?;
            Err::<(), _>(RecordsError::Corrupt {
                what: "test",
                detail: "a change that fails".into(),
            })
        })
        .await;
    assert!(failed.is_err());
    assert_eq!(counted(r), counts);
}

/// A followed letter of `recipient` (its envelope id is `id`'s bytes).
fn letter(recipient: &str, id: u8) -> TrackedLetter {
    TrackedLetter {
        recipient: who(recipient),
        sender: "00000001003214345000".parse().unwrap(),
        sender_reference: format!("ref-{id}"),
        nature: estafette_spec::Nature::Decision,
        legal_effect: false,
        expected_action: String::new(),
        envelope_id: estafette_spec::EnvelopeId::from_bytes([id; 16]),
        message_digest: Digest::of(&[id]),
        progress: Default::default(),
    }
}

/// The ids of the letters due by `by`, soonest first, at most `limit`.
fn due(r: &dyn Records, by: u64, limit: usize) -> Vec<u8> {
    r.read()
        .unwrap()
        .due_letters(Timestamp(by), limit)
        .unwrap()
        .into_iter()
        .map(|(m, _)| m.as_bytes()[0])
        .collect()
}

/// The due index: letters found by when their next step is due, soonest
/// first; filed again when their progress is written; due now when
/// evidence arrives or their person's entry changes; gone when forgotten.
async fn followed_letters(r: &dyn Records) {
    let m = |id: u8| MessageId::from_bytes([id; 16]);
    r.transact(move |w| {
        w.follow(&m(1), &letter(ANNA, 1), b"one", Some(Timestamp(100)))?;
        w.follow(&m(2), &letter(ANNA, 2), b"two", Some(Timestamp(50)))?;
        w.follow(&m(3), &letter(ANNA, 3), b"three", None)?;
        w.follow(&m(4), &letter(JONAS, 4), b"four", Some(Timestamp(200)))
    })
    .await
    .unwrap();
    assert_eq!(due(r, 49, 10), Vec::<u8>::new());
    assert_eq!(due(r, 150, 10), [2, 1]);
    assert_eq!(due(r, 150, 1), [2], "the limit takes the soonest");
    assert_eq!(due(r, u64::MAX, 10), [2, 1, 4], "never due is never found");
    let (found, _) = r.read().unwrap().due_letters(Timestamp(50), 1).unwrap()[0].clone();
    assert_eq!(found, m(2));

    // A step filed letter 1 later; the old place is gone.
    r.transact(move |w| w.update_tracked(&m(1), &letter(ANNA, 1), Some(Timestamp(300))))
        .await
        .unwrap();
    assert_eq!(due(r, 299, 10), [2, 4]);

    // Evidence about letter 4 arrived; about a letter not followed: nothing.
    r.transact(move |w| {
        w.look_soon(&m(4))?;
        w.look_soon(&m(9))
    })
    .await
    .unwrap();
    assert_eq!(due(r, 0, 10), [4]);

    // Anna's entry changed: all her letters are looked at, even the one
    // with nothing due.
    r.transact(|w| w.put_person(&who(ANNA), &PersonRecord::new("nl")))
        .await
        .unwrap();
    let mut now = due(r, 0, 10);
    now.sort_unstable();
    assert_eq!(now, [1, 2, 3, 4]);

    // Forgotten letters leave the index.
    r.transact(move |w| {
        for id in 1..=4 {
            let recipient = if id == 4 { JONAS } else { ANNA };
            w.forget(&who(recipient), &m(id))?;
        }
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(due(r, u64::MAX, 10), Vec::<u8>::new());
}

/// People, links, key order, and a change that fails.
async fn people(r: &dyn Records) {
    // People, a linked identity, every entry in key order.
    r.transact(|w| {
        w.put_person(&who(JONAS), &PersonRecord::new("de"))?;
        w.put_person(&who(JONAS_BSN), &PersonRecord::link_to(&who(JONAS), "nl"))?;
        w.put_person(&who(ANNA), &PersonRecord::new("nl"))
    })
    .await
    .unwrap();
    {
        let read = r.read().unwrap();
        assert_eq!(
            read.person(&who(ANNA)).unwrap(),
            Some(PersonRecord::new("nl"))
        );
        let (key, _) = read.person_entry(&who(JONAS_BSN)).unwrap().unwrap();
        assert_eq!(key, who(JONAS), "a link is followed one step");
        // The lookup without a snapshot finds the same, link followed too.
        for person in [JONAS_BSN, JONAS, ANNA, "bsn:111222333"] {
            assert_eq!(
                r.person_entry_now(&who(person)).unwrap(),
                read.person_entry(&who(person)).unwrap(),
                "{person}"
            );
        }
        let mut keys = Vec::new();
        read.each_person(&mut |k, _| {
            keys.push(k.to_string());
            Ok(())
        })
        .unwrap();
        assert_eq!(keys, [JONAS_BSN, ANNA, JONAS], "key order");
    }

    // A change that fails leaves nothing behind.
    let failed = r
        .transact(|w| {
            w.put_person(&who("bsn:111222333"), &PersonRecord::new("nl"))?;
            Err::<(), _>(RecordsError::Corrupt {
                what: "test",
                detail: "a change that fails".into(),
            })
        })
        .await;
    assert!(failed.is_err());
    assert_eq!(
        r.read().unwrap().person(&who("bsn:111222333")).unwrap(),
        None
    );
}

/// The change history of a person.
async fn history(r: &dyn Records) {
    // History: the newest entries, oldest first, bounded per person.
    let total = MAX_HISTORY_PER_PERSON + 3;
    r.transact(move |w| {
        for i in 0..total {
            w.record_change(&who(ANNA), &entry(i))?;
        }
        Ok(())
    })
    .await
    .unwrap();
    let history = r.read().unwrap().history(&who(ANNA), usize::MAX).unwrap();
    assert_eq!(history.len() as u64, MAX_HISTORY_PER_PERSON);
    assert_eq!(history.first(), Some(&entry(3)));
    assert_eq!(history.last(), Some(&entry(total - 1)));
    let newest = r.read().unwrap().history(&who(ANNA), 2).unwrap();
    assert_eq!(newest, [entry(total - 2), entry(total - 1)]);
}

/// Login nonces and e-mail tokens.
async fn nonces_and_tokens(r: &dyn Records) {
    // Nonces: single use per proof; the expired ones found and forgotten.
    let (one, other) = (Digest::of(b"proof one"), Digest::of(b"proof two"));
    let used = r
        .transact(move |w| {
            Ok([
                w.use_nonce(b"nonce-1", one, Timestamp(100))?,
                w.use_nonce(b"nonce-1", one, Timestamp(100))?,
                w.use_nonce(b"nonce-1", other, Timestamp(100))?,
                w.use_nonce(b"nonce-2", other, Timestamp(500))?,
            ])
        })
        .await
        .unwrap();
    assert_eq!(used, [true, true, false, true]);
    let expired = r
        .read()
        .unwrap()
        .expired_nonces(Timestamp(200), 10)
        .unwrap();
    assert_eq!(expired, [b"nonce-1".to_vec()]);
    r.transact(move |w| w.forget_nonces(&expired))
        .await
        .unwrap();
    assert!(
        r.read()
            .unwrap()
            .expired_nonces(Timestamp(1000), 10)
            .unwrap()
            == [b"nonce-2".to_vec()]
    );

    // An e-mail token is taken once.
    let token = [7u8; 32];
    let taken = r
        .transact(move |w| {
            w.put_email_token(&token, &who(ANNA), Timestamp(900))?;
            Ok([w.take_email_token(&token)?, w.take_email_token(&token)?])
        })
        .await
        .unwrap();
    assert_eq!(taken, [Some((who(ANNA), Timestamp(900))), None]);
}

/// Evidence, and what a snapshot sees.
async fn evidence_and_snapshots(r: &dyn Records) {
    // Evidence is kept for good and found by message.
    let message = MessageId::from_bytes(*b"contract-letter1");
    let evidence = NewEvidence {
        evidence_id: EvidenceId::from_bytes(*b"contract-evid-01"),
        message_id: Some(message),
        bytes: b"signed evidence".to_vec(),
    };
    r.transact(move |w| w.archive_evidence(&evidence))
        .await
        .unwrap();
    assert_eq!(
        r.read().unwrap().evidence_for(&message).unwrap(),
        [b"signed evidence".to_vec()]
    );

    // A snapshot does not see what is written after it began (at its
    // first query on PostgreSQL, at read() on redb).
    let before = r.read().unwrap();
    assert_eq!(before.person(&who("bsn:111222333")).unwrap(), None);
    r.transact(|w| w.put_person(&who("bsn:111222333"), &PersonRecord::new("nl")))
        .await
        .unwrap();
    assert_eq!(before.person(&who("bsn:111222333")).unwrap(), None);
    drop(before);
    assert!(
        r.read()
            .unwrap()
            .person(&who("bsn:111222333"))
            .unwrap()
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let path = dir.path().join("gateway.redb");
    let records =
        RedbRecords::open_offline(&path, estafette_relay::store::STORE_CACHE_BYTES).unwrap();
    the_contract(Arc::new(records)).await;

    // A store from before the counters is counted when it is opened.
    let reopen = || RedbRecords::open_offline(&path, estafette_relay::store::STORE_CACHE_BYTES);
    let expected = scanned(&reopen().unwrap());
    redb::forget_counts(&path).unwrap();
    let again = reopen().unwrap();
    assert_eq!(counted(&again), expected);
    let read = again.read().unwrap();
    assert_eq!(read.dormant_inboxes(Timestamp(u64::MAX)).unwrap(), 1);
    assert!(read.paper_waiting(10).unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keeps_the_contract() {
    let server = TestPostgres::start("");
    let records = PgRecords::connect(&server.url(), 4).await.unwrap();
    the_contract(Arc::new(records)).await;
    // The schema is migrated once: a second instance finds it current.
    PgRecords::connect(&server.url(), 1).await.unwrap();

    // A database from before the counters (rows without their tally) is
    // counted when an instance connects, and then as if it had always been.
    let expected = scanned(&PgRecords::connect(&server.url(), 1).await.unwrap());
    server.execute(
        "UPDATE people SET tally = NULL, away_since = NULL; \
         UPDATE paper_queue SET tally = NULL, waiting = false; \
         DELETE FROM report_counts",
    );
    let again = PgRecords::connect(&server.url(), 1).await.unwrap();
    assert_eq!(counted(&again), expected);
    let read = again.read().unwrap();
    assert_eq!(read.dormant_inboxes(Timestamp(u64::MAX)).unwrap(), 1);
    assert!(read.paper_waiting(10).unwrap().is_empty());
}

/// A submission is queued with its evidence and its change in one
/// transaction, once: the same envelope again is a duplicate with the
/// evidence of the first time, and its change is not applied again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_queues_a_submission_once() {
    let server = TestPostgres::start("");
    let records = PgRecords::connect(&server.url(), 2).await.unwrap();
    let message = MessageId::from_bytes(*b"queued-letter-01");
    let sealed = || {
        let acceptance = NewEvidence {
            evidence_id: EvidenceId::from_bytes(*b"queued-evidence1"),
            message_id: Some(message),
            bytes: b"SubmissionAcceptance".to_vec(),
        };
        sealed(
            *b"queued-envelope1",
            *message.as_bytes(),
            0,
            None,
            Some(acceptance),
        )
    };
    let change = || -> Change {
        Box::new(|w: &mut dyn WriteRecords| {
            let history = w.history(&who(ANNA), usize::MAX)?.len() as u64;
            w.record_change(&who(ANNA), &entry(history))
        })
    };
    let first = records.queue_submission(sealed(), change()).await.unwrap();
    assert!(
        matches!(first, estafette_relay::store::Outcome::Stored),
        "{first:?}"
    );
    let again = records.queue_submission(sealed(), change()).await.unwrap();
    match again {
        estafette_relay::store::Outcome::Duplicate { evidence } => {
            assert_eq!(evidence, b"SubmissionAcceptance");
        }
        other => panic!("{other:?}"),
    }
    let read = records.read().unwrap();
    assert_eq!(
        read.history(&who(ANNA), 10).unwrap().len(),
        1,
        "the change once"
    );
    assert_eq!(
        read.evidence_for(&message).unwrap(),
        [b"SubmissionAcceptance".to_vec()]
    );
}

/// Instances claim envelopes with a lease: never the same one twice at
/// once; a dead instance's envelopes are taken over when its lease runs
/// out; only the holder of the lease finishes one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outbox_claims_are_leases() {
    let server = TestPostgres::start("");
    let records = PgRecords::connect(&server.url(), 4).await.unwrap();
    for i in 0..10u8 {
        let mut id = *b"lease-envelope-0";
        id[15] = b'0' + i;
        let mut message = *b"lease-message-00";
        message[15] = b'0' + i;
        let sealed = sealed(id, message, u64::from(i), None, None);
        records
            .queue_submission(sealed, Box::new(|_| Ok(())))
            .await
            .unwrap();
    }
    let now = Timestamp(1_800_000_100);
    let (a, b) = tokio::join!(
        records.claim_outbox("gateway-a", 6, 30, now),
        records.claim_outbox("gateway-b", 6, 30, now),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.len() + b.len(), 10, "all claimed, none twice");
    assert!(a.iter().all(|x| !b.contains(x)));
    // While the leases live, nobody else gets them.
    assert!(
        records
            .claim_outbox("gateway-c", 10, 30, now.plus_s(10))
            .await
            .unwrap()
            .is_empty()
    );
    // a finishes one; b dies, and c takes b's over after the lease.
    let done = NewEvidence {
        evidence_id: EvidenceId::from_bytes(*b"lease-evidence-1"),
        message_id: Some(a[0].message_id),
        bytes: b"RelayAcceptance".to_vec(),
    };
    let kept = |records: &PgRecords| {
        records
            .read()
            .unwrap()
            .evidence_for(&a[0].message_id)
            .unwrap()
            .contains(&b"RelayAcceptance".to_vec())
    };
    assert!(
        !records
            .forwarded("gateway-c", a[0].envelope_id, vec![done.clone()])
            .await
            .unwrap()
    );
    assert!(!kept(&records), "evidence kept for an envelope not held");
    assert!(
        records
            .forwarded("gateway-a", a[0].envelope_id, vec![done])
            .await
            .unwrap()
    );
    assert!(
        kept(&records),
        "the hop's evidence is kept with the envelope's end"
    );
    let later = now.plus_s(31);
    let renewed = records
        .claim_outbox("gateway-a", 10, 30, now.plus_s(20))
        .await
        .unwrap();
    assert_eq!(renewed.len(), a.len() - 1, "a renews its own");
    let taken = records
        .claim_outbox("gateway-c", 10, 30, later)
        .await
        .unwrap();
    assert_eq!(taken.len(), b.len(), "b's envelopes, after its lease");
    assert!(taken.iter().all(|x| b.contains(x)));
}

/// Two instances' forward queues over one outbox: each forwards only what
/// it claimed, and one that lost its lease (it stalled, another took the
/// envelope over) can change nothing of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_forward_queues_share_the_outbox() {
    use estafette_relay::forwarder::ForwardQueue;
    let server = TestPostgres::start("");
    let records = Arc::new(PgRecords::connect(&server.url(), 4).await.unwrap());
    for i in 0..3u8 {
        let mut id = *b"queue-envelope-0";
        id[15] = b'0' + i;
        let sealed = sealed(id, id, u64::from(i), Some(Digest::of(b"acceptance")), None);
        records
            .queue_submission(sealed, Box::new(|_| Ok(())))
            .await
            .unwrap();
    }
    let clock = Arc::new(std::sync::Mutex::new(Timestamp(1_800_000_100)));
    let queue = |instance: &str| {
        let clock = clock.clone();
        PgForwardQueue {
            records: records.clone(),
            instance: instance.into(),
            notes: Default::default(),
            now: Arc::new(move || *clock.lock().unwrap()),
        }
    };
    let (a, b) = (queue("gateway-a"), queue("gateway-b"));
    let lines = a.lines().unwrap();
    assert_eq!(lines.len(), 1);
    let (hop, count) = lines[0].clone();
    assert_eq!((hop.as_str(), count), ("home.test", 3));
    assert!(b.lines().unwrap().is_empty(), "claimed by a");
    let mine = a.line(&hop, 10).unwrap();
    assert_eq!(mine.len(), 3);
    assert!(b.line(&hop, 10).unwrap().is_empty(), "not b's");
    assert_eq!(a.line(&hop, 2).unwrap(), mine[..2], "the line's front");
    let first = mine[0].id;
    let record = a.get(&first).unwrap().unwrap();
    assert_eq!(record.our_evidence, Some(Digest::of(b"acceptance")));
    assert!(b.get(&first).unwrap().is_none(), "not b's");
    a.reschedule(first, 1, 5_000, "unreachable".into())
        .await
        .unwrap();
    let record = a.get(&first).unwrap().unwrap();
    assert_eq!((record.attempts, record.next_attempt_ms), (1, 5_000));
    // Given up: gone, with its failure evidence kept.
    let second = mine[1].id;
    let failure = NewEvidence {
        evidence_id: EvidenceId::from_bytes(*b"queue-failure-01"),
        message_id: Some(MessageId::from_bytes(*second.as_bytes())),
        bytes: b"RelayFailure".to_vec(),
    };
    a.give_up(second, vec![failure]).await.unwrap();
    assert!(a.get(&second).unwrap().is_none());
    let kept = records
        .read()
        .unwrap()
        .evidence_for(&MessageId::from_bytes(*second.as_bytes()))
        .unwrap();
    assert_eq!(kept, [b"RelayFailure".to_vec()]);
    // a stalls past its lease; b takes the rest over, with their retry state.
    *clock.lock().unwrap() = Timestamp(1_800_000_100 + super::pg_queue::LEASE_S + 1);
    assert_eq!(b.lines().unwrap(), [(hop.clone(), 2)]);
    let taken = b.line(&hop, 10).unwrap();
    assert_eq!(taken.len(), 2);
    assert_eq!(taken[0].id, first, "in the order they were queued");
    assert_eq!(b.get(&first).unwrap().unwrap().next_attempt_ms, 5_000);
    a.reschedule(first, 9, 9_000, "late".into()).await.unwrap();
    assert_eq!(
        b.get(&first).unwrap().unwrap().attempts,
        1,
        "a's late write changed nothing"
    );
    assert!(a.get(&first).unwrap().is_none());
}

/// Two instances importing the same people at once: each key ends with one
/// entry, and the counters equal a scan (a key the other made meanwhile
/// is written one by one, after its row lock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_imports_at_once_count_once() {
    let server = TestPostgres::start("");
    let one = Arc::new(PgRecords::connect(&server.url(), 2).await.unwrap());
    let two = Arc::new(PgRecords::connect(&server.url(), 2).await.unwrap());
    let keys = bsns(30_000_000, 3_000);
    let people = |session: u64| -> Vec<(Recipient, PersonRecord)> {
        keys.iter()
            .map(|k| (k.clone(), active(Some(session), session.is_multiple_of(2))))
            .collect()
    };
    let mut imports = tokio::task::JoinSet::new();
    for (records, batch) in [(one.clone(), people(1)), (two.clone(), people(2))] {
        imports.spawn(async move {
            let r: &dyn Records = records.as_ref();
            r.transact(move |w| w.put_people(&batch)).await
        });
    }
    while let Some(done) = imports.join_next().await {
        done.unwrap().unwrap();
    }
    assert_eq!(server.number("SELECT count(*) FROM people"), 3_000);
    assert_eq!(counted(one.as_ref()), scanned(one.as_ref()));
}
