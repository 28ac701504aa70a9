//! The relay role: taking offers (store durably, then sign), the queue of a
//! relay with its evidence going to the outbox, and the outbox that
//! carries the node's evidence to the gateway. Protocol decisions come
//! from `estafette_spec::relay`; durability from [`Store`].

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use estafette_spec::relay::{
    MAX_EVIDENCE_PER_DELIVERY, Offer, OfferDecision, Receiver, Request, Response,
};
use estafette_spec::{
    Digest, EnvelopeId, EvidenceEvent, EvidenceId, NodeId, ReasonCode, Timestamp,
};
use rand_core::{OsRng, RngCore};
use tokio::sync::mpsc;

use crate::core::NodeCore;
use crate::forwarder::{Acceptance, ForwardQueue, Forwarder, QueueWrite, Waiting};
use crate::metrics::ReasonLabel;
use crate::server::{Handled, RequestHandler, refused};
use crate::store::{
    EvidenceTo, InboxRecord, NewEvidence, Op, Outcome, Placement, QueueRecord, Store, StoreError,
};

/// Most evidence ids waiting to be picked up by the outbox loop; senders
/// wait beyond it.
pub const OUTBOX_NOTES_CAPACITY: usize = 65_536;

fn jitter() -> f64 {
    (OsRng.next_u32() as f64) / (u32::MAX as f64 + 1.0)
}

/// The outbox: carries this node's evidence to the gateway, in batches,
/// retrying with the node's backoff; each object leaves the durable outbox
/// only once the gateway said it stored it.
pub struct Outbox {
    core: Arc<NodeCore>,
    store: Arc<Store>,
    notes: mpsc::Sender<(u64, EvidenceId)>,
}

impl Outbox {
    /// Starts delivering what the store's outbox holds and what is added.
    pub fn start(core: Arc<NodeCore>, store: Arc<Store>) -> Result<Arc<Outbox>, StoreError> {
        let (notes, rx) = mpsc::channel(OUTBOX_NOTES_CAPACITY);
        let outbox = Arc::new(Outbox { core, store, notes });
        let waiting = outbox.store.outbox_snapshot()?;
        tokio::spawn(outbox.clone().run(rx));
        let feeder = outbox.clone();
        tokio::spawn(async move {
            for (id, due, _) in waiting {
                if feeder.notes.send((due, id)).await.is_err() {
                    return;
                }
            }
        });
        Ok(outbox)
    }

    /// New evidence is in the durable outbox: send it soon.
    pub async fn added(&self, id: EvidenceId) {
        let _ = self.notes.send((0, id)).await;
    }

