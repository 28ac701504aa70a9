//! Faults cost seconds, not promises: after a SIGKILL and restart of the
//! transit relay or of the gateway, the next letter is delivered within
//! seconds, and a citizen can log in at once. (Before, senders kept their
//! cached QUIC connection to the dead peer until a 60 s idle timeout.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use estafette_relay::testkit::AGENCY;
use estafette_spec::*;
use estafette_tests::*;

/// The promise: the next letter after a restart is delivered within this.
const AFTER_RESTART: Duration = Duration::from_secs(5);

async fn deliver(fed: &ProcessFederation, body: &str, timeout: Duration) -> Duration {
    let (id, signed) = fed.letter(AGENCY, RESIDENT, body);
    let started = std::time::Instant::now();
    let summary = fed.agency().submit_summary(signed).await.unwrap();
    assert_eq!(summary.channel, "digital");
    fed.wait_for_event(&id, EvidenceEvent::ContentConsignment, timeout)
        .await;
    started.elapsed()
}

async fn login(fed: &ProcessFederation) -> Result<(), String> {
    fed.resident_session().await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_letter_after_a_sigkill_and_restart_arrives_within_seconds() {
    let fed = ProcessFederation::new();
    let mut gateway = fed.start_gateway();
    let mut relay = fed.start_relay("relay.test");
    let _home = fed.start_relay("home.test");

    // Warm: every hop holds a connection to the next, and home to the gateway.
    deliver(&fed, "first", Duration::from_secs(60)).await;
    login(&fed).await.unwrap();

    relay.kill();
    relay = fed.start_relay("relay.test");
    let after_relay = deliver(&fed, "after the relay's restart", Duration::from_secs(90)).await;
    println!(
        "transit relay SIGKILLed and restarted: next letter delivered in {} ms",
        after_relay.as_millis()
    );

    gateway.kill();
    gateway = fed.start_gateway();
    let login_started = std::time::Instant::now();
    let login_result = login(&fed).await;
    let login_after = login_started.elapsed();
    println!(
        "gateway SIGKILLed and restarted: citizen login {} after {} ms",
        if login_result.is_ok() {
            "succeeded"
        } else {
            "failed"
        },
        login_after.as_millis()
    );
    let after_gateway = deliver(&fed, "after the gateway's restart", Duration::from_secs(90)).await;
    println!(
        "gateway SIGKILLed and restarted: next letter delivered in {} ms",
        after_gateway.as_millis()
    );

    assert!(
        after_relay < AFTER_RESTART,
        "after the transit relay's restart the next letter took {after_relay:?}"
    );
    login_result.unwrap();
    assert!(login_after < AFTER_RESTART, "login took {login_after:?}");
    assert!(
        after_gateway < AFTER_RESTART,
        "after the gateway's restart the next letter took {after_gateway:?}"
    );
    assert!(relay.terminate().success());
    assert!(gateway.terminate().success());
}

/// Sessions are kept in the home node's store: a SIGKILL and restart of the
/// home node between two requests logs nobody out, and a logged-out
/// session stays refused, before and after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_home_node_restart_logs_nobody_out_and_a_logout_holds() {
    let fed = ProcessFederation::new();
    let mut gateway = fed.start_gateway();
    let mut home = fed.start_relay("home.test");
    let staying = fed.resident_session().await.unwrap();
    let leaving = fed.resident_session().await.unwrap();
    let before = staying.me().await.unwrap();

    home.kill();
    home = fed.start_relay("home.test");
    assert_eq!(
        staying.me().await.unwrap(),
        before,
        "still logged in after the restart"
    );
    leaving.me().await.unwrap();
    leaving.log_out().await.unwrap();
    let refused = leaving.me().await.unwrap_err();
    assert_eq!(refused.code(), Some("no-session"), "{refused}");

    home.kill();
    home = fed.start_relay("home.test");
    let refused = leaving.me().await.unwrap_err();
    assert_eq!(
        refused.code(),
        Some("no-session"),
        "a logout holds across a restart: {refused}"
    );
    assert_eq!(staying.me().await.unwrap(), before);
    assert!(home.terminate().success());
    assert!(gateway.terminate().success());
}
