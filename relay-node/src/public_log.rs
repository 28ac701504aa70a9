//! The node's evidence log, public and read-only over HTTPS, in the layout
//! of C2SP tlog-tiles, so that auditors (and any tlog client) can follow it
//! and check that it only grows:
//!
//! - `GET /log/checkpoint`: the newest signed checkpoint (COSE_Sign1, with
//!   the cosignatures its witnesses gave, once they have), never cached;
//! - `GET /log/tile/<L>/<N>[.p/<W>]`: 32-byte hashes of the tree, full tiles
//!   cached for ever (they never change), partial ones as prefixes of
//!   any width the log has.
//!
//! Only hashes and checkpoints leave the node: the records stay with the
//! parties that hold evidence today, and a leaf hash (SHA-256 of a record
//! with its envelope id, times and digests) tells nothing but that there
//! is a record. The server is the node's TLS certificate (federation PKI),
//! without client certificates, behind the same admission rules as every
//! other HTTPS listener.

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use estafette_pki::tls;
use estafette_spec::merkle;

use crate::core::NodeCore;
use crate::https::{HttpsLimits, problem};
use crate::node::NodeError;

/// Where the log's files are, under the listener's root.
pub const LOG_PREFIX: &str = "/log";

/// The media type of a checkpoint served alone.
pub const CHECKPOINT_MEDIA_TYPE: &str = "application/cose; cose-type=\"cose-sign1\"";

/// How a public log listener admits connections: anyone may read, nobody
/// sends a body, and no reader holds much.
pub fn limits() -> HttpsLimits {
    HttpsLimits {
        max_connections: 1_024,
        max_per_source: 64,
        new_per_source_per_s: 32,
        max_per_identity: usize::MAX,
        handshake_timeout: Duration::from_secs(5),
        header_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(30),
        max_body_bytes: 1_024,
        body_timeout: Duration::from_secs(5),
        min_body_rate_bytes_per_s: 1_024,
        body_grace: Duration::from_secs(1),
        body_budget_bytes: 1024 * 1024,
        body_budget_wait: Duration::from_secs(1),
        max_streams_per_connection: 64,
    }
}

/// The routes of the public log of `core`. They hold the node weakly: a
/// reader's open connection never keeps a stopped node's database open.
pub fn router(core: Weak<NodeCore>) -> Router {
    Router::new()
        .route(&format!("{LOG_PREFIX}/checkpoint"), get(checkpoint))
        .route(&format!("{LOG_PREFIX}/tile/{{*path}}"), get(tile))
        .fallback(not_found)
        .with_state(core)
}

async fn not_found() -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "not-found",
        "no such file in this log: /log/checkpoint and /log/tile/… are served",
    )
}

fn stopped() -> Response {
    problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the node is stopping; try again later",
    )
}

async fn checkpoint(State(core): State<Weak<NodeCore>>) -> Response {
    let Some(core) = core.upgrade() else {
        return stopped();
    };
    let Some(newest) = core.log.checkpoint() else {
        return problem(
            StatusCode::NOT_FOUND,
            "empty-log",
            "this log has no record yet",
        );
    };
    // The witnesses' cosignatures, when they have cosigned this very tree.
    let cosignatures = match core.log.cosigned() {
        Ok(Some((cosigned, cosignatures))) if cosigned == newest => cosignatures,
        _ => Vec::new(),
    };
    let mut response = newest.to_cose(&cosignatures).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(CHECKPOINT_MEDIA_TYPE),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

async fn tile(State(core): State<Weak<NodeCore>>, Path(path): Path<String>) -> Response {
    let Some((level, index, width)) = merkle::parse_tile_path(&format!("tile/{path}")) else {
        return problem(
            StatusCode::NOT_FOUND,
            "not-a-tile",
            "not a tile path of C2SP tlog-tiles (tile/<L>/<N>[.p/<W>])",
        );
    };
    let Some(core) = core.upgrade() else {
        return stopped();
    };
    // redb reads block: off the async threads.
    let read = tokio::task::spawn_blocking(move || core.log.tile(level, index, width)).await;
    match read {
        Ok(Ok(Some(hashes))) => {
            let mut response = hashes.into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            // A full tile never changes; a partial one is replaced by a
            // wider one as the log grows.
            let cache = if width == merkle::TILE_WIDTH {
                "public, max-age=31536000, immutable"
            } else {
                "no-cache"
            };
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
            response
        }
        Ok(Ok(None)) => problem(
            StatusCode::NOT_FOUND,
            "no-such-tile",
            "the log has no such tile (yet)",
        ),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "reading a tile of the evidence log");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the log could not be read; try again later",
            )
        }
        Err(_) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the log could not be read; try again later",
        ),
    }
}

/// Binds `addr` and serves the public log of `core` on it until the node
/// stops; gives the address bound (for port 0).
pub fn spawn(core: &Arc<NodeCore>, addr: SocketAddr) -> Result<SocketAddr, NodeError> {
    let bind = |source| NodeError::PublicLog { addr, source };
    let listener = std::net::TcpListener::bind(addr).map_err(bind)?;
    listener.set_nonblocking(true).map_err(bind)?;
    let local = listener.local_addr().map_err(bind)?;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(bind)?;
    let p = &core.config.pki;
    let tls = tls::server_config(
        tls::load_certs(&p.cert)?,
        tls::load_private_key(&p.key)?,
        tls::ClientAuth::None,
        &[b"h2", b"http/1.1"],
    )?;
    let app = router(Arc::downgrade(core));
    let app_for = move |_: &rustls::ServerConnection| Some(app.clone());
    let admission = crate::https::Admission::new(limits());
    let metrics = core.metrics.clone();
    let stopped = core.stopped.clone();
    tokio::spawn(async move {
        let stop = stopped.notified();
        tokio::pin!(stop);
        stop.as_mut().enable();
        tokio::select! {
            _ = &mut stop => {}
            _ = crate::https::serve_tls(listener, tls, admission, "log", metrics, None, app_for) => {}
        }
    });
    tracing::info!(%local, "public evidence log listening");
    Ok(local)
}
