//! The fault lab's clock skew: a home node whose clock is behind the
//! gateway's. Within the tolerated skew (60 s) its letters arrive at once;
//! beyond it the home node refuses them for now (retryable, unsigned), and
//! they arrive once its clock has caught up with their creation time.
//! (Before, it answered with a signed RelayRejection, and the gateway gave
//! the letter up for good over a clock.)
//!
//! And a home node whose clock is ahead: its letters arrive at once, and
//! the gateway never keeps evidence dated beyond its own clock and the
//! tolerance; beyond it the delivery waits in the node's outbox until the
//! clocks agree. (Before, the gateway kept evidence of events in its
//! future.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use estafette_pki::NodeKind;
use estafette_spec::limits::MAX_CLOCK_SKEW_S;
use estafette_spec::{Clock, EvidenceEvent, MessageId};

/// The system clock, `behind_ms` late (or, negative, early).
struct LateClock {
    behind_ms: i64,
}

impl Clock for LateClock {
    fn now_ms(&self) -> u64 {
        estafette_pki::SystemClock
            .now_ms()
            .saturating_add_signed(-self.behind_ms)
    }
}

/// Starts home.test on a clock `behind_ms` late and the gateway, and
/// submits one letter to home.test: the home node, the gateway, the
/// letter's id, and when it was submitted.
async fn home_on_a_skewed_clock_with_a_letter(
    fed: &TestFederation,
    behind_ms: i64,
) -> (
    Arc<estafette_relay::Node>,
    Arc<TestGateway>,
    MessageId,
    Instant,
) {
    let clock = Arc::new(LateClock { behind_ms });
    let home =
        estafette_relay::Node::start_with_clock(fed.relay("home.test").config.clone(), clock)
            .unwrap();
    let gateway = fed.start_gateway().await;
    let (envelope, _, header) = fed.envelope("home.test", random_inbox(), "a letter");
    let started = Instant::now();
    gateway.submit(envelope, None).await.unwrap();
    (home, gateway, header.message_id, started)
}

/// Sends one letter from the gateway to a home node whose clock is
/// `behind_s` late; gives how long until it was in the inbox.
async fn one_letter_to_a_late_home(behind_s: u64) -> Duration {
    let fed = TestFederation::new(&[("home.test", NodeKind::Home)], &["home.test"]);
    let (home, gateway, message, started) =
        home_on_a_skewed_clock_with_a_letter(&fed, behind_s as i64 * 1000).await;
    let delivered = |m: &MessageId| {
        home.store()
            .inbox_all()
            .unwrap()
            .iter()
            .any(|(_, _, id)| id == m)
    };
    wait_until(
        "the letter in the late home node's inbox",
        Duration::from_secs(behind_s + 60),
        || delivered(&message),
    )
    .await;
    let took = started.elapsed();
    // Nothing was given up on the way.
    let events: Vec<EvidenceEvent> =
        evidence_by_message(&fed.trust(), gateway.store().evidence_all().unwrap())
            .remove(&message)
            .unwrap_or_default()
            .into_iter()
            .map(|(event, _, _)| event)
            .collect();
    assert!(
        !events.contains(&EvidenceEvent::RelayRejection)
            && !events.contains(&EvidenceEvent::RelayFailure),
        "{events:?}"
    );
    home.shutdown().await;
    gateway.shutdown().await;
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_home_node_late_within_the_tolerance_takes_letters_at_once() {
    let took = one_letter_to_a_late_home(MAX_CLOCK_SKEW_S - 20).await;
    println!(
        "home {} s late: delivered in {took:?}",
        MAX_CLOCK_SKEW_S - 20
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_home_node_late_beyond_the_tolerance_takes_letters_once_its_clock_catches_up() {
    let behind = MAX_CLOCK_SKEW_S + 20;
    let took = one_letter_to_a_late_home(behind).await;
    println!("home {behind} s late: delivered in {took:?}");
    // Not before its clock reached the letter's creation time less the
    // tolerance: about 20 s.
    assert!(
        took >= Duration::from_secs(behind - MAX_CLOCK_SKEW_S - 2),
        "{took:?}"
    );
}

/// Sends one letter to a home node whose clock is `ahead_s` early: gives
/// how long until it was in the inbox, and until its ContentConsignment
/// was at the gateway. At that moment the evidence is not dated beyond the
/// gateway's clock and the tolerance.
async fn one_letter_to_an_early_home(ahead_s: u64) -> (Duration, Duration) {
    // Through a relay: the home node's consignment reaches the gateway only
    // through its evidence outbox (the relay keeps the acceptance it got).
    let fed = TestFederation::new(
        &[
            ("relay-a.test", NodeKind::Transit),
            ("home.test", NodeKind::Home),
        ],
        &["relay-a.test", "home.test"],
    );
    let relay = estafette_relay::Node::start(fed.relay("relay-a.test").config.clone())
        .await
        .unwrap();
    let (home, gateway, message, started) =
        home_on_a_skewed_clock_with_a_letter(&fed, -(ahead_s as i64 * 1000)).await;
    wait_until(
        "the letter in the early home node's inbox",
        Duration::from_secs(10),
        || {
            home.store()
                .inbox_all()
                .unwrap()
                .iter()
                .any(|(_, _, id)| *id == message)
        },
    )
    .await;
    let delivered = started.elapsed();
    let consignment = || {
        gateway
            .store()
            .evidence_all()
            .unwrap()
            .into_iter()
            .find_map(|bytes| {
                let record = estafette_spec::Evidence::verify(&bytes, &fed.trust())
                    .unwrap()
                    .record;
                (record.message_id == Some(message)
                    && record.event == EvidenceEvent::ContentConsignment)
                    .then_some(record.issued_at)
            })
    };
    wait_until(
        "the consignment at the gateway",
        Duration::from_secs(ahead_s + 60),
        || consignment().is_some(),
    )
    .await;
    let kept = started.elapsed();
    let gateway_now = estafette_pki::SystemClock.now();
    let issued_at = consignment().unwrap();
    assert!(
        issued_at <= gateway_now.plus_s(MAX_CLOCK_SKEW_S),
        "the gateway keeps evidence issued at {issued_at}, {} s after its clock",
        issued_at.0.saturating_sub(gateway_now.0)
    );
    home.shutdown().await;
    relay.shutdown().await;
    gateway.shutdown().await;
    (delivered, kept)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_home_node_early_within_the_tolerance_delivers_its_evidence_at_once() {
    let ahead = MAX_CLOCK_SKEW_S - 20;
    let (delivered, kept) = one_letter_to_an_early_home(ahead).await;
    println!(
        "home {ahead} s early: delivered in {delivered:?}, its evidence at the gateway in {kept:?}"
    );
    assert!(kept < Duration::from_secs(10), "{kept:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_home_node_early_beyond_the_tolerance_delivers_its_evidence_once_the_clocks_agree() {
    let ahead = MAX_CLOCK_SKEW_S + 20;
    let (delivered, kept) = one_letter_to_an_early_home(ahead).await;
    println!(
        "home {ahead} s early: delivered in {delivered:?}, its evidence at the gateway in {kept:?}"
    );
    // The letter itself is not held up by the clock.
    assert!(delivered < Duration::from_secs(10), "{delivered:?}");
}
