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

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls_pki_types::CertificateDer;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::metrics::{HttpsLabel, Metrics};
use crate::throttle::LogThrottle;

/// How one HTTPS listener admits connections and bodies.
#[derive(Debug, Clone)]
pub struct HttpsLimits {
    /// Most connections at once.
    pub max_connections: usize,
    /// Most connections from one IP address.
    pub max_per_source: usize,
    /// New connections one IP address may open per second, after a burst
    /// of `max_per_source`: a client that reconnects as fast as it can
    /// (to make the server do TLS handshakes) is refused before TLS.
    pub new_per_source_per_s: u32,
    /// Most connections of one client certificate.
    pub max_per_identity: usize,
    /// Longest TLS handshake.
    pub handshake_timeout: Duration,
    /// Longest wait for a request's headers (HTTP/1.1).
    pub header_timeout: Duration,
    /// A connection without a request in progress is closed after this.
    pub idle_timeout: Duration,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Longest time to receive one body.
    pub body_timeout: Duration,
    /// Slowest body accepted, after `body_grace`.
    pub min_body_rate_bytes_per_s: u64,
    pub body_grace: Duration,
    /// Bytes of request bodies in progress at once, on this listener.
    pub body_budget_bytes: usize,
    /// Longest wait for room in the budget before answering 503.
    pub body_budget_wait: Duration,
    /// Most concurrent HTTP/2 streams per connection.
    pub max_streams_per_connection: u32,
}

impl HttpsLimits {
    /// The agency API: few clients, large letters, client certificates.
    pub fn agency() -> HttpsLimits {
        HttpsLimits {
            max_connections: 1_024,
            max_per_source: 256,
            new_per_source_per_s: 32,
            max_per_identity: 256,
            handshake_timeout: Duration::from_secs(5),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            max_body_bytes: estafette_spec::limits::MAX_MESSAGE_BYTES,
            body_timeout: Duration::from_secs(180),
            min_body_rate_bytes_per_s: 128 * 1024,
            body_grace: Duration::from_secs(10),
            body_budget_bytes: 64 * 1024 * 1024,
            body_budget_wait: Duration::from_secs(2),
            max_streams_per_connection: 64,
        }
    }

    /// The citizen API and web inbox: many people, small bodies, no
    /// client certificates (and many people behind one address).
    pub fn citizen() -> HttpsLimits {
        HttpsLimits {
            max_connections: 10_000,
            max_per_source: 256,
            new_per_source_per_s: 64,
            max_per_identity: usize::MAX,
            handshake_timeout: Duration::from_secs(5),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            max_body_bytes: 64 * 1024,
            body_timeout: Duration::from_secs(30),
            min_body_rate_bytes_per_s: 1024,
            body_grace: Duration::from_secs(5),
            body_budget_bytes: 64 * 1024 * 1024,
            body_budget_wait: Duration::from_secs(2),
            max_streams_per_connection: 64,
        }
    }
}

/// Who owns one admission slot.
struct Entry {
    source: IpAddr,
    /// Requests in progress; 0: idle.
    busy: u32,
    idle_since: Instant,
    close: Arc<Notify>,
    certificate: Option<CertificateDer<'static>>,
    identity: Option<Vec<u8>>,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    entries: HashMap<u64, Entry>,
    /// Idle entries, longest idle first.
    idle: BTreeSet<(Instant, u64)>,
    per_source: HashMap<IpAddr, usize>,
    per_identity: HashMap<Vec<u8>, usize>,
    /// Token buckets of new connections per source: (tokens, last refill).
    arrivals: HashMap<IpAddr, (f64, Instant)>,
}

/// Most sources whose arrival rate is remembered; full buckets are
/// forgotten first (they hold no information).
const MAX_RATE_SOURCES: usize = 65_536;

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    PerSource,
    RateFromSource,
    Full,
    PerIdentity,
}

impl Refusal {
    fn code(self) -> &'static str {
        match self {
            Refusal::PerSource => "too_many_from_source",
            Refusal::RateFromSource => "too_fast_from_source",
            Refusal::Full => "too_many_connections",
            Refusal::PerIdentity => "too_many_for_identity",
        }
    }
}

