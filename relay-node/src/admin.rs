//! The operator's local HTTP endpoint: `GET /metrics` (Prometheus text) and
//! `GET /queue` (what is queued per destination, and why).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use serde::{Deserialize, Serialize};

use estafette_spec::{EnvelopeId, NodeId};

use crate::core::NodeCore;
use crate::node::NodeError;
use crate::store::{QueueRecord, Store, StoreError};

/// Most entries listed per destination by `/queue`.
pub const MAX_LISTED_PER_DESTINATION: usize = 100;

#[derive(Debug, Serialize, Deserialize)]
pub struct QueueReport {
    pub node: String,
    pub total: usize,
    pub outbox: u64,
    pub destinations: Vec<DestinationReport>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct DestinationReport {
    pub destination: String,
    pub queued: usize,
    /// The first entries: for a node's own queue, in the order they go
    /// out; for the gateway's shared outbox, soonest retry first.
    pub entries: Vec<QueueEntryReport>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct QueueEntryReport {
    pub envelope_id: String,
    pub attempts: u32,
    /// Milliseconds until the next attempt (0: due now).
    pub next_attempt_in_ms: u64,
    pub last_error: Option<String>,
}

/// What a node's queue holds now: read from the lines' lengths and
/// fronts, so that it costs the same with a million envelopes queued as
/// with ten.
pub fn queue_report(node: &NodeId, store: &Store, now_ms: u64) -> Result<QueueReport, StoreError> {
    let mut destinations = Vec::new();
    let mut total = 0;
    for (hop, queued) in store.queue_lines()? {
        let queued = usize::try_from(queued).unwrap_or(usize::MAX);
        total += queued;
        let mut entries = Vec::new();
        for waiting in store.queue_line(&hop, MAX_LISTED_PER_DESTINATION)? {
            if let Some(record) = store.queue_get(&waiting.id)? {
                entries.push(QueueEntryReport {
                    envelope_id: waiting.id.to_string(),
                    attempts: record.attempts,
                    next_attempt_in_ms: record.next_attempt_ms.saturating_sub(now_ms),
                    last_error: record.last_error,
                });
            }
        }
        destinations.push(DestinationReport {
            destination: hop.to_string(),
            queued,
            entries,
        });
    }
    Ok(QueueReport {
        node: node.to_string(),
        total,
        outbox: store.outbox_len(),
        destinations,
    })
}

/// Most queued envelopes a queue report of a shared queue reads.
pub const MAX_QUEUE_REPORTED: usize = 100_000;

/// The queue report of `snapshot`, whatever holds the queue.
pub fn queue_report_of(
    node: &NodeId,
    snapshot: impl IntoIterator<Item = (EnvelopeId, QueueRecord)>,
    outbox: u64,
    now_ms: u64,
) -> QueueReport {
    let now = now_ms;
    let mut by_destination: BTreeMap<String, Vec<QueueEntryReport>> = BTreeMap::new();
    let mut entries: Vec<_> = snapshot.into_iter().collect();
    let total = entries.len();
    entries.sort_by_key(|(_, r)| r.next_attempt_ms);
    for (id, record) in entries {
        by_destination
            .entry(record.destination.to_string())
            .or_default()
            .push(QueueEntryReport {
                envelope_id: id.to_string(),
                attempts: record.attempts,
                next_attempt_in_ms: record.next_attempt_ms.saturating_sub(now),
                last_error: record.last_error,
            });
    }
    QueueReport {
        node: node.to_string(),
        total,
        outbox,
        destinations: by_destination
            .into_iter()
            .map(|(destination, mut entries)| {
                let queued = entries.len();
                entries.truncate(MAX_LISTED_PER_DESTINATION);
                DestinationReport {
                    destination,
                    queued,
                    entries,
                }
            })
            .collect(),
    }
}

/// What `estafette-relay status` shows: is the node up, where, and can
/// peers reach it where the trust list says it is.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct StatusReport {
    pub node: String,
    /// Where it listens (QUIC, UDP).
    pub listen: String,
    /// Where the trust list says it is: where peers send.
    pub trust_list_address: Option<String>,
    /// Whether a QUIC handshake with this node at that address worked
    /// (`None`: not checked yet).
    pub reachable_at_trust_list_address: Option<bool>,
    /// Why not, when it did not.
    pub address_problem: Option<String>,
    pub trust_list_version: u64,
    pub queued: u64,
    pub outbox: u64,
    /// Where the citizen API listens (home nodes).
    pub citizen_api: Option<String>,
    /// Where the node serves its evidence log (HTTPS, TCP).
    #[serde(default)]
    pub public_log: Option<String>,
}

impl StatusReport {
    /// The status of the node `core`, whose store holds `queued` envelopes
    /// and `outbox` evidence objects.
    pub fn of(core: &NodeCore, queued: u64, outbox: u64, citizen_api: Option<SocketAddr>) -> Self {
        let trust = core.trust();
        let check = core.address_check();
        StatusReport {
            node: core.id.to_string(),
            listen: core.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            trust_list_address: trust.node(&core.id).map(|n| n.address.clone()),
            reachable_at_trust_list_address: check.as_ref().map(Result::is_ok),
            address_problem: check.and_then(Result::err),
            trust_list_version: trust.content().version,
            queued,
            outbox,
            citizen_api: citizen_api.map(|a| a.to_string()),
            public_log: core.public_log_addr().map(|a| a.to_string()),
        }
    }
}

/// What the admin endpoint of a process serves: a relay node, a home node,
/// the gateway each say what they are.
pub trait AdminSource: Send + Sync + 'static {
    /// The OpenMetrics exposition (ending in `# EOF`).
    fn metrics(&self) -> String;
    fn queue(&self) -> Result<QueueReport, StoreError>;
    fn status(&self) -> StatusReport;
    /// `GET /report` (JSON) from the query string; `None`: no report here.
    fn report(&self, _query: &str) -> Option<Result<String, String>> {
        None
    }
}

