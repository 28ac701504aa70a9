//! Real rustls connections over loopback TCP, with certificates from the
//! federation PKI: a server that trusts the federation root and its CRL
//! accepts an agency certificate and reads the OIN from it; it refuses a
//! revoked agency and an agency certificate from another root.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use estafette_pki::{Federation, tls};
use estafette_spec::{NodeId, Oin};
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection, StreamOwned};

const AGENCY: &str = "00000001003214345000";
const REVOKED: &str = "00000003273318220000";
/// Bound on every socket read and write in this test.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

fn server_config(fed: &Federation, gateway: &NodeId) -> Arc<ServerConfig> {
    let root = tls::load_certs(&fed.root_cert_path()).unwrap().remove(0);
    let crl = tls::load_crl(&fed.crl_path()).unwrap();
    let dir = fed.node_dir(gateway);
    let config = ServerConfig::builder_with_provider(tls::crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(tls::client_verifier(&root, vec![crl]).unwrap())
        .with_single_cert(
            tls::load_certs(&dir.join("tls.crt.pem")).unwrap(),
            tls::load_private_key(&dir.join("tls.key.pem")).unwrap(),
        )
        .unwrap();
    Arc::new(config)
}

fn client_config(trusted_root: &Path, agency_dir: &Path) -> Arc<ClientConfig> {
    let root = tls::load_certs(trusted_root).unwrap().remove(0);
    let config = ClientConfig::builder_with_provider(tls::crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(tls::root_store(&root).unwrap())
        .with_client_auth_cert(
            tls::load_certs(&agency_dir.join("tls.crt.pem")).unwrap(),
            tls::load_private_key(&agency_dir.join("tls.key.pem")).unwrap(),
        )
        .unwrap();
    Arc::new(config)
}

/// Serves `connections` TLS connections: answers each authenticated agency
/// with "hello <OIN>"; returns what happened to each.
fn serve(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    connections: usize,
) -> std::thread::JoinHandle<Vec<Result<Oin, String>>> {
    std::thread::spawn(move || {
        let mut outcomes = Vec::new();
        for _ in 0..connections {
            let (socket, _) = listener.accept().unwrap();
            socket.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            socket.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
            let conn = ServerConnection::new(config.clone()).unwrap();
            let mut stream = StreamOwned::new(conn, socket);
            let outcome = (|| {
                while stream.conn.is_handshaking() {
                    stream
                        .conn
                        .complete_io(&mut stream.sock)
                        .map_err(|e| e.to_string())?;
                }
                let cert = stream
                    .conn
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .ok_or("no client certificate")?;
                let oin = tls::agency_oin(cert).map_err(|e| e.to_string())?;
                let mut request = [0u8; 5];
                stream.read_exact(&mut request).map_err(|e| e.to_string())?;
                stream
                    .write_all(format!("hello {oin}").as_bytes())
                    .map_err(|e| e.to_string())?;
                stream.conn.send_close_notify();
                stream
                    .conn
                    .complete_io(&mut stream.sock)
                    .map_err(|e| e.to_string())?;
                Ok(oin)
            })();
            outcomes.push(outcome);
        }
        outcomes
    })
}

/// Connects as the agency in `agency_dir`; returns the server's answer or the error.
fn call(addr: std::net::SocketAddr, config: Arc<ClientConfig>) -> Result<String, String> {
    let socket = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    socket.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    socket.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let conn = ClientConnection::new(config, "gateway.test".try_into().unwrap())
        .map_err(|e| e.to_string())?;
    let mut stream = StreamOwned::new(conn, socket);
    // In TLS 1.3 the server judges the client certificate after the client
    // has finished its side of the handshake: a refusal arrives on the first read.
    stream.write_all(b"hello").map_err(|e| e.to_string())?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| e.to_string())?;
    Ok(answer)
}

#[test]
fn agency_certificates_over_real_tls() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("fed");
    let mut fed = Federation::init(&dir, "TLS test", true).unwrap();
    let gateway: NodeId = "gateway.test".parse().unwrap();
    let agency: Oin = AGENCY.parse().unwrap();
    let revoked: Oin = REVOKED.parse().unwrap();
    fed.issue_gateway(&gateway, "127.0.0.1:8443").unwrap();
    fed.issue_agency(&agency, "Belastingdienst", vec![])
        .unwrap();
    fed.issue_agency(&revoked, "Gemeente Voorbeeld", vec![])
        .unwrap();
    fed.revoke(
        &estafette_pki::RevokeTarget::Member(REVOKED.into()),
        "key compromise",
    )
    .unwrap();

    // Another federation with its own root issues an "agency" with the same OIN.
    let other_dir = tmp.path().join("other");
    let mut other = Federation::init(&other_dir, "Impostor", true).unwrap();
    other.issue_agency(&agency, "Impostor", vec![]).unwrap();

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = serve(listener, server_config(&fed, &gateway), 3);

    let root = fed.root_cert_path();
    let accepted = call(addr, client_config(&root, &fed.agency_dir(&agency)));
    let refused_revoked = call(addr, client_config(&root, &fed.agency_dir(&revoked)));
    let refused_foreign = call(addr, client_config(&root, &other.agency_dir(&agency)));
    let outcomes = server.join().unwrap();

    println!(
        "valid agency:   client {accepted:?}, server {:?}",
        outcomes[0]
    );
    println!(
        "revoked agency: client {refused_revoked:?}, server {:?}",
        outcomes[1]
    );
    println!(
        "other root:     client {refused_foreign:?}, server {:?}",
        outcomes[2]
    );

    assert_eq!(accepted.unwrap(), format!("hello {AGENCY}"));
    assert_eq!(outcomes[0].as_ref().unwrap(), &agency);

    let err = refused_revoked.unwrap_err();
    assert!(err.contains("CertificateRevoked"), "client saw: {err}");
    assert!(
        outcomes[1].as_ref().unwrap_err().contains("Revoked"),
        "{:?}",
        outcomes[1]
    );

    let err = refused_foreign.unwrap_err();
    assert!(
        err.contains("UnknownCA") || err.contains("BadCertificate"),
        "client saw: {err}"
    );
    assert!(
        outcomes[2].as_ref().unwrap_err().contains("UnknownIssuer"),
        "{:?}",
        outcomes[2]
    );
}
