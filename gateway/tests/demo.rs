//! The README's first command: `estafette-gateway demo` builds a federation,
//! sends letters from two agencies and verifies every piece of evidence.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn the_demo_runs_and_verifies_every_signature() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_estafette-gateway"))
        .args(["demo", "--dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(180) {
            let _ = child.kill();
            panic!("the demo did not finish within 180 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Every signature verified against the trust list."),
        "{stdout}"
    );
    assert_eq!(
        stdout.matches("chain of 3 linked records verified").count(),
        3,
        "{stdout}"
    );
    assert_eq!(stdout.matches("PaperFallback").count(), 2, "{stdout}");
    assert!(
        stdout.contains("In the home relay's inboxes: 3 letters. In the paper queue: 2 letters."),
        "{stdout}"
    );
    // The demo's output names people by label, never by BSN.
    assert!(!stdout.contains("999999990"), "{stdout}");
}
