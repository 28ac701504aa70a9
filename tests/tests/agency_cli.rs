//! `estafette-agency send` is safe to repeat: when the connection breaks
//! after the gateway took the letter but before its answer arrived, `send`
//! sends the same sealed bytes again by itself and the citizen gets the
//! letter once; `resend FILE` sends the kept letter again, and the gateway
//! answers it as a repeat. (Before, a second `send` sealed a second letter
//! and the citizen received the same letter twice.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use estafette_relay::testkit::AGENCY;
use estafette_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The letter's body.
const BODY_BYTES: usize = 16 * 1024;

/// A TCP proxy to `target` that, on its first connection, passes the TLS
/// handshake and the whole request on and then cuts the client off when
/// the answer comes: the gateway has the letter, the client never hears so. Later connections
/// are passed through once the gateway counts that first submission
/// (`admin` /metrics), so the retry meets a gateway that has the letter.
async fn cutting_proxy(target: SocketAddr, admin: SocketAddr) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cuts = Arc::new(AtomicUsize::new(0));
    let counter = cuts.clone();
    tokio::spawn(async move {
        let mut first = true;
        while let Ok((mut client, _)) = listener.accept().await {
            let cut = std::mem::take(&mut first);
            let counter = counter.clone();
            tokio::spawn(async move {
                if !cut {
                    let began = std::time::Instant::now();
                    while !estafette_relay::admin::local_get(admin, "/metrics")
                        .unwrap_or_default()
                        .contains("estafette_gateway_submissions_total{outcome=\"digital\"} 1")
                    {
                        assert!(
                            began.elapsed() < Duration::from_secs(30),
                            "the gateway never counted the first submission"
                        );
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    let Ok(mut server) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    return;
                }
                let Ok(server) = tokio::net::TcpStream::connect(target).await else {
                    return;
                };
                let (mut client_read, client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let (cut_tx, mut cut_rx) = tokio::sync::oneshot::channel::<()>();
                let up = async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        tokio::select! {
                            n = client_read.read(&mut buf) => {
                                let n = n.unwrap_or(0);
                                if n == 0 || server_write.write_all(&buf[..n]).await.is_err() {
                                    return server_write;
                                }
                            }
                            _ = &mut cut_rx => return server_write,
                        }
                    }
                };
                // Everything the gateway sends passes (the TLS handshake, its
                // session tickets) until it has counted the submission: what
                // comes then is its answer, and the client is cut off.
                let down = tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut client_write = Some(client_write);
                    let mut cut_tx = Some(cut_tx);
                    loop {
                        let n = server_read.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        if client_write.is_some() {
                            let counted = tokio::task::spawn_blocking(move || {
                                estafette_relay::admin::local_get(admin, "/metrics")
                                    .unwrap_or_default()
                                    .contains("estafette_gateway_submissions_total{outcome=\"digital\"} 1")
                            })
                            .await
                            .unwrap_or(false);
                            if counted {
                                counter.fetch_add(1, Ordering::SeqCst);
                                client_write = None;
                                if let Some(tx) = cut_tx.take() {
                                    let _ = tx.send(());
                                }
                            }
                        }
                        if let Some(w) = client_write.as_mut()
                            && w.write_all(&buf[..n]).await.is_err()
                        {
                            client_write = None;
                        }
                    }
                });
                // The gateway's side stays open until the gateway is done.
                let server_write = up.await;
                let _ = down.await;
                drop(server_write);
            });
        }
    });
    (addr, cuts)
}

