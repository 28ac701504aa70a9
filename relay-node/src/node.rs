//! A relay node: the parts every node has ([`NodeCore`]), its durable
//! store, the server answering offers ([`RelayHandler`]), the forwarder
//! over its own queue, the outbox to the gateway, and housekeeping. The
//! relay proper: it knows nothing of citizens (that is `crate::home`) or of
//! agencies (the gateway builds on the same parts).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use estafette_spec::{Clock, NodeId, TrustList};

use crate::config::Config;
use crate::core::NodeCore;
use crate::forwarder::Forwarder;
use crate::metrics::Metrics;
use crate::relay::{Outbox, RelayHandler, RelayQueue};
use crate::server::Server;
use crate::store::{Op, Outcome, Store, StoreError};

/// Why a node could not start or act.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("{0}")]
    Pki(#[from] estafette_pki::PkiError),
    #[error("trust list {path}: {source}")]
    TrustList {
        path: String,
        source: estafette_spec::TrustListError,
    },
    #[error("node {0} is not in the trust list")]
    NotInTrustList(NodeId),
    #[error("node {0} has the home role but no hpke_key is configured")]
    NoHpkeKey(NodeId),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Log(#[from] crate::evidence_log::LogError),
    #[error("{0}")]
    Transport(#[from] crate::transport::TransportError),
    #[error("admin endpoint {addr}: {source}")]
    Admin {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("public evidence log {addr}: {source}")]
    PublicLog {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Longest wait at shutdown for the connections to close cleanly.
pub const SHUTDOWN_FLUSH: Duration = Duration::from_secs(2);
/// How often the dedup index is pruned.
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

/// A running relay node. Cheap to share (`Arc<Node>`).
pub struct Node {
    pub id: NodeId,
    core: Arc<NodeCore>,
    store: Arc<Store>,
    outbox: Arc<Outbox>,
    server: Arc<Server>,
    pub metrics: Arc<Metrics>,
}

impl Node {
    /// Starts a relay node on the system clock.
    pub async fn start(config: Config) -> Result<Arc<Node>, NodeError> {
        Self::start_with_clock(config, Arc::new(estafette_pki::SystemClock))
    }

    /// Loads keys and the federation, opens the store, binds the endpoint
    /// and starts every task of a relay node.
    pub fn start_with_clock(config: Config, clock: Arc<dyn Clock>) -> Result<Arc<Node>, NodeError> {
        let core = NodeCore::start(config, clock, None)?;
        let store = Arc::new(core.open_store()?);
        let outbox = Outbox::start(core.clone(), store.clone());
        let queue = Arc::new(RelayQueue {
            store: store.clone(),
            outbox: outbox.clone(),
        });
        let forwarder = Forwarder::start(core.clone(), queue)?;
        let handler = Arc::new(RelayHandler {
            core: core.clone(),
            store: store.clone(),
            forwarder,
            outbox: outbox.clone(),
        });
        let server = Server::start(core.clone(), handler);
        core.metrics.outbox_depth.set(store.outbox_len() as i64);
        let node = Arc::new(Node {
            id: core.id.clone(),
            metrics: core.metrics.clone(),
            core,
            store,
            outbox,
            server,
        });
        tokio::spawn(node.clone().housekeeping_loop());
        tokio::spawn(node.core.clone().probe_own_address());
        tracing::info!(node = %node.id, listen = %node.local_addr().map(|a| a.to_string()).unwrap_or_default(), "node started");
        Ok(node)
    }

    /// The parts every node has: keys, federation, endpoint, peers.
    pub fn core(&self) -> &Arc<NodeCore> {
        &self.core
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.core.local_addr()
    }

    pub fn trust(&self) -> Arc<TrustList> {
        self.core.trust()
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The outbox that carries this node's evidence to the gateway.
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    /// Re-reads the trust list and CRL at once (SIGHUP).
    pub fn reload(&self) {
        self.core.trust.reload_soon();
    }

    /// Stops accepting, waits for the requests in progress to finish their
    /// commits, and closes the connections.
    pub async fn shutdown(&self) {
        self.server.stop().await;
        self.core.stop();
        tracing::info!(node = %self.id, "node stopped");
    }

    async fn housekeeping_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(PRUNE_INTERVAL);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.core.stopped.notified() => return,
            }
            let retention = self.core.config.limits.dedup_retention_s;
            let before = self.core.clock.now().minus_s(retention);
            // One batch per write, so that other writes go in between.
            let mut from = (0, [0u8; 16]);
            loop {
                match self.store.write(Op::Prune { before, from }).await {
                    Ok(Outcome::Pruned { next: Some(next) }) => from = next,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "pruning the dedup index failed");
                        break;
                    }
                }
            }
        }
    }
}
