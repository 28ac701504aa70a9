//! The agency API over real TLS and HTTP: who may connect, who may send as
//! whom, idempotency, and the problem types of refusals.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use estafette_gateway::client::{AgencyClient, ClientError};
use estafette_gateway::config::GatewayConfig;
use estafette_gateway::store::test_postgres::TestStore;
use estafette_gateway::{RunningGateway, registry};
use estafette_pki::{Federation, NodeKind, RevokeTarget, keys, tls};
use estafette_relay::RunningNode;
use estafette_relay::testkit::{TestFederation, random_inbox, wait_until};
use estafette_spec::*;
use hyper::StatusCode;
use rand_core::OsRng;

const A: &str = "00000001003214345000";
const B: &str = "00000003273318220000";
const REVOKED: &str = "00000001823288444000";
const RESIDENT: &str = "bsn:999999990";

fn letter(sender: &str, to: &str, body: &str) -> Letter {
    Letter {
        message_id: MessageId::random(&mut OsRng),
        sender: sender.parse().unwrap(),
        recipient: to.parse().unwrap(),
        created_at: estafette_pki::now(),
        subject: "Test".into(),
        body: body.into(),
        attachments: vec![],
        nature: Nature::Information,
        legal_effect: false,
        expected_action: "None".into(),
        response_deadline: None,
        language: "nl".into(),
        sender_reference: "R".into(),
    }
}

fn seal(fed: &Federation, oin: &str, letter: &Letter) -> Vec<u8> {
    let key =
        keys::read_ed25519(&fed.agency_dir(&oin.parse().unwrap()).join("seal.key.pem")).unwrap();
    SignedMessage::sign(letter, &key).unwrap()
}

struct Setup {
    fed: TestFederation,
    other: Federation,
    gateway: RunningGateway,
    home: Arc<RunningNode>,
    inbox: InboxId,
    /// The gateway's database: kept running as long as the setup.
    _db: TestStore,
}

impl Setup {
    fn client(&self, fed: &Federation, oin: &str) -> AgencyClient {
        AgencyClient::for_agency_dir(
            self.gateway.https_addr,
            "gateway.test",
            &self.fed.fed.root_cert_path(),
            &fed.agency_dir(&oin.parse().unwrap()),
        )
        .unwrap()
    }

    async fn stop(self) {
        self.gateway.shutdown().await;
        self.home.shutdown().await;
    }
}

async fn setup() -> Setup {
    let mut fed = TestFederation::new(&[("home.test", NodeKind::Home)], &["home.test"]);
    fed.fed
        .issue_agency(&B.parse().unwrap(), "Gemeente Voorbeeld", vec![])
        .unwrap();
    fed.fed
        .issue_agency(&REVOKED.parse().unwrap(), "Revoked Agency", vec![])
        .unwrap();
    fed.fed
        .revoke(&RevokeTarget::Member(REVOKED.into()), "key compromise")
        .unwrap();
    let mut other = Federation::init(&fed.tmp.path().join("other"), "Impostor", true).unwrap();
    other
        .issue_agency(&A.parse().unwrap(), "Impostor", vec![])
        .unwrap();
    let home = RunningNode::start(fed.relay("home.test").config.clone())
        .await
        .unwrap();
    let db = TestStore::from_env();
    let mut config = GatewayConfig::new("127.0.0.1:0".parse().unwrap(), fed.gateway.config.clone());
    config.store = db.settings.clone();
    let gateway = RunningGateway::start(config).await.unwrap();
    let inbox = random_inbox();
    let people = serde_json::json!([
        { "recipient": RESIDENT, "home_node": "home.test", "inbox_id": inbox.to_string(), "active": true, "digital_senders": [A], "contact_channels": [{ "kind": "email", "address": "resident@example.nl", "state": "verified" }], "postal_address": { "street_lines": ["Stationsweg 3"], "postal_code": "1234 AB", "city": "Voorbeeld", "country": "NL" } }
    ]);
    registry::import(gateway.gateway.records(), &fed.trust(), &people.to_string())
        .await
        .unwrap();
    Setup {
        fed,
        other,
        gateway,
        home,
        inbox,
        _db: db,
    }
}

