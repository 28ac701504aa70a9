//! Several gateway instances on one PostgreSQL database: agencies submit to
//! any of them, each forwards what it queued, and the monitors of all of
//! them together take each letter's next step exactly once. These tests run
//! on PostgreSQL whatever `ESTAFETTE_TEST_STORE` says (their names start
//! with `cluster_`, which the PostgreSQL pass of `scripts/test` skips, since
//! it would only run them again).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;

use common::*;
use estafette_gateway::registry;
use estafette_gateway::store::test_postgres::TestStore;
use estafette_relay::RunningNode;
use estafette_relay::testkit::{AGENCY, free_udp, wait_until};
use estafette_spec::*;
use futures_util::stream::{self, StreamExt};

/// People the letters go to.
const PEOPLE: usize = 10;
/// Unread letters the two monitors escalate.
const LETTERS: usize = 1000;
/// Submissions in flight at once.
const IN_FLIGHT: usize = 16;

fn valid_bsns(n: usize) -> Vec<Bsn> {
    (100_000_000u32..)
        .filter_map(|i| i.to_string().parse::<Bsn>().ok())
        .take(n)
        .collect()
}

/// PEOPLE digital readers of the agency at `home.test`, with an e-mail
/// address and a postal address, imported through `records` (any
/// instance's, while all run); their BSNs.
async fn import_people(w: &World, records: &dyn estafette_gateway::store::Records) -> Vec<Bsn> {
    let bsns = valid_bsns(PEOPLE);
    let people: Vec<serde_json::Value> = bsns
        .iter()
        .map(|bsn| serde_json::json!({ "recipient": format!("bsn:{bsn}"), "home_node": "home.test", "active": true, "digital_senders": [AGENCY],
            "contact_channels": [{ "kind": "email", "address": format!("p{bsn}@example.nl"), "state": "verified" }],
            "postal_address": { "street_lines": ["Stationsweg 3"], "postal_code": "1234 AB", "city": "Voorbeeld", "country": "NL" } }))
        .collect();
    registry::import(
        records,
        &w.fed.trust(),
        &serde_json::Value::Array(people).to_string(),
    )
    .await
    .unwrap();
    bsns
}

/// How often each event occurs in each letter's evidence.
fn event_counts(w: &World, ids: &[MessageId]) -> Vec<HashMap<EvidenceEvent, usize>> {
    ids.iter()
        .map(|id| {
            let mut counts = HashMap::new();
            for (event, _) in w.events(id) {
                *counts.entry(event).or_insert(0) += 1;
            }
            counts
        })
        .collect()
}

