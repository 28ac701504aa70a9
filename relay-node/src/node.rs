//! A running node: the QUIC server that answers offers and evidence
//! deliveries, the forwarder that empties the queue towards next hops, the
//! outbox that carries evidence to the gateway, and the inbox API of a home
//! node. Protocol decisions come from `estafette_spec::relay`; durability
//! from [`Store`].

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use estafette_pki::{keys, tls};
use estafette_spec::citizen::{CitizenReply, CitizenRequest};
use estafette_spec::evidence::{Actor, EvidenceRecord};
use estafette_spec::relay::{
    self, MAX_EVIDENCE_PER_DELIVERY, MAX_FRAME_BYTES, Offer, OfferDecision, Receiver, Request,
    Response,
};
use estafette_spec::{
    Digest, Envelope, EnvelopeId, Evidence, EvidenceEvent, EvidenceId, HpkeKeyPair, InboxId,
    NodeId, ReasonCode, TrustList,
};
use rand_core::{OsRng, RngCore};
use tokio::sync::{Notify, Semaphore, mpsc};

use crate::config::Config;
use crate::metrics::{DestinationLabel, Metrics, ReasonLabel};
use crate::store::{
    InboxRecord, NewEvidence, Op, Outcome, Placement, QueueRecord, Store, StoreError,
};
use crate::transport::{Peers, TlsMaterial, endpoint, peer_node_id};

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
    Transport(#[from] crate::transport::TransportError),
    #[error("envelope refused: {0}")]
    Envelope(String),
    #[error("no such letter")]
    NoSuchLetter,
    #[error("the forward queue is full")]
    QueueFull,
    #[error("the gateway could not be asked: {0}")]
    Gateway(String),
    #[error("citizen API: {0}")]
    Citizen(String),
}

/// Longest wait at shutdown for the connections to close cleanly.
pub const SHUTDOWN_FLUSH: Duration = Duration::from_secs(2);

/// Milliseconds since the epoch: the forwarder's clock.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn jitter() -> f64 {
    (OsRng.next_u32() as f64) / (u32::MAX as f64 + 1.0)
}

/// A running node. Cheap to share (`Arc<Node>`).
pub struct Node {
    pub id: NodeId,
    config: Config,
    trust: RwLock<Arc<TrustList>>,
    trust_bytes: RwLock<Vec<u8>>,
    root_key: ed25519_dalek::VerifyingKey,
    signing_key: SigningKey,
    hpke: Option<HpkeKeyPair>,
    is_gateway: bool,
    store: Store,
    pub metrics: Arc<Metrics>,
    endpoint: quinn::Endpoint,
    peers: Peers,
    schedule: mpsc::UnboundedSender<(u64, EnvelopeId, NodeId)>,
    outbox: mpsc::UnboundedSender<(u64, EvidenceId)>,
    peer_slots: std::sync::Mutex<HashMap<NodeId, Arc<Semaphore>>>,
    /// Requests in progress hold a read guard; shutdown takes the write guard.
    in_flight: tokio::sync::RwLock<()>,
    stopping: AtomicBool,
    stopped: Notify,
    /// Evidence stored here (gateway role), for in-process observers.
    evidence_stored: tokio::sync::broadcast::Sender<StoredEvidence>,
    /// Who answers citizen requests (gateway role; set by the gateway).
    citizen_desk: std::sync::OnceLock<CitizenDesk>,
    /// Where the citizen API listens (home role, when configured).
    citizen_addr: std::sync::OnceLock<SocketAddr>,
    /// More for the admin endpoint (the gateway's operator report).
    pub(crate) admin_extension: std::sync::OnceLock<AdminExtension>,
    /// The federation root and the CRL now in force (TLS, QUIC and HTTPS).
    verifiers: Arc<tls::LiveVerifiers>,
    /// Incoming QUIC connections, by stable id: closed when their peer is revoked.
    incoming: std::sync::Mutex<HashMap<usize, quinn::Connection>>,
    /// Wakes the reload of the trust list and CRL at once (SIGHUP).
    reload_now: Notify,
    /// Counts revocations taking effect; HTTPS loops close what they revoke.
    revocations: tokio::sync::watch::Sender<u64>,
    /// What the files looked like at the last reload.
    federation_files: std::sync::Mutex<Option<FileStamps>>,
    /// Rate limit for repeated log lines (a peer down, a flood).
    pub(crate) log_throttle: crate::throttle::LogThrottle,
    /// Whether this node answered at its trust-list address (`None`: not
    /// checked yet), and why not.
    address_check: std::sync::Mutex<Option<Result<(), String>>>,
}

/// How often the trust list and CRL files are checked for a new version.
pub const FEDERATION_RELOAD_INTERVAL: Duration = Duration::from_secs(1);
/// At most one log line per peer or kind of event in this time.
pub const LOG_THROTTLE_INTERVAL: Duration = Duration::from_secs(30);
/// QUIC application error code: the peer's certificate is not a node's.
pub const CLOSE_NOT_A_NODE: u32 = 1;
/// QUIC application error code: the peer was revoked.
pub const CLOSE_REVOKED: u32 = 2;

/// Size, modification time and inode of the trust list and CRL files: a
/// change of any means a new version (they are replaced atomically).
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamps(Vec<Option<(u64, i64, i64, u64)>>);

impl FileStamps {
    fn of(paths: &[&std::path::Path]) -> FileStamps {
        use std::os::unix::fs::MetadataExt;
        FileStamps(
            paths
                .iter()
                .map(|p| {
                    std::fs::metadata(p)
                        .ok()
                        .map(|m| (m.len(), m.mtime(), m.mtime_nsec(), m.ino()))
                })
                .collect(),
        )
    }
}

/// What the gateway adds to its node's admin endpoint: `GET /report`
/// (JSON; the query string is passed on) and lines for `/metrics`.
pub struct AdminExtension {
    pub report: ReportFn,
    pub metrics: Box<dyn Fn() -> String + Send + Sync>,
}

/// Makes the report (JSON) from the query string.
pub type ReportFn = Box<dyn Fn(&str) -> Result<String, String> + Send + Sync>;

