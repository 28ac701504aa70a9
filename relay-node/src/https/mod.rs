//! One HTTPS serving loop for the node's and the gateway's HTTP APIs: TLS,
//! HTTP/1.1 and HTTP/2, and the admission of connections and request
//! bodies, so that no client, authenticated or not, can hold resources
//! for long without making progress.
//!
//! - **Connections.** At most `max_connections` at once and
//!   `max_per_source` from one IP address. A connection that is not
//!   serving a request (handshaking, idle between requests, or sending its
//!   headers) is *idle*; when every slot is taken, a new connection evicts
//!   the connection that has been idle longest, so a flood of silent
//!   connections cannot lock anyone out. An idle connection is closed after
//!   `idle_timeout`; a TLS handshake must end within `handshake_timeout`
//!   and HTTP/1.1 headers arrive within `header_timeout`. An authenticated
//!   client (a client certificate) holds at most `max_per_identity`.
//! - **Bodies.** A body announced larger than `max_body_bytes` is answered
//!   413 before a byte of it is read. Every body must arrive within
//!   `body_timeout`, at `min_body_rate_bytes_per_s` or faster after the
//!   first `body_grace`. Bytes of bodies in progress, until the answer is
//!   made, count against one budget for the whole listener
//!   (`body_budget_bytes`): a request that does not fit waits up to
//!   `body_budget_wait` and is then answered 503, so memory stays bounded.
//! - **Errors** are RFC 9457 problem details (`application/problem+json`)
//!   with the status and a text that say what was wrong, whichever layer
//!   refused.
//! - **Revocation.** When the node's CRL changes, connections whose client
//!   certificate it now revokes are closed.
//!
//! Connections are admitted by `admission`, bodies guarded by `body`; this
//! file is the serving loop.

mod admission;
mod body;

pub use admission::{Admission, HttpsLimits};
use body::serve_request;
pub use body::{LINGER, LINGER_MAX_BYTES};

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderValue, Response, StatusCode, header};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::time::Instant;

use crate::metrics::{HttpsLabel, Metrics};
use crate::throttle::LogThrottle;

