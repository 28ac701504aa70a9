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
    // Anna's own steps, each through the citizen API.
    for step in [
        "registered: inbox",
        "the verification e-mail arrived",
        "address verified",
        "activated her inbox",
        "chose digital mail",
        "logs in through the German eID node eid.de.demo (no BSN), registers with his address in Berlin",
        "Bestätigen Sie Ihre E-Mail-Adresse",
    ] {
        assert!(stdout.contains(step), "{step}: {stdout}");
    }
    assert_eq!(
        stdout.matches("linked records verified").count(),
        6,
        "five letters and the unread one again: {stdout}"
    );
    assert!(stdout.contains("reason: inbox_inactive"), "{stdout}");
    assert!(stdout.contains("reason: no_inbox"), "{stdout}");
    // One letter went on paper because it was not read, after a reminder.
    assert!(stdout.contains("reason: unread_too_long"), "{stdout}");
    assert!(
        stdout.contains("The monitor sent 1 reminder(s) and put 1 letter(s) on paper"),
        "{stdout}"
    );
    assert_eq!(stdout.matches(".pdf  1 page(s)").count(), 3, "{stdout}");
    assert!(
        stdout.contains("In the home relay's inboxes: 13 letters. Paper letters: 3."),
        "{stdout}"
    );
    // A financial administrator with ten clients; one opening, in that
    // client's access log.
    assert!(
        stdout.contains("attestations of financial administration for 10 clients"),
        "{stdout}"
    );
    assert!(
        stdout.contains("10 notifications go to the administrator"),
        "{stdout}"
    );
    let log_lines = stdout
        .lines()
        .filter(|l| l.contains("B. Bakker (KvK 12345678 Bewindvoering De Brug) opened msg-"))
        .count();
    assert_eq!(log_lines, 1, "{stdout}");
    // The demo's output names people by label, never by BSN.
    assert!(!stdout.contains("999999990"), "{stdout}");
}