async fn status(State(source): State<Arc<dyn AdminSource>>) -> axum::response::Response {
    axum::Json(source.status()).into_response()
}

async fn metrics(State(source): State<Arc<dyn AdminSource>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        source.metrics(),
    )
}

async fn report(
    State(source): State<Arc<dyn AdminSource>>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> axum::response::Response {
    match source.report(query.as_deref().unwrap_or("")) {
        None => (axum::http::StatusCode::NOT_FOUND, "no report on this node").into_response(),
        Some(Ok(json)) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Some(Err(e)) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    }
}

async fn queue(State(source): State<Arc<dyn AdminSource>>) -> axum::response::Response {
    match source.queue() {
        Ok(report) => axum::Json(report).into_response(),
        Err(e) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Starts the admin endpoint on `addr` (keep it on loopback).
pub async fn spawn(
    source: Arc<dyn AdminSource>,
    addr: SocketAddr,
) -> Result<SocketAddr, NodeError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| NodeError::Admin { addr, source })?;
    let local = listener.local_addr().unwrap_or(addr);
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/queue", get(queue))
        .route("/status", get(status))
        .route("/report", get(report))
        .with_state(source);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "admin endpoint stopped");
        }
    });
    Ok(local)
}

/// One exposition of the node's metrics with `more` families of a role
/// (the gateway's) before the end marker.
pub fn metrics_with(node_metrics: &crate::metrics::Metrics, more: &str) -> String {
    let text = node_metrics.encode();
    let body = text.strip_suffix("# EOF\n").unwrap_or(&text);
    format!("{body}{more}# EOF\n")
}

/// A plain HTTP/1.0 GET of `path` from an admin endpoint on loopback (for
/// the `queue` command and load tools; no client library needed).
pub fn local_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let timeout = std::time::Duration::from_secs(10);
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| bad("malformed HTTP answer".into()))?;
    let status = head.lines().next().unwrap_or("");
    if !status.contains(" 200 ") {
        return Err(bad(format!("admin endpoint answered: {status}")));
    }
    Ok(body.to_owned())
}
