//! The fault lab's links: between a transit relay and the home node, a UDP
//! proxy under the test's control cuts the link for minutes, lets it flap,
//! or drops and delays datagrams. Backlogs drain once the link heals, each
//! envelope arrives once, and a cut link does not set off a retry storm
//! (the proxy counts connection attempts: QUIC Initial packets).
//!
//! `ESTAFETTE_PARTITION_S` (default [`PARTITION`]) sets the partition.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use estafette_pki::NodeKind;
use estafette_relay::testkit::{
    RelayProcess, TestFederation, TestGateway, TestNode, free_udp, wait_until,
};
use estafette_spec::MessageId;
use estafette_tests::udp_proxy::{Link, UdpProxy};

/// The partition of the short version, in `scripts/test`; the long one
/// (`ESTAFETTE_PARTITION_S=120`) is the two minutes.
const PARTITION: Duration = Duration::from_secs(30);
/// Envelopes per test.
const ENVELOPES: usize = 500;
/// The longest a backlog may take to drain once the link is whole.
const DRAIN: Duration = Duration::from_secs(180);

fn start(node: &TestNode) -> RelayProcess {
    RelayProcess::start(&estafette_tests::binary("estafette-relay"), node)
}

/// gateway → relay-a → (proxy) → home: the proxy stands at home's
/// trust-list address, home listens elsewhere.
async fn federation_with_a_proxy() -> (TestFederation, UdpProxy) {
    let mut fed = TestFederation::new(
        &[
            ("relay-a.test", NodeKind::Transit),
            ("home.test", NodeKind::Home),
        ],
        &["relay-a.test", "home.test"],
    );
    let home = fed
        .relays
        .iter_mut()
        .find(|n| n.id.as_str() == "home.test")
        .unwrap();
    let published = home.config.listen;
    home.config.listen = free_udp();
    home.save();
    let proxy = UdpProxy::start(published, home.config.listen).await;
    (fed, proxy)
}

/// Evidence objects at the gateway (relay-a's acceptance and home's
/// consignment per envelope).
fn evidence(gateway: &TestGateway) -> usize {
    gateway.store().evidence_all().map_or(0, |e| e.len())
}

/// Waits for every envelope's two pieces of evidence, stops the nodes and
/// checks home's inbox: each envelope once. Gives how long the drain took.
async fn drained_once_each(
    fed: &TestFederation,
    gateway: &TestGateway,
    nodes: &mut [RelayProcess],
    sent: &HashSet<MessageId>,
) -> Duration {
    let started = Instant::now();
    wait_until("the backlog to drain", DRAIN, || {
        evidence(gateway) >= 2 * sent.len()
    })
    .await;
    let took = started.elapsed();
    for node in nodes.iter_mut() {
        assert!(node.terminate().success());
    }
    let (arrived, unique) = estafette_tests::delivered_at(fed.relay("home.test"));
    println!(
        "offered {}, delivered {}, duplicates {}, lost {}",
        sent.len(),
        arrived.len(),
        arrived.len() - unique.len(),
        sent.difference(&unique).count()
    );
    assert_eq!(
        arrived.len(),
        unique.len(),
        "an envelope was delivered twice"
    );
    assert_eq!(
        &unique, sent,
        "every envelope arrives once the link is whole"
    );
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_of_minutes_loses_nothing_and_sets_off_no_retry_storm() {
    let partition = std::env::var("ESTAFETTE_PARTITION_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(PARTITION, Duration::from_secs);
    let (fed, proxy) = federation_with_a_proxy().await;
    let mut nodes = vec![
        start(fed.relay("relay-a.test")),
        start(fed.relay("home.test")),
    ];
    let gateway = fed.start_gateway().await;
    proxy.set(Link::Down);
    let cut = Instant::now();
    let sent = estafette_tests::submit_envelopes(&fed, &gateway, ENVELOPES).await;
    wait_until(
        "relay-a to hold every envelope",
        Duration::from_secs(60),
        || evidence(&gateway) >= ENVELOPES,
    )
    .await;
    let initials_before = proxy.initials();
    // The partition itself: nothing to wait for but time.
    tokio::time::sleep(partition.saturating_sub(cut.elapsed())).await;
    let attempts = proxy.initials() - initials_before;
    let held = cut.elapsed();
    proxy.set(Link::Up);
    let drain = drained_once_each(&fed, &gateway, &mut nodes, &sent).await;
    println!(
        "partition of {:.0} s with {ENVELOPES} envelopes waiting: {attempts} connection attempts \
         (QUIC Initial packets) while cut; drained {:.1} s after it healed",
        held.as_secs_f64(),
        drain.as_secs_f64()
    );
    // Each envelope on its own backoff would try at least once per round:
    // hundreds of attempts. Attempts towards a dead hop are per hop.
    assert!(
        attempts < ENVELOPES as u64,
        "{attempts} connection attempts for {ENVELOPES} waiting envelopes: a retry storm"
    );
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_link_loses_and_duplicates_nothing() {
    let (fed, proxy) = federation_with_a_proxy().await;
    let mut nodes = vec![
        start(fed.relay("relay-a.test")),
        start(fed.relay("home.test")),
    ];
    let gateway = fed.start_gateway().await;
    let proxy = Arc::new(proxy);
    let flapping = {
        let proxy = proxy.clone();
        tokio::spawn(async move {
            // Down and up every two seconds, ten times: the load shape, not a wait.
            for round in 0..10 {
                proxy.set(if round % 2 == 0 { Link::Down } else { Link::Up });
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            proxy.set(Link::Up);
        })
    };
    let sent = estafette_tests::submit_envelopes(&fed, &gateway, ENVELOPES).await;
    flapping.await.unwrap();
    let drain = drained_once_each(&fed, &gateway, &mut nodes, &sent).await;
    println!(
        "flapping link (2 s down, 2 s up, 20 s): {} connection attempts; drained {:.1} s after",
        proxy.initials(),
        drain.as_secs_f64()
    );
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lossy_slow_link_loses_and_duplicates_nothing() {
    let (fed, proxy) = federation_with_a_proxy().await;
    let mut nodes = vec![
        start(fed.relay("relay-a.test")),
        start(fed.relay("home.test")),
    ];
    let gateway = fed.start_gateway().await;
    proxy.set(Link::Lossy {
        drop_percent: 10,
        delay: Duration::from_millis(40),
    });
    let started = Instant::now();
    let sent = estafette_tests::submit_envelopes(&fed, &gateway, ENVELOPES).await;
    let drain = drained_once_each(&fed, &gateway, &mut nodes, &sent).await;
    let counts = &proxy.counts;
    println!(
        "lossy link (10% dropped, 40 ms delay): {ENVELOPES} envelopes through in {:.1} s \
         ({:.1} s after the last submission); datagrams passed {}, dropped {}",
        started.elapsed().as_secs_f64(),
        drain.as_secs_f64(),
        counts.passed.load(std::sync::atomic::Ordering::Relaxed),
        counts.dropped.load(std::sync::atomic::Ordering::Relaxed)
    );
    gateway.shutdown().await;
}
