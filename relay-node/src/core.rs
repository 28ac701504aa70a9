//! What every node process has, whatever its role: its id and keys, the
//! federation in force, the QUIC endpoint and its peers, metrics, and the
//! check that peers can reach it where the trust list says it is. A relay
//! ([`crate::Node`]) and the gateway each build on one.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use estafette_pki::{keys, tls};
use estafette_spec::evidence::EvidenceRecord;
use estafette_spec::receipt::CheckpointCache;
use estafette_spec::{Clock, HpkeKeyPair, NodeId, TrustList};
use tokio::sync::Notify;

use crate::config::Config;
use crate::evidence_log::{EvidenceLog, LogError, Logged};
use crate::metrics::Metrics;
use crate::node::NodeError;
use crate::store::NewEvidence;
use crate::throttle::LogThrottle;
use crate::transport::{CONNECT_TIMEOUT, Peers, TlsMaterial, endpoint};
use crate::trust_state::TrustState;

/// At most one log line per peer or kind of event in this time.
pub const LOG_THROTTLE_INTERVAL: Duration = Duration::from_secs(30);

/// The parts of a node shared by every role.
pub struct NodeCore {
    pub id: NodeId,
    pub config: Config,
    pub clock: Arc<dyn Clock>,
    pub trust: Arc<TrustState>,
    signing_key: SigningKey,
    /// The key that opens envelopes sealed to this node (home role).
    pub hpke: Option<HpkeKeyPair>,
    pub endpoint: quinn::Endpoint,
    pub peers: Arc<Peers>,
    pub metrics: Arc<Metrics>,
    /// Rate limit for repeated log lines (a peer down, a flood).
    pub log_throttle: LogThrottle,
    /// Whether this node answered at its trust-list address (`None`: not
    /// checked yet), and why not.
    address_check: Mutex<Option<Result<(), String>>>,
    /// Fires once when the node stops: every loop of the node ends.
    pub stopped: Arc<Notify>,
    /// This node's evidence log: every record it makes, one signed
    /// checkpoint per commit.
    pub log: EvidenceLog,
    /// Checkpoints of other nodes' logs verified here: the receipts of one
    /// commit cost one signature check.
    pub checkpoints: CheckpointCache,
    /// Where the public log is served (`log_listen`, port 0 resolved).
    public_log: std::sync::OnceLock<SocketAddr>,
}

impl NodeCore {
    /// Loads the keys and the federation, binds the endpoint, and starts
    /// the reload of the trust list and CRL. The evidence log's origin is
    /// the node id, or for one of several gateway instances the node id,
    /// `/` and `log_name`.
    pub fn start(
        config: Config,
        clock: Arc<dyn Clock>,
        log_name: Option<&str>,
    ) -> Result<Arc<NodeCore>, NodeError> {
        let p = &config.pki;
        let trust = TrustState::load(p, clock.clone())?;
        let me = trust
            .trust()
            .node(&config.node_id)
            .ok_or_else(|| NodeError::NotInTrustList(config.node_id.clone()))?
            .clone();
        let hpke = match &p.hpke_key {
            Some(path) => Some(keys::read_hpke(path)?),
            None if me.roles.contains(&estafette_spec::NodeRole::Home) => {
                return Err(NodeError::NoHpkeKey(config.node_id.clone()));
            }
            None => None,
        };
        let material = TlsMaterial {
            cert_chain: tls::load_certs(&p.cert)?,
            key: tls::load_private_key(&p.key)?,
            verifiers: trust.verifiers(),
        };
        let endpoint = endpoint(config.listen, &material, &config.limits)?;
        let peers = Arc::new(Peers::new(
            endpoint.clone(),
            Duration::from_millis(config.limits.request_timeout_ms),
        ));
        let signing_key = keys::read_ed25519(&p.signing_key)?;
        let metrics = Arc::new(Metrics::new());
        let (origin, log_file) = match log_name {
            Some(name) => (
                format!("{}/{name}", config.node_id),
                format!("evidence-log-{name}.redb"),
            ),
            None => (config.node_id.to_string(), "evidence-log.redb".to_owned()),
        };
        crate::store::private_dir(&config.data_dir)?;
        let log_path = config.data_dir.join(log_file);
        crate::store::private_file(&log_path)?;
        let log = EvidenceLog::open(
            &log_path,
            origin,
            signing_key.clone(),
            clock.clone(),
            metrics.clone(),
        )?;
        let core = Arc::new(NodeCore {
            id: config.node_id.clone(),
            signing_key,
            hpke,
            endpoint,
            peers,
            metrics,
            log,
            checkpoints: CheckpointCache::new(),
            public_log: std::sync::OnceLock::new(),
            log_throttle: LogThrottle::new(LOG_THROTTLE_INTERVAL),
            address_check: Mutex::new(None),
            stopped: Arc::new(Notify::new()),
            trust,
            clock,
            config,
        });
        tokio::spawn(core.trust.clone().watch(core.stopped.clone()));
        tokio::spawn(core.clone().close_revoked_peers());
        tokio::spawn(crate::witness::seek_cosignatures(core.clone()));
        if let Some(addr) = core.config.log_listen {
            let bound = crate::public_log::spawn(&core, addr)?;
            let _ = core.public_log.set(bound);
        }
        Ok(core)
    }

