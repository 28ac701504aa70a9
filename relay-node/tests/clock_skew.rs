//! The fault lab's clock skew: a home node whose clock is behind the
//! gateway's. Within the tolerated skew (60 s) its letters arrive at once;
//! beyond it the home node refuses them for now (retryable, unsigned), and
//! they arrive once its clock has caught up with their creation time.
//! (Before, it answered with a signed RelayRejection, and the gateway gave
//! the letter up for good over a clock.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use estafette_pki::NodeKind;
use estafette_spec::limits::MAX_CLOCK_SKEW_S;
use estafette_spec::{Clock, EvidenceEvent, MessageId};

/// The system clock, `behind_ms` late.
struct LateClock {
    behind_ms: u64,
}

impl Clock for LateClock {
    fn now_ms(&self) -> u64 {
        estafette_pki::SystemClock.now_ms() - self.behind_ms
    }
}

/// Sends one letter from the gateway to a home node whose clock is
/// `behind_s` late; gives how long until it was in the inbox.
async fn one_letter_to_a_late_home(behind_s: u64) -> Duration {
    let fed = TestFederation::new(&[("home.test", NodeKind::Home)], &["home.test"]);
    let clock = Arc::new(LateClock {
        behind_ms: behind_s * 1000,
    });
    let home =
        estafette_relay::Node::start_with_clock(fed.relay("home.test").config.clone(), clock)
            .unwrap();
    let gateway = fed.start_gateway().await;
    let (envelope, _, header) = fed.envelope("home.test", random_inbox(), "a letter");
    let started = Instant::now();
    gateway.submit(envelope, None).await.unwrap();
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
        || delivered(&header.message_id),
    )
    .await;
    let took = started.elapsed();
    // Nothing was given up on the way.
    let events: Vec<EvidenceEvent> =
        evidence_by_message(&fed.trust(), gateway.store().evidence_all().unwrap())
            .remove(&header.message_id)
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
