//! Every HTTP error of the agency API is an RFC 9457 problem with the right
//! status and a truthful text, over HTTP/1.1 and HTTP/2 alike: a small body
//! with too many CBOR items is not "too large", a 20 MiB body is a JSON
//! 413, and over HTTP/2 an oversize body gets its 413 instead of a stream
//! reset.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use estafette_pki::tls;
use estafette_relay::testkit::AGENCY;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use rustls_pki_types::ServerName;

enum Version {
    Http1,
    Http2,
}

/// POSTs `body` to /v1/messages as the test agency; status, content type, body.
async fn post(w: &World, version: Version, body: Vec<u8>) -> (u16, String, String) {
    let alpn: &[u8] = match version {
        Version::Http1 => b"http/1.1",
        Version::Http2 => b"h2",
    };
    let config = tls::member_client_config(
        &w.fed.fed.root_cert_path(),
        &w.fed.fed.agency_dir(&AGENCY.parse().unwrap()),
        &[alpn],
    )
    .unwrap();
    let tcp = tokio::net::TcpStream::connect(w.gateway.https_addr)
        .await
        .unwrap();
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("gateway.test").unwrap(), tcp)
        .await
        .unwrap();
    let io = hyper_util::rt::TokioIo::new(stream);
    let request = hyper::Request::post("https://gateway.test/v1/messages")
        .header("content-type", "application/cose")
        .header("accept", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let response = match version {
        Version::Http1 => {
            let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(connection);
            sender.send_request(request).await
        }
        Version::Http2 => {
            let (mut sender, connection) =
                hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                    .await
                    .unwrap();
            tokio::spawn(connection);
            sender.send_request(request).await
        }
    }
    .expect("an answer, not a reset");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        content_type,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_errors_are_problems_with_truthful_texts() {
    let w = World::start().await;

    // 25 bytes announcing an array of 100,001 items.
    let mut many = vec![0xd2, 0x9a, 0x00, 0x01, 0x86, 0xa1];
    many.resize(25, 0);
    let (status, content_type, body) = post(&w, Version::Http1, many).await;
    println!("25 bytes, too many CBOR items: {status} {body}");
    assert_eq!(status, 400);
    assert_eq!(content_type, "application/problem+json");
    assert!(!body.contains("the limit is 16777216"), "{body}");
    assert!(body.contains("CBOR"), "names what is wrong: {body}");

    // 20 MiB: over the limit, said as a problem, over both versions.
    let big = vec![0u8; 20 * 1024 * 1024];
    for version in [Version::Http1, Version::Http2] {
        let (status, content_type, body) = post(&w, version, big.clone()).await;
        println!("20 MiB body: {status} {content_type} {body}");
        assert_eq!(status, 413);
        assert_eq!(content_type, "application/problem+json");
        assert!(body.contains("16777216"), "{body}");
    }
    w.stop().await;
}
