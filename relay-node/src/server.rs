//! The QUIC server of a node: accepts connections, authenticates the peer
//! on every request, and hands each request to the node's role (a
//! [`RequestHandler`]). What a role may answer differs (a relay takes
//! offers, the gateway evidence and citizen requests); who may ask does
//! not: a peer whose certificate is not a node's is closed at once, and a
//! peer the trust list does not allow gets an unsigned refusal, so no node
//! ever signs anything for a peer that may not make the request.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use estafette_spec::relay::{self, MAX_FRAME_BYTES, Receiver, Request, Response};
use estafette_spec::{NodeId, ReasonCode};

use crate::core::NodeCore;
use crate::metrics::ReasonLabel;
use crate::transport::peer_node_id;
use crate::trust_state::TrustState;

/// QUIC application error code: the peer's certificate is not a node's.
pub const CLOSE_NOT_A_NODE: u32 = 1;
/// QUIC application error code: the peer was revoked.
pub const CLOSE_REVOKED: u32 = 2;

/// A future the handler returns.
pub type Handled<'a> = Pin<Box<dyn Future<Output = Response> + Send + 'a>>;

/// What a node's role answers to a request from an authenticated peer.
pub trait RequestHandler: Send + Sync + 'static {
    fn handle<'a>(&'a self, peer: &'a NodeId, request: Request) -> Handled<'a>;
}

/// A typed refusal (unsigned).
pub fn refused(reason: ReasonCode, detail: impl Into<String>) -> Response {
    Response::Refused {
        reason,
        detail: detail.into(),
    }
}

/// A refusal for now because a peer's clock is ahead of this node's by
/// more than the tolerated skew (`not_yet_valid`, unsigned, retryable: a
/// signed answer would end something for good over a clock), with one
/// warning line in a while naming what was dated ahead.
pub fn refused_clock_ahead(
    core: &crate::core::NodeCore,
    peer: &estafette_spec::NodeId,
    what: &'static str,
    detail: String,
) -> Response {
    if let Some(held_back) = core.log_throttle.allow(what) {
        tracing::warn!(
            peer = %peer,
            detail = %detail,
            refusals_since_last_line = held_back,
            "{what} dated ahead of this node's clock by more than the tolerated skew; \
             refused for now (check both nodes' clocks)"
        );
    }
    refused(ReasonCode::NotYetValid, detail)
}

/// The server of one node.
pub struct Server {
    core: Arc<NodeCore>,
    handler: Arc<dyn RequestHandler>,
    /// Incoming QUIC connections, by stable id: closed when their peer is revoked.
    incoming: std::sync::Mutex<HashMap<usize, quinn::Connection>>,
    /// Requests in progress hold a read guard; stopping takes the write guard.
    in_flight: tokio::sync::RwLock<()>,
    stopping: AtomicBool,
}

/// Whether the peer of `conn` is revoked by the trust list or CRL in force.
pub fn connection_revoked(trust: &TrustState, conn: &quinn::Connection) -> bool {
    let certificate = conn
        .peer_identity()
        .and_then(|i| {
            i.downcast::<Vec<rustls_pki_types::CertificateDer<'static>>>()
                .ok()
        })
        .and_then(|certs| certs.first().cloned());
    match certificate {
        Some(cert) => trust.is_revoked(&cert),
        None => true,
    }
}

impl Server {
    /// Starts answering on the core's endpoint.
    pub fn start(core: Arc<NodeCore>, handler: Arc<dyn RequestHandler>) -> Arc<Server> {
        let server = Arc::new(Server {
            core,
            handler,
            incoming: std::sync::Mutex::new(HashMap::new()),
            in_flight: tokio::sync::RwLock::new(()),
            stopping: AtomicBool::new(false),
        });
        tokio::spawn(server.clone().accept_loop());
        tokio::spawn(server.clone().close_revoked());
        server
    }