/// An RFC 9457 problem answer: `type` is `urn:estafette:problem:<code>`.
pub fn problem(status: StatusCode, code: &str, detail: &str) -> Response<axum::body::Body> {
    let body = serde_json::json!({
        "type": format!("urn:estafette:problem:{code}"),
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    let mut response = Response::new(axum::body::Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}

/// Serves `listener` until the task is dropped. `app_for` gives the routes
/// for a connection from its TLS session, or `None` to close it.
/// `revocations`, when given, closes connections whose client certificate
/// the node's CRL comes to revoke.
#[allow(clippy::too_many_arguments)]
pub async fn serve_tls<F>(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    admission: Arc<Admission>,
    what: &'static str,
    metrics: Arc<Metrics>,
    revocations: Option<(
        Arc<estafette_pki::tls::LiveVerifiers>,
        tokio::sync::watch::Receiver<u64>,
    )>,
    app_for: F,
) where
    F: Fn(&rustls::ServerConnection) -> Option<axum::Router> + Clone + Send + Sync + 'static,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let throttle = Arc::new(LogThrottle::new(Duration::from_secs(10)));
    if let Some(revocations) = revocations {
        tokio::spawn(close_revoked(admission.clone(), what, revocations));
    }
    tokio::spawn(count_connections(admission.clone(), metrics.clone(), what));
    loop {
        let Ok((tcp, peer)) = listener.accept().await else {
            // Out of file descriptors, say: do not spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let (id, close) = match admission.admit(peer.ip(), Instant::now()) {
            Ok(slot) => slot,
            Err(refusal) => {
                metrics
                    .https_refused
                    .get_or_create(&HttpsLabel {
                        api: what.into(),
                        reason: refusal.code().into(),
                    })
                    .inc();
                if let Some(held_back) = throttle.allow(refusal.code()) {
                    tracing::warn!(
                        api = what,
                        reason = refusal.code(),
                        refused_since_last_line = held_back,
                        "connections refused"
                    );
                }
                continue;
            }
        };
        let connection = Connection {
            id,
            close,
            peer,
            what,
            admission: admission.clone(),
            metrics: metrics.clone(),
            throttle: throttle.clone(),
        };
        tokio::spawn(connection.serve(acceptor.clone(), tcp, app_for.clone()));
    }
}

/// Closes the connections whose client certificate the CRL comes to revoke.
async fn close_revoked(
    admission: Arc<Admission>,
    what: &'static str,
    (verifiers, mut changes): (
        Arc<estafette_pki::tls::LiveVerifiers>,
        tokio::sync::watch::Receiver<u64>,
    ),
) {
    while changes.changed().await.is_ok() {
        let closed = admission.close_where(|cert| verifiers.is_revoked(cert));
        if closed > 0 {
            tracing::warn!(
                api = what,
                connections = closed,
                "closed connections of revoked certificates"
            );
        }
    }
}

/// The number admitted, for /metrics, once a second, while the listener lives.
async fn count_connections(admission: Arc<Admission>, metrics: Arc<Metrics>, what: &'static str) {
    let gauge = metrics
        .https_connections
        .get_or_create(&crate::metrics::ApiLabel { api: what.into() })
        .clone();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        gauge.set(admission.open_connections() as i64);
        if Arc::strong_count(&admission) == 1 {
            return;
        }
    }
}

/// One admitted connection, from its TLS handshake to its close.
struct Connection {
    id: u64,
    /// Told when the connection is evicted or revoked.
    close: Arc<tokio::sync::Notify>,
    peer: std::net::SocketAddr,
    what: &'static str,
    admission: Arc<Admission>,
    metrics: Arc<Metrics>,
    throttle: Arc<LogThrottle>,
}

type TlsStream = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;

impl Connection {
    fn count(&self, reason: &str) {
        self.metrics
            .https_refused
            .get_or_create(&HttpsLabel {
                api: self.what.into(),
                reason: reason.into(),
            })
            .inc();
    }

    async fn serve<F>(
        self,
        acceptor: tokio_rustls::TlsAcceptor,
        tcp: tokio::net::TcpStream,
        app_for: F,
    ) where
        F: Fn(&rustls::ServerConnection) -> Option<axum::Router>,
    {
        let _ = tcp.set_nodelay(true);
        if let Some(stream) = self.handshake(acceptor, tcp).await
            && let Some(app) = self.admit_session(&stream, app_for)
        {
            self.serve_http(stream, app).await;
        }
        self.admission.release(self.id);
    }

    /// The TLS handshake, within the limit and unless the connection is evicted.
    async fn handshake(
        &self,
        acceptor: tokio_rustls::TlsAcceptor,
        tcp: tokio::net::TcpStream,
    ) -> Option<TlsStream> {
        let timeout = self.admission.limits.handshake_timeout;
        let handshake = tokio::time::timeout(timeout, acceptor.accept(tcp));
        tokio::select! {
            r = handshake => match r {
                Ok(Ok(s)) => Some(s),
                Ok(Err(e)) => {
                    if let Some(held_back) = self.throttle.allow("handshake") {
                        tracing::info!(api = self.what, peer = %self.peer, error = %e, refused_since_last_line = held_back, "TLS handshake refused");
                    }
                    None
                }
                Err(_) => {
                    self.count("handshake_timeout");
                    None
                }
            },
            _ = self.close.notified() => {
                self.count("evicted");
                None
            }
        }
    }

    /// The client certificate's share of connections, and the routes for
    /// this session (`None`: close).
    fn admit_session<F>(&self, stream: &TlsStream, app_for: F) -> Option<axum::Router>
    where
        F: Fn(&rustls::ServerConnection) -> Option<axum::Router>,
    {
        let connection = stream.get_ref().1;
        if let Some(cert) = connection.peer_certificates().and_then(|c| c.first())
            && let Err(refusal) = self
                .admission
                .authenticated(self.id, cert.clone().into_owned())
        {
            self.count(refusal.code());
            return None;
        }
        let app = app_for(connection);
        if app.is_none() {
            tracing::info!(api = self.what, peer = %self.peer, "connection not allowed; closing");
        }
        app
    }

    /// HTTP/1.1 or HTTP/2 until the client closes, the connection is idle
    /// too long, or it is evicted.
    async fn serve_http(&self, stream: TlsStream, app: axum::Router) {
        let limits = &self.admission.limits;
        let (id, peer) = (self.id, self.peer);
        let service = {
            let admission = self.admission.clone();
            hyper::service::service_fn(move |request| {
                serve_request(request, app.clone(), admission.clone(), id, peer)
            })
        };
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.max_streams_per_connection)
            .keep_alive_interval(limits.idle_timeout);
        let serving = builder.serve_connection(TokioIo::new(stream), service);
        tokio::pin!(serving);
        loop {
            // Busy: look again after a while; idle: close at the deadline.
            let wake = self
                .admission
                .idle_deadline(id)
                .unwrap_or_else(|| Instant::now() + limits.idle_timeout);
            tokio::select! {
                result = serving.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(api = self.what, %peer, error = %e, "connection ended");
                    }
                    return;
                }
                _ = self.close.notified() => {
                    self.count("evicted");
                    return;
                }
                _ = tokio::time::sleep_until(wake) => {
                    if self.admission.idle_deadline(id).is_some_and(|d| d <= Instant::now()) {
                        self.count("idle_timeout");
                        return;
                    }
                }
            }
        }
    }
}