/// The gateway's handler of citizen requests: the requesting home node and
/// the request in, the answer out.
pub type CitizenDesk = Arc<
    dyn Fn(
            NodeId,
            CitizenRequest,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = CitizenReply> + Send>>
        + Send
        + Sync,
>;

/// Evidence the gateway role has just stored durably.
#[derive(Debug, Clone)]
pub struct StoredEvidence {
    pub message_id: Option<estafette_spec::MessageId>,
    pub event: EvidenceEvent,
    pub issuer: NodeId,
}

/// How many notes an observer may fall behind before it misses some.
pub const EVIDENCE_NOTES_CAPACITY: usize = 65_536;

impl Node {
    /// Loads keys and the trust list, opens the store, binds the endpoint and
    /// starts every task of the node.
    pub async fn start(config: Config) -> Result<Arc<Node>, NodeError> {
        let p = &config.pki;
        let root = tls::load_certs(&p.root_cert)?.remove(0);
        let root_key = root_public_key(&root)?;
        let trust_bytes = std::fs::read(&p.trust_list).map_err(|e| {
            NodeError::Pki(estafette_pki::PkiError::Io {
                path: p.trust_list.clone(),
                source: e,
            })
        })?;
        let trust =
            TrustList::verify(&trust_bytes, &root_key, estafette_pki::now()).map_err(|source| {
                NodeError::TrustList {
                    path: p.trust_list.display().to_string(),
                    source,
                }
            })?;
        let me = trust
            .node(&config.node_id)
            .ok_or_else(|| NodeError::NotInTrustList(config.node_id.clone()))?
            .clone();
        let is_gateway = trust.gateway().is_some_and(|g| g.id == config.node_id);
        let hpke = match &p.hpke_key {
            Some(path) => Some(keys::read_hpke(path)?),
            None if me.roles.contains(&estafette_spec::NodeRole::Home) => {
                return Err(NodeError::NoHpkeKey(config.node_id.clone()));
            }
            None => None,
        };
        let signing_key = keys::read_ed25519(&p.signing_key)?;
        let material = TlsMaterial {
            cert_chain: tls::load_certs(&p.cert)?,
            key: tls::load_private_key(&p.key)?,
            verifiers: tls::LiveVerifiers::new(root, tls::load_crl(&p.crl)?)?,
        };
        let verifiers = material.verifiers.clone();
        let metrics = Arc::new(Metrics::new());
        let store = Store::open(
            &config.db_path(),
            is_gateway,
            config.limits.max_queue_len,
            config.limits.max_commit_batch,
            metrics.clone(),
        )?;
        let endpoint = endpoint(config.listen, &material, &config.limits)?;
        let peers = Peers::new(
            endpoint.clone(),
            Duration::from_millis(config.limits.request_timeout_ms),
        );
        let (schedule, schedule_rx) = mpsc::unbounded_channel();
        let (outbox, outbox_rx) = mpsc::unbounded_channel();
        let node = Arc::new(Node {
            id: config.node_id.clone(),
            trust: RwLock::new(Arc::new(trust)),
            trust_bytes: RwLock::new(trust_bytes),
            root_key,
            signing_key,
            hpke,
            is_gateway,
            store,
            metrics,
            endpoint,
            peers,
            schedule,
            outbox,
            peer_slots: std::sync::Mutex::new(HashMap::new()),
            in_flight: tokio::sync::RwLock::new(()),
            stopping: AtomicBool::new(false),
            stopped: Notify::new(),
            evidence_stored: tokio::sync::broadcast::channel(EVIDENCE_NOTES_CAPACITY).0,
            citizen_desk: std::sync::OnceLock::new(),
            citizen_addr: std::sync::OnceLock::new(),
            admin_extension: std::sync::OnceLock::new(),
            verifiers,
            incoming: std::sync::Mutex::new(HashMap::new()),
            reload_now: Notify::new(),
            revocations: tokio::sync::watch::channel(0).0,
            federation_files: std::sync::Mutex::new(None),
            log_throttle: crate::throttle::LogThrottle::new(LOG_THROTTLE_INTERVAL),
            address_check: std::sync::Mutex::new(None),
            config,
        });
        node.note_federation_files();
        // Everything already on disk is due now.
        let now = now_ms();
        for (id, record) in node.store.queue_snapshot()? {
            let _ = node
                .schedule
                .send((record.next_attempt_ms.max(now), id, record.destination));
        }
        for (id, due, _) in node.store.outbox_snapshot()? {
            let _ = node.outbox.send((due, id));
        }
        node.update_queue_gauges()?;
        tokio::spawn(node.clone().accept_loop());
        tokio::spawn(node.clone().schedule_loop(schedule_rx));
        if !node.is_gateway {
            tokio::spawn(node.clone().outbox_loop(outbox_rx));
        }
        tokio::spawn(node.clone().housekeeping_loop());
        tokio::spawn(node.clone().reload_loop());
        tokio::spawn(node.clone().probe_own_address());
        if let Some(admin) = node.config.admin_listen {
            crate::admin::spawn(node.clone(), admin).await?;
        }
        if let Some(citizen) = node.config.citizen.clone() {
            if node.hpke.is_none() {
                return Err(NodeError::Citizen(
                    "the citizen API needs the home role (an hpke_key)".into(),
                ));
            }
            let (addr, task) = crate::citizen::start(node.clone(), &citizen, &node.config.pki)
                .await
                .map_err(|e| NodeError::Citizen(e.to_string()))?;
            let _ = node.citizen_addr.set(addr);
            // The API stops with the node.
            let stopped = node.clone();
            tokio::spawn(async move {
                stopped.stopped.notified().await;
                task.abort();
            });
        }
        tracing::info!(node = %node.id, listen = %node.local_addr().map(|a| a.to_string()).unwrap_or_default(), gateway = node.is_gateway, "node started");
        Ok(node)
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    pub fn trust(&self) -> Arc<TrustList> {
        match self.trust.read() {
            Ok(t) => t.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn is_gateway(&self) -> bool {
        self.is_gateway
    }

    /// The queue-depth gauge of one destination.
    fn queue_gauge(&self, destination: &NodeId) -> prometheus_client::metrics::gauge::Gauge {
        self.metrics
            .queue_depth
            .get_or_create(&DestinationLabel {
                destination: destination.to_string(),
            })
            .clone()
    }

    /// Notes of evidence stored by this node (gateway role) from now on.
    pub fn subscribe_evidence(&self) -> tokio::sync::broadcast::Receiver<StoredEvidence> {
        self.evidence_stored.subscribe()
    }

    /// The key that signs this node's evidence (and, on the gateway, envelopes).
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing_key
    }

    /// Signs an evidence record with this node's key.
    pub fn sign_evidence(&self, record: &EvidenceRecord) -> Vec<u8> {
        self.sign(record)
    }

    /// Stops accepting, waits for the requests in progress to finish their
    /// commits, and closes the connections.
    pub async fn shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.endpoint.set_server_config(None);
        let _all_done = self.in_flight.write().await;
        self.endpoint
            .close(quinn::VarInt::from_u32(0), b"shutting down");
        self.stopped.notify_waiters();
        tracing::info!(node = %self.id, "node stopped");
    }

    fn sign(&self, record: &EvidenceRecord) -> Vec<u8> {
        match Evidence::sign(record, &self.signing_key) {
            Ok(bytes) => bytes,
            Err(e) => {
                // Our own records are built valid; this is a bug, not input.
                tracing::error!(error = %e, "signing our own evidence failed");
                Vec::new()
            }
        }
    }

    fn new_evidence(&self, record: &EvidenceRecord) -> (NewEvidence, Vec<u8>) {
        let bytes = self.sign(record);
        (
            NewEvidence {
                evidence_id: record.evidence_id,
                message_id: record.message_id,
                bytes: bytes.clone(),
            },
            bytes,
        )
    }

    fn notify_outbox(&self, id: EvidenceId) {
        if !self.is_gateway {
            let _ = self.outbox.send((0, id));
        }
    }

    // ------------------------------------------------------------ server

    async fn accept_loop(self: Arc<Self>) {
        while let Some(incoming) = self.endpoint.accept().await {
            if self.stopping.load(Ordering::SeqCst) {
                incoming.refuse();
                continue;
            }
            if self.endpoint.open_connections() > self.config.limits.max_connections as usize {
                self.metrics
                    .refused
                    .get_or_create(&ReasonLabel {
                        reason: "too_many_connections".into(),
                    })
                    .inc();
                incoming.refuse();
                continue;
            }
            let node = self.clone();
            tokio::spawn(async move {
                match incoming.await {
                    Ok(conn) => node.serve_connection(conn).await,
                    Err(e) => tracing::debug!(error = %e, "handshake failed"),
                }
            });
        }
    }

    async fn serve_connection(self: Arc<Self>, conn: quinn::Connection) {
        let Some(peer) = peer_node_id(&conn) else {
            // An agency's certificate, say: it may make no request here, so
            // it gets no stream (and nothing signed).
            self.count_refused("not_a_node");
            conn.close(
                quinn::VarInt::from_u32(CLOSE_NOT_A_NODE),
                b"not a federation node",
            );
            return;
        };
        self.metrics.connections.inc();
        let stable_id = conn.stable_id();
        self.incoming_connections().insert(stable_id, conn.clone());
        let peer = Some(peer);
        loop {
            let (mut send, mut recv) = match conn.accept_bi().await {
                Ok(s) => s,
                Err(_) => break,
            };
            let node = self.clone();
            let peer = peer.clone();
            tokio::spawn(async move {
                let _guard = node.in_flight.read().await;
                let response = match recv.read_to_end(MAX_FRAME_BYTES).await {
                    Err(quinn::ReadToEndError::TooLong) => refused(
                        ReasonCode::TooLarge,
                        format!("request over {MAX_FRAME_BYTES} bytes"),
                    ),
                    Err(e) => {
                        tracing::debug!(error = %e, "stream failed");
                        return;
                    }
                    Ok(bytes) => node.handle(peer.as_ref(), &bytes).await,
                };
                if let Response::Refused { reason, .. } = &response {
                    node.metrics
                        .refused
                        .get_or_create(&ReasonLabel {
                            reason: reason.code().into(),
                        })
                        .inc();
                }
                // quinn keeps transmitting a finished stream after it is dropped.
                let _ = send.write_all(&relay::encode(&response)).await;
                let _ = send.finish();
            });
        }
        self.incoming_connections().remove(&stable_id);
        self.metrics.connections.dec();
    }

    fn incoming_connections(&self) -> std::sync::MutexGuard<'_, HashMap<usize, quinn::Connection>> {
        self.incoming.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn count_refused(&self, reason: &str) {
        self.metrics
            .refused
            .get_or_create(&ReasonLabel {
                reason: reason.into(),
            })
            .inc();
    }

    /// Answers one request from `peer` (None: no usable certificate).
    pub async fn handle(&self, peer: Option<&NodeId>, bytes: &[u8]) -> Response {
        if self.stopping.load(Ordering::SeqCst) {
            return refused(
                ReasonCode::StorageFailure,
                "node is shutting down; try again".into(),
            );
        }
        let trust = self.trust();
        let receiver = Receiver {
            trust: &trust,
            me: &self.id,
        };
        let request = match relay::decode::<Request>(bytes) {
            Ok(r) => r,
            Err(e) => return refused(ReasonCode::Malformed, e.to_string()),
        };
        // The authentication point: every request, the first one included.
        let allowed = match peer {
            Some(peer) => receiver.authorize_peer(peer).map(|_| peer),
            None => Err(relay::PeerRefusal {
                reason: ReasonCode::UnknownSigner,
                detail: "no node certificate".into(),
            }),
        };
        let peer = match allowed {
            Ok(peer) => peer,
            Err(r) => {
                let who = peer.map(|p| p.to_string()).unwrap_or_default();
                if let Some(held_back) = self.log_throttle.allow(&format!("not allowed {who}")) {
                    tracing::warn!(peer = %who, reason = r.reason.code(), held_back, "request from a peer not allowed");
                }
                // Unsigned: a node signs nothing for a peer that may not
                // make the request (no signing oracle, SPEC.md §10.1).
                return refused(r.reason, r.detail);
            }
        };
        match request {
            Request::Offer(offer) => self.handle_offer(&receiver, peer, offer).await,
            Request::Evidence(list) => self.handle_evidence(&receiver, peer, list).await,
            Request::Citizen(request) => {
                if let Err(r) = receiver.authorize_citizen_request(peer) {
                    return refused(r.reason, r.detail);
                }
                match self.citizen_desk.get() {
                    Some(desk) => Response::Citizen(desk(peer.clone(), *request).await),
                    None => refused(
                        ReasonCode::NotForThisNode,
                        "this gateway does not take citizen requests".into(),
                    ),
                }
            }
        }
    }

    /// The citizen API's address, when it runs.
    pub fn citizen_addr(&self) -> Option<SocketAddr> {
        self.citizen_addr.get().copied()
    }

    /// Installs what the gateway adds to the admin endpoint (once).
    pub fn set_admin_extension(&self, extension: AdminExtension) -> bool {
        self.admin_extension.set(extension).is_ok()
    }

    /// Installs the gateway's handler of citizen requests (once).
    pub fn set_citizen_desk(&self, desk: CitizenDesk) -> bool {
        self.citizen_desk.set(desk).is_ok()
    }

    /// Home role: carries a person's request to the gateway and gives its answer.
    pub async fn citizen_request(
        &self,
        request: CitizenRequest,
    ) -> Result<CitizenReply, NodeError> {
        let trust = self.trust();
        let gateway = trust
            .gateway()
            .ok_or_else(|| NodeError::Gateway("no gateway in the trust list".into()))?;
        match self
            .peers
            .request(
                &gateway.id,
                &gateway.address,
                &Request::Citizen(Box::new(request)),
            )
            .await
        {
            Ok(Response::Citizen(reply)) => Ok(reply),
            Ok(Response::Refused { reason, detail }) => Err(NodeError::Gateway(format!(
                "refused ({}): {detail}",
                reason.code()
            ))),
            Ok(_) => Err(NodeError::Gateway("answer of the wrong kind".into())),
            Err(e) => {
                if let Some(held_back) = self.log_throttle.allow("citizen request") {
                    tracing::warn!(gateway = %gateway.id, address = %gateway.address, error = %e, failures_since_last_line = held_back, "the gateway cannot be reached at the address the trust list gives; citizen requests fail");
                }
                Err(NodeError::Gateway(e.to_string()))
            }
        }
    }

    async fn handle_offer(&self, receiver: &Receiver<'_>, peer: &NodeId, offer: Offer) -> Response {
        let now = estafette_pki::now();
        let decision = match receiver.check_offer(&offer, now, self.hpke.as_ref()) {
            Ok(d) => d,
            Err(refusal) => {
                let record = receiver.evidence(
                    EvidenceEvent::RelayRejection,
                    refusal.header.as_deref(),
                    &offer,
                    Some(refusal.reason),
                    now,
                    &mut OsRng,
                );
                self.metrics
                    .rejected
                    .get_or_create(&ReasonLabel {
                        reason: refusal.reason.code().into(),
                    })
                    .inc();
                tracing::info!(peer = %peer, reason = refusal.reason.code(), envelope = ?refusal.header.as_ref().map(|h| h.envelope_id), "offer rejected");
                return Response::Rejected(serde_bytes::ByteBuf::from(self.sign(&record)));
            }
        };
        let header = decision.header().clone();
        let (event, placement) = match decision {
            OfferDecision::Forward { next_hop, .. } => (
                EvidenceEvent::RelayAcceptance,
                Placement::Queue(QueueRecord {
                    destination: next_hop,
                    hops_taken: offer.hops_taken.saturating_add(1),
                    our_evidence: None,
                    expires_at: header.expires_at,
                    accepted_at: now,
                    attempts: 0,
                    next_attempt_ms: 0,
                    last_error: None,
                    envelope: offer.envelope.clone(),
                }),
            ),
            OfferDecision::Deliver { message, .. } => (
                EvidenceEvent::ContentConsignment,
                Placement::Inbox {
                    inbox_id: header.inbox_id,
                    record: InboxRecord {
                        message_id: header.message_id,
                        received_at: now,
                        opened_at: None,
                        last_evidence: Digest([0; 32]),
                        message,
                    },
                },
            ),
        };
        let record = receiver.evidence(event, Some(&header), &offer, None, now, &mut OsRng);
        let (evidence, bytes) = self.new_evidence(&record);
        let placement = match placement {
            Placement::Queue(mut q) => {
                q.our_evidence = Some(Digest::of(&bytes));
                Placement::Queue(q)
            }
            Placement::Inbox {
                inbox_id,
                mut record,
            } => {
                record.last_evidence = Digest::of(&bytes);
                Placement::Inbox { inbox_id, record }
            }
        };
        let destination = match &placement {
            Placement::Queue(q) => Some(q.destination.clone()),
            Placement::Inbox { .. } => None,
        };
        // An offer straight from the gateway: the gateway keeps our
        // acceptance from the answer (and offers again until it has it), so
        // it need not also travel through the outbox.
        let from_gateway = receiver.trust.gateway().is_some_and(|g| &g.id == peer);
        let outcome = self
            .store
            .write(Op::Accept {
                envelope_id: header.envelope_id,
                evidence: Some(evidence),
                placement,
                now,
                extra: None,
                send_evidence: !from_gateway,
            })
            .await;
        match outcome {
            Ok(Outcome::Stored) => {
                self.metrics.accepted.inc();
                match destination {
                    Some(dest) => {
                        self.queue_gauge(&dest).inc();
                        let _ = self.schedule.send((0, header.envelope_id, dest));
                    }
                    None => {
                        self.metrics.delivered.inc();
                    }
                }
                if !from_gateway {
                    self.notify_outbox(record.evidence_id);
                }
                Response::Accepted(serde_bytes::ByteBuf::from(bytes))
            }
            Ok(Outcome::Duplicate { evidence }) => {
                self.metrics.duplicates.inc();
                Response::Accepted(serde_bytes::ByteBuf::from(evidence))
            }
            Ok(Outcome::QueueFull) => refused(
                ReasonCode::StorageFailure,
                "forward queue is full; try again later".into(),
            ),
            Ok(Outcome::Done) => refused(
                ReasonCode::StorageFailure,
                "unexpected store outcome".into(),
            ),
            Err(e) => {
                tracing::error!(error = %e, "storing an accepted envelope failed");
                refused(
                    ReasonCode::StorageFailure,
                    "could not store the envelope; try again".into(),
                )
            }
        }
    }

    async fn handle_evidence(
        &self,
        receiver: &Receiver<'_>,
        peer: &NodeId,
        list: Vec<serde_bytes::ByteBuf>,
    ) -> Response {
        if let Err(r) = receiver.authorize_evidence_delivery(peer) {
            return refused(r.reason, r.detail);
        }
        if list.len() > MAX_EVIDENCE_PER_DELIVERY {
            return refused(
                ReasonCode::TooLarge,
                format!("more than {MAX_EVIDENCE_PER_DELIVERY} evidence objects"),
            );
        }
        let mut keep = Vec::with_capacity(list.len());
        let mut notes = Vec::with_capacity(list.len());
        for bytes in list {
            match Evidence::verify(&bytes, receiver.trust) {
                Ok(v) => {
                    notes.push(StoredEvidence {
                        message_id: v.record.message_id,
                        event: v.record.event,
                        issuer: v.record.issuer.clone(),
                    });
                    keep.push(NewEvidence {
                        evidence_id: v.record.evidence_id,
                        message_id: v.record.message_id,
                        bytes: bytes.into_vec(),
                    })
                }
                // Evidence that does not verify is worth nothing; the sender
                // must not retry it forever either.
                Err(e) => {
                    tracing::warn!(peer = %peer, reason = e.reason().code(), "dropping evidence that does not verify")
                }
            }
        }
        let count = keep.len() as u32;
        match self.store.write(Op::StoreEvidence { evidence: keep }).await {
            Ok(_) => {
                self.metrics.evidence_stored.inc_by(u64::from(count));
                for note in notes {
                    // No observer is fine.
                    let _ = self.evidence_stored.send(note);
                }
                Response::EvidenceStored(count)
            }
            Err(e) => {
                tracing::error!(error = %e, "storing evidence failed");
                refused(
                    ReasonCode::StorageFailure,
                    "could not store evidence; try again".into(),
                )
            }
        }
    }

    // ------------------------------------------------------------ gateway side

    /// Queues an envelope signed by this node (the gateway) for forwarding.
    /// Returns once it is durably queued. `previous`: the digest of the
    /// evidence the next node's evidence should link to.
    pub async fn submit(
        &self,
        envelope: Vec<u8>,
        previous: Option<Digest>,
    ) -> Result<Outcome, NodeError> {
        self.submit_with(envelope, previous, None, None).await
    }

    /// As [`Self::submit`], and in the same transaction keeps `evidence` (the
    /// gateway's SubmissionAcceptance; given back on a duplicate) and runs
    /// `extra` (the gateway's own records).
    pub async fn submit_with(
        &self,
        envelope: Vec<u8>,
        previous: Option<Digest>,
        evidence: Option<NewEvidence>,
        extra: Option<crate::store::Extra>,
    ) -> Result<Outcome, NodeError> {
        let verified = Envelope::verify(&envelope, &self.trust(), estafette_pki::now())
            .map_err(|e| NodeError::Envelope(e.to_string()))?;
        self.submit_sealed(envelope, verified.content.header, previous, evidence, extra)
            .await
    }

    /// As [`Self::submit_with`] for an envelope this node has just sealed and
    /// signed itself: its header is known, so it is not verified again.
    pub async fn submit_sealed(
        &self,
        envelope: Vec<u8>,
        header: estafette_spec::RoutingHeader,
        previous: Option<Digest>,
        evidence: Option<NewEvidence>,
        extra: Option<crate::store::Extra>,
    ) -> Result<Outcome, NodeError> {
        let trust = self.trust();
        let now = estafette_pki::now();
        let next_hop = trust
            .next_hop(&self.id, &header.home_node)
            .ok_or_else(|| NodeError::Envelope(format!("no route to {}", header.home_node)))?
            .id
            .clone();
        let outcome = self
            .store
            .write(Op::Accept {
                envelope_id: header.envelope_id,
                evidence,
                placement: Placement::Queue(QueueRecord {
                    destination: next_hop.clone(),
                    hops_taken: 0,
                    our_evidence: previous,
                    expires_at: header.expires_at,
                    accepted_at: now,
                    attempts: 0,
                    next_attempt_ms: 0,
                    last_error: None,
                    envelope,
                }),
                now,
                extra,
                send_evidence: true,
            })
            .await?;
        match outcome {
            Outcome::Stored => {
                self.queue_gauge(&next_hop).inc();
                let _ = self.schedule.send((0, header.envelope_id, next_hop));
            }
            Outcome::QueueFull => return Err(NodeError::QueueFull),
            _ => {}
        }
        Ok(outcome)
    }

    // ------------------------------------------------------------ forwarder

    async fn schedule_loop(
        self: Arc<Self>,
        mut rx: mpsc::UnboundedReceiver<(u64, EnvelopeId, NodeId)>,
    ) {
        let mut due: BTreeSet<(u64, EnvelopeId)> = BTreeSet::new();
        let mut destinations: HashMap<EnvelopeId, NodeId> = HashMap::new();
        loop {
            let now = now_ms();
            while let Some(&(at, id)) = due.first() {
                if at > now {
                    break;
                }
                due.pop_first();
                if let Some(dest) = destinations.remove(&id) {
                    tokio::spawn(self.clone().forward_one(id, dest));
                }
            }
            let sleep_ms = due
                .first()
                .map(|(at, _)| at.saturating_sub(now))
                .unwrap_or(60_000);
            tokio::select! {
                item = rx.recv() => match item {
                    Some((at, id, dest)) => {
                        if destinations.insert(id, dest).is_none() {
                            due.insert((at, id));
                        }
                        // Take everything waiting before sleeping again.
                        while let Ok((at, id, dest)) = rx.try_recv() {
                            if destinations.insert(id, dest).is_none() {
                                due.insert((at, id));
                            }
                        }
                    }
                    None => return,
                },
                _ = tokio::time::sleep(Duration::from_millis(sleep_ms)) => {}
                _ = self.stopped.notified() => return,
            }
        }
    }

    fn peer_slot(&self, peer: &NodeId) -> Arc<Semaphore> {
        let mut slots = match self.peer_slots.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        slots
            .entry(peer.clone())
            .or_insert_with(|| {
                Arc::new(Semaphore::new(
                    self.config.limits.forward_concurrency_per_peer as usize,
                ))
            })
            .clone()
    }

    async fn forward_one(self: Arc<Self>, id: EnvelopeId, dest: NodeId) {
        let Ok(_permit) = self.peer_slot(&dest).acquire_owned().await else {
            return;
        };
        if self.stopping.load(Ordering::SeqCst) {
            return;
        }
        let record = match self.store.queue_get(&id) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(error = %e, envelope = %id, "reading the queue failed");
                return;
            }
        };
        let now = estafette_pki::now();
        if let Some(reason) = self
            .config
            .retry
            .gives_up(record.accepted_at, record.expires_at, now)
        {
            self.give_up(id, &dest, &record, reason, None).await;
            return;
        }
        let trust = self.trust();
        let Some(entry) = trust.node(&dest) else {
            self.retry(
                id,
                &dest,
                &record,
                format!("{dest} is not in the trust list"),
            )
            .await;
            return;
        };
        let offer = Offer {
            hops_taken: record.hops_taken,
            previous_evidence: record.our_evidence,
            envelope: record.envelope.clone(),
        };
        let envelope_digest = Digest::of(&record.envelope);
        match self
            .peers
            .request(&dest, &entry.address, &Request::Offer(offer))
            .await
        {
            Ok(Response::Accepted(evidence)) => {
                match check_answer(&trust, &dest, &evidence, envelope_digest) {
                    Ok(record_back) => {
                        // The gateway keeps the next node's acceptance with
                        // the forward, in one transaction.
                        let evidence = self.is_gateway.then(|| NewEvidence {
                            evidence_id: record_back.evidence_id,
                            message_id: record_back.message_id,
                            bytes: evidence.into_vec(),
                        });
                        let note = self.is_gateway.then(|| StoredEvidence {
                            message_id: record_back.message_id,
                            event: record_back.event,
                            issuer: record_back.issuer.clone(),
                        });
                        match self
                            .store
                            .write(Op::Forwarded {
                                envelope_id: id,
                                evidence,
                            })
                            .await
                        {
                            Ok(_) => {
                                self.metrics.forwarded.inc();
                                self.queue_gauge(&dest).dec();
                                if let Some(note) = note {
                                    // No observer is fine.
                                    let _ = self.evidence_stored.send(note);
                                }
                            }
                            Err(e) => {
                                tracing::error!(error = %e, envelope = %id, "recording a forward failed")
                            }
                        }
                    }
                    Err(problem) => self.retry(id, &dest, &record, problem).await,
                }
            }
            Ok(Response::Rejected(evidence)) => {
                let reason = Evidence::verify(&evidence, &trust)
                    .ok()
                    .and_then(|v| v.record.reason)
                    .unwrap_or(ReasonCode::Malformed);
                self.give_up(id, &dest, &record, reason, Some(evidence.into_vec()))
                    .await;
            }
            Ok(Response::Refused { reason, detail }) => {
                self.retry(
                    id,
                    &dest,
                    &record,
                    format!("refused ({}): {detail}", reason.code()),
                )
                .await;
            }
            Ok(Response::EvidenceStored(_) | Response::Citizen(_)) => {
                self.retry(id, &dest, &record, "answer of the wrong kind".into())
                    .await;
            }
            Err(e) => self.retry(id, &dest, &record, e.to_string()).await,
        }
    }

    async fn retry(&self, id: EnvelopeId, dest: &NodeId, record: &QueueRecord, error: String) {
        self.metrics.forward_retries.inc();
        let delay = self.config.retry.delay_ms(record.attempts, jitter());
        let next = now_ms() + delay;
        tracing::debug!(envelope = %id, peer = %dest, attempts = record.attempts + 1, delay_ms = delay, error = %error, "forward will be retried");
        if let Some(held_back) = self.log_throttle.allow(&format!("forward {dest}")) {
            tracing::warn!(peer = %dest, error = %error, failures_since_last_line = held_back, "forwarding fails; envelopes wait and are retried");
        }
        let op = Op::Reschedule {
            envelope_id: id,
            attempts: record.attempts + 1,
            next_attempt_ms: next,
            last_error: error,
        };
        if let Err(e) = self.store.write(op).await {
            tracing::error!(error = %e, "rescheduling failed");
        }
        let _ = self.schedule.send((next, id, dest.clone()));
    }

    async fn give_up(
        &self,
        id: EnvelopeId,
        dest: &NodeId,
        record: &QueueRecord,
        reason: ReasonCode,
        rejection: Option<Vec<u8>>,
    ) {
        let header = relay::peek_header(&record.envelope);
        let failure = relay::relay_evidence(
            &self.id,
            EvidenceEvent::RelayFailure,
            header.as_ref(),
            Digest::of(&record.envelope),
            record.our_evidence,
            Some(reason),
            estafette_pki::now(),
            &mut OsRng,
        );
        let (failure, _) = self.new_evidence(&failure);
        let mut evidence = vec![failure];
        if let Some(bytes) = rejection
            && let Ok(v) = Evidence::verify(&bytes, &self.trust())
        {
            evidence.push(NewEvidence {
                evidence_id: v.record.evidence_id,
                message_id: v.record.message_id,
                bytes,
            });
        }
        let ids: Vec<EvidenceId> = evidence.iter().map(|e| e.evidence_id).collect();
        match self
            .store
            .write(Op::Fail {
                envelope_id: id,
                evidence,
            })
            .await
        {
            Ok(_) => {
                self.metrics
                    .failed
                    .get_or_create(&ReasonLabel {
                        reason: reason.code().into(),
                    })
                    .inc();
                self.queue_gauge(dest).dec();
                tracing::warn!(envelope = %id, peer = %dest, reason = reason.code(), "envelope given up");
                for id in ids {
                    self.notify_outbox(id);
                }
            }
            Err(e) => tracing::error!(error = %e, "recording a failure failed"),
        }
    }

    // ------------------------------------------------------------ evidence outbox

    async fn outbox_loop(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<(u64, EvidenceId)>) {
        let mut due: BTreeSet<(u64, EvidenceId)> = BTreeSet::new();
        let mut attempts: HashMap<EvidenceId, u32> = HashMap::new();
        loop {
            let now = now_ms();
            let mut batch = Vec::new();
            while let Some(&(at, id)) = due.first() {
                if at > now || batch.len() >= MAX_EVIDENCE_PER_DELIVERY {
                    break;
                }
                due.pop_first();
                batch.push(id);
            }
            if !batch.is_empty() {
                let sent = self.deliver_evidence(&batch).await;
                match sent {
                    Ok(()) => {
                        for id in &batch {
                            attempts.remove(id);
                        }
                    }
                    Err(error) => {
                        let n = batch
                            .iter()
                            .map(|id| attempts.get(id).copied().unwrap_or(0))
                            .max()
                            .unwrap_or(0);
                        let next = now_ms() + self.config.retry.delay_ms(n, jitter());
                        for id in &batch {
                            attempts.insert(*id, n + 1);
                            due.insert((next, *id));
                        }
                        let op = Op::OutboxRetry {
                            ids: batch,
                            next_attempt_ms: next,
                            last_error: error,
                        };
                        if let Err(e) = self.store.write(op).await {
                            tracing::error!(error = %e, "rescheduling evidence failed");
                        }
                    }
                }
                continue;
            }
            let sleep_ms = due
                .first()
                .map(|(at, _)| at.saturating_sub(now))
                .unwrap_or(60_000);
            tokio::select! {
                item = rx.recv() => match item {
                    Some((at, id)) => {
                        due.insert((at, id));
                        while let Ok((at, id)) = rx.try_recv() {
                            due.insert((at, id));
                        }
                    }
                    None => return,
                },
                _ = tokio::time::sleep(Duration::from_millis(sleep_ms)) => {}
                _ = self.stopped.notified() => return,
            }
        }
    }

    async fn deliver_evidence(&self, ids: &[EvidenceId]) -> Result<(), String> {
        let items = self.store.outbox_get(ids).map_err(|e| e.to_string())?;
        if items.is_empty() {
            return Ok(());
        }
        let trust = self.trust();
        let gateway = trust.gateway().ok_or("no gateway in the trust list")?;
        let request = Request::Evidence(
            items
                .iter()
                .map(|(_, b)| serde_bytes::ByteBuf::from(b.clone()))
                .collect(),
        );
        match self
            .peers
            .request(&gateway.id, &gateway.address, &request)
            .await
        {
            Ok(Response::EvidenceStored(_)) => {
                let ids: Vec<EvidenceId> = items.iter().map(|(id, _)| *id).collect();
                let n = ids.len() as u64;
                self.store
                    .write(Op::OutboxDone { ids })
                    .await
                    .map_err(|e| e.to_string())?;
                self.metrics.evidence_sent.inc_by(n);
                Ok(())
            }
            Ok(Response::Refused { reason, detail }) => {
                Err(format!("refused ({}): {detail}", reason.code()))
            }
            Ok(_) => Err("answer of the wrong kind".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    // ------------------------------------------------------------ housekeeping

    async fn housekeeping_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        let mut last_prune = std::time::Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.stopped.notified() => return,
            }
            if last_prune.elapsed() > Duration::from_secs(3600) {
                last_prune = std::time::Instant::now();
                let before = estafette_pki::now().minus_s(self.config.limits.dedup_retention_s);
                if let Err(e) = self.store.write(Op::Prune { before }).await {
                    tracing::error!(error = %e, "pruning the dedup index failed");
                }
            }
        }
    }

    /// Checks that peers can reach this node where the trust list says it
    /// is: a QUIC handshake with this node's id at that address. A node
    /// that listens elsewhere still sends, but nothing reaches it (evidence,
    /// citizen requests, envelopes): say so loudly, and in `/metrics`.
    async fn probe_own_address(self: Arc<Self>) {
        let Some(address) = self.trust().node(&self.id).map(|n| n.address.clone()) else {
            return;
        };
        let listen = self.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let outcome = async {
            let addr = tokio::net::lookup_host(&address)
                .await
                .map_err(|e| format!("it does not resolve: {e}"))?
                .next()
                .ok_or_else(|| "it does not resolve".to_string())?;
            let connecting = self
                .endpoint
                .connect(addr, self.id.as_str())
                .map_err(|e| e.to_string())?;
            let conn = tokio::time::timeout(crate::transport::CONNECT_TIMEOUT, connecting)
                .await
                .map_err(|_| {
                    format!(
                        "no QUIC handshake within {} ms",
                        crate::transport::CONNECT_TIMEOUT.as_millis()
                    )
                })?
                .map_err(|e| e.to_string())?;
            conn.close(quinn::VarInt::from_u32(0), b"address check");
            Ok::<(), String>(())
        }
        .await;
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

    /// Whether this node answered a QUIC handshake at the address the trust
    /// list gives for it (`None` until checked at start).
    pub fn address_check(&self) -> Option<Result<(), String>> {
        self.address_check.lock().ok().and_then(|c| c.clone())
    }

    /// The node's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The federation root and the CRL in force (for the HTTPS APIs).
    pub fn verifiers(&self) -> Arc<tls::LiveVerifiers> {
        self.verifiers.clone()
    }

    /// Changes each time a reload revokes something: HTTPS loops then close
    /// the connections whose certificate the CRL now revokes.
    pub fn revocations(&self) -> tokio::sync::watch::Receiver<u64> {
        self.revocations.subscribe()
    }

    /// Re-reads the trust list and CRL at once (SIGHUP).
    pub fn reload(&self) {
        self.reload_now.notify_one();
    }

    fn federation_stamps(&self) -> FileStamps {
        FileStamps::of(&[&self.config.pki.trust_list, &self.config.pki.crl])
    }

    fn note_federation_files(&self) {
        let stamps = self.federation_stamps();
        if let Ok(mut s) = self.federation_files.lock() {
            *s = Some(stamps);
        }
    }

    async fn reload_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(FEDERATION_RELOAD_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let forced = tokio::select! {
                _ = tick.tick() => false,
                _ = self.reload_now.notified() => true,
                _ = self.stopped.notified() => return,
            };
            let stamps = self.federation_stamps();
            let changed = self
                .federation_files
                .lock()
                .map(|s| s.as_ref() != Some(&stamps))
                .unwrap_or(true);
            if changed || forced {
                self.reload_federation();
                if let Ok(mut s) = self.federation_files.lock() {
                    *s = Some(stamps);
                }
            }
        }
    }

    /// Takes a newer trust list and CRL from disk (each only if it
    /// verifies), then closes the QUIC connections of peers they revoke.
    pub fn reload_federation(&self) {
        let mut revoked_something = false;
        let path = &self.config.pki.trust_list;
        match std::fs::read(path) {
            Ok(bytes)
                if !self
                    .trust_bytes
                    .read()
                    .map(|b| *b == bytes)
                    .unwrap_or(false) =>
            {
                match TrustList::verify_update(
                    &bytes,
                    &self.root_key,
                    estafette_pki::now(),
                    &self.trust(),
                ) {
                    Ok(list) => {
                        let more_revoked =
                            list.content().revoked.len() != self.trust().content().revoked.len();
                        tracing::info!(version = list.content().version, "trust list reloaded");
                        if let Ok(mut t) = self.trust.write() {
                            *t = Arc::new(list);
                        }
                        if let Ok(mut b) = self.trust_bytes.write() {
                            *b = bytes;
                        }
                        revoked_something |= more_revoked;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "new trust list refused; keeping the current one")
                    }
                }
            }
            Ok(_) => {}
            Err(e) => tracing::error!(path = %path.display(), error = %e, "reading the trust list"),
        }
        match tls::load_crl(&self.config.pki.crl).and_then(|crl| self.verifiers.update_crl(crl)) {
            Ok(true) => {
                tracing::info!("CRL reloaded");
                revoked_something = true;
            }
            Ok(false) => {}
            Err(e) => tracing::error!(error = %e, "new CRL refused; keeping the current one"),
        }
        if revoked_something {
            self.close_revoked();
            self.revocations.send_modify(|n| *n += 1);
        }
    }

    /// Closes incoming and outgoing QUIC connections whose peer the CRL or
    /// the trust list now revokes.
    fn close_revoked(&self) {
        let trust = self.trust();
        let revoked = |conn: &quinn::Connection| {
            let certificate = conn
                .peer_identity()
                .and_then(|i| {
                    i.downcast::<Vec<rustls_pki_types::CertificateDer<'static>>>()
                        .ok()
                })
                .and_then(|certs| certs.first().cloned());
            match certificate {
                Some(cert) => {
                    self.verifiers.is_revoked(&cert)
                        || tls::node_id(&cert).is_ok_and(|id| trust.node(&id).is_none())
                }
                None => true,
            }
        };
        let mut closed = 0;
        for conn in self.incoming_connections().values() {
            if revoked(conn) {
                conn.close(quinn::VarInt::from_u32(CLOSE_REVOKED), b"revoked");
                closed += 1;
            }
        }
        closed += self.peers.close_where(revoked);
        if closed > 0 {
            tracing::warn!(
                connections = closed,
                "closed the connections of revoked peers"
            );
        }
    }

    /// Sets the queue-depth gauges from the store.
    fn update_queue_gauges(&self) -> Result<(), StoreError> {
        let mut counts: HashMap<NodeId, i64> = HashMap::new();
        for (_, record) in self.store.queue_snapshot()? {
            *counts.entry(record.destination).or_default() += 1;
        }
        for (dest, n) in counts {
            self.queue_gauge(&dest).set(n);
        }
        self.metrics
            .outbox_depth
            .set(self.store.outbox_len() as i64);
        Ok(())
    }

    // ------------------------------------------------------------ home: inbox API

    /// The letters of one inbox: envelope id and record (message bytes included).
    pub fn inbox_list(&self, inbox: &InboxId) -> Result<Vec<(EnvelopeId, InboxRecord)>, NodeError> {
        Ok(self.store.inbox_list(inbox)?)
    }

    pub fn count_unread(&self, inbox: &InboxId) -> Result<usize, NodeError> {
        Ok(self.store.count_unread(inbox)?)
    }

    /// Opens a letter for `actor`: signs ContentHandover, records it durably,
    /// and only then gives the SignedMessage bytes.
    pub async fn open_letter(
        &self,
        inbox: &InboxId,
        envelope: &EnvelopeId,
        actor: Actor,
    ) -> Result<Vec<u8>, NodeError> {
        let record = self
            .store
            .inbox_get(inbox, envelope)?
            .ok_or(NodeError::NoSuchLetter)?;
        let now = estafette_pki::now();
        let handover = EvidenceRecord {
            evidence_id: EvidenceId::random(&mut OsRng),
            event: EvidenceEvent::ContentHandover,
            envelope_id: Some(*envelope),
            message_id: Some(record.message_id),
            message_digest: Some(Digest::of(&record.message)),
            envelope_digest: None,
            issuer: self.id.clone(),
            issued_at: now,
            reason: None,
            actor: Some(actor),
            previous: Some(record.last_evidence),
        };
        let access = crate::store::AccessEntry {
            at: now,
            envelope_id: *envelope,
            message_id: record.message_id,
            actor: handover.actor.clone().unwrap_or(Actor {
                role: estafette_spec::ActorRole::Holder,
                representative: None,
                mandate: None,
            }),
        };
        let (evidence, _) = self.new_evidence(&handover);
        self.store
            .write(Op::MarkOpened {
                inbox_id: *inbox,
                envelope_id: *envelope,
                opened_at: now,
                evidence,
                access,
            })
            .await?;
        self.notify_outbox(handover.evidence_id);
        Ok(record.message)
    }
}

