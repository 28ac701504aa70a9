//! Crashes and cut links: B is killed with SIGKILL again and again while
//! envelopes stream through, or is down for a while; afterwards every
//! envelope A was told was accepted is in the inbox exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use estafette_pki::NodeKind;
use estafette_spec::*;
use rand_core::{OsRng, RngCore};

fn three_hops() -> TestFederation {
    TestFederation::new(
        &[
            ("relay-a.test", NodeKind::Transit),
            ("relay-b.test", NodeKind::Transit),
            ("home.test", NodeKind::Home),
        ],
        &["relay-a.test", "relay-b.test", "home.test"],
    )
}

/// Submits `n` envelopes concurrently; returns their message ids.
async fn submit_all(
    fed: &TestFederation,
    gateway: &std::sync::Arc<estafette_relay::testkit::TestGateway>,
    n: usize,
) -> HashSet<MessageId> {
    let inbox = random_inbox();
    let mut sent = HashSet::new();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let (envelope, _, header) = fed.envelope("home.test", inbox, &format!("letter {i}"));
        sent.insert(header.message_id);
        let gateway = gateway.clone();
        tasks.spawn(async move { gateway.submit(envelope, None).await.unwrap() });
        if tasks.len() >= 256 {
            tasks.join_next().await.unwrap().unwrap();
        }
    }
    while let Some(t) = tasks.join_next().await {
        t.unwrap();
    }
    sent
}