/// The admission table of one listener.
pub struct Admission {
    limits: HttpsLimits,
    table: Mutex<Table>,
    budget: Arc<Semaphore>,
}

impl Admission {
    pub fn new(limits: HttpsLimits) -> Arc<Admission> {
        // A body at the limit must always fit in an empty budget.
        let budget = Arc::new(Semaphore::new(
            limits.body_budget_bytes.max(limits.max_body_bytes),
        ));
        Arc::new(Admission {
            limits,
            table: Mutex::new(Table::default()),
            budget,
        })
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Connections admitted now.
    pub fn open_connections(&self) -> usize {
        self.table().entries.len()
    }

    /// A slot for a new connection from `source`, evicting the longest
    /// idle connection when every slot is taken.
    fn admit(&self, source: IpAddr, now: Instant) -> Result<(u64, Arc<Notify>), Refusal> {
        let mut t = self.table();
        if t.per_source.get(&source).copied().unwrap_or(0) >= self.limits.max_per_source {
            return Err(Refusal::PerSource);
        }
        let burst = self.limits.max_per_source as f64;
        let rate = f64::from(self.limits.new_per_source_per_s);
        if t.arrivals.len() >= MAX_RATE_SOURCES && !t.arrivals.contains_key(&source) {
            t.arrivals.retain(|_, (tokens, last)| {
                *tokens + now.duration_since(*last).as_secs_f64() * rate < burst
            });
        }
        let (tokens, last) = t.arrivals.entry(source).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(burst);
        *last = now;
        if *tokens < 1.0 {
            return Err(Refusal::RateFromSource);
        }
        *tokens -= 1.0;
        if t.entries.len() >= self.limits.max_connections {
            let Some(&(since, oldest)) = t.idle.first() else {
                return Err(Refusal::Full);
            };
            t.idle.remove(&(since, oldest));
            if let Some(entry) = t.entries.get(&oldest) {
                entry.close.notify_one();
            }
            // The evicted connection's task removes its entry; its slot is
            // ours now.
            Self::forget(&mut t, oldest);
        }
        let id = t.next_id;
        t.next_id += 1;
        let close = Arc::new(Notify::new());
        t.entries.insert(
            id,
            Entry {
                source,
                busy: 0,
                idle_since: now,
                close: close.clone(),
                certificate: None,
                identity: None,
            },
        );
        t.idle.insert((now, id));
        *t.per_source.entry(source).or_default() += 1;
        Ok((id, close))
    }

    fn forget(t: &mut Table, id: u64) {
        let Some(entry) = t.entries.remove(&id) else {
            return;
        };
        t.idle.remove(&(entry.idle_since, id));
        if let Some(n) = t.per_source.get_mut(&entry.source) {
            *n -= 1;
            if *n == 0 {
                t.per_source.remove(&entry.source);
            }
        }
        if let Some(identity) = entry.identity
            && let Some(n) = t.per_identity.get_mut(&identity)
        {
            *n -= 1;
            if *n == 0 {
                t.per_identity.remove(&identity);
            }
        }
    }

    fn release(&self, id: u64) {
        Self::forget(&mut self.table(), id);
    }

    /// Records the client certificate of a connection (its serial is its
    /// identity); refuses one identity too many.
    fn authenticated(&self, id: u64, certificate: CertificateDer<'static>) -> Result<(), Refusal> {
        let identity = estafette_pki::tls::serial(&certificate).unwrap_or_default();
        let mut t = self.table();
        if t.per_identity.get(&identity).copied().unwrap_or(0) >= self.limits.max_per_identity {
            return Err(Refusal::PerIdentity);
        }
        let Some(entry) = t.entries.get_mut(&id) else {
            return Ok(());
        };
        entry.certificate = Some(certificate);
        entry.identity = Some(identity.clone());
        *t.per_identity.entry(identity).or_default() += 1;
        Ok(())
    }

    fn begin_request(&self, id: u64) {
        let mut t = self.table();
        let Some(entry) = t.entries.get_mut(&id) else {
            return;
        };
        entry.busy += 1;
        let key = (entry.idle_since, id);
        if entry.busy == 1 {
            t.idle.remove(&key);
        }
    }

    fn end_request(&self, id: u64) {
        let mut t = self.table();
        let now = Instant::now();
        let Some(entry) = t.entries.get_mut(&id) else {
            return;
        };
        entry.busy = entry.busy.saturating_sub(1);
        if entry.busy == 0 {
            entry.idle_since = now;
            t.idle.insert((now, id));
        }
    }

    /// When an idle connection must close; `None` while it serves a request.
    fn idle_deadline(&self, id: u64) -> Option<Instant> {
        let t = self.table();
        let entry = t.entries.get(&id)?;
        (entry.busy == 0).then(|| entry.idle_since + self.limits.idle_timeout)
    }

    /// Closes the connections whose client certificate `revoked` says is
    /// revoked; gives how many.
    pub fn close_where(&self, revoked: impl Fn(&CertificateDer<'static>) -> bool) -> usize {
        let t = self.table();
        let mut closed = 0;
        for entry in t.entries.values() {
            if entry.certificate.as_ref().is_some_and(&revoked) {
                entry.close.notify_one();
                closed += 1;
            }
        }
        closed
    }
}

/// A request in progress on a connection: idle again when dropped.
struct Busy {
    admission: Arc<Admission>,
    id: u64,
}

impl Busy {
    fn new(admission: Arc<Admission>, id: u64) -> Busy {
        admission.begin_request(id);
        Busy { admission, id }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.admission.end_request(self.id);
    }
}

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

/// What was wrong with a request body, seen by [`GuardedBody`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyFault {
    TooLarge { limit: usize },
    TooSlow { min_rate: u64 },
    TooLate { timeout: Duration },
    Busy,
}

impl BodyFault {
    fn problem(self) -> Response<axum::body::Body> {
        match self {
            BodyFault::TooLarge { limit } => problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                &format!("the request body is over the limit of {limit} bytes"),
            ),
            BodyFault::TooSlow { min_rate } => problem(
                StatusCode::REQUEST_TIMEOUT,
                "body-too-slow",
                &format!(
                    "the request body arrived slower than {min_rate} bytes per second; send it again faster"
                ),
            ),
            BodyFault::TooLate { timeout } => problem(
                StatusCode::REQUEST_TIMEOUT,
                "body-timeout",
                &format!(
                    "the request body did not arrive within {} s",
                    timeout.as_secs()
                ),
            ),
            BodyFault::Busy => busy(),
        }
    }
}