    /// Where this node serves its evidence log over HTTPS, if it does.
    pub fn public_log_addr(&self) -> Option<SocketAddr> {
        self.public_log.get().copied()
    }

    pub fn trust(&self) -> Arc<TrustList> {
        self.trust.trust()
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Opens this node's store with its configured limits.
    pub fn open_store(&self) -> Result<crate::store::Store, crate::store::StoreError> {
        let limits = &self.config.limits;
        let store = crate::store::Store::open_with_cache(
            &self.config.db_path(),
            limits.max_queue_len,
            limits.max_commit_batch,
            limits.store_cache_bytes(),
            self.metrics.clone(),
        )?;
        store.keep_free(limits.store_min_free_mib.saturating_mul(1024 * 1024));
        Ok(store)
    }

    /// Closes the endpoint and stops every loop waiting on [`Self::stopped`]
    /// (after the server has stopped taking requests).
    pub fn stop(&self) {
        self.endpoint
            .close(quinn::VarInt::from_u32(0), b"shutting down");
        self.stopped.notify_waiters();
    }

    /// The key that signs this node's evidence (and, on the gateway, envelopes).
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing_key
    }

    /// Appends one of this node's own evidence records to its log: the
    /// evidence object once the log's commit (and checkpoint) is done.
    pub async fn log_evidence(&self, record: &EvidenceRecord) -> Result<Logged, LogError> {
        self.log.append(record).await
    }

    /// A record logged, ready to keep.
    pub async fn new_evidence(&self, record: &EvidenceRecord) -> Result<NewEvidence, LogError> {
        Ok(self.log_evidence(record).await?.keep(record))
    }

    /// Outgoing connections of peers the federation revokes are closed.
    async fn close_revoked_peers(self: Arc<Self>) {
        let mut changes = self.trust.revocations();
        loop {
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return },
                _ = self.stopped.notified() => return,
            }
            let closed = self
                .peers
                .close_where(|conn| crate::server::connection_revoked(&self.trust, conn));
            if closed > 0 {
                tracing::warn!(connections = closed, "closed connections to revoked peers");
            }
        }
    }

    /// Whether this node answered a QUIC handshake at the address the trust
    /// list gives for it (`None` until checked at start).
    pub fn address_check(&self) -> Option<Result<(), String>> {
        self.address_check.lock().ok().and_then(|c| c.clone())
    }

    /// Checks that peers can reach this node where the trust list says it
    /// is: a QUIC handshake with this node's id at that address. A node
    /// that listens elsewhere still sends, but nothing reaches it (evidence,
    /// citizen requests, envelopes): say so loudly, and in `/metrics`.
    /// Needs the node's server to be answering.
    pub async fn probe_own_address(self: Arc<Self>) {
        let Some(address) = self.trust().node(&self.id).map(|n| n.address.clone()) else {
            return;
        };
        let listen = self.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let outcome = self.handshake_with_self(&address).await;
        if let Ok(mut check) = self.address_check.lock() {
            *check = Some(outcome.clone());
        }
        match outcome {
            Ok(()) => {
                self.metrics.reachable_at_trust_list_address.set(1);
                tracing::info!(node = %self.id, %address, "reachable at the address the trust list gives");
            }
            Err(detail) => {
                self.metrics.reachable_at_trust_list_address.set(0);
                tracing::error!(
                    node = %self.id,
                    trust_list_address = %address,
                    listen = %listen,
                    "peers cannot reach this node: the trust list gives {address} as its node address, and a QUIC handshake with {} there failed ({detail}). This node listens on {listen}. Set listen to the trust list's address (or forward it here), or issue the member again with --addr set to where it listens.",
                    self.id
                );
            }
        }
    }

    async fn handshake_with_self(&self, address: &str) -> Result<(), String> {
        let addr = tokio::net::lookup_host(address)
            .await
            .map_err(|e| format!("it does not resolve: {e}"))?
            .next()
            .ok_or_else(|| "it does not resolve".to_string())?;
        let connecting = self
            .endpoint
            .connect(addr, self.id.as_str())
            .map_err(|e| e.to_string())?;
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| {
                format!(
                    "no QUIC handshake within {} ms",
                    CONNECT_TIMEOUT.as_millis()
                )
            })?
            .map_err(|e| e.to_string())?;
        conn.close(quinn::VarInt::from_u32(0), b"address check");
        Ok(())
    }
}
