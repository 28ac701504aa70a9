//! QUIC with mutual TLS 1.3 between nodes: the endpoint (server and client
//! on one UDP socket), one connection per peer, one request per stream.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use estafette_pki::tls;
use estafette_spec::NodeId;
use estafette_spec::relay::{self, ALPN, MAX_FRAME_BYTES, Request, Response};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::Mutex;

use crate::config::Limits;

/// Why talking to a peer failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("binding the QUIC socket at {addr}: {detail}")]
    Bind { addr: SocketAddr, detail: String },
    #[error("no async runtime for QUIC")]
    NoRuntime,
    #[error("no address for {0} in the trust list, or it does not resolve")]
    NoAddress(NodeId),
    #[error("connecting to {peer}: {detail}")]
    Connect { peer: NodeId, detail: String },
    #[error("stream to {peer}: {detail}")]
    Stream { peer: NodeId, detail: String },
    #[error("{peer} did not answer within {timeout_ms} ms")]
    Timeout { peer: NodeId, timeout_ms: u64 },
    #[error("{peer} answered with a frame we cannot read: {detail}")]
    BadAnswer { peer: NodeId, detail: String },
}

/// The node's TLS material. The verifiers check peers against the
/// federation root and the CRL as it is when each session starts.
pub struct TlsMaterial {
    pub cert_chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub verifiers: Arc<tls::LiveVerifiers>,
}

impl TlsMaterial {
    /// The material of the member whose `tls.crt.pem` and `tls.key.pem`
    /// are in `dir`, with the federation's root and CRL.
    pub fn from_files(
        cert: &std::path::Path,
        key: &std::path::Path,
        root_cert: &std::path::Path,
        crl: &std::path::Path,
    ) -> Result<TlsMaterial, estafette_pki::PkiError> {
        let root = tls::load_certs(root_cert)?.remove(0);
        Ok(TlsMaterial {
            cert_chain: tls::load_certs(cert)?,
            key: tls::load_private_key(key)?,
            verifiers: tls::LiveVerifiers::new(root, tls::load_crl(crl)?)?,
        })
    }

    /// As [`Self::from_files`] for the files of a member's directory.
    pub fn from_dir(
        dir: &std::path::Path,
        root_cert: &std::path::Path,
        crl: &std::path::Path,
    ) -> Result<TlsMaterial, estafette_pki::PkiError> {
        Self::from_files(
            &dir.join("tls.crt.pem"),
            &dir.join("tls.key.pem"),
            root_cert,
            crl,
        )
    }
}

/// How often an idle connection sends a keep-alive.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(2);
/// A connection that has heard nothing from its peer for this long is
/// dead. With keep-alives every [`KEEP_ALIVE_INTERVAL`], a peer that
/// vanished (power cut, cable) is noticed within this time; a peer that
/// restarted is noticed at the first packet, by its stateless reset.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(8);

/// A secret of the node for `label`, derived from its TLS key, so that it
/// is the same after a restart.
fn derived_secret(key: &PrivateKeyDer<'_>, label: &[u8]) -> ring::hmac::Tag {
    let label = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, label);
    ring::hmac::sign(&label, key.secret_der())
}

/// The endpoint configuration whose keys survive a restart: a node that
/// restarts (after a crash, say) still recognises the connection ids it
/// issued before, and answers their packets with a stateless reset their
/// peers can check (the reset key is the same too), so they reconnect at
/// once instead of waiting for the idle timeout.
fn endpoint_config(key: &PrivateKeyDer<'_>) -> quinn::EndpointConfig {
    let reset = derived_secret(key, b"estafette/1 QUIC stateless reset");
    let mut config = quinn::EndpointConfig::new(Arc::new(ring::hmac::Key::new(
        ring::hmac::HMAC_SHA256,
        reset.as_ref(),
    )));
    let cid = derived_secret(key, b"estafette/1 QUIC connection ids");
    let mut cid_key = [0u8; 8];
    cid_key.copy_from_slice(&cid.as_ref()[..8]);
    let cid_key = u64::from_le_bytes(cid_key);
    config.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    config
}

fn transport_config(limits: &Limits) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(quinn::VarInt::from_u32(limits.max_streams_per_connection));
    t.max_concurrent_uni_streams(quinn::VarInt::from_u32(0));
    let window = limits.max_connection_window_bytes.min(u32::MAX as u64) as u32;
    t.receive_window(quinn::VarInt::from_u32(window));
    t.stream_receive_window(quinn::VarInt::from_u32(
        (MAX_FRAME_BYTES as u32).min(window),
    ));
    t.send_window(limits.max_connection_window_bytes);
    t.keep_alive_interval(Some(KEEP_ALIVE_INTERVAL));
    if let Ok(idle) = quinn::IdleTimeout::try_from(IDLE_TIMEOUT) {
        t.max_idle_timeout(Some(idle));
    }
    Arc::new(t)
}

