//! Witnesses and auditors (SPEC.md §15) between real processes: a relay's
//! checkpoints are cosigned by the witnesses the trust list names for it,
//! and `estafette-relay audit` follows its public log; when its operator
//! wipes its evidence log and it starts a second history under the same
//! name, every witness refuses to cosign, both sides count it, and the
//! auditor reports the rewrite.
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

/// `estafette-relay audit` of `node`'s public log, remembering in `state`:
/// whether it exited 0, and what it printed.
fn audit(fed: &TestFederation, node: &TestNode, state: &std::path::Path) -> (bool, String) {
    let addr = node.config.log_listen.unwrap();
    let out = std::process::Command::new(relay_binary())
        .arg("audit")
        .arg("--root-cert")
        .arg(fed.fed.root_cert_path())
        .arg("--trust-list")
        .arg(fed.fed.trust_list_path())
        .arg("--state")
        .arg(state)
        .arg("--resolve")
        .arg(format!("{}:{}={addr}", node.id, addr.port()))
        .arg(format!("https://{}:{}", node.id, addr.port()))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "the auditor could not audit: {text}"
    );
    (out.status.success(), text)
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
    // An auditor follows the relay's public log: the first checkpoint,
    // then growth it checks with a proof read from the log's tiles.
    let state = fed.tmp.path().join("auditor");
    let (ok, said) = audit(&fed, relay_node, &state);
    assert!(ok, "{said}");
    assert!(said.contains("first checkpoint seen"), "{said}");
    assert!(said.contains("cosigned by 2 of its 2 witnesses"), "{said}");
    submit(&fed, &gateway, 3).await;
    wait_for("the relay's log to grow", Duration::from_secs(60), || {
        metric_of(relay_node, "estafette_relay_log_records") >= 13.0
    });
    let (ok, said) = audit(&fed, relay_node, &state);
    assert!(ok && said.contains("grew from"), "{said}");
    let audited = std::fs::read_dir(&state).unwrap().count();
    assert_eq!(audited, 1, "one remembered checkpoint per log");

    // The operator wipes the relay's evidence log: a second history under
    // the same name starts.
    let audited_records = metric_of(relay_node, "estafette_relay_log_records");
    relay.kill();
    std::fs::remove_file(relay_node.config.data_dir.join("evidence-log.redb")).unwrap();
    let relay = start(relay_node);
    submit(&fed, &gateway, 20).await;
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
    // The auditor reports it, exits 1, and keeps the old head as its
    // evidence. Which promise the new history breaks depends on how many
    // letters the restarted relay has taken yet: a larger tree that does
    // not extend the old (rewritten), another root for the same size
    // (split view), or a smaller tree (shrank).
    let before = std::fs::read_dir(&state)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let remembered = std::fs::read(&before).unwrap();
    let (ok, said) = audit(&fed, relay_node, &state);
    assert!(!ok, "{said}");
    let audited = format!("{audited_records}");
    assert!(
        ["REWRITTEN", "SPLIT VIEW", "SHRANK"]
            .iter()
            .any(|finding| said.contains(finding))
            && said.contains(&audited),
        "{said}"
    );
    assert_eq!(std::fs::read(&before).unwrap(), remembered);
}
