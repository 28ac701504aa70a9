//! The test harness: `estafette_relay::testkit`, with the relay binary of
//! this build.
#![allow(dead_code)]

use std::path::Path;

pub use estafette_relay::testkit::*;

pub fn relay_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_estafette-relay"))
}

pub fn start(node: &TestNode) -> RelayProcess {
    RelayProcess::start(relay_binary(), node)
}

pub fn queue(node: &TestNode) -> String {
    queue_report(relay_binary(), node)
}

/// The `queue --json` report of a node.
pub fn queue_json(node: &TestNode) -> String {
    let out = std::process::Command::new(relay_binary())
        .args(["queue", "--json", "--config"])
        .arg(&node.config_path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}
