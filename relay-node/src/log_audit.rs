//! An auditor of evidence logs: follows nodes' public logs
//! ([`crate::public_log`]) over time and reports any log that breaks its
//! promise to only grow. Each run fetches a log's newest checkpoint,
//! checks it against the trust list (the node's key, its witnesses'
//! cosignatures), reads the tiles it needs to prove that the newest tree
//! extends the one this auditor saw before, and remembers the newest head.
//! A log that shows a second root for a size it showed before (a split
//! view), a smaller tree, or a larger one that does not extend the old (a
//! rewrite) is reported, and the head seen before is kept as the evidence.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{Request, StatusCode, header};
use estafette_spec::TrustList;
use estafette_spec::merkle::{self, NeedTile, TileReader};
use estafette_spec::receipt::{ReceiptError, SignedCheckpoint, verify_cosignatures};
use estafette_spec::witness::{AuditFinding, LogHead, audit};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;

/// Longest answer of a log: a full tile (8 KiB); a checkpoint is smaller.
pub const MAX_LOG_ANSWER_BYTES: usize = 16 * 1024;
/// Most tiles fetched to check one log once: a consistency proof needs two
/// paths' worth (a few per level), never the tree.
pub const MAX_TILES_PER_AUDIT: usize = 64;
/// Longest wait for one answer of a log.
pub const LOG_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a log could not be audited (not a finding about it).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{url}: {error}")]
    Fetch { url: String, error: String },
    #[error("{url}: answered {status}")]
    Status { url: String, status: StatusCode },
    #[error("{url}: the checkpoint does not verify: {error}")]
    Checkpoint { url: String, error: ReceiptError },
    #[error("{url}: {error}")]
    Tiles { url: String, error: String },
    #[error("the auditor's state {path}: {error}")]
    State { path: PathBuf, error: String },
    #[error("not a log address: {0} (https://host[:port])")]
    BadUrl(String),
}

/// Where a log is served: `https://host[:port]`, connected to at `addr`.
#[derive(Debug, Clone)]
pub struct LogLocation {
    pub url: String,
    pub addr: SocketAddr,
    pub server_name: ServerName<'static>,
}

impl LogLocation {
    /// `https://host[:port]` (port 443 when left out), reached at
    /// `resolved` when given, else where the system resolves the host.
    pub fn parse(url: &str, resolved: Option<SocketAddr>) -> Result<LogLocation, AuditError> {
        let bad = || AuditError::BadUrl(url.to_owned());
        let rest = url.strip_prefix("https://").ok_or_else(bad)?;
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            return Err(bad());
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (host, port.parse::<u16>().map_err(|_| bad())?),
            None => (authority, 443),
        };
        let addr = match resolved {
            Some(addr) => addr,
            None => std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
                .map_err(|e| AuditError::Fetch {
                    url: url.to_owned(),
                    error: format!("resolving {host}: {e}"),
                })?
                .next()
                .ok_or_else(bad)?,
        };
        let server_name = ServerName::try_from(host.to_owned()).map_err(|_| bad())?;
        Ok(LogLocation {
            url: format!("https://{authority}"),
            addr,
            server_name,
        })
    }

    /// GETs `path` of the log; its body when the answer is 200.
    pub async fn fetch(
        &self,
        tls: &Arc<rustls::ClientConfig>,
        path: &str,
    ) -> Result<Vec<u8>, AuditError> {
        let url = format!("{}{path}", self.url);
        let fetch = |e: &dyn std::fmt::Display| AuditError::Fetch {
            url: url.clone(),
            error: e.to_string(),
        };
        let exchange = async {
            let tcp = tokio::net::TcpStream::connect(self.addr)
                .await
                .map_err(|e| fetch(&e))?;
            let stream = tokio_rustls::TlsConnector::from(tls.clone())
                .connect(self.server_name.clone(), tcp)
                .await
                .map_err(|e| fetch(&e))?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(|e| fetch(&e))?;
            tokio::spawn(connection);
            let request = Request::get(path)
                .header(header::HOST, self.server_name.to_str().as_ref())
                .body(Empty::<Bytes>::new())
                .map_err(|e| fetch(&e))?;
            let response = sender.send_request(request).await.map_err(|e| fetch(&e))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_LOG_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| fetch(&e))?
                .to_bytes()
                .to_vec();
            if status != StatusCode::OK {
                return Err(AuditError::Status {
                    url: url.clone(),
                    status,
                });
            }
            Ok(body)
        };
        tokio::time::timeout(LOG_REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| fetch(&"no answer in time"))?
    }
}

/// What one audit of one log found.
#[derive(Debug, Clone)]
pub struct LogReport {
    pub url: String,
    pub origin: String,
    pub finding: AuditFinding,
    /// Distinct witnesses whose cosignature of the newest checkpoint
    /// verified, and how many the trust list names.
    pub cosigned_by: usize,
    pub witnesses: usize,
}

impl LogReport {
    /// The finding in plain words.
    pub fn explain(&self) -> String {
        let what = match &self.finding {
            AuditFinding::First { tree_size } => {
                format!("first checkpoint seen: {tree_size} records; remembered")
            }
            AuditFinding::Unchanged { tree_size } => format!("unchanged at {tree_size} records"),
            AuditFinding::Grew { from, to } => format!(
                "grew from {from} to {to} records; the new tree extends the old (consistency proof from the log's tiles checked)"
            ),
            AuditFinding::SplitView { tree_size } => format!(
                "SPLIT VIEW: a second root for the tree of {tree_size} records; the log shows two histories"
            ),
            AuditFinding::Shrank { from, to } => {
                format!("SHRANK: {to} records now, {from} seen before; the log lost records")
            }
            AuditFinding::Rewritten { from, to } => format!(
                "REWRITTEN: the tree of {to} records does not extend the tree of {from} seen before"
            ),
        };
        format!(
            "{} ({}): {what}; cosigned by {} of its {} witnesses",
            self.origin, self.url, self.cosigned_by, self.witnesses
        )
    }
}

