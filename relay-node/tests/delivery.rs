//! Three real relay processes on loopback (A → B → home) and an in-process
//! gateway: envelopes arrive exactly once in the home inbox, each with
//! RelayAcceptance from A and B and ContentConsignment from home, all
//! verifying against the trust list.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;

use common::*;
use estafette_pki::NodeKind;
use estafette_spec::*;

/// How many envelopes (override with ESTAFETTE_TEST_ENVELOPES).
fn envelope_count() -> usize {
    std::env::var("ESTAFETTE_TEST_ENVELOPES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelopes_arrive_exactly_once_with_evidence_from_every_hop() {
    let n = envelope_count();
    let fed = TestFederation::new(
        &[
            ("relay-a.test", NodeKind::Transit),
            ("relay-b.test", NodeKind::Transit),
            ("home.test", NodeKind::Home),
        ],
        &["relay-a.test", "relay-b.test", "home.test"],
    );
    let mut a = start(fed.relay("relay-a.test"));
    let mut b = start(fed.relay("relay-b.test"));
    let mut home = start(fed.relay("home.test"));
    let gateway = fed.start_gateway().await;

    let inboxes: Vec<InboxId> = (0..10).map(|_| random_inbox()).collect();
    let mut sent = HashSet::new();
    let started = std::time::Instant::now();
    // Submit concurrently: each submission waits for its group commit.
    let mut submissions = tokio::task::JoinSet::new();
    for i in 0..n {
        let (envelope, _, header) = fed.envelope(
            "home.test",
            inboxes[i % inboxes.len()],
            &format!("letter {i}"),
        );
        sent.insert(header.message_id);
        let gateway = gateway.clone();
        submissions.spawn(async move { gateway.submit(envelope, None).await.unwrap() });
        if submissions.len() >= 512 {
            submissions.join_next().await.unwrap().unwrap();
        }
    }
    while let Some(done) = submissions.join_next().await {
        done.unwrap();
    }
    let expected = 3 * n;
    wait_until(
        "all evidence at the gateway",
        std::time::Duration::from_secs(600),
        || gateway.store().evidence_all().map(|e| e.len()).unwrap_or(0) >= expected,
    )
    .await;
    let elapsed = started.elapsed();
    println!(
        "{n} envelopes through gateway → A → B → home with all evidence back in {elapsed:?} ({:.0}/s)",
        n as f64 / elapsed.as_secs_f64()
    );

    // SIGTERM: each relay stops cleanly with exit code 0.
    for p in [&mut a, &mut b, &mut home] {
        assert!(
            p.terminate().success(),
            "relay did not exit 0:\n{}",
            p.log()
        );
    }

    // Exactly once in the inbox.
    let store = open_store(fed.relay("home.test"));
    let delivered = store.inbox_all().unwrap();
    let unique: HashSet<MessageId> = delivered.iter().map(|(_, _, m)| *m).collect();
    println!(
        "offered {n}, delivered {}, unique {}, duplicates {}",
        delivered.len(),
        unique.len(),
        delivered.len() - unique.len()
    );
    assert_eq!(delivered.len(), n);
    assert_eq!(unique, sent);
    assert_eq!(
        store.inbox_list(&inboxes[0]).unwrap().len(),
        n / inboxes.len() + usize::from(!n.is_multiple_of(inboxes.len()))
    );

    // Evidence: per message, A's and B's RelayAcceptance and home's
    // ContentConsignment, all verifying, linked into one chain.
    let trust = fed.trust();
    let by_message = evidence_by_message(&trust, gateway.store().evidence_all().unwrap());
    assert_eq!(by_message.len(), n);
    for (message, mut evidence) in by_message {
        assert!(sent.contains(&message));
        let order = |e: &EvidenceEvent| match e {
            EvidenceEvent::RelayAcceptance => 0,
            _ => 1,
        };
        evidence.sort_by_key(|(event, issuer, _)| (order(event), issuer.clone()));
        let summary: Vec<(EvidenceEvent, &str)> =
            evidence.iter().map(|(e, i, _)| (*e, i.as_str())).collect();
        assert_eq!(
            summary,
            vec![
                (EvidenceEvent::RelayAcceptance, "relay-a.test"),
                (EvidenceEvent::RelayAcceptance, "relay-b.test"),
                (EvidenceEvent::ContentConsignment, "home.test"),
            ]
        );
        // A's evidence starts the chain here (no SubmissionAcceptance yet), B
        // links to A, home links to B.
        let chain: Vec<Vec<u8>> = evidence.into_iter().map(|(_, _, b)| b).collect();
        Evidence::verify_chain(&chain, &trust).unwrap();
    }
    gateway.shutdown().await;
}