/// The node's forward attempts under way towards `destination` (its metric).
/// The value of one metric series of `node` (0 when not shown yet).
fn metric(node: &TestNode, series: &str) -> f64 {
    let admin = node.config.admin_listen.unwrap();
    let metrics = estafette_relay::admin::local_get(admin, "/metrics").unwrap();
    let series = format!("{series} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

fn in_flight(node: &TestNode, destination: &str) -> f64 {
    metric(
        node,
        &format!("estafette_relay_forwards_in_flight{{destination=\"{destination}\"}}"),
    )
}

fn delivered(node: &TestNode) -> Vec<MessageId> {
    open_store(node)
        .inbox_all()
        .unwrap()
        .into_iter()
        .map(|(_, _, m)| m)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_middle_relay_loses_and_duplicates_nothing() {
    let n: usize = std::env::var("ESTAFETTE_TEST_ENVELOPES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let fed = three_hops();
    let mut a = start(fed.relay("relay-a.test"));
    let mut b = start(fed.relay("relay-b.test"));
    let mut home = start(fed.relay("home.test"));
    let gateway = fed.start_gateway().await;

    let submitter = {
        let gateway = gateway.clone();
        // The federation is borrowed by the submitter only for envelope making.
        let envelopes: Vec<(Vec<u8>, MessageId)> = (0..n)
            .map(|i| {
                let (e, _, h) = fed.envelope("home.test", random_inbox(), &format!("letter {i}"));
                (e, h.message_id)
            })
            .collect();
        let sent: HashSet<MessageId> = envelopes.iter().map(|(_, m)| *m).collect();
        let task = tokio::spawn(async move {
            let mut tasks = tokio::task::JoinSet::new();
            for (envelope, _) in envelopes {
                let gateway = gateway.clone();
                tasks.spawn(async move { gateway.submit(envelope, None).await.unwrap() });
                if tasks.len() >= 64 {
                    tasks.join_next().await.unwrap().unwrap();
                }
            }
            while let Some(t) = tasks.join_next().await {
                t.unwrap();
            }
        });
        (task, sent)
    };
    let (submit_task, sent) = submitter;

    // Kill B at random moments while the stream goes through it.
    let kills = 6;
    for round in 0..kills {
        // A random moment, not a wait for a condition: chaos on purpose.
        let pause = 150 + u64::from(OsRng.next_u32() % 700);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        b.kill();
        let evidence_so_far = gateway.store().evidence_all().map(|e| e.len()).unwrap_or(0);
        println!(
            "kill {}: B killed after {pause} ms; {evidence_so_far} of {} evidence objects at the gateway so far",
            round + 1,
            3 * n
        );
        b = start(fed.relay("relay-b.test"));
    }
    submit_task.await.unwrap();

    // Everything eventually arrives: wait for the gateway to hold all evidence.
    wait_until(
        "all evidence at the gateway",
        Duration::from_secs(900),
        || gateway.store().evidence_all().map(|e| e.len()).unwrap_or(0) >= 3 * n,
    )
    .await;
    for p in [&mut a, &mut b, &mut home] {
        assert!(p.terminate().success());
    }

    // What A was told was accepted (forwarded to B), and what arrived.
    let a_store = open_store(fed.relay("relay-a.test"));
    let acknowledged: HashSet<MessageId> = {
        let trust = fed.trust();
        let mut acked = HashSet::new();
        for bytes in gateway.store().evidence_all().unwrap() {
            let v = Evidence::verify(&bytes, &trust).unwrap();
            if v.record.event == EvidenceEvent::RelayAcceptance
                && v.record.issuer.as_str() == "relay-b.test"
            {
                acked.insert(v.record.message_id.unwrap());
            }
        }
        acked
    };
    let queued_at_a = a_store.queue_len();
    drop(a_store);
    let arrived = delivered(fed.relay("home.test"));
    let unique: HashSet<MessageId> = arrived.iter().copied().collect();
    let duplicates = arrived.len() - unique.len();
    println!(
        "offered {n}, acknowledged by B {}, delivered {}, duplicates {duplicates}, still queued at A {queued_at_a}, B killed {kills} times",
        acknowledged.len(),
        arrived.len()
    );
    assert_eq!(duplicates, 0);
    assert!(
        acknowledged.is_subset(&unique),
        "an acknowledged envelope is missing from the inbox"
    );
    assert_eq!(
        unique, sent,
        "every offered envelope arrives once the links are back"
    );
    gateway.shutdown().await;
}

/// Every envelope of `sent` is in home.test's inbox, once (the node stopped).
fn assert_each_delivered_once(fed: &TestFederation, sent: &HashSet<MessageId>) {
    let arrived = delivered(fed.relay("home.test"));
    let unique: HashSet<MessageId> = arrived.iter().copied().collect();
    println!(
        "offered {}, delivered {}, duplicates {}",
        sent.len(),
        arrived.len(),
        arrived.len() - unique.len()
    );
    assert_eq!(arrived.len(), sent.len(), "each delivered once");
    assert_eq!(&unique, sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keeps_envelopes_while_b_is_down_and_delivers_after_it_returns() {
    let n = 200;
    let mut fed = three_hops();
    // Far fewer slots towards B than envelopes waiting for it: each waits
    // in B's line, not in a task of its own.
    const SLOTS: u32 = 4;
    if let Some(a) = fed
        .relays
        .iter_mut()
        .find(|r| r.id.as_str() == "relay-a.test")
    {
        a.config.limits.forward_concurrency_per_peer = SLOTS;
        a.save();
    }
    let mut a = start(fed.relay("relay-a.test"));
    let mut b = start(fed.relay("relay-b.test"));
    let mut home = start(fed.relay("home.test"));
    let gateway = fed.start_gateway().await;
    b.kill();

    let sent = submit_all(&fed, &gateway, n).await;
    // A accepts them all and keeps them: B is backed off as a whole, one
    // envelope (the front of B's line) probing it per backoff round.
    let a_node = fed.relay("relay-a.test");
    // Wait until the front has probed B several times and the backoff
    // shows: its next try lies in the future. (The report lists the line
    // in the store's order; the probe is the first the forwarder took.)
    let began = std::time::Instant::now();
    let mut most_in_flight = 0.0f64;
    let front_attempts = loop {
        most_in_flight = most_in_flight.max(in_flight(a_node, "relay-b.test"));
        let report: serde_json::Value = serde_json::from_str(&queue_json(a_node)).unwrap();
        let entries = report["destinations"][0]["entries"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let probe = entries
            .iter()
            .max_by_key(|e| e["attempts"].as_u64().unwrap_or(0));
        let attempts = probe.map_or(0, |e| e["attempts"].as_u64().unwrap_or(0));
        let waiting = probe.is_some_and(|e| e["next_attempt_in_ms"].as_u64().unwrap_or(0) > 0);
        if report["total"] == n && attempts >= 4 && waiting {
            break attempts;
        }
        assert!(
            began.elapsed() < Duration::from_secs(120),
            "A never showed its probes of B backed off; last report:\n{report}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        most_in_flight > 0.0 && most_in_flight <= f64::from(SLOTS),
        "attempts in flight towards B: at most {most_in_flight}, slots {SLOTS}"
    );
    // Every failed attempt was a probe (after a first round in all
    // slots): not one per waiting envelope.
    let failed_attempts = metric(a_node, "estafette_relay_forward_retries_total");
    assert!(
        failed_attempts <= (front_attempts + u64::from(SLOTS)) as f64,
        "{failed_attempts} failed attempts while the front made {front_attempts}"
    );
    let report = queue(a_node);
    println!("{}", report.lines().take(8).collect::<Vec<_>>().join("\n"));
    assert!(report.contains("to relay-b.test: 200 queued"), "{report}");
    assert!(
        report.contains("connecting to relay-b.test") || report.contains("did not answer"),
        "the last error is shown: {report}"
    );

    b = start(fed.relay("relay-b.test"));
    wait_until(
        "all evidence at the gateway",
        Duration::from_secs(300),
        || gateway.store().evidence_all().map(|e| e.len()).unwrap_or(0) >= 3 * n,
    )
    .await;
    for p in [&mut a, &mut b, &mut home] {
        assert!(p.terminate().success());
    }
    assert_each_delivered_once(&fed, &sent);
    let a_store = open_store(fed.relay("relay-a.test"));
    assert_eq!(a_store.queue_len(), 0);
    gateway.shutdown().await;
}

/// The forwarder's own store fails on some envelopes (a read of the queue,
/// the write that records a forward), as during a database failover: they
/// stay queued and go out a moment later, once each, not at the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelopes_the_forwarders_store_failed_on_go_out_a_moment_later() {
    use std::sync::atomic::Ordering;
    let n = 20;
    let fed = TestFederation::new(&[("home.test", NodeKind::Home)], &["home.test"]);
    let mut home = start(fed.relay("home.test"));
    let faults = std::sync::Arc::new(estafette_relay::testkit::QueueFaults::default());
    faults.failing_reads.store(5, Ordering::SeqCst);
    faults.failing_forwards.store(5, Ordering::SeqCst);
    let gateway = fed.start_gateway_with_faults(faults.clone()).await;

    let sent = submit_all(&fed, &gateway, n).await;
    wait_until(
        "every envelope forwarded despite the store failures",
        Duration::from_secs(30),
        || gateway.store().queue_len() == 0,
    )
    .await;
    assert_eq!(
        faults.failing_reads.load(Ordering::SeqCst),
        0,
        "reads failed"
    );
    assert_eq!(
        faults.failing_forwards.load(Ordering::SeqCst),
        0,
        "forwards failed"
    );
    assert!(home.terminate().success());
    assert_each_delivered_once(&fed, &sent);
    gateway.shutdown().await;
}

/// The first relay is down: envelopes behind the front of its line that
/// expire meanwhile are given up at their expiry, with RelayFailure
/// evidence, without waiting for their turn; the others keep waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelopes_expiring_behind_a_down_hop_are_given_up_at_expiry() {
    let fed = three_hops();
    let gateway = fed.start_gateway().await;
    let inbox = random_inbox();
    let later = estafette_pki::now().plus_s(86_400);
    let soon = estafette_pki::now().plus_s(3);
    let mut short_lived = Vec::new();
    // First the long-lived (the front of the line), then the short-lived.
    for (i, expires_at) in [later, later, later, soon, soon, soon]
        .into_iter()
        .enumerate()
    {
        let (envelope, _, header) =
            fed.envelope_expiring("home.test", inbox, &format!("letter {i}"), expires_at);
        if expires_at == soon {
            short_lived.push(header.message_id);
        }
        gateway.submit(envelope, None).await.unwrap();
    }
    wait_until(
        "the short-lived envelopes given up",
        Duration::from_secs(30),
        || gateway.store().queue_len() == 3,
    )
    .await;
    let trust = gateway.trust();
    for message in &short_lived {
        let evidence = gateway.store().evidence_for(message).unwrap();
        let records: Vec<_> = evidence
            .iter()
            .map(|e| Evidence::verify(e, &trust).unwrap().record)
            .collect();
        let failure = records
            .iter()
            .find(|r| r.event == EvidenceEvent::RelayFailure)
            .unwrap_or_else(|| panic!("no RelayFailure: {records:?}"));
        assert_eq!(failure.reason, Some(ReasonCode::Expired));
        assert!(failure.issued_at >= soon, "not before its expiry");
    }
    gateway.shutdown().await;
}

/// The fewest milliseconds `failures` failed deliveries in a row can take
/// under the test federation's retry policy (each wait at least half its
/// step): the most failures that fit in a time is bounded by it.
fn shortest_time_for(failures: u32) -> u64 {
    let policy = estafette_spec::relay::RetryPolicy {
        base_ms: 20,
        cap_ms: 1_000,
        horizon_s: 3_600,
    };
    (0..failures.saturating_sub(1))
        .map(|step| policy.delay_ms(step, 0.0))
        .sum()
}

/// The gateway is down while evidence piles up in the home node's outbox
/// (more than two batches): the outbox backs off as a whole, one
/// failed delivery per backoff step however long it is, keeps everything,
/// and delivers all of it once the gateway is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_waits_in_the_outbox_while_the_gateway_is_down_and_all_of_it_arrives_after() {
    use estafette_spec::relay::MAX_EVIDENCE_PER_DELIVERY;
    let n = 2 * MAX_EVIDENCE_PER_DELIVERY + 100;
    let fed = TestFederation::new(
        &[
            ("relay-a.test", NodeKind::Transit),
            ("home.test", NodeKind::Home),
        ],
        &["relay-a.test", "home.test"],
    );
    let mut a = start(fed.relay("relay-a.test"));
    let mut home = start(fed.relay("home.test"));
    home.kill();
    let gateway = fed.start_gateway().await;
    let sent = submit_all(&fed, &gateway, n).await;
    // Once A holds them all, the gateway goes, and then the home node comes.
    let a_node = fed.relay("relay-a.test");
    let queued_at_a = || {
        metric(
            a_node,
            "estafette_relay_queue_depth{destination=\"home.test\"}",
        )
    };
    wait_until("all letters queued at A", Duration::from_secs(60), || {
        queued_at_a() == n as f64
    })
    .await;
    gateway.shutdown().await;
    drop(gateway);
    let gateway_down = std::time::Instant::now();
    home = start(fed.relay("home.test"));
    let home_node = fed.relay("home.test");
    let began = std::time::Instant::now();
    loop {
        let seen = [
            queued_at_a(),
            metric(home_node, "estafette_relay_outbox_depth"),
            metric(
                home_node,
                "estafette_relay_evidence_delivery_failures_total",
            ),
        ];
        if seen[0] == 0.0 && seen[1] == n as f64 && seen[2] >= 6.0 {
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(120),
            "A's queue, home's outbox and home's failed deliveries: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A's acceptances went back to the gateway in its answers: A's outbox
    // stays empty; home's holds one record per letter.
    assert_eq!(metric(a_node, "estafette_relay_outbox_depth"), 0.0);
    let failures = metric(
        home_node,
        "estafette_relay_evidence_delivery_failures_total",
    ) as u32;
    let down_ms = gateway_down.elapsed().as_millis() as u64;
    println!("home: {failures} failed deliveries in {down_ms} ms");
    assert!(
        shortest_time_for(failures) <= down_ms,
        "home: {failures} failed deliveries in {down_ms} ms: more than one per backoff step"
    );

    // The gateway is back (its store as it left it): everything arrives.
    wait_until("the gateway's store free", Duration::from_secs(30), || {
        redb::Database::open(fed.gateway.config.db_path()).is_ok()
            && std::net::UdpSocket::bind(fed.gateway.config.listen).is_ok()
    })
    .await;
    let gateway = fed.start_gateway().await;
    let began = std::time::Instant::now();
    loop {
        let stored = gateway.store().evidence_all().map(|e| e.len()).unwrap_or(0);
        // A's acceptance (in its answer) and home's, for each letter.
        if stored >= 2 * n {
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(120),
            "evidence at the gateway: {stored}, home's outbox {}, failures {}",
            metric(home_node, "estafette_relay_outbox_depth"),
            metric(
                home_node,
                "estafette_relay_evidence_delivery_failures_total"
            )
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_until("both outboxes empty", Duration::from_secs(30), || {
        metric(a_node, "estafette_relay_outbox_depth") == 0.0
            && metric(home_node, "estafette_relay_outbox_depth") == 0.0
    })
    .await;
    for p in [&mut a, &mut home] {
        assert!(p.terminate().success());
    }
    assert_each_delivered_once(&fed, &sent);
    gateway.shutdown().await;
}
