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

use estafette_spec::NodeId;

use crate::node::{Node, NodeError, now_ms};
use crate::store::{Store, StoreError};

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
    /// The first entries, soonest retry first.
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

/// What a node's queue holds now.
pub fn queue_report(node: &NodeId, store: &Store) -> Result<QueueReport, StoreError> {
    let now = now_ms();
    let mut by_destination: BTreeMap<String, Vec<QueueEntryReport>> = BTreeMap::new();
    let snapshot = store.queue_snapshot()?;
    let total = snapshot.len();
    let mut entries: Vec<_> = snapshot.into_iter().collect();
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
    Ok(QueueReport {
        node: node.to_string(),
        total,
        outbox: store.outbox_len(),
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
    })
}

/// What `estafette-relay status` shows: is the node up, where, and can
/// peers reach it where the trust list says it is.
#[derive(Debug, Serialize, Deserialize)]
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
}

async fn status(State(node): State<Arc<Node>>) -> axum::response::Response {
    let trust = node.trust();
    let check = node.address_check();
    axum::Json(StatusReport {
        node: node.id.to_string(),
        listen: node.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        trust_list_address: trust.node(&node.id).map(|n| n.address.clone()),
        reachable_at_trust_list_address: check.as_ref().map(Result::is_ok),
        address_problem: check.and_then(Result::err),
        trust_list_version: trust.content().version,
        queued: node.store().queue_len(),
        outbox: node.store().outbox_len(),
        citizen_api: node.citizen_addr().map(|a| a.to_string()),
    })
    .into_response()
}

async fn metrics(State(node): State<Arc<Node>>) -> impl IntoResponse {
    let mut text = node.metrics.encode();
    if let Some(extension) = node.admin_extension.get() {
        // One exposition: the extension's families go before the end marker.
        let body = text.strip_suffix("# EOF\n").unwrap_or(&text).to_owned();
        text = format!("{body}{}# EOF\n", (extension.metrics)());
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
}

async fn report(
    State(node): State<Arc<Node>>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> axum::response::Response {
    let Some(extension) = node.admin_extension.get() else {
        return (axum::http::StatusCode::NOT_FOUND, "no report on this node").into_response();
    };
    match (extension.report)(query.as_deref().unwrap_or("")) {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    }
}

async fn queue(State(node): State<Arc<Node>>) -> axum::response::Response {
    match queue_report(&node.id, node.store()) {
        Ok(report) => axum::Json(report).into_response(),
        Err(e) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Starts the admin endpoint on `addr` (keep it on loopback).
pub async fn spawn(node: Arc<Node>, addr: SocketAddr) -> Result<SocketAddr, NodeError> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        NodeError::Transport(crate::transport::TransportError::Tls(format!(
            "admin endpoint {addr}: {e}"
        )))
    })?;
    let local = listener.local_addr().unwrap_or(addr);
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/queue", get(queue))
        .route("/status", get(status))
        .route("/report", get(report))
        .with_state(node);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "admin endpoint stopped");
        }
    });
    Ok(local)
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