    /// Stops accepting, and waits for the requests in progress to finish.
    pub async fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.core.endpoint.set_server_config(None);
        let _all_done = self.in_flight.write().await;
    }

    fn incoming(&self) -> std::sync::MutexGuard<'_, HashMap<usize, quinn::Connection>> {
        self.incoming.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn count_refused(&self, reason: &str) {
        self.core
            .metrics
            .refused
            .get_or_create(&ReasonLabel {
                reason: reason.into(),
            })
            .inc();
    }

    async fn close_revoked(self: Arc<Self>) {
        let mut changes = self.core.trust.revocations();
        loop {
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return },
                _ = self.core.stopped.notified() => return,
            }
            let mut closed = 0;
            for conn in self.incoming().values() {
                if connection_revoked(&self.core.trust, conn) {
                    conn.close(quinn::VarInt::from_u32(CLOSE_REVOKED), b"revoked");
                    closed += 1;
                }
            }
            if closed > 0 {
                tracing::warn!(
                    connections = closed,
                    "closed the connections of revoked peers"
                );
            }
        }
    }

    async fn accept_loop(self: Arc<Self>) {
        while let Some(incoming) = self.core.endpoint.accept().await {
            if self.stopping.load(Ordering::SeqCst) {
                incoming.refuse();
                continue;
            }
            let max = self.core.config.limits.max_connections as usize;
            if self.core.endpoint.open_connections() > max {
                self.count_refused("too_many_connections");
                incoming.refuse();
                continue;
            }
            let server = self.clone();
            tokio::spawn(async move {
                match incoming.await {
                    Ok(conn) => server.serve_connection(conn).await,
                    Err(e) => tracing::debug!(error = %e, "handshake failed"),
                }
            });
        }
    }

    async fn serve_connection(self: Arc<Self>, conn: quinn::Connection) {
        let Some(peer) = peer_node_id(&conn) else {
            // An agency's certificate, say: it may make no request here, so
            // it gets no stream (and nothing signed).
            self.count_refused("not_a_node");
            conn.close(
                quinn::VarInt::from_u32(CLOSE_NOT_A_NODE),
                b"not a federation node",
            );
            return;
        };
        self.core.metrics.connections.inc();
        let stable_id = conn.stable_id();
        self.incoming().insert(stable_id, conn.clone());
        while let Ok((mut send, mut recv)) = conn.accept_bi().await {
            let server = self.clone();
            let peer = peer.clone();
            tokio::spawn(async move {
                let _guard = server.in_flight.read().await;
                let response = match recv.read_to_end(MAX_FRAME_BYTES).await {
                    Err(quinn::ReadToEndError::TooLong) => refused(
                        ReasonCode::TooLarge,
                        format!("request over {MAX_FRAME_BYTES} bytes"),
                    ),
                    Err(e) => {
                        tracing::debug!(error = %e, "stream failed");
                        return;
                    }
                    Ok(bytes) => server.answer(&peer, &bytes).await,
                };
                if let Response::Refused { reason, .. } = &response {
                    server.count_refused(reason.code());
                }
                // quinn keeps transmitting a finished stream after it is dropped.
                let _ = send.write_all(&relay::encode(&response)).await;
                let _ = send.finish();
            });
        }
        self.incoming().remove(&stable_id);
        self.core.metrics.connections.dec();
    }

    /// Answers one request: decoded, the peer authenticated, then the role.
    pub async fn answer(&self, peer: &NodeId, bytes: &[u8]) -> Response {
        if self.stopping.load(Ordering::SeqCst) {
            return refused(
                ReasonCode::StorageFailure,
                "node is shutting down; try again",
            );
        }
        let request = match relay::decode::<Request>(bytes) {
            Ok(r) => r,
            Err(e) => return refused(ReasonCode::Malformed, e.to_string()),
        };
        let trust = self.core.trust();
        let receiver = Receiver {
            trust: &trust,
            me: &self.core.id,
        };
        // The authentication point: every request, the first one included.
        if let Err(r) = receiver.authorize_peer(peer) {
            if let Some(held_back) = self.core.log_throttle.allow(&format!("not allowed {peer}")) {
                tracing::warn!(peer = %peer, reason = r.reason.code(), held_back, "request from a peer not allowed");
            }
            // Unsigned: a node signs nothing for a peer that may not make
            // the request (no signing oracle, SPEC.md §10.1).
            return refused(r.reason, r.detail);
        }
        self.handler.handle(peer, request).await
    }
}
