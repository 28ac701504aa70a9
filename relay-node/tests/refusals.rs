//! Every refusal of the relay protocol, each against a real relay process:
//! the sender gets a typed answer (a signed RelayRejection naming the reason
//! where an offer was made), and the relay stores nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use estafette_pki::{NodeKind, RevokeTarget, keys};
use estafette_relay::config::Limits;
use estafette_relay::transport::{Peers, TlsMaterial, TransportError, endpoint};
use estafette_spec::relay::{Offer, Request, Response};
use estafette_spec::*;
use rand_core::OsRng;

/// A QUIC client speaking as the node whose files are in `dir`.
fn client_as(fed: &TestFederation, id: &NodeId) -> Peers {
    let dir = fed.fed.node_dir(id);
    let material =
        TlsMaterial::from_dir(&dir, &fed.fed.root_cert_path(), &fed.fed.crl_path()).unwrap();
    let ep = endpoint(
        "127.0.0.1:0".parse().unwrap(),
        &material,
        &Limits::default(),
    )
    .unwrap();
    Peers::new(ep, Duration::from_secs(20))
}

fn offer(envelope: Vec<u8>, hops_taken: u8) -> Request {
    Request::Offer(Offer {
        hops_taken,
        previous_evidence: None,
        envelope,
    })
}

