//! The README's walk-through, run as written: a federation built with the
//! command-line tools only, configurations from `init`, the gateway, a
//! transit relay and a home relay as processes, a person who registers and
//! chooses digital mail, a letter delivered and opened. Only the ports are
//! changed (to free ones). If the README and the defaults disagree, this
//! fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use estafette_relay::testkit::{free_tcp, free_udp};
use estafette_tests::binary;

const MARKER: &str = "<!-- walk-through: run by tests/tests/walk_through.rs -->";
/// Longest the walk-through may take.
const WALK_TIMEOUT: Duration = Duration::from_secs(240);

/// The shell block after the marker.
fn walk_through() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let after = readme
        .split(MARKER)
        .nth(1)
        .expect("the README has the walk-through marker");
    let block = after
        .trim_start()
        .strip_prefix("```sh\n")
        .expect("a sh block follows the marker");
    block.split("\n```").next().unwrap().to_owned()
}

/// A port free on UDP and on TCP.
fn free_udp_and_tcp() -> u16 {
    loop {
        let port = free_udp().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The same script on free ports: every `NAME_PORT=n` of its first line.
fn on_free_ports(script: &str) -> String {
    let (ports, rest) = script
        .split_once("\nGATEWAY_NODE_PORT=")
        .map(|(head, tail)| (tail.lines().next().unwrap(), (head, tail)))
        .expect("a line of ports");
    let mut line = format!("GATEWAY_NODE_PORT={ports}");
    for assignment in line.clone().split_whitespace() {
        let (name, _) = assignment.split_once('=').unwrap();
        let port = if name.ends_with("NODE_PORT") || name == "RELAY_PORT" || name == "HOME_PORT" {
            // A node address: QUIC on UDP, and the public log on TCP.
            free_udp_and_tcp()
        } else {
            free_tcp().port()
        };
        line = line.replace(assignment, &format!("{name}={port}"));
    }
    let (head, tail) = rest;
    let tail = tail.split_once('\n').map(|(_, t)| t).unwrap_or("");
    format!("{head}\n{line}\n{tail}")
}

#[test]
fn the_readme_walk_through_works_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let script = on_free_ports(&walk_through());
    std::fs::write(dir.path().join("walk-through.sh"), &script).unwrap();
    let bin_dir = binary("estafette-gateway").parent().unwrap().to_path_buf();
    for tool in ["estafette-pki", "estafette-relay", "estafette-agency"] {
        binary(tool);
    }
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = std::fs::File::create(dir.path().join("output.txt")).unwrap();
    let started = Instant::now();
    let mut child = Command::new("bash")
        .args(["-euo", "pipefail", "walk-through.sh"])
        .current_dir(dir.path())
        .env("PATH", path)
        .stdin(Stdio::null())
        .stdout(output.try_clone().unwrap())
        .stderr(output)
        // Its own process group: whatever it leaves running is stopped below.
        .process_group(0)
        .spawn()
        .unwrap();
    let group = child.id();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > WALK_TIMEOUT {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // `--` first: without it, kill may read the negative group id as
    // options (and as root, `-1` means every process).
    let _ = Command::new("kill")
        .args(["-s", "KILL", "--"])
        .arg(format!("-{group}"))
        .stderr(Stdio::null())
        .status();
    let output = std::fs::read_to_string(dir.path().join("output.txt")).unwrap_or_default();
    let logs: String = ["gateway.log", "relay1.log", "home1.log"]
        .iter()
        .map(|f| {
            format!(
                "--- {f}\n{}",
                std::fs::read_to_string(dir.path().join(f)).unwrap_or_default()
            )
        })
        .collect();
    println!("{output}");
    println!("walk-through took {} ms", started.elapsed().as_millis());
    let status = status
        .unwrap_or_else(|| panic!("the walk-through did not end within {WALK_TIMEOUT:?}\n{logs}"));
    assert!(
        status.success(),
        "the walk-through failed ({status})\n{logs}"
    );
    for expected in [
        "gateway.demo: up",
        "relay1.demo: up",
        "home1.demo: up",
        "ContentConsignment",
        "ContentHandover",
        "opened by: Holder",
        "linked records verified",
        "VALID: proof bundle of message msg-",
        "opened: the letter was opened",
    ] {
        assert!(
            output.contains(expected),
            "{expected} missing from:\n{output}"
        );
    }
    assert_eq!(
        output.matches("where the trust list says it is").count(),
        3,
        "each part answers at its trust-list address:\n{output}"
    );
    assert!(!output.contains("NOT"), "{output}");
    assert_eq!(
        output.matches("first checkpoint seen").count(),
        3,
        "the auditor read each node's log:\n{output}"
    );
    assert!(
        output.contains("gateway.demo: 0 envelope(s) queued"),
        "the gateway's queue command: {output}"
    );
    // Logs redirected to a file carry no terminal colours.
    assert!(
        !logs.contains('\u{1b}'),
        "ANSI escapes in the logs:\n{logs}"
    );
}
