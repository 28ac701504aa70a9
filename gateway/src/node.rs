//! The gateway's node: the parts every node has (`estafette_relay::core`),
//! its store, the forwarder over the gateway's own queue (an origin's:
//! evidence archived), and the server answering what only the gateway
//! takes, evidence deliveries and citizen requests.

use std::sync::{Arc, Weak};

use ed25519_dalek::SigningKey;
use estafette_relay::core::NodeCore;
use estafette_relay::forwarder::Forwarder;
use estafette_relay::origin::{EvidenceNotes, OriginQueue, StoredEvidence};
use estafette_relay::server::{Handled, RequestHandler, refused};
use estafette_relay::store::{NewEvidence, Store};
use estafette_relay::{Config, NodeError};
use estafette_spec::evidence::EvidenceRecord;
use estafette_spec::relay::{Receiver, Request};
use estafette_spec::{Clock, NodeId, ReasonCode, TrustList};

use crate::config::{StoreBackend, StoreSettings};
use crate::gateway::Gateway;
use crate::store::{FirstHop, PgForwardQueue, PgRecords, Records, RecordsError, RedbRecords};

/// Connections to PostgreSQL when `[store] connections` is not set.
pub const DEFAULT_PG_CONNECTIONS: usize = 8;

/// The gateway's node.
pub struct GatewayNode {
    pub id: NodeId,
    pub core: Arc<NodeCore>,
    /// The node's own database: the records and the forward queue with
    /// redb; with PostgreSQL only what every node keeps for itself.
    store: Arc<Store>,
    records: Arc<dyn Records>,
    /// With PostgreSQL: the shared records and outbox.
    shared: Option<Arc<PgRecords>>,
    notes: EvidenceNotes,
    /// This instance's name among the gateway's instances.
    pub instance: String,
}

/// Why the gateway's node cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error(transparent)]
    Store(#[from] estafette_relay::store::StoreError),
    #[error("the gateway's database: {0}")]
    Records(#[from] RecordsError),
    #[error("[store]: {0}")]
    Settings(String),
}

impl GatewayNode {
    /// Loads keys and the federation, opens the store (and with PostgreSQL
    /// connects and migrates it) and starts the forwarder. The server
    /// starts with [`serve`], once the gateway that answers exists.
    pub async fn start(
        config: Config,
        settings: &StoreSettings,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<GatewayNode>, StartError> {
        let instance = settings.instance.clone().unwrap_or_else(|| {
            format!(
                "{}-{}",
                config.node_id,
                estafette_spec::bytes::Hex(
                    &rand_core::RngCore::next_u64(&mut rand_core::OsRng).to_be_bytes()
                )
            )
        });
        // One instance keeps the gateway's log; each of several keeps a log
        // of its own, named after it (SPEC.md §15).
        let log_name = match settings.backend {
            StoreBackend::Redb => None,
            StoreBackend::Postgres => Some(log_name_of(&instance)),
        };
        let core = NodeCore::start(config, clock, log_name.as_deref())?;
        let store = Arc::new(core.open_store()?);
        let notes = EvidenceNotes::default();
        let (records, shared): (Arc<dyn Records>, _) = match settings.backend {
            StoreBackend::Redb => {
                let queue = Arc::new(OriginQueue {
                    store: store.clone(),
                    notes: notes.clone(),
                    on_archive: Some(RedbRecords::archive_hook(store.clone())),
                });
                let forwarder = Forwarder::start(core.clone(), queue)?;
                let records = RedbRecords::new(core.clone(), store.clone(), forwarder)?;
                let filed = records.index_due_letters().await?;
                if filed > 0 {
                    tracing::info!(letters = filed, "followed letters filed in the due index");
                }
                (Arc::new(records), None)
            }
            StoreBackend::Postgres => {
                let url = settings.postgres_url().map_err(StartError::Settings)?;
                let connections = settings.connections.unwrap_or(DEFAULT_PG_CONNECTIONS);
                let records = Arc::new(PgRecords::connect(&url, connections).await?);
                let wall: Arc<dyn Fn() -> estafette_spec::Timestamp + Send + Sync> =
                    Arc::new(|| estafette_pki::SystemClock.now());
                let queue = Arc::new(PgForwardQueue {
                    records: records.clone(),
                    instance: instance.clone(),
                    notes: notes.clone(),
                    now: wall.clone(),
                });
                // What this instance held before a restart is claimed again
                // (`waiting`), then kept and added to by `keep_leases`.
                let forwarder = Forwarder::start(core.clone(), queue)?;
                let first_hop = FirstHop {
                    core: core.clone(),
                    instance: instance.clone(),
                    forwarder,
                    now: wall,
                };
                records.attach(first_hop, core.stopped.clone())?;
                (records.clone() as Arc<dyn Records>, Some(records))
            }
        };
        tracing::info!(node = %core.id, %instance, backend = ?settings.backend, "gateway node started");
        Ok(Arc::new(GatewayNode {
            id: core.id.clone(),
            core,
            store,
            records,
            shared,
            notes,
            instance,
        }))
    }

    pub fn trust(&self) -> Arc<TrustList> {
        self.core.trust()
    }

    /// The node's own database (with redb also the records and the queue).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The shared PostgreSQL records, when the gateway runs on them.
    pub fn shared(&self) -> Option<&Arc<PgRecords>> {
        self.shared.as_ref()
    }

    /// How many envelopes wait to be forwarded (by any instance).
    pub fn queue_len(&self) -> u64 {
        self.records.outbox_len().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "counting the outbox failed");
            0
        })
    }

    /// The gateway's records (registry, mandates, letters, paper).
    pub fn records(&self) -> &dyn Records {
        &*self.records
    }

    pub fn signing_key(&self) -> &SigningKey {
        self.core.signing_key()
    }

    /// Appends the gateway's evidence records to its log, together (one
    /// checkpoint): their evidence objects, ready to keep.
    pub async fn log_evidence(
        &self,
        records: &[EvidenceRecord],
    ) -> Result<Vec<NewEvidence>, estafette_relay::evidence_log::LogError> {
        let pending = records.iter().map(|r| self.core.new_evidence(r));
        futures_util::future::try_join_all(pending).await
    }

    /// Notes of evidence stored from now on.
    pub fn subscribe_evidence(&self) -> tokio::sync::broadcast::Receiver<StoredEvidence> {
        self.notes.subscribe()
    }

    /// Stops the server, then every loop of the node.
    pub async fn shutdown(&self, server: &estafette_relay::server::Server) {
        server.stop().await;
        self.core.stop();
        tracing::info!(node = %self.id, "gateway node stopped");
    }
}

