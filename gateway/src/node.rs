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
use estafette_relay::store::Store;
use estafette_relay::{Config, NodeError};
use estafette_spec::evidence::EvidenceRecord;
use estafette_spec::relay::{Receiver, Request};
use estafette_spec::{Clock, NodeId, ReasonCode, TrustList};

use crate::gateway::Gateway;
use crate::store::{Records, RedbRecords};

/// The gateway's node.
pub struct GatewayNode {
    pub id: NodeId,
    pub core: Arc<NodeCore>,
    store: Arc<Store>,
    records: Arc<dyn Records>,
    notes: EvidenceNotes,
}

impl GatewayNode {
    /// Loads keys and the federation, opens the store and starts the
    /// forwarder. The server starts with [`serve`], once the gateway that
    /// answers exists.
    pub fn start(config: Config, clock: Arc<dyn Clock>) -> Result<Arc<GatewayNode>, NodeError> {
        let core = NodeCore::start(config, clock)?;
        let store = Arc::new(core.open_store()?);
        let notes = EvidenceNotes::default();
        let queue = Arc::new(OriginQueue {
            store: store.clone(),
            notes: notes.clone(),
        });
        let forwarder = Forwarder::start(core.clone(), queue)?;
        let records = Arc::new(RedbRecords::new(core.clone(), store.clone(), forwarder));
        Ok(Arc::new(GatewayNode {
            id: core.id.clone(),
            core,
            store,
            records,
            notes,
        }))
    }

    pub fn trust(&self) -> Arc<TrustList> {
        self.core.trust()
    }

    /// The node's store: its forward queue and the evidence it keeps.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The gateway's records (registry, mandates, letters, paper).
    pub fn records(&self) -> &dyn Records {
        &*self.records
    }

    pub fn signing_key(&self) -> &SigningKey {
        self.core.signing_key()
    }

    /// Signs one of the gateway's evidence records.
    pub fn sign_evidence(&self, record: &EvidenceRecord) -> Vec<u8> {
        self.core.sign(record)
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
                Request::Evidence(list) => {
                    estafette_relay::origin::take_evidence(
                        &node.core,
                        &node.store,
                        &node.notes,
                        peer,
                        list,
                    )
                    .await
                }
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