/// The auditor's memory: the last head accepted per log, one file per
/// origin under a directory.
pub struct AuditState {
    dir: PathBuf,
}

impl AuditState {
    pub fn open(dir: &Path) -> Result<AuditState, AuditError> {
        std::fs::create_dir_all(dir).map_err(|e| AuditError::State {
            path: dir.to_owned(),
            error: e.to_string(),
        })?;
        Ok(AuditState {
            dir: dir.to_owned(),
        })
    }

    fn path(&self, origin: &str) -> PathBuf {
        // An origin is a DNS name, perhaps with `/name`: one file name.
        self.dir
            .join(format!("{}.checkpoint", origin.replace('/', "%2F")))
    }

    /// The last checkpoint accepted of `origin`, checked again.
    pub fn last(&self, origin: &str, trust: &TrustList) -> Result<Option<LogHead>, AuditError> {
        let path = self.path(origin);
        let state = |error: String| AuditError::State {
            path: path.clone(),
            error,
        };
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(state(e.to_string())),
        };
        let (checkpoint, _) = SignedCheckpoint::parse(&bytes).map_err(|e| state(e.to_string()))?;
        let (_, key) = checkpoint.signer(trust).map_err(|e| state(e.to_string()))?;
        checkpoint
            .verify_with(&key)
            .map_err(|e| state(e.to_string()))?;
        Ok(Some(LogHead::of(&checkpoint)))
    }

    /// Remembers `checkpoint` (its bytes as served) durably: written
    /// beside, synced, then renamed over the old.
    pub fn keep(&self, origin: &str, checkpoint: &[u8]) -> Result<(), AuditError> {
        use std::io::Write;
        let path = self.path(origin);
        let state = |e: std::io::Error| AuditError::State {
            path: path.clone(),
            error: e.to_string(),
        };
        let temporary = path.with_extension("checkpoint.new");
        let mut file = std::fs::File::create(&temporary).map_err(state)?;
        file.write_all(checkpoint).map_err(state)?;
        file.sync_all().map_err(state)?;
        std::fs::rename(&temporary, &path).map_err(state)?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(state)
    }
}

/// Audits the log at `location` once: checks its newest checkpoint against
/// `trust` and against what `state` saw before, and remembers it unless it
/// breaks the log's promise.
pub async fn audit_log(
    location: &LogLocation,
    tls: &Arc<rustls::ClientConfig>,
    trust: &TrustList,
    state: &AuditState,
) -> Result<LogReport, AuditError> {
    let url = location.url.clone();
    let bytes = location.fetch(tls, "/log/checkpoint").await?;
    let not_valid = |error| AuditError::Checkpoint {
        url: url.clone(),
        error,
    };
    let (checkpoint, cosignatures) = SignedCheckpoint::parse(&bytes).map_err(not_valid)?;
    let (entry, key) = checkpoint.signer(trust).map_err(not_valid)?;
    checkpoint.verify_with(&key).map_err(not_valid)?;
    let cosigned_by = verify_cosignatures(&checkpoint.checkpoint, &cosignatures, entry, trust)
        .map_err(not_valid)?;
    let next = LogHead::of(&checkpoint);
    let previous = state.last(&next.origin, trust)?;
    // What the log's tiles say: the newest root, and the proof that the
    // tree seen before is its start.
    let mut tiles = TileReader::new(next.tree_size);
    let served_root = read_tiles(location, tls, &mut tiles, |t| {
        merkle::stored_root(t, next.tree_size)
    })
    .await?;
    if served_root != next.root {
        return Err(AuditError::Tiles {
            url,
            error: "the log's tiles do not give the root of its checkpoint".into(),
        });
    }
    let consistency = match &previous {
        Some(old) if old.tree_size <= next.tree_size => {
            read_tiles(location, tls, &mut tiles, |t| {
                merkle::stored_consistency_proof(t, old.tree_size, next.tree_size)
            })
            .await?
            .unwrap_or_default()
        }
        _ => Vec::new(),
    };
    let finding = audit(previous.as_ref(), &next, &consistency);
    if !finding.is_violation() {
        state.keep(&next.origin, &bytes)?;
    }
    Ok(LogReport {
        url,
        origin: next.origin,
        finding,
        cosigned_by: cosigned_by.len(),
        witnesses: entry.witnesses.len(),
    })
}

/// Runs `read` over the tiles, fetching each tile it needs, at most
/// [`MAX_TILES_PER_AUDIT`] in all.
async fn read_tiles<T>(
    location: &LogLocation,
    tls: &Arc<rustls::ClientConfig>,
    tiles: &mut TileReader,
    read: impl Fn(&TileReader) -> Result<T, NeedTile>,
) -> Result<T, AuditError> {
    loop {
        let need = match read(tiles) {
            Ok(value) => return Ok(value),
            Err(need) => need,
        };
        if tiles.len() >= MAX_TILES_PER_AUDIT {
            return Err(AuditError::Tiles {
                url: location.url.clone(),
                error: format!("more than {MAX_TILES_PER_AUDIT} tiles needed (still {need})"),
            });
        }
        let bytes = location
            .fetch(tls, &format!("/log/{}", need.path()))
            .await?;
        tiles.insert(need, &bytes).map_err(|e| AuditError::Tiles {
            url: location.url.clone(),
            error: e.to_string(),
        })?;
    }
}
