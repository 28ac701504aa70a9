//! The forwarder: hands every queued envelope to its next hop, at most
//! `forward_concurrency_per_peer` at once per peer, retrying with capped
//! exponential backoff and jitter, and gives up with signed RelayFailure
//! evidence at the envelope's expiry or the retry horizon. Where the queue
//! lives, and where evidence goes, is the [`ForwardQueue`]'s: a relay's
//! own store, or the gateway's.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use estafette_spec::evidence::EvidenceRecord;
use estafette_spec::relay::{self, Offer, Request, Response};
use estafette_spec::{Digest, EnvelopeId, Evidence, EvidenceEvent, NodeId, ReasonCode, TrustList};
use rand_core::{OsRng, RngCore};
use tokio::sync::{Notify, Semaphore, mpsc};

use crate::core::NodeCore;
use crate::metrics::{DestinationLabel, ReasonLabel};
use crate::store::{NewEvidence, QueueRecord, StoreError};

/// Most schedule entries waiting to be taken by the forwarder; senders wait
/// beyond it.
pub const SCHEDULE_CAPACITY: usize = 65_536;

/// How long an envelope waits to be tried again after the forwarder's own
/// store failed on it (a database failing over, a full disk): short, since
/// nothing is wrong with the envelope or the next hop, and each try is one
/// read. The retry horizon still ends it.
pub const STORE_RETRY_MS: u64 = 1_000;

/// A store write the queue makes.
pub type QueueWrite<'a> = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + 'a>>;

/// The next hop's acceptance: its verified record and the signed bytes.
#[derive(Debug, Clone)]
pub struct Acceptance {
    pub record: EvidenceRecord,
    pub bytes: Vec<u8>,
}

/// Where envelopes wait to be forwarded, and what becomes of them.
pub trait ForwardQueue: Send + Sync + 'static {
    /// Everything waiting, for the schedule at start: (due, id, next hop).
    fn waiting(&self) -> Result<Vec<(u64, EnvelopeId, NodeId)>, StoreError>;
    /// One waiting envelope, with its bytes.
    fn get(&self, id: &EnvelopeId) -> Result<Option<QueueRecord>, StoreError>;
    /// The next hop accepted it.
    fn forwarded(&self, id: EnvelopeId, acceptance: Acceptance) -> QueueWrite<'_>;
    /// Try again at `next_attempt_ms`.
    fn reschedule(
        &self,
        id: EnvelopeId,
        attempts: u32,
        next_attempt_ms: u64,
        error: String,
    ) -> QueueWrite<'_>;
    /// Given up, with the failure evidence (and any rejection received).
    fn give_up(&self, id: EnvelopeId, evidence: Vec<NewEvidence>) -> QueueWrite<'_>;
}

impl Acceptance {
    /// The acceptance as evidence to keep.
    pub fn evidence(&self) -> NewEvidence {
        NewEvidence {
            evidence_id: self.record.evidence_id,
            message_id: self.record.message_id,
            bytes: self.bytes.clone(),
        }
    }
}

fn jitter() -> f64 {
    (OsRng.next_u32() as f64) / (u32::MAX as f64 + 1.0)
}

/// The forwarder of one node.
pub struct Forwarder {
    core: Arc<NodeCore>,
    queue: Arc<dyn ForwardQueue>,
    schedule: mpsc::Sender<(u64, EnvelopeId, NodeId)>,
    peer_slots: std::sync::Mutex<HashMap<NodeId, Arc<Semaphore>>>,
}