/// Server and client configuration of a node's endpoint.
pub fn endpoint(
    listen: SocketAddr,
    material: &TlsMaterial,
    limits: &Limits,
) -> Result<quinn::Endpoint, TransportError> {
    let tls_err = |e: &dyn std::fmt::Display| TransportError::Tls(e.to_string());
    let provider = tls::crypto_provider();
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_err(&e))?
        .with_client_cert_verifier(material.verifiers.client_verifier())
        .with_single_cert(material.cert_chain.clone(), material.key.clone_key())
        .map_err(|e| tls_err(&e))?;
    server.alpn_protocols = vec![ALPN.to_vec()];
    server.max_early_data_size = 0;
    let server = QuicServerConfig::try_from(Arc::new(server)).map_err(|e| tls_err(&e))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(server));
    server.transport_config(transport_config(limits));

    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_err(&e))?
        .dangerous()
        .with_custom_certificate_verifier(material.verifiers.server_verifier())
        .with_client_auth_cert(material.cert_chain.clone(), material.key.clone_key())
        .map_err(|e| tls_err(&e))?;
    client.alpn_protocols = vec![ALPN.to_vec()];
    let client = QuicClientConfig::try_from(Arc::new(client)).map_err(|e| tls_err(&e))?;
    let mut client = quinn::ClientConfig::new(Arc::new(client));
    client.transport_config(transport_config(limits));

    let bind_err = |e: std::io::Error| TransportError::Bind {
        addr: listen,
        detail: e.to_string(),
    };
    let socket = std::net::UdpSocket::bind(listen).map_err(bind_err)?;
    let runtime = quinn::default_runtime().ok_or(TransportError::NoRuntime)?;
    let mut endpoint = quinn::Endpoint::new(
        endpoint_config(&material.key),
        Some(server),
        socket,
        runtime,
    )
    .map_err(bind_err)?;
    endpoint.set_default_client_config(client);
    Ok(endpoint)
}

/// The node id of the peer of a connection, from its certificate.
pub fn peer_node_id(conn: &quinn::Connection) -> Option<NodeId> {
    let identity = conn.peer_identity()?;
    let certs = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    tls::node_id(certs.first()?).ok()
}

/// Longest wait for a QUIC handshake with a peer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// After a failed connect, requests to that peer fail at once for this long
/// instead of each waiting for its own handshake to time out.
pub const CONNECT_FAILURE_HOLD: Duration = Duration::from_millis(500);

#[derive(Default)]
struct PeerSlot {
    connection: Option<quinn::Connection>,
    last_failure: Option<(std::time::Instant, TransportError)>,
}

/// A peer at one of its addresses.
type PeerAddress = (NodeId, String);

/// One connection per peer and address (a node may answer at several:
/// the gateway's instances), opened on demand and replaced when closed.
pub struct Peers {
    endpoint: quinn::Endpoint,
    connections: std::sync::Mutex<HashMap<PeerAddress, Arc<Mutex<PeerSlot>>>>,
    timeout: Duration,
}

impl Peers {
    pub fn new(endpoint: quinn::Endpoint, timeout: Duration) -> Peers {
        Peers {
            endpoint,
            connections: std::sync::Mutex::new(HashMap::new()),
            timeout,
        }
    }

    /// The connection to `peer`, and whether it was opened just now.
    async fn connection(
        &self,
        peer: &NodeId,
        address: &str,
    ) -> Result<(quinn::Connection, bool), TransportError> {
        let slot = {
            let mut map = self.connections.lock().unwrap_or_else(|p| p.into_inner());
            map.entry((peer.clone(), address.to_owned()))
                .or_default()
                .clone()
        };
        // Holding the slot while connecting means one connect per peer at a time.
        let mut slot = slot.lock().await;
        if let Some(conn) = slot.connection.as_ref()
            && conn.close_reason().is_none()
        {
            return Ok((conn.clone(), false));
        }
        if let Some((at, error)) = &slot.last_failure
            && at.elapsed() < CONNECT_FAILURE_HOLD
        {
            return Err(error.clone());
        }
        let result = self.connect(peer, address).await;
        match &result {
            Ok(conn) => {
                slot.connection = Some(conn.clone());
                slot.last_failure = None;
            }
            Err(e) => {
                slot.connection = None;
                slot.last_failure = Some((std::time::Instant::now(), e.clone()));
            }
        }
        result.map(|conn| (conn, true))
    }