fn refused(reason: ReasonCode, detail: String) -> Response {
    Response::Refused { reason, detail }
}

/// Checks the next hop's acceptance: its own signature, the right event, and
/// that it is about the envelope we offered.
fn check_answer(
    trust: &TrustList,
    peer: &NodeId,
    evidence: &[u8],
    envelope_digest: Digest,
) -> Result<EvidenceRecord, String> {
    let verified = Evidence::verify(evidence, trust)
        .map_err(|e| format!("acceptance does not verify: {e}"))?;
    let r = verified.record;
    if &r.issuer != peer {
        return Err(format!("acceptance signed by {}, not {peer}", r.issuer));
    }
    if !matches!(
        r.event,
        EvidenceEvent::RelayAcceptance | EvidenceEvent::ContentConsignment
    ) {
        return Err(format!("expected an acceptance, got {:?}", r.event));
    }
    if r.envelope_digest != Some(envelope_digest) {
        return Err("acceptance is about another envelope".into());
    }
    Ok(r)
}

fn root_public_key(
    root: &rustls_pki_types::CertificateDer<'_>,
) -> Result<ed25519_dalek::VerifyingKey, NodeError> {
    let bad = |m: &str| NodeError::Pki(estafette_pki::PkiError::Certificate(m.into()));
    let key = tls::ed25519_public_key(root).map_err(NodeError::Pki)?;
    ed25519_dalek::VerifyingKey::from_bytes(&key)
        .map_err(|_| bad("root key is not a valid Ed25519 key"))
}