impl Forwarder {
    /// Starts forwarding what `queue` holds, and what is added later
    /// ([`Self::enqueued`]).
    pub fn start(
        core: Arc<NodeCore>,
        queue: Arc<dyn ForwardQueue>,
    ) -> Result<Arc<Forwarder>, StoreError> {
        let (schedule, rx) = mpsc::channel(SCHEDULE_CAPACITY);
        let forwarder = Arc::new(Forwarder {
            core,
            queue,
            schedule,
            peer_slots: std::sync::Mutex::new(HashMap::new()),
        });
        let waiting = forwarder.queue.waiting()?;
        let mut counts: HashMap<NodeId, i64> = HashMap::new();
        for (_, _, dest) in &waiting {
            *counts.entry(dest.clone()).or_default() += 1;
        }
        for (dest, n) in counts {
            forwarder.queue_gauge(&dest).set(n);
        }
        tokio::spawn(forwarder.clone().schedule_loop(rx));
        // Everything already on disk is due now (or at its retry time).
        let feeder = forwarder.clone();
        tokio::spawn(async move {
            let now = feeder.core.clock.now_ms();
            for (due, id, dest) in waiting {
                if feeder
                    .schedule
                    .send((due.max(now), id, dest))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        Ok(forwarder)
    }

    /// A new envelope for `next_hop` is durably queued: forward it now.
    pub async fn enqueued(&self, id: EnvelopeId, next_hop: NodeId) {
        self.scheduled(0, id, next_hop, true).await;
    }

    /// Forward envelope `id` for `next_hop` at `due_ms` (milliseconds since
    /// 1970) or now, if later: one that came into this node's queue other
    /// than by its own acceptance (`new`: taken over from another instance
    /// of the node), or one of its own to offer again.
    pub async fn scheduled(&self, due_ms: u64, id: EnvelopeId, next_hop: NodeId, new: bool) {
        if new {
            self.queue_gauge(&next_hop).inc();
        }
        let _ = self.schedule.send((due_ms, id, next_hop)).await;
    }

    /// The queue-depth gauge of one destination.
    fn queue_gauge(&self, destination: &NodeId) -> prometheus_client::metrics::gauge::Gauge {
        self.core
            .metrics
            .queue_depth
            .get_or_create(&DestinationLabel {
                destination: destination.to_string(),
            })
            .clone()
    }

    /// The in-flight gauge of one destination.
    fn in_flight_gauge(&self, destination: &NodeId) -> prometheus_client::metrics::gauge::Gauge {
        self.core
            .metrics
            .forwards_in_flight
            .get_or_create(&DestinationLabel {
                destination: destination.to_string(),
            })
            .clone()
    }

    /// Keeps the schedule: envelopes by due time; once due, each waits in
    /// its next hop's line (an id, 16 bytes) until one of that hop's
    /// `forward_concurrency_per_peer` slots is free, and only then gets a
    /// task. A hop that is down for a day thus costs its line, not a task
    /// per waiting envelope, and its envelopes go out in the order they
    /// fell due.
    async fn schedule_loop(self: Arc<Self>, mut rx: mpsc::Receiver<(u64, EnvelopeId, NodeId)>) {
        let mut due: BTreeSet<(u64, EnvelopeId)> = BTreeSet::new();
        let mut destinations: HashMap<EnvelopeId, NodeId> = HashMap::new();
        let mut lines: HashMap<NodeId, VecDeque<EnvelopeId>> = HashMap::new();
        let slot_freed = Arc::new(Notify::new());
        loop {
            let now = self.core.clock.now_ms();
            while let Some(&(at, id)) = due.first() {
                if at > now {
                    break;
                }
                due.pop_first();
                if let Some(dest) = destinations.remove(&id) {
                    lines.entry(dest).or_default().push_back(id);
                }
            }
            self.start_waiting(&mut lines, &slot_freed);
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
                _ = slot_freed.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(sleep_ms)) => {}
                _ = self.core.stopped.notified() => return,
            }
        }
    }

    /// Gives a task to as many waiting envelopes as their hops have free
    /// slots; each task frees its slot when done and says so.
    fn start_waiting(
        self: &Arc<Self>,
        lines: &mut HashMap<NodeId, VecDeque<EnvelopeId>>,
        slot_freed: &Arc<Notify>,
    ) {
        lines.retain(|dest, waiting| {
            let slots = self.peer_slot(dest);
            while !waiting.is_empty() {
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    break;
                };
                let Some(id) = waiting.pop_front() else {
                    break;
                };
                let (forwarder, dest, freed) = (self.clone(), dest.clone(), slot_freed.clone());
                let in_flight = self.in_flight_gauge(&dest);
                in_flight.inc();
                tokio::spawn(async move {
                    forwarder.forward_one(id, dest).await;
                    in_flight.dec();
                    drop(slot);
                    freed.notify_one();
                });
            }
            !waiting.is_empty()
        });
    }

    fn peer_slot(&self, peer: &NodeId) -> Arc<Semaphore> {
        let mut slots = self.peer_slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .entry(peer.clone())
            .or_insert_with(|| {
                Arc::new(Semaphore::new(
                    self.core.config.limits.forward_concurrency_per_peer as usize,
                ))
            })
            .clone()
    }