/// Runs `estafette-agency` as the test agency against `gateway`.
async fn agency(
    fed: &ProcessFederation,
    gateway: SocketAddr,
    args: &[&str],
) -> std::process::Output {
    let mut command = Command::new(binary("estafette-agency"));
    command
        .arg("--agency-dir")
        .arg(fed.fed.fed.agency_dir(&AGENCY.parse().unwrap()))
        .arg("--gateway")
        .arg(gateway.to_string())
        .args(["--gateway-name", "gateway.test"])
        .arg("--root-cert")
        .arg(fed.fed.fed.root_cert_path())
        .args(args)
        .current_dir(fed.dir());
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

async fn letters_at_home(fed: &ProcessFederation) -> Vec<String> {
    let client = fed.resident_session().await.unwrap();
    client
        .letters()
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.message_id.to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_letter_sent_again_after_a_cut_connection_arrives_once() {
    let fed = ProcessFederation::new();
    let _gateway = fed.start_gateway();
    let _relay = fed.start_relay("relay.test");
    let _home = fed.start_relay("home.test");
    let (proxy, cuts) = cutting_proxy(fed.https, fed.gateway_admin).await;
    let body = fed.dir().join("letter.txt");
    std::fs::write(&body, "Uw voorlopige aanslag. ".repeat(BODY_BYTES / 20)).unwrap();
    let body = body.to_str().unwrap().to_owned();

    let out = agency(
        &fed,
        proxy,
        &[
            "send",
            "--to",
            RESIDENT,
            "--subject",
            "Voorlopige aanslag",
            "--body-file",
            &body,
        ],
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    println!("send:\n{stdout}{stderr}");
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(cuts.load(Ordering::SeqCst), 1, "the first answer was cut");
    let id = stdout.lines().next().unwrap().trim().to_owned();
    assert!(id.starts_with("msg-"), "the id comes first: {stdout}");
    assert!(stderr.contains("attempt 1 of 6 failed"), "{stderr}");
    assert!(stdout.contains("channel: digital"), "{stdout}");
    assert!(
        stdout.contains("repeated"),
        "the second attempt is a repeat: {stdout}"
    );

    // resend: the same letter, byte for byte, again.
    let kept = fed.dir().join(format!("{id}.cose"));
    let out = agency(&fed, fed.https, &["resend", kept.to_str().unwrap()]).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("resend:\n{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success());
    assert_eq!(stdout.lines().next(), Some(id.as_str()));
    assert!(stdout.contains("repeated"), "{stdout}");

    // The citizen has the letter once.
    let mut letters = Vec::new();
    wait_for(
        "the letter in the inbox",
        Duration::from_secs(60),
        async || {
            letters = letters_at_home(&fed).await;
            letters.contains(&id)
        },
    )
    .await;
    assert_eq!(
        letters.iter().filter(|l| **l == id).count(),
        1,
        "one letter in the inbox: {letters:?}"
    );
    assert_eq!(letters.len(), 1, "{letters:?}");
}

/// The proof bundle of a letter (SPEC.md §16): `estafette-agency evidence
/// --bundle` writes it, `estafette-pki verify` explains it in words, and
/// the independent verifier (pycose, `tests/receipts/verify.py`) checks it
/// with the federation's root key alone; one changed byte fails both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proof_bundle_of_a_letter_verifies_offline_with_our_cli_and_pycose() {
    let fed = ProcessFederation::new();
    let _gateway = fed.start_gateway();
    let _relay = fed.start_relay("relay.test");
    let _home = fed.start_relay("home.test");
    let body = fed.dir().join("letter.txt");
    std::fs::write(&body, "Uw voorlopige aanslag 2027.").unwrap();
    let out = agency(
        &fed,
        fed.https,
        &[
            "send",
            "--to",
            RESIDENT,
            "--subject",
            "Voorlopige aanslag",
            "--body-file",
            body.to_str().unwrap(),
        ],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let id = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap()
        .trim()
        .to_owned();
    // The resident opens it: sent, delivered and opened are all proven.
    let resident = fed.resident_session().await.unwrap();
    let mut envelope = None;
    wait_for(
        "the letter in the inbox",
        Duration::from_secs(60),
        async || {
            envelope = resident
                .letters()
                .await
                .unwrap()
                .into_iter()
                .find(|l| l.message_id.to_string() == id)
                .map(|l| l.envelope_id);
            envelope.is_some()
        },
    )
    .await;
    resident.open(&envelope.unwrap().to_string()).await.unwrap();

    let bundle = fed.dir().join("proof.cbor");
    let trust_list = fed.fed.fed.trust_list_path();
    let out = agency(
        &fed,
        fed.https,
        &[
            "--trust-list",
            trust_list.to_str().unwrap(),
            "evidence",
            &id,
            "--wait-for",
            "ContentHandover",
            "--bundle",
            bundle.to_str().unwrap(),
        ],
    )
    .await;
    assert!(out.status.success(), "{out:?}");

    let verify = |file: &std::path::Path| {
        let pki = Command::new(binary("estafette-pki"))
            .arg("verify")
            .arg("--dir")
            .arg(fed.fed.fed.dir())
            .arg(file)
            .output()
            .unwrap();
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let python = repo.join("target/receipts-venv/bin/python");
        assert!(
            python.exists(),
            "{} is missing: scripts/test makes it (tests/receipts/requirements.txt)",
            python.display()
        );
        let root = fed.fed.fed.root_public_key().unwrap();
        let pycose = Command::new(python)
            .arg(repo.join("tests/receipts/verify.py"))
            .arg("--bundle")
            .arg(file)
            .arg("--root")
            .arg(
                root.as_bytes()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>(),
            )
            .output()
            .unwrap();
        (pki, pycose)
    };
    let (pki, pycose) = verify(&bundle);
    let said = String::from_utf8_lossy(&pki.stdout).into_owned();
    println!("{said}");
    assert!(pki.status.success(), "{said}");
    assert!(
        said.starts_with(&format!("VALID: proof bundle of message {id}")),
        "{said}"
    );
    for step in [
        "sent: the gateway accepted",
        "delivered: the letter was put",
        "opened: the letter was opened",
    ] {
        assert!(said.contains(step), "{step}: {said}");
    }
    assert!(said.contains("in evidence log gateway.test"), "{said}");
    let python_said = String::from_utf8_lossy(&pycose.stdout).into_owned();
    assert!(
        pycose.status.success(),
        "{python_said}{}",
        String::from_utf8_lossy(&pycose.stderr)
    );
    assert!(
        python_said.contains("ContentHandover by home.test"),
        "{python_said}"
    );

    // One byte changed inside the last record: both refuse.
    let mut bytes = std::fs::read(&bundle).unwrap();
    let last = bytes.len() - 200;
    bytes[last] ^= 0x01;
    let tampered = fed.dir().join("tampered.cbor");
    std::fs::write(&tampered, bytes).unwrap();
    let (pki, pycose) = verify(&tampered);
    assert_eq!(pki.status.code(), Some(1), "{pki:?}");
    assert!(String::from_utf8_lossy(&pki.stdout).contains("NOT VALID"));
    assert!(!pycose.status.success(), "{pycose:?}");
}
