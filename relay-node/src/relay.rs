//! The relay role: taking offers (store durably, then sign), the queue of a
//! relay with its evidence going to the outbox, and the outbox that
//! carries the node's evidence to the gateway. Protocol decisions come
//! from `estafette_spec::relay`; durability from [`Store`].

use std::sync::Arc;
use std::time::Duration;

use estafette_spec::relay::{
    MAX_EVIDENCE_PER_DELIVERY, Offer, OfferDecision, Receiver, Request, Response,
};
use estafette_spec::{
    Digest, EnvelopeId, EvidenceEvent, EvidenceId, NodeId, ReasonCode, Timestamp,
};
use rand_core::{OsRng, RngCore};
use tokio::sync::Notify;

use crate::core::NodeCore;
use crate::forwarder::{Acceptance, ForwardQueue, Forwarder, QueueWrite, Waiting};
use crate::metrics::ReasonLabel;
use crate::server::{Handled, RequestHandler, refused, refused_clock_ahead};
use crate::store::{
    EvidenceTo, InboxRecord, NewEvidence, Op, OutboxEntry, Outcome, Placement, QueueRecord, Store,
    StoreError,
};

/// How long the outbox waits before reading its line again after the
/// store failed to give it.
const OUTBOX_STORE_RETRY: Duration = Duration::from_secs(1);

fn jitter() -> f64 {
    (OsRng.next_u32() as f64) / (u32::MAX as f64 + 1.0)
}

/// Why a batch of evidence did not reach the gateway.
enum DeliveryFailure {
    /// Not heard (no connection, no answer, no gateway): the batch stays at
    /// the front and the outbox waits.
    Unheard(String),
    /// The gateway answered no: the batch goes to the back of the line so
    /// that what it refuses does not hold up the rest.
    Refused(String),
}

/// The outbox: carries this node's evidence to the gateway in batches from
/// the front of the store's outbox line, one batch at a time. Each object
/// leaves the durable outbox only once the gateway said it stored it. It
/// holds nothing in memory but the batch in flight, and backs off as a
/// whole while the gateway does not answer (one attempt per backoff step,
/// however long the line).
pub struct Outbox {
    core: Arc<NodeCore>,
    store: Arc<Store>,
    added: Notify,
}

impl Outbox {
    /// Starts delivering what the store's outbox holds and what is added.
    pub fn start(core: Arc<NodeCore>, store: Arc<Store>) -> Arc<Outbox> {
        let outbox = Arc::new(Outbox {
            core,
            store,
            added: Notify::new(),
        });
        tokio::spawn(outbox.clone().run());
        outbox
    }

    /// New evidence is in the durable outbox: send it soon.
    pub fn added(&self) {
        self.added.notify_one();
    }

    async fn run(self: Arc<Self>) {
        // Failed attempts in a row: the step of the backoff.
        let mut failures: u32 = 0;
        loop {
            let wait = match self.store.outbox_front(MAX_EVIDENCE_PER_DELIVERY) {
                Ok(batch) if batch.is_empty() => None,
                Ok(batch) => match self.deliver(&batch).await {
                    Ok(()) => {
                        failures = 0;
                        continue;
                    }
                    Err(failure) => {
                        let delay = self.core.config.retry.delay_ms(failures, jitter());
                        failures = failures.saturating_add(1);
                        self.failed(batch, failure).await;
                        Some(Duration::from_millis(delay))
                    }
                },
                Err(error) => {
                    tracing::error!(error = %error, "reading the outbox failed; trying again");
                    Some(OUTBOX_STORE_RETRY)
                }
            };
            let stopped = self.core.stopped.notified();
            match wait {
                None => tokio::select! {
                    _ = self.added.notified() => {}
                    _ = stopped => return,
                },
                Some(wait) => tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stopped => return,
                },
            }
        }
    }

    async fn failed(&self, batch: Vec<OutboxEntry>, failure: DeliveryFailure) {
        self.core.metrics.evidence_delivery_failures.inc();
        let (error, to_back) = match failure {
            DeliveryFailure::Unheard(e) => (e, false),
            DeliveryFailure::Refused(e) => (e, true),
        };
        if let Some(held_back) = self.core.log_throttle.allow("evidence delivery") {
            tracing::warn!(error = %error, failures_since_last_line = held_back, "evidence cannot be delivered to the gateway; it waits in the outbox");
        }
        if to_back {
            let entries = batch.into_iter().map(|e| (e.place, e.id)).collect();
            if let Err(e) = self.store.write(Op::OutboxToBack { entries }).await {
                tracing::error!(error = %e, "moving refused evidence to the back of the outbox failed");
            }
        }
    }

    async fn deliver(&self, batch: &[OutboxEntry]) -> Result<(), DeliveryFailure> {
        let trust = self.core.trust();
        let gateway = trust
            .gateway()
            .ok_or_else(|| DeliveryFailure::Unheard("no gateway in the trust list".into()))?;
        let request = Request::Evidence(
            batch
                .iter()
                .map(|e| serde_bytes::ByteBuf::from(e.evidence.clone()))
                .collect(),
        );
        match self.core.peers.request_node(gateway, &request).await {
            Ok(Response::EvidenceStored(_)) => {
                let entries: Vec<(u64, EvidenceId)> =
                    batch.iter().map(|e| (e.place, e.id)).collect();
                let n = entries.len() as u64;
                self.store
                    .write(Op::OutboxDone { entries })
                    .await
                    .map_err(|e| DeliveryFailure::Unheard(e.to_string()))?;
                self.core.metrics.evidence_sent.inc_by(n);
                Ok(())
            }
            Ok(Response::Refused { reason, detail }) => Err(DeliveryFailure::Refused(format!(
                "refused ({}): {detail}",
                reason.code()
            ))),
            Ok(_) => Err(DeliveryFailure::Refused("answer of the wrong kind".into())),
            Err(e) => Err(DeliveryFailure::Unheard(e.to_string())),
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
            self.store
                .write(Op::Fail {
                    envelope_id: id,
                    evidence,
                    to: EvidenceTo::Outbox,
                })
                .await?;
            self.outbox.added();
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
                Request::AddCheckpoint(offer) => {
                    crate::witness::add_checkpoint(&self.core, peer, offer).await
                }
            }
        })
    }
}