    /// One attempt at `id`, in a slot of `dest` the caller holds.
    async fn forward_one(self: Arc<Self>, id: EnvelopeId, dest: NodeId) {
        let record = match self.queue.get(&id) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                self.store_failed(id, &dest, "reading the queue", &e).await;
                return;
            }
        };
        let now = self.core.clock.now();
        let retry = &self.core.config.retry;
        if let Some(reason) = retry.gives_up(record.accepted_at, record.expires_at, now) {
            self.give_up(id, &dest, &record, reason, None).await;
            return;
        }
        let trust = self.core.trust();
        let Some(entry) = trust.node(&dest) else {
            let error = format!("{dest} is not in the trust list");
            self.retry(id, &dest, &record, error).await;
            return;
        };
        let offer = Offer {
            hops_taken: record.hops_taken,
            previous_evidence: record.our_evidence,
            envelope: record.envelope.clone(),
        };
        let answer = self
            .core
            .peers
            .request_node(entry, &Request::Offer(offer))
            .await;
        self.settle(id, &dest, &record, &trust, answer).await;
    }

    /// What the next hop's answer means for the envelope.
    async fn settle(
        &self,
        id: EnvelopeId,
        dest: &NodeId,
        record: &QueueRecord,
        trust: &TrustList,
        answer: Result<Response, crate::transport::TransportError>,
    ) {
        match answer {
            Ok(Response::Accepted(evidence)) => {
                match check_answer(trust, dest, &evidence, Digest::of(&record.envelope)) {
                    Ok(back) => {
                        let acceptance = Acceptance {
                            record: back,
                            bytes: evidence.into_vec(),
                        };
                        match self.queue.forwarded(id, acceptance).await {
                            Ok(()) => {
                                self.core.metrics.forwarded.inc();
                                self.queue_gauge(dest).dec();
                            }
                            // Offered again, the next hop answers with the
                            // same acceptance (it keeps duplicates apart).
                            Err(e) => self.store_failed(id, dest, "recording a forward", &e).await,
                        }
                    }
                    Err(problem) => self.retry(id, dest, record, problem).await,
                }
            }
            Ok(Response::Rejected(evidence)) => {
                let reason = Evidence::verify(&evidence, trust)
                    .ok()
                    .and_then(|v| v.record.reason)
                    .unwrap_or(ReasonCode::Malformed);
                self.give_up(id, dest, record, reason, Some(evidence.into_vec()))
                    .await;
            }
            Ok(Response::Refused { reason, detail }) => {
                let error = format!("refused ({}): {detail}", reason.code());
                self.retry(id, dest, record, error).await;
            }
            Ok(Response::EvidenceStored(_) | Response::Citizen(_)) => {
                self.retry(id, dest, record, "answer of the wrong kind".into())
                    .await;
            }
            Err(e) => self.retry(id, dest, record, e.to_string()).await,
        }
    }

    async fn retry(&self, id: EnvelopeId, dest: &NodeId, record: &QueueRecord, error: String) {
        self.core.metrics.forward_retries.inc();
        let delay = self.core.config.retry.delay_ms(record.attempts, jitter());
        let next = self.core.clock.now_ms() + delay;
        tracing::debug!(envelope = %id, peer = %dest, attempts = record.attempts + 1, delay_ms = delay, error = %error, "forward will be retried");
        if let Some(held_back) = self.core.log_throttle.allow(&format!("forward {dest}")) {
            tracing::warn!(peer = %dest, error = %error, failures_since_last_line = held_back, "forwarding fails; envelopes wait and are retried");
        }
        if let Err(e) = self
            .queue
            .reschedule(id, record.attempts + 1, next, error)
            .await
        {
            // The envelope is tried again all the same (below); only its
            // attempt count and error text are not kept.
            self.note_store_failure("recording a retry", &e);
        }
        let _ = self.schedule.send((next, id, dest.clone())).await;
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
            &self.core.id,
            EvidenceEvent::RelayFailure,
            header.as_ref(),
            Digest::of(&record.envelope),
            record.our_evidence,
            Some(reason),
            self.core.clock.now(),
            &mut OsRng,
        );
        let mut evidence = vec![self.core.new_evidence(&failure)];
        if let Some(bytes) = rejection
            && let Ok(v) = Evidence::verify(&bytes, &self.core.trust())
        {
            evidence.push(NewEvidence {
                evidence_id: v.record.evidence_id,
                message_id: v.record.message_id,
                bytes,
            });
        }
        match self.queue.give_up(id, evidence).await {
            Ok(()) => {
                self.core
                    .metrics
                    .failed
                    .get_or_create(&ReasonLabel {
                        reason: reason.code().into(),
                    })
                    .inc();
                self.queue_gauge(dest).dec();
                tracing::warn!(envelope = %id, peer = %dest, reason = reason.code(), "envelope given up");
            }
            Err(e) => self.store_failed(id, dest, "recording a failure", &e).await,
        }
    }

    /// The store failed on envelope `id` while it was being forwarded: it
    /// is still queued, so it is tried again in [`STORE_RETRY_MS`], with one
    /// log line per throttle interval however many envelopes fail.
    async fn store_failed(&self, id: EnvelopeId, dest: &NodeId, doing: &str, error: &StoreError) {
        self.note_store_failure(doing, error);
        let next = self.core.clock.now_ms() + STORE_RETRY_MS;
        let _ = self.schedule.send((next, id, dest.clone())).await;
    }

    /// Counts a failure of the forwarder's store; one log line per throttle
    /// interval, with how many were held back since the last.
    fn note_store_failure(&self, doing: &str, error: &StoreError) {
        self.core.metrics.forward_store_failures.inc();
        if let Some(held_back) = self.core.log_throttle.allow("forward store") {
            tracing::error!(error = %error, failures_since_last_line = held_back, "{doing} failed; the envelope is tried again");
        }
    }
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