fn client_config(
    root: &rustls_pki_types::CertificateDer<'static>,
) -> rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert> {
    rustls::ClientConfig::builder_with_provider(tls::crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(tls::root_store(root).unwrap())
}

/// A TLS connection with `config`; in TLS 1.3 a refusal shows on the first read.
async fn raw_tls(addr: std::net::SocketAddr, config: rustls::ClientConfig) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect("gateway.test".try_into().unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    tls.write_all(b"GET /v1/recipients/bsn:999999990/reachability HTTP/1.1\r\nHost: gateway.test\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer)
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

fn refused<T: std::fmt::Debug>(result: Result<T, ClientError>) -> (StatusCode, String, String) {
    match result {
        Err(ClientError::Refused {
            status,
            problem_type,
            detail,
        }) => (status, problem_type, detail),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_may_connect() {
    let s = setup().await;
    let root = tls::load_certs(&s.fed.fed.root_cert_path())
        .unwrap()
        .remove(0);

    // No client certificate: refused at the handshake.
    let err = raw_tls(
        s.gateway.https_addr,
        client_config(&root).with_no_client_auth(),
    )
    .await
    .unwrap_err();
    println!("no client certificate: {err}");
    assert!(err.contains("CertificateRequired"), "{err}");

    // A certificate from another root, and a revoked agency: the connection
    // is refused. (In TLS 1.3 the client learns it after its handshake; the
    // alert names the reason when it reaches the client before the close.)
    for (fed, oin, alert) in [
        (&s.other, A, "UnknownCA"),
        (&s.fed.fed, REVOKED, "CertificateRevoked"),
    ] {
        let err = s
            .client(fed, oin)
            .reachable(&RESIDENT.parse().unwrap())
            .await
            .unwrap_err();
        println!("{alert}: {err}");
        assert!(
            matches!(err, ClientError::Http(_) | ClientError::Connect(_)),
            "{err}"
        );
        let text = err.to_string();
        assert!(!text.contains("alert") || text.contains(alert), "{text}");
    }

    // A valid agency, over HTTP/1.1 and HTTP/2.
    assert!(
        s.client(&s.fed.fed, A)
            .reachable(&RESIDENT.parse().unwrap())
            .await
            .unwrap()
    );
    let dir = s.fed.fed.agency_dir(&A.parse().unwrap());
    let mut config = client_config(&root)
        .with_client_auth_cert(
            tls::load_certs(&dir.join("tls.crt.pem")).unwrap(),
            tls::load_private_key(&dir.join("tls.key.pem")).unwrap(),
        )
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(s.gateway.https_addr)
        .await
        .unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect("gateway.test".try_into().unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let request = hyper::Request::get(format!(
        "https://gateway.test/v1/recipients/{RESIDENT}/reachability"
    ))
    .body(http_body_util::Empty::<hyper::body::Bytes>::new())
    .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), hyper::Version::HTTP_2);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_may_send_as_whom_and_idempotency() {
    let s = setup().await;
    let fed = &s.fed.fed;
    let a = s.client(fed, A);
    let b = s.client(fed, B);
    let trust = s.fed.trust();

    // Agency A's certificate carrying agency B's signed message: 403.
    let from_b = letter(B, RESIDENT, "from B");
    let (status, kind, detail) = refused(a.submit(seal(fed, B, &from_b)).await);
    println!("A sends B's letter: {status} {kind}: {detail}");
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(kind, "urn:estafette:problem:sender-mismatch");

    // A letter naming A as sender but sealed with B's key: 403.
    let forged = letter(A, RESIDENT, "forged");
    let (status, kind, _) = refused(a.submit(seal(fed, B, &forged)).await);
    assert_eq!(
        (status, kind.as_str()),
        (
            StatusCode::FORBIDDEN,
            "urn:estafette:problem:untrusted-signer"
        )
    );

    // A tampered message: 400.
    let mut tampered = seal(fed, A, &letter(A, RESIDENT, "original text"));
    let at = tampered.windows(8).position(|w| w == b"original").unwrap();
    tampered[at] = b'O';
    let (status, kind, _) = refused(a.submit(tampered).await);
    assert_eq!(
        (status, kind.as_str()),
        (
            StatusCode::BAD_REQUEST,
            "urn:estafette:problem:bad-signature"
        )
    );

    // Garbage, and the wrong media type.
    let (status, kind, _) = refused(a.submit(b"not cbor at all".to_vec()).await);
    assert_eq!(
        (status, kind.as_str()),
        (
            StatusCode::BAD_REQUEST,
            "urn:estafette:problem:malformed-message"
        )
    );
    let answer = a
        .request(
            hyper::Method::POST,
            "/v1/messages",
            Some("text/plain"),
            "application/json",
            b"x".to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(answer.content_type, "application/problem+json");

    // A valid letter: 202 with SubmissionAcceptance; the same bytes again get
    // the same answer and no second delivery; the same id with other bytes: 409.
    let good = letter(A, RESIDENT, "hello");
    let bytes = seal(fed, A, &good);
    let first = a.submit(bytes.clone()).await.unwrap();
    let v = Evidence::verify(&first, &trust).unwrap();
    assert_eq!(v.record.event, EvidenceEvent::SubmissionAcceptance);
    assert_eq!(v.record.message_id, Some(good.message_id));
    let second = a.submit(bytes.clone()).await.unwrap();
    assert_eq!(first, second, "a replay gets the same evidence");
    let summary = a.submit_summary(bytes.clone()).await.unwrap();
    assert!(summary.repeated);
    assert_eq!(summary.channel, "digital");
    let mut changed = good.clone();
    changed.body = "other text".into();
    let (status, kind, _) = refused(a.submit(seal(fed, A, &changed)).await);
    assert_eq!(
        (status, kind.as_str()),
        (
            StatusCode::CONFLICT,
            "urn:estafette:problem:message-id-conflict"
        )
    );

    // Delivered exactly once, with the whole chain.
    wait_until("delivery", Duration::from_secs(60), || {
        s.home.store().inbox_list(&s.inbox).unwrap().len() == 1
    })
    .await;
    wait_until("consignment evidence", Duration::from_secs(60), || {
        s.gateway
            .gateway
            .records()
            .read()
            .unwrap()
            .evidence_for(&good.message_id)
            .unwrap()
            .len()
            >= 2
    })
    .await;
    let chain = a.evidence(&good.message_id).await.unwrap();
    let events: Vec<EvidenceEvent> = chain
        .iter()
        .map(|e| Evidence::verify(e, &trust).unwrap().record.event)
        .collect();
    assert_eq!(
        events,
        vec![
            EvidenceEvent::SubmissionAcceptance,
            EvidenceEvent::ContentConsignment
        ]
    );
    Evidence::verify_chain(&chain, &trust).unwrap();
    assert_eq!(
        s.home.store().inbox_list(&s.inbox).unwrap().len(),
        1,
        "no second delivery"
    );

    // B may not read A's evidence: it looks like a missing message.
    let (status, kind, _) = refused(b.evidence(&good.message_id).await);
    assert_eq!(
        (status, kind.as_str()),
        (StatusCode::NOT_FOUND, "urn:estafette:problem:not-found")
    );

    // Reachability says yes or no, and nothing more.
    assert!(a.reachable(&RESIDENT.parse().unwrap()).await.unwrap());
    assert!(!b.reachable(&RESIDENT.parse().unwrap()).await.unwrap());
    assert!(
        !a.reachable(&"bsn:123456782".parse().unwrap())
            .await
            .unwrap()
    );
    let answer = a
        .request(
            hyper::Method::GET,
            "/v1/recipients/bsn:123456789/reachability",
            None,
            "application/json",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&answer.body).contains("eleven-test"));

    // A letter from B (no consent) goes to paper, with evidence saying why.
    let paper = b
        .submit_summary(seal(fed, B, &letter(B, RESIDENT, "on paper")))
        .await
        .unwrap();
    assert_eq!(
        (
            paper.channel.as_str(),
            paper.reason.as_deref(),
            paper.failure.as_deref()
        ),
        ("paper", Some("no_consent"), None)
    );
    let chain = b
        .evidence(&paper.message_id.parse().unwrap())
        .await
        .unwrap();
    let last = Evidence::verify(chain.last().unwrap(), &trust)
        .unwrap()
        .record;
    assert_eq!(
        (last.event, last.reason),
        (EvidenceEvent::PaperFallback, Some(ReasonCode::NoConsent))
    );
    assert_eq!(s.gateway.gateway.paper_queue().unwrap().len(), 1);
    s.stop().await;
}