impl RelayHandler {
    /// A signed rejection of an offer; nothing is stored.
    async fn reject(
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
        match self.core.log_evidence(&record).await {
            Ok(logged) => Response::Rejected(serde_bytes::ByteBuf::from(logged.evidence)),
            Err(e) => log_failed(&e),
        }
    }

    async fn offer(&self, receiver: &Receiver<'_>, peer: &NodeId, offer: Offer) -> Response {
        let now = self.core.clock.now();
        let decision = match receiver.check_offer(&offer, now, self.core.hpke.as_ref()) {
            Ok(d) => d,
            // Acceptable later: one of the two clocks is off.
            Err(refusal) if refusal.reason == ReasonCode::NotYetValid => {
                return refused_clock_ahead(&self.core, peer, "an offer", refusal.detail);
            }
            Err(refusal) => return self.reject(receiver, &offer, refusal, peer).await,
        };
        let header = decision.header().clone();
        let event = match &decision {
            OfferDecision::Forward { .. } => EvidenceEvent::RelayAcceptance,
            OfferDecision::Deliver { .. } => EvidenceEvent::ContentConsignment,
        };
        // An envelope held already is answered with its evidence, and
        // nothing new is logged.
        if let Ok(Some(held)) = self.store.dedup_get(&header.envelope_id)
            && !held.evidence.is_empty()
        {
            self.core.metrics.duplicates.inc();
            return Response::Accepted(serde_bytes::ByteBuf::from(held.evidence));
        }
        let record = receiver.evidence(event, Some(&header), &offer, None, now, &mut OsRng);
        let (evidence, ours) = match self.core.log_evidence(&record).await {
            Ok(logged) => {
                let ours = logged.digest;
                (logged.keep(&record), ours)
            }
            Err(e) => return log_failed(&e),
        };
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
        self.answer_offer(outcome, &header, destination, from_gateway, bytes)
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
        bytes: Vec<u8>,
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
                    self.outbox.added();
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
            Ok(Outcome::Done | Outcome::Pruned { .. }) => {
                refused(ReasonCode::StorageFailure, "unexpected store outcome")
            }
            Err(e @ crate::store::StoreError::DiskFull { .. }) => {
                // Logged once per episode by the store, not once per offer.
                refused(ReasonCode::StorageFailure, e.to_string())
            }
            Err(e) => {
                tracing::error!(error = %e, "storing an accepted envelope failed");
                if let Some((dest, _)) = destination {
                    self.forwarder.queuing_failed(dest).await;
                }
                refused(
                    ReasonCode::StorageFailure,
                    "could not store the envelope; try again",
                )
            }
        }
    }
}

/// A record the log could not take: nothing was stored or signed; the
/// sender tries again.
fn log_failed(error: &crate::evidence_log::LogError) -> Response {
    tracing::error!(error = %error, "logging evidence failed");
    refused(
        ReasonCode::StorageFailure,
        "could not log the evidence; try again",
    )
}