fn busy() -> Response<axum::body::Body> {
    let mut response = problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "busy",
        "the server is receiving too much at once; try again in a moment",
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// A request body that enforces the size limit, the deadline and the
/// minimum rate, and takes room in the body budget as bytes arrive (when
/// no length was announced).
struct GuardedBody {
    /// `None` once handed to the lingering drain.
    inner: Option<Incoming>,
    /// The whole body arrived.
    finished: bool,
    received: usize,
    limit: usize,
    started: Instant,
    deadline: Instant,
    min_rate: u64,
    grace: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    /// Bytes already reserved in the budget (announced length, or grown).
    reserved: usize,
    budget: Arc<Semaphore>,
    permits: Arc<Mutex<Vec<OwnedSemaphorePermit>>>,
    fault: Arc<Mutex<Option<BodyFault>>>,
}

/// Why a request body ended early.
#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error("request body refused: {0:?}")]
    Refused(BodyFault),
    #[error("request body: {0}")]
    Transport(#[from] hyper::Error),
}

impl GuardedBody {
    /// When the body is too slow if nothing more arrives.
    fn next_check(&self) -> Instant {
        let needed = Duration::from_secs_f64(self.received as f64 / self.min_rate.max(1) as f64);
        (self.started + self.grace.max(needed)).min(self.deadline)
    }

    fn refuse(
        &mut self,
        fault: BodyFault,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BodyError>>> {
        if let Ok(mut f) = self.fault.lock() {
            f.get_or_insert(fault);
        }
        Poll::Ready(Some(Err(BodyError::Refused(fault))))
    }
}

/// Budget is taken in steps of this size for bodies without a length.
const BUDGET_STEP_BYTES: usize = 64 * 1024;

impl http_body::Body for GuardedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len();
                    if this.received > this.limit {
                        let limit = this.limit;
                        return this.refuse(BodyFault::TooLarge { limit });
                    }
                    while this.received > this.reserved {
                        match this
                            .budget
                            .clone()
                            .try_acquire_many_owned(BUDGET_STEP_BYTES as u32)
                        {
                            Ok(permit) => {
                                this.reserved += BUDGET_STEP_BYTES;
                                if let Ok(mut p) = this.permits.lock() {
                                    p.push(permit);
                                }
                            }
                            Err(_) => return this.refuse(BodyFault::Busy),
                        }
                    }
                    let next = this.next_check();
                    this.timer.as_mut().reset(next);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(BodyError::Transport(e)))),
            Poll::Ready(None) => {
                this.finished = true;
                Poll::Ready(None)
            }
            Poll::Pending => {
                if this.timer.as_mut().poll(cx).is_ready() {
                    let now = Instant::now();
                    if now >= this.deadline {
                        let timeout = this.deadline - this.started;
                        return this.refuse(BodyFault::TooLate { timeout });
                    }
                    if now >= this.next_check() {
                        let min_rate = this.min_rate;
                        return this.refuse(BodyFault::TooSlow { min_rate });
                    }
                    let next = this.next_check();
                    this.timer.as_mut().reset(next);
                    // Register the new deadline with the waker.
                    let _ = this.timer.as_mut().poll(cx);
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|i| i.is_end_stream())
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner
            .as_ref()
            .map(|i| i.size_hint())
            .unwrap_or_else(|| http_body::SizeHint::with_exact(0))
    }
}