/// The answer must be a RelayRejection signed by `by`, with `reason`,
/// naming the offered header's message (`names` = Some) only when the
/// envelope's signature verified.
fn assert_rejected(
    answer: Result<Response, TransportError>,
    trust: &TrustList,
    by: &str,
    reason: ReasonCode,
    names: Option<&RoutingHeader>,
    case: &str,
) {
    let Ok(Response::Rejected(evidence)) = answer else {
        panic!("{case}: expected a signed rejection, got {answer:?}");
    };
    let v = Evidence::verify(&evidence, trust)
        .unwrap_or_else(|e| panic!("{case}: rejection does not verify: {e}"));
    assert_eq!(v.record.event, EvidenceEvent::RelayRejection, "{case}");
    assert_eq!(v.record.issuer.as_str(), by, "{case}");
    assert_eq!(v.record.reason, Some(reason), "{case}");
    assert_eq!(
        v.record.message_id,
        names.map(|h| h.message_id),
        "{case}: a rejection names only an authenticated header"
    );
    assert_eq!(v.record.envelope_id, names.map(|h| h.envelope_id), "{case}");
    println!(
        "{case}: signed RelayRejection by {by}, reason {}",
        reason.code()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_is_typed_signed_and_stores_nothing() {
    let mut fed = TestFederation::new(
        &[
            ("relay-a.test", NodeKind::Transit),
            ("home.test", NodeKind::Home),
            ("revoked.test", NodeKind::Transit),
        ],
        &["relay-a.test", "home.test"],
    );
    fed.fed
        .revoke(
            &RevokeTarget::Member("revoked.test".into()),
            "key compromise",
        )
        .unwrap();
    // relay-a runs with the trust list of this moment: a node issued later
    // holds a valid certificate but is not in relay-a's trust list.
    let frozen = fed.tmp.path().join("trust-list-at-start.cose");
    std::fs::copy(fed.fed.trust_list_path(), &frozen).unwrap();
    let relay = fed
        .relays
        .iter_mut()
        .find(|n| n.id.as_str() == "relay-a.test")
        .unwrap();
    relay.config.pki.trust_list = frozen;
    std::fs::write(&relay.config_path, toml::to_string(&relay.config).unwrap()).unwrap();
    let stranger: NodeId = "stranger.test".parse().unwrap();
    fed.fed
        .issue_node(&stranger, "127.0.0.1:1", NodeKind::Transit)
        .unwrap();

    let a = fed.relay("relay-a.test");
    let a_id = a.id.clone();
    let a_addr = a.config.listen.to_string();
    let mut a_process = start(a);
    let trust = fed.trust();
    let gateway_id: NodeId = GATEWAY.parse().unwrap();
    let gateway = client_as(&fed, &gateway_id);
    let inbox = random_inbox();
    let mut offered_ids = Vec::new();

    // 1. A peer with a valid certificate that is not in the trust list:
    // a typed refusal, and nothing signed (no signing oracle).
    let (envelope, _, header) = fed.envelope("home.test", inbox, "x");
    offered_ids.push(header.envelope_id);
    let answer = client_as(&fed, &stranger)
        .request(&a_id, &a_addr, &offer(envelope, 0))
        .await;
    assert!(
        matches!(
            answer,
            Ok(Response::Refused {
                reason: ReasonCode::UnknownSigner,
                ..
            })
        ),
        "peer not in the trust list: an unsigned refusal, got {answer:?}"
    );

    // 2. A revoked peer: its certificate is on the CRL; the handshake looks
    // done on its side, and the first request is where it is refused.
    let (envelope, _, header) = fed.envelope("home.test", inbox, "x");
    offered_ids.push(header.envelope_id);
    let answer = client_as(&fed, &"revoked.test".parse().unwrap())
        .request(&a_id, &a_addr, &offer(envelope, 0))
        .await;
    match &answer {
        Err(TransportError::Connect { detail, .. } | TransportError::Stream { detail, .. }) => {
            println!("revoked peer: refused at the first request: {detail}");
            assert!(
                detail.contains("Revoked"),
                "the refusal names the revocation: {detail}"
            );
        }
        other => panic!("revoked peer: expected a TLS refusal, got {other:?}"),
    }

    // 3. A bad gateway signature (last signature byte changed).
    let (mut envelope, _, header) = fed.envelope("home.test", inbox, "x");
    offered_ids.push(header.envelope_id);
    let last = envelope.len() - 1;
    envelope[last] ^= 0x01;
    let answer = gateway.request(&a_id, &a_addr, &offer(envelope, 0)).await;
    assert_rejected(
        answer,
        &trust,
        "relay-a.test",
        ReasonCode::BadSignature,
        None,
        "bad gateway signature",
    );

    // 4. A tampered header (hop limit raised, signature kept).
    let (envelope, _, header) = fed.envelope("home.test", inbox, "x");
    offered_ids.push(header.envelope_id);
    let tampered = {
        use coset::TaggedCborSerializable;
        let mut sign1 = coset::CoseSign1::from_tagged_slice(&envelope).unwrap();
        let mut content: EnvelopeContent =
            estafette_spec::cbor::from_slice(sign1.payload.as_deref().unwrap(), 1 << 20).unwrap();
        content.header.hop_limit = 16;
        sign1.payload = Some(estafette_spec::cbor::to_vec(&content));
        sign1.to_tagged_vec().unwrap()
    };
    let answer = gateway.request(&a_id, &a_addr, &offer(tampered, 0)).await;
    assert_rejected(
        answer,
        &trust,
        "relay-a.test",
        ReasonCode::BadSignature,
        None,
        "tampered header",
    );

    // 5. Too large: one byte over the envelope limit.
    let big = vec![0u8; limits::MAX_ENVELOPE_BYTES + 1];
    let answer = gateway.request(&a_id, &a_addr, &offer(big, 0)).await;
    assert_rejected(
        answer,
        &trust,
        "relay-a.test",
        ReasonCode::TooLarge,
        None,
        "too large",
    );

    // 6. Expired.
    let (expired, expired_header) = {
        let gw_key =
            keys::read_ed25519(&fed.fed.node_dir(&gateway_id).join("signing.key.pem")).unwrap();
        let (_, message, mut header) = fed.envelope("home.test", inbox, "x");
        header.created_at = estafette_pki::now().minus_s(7200);
        header.expires_at = estafette_pki::now().minus_s(3600);
        offered_ids.push(header.envelope_id);
        let home_key = trust.node(&"home.test".parse().unwrap()).unwrap().hpke_key;
        let sealed =
            Envelope::seal(header.clone(), &message, &home_key, &gw_key, &mut OsRng).unwrap();
        (sealed, header)
    };
    let answer = gateway.request(&a_id, &a_addr, &offer(expired, 0)).await;
    assert_rejected(
        answer,
        &trust,
        "relay-a.test",
        ReasonCode::Expired,
        Some(&expired_header),
        "expired",
    );

    // 7. Over the hop limit (the envelope allows 8 hops).
    let (envelope, _, header) = fed.envelope("home.test", inbox, "x");
    offered_ids.push(header.envelope_id);
    let answer = gateway.request(&a_id, &a_addr, &offer(envelope, 8)).await;
    assert_rejected(
        answer,
        &trust,
        "relay-a.test",
        ReasonCode::HopLimitExceeded,
        Some(&header),
        "over the hop limit",
    );

    // 8. Malformed CBOR.
    let answer = gateway
        .request(&a_id, &a_addr, &offer(b"\xd2\x84\xff not cbor".to_vec(), 0))
        .await;
    assert_rejected(
        answer,
        &trust,
        "relay-a.test",
        ReasonCode::Malformed,
        None,
        "malformed CBOR",
    );

    // And a frame that is not even a request: a typed refusal.
    // (Sent raw through the same transport as an evidence delivery to a non-gateway.)
    let answer = gateway
        .request(&a_id, &a_addr, &Request::Evidence(vec![]))
        .await;
    assert!(
        matches!(
            answer,
            Ok(Response::Refused {
                reason: ReasonCode::NotForThisNode,
                ..
            })
        ),
        "{answer:?}"
    );

    // Nothing was stored.
    assert!(a_process.terminate().success());
    let store = open_store(fed.relay("relay-a.test"));
    assert_eq!(store.queue_len(), 0);
    assert_eq!(store.outbox_len(), 0);
    assert!(store.inbox_all().unwrap().is_empty());
    for id in offered_ids {
        assert!(store.dedup_get(&id).unwrap().is_none());
    }
}

/// The audit's signing oracle: a QUIC offer over a connection authenticated
/// with an agency's certificate (not a node's), of a made-up envelope that
/// names a real message, must get no signature at all; nor may a node
/// certificate outside the trust list, nor a revoked agency.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_signature_for_a_peer_that_may_not_offer() {
    let mut fed = TestFederation::new(
        &[
            ("relay-a.test", NodeKind::Transit),
            ("home.test", NodeKind::Home),
        ],
        &["relay-a.test", "home.test"],
    );
    let revoked_agency: Oin = "00000003273318220000".parse().unwrap();
    fed.fed
        .issue_agency(&revoked_agency, "Gemeente Voorbeeld", vec![])
        .unwrap();
    let a = fed.relay("relay-a.test");
    let (a_id, a_addr) = (a.id.clone(), a.config.listen.to_string());
    let _a_process = start(a);
    let trust = fed.trust();

    // A real letter's routing header, in an envelope the agency signs itself.
    let (real, _, header) = fed.envelope("home.test", random_inbox(), "real letter");
    let made_up = {
        use coset::TaggedCborSerializable;
        let mut sign1 = coset::CoseSign1::from_tagged_slice(&real).unwrap();
        sign1.signature = vec![0x55; 64];
        sign1.to_tagged_vec().unwrap()
    };
    let (root_cert, crl) = (fed.fed.root_cert_path(), fed.fed.crl_path());
    let agency_dirs = [
        (
            AGENCY.parse::<Oin>().unwrap(),
            fed.fed.agency_dir(&AGENCY.parse().unwrap()),
        ),
        (revoked_agency.clone(), fed.fed.agency_dir(&revoked_agency)),
    ];
    let agency_peers = |oin: &Oin| {
        let dir = &agency_dirs.iter().find(|(o, _)| o == oin).unwrap().1;
        let material = TlsMaterial::from_dir(dir, &root_cert, &crl).unwrap();
        Peers::new(
            endpoint(
                "127.0.0.1:0".parse().unwrap(),
                &material,
                &Limits::default(),
            )
            .unwrap(),
            Duration::from_secs(20),
        )
    };
    let agency: Oin = AGENCY.parse().unwrap();
    for (case, envelope) in [
        ("made-up envelope", made_up.clone()),
        ("real envelope", real),
    ] {
        let answer = agency_peers(&agency)
            .request(&a_id, &a_addr, &offer(envelope, 0))
            .await;
        println!("agency certificate, {case}: {answer:?}");
        match answer {
            Err(TransportError::Stream { detail, .. }) => assert!(
                detail.contains("not a federation node"),
                "{case}: the connection is closed as not a node: {detail}"
            ),
            other => panic!("{case}: an agency's connection must get nothing, got {other:?}"),
        }
    }

    // A revoked agency: refused at TLS, before any request.
    fed.fed
        .revoke(
            &RevokeTarget::Member(revoked_agency.to_string()),
            "key compromise",
        )
        .unwrap();
    // relay-a takes the new CRL within its reload interval.
    let began = std::time::Instant::now();
    loop {
        let answer = agency_peers(&revoked_agency)
            .request(&a_id, &a_addr, &offer(made_up.clone(), 0))
            .await;
        assert!(
            !matches!(answer, Ok(Response::Rejected(_) | Response::Accepted(_))),
            "nothing signed for a revoked agency: {answer:?}"
        );
        if let Err(TransportError::Stream { detail, .. } | TransportError::Connect { detail, .. }) =
            &answer
            && detail.contains("Revoked")
        {
            println!(
                "revoked agency refused at TLS {} ms after the revocation",
                began.elapsed().as_millis()
            );
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(10),
            "the revoked agency is still let in: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = (trust, header);
}
