//! Revocation takes effect without a restart: after `estafette-pki revoke`
//! of an agency while the gateway runs, the agency's open connection is
//! closed and a new one is refused at TLS within the reload interval, and
//! a letter sealed with its revoked key is refused from the moment the
//! gateway has the new trust list.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use estafette_pki::RevokeTarget;
use estafette_relay::testkit::AGENCY;
use estafette_relay::trust_state::FEDERATION_RELOAD_INTERVAL;
use estafette_tests::*;

const OTHER: &str = "00000003273318220000";

/// What the gateway answers a TLS session of agency `oin`: its alert, or
/// "accepted".
async fn tls_alert(fed: &ProcessFederation, oin: &str) -> String {
    use estafette_pki::tls;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = tls::member_client_config(
        &fed.fed.fed.root_cert_path(),
        &fed.fed.fed.agency_dir(&oin.parse().unwrap()),
        &[],
    )
    .unwrap();
    let tcp = tokio::net::TcpStream::connect(fed.https).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(config);
    let name = rustls_pki_types::ServerName::try_from("gateway.test").unwrap();
    let mut stream = match connector.connect(name, tcp).await {
        Ok(s) => s,
        Err(e) => return e.to_string(),
    };
    // In TLS 1.3 the server judges the client's certificate after the
    // client is done: its verdict comes with the first read.
    let _ = stream
        .write_all(b"GET / HTTP/1.1\r\nHost: gateway.test\r\n\r\n")
        .await;
    let mut buf = [0u8; 256];
    match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
        Ok(Err(e)) => e.to_string(),
        Ok(Ok(_)) => "accepted".into(),
        Err(_) => "no answer".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_agency_is_refused_at_tls_and_at_submission_without_a_restart() {
    let mut fed = ProcessFederation::new();
    fed.fed
        .fed
        .issue_agency(&OTHER.parse().unwrap(), "Gemeente Voorbeeld", vec![])
        .unwrap();
    let _gateway = fed.start_gateway();
    let _relay = fed.start_relay("relay.test");
    let _home = fed.start_relay("home.test");

    // The agency holds a kept-alive connection and sends on it.
    let mut kept = fed.agency_as(OTHER).connect().await.unwrap();
    let (_, letter) = fed.letter(OTHER, RESIDENT, "before the revocation");
    kept.submit(letter).await.unwrap();

    fed.fed
        .fed
        .revoke(&RevokeTarget::Member(OTHER.into()), "key compromise")
        .unwrap();
    let revoked_at = Instant::now();
    let bound = FEDERATION_RELOAD_INTERVAL + Duration::from_secs(2);

    // The kept connection is closed: a letter sealed with the revoked key
    // does not get through it.
    let mut refused_on_kept = None;
    while revoked_at.elapsed() < bound + Duration::from_secs(5) {
        let (_, letter) = fed.letter(OTHER, RESIDENT, "after the revocation");
        match kept.submit(letter).await {
            Ok(_) => {
                assert!(
                    revoked_at.elapsed() < bound,
                    "the revoked agency's kept connection still submits after {:?}",
                    revoked_at.elapsed()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => {
                refused_on_kept = Some((revoked_at.elapsed(), e.to_string()));
                break;
            }
        }
    }
    let (after, error) = refused_on_kept.expect("the kept connection is closed");
    println!(
        "revoked agency's open connection refused {} ms after the revocation: {error}",
        after.as_millis()
    );
    assert!(after < bound, "{after:?}");

    // A new connection is refused at TLS.
    let (_, letter) = fed.letter(OTHER, RESIDENT, "on a new connection");
    let answer = fed.agency_as(OTHER).submit(letter).await;
    let error = answer
        .expect_err("a revoked agency cannot connect")
        .to_string();
    println!("revoked agency's new connection: {error}");
    let alert = tls_alert(&fed, OTHER).await;
    println!("revoked agency's TLS session: {alert}");
    assert!(alert.contains("CertificateRevoked"), "{alert}");

    // Another agency is not affected.
    let (_, letter) = fed.letter(AGENCY, RESIDENT, "another agency");
    fed.agency().submit(letter).await.unwrap();
}