/// After an answer made without reading the whole body (a 413 at once, a
/// 415, a 404), the rest of the body is read and thrown away for at most
/// this long and this much, as web servers do ("lingering close"): a client
/// still sending then reads the answer instead of a connection reset.
pub const LINGER: Duration = Duration::from_secs(10);
pub const LINGER_MAX_BYTES: usize = 64 * 1024 * 1024;

impl Drop for GuardedBody {
    fn drop(&mut self) {
        let Some(inner) = self.inner.take() else {
            return;
        };
        if self.finished || http_body::Body::is_end_stream(&inner) {
            return;
        }
        linger(inner);
    }
}

/// Reads and throws away the rest of a body, within [`LINGER`] and
/// [`LINGER_MAX_BYTES`].
fn linger(mut body: Incoming) {
    if http_body::Body::is_end_stream(&body) {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        use http_body_util::BodyExt;
        let drain = async {
            let mut thrown_away = 0usize;
            while let Some(Ok(frame)) = body.frame().await {
                thrown_away += frame.data_ref().map_or(0, |d| d.len());
                if thrown_away > LINGER_MAX_BYTES {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(LINGER, drain).await;
    });
}

/// The announced body length, if any.
fn content_length(headers: &axum::http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// An error answer that is not already a problem (axum's own rejections
/// are plain text) becomes one, with the same status and its text.
async fn as_problem(response: Response<axum::body::Body>) -> Response<axum::body::Body> {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if content_type.starts_with("application/problem+json") || content_type.starts_with("text/html")
    {
        return response;
    }
    let text = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let detail = if text.trim().is_empty() {
        status.canonical_reason().unwrap_or("error").to_lowercase()
    } else {
        text.trim().to_owned()
    };
    let code = status
        .canonical_reason()
        .unwrap_or("error")
        .to_lowercase()
        .replace(' ', "-");
    problem(status, &code, &detail)
}

/// One request through the admission rules, then the routes.
async fn serve_request(
    request: Request<Incoming>,
    app: axum::Router,
    admission: Arc<Admission>,
    id: u64,
    peer: std::net::SocketAddr,
) -> Result<Response<axum::body::Body>, std::convert::Infallible> {
    use tower::ServiceExt;
    let _busy = Busy::new(admission.clone(), id);
    let limits = &admission.limits;
    let announced = content_length(request.headers());
    if let Some(n) = announced
        && n > limits.max_body_bytes as u64
    {
        linger(request.into_body());
        return Ok(problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            &format!(
                "the request body is {n} bytes, over the limit of {} bytes",
                limits.max_body_bytes
            ),
        ));
    }
    let permits = Arc::new(Mutex::new(Vec::new()));
    let mut reserved = 0;
    if let Some(n) = announced.filter(|n| *n > 0) {
        let n = n as usize;
        match tokio::time::timeout(
            limits.body_budget_wait,
            admission.budget.clone().acquire_many_owned(n as u32),
        )
        .await
        {
            Ok(Ok(permit)) => {
                reserved = n;
                if let Ok(mut p) = permits.lock() {
                    p.push(permit);
                }
            }
            _ => {
                linger(request.into_body());
                return Ok(busy());
            }
        }
    }
    let fault = Arc::new(Mutex::new(None));
    let started = Instant::now();
    let (mut parts, incoming) = request.into_parts();
    // Handlers may ask who is calling (per-client rate limits).
    parts.extensions.insert(axum::extract::ConnectInfo(peer));
    let mut body = GuardedBody {
        inner: Some(incoming),
        finished: false,
        received: 0,
        limit: limits.max_body_bytes,
        started,
        deadline: started + limits.body_timeout,
        min_rate: limits.min_body_rate_bytes_per_s,
        grace: limits.body_grace,
        timer: Box::pin(tokio::time::sleep_until(started + limits.body_grace)),
        reserved,
        budget: admission.budget.clone(),
        permits: permits.clone(),
        fault: fault.clone(),
    };
    let first_check = body.next_check();
    body.timer.as_mut().reset(first_check);
    let request = Request::from_parts(parts, axum::body::Body::new(body));
    let response = match app.oneshot(request).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let fault = fault.lock().ok().and_then(|f| *f);
    let response = match fault {
        Some(fault) => fault.problem(),
        None => as_problem(response).await,
    };
    // The room in the budget is held until the answer is made: the body's
    // bytes live that long.
    drop(permits);
    Ok(response)
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
    if let Some((verifiers, mut changes)) = revocations {
        let admission = admission.clone();
        tokio::spawn(async move {
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
        });
    }
    {
        // The number admitted, for /metrics, once a second.
        let admission = admission.clone();
        let gauge = metrics
            .https_connections
            .get_or_create(&crate::metrics::ApiLabel { api: what.into() })
            .clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                gauge.set(admission.open_connections() as i64);
                if Arc::strong_count(&admission) == 1 {
                    return;
                }
            }
        });
    }
    let label = |reason: &str| HttpsLabel {
        api: what.into(),
        reason: reason.into(),
    };
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
                    .get_or_create(&label(refusal.code()))
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
        let acceptor = acceptor.clone();
        let app_for = app_for.clone();
        let admission = admission.clone();
        let metrics = metrics.clone();
        let throttle = throttle.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let limits = admission.limits.clone();
            let handshake = tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp));
            let stream = tokio::select! {
                r = handshake => match r {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        if let Some(held_back) = throttle.allow("handshake") {
                            tracing::info!(api = what, %peer, error = %e, refused_since_last_line = held_back, "TLS handshake refused");
                        }
                        admission.release(id);
                        return;
                    }
                    Err(_) => {
                        metrics.https_refused.get_or_create(&label("handshake_timeout")).inc();
                        admission.release(id);
                        return;
                    }
                },
                _ = close.notified() => {
                    metrics.https_refused.get_or_create(&label("evicted")).inc();
                    admission.release(id);
                    return;
                }
            };
            let connection = stream.get_ref().1;
            if let Some(cert) = connection.peer_certificates().and_then(|c| c.first())
                && let Err(refusal) = admission.authenticated(id, cert.clone().into_owned())
            {
                metrics
                    .https_refused
                    .get_or_create(&label(refusal.code()))
                    .inc();
                admission.release(id);
                return;
            }
            let Some(app) = app_for(connection) else {
                tracing::info!(api = what, %peer, "connection not allowed; closing");
                admission.release(id);
                return;
            };
            let service = {
                let admission = admission.clone();
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
                let wake = admission
                    .idle_deadline(id)
                    .unwrap_or_else(|| Instant::now() + limits.idle_timeout);
                tokio::select! {
                    result = serving.as_mut() => {
                        if let Err(e) = result {
                            tracing::debug!(api = what, %peer, error = %e, "connection ended");
                        }
                        break;
                    }
                    _ = close.notified() => {
                        metrics.https_refused.get_or_create(&label("evicted")).inc();
                        break;
                    }
                    _ = tokio::time::sleep_until(wake) => {
                        if admission.idle_deadline(id).is_some_and(|d| d <= Instant::now()) {
                            metrics.https_refused.get_or_create(&label("idle_timeout")).inc();
                            break;
                        }
                    }
                }
            }
            admission.release(id);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize, per_source: usize) -> HttpsLimits {
        HttpsLimits {
            max_connections: max,
            max_per_source: per_source,
            new_per_source_per_s: 1_000,
            max_per_identity: 2,
            ..HttpsLimits::agency()
        }
    }

    #[tokio::test]
    async fn the_longest_idle_connection_makes_room_and_busy_ones_stay() {
        let admission = Admission::new(limits(3, 10));
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let t = Instant::now();
        let (first, first_close) = admission.admit(a, t).unwrap();
        let (second, _) = admission.admit(a, t + Duration::from_millis(1)).unwrap();
        let (third, _) = admission.admit(a, t + Duration::from_millis(2)).unwrap();
        admission.begin_request(second);
        // Full: the newcomer evicts the longest idle one (the first).
        let (_fourth, _) = admission.admit(a, t + Duration::from_millis(3)).unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(50), first_close.notified())
                .await
                .is_ok(),
            "the longest idle connection is told to close"
        );
        assert_eq!(admission.open_connections(), 3);
        admission.release(first);
        // Busy ones are never evicted: with every slot busy, refuse.
        admission.begin_request(third);
        let mut t2 = t + Duration::from_millis(10);
        while admission.open_connections() > 0 {
            let r = admission.admit(a, t2);
            t2 += Duration::from_millis(1);
            match r {
                Ok((id, _)) => admission.begin_request(id),
                Err(e) => {
                    assert_eq!(e, Refusal::Full);
                    break;
                }
            }
        }
        assert_eq!(admission.admit(a, t2).err(), Some(Refusal::Full));
        assert!(
            admission.idle_deadline(second).is_none(),
            "busy has no idle deadline"
        );
        admission.end_request(second);
        assert!(admission.idle_deadline(second).is_some());
    }

    #[test]
    fn a_source_that_reconnects_too_fast_is_refused_before_tls() {
        let admission = Admission::new(HttpsLimits {
            max_per_source: 4,
            new_per_source_per_s: 2,
            ..HttpsLimits::agency()
        });
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let t = Instant::now();
        for _ in 0..4 {
            let (id, _) = admission.admit(a, t).unwrap();
            admission.release(id);
        }
        assert_eq!(
            admission.admit(a, t).err(),
            Some(Refusal::RateFromSource),
            "the burst is spent"
        );
        let (id, _) = admission.admit(a, t + Duration::from_millis(500)).unwrap();
        admission.release(id);
        assert_eq!(
            admission.admit(a, t + Duration::from_millis(500)).err(),
            Some(Refusal::RateFromSource),
            "two a second"
        );
    }

    #[test]
    fn one_source_holds_at_most_its_share() {
        let admission = Admission::new(limits(100, 2));
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap());
        let t = Instant::now();
        let later = |ms| t + Duration::from_millis(ms);
        let (x, _) = admission.admit(a, later(10)).unwrap();
        admission.admit(a, later(20)).unwrap();
        assert_eq!(
            admission.admit(a, later(30)).err(),
            Some(Refusal::PerSource)
        );
        assert!(
            admission.admit(b, later(30)).is_ok(),
            "another source is not affected"
        );
        admission.release(x);
        assert!(
            admission.admit(a, later(40)).is_ok(),
            "a released slot is free again"
        );
    }
}
