//! The audit's blocker: a gateway whose node listens elsewhere than the
//! trust list says still sends letters out, but nothing reaches it. Now it
//! says so at start (an error in its log), in `/metrics`, and in
//! `estafette-gateway status` (which exits 1); one that listens where the
//! trust list says is reported reachable.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use estafette_gateway::config::GatewayConfig;
use estafette_relay::testkit::free_udp;
use estafette_tests::*;

fn status(fed: &ProcessFederation) -> (bool, String) {
    let out = Command::new(binary("estafette-gateway"))
        .args(["status", "--wait", "30", "--config"])
        .arg(&fed.gateway_config)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn a_gateway_not_at_its_trust_list_address_says_so() {
    let fed = ProcessFederation::new();
    {
        let _gateway = fed.start_gateway();
        let (ok, text) = status(&fed);
        println!("{text}");
        assert!(ok, "{text}");
        assert!(text.contains("reachable at"), "{text}");
    }
    // The node listens on another port than the trust list gives.
    let mut config: GatewayConfig =
        toml::from_str(&std::fs::read_to_string(&fed.gateway_config).unwrap()).unwrap();
    config.node.listen = free_udp();
    std::fs::write(&fed.gateway_config, toml::to_string(&config).unwrap()).unwrap();
    let gateway = fed.start_gateway();
    let (ok, text) = status(&fed);
    println!("{text}");
    assert!(!ok, "status exits 1: {text}");
    assert!(text.contains("NOT reachable at"), "{text}");
    let metrics = estafette_relay::admin::local_get(fed.gateway_admin, "/metrics").unwrap();
    assert!(
        metrics.contains("estafette_relay_reachable_at_trust_list_address 0"),
        "{metrics}"
    );
    let log = gateway.log_text();
    assert!(log.contains("peers cannot reach this node"), "{log}");
}