    async fn run(self: Arc<Self>, mut rx: mpsc::Receiver<(u64, EvidenceId)>) {
        let mut due: BTreeSet<(u64, EvidenceId)> = BTreeSet::new();
        let mut attempts: HashMap<EvidenceId, u32> = HashMap::new();
        loop {
            let now = self.core.clock.now_ms();
            let mut batch = Vec::new();
            while let Some(&(at, id)) = due.first() {
                if at > now || batch.len() >= MAX_EVIDENCE_PER_DELIVERY {
                    break;
                }
                due.pop_first();
                batch.push(id);
            }
            if !batch.is_empty() {
                if let Err(error) = self.deliver(&batch).await {
                    self.retry_later(batch, error, &mut due, &mut attempts)
                        .await;
                } else {
                    for id in &batch {
                        attempts.remove(id);
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
                _ = self.core.stopped.notified() => return,
            }
        }
    }

    async fn retry_later(
        &self,
        batch: Vec<EvidenceId>,
        error: String,
        due: &mut BTreeSet<(u64, EvidenceId)>,
        attempts: &mut HashMap<EvidenceId, u32>,
    ) {
        let n = batch
            .iter()
            .map(|id| attempts.get(id).copied().unwrap_or(0))
            .max()
            .unwrap_or(0);
        let next = self.core.clock.now_ms() + self.core.config.retry.delay_ms(n, jitter());
        for id in &batch {
            attempts.insert(*id, n + 1);
            due.insert((next, *id));
        }
        if let Some(held_back) = self.core.log_throttle.allow("evidence delivery") {
            tracing::warn!(error = %error, failures_since_last_line = held_back, "evidence cannot be delivered to the gateway; it waits in the outbox");
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

    async fn deliver(&self, ids: &[EvidenceId]) -> Result<(), String> {
        let items = self.store.outbox_get(ids).map_err(|e| e.to_string())?;
        if items.is_empty() {
            return Ok(());
        }
        let trust = self.core.trust();
        let gateway = trust.gateway().ok_or("no gateway in the trust list")?;
        let request = Request::Evidence(
            items
                .iter()
                .map(|(_, b)| serde_bytes::ByteBuf::from(b.clone()))
                .collect(),
        );
        match self.core.peers.request_node(gateway, &request).await {
            Ok(Response::EvidenceStored(_)) => {
                let ids: Vec<EvidenceId> = items.iter().map(|(id, _)| *id).collect();
                let n = ids.len() as u64;
                self.store
                    .write(Op::OutboxDone { ids })
                    .await
                    .map_err(|e| e.to_string())?;
                self.core.metrics.evidence_sent.inc_by(n);
                Ok(())
            }
            Ok(Response::Refused { reason, detail }) => {
                Err(format!("refused ({}): {detail}", reason.code()))
            }
            Ok(_) => Err("answer of the wrong kind".into()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// A relay's forward queue: its own store; its evidence goes to the outbox.
pub struct RelayQueue {
    pub store: Arc<Store>,
    pub outbox: Arc<Outbox>,
}

impl ForwardQueue for RelayQueue {
    fn lines(&self) -> Result<Vec<(NodeId, u64)>, StoreError> {
        self.store.queue_lines()
    }

    fn line(&self, next_hop: &NodeId, limit: usize) -> Result<Vec<Waiting>, StoreError> {
        self.store.queue_line(next_hop, limit)
    }

    fn expiring(
        &self,
        by: Timestamp,
        limit: usize,
    ) -> Result<Vec<(EnvelopeId, NodeId)>, StoreError> {
        self.store.queue_expiring(by, limit)
    }

    fn get(&self, id: &EnvelopeId) -> Result<Option<QueueRecord>, StoreError> {
        self.store.queue_get(id)
    }

    fn forwarded(&self, id: EnvelopeId, _acceptance: Acceptance) -> QueueWrite<'_> {
        // The next hop sends its own evidence to the gateway.
        Box::pin(async move {
            self.store
                .write(Op::Forwarded {
                    envelope_id: id,
                    evidence: None,
                })
                .await
                .map(|_| ())
        })
    }

    fn reschedule(
        &self,
        id: EnvelopeId,
        attempts: u32,
        next_attempt_ms: u64,
        error: String,
    ) -> QueueWrite<'_> {
        Box::pin(self.store.reschedule(id, attempts, next_attempt_ms, error))
    }

    fn give_up(&self, id: EnvelopeId, evidence: Vec<NewEvidence>) -> QueueWrite<'_> {
        Box::pin(async move {
            let ids: Vec<EvidenceId> = evidence.iter().map(|e| e.evidence_id).collect();
            self.store
                .write(Op::Fail {
                    envelope_id: id,
                    evidence,
                    to: EvidenceTo::Outbox,
                })
                .await?;
            for id in ids {
                self.outbox.added(id).await;
            }
            Ok(())
        })
    }
}

/// What a relay (transit or home) answers: offers. Evidence deliveries and
/// citizen requests are the gateway's.
pub struct RelayHandler {
    pub core: Arc<NodeCore>,
    pub store: Arc<Store>,
    pub forwarder: Arc<Forwarder>,
    pub outbox: Arc<Outbox>,
}

impl RequestHandler for RelayHandler {
    fn handle<'a>(&'a self, peer: &'a NodeId, request: Request) -> Handled<'a> {
        Box::pin(async move {
            let trust = self.core.trust();
            let receiver = Receiver {
                trust: &trust,
                me: &self.core.id,
            };
            match request {
                Request::Offer(offer) => self.offer(&receiver, peer, offer).await,
                Request::Evidence(_) => match receiver.authorize_evidence_delivery(peer) {
                    Err(r) => refused(r.reason, r.detail),
                    Ok(()) => refused(ReasonCode::NotForThisNode, "no evidence here"),
                },
                Request::Citizen(_) => match receiver.authorize_citizen_request(peer) {
                    Err(r) => refused(r.reason, r.detail),
                    Ok(()) => refused(ReasonCode::NotForThisNode, "no citizen requests here"),
                },
            }
        })
    }
}

impl RelayHandler {
    /// A signed rejection of an offer; nothing is stored.
    fn reject(
        &self,
        receiver: &Receiver<'_>,
        offer: &Offer,
        refusal: estafette_spec::relay::OfferRefusal,
        peer: &NodeId,
    ) -> Response {
        let record = receiver.evidence(
            EvidenceEvent::RelayRejection,
            refusal.header.as_deref(),
            offer,
            Some(refusal.reason),
            self.core.clock.now(),
            &mut OsRng,
        );
        self.core
            .metrics
            .rejected
            .get_or_create(&ReasonLabel {
                reason: refusal.reason.code().into(),
            })
            .inc();
        tracing::info!(peer = %peer, reason = refusal.reason.code(), envelope = ?refusal.header.as_ref().map(|h| h.envelope_id), "offer rejected");
        Response::Rejected(serde_bytes::ByteBuf::from(self.core.sign(&record)))
    }

    async fn offer(&self, receiver: &Receiver<'_>, peer: &NodeId, offer: Offer) -> Response {
        let now = self.core.clock.now();
        let decision = match receiver.check_offer(&offer, now, self.core.hpke.as_ref()) {
            Ok(d) => d,
            Err(refusal) => return self.reject(receiver, &offer, refusal, peer),
        };
        let header = decision.header().clone();
        let event = match &decision {
            OfferDecision::Forward { .. } => EvidenceEvent::RelayAcceptance,
            OfferDecision::Deliver { .. } => EvidenceEvent::ContentConsignment,
        };
        let record = receiver.evidence(event, Some(&header), &offer, None, now, &mut OsRng);
        let evidence = self.core.new_evidence(&record);
        let ours = Digest::of(&evidence.bytes);
        let placement = Self::placement(decision, &offer, now, ours);
        let destination = match &placement {
            Placement::Queue(q) => Some((q.destination.clone(), q.accepted_at)),
            Placement::Inbox { .. } => None,
        };
        // An offer straight from the gateway: the gateway keeps our
        // acceptance from the answer (and offers again until it has it), so
        // it need not also travel through the outbox.
        let from_gateway = receiver.trust.gateway().is_some_and(|g| &g.id == peer);
        let bytes = evidence.bytes.clone();
        let outcome = self
            .store
            .write(Op::Accept {
                envelope_id: header.envelope_id,
                evidence: Some(evidence),
                placement,
                now,
                extra: None,
                evidence_to: (!from_gateway).then_some(EvidenceTo::Outbox),
            })
            .await;
        self.answer_offer(
            outcome,
            &header,
            destination,
            from_gateway,
            (record.evidence_id, bytes),
        )
        .await
    }
    /// Where an accepted envelope goes: the queue for its next hop, or the inbox.
    fn placement(
        decision: OfferDecision,
        offer: &Offer,
        now: estafette_spec::Timestamp,
        ours: Digest,
    ) -> Placement {
        match decision {
            OfferDecision::Forward {
                next_hop, header, ..
            } => Placement::Queue(QueueRecord {
                destination: next_hop,
                hops_taken: offer.hops_taken.saturating_add(1),
                our_evidence: Some(ours),
                expires_at: header.expires_at,
                accepted_at: now,
                attempts: 0,
                next_attempt_ms: 0,
                last_error: None,
                envelope: offer.envelope.clone(),
                seq: 0,
            }),
            OfferDecision::Deliver {
                header,
                message,
                letter,
                ..
            } => Placement::Inbox {
                inbox_id: header.inbox_id,
                record: InboxRecord::delivered(&header, &letter, now, ours),
                message,
            },
        }
    }

    /// The answer once the store has spoken: our evidence (or the one given
    /// before, for a duplicate), or a refusal to try again.
    async fn answer_offer(
        &self,
        outcome: Result<Outcome, crate::store::StoreError>,
        header: &estafette_spec::RoutingHeader,
        destination: Option<(NodeId, estafette_spec::Timestamp)>,
        from_gateway: bool,
        (evidence_id, bytes): (estafette_spec::EvidenceId, Vec<u8>),
    ) -> Response {
        match outcome {
            Ok(Outcome::Stored) => {
                self.core.metrics.accepted.inc();
                match destination {
                    Some((dest, accepted_at)) => {
                        self.forwarder
                            .enqueued(header.envelope_id, dest, accepted_at)
                            .await
                    }
                    None => {
                        self.core.metrics.delivered.inc();
                    }
                }
                if !from_gateway {
                    self.outbox.added(evidence_id).await;
                }
                Response::Accepted(serde_bytes::ByteBuf::from(bytes))
            }
            Ok(Outcome::Duplicate { evidence }) => {
                self.core.metrics.duplicates.inc();
                Response::Accepted(serde_bytes::ByteBuf::from(evidence))
            }
            Ok(Outcome::QueueFull) => refused(
                ReasonCode::StorageFailure,
                "forward queue is full; try again later",
            ),
            Ok(Outcome::Done) => refused(ReasonCode::StorageFailure, "unexpected store outcome"),
            Err(e) => {
                tracing::error!(error = %e, "storing an accepted envelope failed");
                refused(
                    ReasonCode::StorageFailure,
                    "could not store the envelope; try again",
                )
            }
        }
    }
}
