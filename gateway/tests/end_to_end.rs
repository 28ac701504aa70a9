//! End to end through real processes: the agency CLI → the gateway process →
//! a transit relay process → a home relay process. The agency fetches
//! SubmissionAcceptance, RelayAcceptance and ContentConsignment, all
//! verifying; afterwards the transit relay's files and logs hold neither the
//! recipient's BSN nor any part of the letter.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use estafette_gateway::config::GatewayConfig;
use estafette_gateway::store::test_postgres::TestStore;
use estafette_pki::NodeKind;
use estafette_relay::testkit::{AGENCY, RelayProcess, TestFederation, free_tcp, wait_for};

const BSN: &str = "999999990";
const SUBJECT: &str = "Voorlopige aanslag zeldzaamwoord";
const BODY: &str = "Geachte mevrouw, uw aanslag bedraagt precies 4711 euro. Kenmerk geheimtekst.";

fn bin(name: &str) -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_estafette-gateway")).with_file_name(name)
}

/// The relay binary of this build; built here when this package is tested alone.
fn relay_binary() -> PathBuf {
    let path = bin("estafette-relay");
    if !path.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "estafette-relay", "--bin", "estafette-relay"])
            .status()
            .unwrap();
        assert!(status.success(), "building estafette-relay failed");
    }
    path
}

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn agency(fed: &TestFederation, https: std::net::SocketAddr, args: &[&str]) -> Output {
    Command::new(bin("estafette-agency"))
        .arg("--agency-dir")
        .arg(fed.fed.agency_dir(&AGENCY.parse().unwrap()))
        .args([
            "--gateway",
            &https.to_string(),
            "--gateway-name",
            "gateway.test",
        ])
        .arg("--root-cert")
        .arg(fed.fed.root_cert_path())
        .arg("--trust-list")
        .arg(fed.fed.trust_list_path())
        .args(args)
        // `send` keeps the sealed letter in the working directory: the
        // test's temp dir, never the source tree.
        .current_dir(fed.tmp.path())
        .output()
        .unwrap()
}

/// Every file under `dir`, read whole.
fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(all_bytes(&path));
        } else {
            out.extend(std::fs::read(&path).unwrap());
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn a_letter_through_real_processes_with_verified_evidence_and_nothing_leaked_in_transit() {
    let relay_bin = relay_binary();
    let fed = TestFederation::new(
        &[
            ("relay-a.test", NodeKind::Transit),
            ("home.test", NodeKind::Home),
        ],
        &["relay-a.test", "home.test"],
    );
    let https = free_tcp();
    let mut config = GatewayConfig::new(https, fed.gateway.config.clone());
    let db = TestStore::from_env();
    config.store = db.settings.clone();
    let config_path = fed.tmp.path().join("gateway.toml");
    std::fs::write(&config_path, toml::to_string(&config).unwrap()).unwrap();

    // The registry, imported with the gateway's own command.
    let people = fed.tmp.path().join("people.json");
    std::fs::write(
        &people,
        serde_json::json!([{ "recipient": format!("bsn:{BSN}"), "home_node": "home.test", "active": true, "digital_senders": [AGENCY], "contact_channels": [{ "kind": "email", "address": "resident@example.nl", "state": "verified" }] }]).to_string(),
    )
    .unwrap();
    let out = Command::new(bin("estafette-gateway"))
        .args(["registry", "import", "--config"])
        .arg(&config_path)
        .arg("--file")
        .arg(&people)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut transit = RelayProcess::start(&relay_bin, fed.relay("relay-a.test"));
    let mut home = RelayProcess::start(&relay_bin, fed.relay("home.test"));
    let gateway_log = fed.tmp.path().join("gateway.log");
    let _gateway = Process(
        Command::new(bin("estafette-gateway"))
            .args(["run", "--config"])
            .arg(&config_path)
            .env("RUST_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&gateway_log).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for("the gateway's agency API", Duration::from_secs(60), || {
        TcpStream::connect(https).is_ok()
    });

    // Send with the agency CLI.
    let body_file = fed.tmp.path().join("letter.txt");
    std::fs::write(&body_file, BODY).unwrap();
    let out = agency(
        &fed,
        https,
        &[
            "send",
            "--to",
            &format!("bsn:{BSN}"),
            "--subject",
            SUBJECT,
            "--body-file",
            body_file.to_str().unwrap(),
            "--nature",
            "decision",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let message_id = stdout.lines().next().unwrap().to_owned();
    assert!(stdout.contains("channel: digital"), "{stdout}");

    // Fetch the evidence with the CLI until the home node's consignment is there.
    let started = Instant::now();
    let timeline = loop {
        let out = agency(&fed, https, &["evidence", &message_id]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains("ContentConsignment") {
            assert!(out.status.success(), "{text}");
            break text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no ContentConsignment: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    println!("{timeline}");
    for (event, by) in [
        ("SubmissionAcceptance", "gateway.test"),
        ("RelayAcceptance", "relay-a.test"),
        ("ContentConsignment", "home.test"),
    ] {
        assert!(
            timeline
                .lines()
                .any(|l| l.contains(event) && l.contains(by) && l.contains("receipt ok (record ")),
            "{event} by {by} missing:\n{timeline}"
        );
    }
    assert!(
        timeline.contains("chain of 3 linked records verified"),
        "{timeline}"
    );

    // Privacy: the transit relay's files and log hold no BSN and no letter text.
    assert!(transit.terminate().success());
    assert!(home.terminate().success());
    let mut transit_bytes = all_bytes(&fed.relay("relay-a.test").config.data_dir);
    transit_bytes.extend(transit.log().into_bytes());
    assert!(
        transit_bytes.len() > 1000,
        "the transit relay stored something"
    );
    for needle in [
        BSN,
        "zeldzaamwoord",
        "Voorlopige",
        "4711",
        "geheimtekst",
        "Geachte",
    ] {
        assert!(
            !contains(&transit_bytes, needle),
            "transit relay data or log contains {needle:?}"
        );
    }
    // The gateway's log at debug level holds no BSN or content either.
    let log = std::fs::read(&gateway_log).unwrap();
    for needle in [BSN, "zeldzaamwoord", "geheimtekst"] {
        assert!(!contains(&log, needle), "gateway log contains {needle:?}");
    }
    println!(
        "privacy: {} bytes of transit data and log searched; no BSN, no subject, no body",
        transit_bytes.len()
    );
}