/// Letters with exactly `n` records of `event`, of all of them.
fn with_exactly(counts: &[HashMap<EvidenceEvent, usize>], event: EvidenceEvent, n: usize) -> usize {
    counts
        .iter()
        .filter(|c| c.get(&event).copied().unwrap_or(0) == n)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_two_monitors_take_each_step_once() {
    let w = World::start_on(TestStore::postgres(), |_| {}).await;
    let b = w.start_instance("b").await;
    let instances = [&w.gateway, &b];

    // The registry, imported through instance b while both run.
    let bsns = import_people(&w, b.gateway.records()).await;

    // Letters to both instances: IN_FLIGHT kept-alive connections, half
    // to each.
    let letters: Vec<(MessageId, Vec<u8>)> = (0..LETTERS)
        .map(|i| w.sealed_letter(AGENCY, &format!("bsn:{}", bsns[i % PEOPLE])))
        .collect();
    let ids: Vec<MessageId> = stream::iter(0..IN_FLIGHT)
        .map(|c| {
            let client = w.agency_client(AGENCY, instances[c % instances.len()].https_addr);
            let mine: Vec<_> = letters.iter().skip(c).step_by(IN_FLIGHT).cloned().collect();
            async move {
                let mut connection = client.connect().await.unwrap();
                let mut ids = Vec::new();
                for (id, signed) in mine {
                    connection.submit(signed).await.unwrap();
                    ids.push(id);
                }
                ids
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .concat()
        .await;
    assert_eq!(ids.len(), LETTERS);
    println!("submitted {LETTERS} letters to two instances");

    // Each letter reaches the inbox and gets its first notification.
    wait_until("every letter consigned and notified", WAIT * 5, || {
        let counts = event_counts(&w, &ids);
        with_exactly(&counts, EvidenceEvent::ContentConsignment, 1) == LETTERS
            && with_exactly(&counts, EvidenceEvent::ConsignmentNotification, 1) == LETTERS
    })
    .await;
    let mails_before = w.sink.mails().len();

    // A week later both monitors run at once: one reminder per letter.
    w.clock.advance_s(7 * DAY + 60);
    let (ra, rb) = tokio::join!(w.gateway.gateway.monitor_cycle(), b.gateway.monitor_cycle());
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    println!(
        "reminders: instance a {}, instance b {}",
        ra.reminded, rb.reminded
    );
    assert_eq!(ra.reminded + rb.reminded, LETTERS, "{ra:?} {rb:?}");
    let counts = event_counts(&w, &ids);
    assert_eq!(
        with_exactly(&counts, EvidenceEvent::ConsignmentNotification, 2),
        LETTERS,
        "a notification and one reminder each"
    );
    assert_eq!(
        w.sink.mails().len() - mails_before,
        LETTERS,
        "one reminder e-mail per letter"
    );

    // A week more, two cycles each at once: one paper copy per letter.
    w.clock.advance_s(7 * DAY + 60);
    for _ in 0..2 {
        let (ra, rb) = tokio::join!(w.gateway.gateway.monitor_cycle(), b.gateway.monitor_cycle());
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        println!(
            "paper: instance a {:?} spooled {}, instance b {:?} spooled {}",
            ra.papered, ra.spooled, rb.papered, rb.spooled
        );
    }
    let counts = event_counts(&w, &ids);
    assert_eq!(
        with_exactly(&counts, EvidenceEvent::PaperFallback, 1),
        LETTERS,
        "one PaperFallback each"
    );
    assert_eq!(
        with_exactly(&counts, EvidenceEvent::ConsignmentNotification, 2),
        LETTERS,
        "no reminder twice"
    );
    let mut printed: HashMap<String, usize> = HashMap::new();
    for spool in [w.spool.clone(), w.instance_spool("b")] {
        for entry in estafette_gateway::paper::Spool::new(&spool)
            .manifest()
            .unwrap()
        {
            *printed
                .entry(entry.message_id.unwrap_or_default())
                .or_default() += 1;
        }
    }
    assert_eq!(printed.len(), LETTERS, "every letter printed");
    assert!(printed.values().all(|n| *n == 1), "no letter printed twice");
    println!("{LETTERS} letters: 1 reminder, 1 PaperFallback and 1 PDF each");
    b.shutdown().await;
    w.stop().await;
}

/// Letters queued at an instance that dies.
const STRANDED: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_a_dead_instances_envelopes_are_taken_over_and_relays_try_the_next_address() {
    // The trust list gives the gateway two addresses: instance a's first
    // (the one that will die), then the World's own instance. The letters
    // go to a home node that is not running yet.
    let a_addr = free_udp();
    let later: NodeId = "later.test".parse().unwrap();
    let later_config = std::sync::Arc::new(std::sync::Mutex::new(None));
    let w = World::start_on(TestStore::postgres(), {
        let (later, later_config) = (later.clone(), later_config.clone());
        move |f| {
            let own = f.gateway.config.listen.to_string();
            f.fed
                .set_gateway_addresses(&[a_addr.to_string(), own])
                .unwrap();
            let addr = free_udp();
            f.fed
                .issue_node(&later, &addr.to_string(), estafette_pki::NodeKind::Home)
                .unwrap();
            *later_config.lock().unwrap() = Some(estafette_relay::Config::for_federation_node(
                &f.fed, &later, addr, true,
            ));
        }
    })
    .await;
    let bsn = valid_bsns(1)[0];
    let people = serde_json::json!([{ "recipient": format!("bsn:{bsn}"), "home_node": "later.test", "active": true, "digital_senders": [AGENCY],
        "contact_channels": [{ "kind": "email", "address": "p@example.nl", "state": "verified" }] }]);
    registry::import(
        w.gateway.gateway.records(),
        &w.fed.trust(),
        &people.to_string(),
    )
    .await
    .unwrap();
    let a = w.start_instance_at("a", a_addr).await;

    // Instance a takes letters it cannot forward yet.
    let client = w.agency_client(AGENCY, a.https_addr);
    let mut connection = client.connect().await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..STRANDED {
        let (id, signed) = w.sealed_letter(AGENCY, &format!("bsn:{bsn}"));
        connection.submit(signed).await.unwrap();
        ids.push(id);
    }
    assert_eq!(a.gateway.node.queue_len(), STRANDED as u64);

    // Instance a dies with them; the home node starts.
    a.shutdown().await;
    let died = std::time::Instant::now();
    let config = later_config.lock().unwrap().take().unwrap();
    let home = RunningNode::start(config).await.unwrap();

    // The surviving instance takes them over once a's lease runs out, and
    // the home node's evidence reaches it at the trust list's second
    // address, the first being dead.
    wait_until("every stranded letter consigned", WAIT * 3, || {
        let counts = event_counts(&w, &ids);
        with_exactly(&counts, EvidenceEvent::ContentConsignment, 1) == STRANDED
    })
    .await;
    let took = died.elapsed();
    println!(
        "{STRANDED} envelopes of a dead instance delivered by the other {:.1} s after it died (lease {} s)",
        took.as_secs_f64(),
        estafette_gateway::store::LEASE_S
    );
    assert_eq!(
        home.store().inbox_all().unwrap().len(),
        STRANDED,
        "each delivered once"
    );
    wait_until("the outbox empty", WAIT, || {
        w.gateway.gateway.node.queue_len() == 0
    })
    .await;
    home.shutdown().await;
    w.stop().await;
}

/// Letters submitted across a database failover.
const ACROSS_FAILOVER: usize = 300;
/// Acknowledged letters before the primary is killed.
const BEFORE_FAILOVER: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_a_database_failover_loses_no_acknowledged_letter() {
    use estafette_gateway::config::{StoreBackend, StoreSettings};
    use estafette_gateway::store::test_postgres::{REPLICATED_PRIMARY, TestPostgres};
    use std::sync::atomic::{AtomicUsize, Ordering};

    // A primary whose commits wait for a synchronous standby; the gateway
    // knows both and wants the one that takes writes.
    let primary = TestPostgres::start(REPLICATED_PRIMARY);
    let standby = primary.standby("standby");
    primary.wait_for_sync_standby();
    let url = format!(
        "host=127.0.0.1,127.0.0.1 port={},{} user=postgres dbname=postgres \
         target_session_attrs=read-write connect_timeout=5",
        primary.port, standby.port
    );
    let db = TestStore {
        settings: StoreSettings {
            backend: StoreBackend::Postgres,
            url: Some(url),
            connections: Some(4),
            ..Default::default()
        },
        server: None,
    };
    let w = World::start_on(db, |_| {}).await;
    let bsns = import_people(&w, w.gateway.gateway.records()).await;

    // The agency submits each letter until it is acknowledged (the same
    // signed message again after a failure), on a new connection after one.
    let letters: Vec<(MessageId, Vec<u8>)> = (0..ACROSS_FAILOVER)
        .map(|i| w.sealed_letter(AGENCY, &format!("bsn:{}", bsns[i % PEOPLE])))
        .collect();
    let acknowledged = std::sync::Arc::new(AtomicUsize::new(0));
    let client = w.agency_client(AGENCY, w.gateway.https_addr);
    let submitter = tokio::spawn({
        let acknowledged = acknowledged.clone();
        async move {
            let mut failures = 0usize;
            let mut connection = client.connect().await.unwrap();
            for (_, signed) in &letters {
                let started = std::time::Instant::now();
                while connection.submit(signed.clone()).await.is_err() {
                    failures += 1;
                    assert!(
                        started.elapsed() < WAIT,
                        "a letter not acknowledged for {WAIT:?}"
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    if let Ok(c) = client.connect().await {
                        connection = c;
                    }
                }
                acknowledged.fetch_add(1, Ordering::SeqCst);
            }
            (
                letters.into_iter().map(|(id, _)| id).collect::<Vec<_>>(),
                failures,
            )
        }
    });
    wait_until("the first letters acknowledged", WAIT, || {
        acknowledged.load(Ordering::SeqCst) >= BEFORE_FAILOVER
    })
    .await;

    // The primary dies mid-run; the standby is promoted.
    primary.kill();
    let failed_at = std::time::Instant::now();
    standby.promote();
    println!(
        "primary killed after {} acknowledged letters; standby promoted in {:.1} s",
        acknowledged.load(Ordering::SeqCst),
        failed_at.elapsed().as_secs_f64()
    );
    let (ids, failures) = submitter.await.unwrap();
    println!(
        "all {ACROSS_FAILOVER} letters acknowledged, {failures} failed attempts retried, {:.1} s after the kill",
        failed_at.elapsed().as_secs_f64()
    );

    // Every acknowledged letter is in the promoted standby and reaches the
    // inbox once.
    wait_until("every acknowledged letter consigned", WAIT * 3, || {
        let counts = event_counts(&w, &ids);
        with_exactly(&counts, EvidenceEvent::ContentConsignment, 1) == ACROSS_FAILOVER
    })
    .await;
    let counts = event_counts(&w, &ids);
    let lost = ids.len() - with_exactly(&counts, EvidenceEvent::SubmissionAcceptance, 1);
    println!(
        "acknowledged {ACROSS_FAILOVER}, consigned {ACROSS_FAILOVER}, lost {lost}, {:.1} s after the kill",
        failed_at.elapsed().as_secs_f64()
    );
    assert_eq!(lost, 0);
    assert_eq!(
        w.home.store().inbox_all().unwrap().len(),
        ACROSS_FAILOVER,
        "each delivered once"
    );
    w.stop().await;
    drop(standby);
}