impl GatewayNode {
    /// A delivery of evidence from `peer`: what verifies is kept with the
    /// gateway's records (on whichever backend) and noted.
    async fn take_evidence(
        &self,
        peer: &NodeId,
        list: Vec<serde_bytes::ByteBuf>,
    ) -> estafette_spec::relay::Response {
        let (keep, notes) = match estafette_relay::origin::check_delivery(&self.core, peer, list) {
            Ok(checked) => checked,
            Err(refusal) => return refusal,
        };
        let count = keep.len() as u32;
        let written = self
            .records
            .write(Box::new(move |records| {
                for evidence in &keep {
                    records.archive_evidence(evidence)?;
                    // The monitor's next cycle looks at the letter, even if
                    // this instance's note of it is lost.
                    if let Some(message) = &evidence.message_id {
                        records.look_soon(message)?;
                    }
                }
                Ok(())
            }))
            .await;
        match written {
            Ok(()) => {
                self.core.metrics.evidence_stored.inc_by(u64::from(count));
                for note in notes {
                    self.notes.note(note);
                }
                estafette_spec::relay::Response::EvidenceStored(count)
            }
            Err(e) => {
                tracing::error!(error = %e, "storing evidence failed");
                refused(
                    ReasonCode::StorageFailure,
                    "could not store evidence; try again",
                )
            }
        }
    }
}

/// What the gateway answers over QUIC: evidence deliveries (kept, and the
/// monitor hears of them) and citizen requests (the desk). Offers are a
/// relay's.
struct GatewayHandler {
    gateway: Weak<Gateway>,
}

impl RequestHandler for GatewayHandler {
    fn handle<'a>(&'a self, peer: &'a NodeId, request: Request) -> Handled<'a> {
        Box::pin(async move {
            let Some(gateway) = self.gateway.upgrade() else {
                return refused(ReasonCode::StorageFailure, "the gateway is stopping");
            };
            let node = &gateway.node;
            match request {
                Request::Evidence(list) => node.take_evidence(peer, list).await,
                Request::Citizen(request) => {
                    let trust = node.trust();
                    let receiver = Receiver {
                        trust: &trust,
                        me: &node.id,
                    };
                    if let Err(r) = receiver.authorize_citizen_request(peer) {
                        return refused(r.reason, r.detail);
                    }
                    let reply = gateway.citizen(peer.clone(), *request).await;
                    estafette_spec::relay::Response::Citizen(reply)
                }
                Request::Offer(_) => refused(
                    ReasonCode::NotForThisNode,
                    "the gateway takes no offers: it is where envelopes start",
                ),
                Request::AddCheckpoint(offer) => {
                    estafette_relay::witness::add_checkpoint(&node.core, peer, offer).await
                }
            }
        })
    }
}

/// Starts answering QUIC requests for `gateway`.
pub fn serve(gateway: &Arc<Gateway>) -> Arc<estafette_relay::server::Server> {
    let handler = Arc::new(GatewayHandler {
        gateway: Arc::downgrade(gateway),
    });
    let server = estafette_relay::server::Server::start(gateway.node.core.clone(), handler);
    tokio::spawn(gateway.node.core.clone().probe_own_address());
    server
}

/// An instance's name as the name of its evidence log: `a-z`, `0-9` and
/// `-` (anything else becomes `-`), at most 63 characters.
pub fn log_name_of(instance: &str) -> String {
    let name: String = instance
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '-') => c,
            _ => '-',
        })
        .take(63)
        .collect();
    if name.is_empty() {
        "instance".into()
    } else {
        name
    }
}