    async fn connect(
        &self,
        peer: &NodeId,
        address: &str,
    ) -> Result<quinn::Connection, TransportError> {
        let addr = tokio::net::lookup_host(address)
            .await
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| TransportError::NoAddress(peer.clone()))?;
        let connecting =
            self.endpoint
                .connect(addr, peer.as_str())
                .map_err(|e| TransportError::Connect {
                    peer: peer.clone(),
                    detail: e.to_string(),
                })?;
        let limit = CONNECT_TIMEOUT.min(self.timeout);
        tokio::time::timeout(limit, connecting)
            .await
            .map_err(|_| TransportError::Connect {
                peer: peer.clone(),
                detail: format!("no handshake within {} ms", limit.as_millis()),
            })?
            .map_err(|e| TransportError::Connect {
                peer: peer.clone(),
                detail: e.to_string(),
            })
    }

    /// Closes the kept connections for which `condition` holds (their peer
    /// was revoked, say); gives how many.
    pub fn close_where(&self, condition: impl Fn(&quinn::Connection) -> bool) -> usize {
        let slots: Vec<_> = self
            .connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        let mut closed = 0;
        for slot in slots {
            // A slot that is connecting right now gets a session checked
            // against the current CRL anyway.
            let Ok(mut slot) = slot.try_lock() else {
                continue;
            };
            if let Some(conn) = slot.connection.take_if(|c| condition(c)) {
                conn.close(quinn::VarInt::from_u32(2), b"revoked");
                closed += 1;
            }
        }
        closed
    }

    /// Sends one request to the node of `entry`, at each of its addresses
    /// in turn until one answers: the next is tried when the connection
    /// cannot be made (the request never left), or, for a repeatable
    /// request, when it failed in any way. Gives the last failure when none
    /// answers.
    pub async fn request_node(
        &self,
        entry: &estafette_spec::trust::NodeEntry,
        request: &Request,
    ) -> Result<Response, TransportError> {
        let mut last = TransportError::NoAddress(entry.id.clone());
        for address in entry.addresses() {
            match self.request(&entry.id, address, request).await {
                Ok(answer) => return Ok(answer),
                Err(e) => {
                    let unsent = matches!(
                        e,
                        TransportError::Connect { .. } | TransportError::NoAddress(_)
                    );
                    if !unsent && !request.is_repeatable() {
                        return Err(e);
                    }
                    tracing::debug!(peer = %entry.id, %address, error = %e, "trying the node's next address");
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// Sends one request to `peer` (at `address`) and waits for its answer.
    ///
    /// A kept connection can be dead without knowing it yet (the peer
    /// restarted, and its stateless reset arrives only when we send). When
    /// a request fails because its kept connection closed, it is sent once
    /// more on a new connection, if that is safe: the request is
    /// [repeatable](Request::is_repeatable), or the peer reset the
    /// connection (a restarted peer never saw the request).
    pub async fn request(
        &self,
        peer: &NodeId,
        address: &str,
        request: &Request,
    ) -> Result<Response, TransportError> {
        let frame = relay::encode(request);
        let (conn, fresh) = self.connection(peer, address).await?;
        let first = self.exchange(&conn, peer, &frame).await;
        let broken = match (&first, conn.close_reason()) {
            (Err(_), Some(reason)) if !fresh => Some(reason),
            _ => None,
        };
        let Some(reason) = broken else {
            return first;
        };
        if !request.is_repeatable() && !matches!(reason, quinn::ConnectionError::Reset) {
            return first;
        }
        tracing::debug!(peer = %peer, reason = %reason, "kept connection closed; sending again on a new one");
        let (conn, _) = self.connection(peer, address).await?;
        self.exchange(&conn, peer, &frame).await
    }

    /// One request on one stream of `conn`, within the request timeout.
    async fn exchange(
        &self,
        conn: &quinn::Connection,
        peer: &NodeId,
        frame: &[u8],
    ) -> Result<Response, TransportError> {
        // A refused peer sees the refusal as a lost stream: name the reason
        // the connection was closed with (a TLS alert, say) when there is one.
        let stream_err = |e: &dyn std::fmt::Display| TransportError::Stream {
            peer: peer.clone(),
            detail: match conn.close_reason() {
                Some(reason) => format!("{e} ({reason})"),
                None => e.to_string(),
            },
        };
        let exchange = async {
            let (mut send, mut recv) = conn.open_bi().await.map_err(|e| stream_err(&e))?;
            send.write_all(frame).await.map_err(|e| stream_err(&e))?;
            send.finish().map_err(|e| stream_err(&e))?;
            let bytes = recv
                .read_to_end(MAX_FRAME_BYTES)
                .await
                .map_err(|e| stream_err(&e))?;
            relay::decode::<Response>(&bytes).map_err(|e| TransportError::BadAnswer {
                peer: peer.clone(),
                detail: e.to_string(),
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| TransportError::Timeout {
                peer: peer.clone(),
                timeout_ms: self.timeout.as_millis() as u64,
            })?
    }
}
