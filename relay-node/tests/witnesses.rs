//! Witnesses (SPEC.md §15) between real processes: a relay's checkpoints
//! are cosigned by the witnesses the trust list names for it; when its
//! operator wipes its evidence log and it starts a second history under the
//! same name, every witness refuses to cosign, and both sides count it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use estafette_pki::NodeKind;

fn metric_of(node: &TestNode, series: &str) -> f64 {
    let admin = node.config.admin_listen.unwrap();
    let text = estafette_relay::admin::local_get(admin, "/metrics").unwrap_or_default();
    metric(&text, series)
}

async fn submit(fed: &TestFederation, gateway: &estafette_relay::testkit::TestGateway, n: usize) {
    for i in 0..n {
        let (envelope, _, _) = fed.envelope("home.test", random_inbox(), &format!("letter {i}"));
        gateway.submit(envelope, None).await.unwrap();
    }
}

fn gateway_cosigned(gateway: &estafette_relay::testkit::TestGateway) -> f64 {
    metric(&gateway.metrics(), "estafette_relay_witness_cosigned_total")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn witnesses_cosign_a_log_and_refuse_a_rewritten_one() {
    let fed = TestFederation::new(
        &[
            ("relay-a.test", NodeKind::Transit),
            ("home.test", NodeKind::Home),
        ],
        &["relay-a.test", "home.test"],
    );
    // The federation names two witnesses for each member.
    let witnesses = fed
        .trust()
        .node(&"relay-a.test".parse().unwrap())
        .unwrap()
        .witnesses
        .clone();
    assert_eq!(witnesses.len(), 2, "{witnesses:?}");
    let relay_node = fed.relay("relay-a.test");
    let home_node = fed.relay("home.test");
    let mut relay = start(relay_node);
    let _home = start(home_node);
    let gateway = fed.start_gateway().await;

    submit(&fed, &gateway, 10).await;
    // Both witnesses cosign (the gateway in this process, the home node in
    // its own).
    wait_for(
        "the relay's checkpoint cosigned by both",
        Duration::from_secs(60),
        || {
            metric_of(relay_node, "estafette_relay_log_cosigned_size") >= 10.0
                && metric_of(home_node, "estafette_relay_witness_cosigned_total") >= 1.0
                && gateway_cosigned(&gateway) >= 1.0
        },
    );
    assert_eq!(
        metric_of(relay_node, "estafette_relay_log_witness_refusals_total"),
        0.0
    );

    // The operator wipes the relay's evidence log: a second history under
    // the same name starts.
    relay.kill();
    std::fs::remove_file(relay_node.config.data_dir.join("evidence-log.redb")).unwrap();
    let relay = start(relay_node);
    submit(&fed, &gateway, 15).await;
    wait_for(
        "the witnesses refuse the rewritten log",
        Duration::from_secs(60),
        || metric_of(relay_node, "estafette_relay_log_witness_refusals_total") >= 2.0,
    );
    assert!(metric_of(home_node, "estafette_relay_witness_refused_total") >= 1.0);
    // Letters still go through; nothing of the new history is cosigned.
    assert_eq!(
        metric_of(relay_node, "estafette_relay_log_cosigned_size"),
        0.0
    );
    assert!(
        relay
            .log()
            .contains("a witness refused this node's log checkpoint"),
        "{}",
        relay.log()
    );
}
