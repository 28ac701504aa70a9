//! The home node's inbox API (list, count unread, open with ContentHandover
//! evidence), duplicate offers, and the admin endpoint, with nodes running
//! in this process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use estafette_pki::NodeKind;
use estafette_relay::transport::{Peers, TlsMaterial, endpoint};
use estafette_spec::relay::{Offer, Request, Response};
use estafette_spec::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_api_duplicates_and_metrics() {
    let fed = TestFederation::new(&[("home.test", NodeKind::Home)], &["home.test"]);
    let gateway = fed.start_gateway().await;
    let home = estafette_relay::RunningNode::start(fed.relay("home.test").config.clone())
        .await
        .unwrap();
    let inbox = random_inbox();
    let mut sent = Vec::new();
    for i in 0..3 {
        let (envelope, message, header) = fed.envelope("home.test", inbox, &format!("letter {i}"));
        sent.push((header, message));
        gateway.submit(envelope, None).await.unwrap();
    }
    wait_until(
        "three letters in the inbox",
        Duration::from_secs(60),
        || home.store().count_unread(&inbox).unwrap() == 3,
    )
    .await;
    let letters = home.store().inbox_list(&inbox).unwrap();
    assert_eq!(letters.len(), 3);

    // Opening gives the agency's SignedMessage, verifiable end to end, and
    // signs ContentHandover naming the holder.
    let (envelope_id, record) = &letters[0];
    let (_, message) = estafette_relay::home::inbox::open_letter(
        &home.node,
        &inbox,
        envelope_id,
        Actor {
            role: ActorRole::Holder,
            representative: None,
            mandate: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        Some(&message),
        home.store().letter(envelope_id).unwrap().as_ref()
    );
    let trust = fed.trust();
    let verified = SignedMessage::verify(&message, &trust).unwrap();
    assert_eq!(verified.letter.sender.as_str(), AGENCY);
    assert_eq!(home.store().count_unread(&inbox).unwrap(), 2);
    wait_until(
        "ContentHandover at the gateway",
        Duration::from_secs(60),
        || {
            gateway
                .store()
                .evidence_for(&record.message_id)
                .unwrap()
                .iter()
                .any(|e| {
                    Evidence::verify(e, &trust).unwrap().record.event
                        == EvidenceEvent::ContentHandover
                })
        },
    )
    .await;
    let chain = gateway.store().evidence_for(&record.message_id).unwrap();
    let events: Vec<EvidenceEvent> = chain
        .iter()
        .map(|e| Evidence::verify(e, &trust).unwrap().record.event)
        .collect();
    assert!(
        events.contains(&EvidenceEvent::ContentConsignment)
            && events.contains(&EvidenceEvent::ContentHandover)
    );

    // A duplicate offer gets the same evidence again and stores no second copy.
    let dir = fed.fed.node_dir(&fed.gateway.id);
    let material =
        TlsMaterial::from_dir(&dir, &fed.fed.root_cert_path(), &fed.fed.crl_path()).unwrap();
    let client = Peers::new(
        endpoint(
            "127.0.0.1:0".parse().unwrap(),
            &material,
            &Default::default(),
        )
        .unwrap(),
        Duration::from_secs(20),
    );
    let (envelope, _, _) = fed.envelope("home.test", inbox, "offered twice");
    let home_addr = fed.relay("home.test").config.listen.to_string();
    let offer = Request::Offer(Offer {
        hops_taken: 0,
        previous_evidence: None,
        envelope,
    });
    let first = client.request(&home.id, &home_addr, &offer).await.unwrap();
    let second = client.request(&home.id, &home_addr, &offer).await.unwrap();
    let (Response::Accepted(a), Response::Accepted(b)) = (&first, &second) else {
        panic!("expected two acceptances: {first:?} {second:?}");
    };
    assert_eq!(a, b, "the same evidence, byte for byte");
    assert_eq!(home.store().inbox_list(&inbox).unwrap().len(), 4);

    // The admin endpoint: Prometheus text with the counters.
    let admin = fed.relay("home.test").config.admin_listen.unwrap();
    let metrics = estafette_relay::admin::local_get(admin, "/metrics").unwrap();
    assert!(
        metrics.contains("estafette_relay_accepted_total 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("estafette_relay_duplicates_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("estafette_relay_delivered_total 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("estafette_relay_commit_seconds_bucket"),
        "{metrics}"
    );
    let queue = estafette_relay::admin::local_get(admin, "/queue").unwrap();
    assert!(queue.contains("\"total\":0"), "{queue}");

    home.shutdown().await;
    gateway.shutdown().await;
}

/// The test login (a provider key on the node's disk) is for test
/// federations only: a home node of a real federation refuses to start
/// with one, and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_federation_refuses_the_test_login() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fed = estafette_pki::Federation::init(&tmp.path().join("fed"), "real", false).unwrap();
    let listen = estafette_relay::testkit::free_udp();
    fed.issue_gateway(&"gateway.example".parse().unwrap(), "127.0.0.1:1")
        .unwrap();
    let home: NodeId = "home.example".parse().unwrap();
    fed.issue_node(&home, &listen.to_string(), NodeKind::Home)
        .unwrap();
    let idp: NodeId = "idp.example".parse().unwrap();
    fed.issue_identity_provider(&idp, CountryCode::NL, LevelOfAssurance::High)
        .unwrap();
    let mut config = estafette_relay::Config::for_federation_node(&fed, &home, listen, true);
    config.data_dir = tmp.path().join("data");
    config.citizen = Some(estafette_relay::config::CitizenApiConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        public_url: None,
        cert: None,
        key: None,
        test_idp: Some(estafette_relay::config::TestIdpConfig {
            id: idp.clone(),
            key: fed.identity_provider_dir(&idp).join("signing.key.pem"),
        }),
        oidc: vec![],
        wallet: None,
    });
    let refused = estafette_relay::RunningNode::start(config).await;
    let message = refused.err().expect("refused").to_string();
    assert!(message.contains("only in a test federation"), "{message}");
}
