//! The forwarder: hands every queued envelope to its next hop, at most
//! `forward_concurrency_per_peer` at once per hop, in the order they were
//! queued, and gives up with signed RelayFailure evidence at an envelope's
//! expiry or the retry horizon. Where the queue lives, and where evidence
//! goes, is the [`ForwardQueue`]'s: a relay's own store, or the gateway's.
//!
//! What waits stays in the store. The forwarder keeps, per next hop, a
//! *line*: a window of at most [`LINE_WINDOW`] envelope ids in the order
//! they were queued, refilled from the store as it drains; so its memory
//! does not grow with the queue, and a restart reads no more than a window
//! per hop. A hop that fails is backed off as a whole (capped exponential
//! backoff with jitter): one envelope probes it at a time, and once it
//! answers, its line drains in order. A hop down for a day thus costs one
//! failed attempt per backoff round, not one per waiting envelope.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use estafette_spec::evidence::EvidenceRecord;
use estafette_spec::receipt::CheckpointCache;
use estafette_spec::relay::{self, Offer, Request, Response};
use estafette_spec::{
    Digest, EnvelopeId, Evidence, EvidenceEvent, NodeId, ReasonCode, Timestamp, TrustList,
};
use rand_core::{OsRng, RngCore};
use tokio::sync::mpsc;

use crate::core::NodeCore;
use crate::metrics::{DestinationLabel, ReasonLabel};
use crate::store::{NewEvidence, QueueRecord, StoreError};

/// Most events (envelopes queued, attempts finished) waiting to be taken
/// by the schedule; senders wait beyond it.
pub const SCHEDULE_CAPACITY: usize = 65_536;

/// Most envelope ids a line keeps in memory; the rest of the hop's queue
/// waits in the store and is read as the line drains.
pub const LINE_WINDOW: usize = 4096;

/// A line is refilled from the store once it holds fewer ids than this.
pub const LINE_REFILL_BELOW: usize = LINE_WINDOW / 4;

/// How often the schedule looks for envelopes that expired or passed the
/// retry horizon while waiting (milliseconds).
pub const EXPIRY_SWEEP_MS: u64 = 1_000;

/// Most expired envelopes one sweep gives up; the next sweep goes on.
pub const EXPIRY_BATCH: usize = 1024;

/// How long a line waits after the forwarder's own store failed on it (a
/// database failing over, a full disk): short, since nothing is wrong with
/// the envelope or the next hop, and each try is one read. The retry
/// horizon still ends it.
pub const STORE_RETRY_MS: u64 = 1_000;

/// A store write the queue makes.
pub type QueueWrite<'a> = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + 'a>>;

/// The next hop's acceptance: its verified record and the signed bytes.
#[derive(Debug, Clone)]
pub struct Acceptance {
    pub record: EvidenceRecord,
    pub bytes: Vec<u8>,
}

/// An envelope waiting in its next hop's line: what the schedule keeps of
/// it (the rest is read when it is offered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waiting {
    pub id: EnvelopeId,
    /// When this node accepted it: where the retry horizon starts.
    pub accepted_at: Timestamp,
}

/// Where envelopes wait to be forwarded, and what becomes of them.
pub trait ForwardQueue: Send + Sync + 'static {
    /// The next hops envelopes wait for, with how many wait for each.
    fn lines(&self) -> Result<Vec<(NodeId, u64)>, StoreError>;
    /// The first `limit` envelopes waiting for `next_hop`, in the order
    /// they were queued.
    fn line(&self, next_hop: &NodeId, limit: usize) -> Result<Vec<Waiting>, StoreError>;
    /// Up to `limit` waiting envelopes that expire at or before `by`,
    /// soonest first, with their next hop.
    fn expiring(
        &self,
        by: Timestamp,
        limit: usize,
    ) -> Result<Vec<(EnvelopeId, NodeId)>, StoreError>;
    /// One waiting envelope, with its bytes.
    fn get(&self, id: &EnvelopeId) -> Result<Option<QueueRecord>, StoreError>;
    /// The next hop accepted it.
    fn forwarded(&self, id: EnvelopeId, acceptance: Acceptance) -> QueueWrite<'_>;
    /// An attempt failed: the attempt count, when the next is expected and
    /// why, for the operator's queue report.
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

/// What the schedule hears.
enum Event {
    /// Envelope `waiting` is durably queued for `next_hop`.
    Queued { next_hop: NodeId, waiting: Waiting },
    /// The store may hold envelopes for `next_hop` that the schedule was
    /// not told of.
    MayHold { next_hop: NodeId },
    /// A task for envelope `waiting` ended with `attempt`; `slot`: it held
    /// one of the hop's slots (an offer, not a give-up at expiry).
    Finished {
        next_hop: NodeId,
        waiting: InLine,
        attempt: Attempt,
        slot: bool,
    },
}

/// How a task for one envelope ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    /// The hop answered (accepted or rejected): the envelope is off the queue.
    Answered,
    /// Off the queue without the hop (given up, or gone already).
    Gone,
    /// The hop failed (unreachable, refused, a bad answer): the envelope
    /// goes back to the front of its line, and the hop is backed off.
    HopFailed { delay_ms: u64 },
    /// The forwarder's store failed: back to the front, tried in
    /// [`STORE_RETRY_MS`].
    StoreFailed,
    /// Not due to be given up after all: back to the front.
    NotYet,
}

/// An envelope in a line, with its place there (increasing from the
/// front), so that one put back goes where it was.
#[derive(Debug, Clone, Copy)]
struct InLine {
    waiting: Waiting,
    place: u64,
}

/// One next hop's line.
#[derive(Debug, Default)]
struct Line {
    /// Waiting envelopes in the order they were queued, at most
    /// [`LINE_WINDOW`].
    window: VecDeque<InLine>,
    /// The place the next envelope taken into the window gets.
    next_place: u64,
    /// Every id in the window or in a task: the store's line may hold them
    /// still, and a refill skips them.
    known: HashSet<EnvelopeId>,
    /// Offers in flight (each holds one of the hop's slots).
    in_flight: usize,
    /// The store may hold envelopes for this hop that are not in `known`.
    more_in_store: bool,
    /// Failed attempts in a row (0: the hop answers).
    failures: u32,
    /// Nothing is offered before this (milliseconds since 1970).
    hold_until_ms: u64,
}

impl Line {
    fn in_store() -> Line {
        Line {
            more_in_store: true,
            ..Line::default()
        }
    }

    fn is_idle(&self) -> bool {
        self.known.is_empty() && !self.more_in_store && self.failures == 0
    }

    /// Takes `waiting` into the window, at its back.
    fn push(&mut self, waiting: Waiting) {
        let place = self.next_place;
        self.next_place += 1;
        self.window.push_back(InLine { waiting, place });
    }

    /// Puts `taken` back where it was in the line (near the front: it was
    /// among the oldest); a full window drops its newest id back to the
    /// store.
    fn put_back(&mut self, taken: InLine) {
        let at = self
            .window
            .partition_point(|other| other.place < taken.place);
        self.window.insert(at, taken);
        if self.window.len() > LINE_WINDOW
            && let Some(last) = self.window.pop_back()
        {
            self.known.remove(&last.waiting.id);
            self.more_in_store = true;
        }
    }
}

/// The forwarder of one node.
pub struct Forwarder {
    core: Arc<NodeCore>,
    queue: Arc<dyn ForwardQueue>,
    schedule: mpsc::Sender<Event>,
}

impl Forwarder {
    /// Starts forwarding what `queue` holds, and what is added later
    /// ([`Self::enqueued`]). Reads only how many envelopes wait per hop:
    /// the lines are filled from the store as they are served.
    pub fn start(
        core: Arc<NodeCore>,
        queue: Arc<dyn ForwardQueue>,
    ) -> Result<Arc<Forwarder>, StoreError> {
        let (schedule, rx) = mpsc::channel(SCHEDULE_CAPACITY);
        let forwarder = Arc::new(Forwarder {
            core,
            queue,
            schedule,
        });
        let lines = forwarder.queue.lines()?;
        for (dest, n) in &lines {
            forwarder
                .queue_gauge(dest)
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
        let lines = lines
            .into_iter()
            .map(|(dest, _)| (dest, Line::in_store()))
            .collect();
        tokio::spawn(forwarder.clone().schedule_loop(rx, lines));
        Ok(forwarder)
    }

    /// A new envelope for `next_hop`, accepted at `accepted_at`, is durably
    /// queued: forward it in its turn.
    pub async fn enqueued(&self, id: EnvelopeId, next_hop: NodeId, accepted_at: Timestamp) {
        self.scheduled(id, next_hop, accepted_at, true).await;
    }

    /// Envelope `id` waits for `next_hop`: one that came into this node's
    /// queue other than by its own acceptance (`new`: taken over from
    /// another instance of the node, counted in the queue gauge), or one
    /// the schedule may have lost sight of (known ones are not offered twice).
    pub async fn scheduled(
        &self,
        id: EnvelopeId,
        next_hop: NodeId,
        accepted_at: Timestamp,
        new: bool,
    ) {
        if new {
            self.queue_gauge(&next_hop).inc();
        }
        let waiting = Waiting { id, accepted_at };
        let _ = self
            .schedule
            .send(Event::Queued { next_hop, waiting })
            .await;
    }

    /// Queuing an envelope for `next_hop` failed, and may have failed
    /// only to answer: the commit reached the database, but the one who
    /// queued heard an error (a database failing over during the commit,
    /// an fsync error after the write). Then it waits in the store without
    /// the schedule knowing it: the line is read from the store again.
    pub async fn queuing_failed(&self, next_hop: NodeId) {
        let _ = self.schedule.send(Event::MayHold { next_hop }).await;
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

    /// Keeps the lines: takes what was queued and what finished, refills
    /// lines from the store, offers what the hops' slots and backoff allow,
    /// and gives up what expired.
    async fn schedule_loop(
        self: Arc<Self>,
        mut rx: mpsc::Receiver<Event>,
        mut lines: HashMap<NodeId, Line>,
    ) {
        let mut next_sweep_ms = 0;
        loop {
            let now = self.core.clock.now_ms();
            if now >= next_sweep_ms {
                let more = self.sweep_expired(&mut lines);
                next_sweep_ms = if more { now } else { now + EXPIRY_SWEEP_MS };
            }
            let mut wake_ms = next_sweep_ms;
            for (dest, line) in lines.iter_mut() {
                self.refill(dest, line, now);
                self.dispatch(dest, line, now);
                if line.hold_until_ms > now && (!line.window.is_empty() || line.more_in_store) {
                    wake_ms = wake_ms.min(line.hold_until_ms);
                }
            }
            lines.retain(|_, line| !line.is_idle());
            let sleep = Duration::from_millis(wake_ms.saturating_sub(now).max(1));
            tokio::select! {
                event = rx.recv() => match event {
                    Some(event) => {
                        self.heard(&mut lines, event);
                        // Take everything waiting before looking again.
                        while let Ok(event) = rx.try_recv() {
                            self.heard(&mut lines, event);
                        }
                    }
                    None => return,
                },
                _ = tokio::time::sleep(sleep) => {}
                _ = self.core.stopped.notified() => return,
            }
        }
    }

    fn heard(&self, lines: &mut HashMap<NodeId, Line>, event: Event) {
        match event {
            Event::Queued { next_hop, waiting } => {
                let line = lines.entry(next_hop).or_default();
                if line.known.contains(&waiting.id) {
                    return;
                }
                if line.more_in_store || line.window.len() >= LINE_WINDOW {
                    // In the store: read in its turn.
                    line.more_in_store = true;
                } else {
                    line.known.insert(waiting.id);
                    line.push(waiting);
                }
            }
            Event::MayHold { next_hop } => {
                lines.entry(next_hop).or_default().more_in_store = true;
            }
            Event::Finished {
                next_hop,
                waiting,
                attempt,
                slot,
            } => {
                let Some(line) = lines.get_mut(&next_hop) else {
                    return;
                };
                if slot {
                    line.in_flight = line.in_flight.saturating_sub(1);
                    self.in_flight_gauge(&next_hop)
                        .set(i64::try_from(line.in_flight).unwrap_or(i64::MAX));
                }
                let now = self.core.clock.now_ms();
                match attempt {
                    Attempt::Answered => {
                        line.known.remove(&waiting.waiting.id);
                        line.failures = 0;
                        line.hold_until_ms = 0;
                    }
                    Attempt::Gone => {
                        line.known.remove(&waiting.waiting.id);
                    }
                    Attempt::HopFailed { delay_ms } => {
                        line.put_back(waiting);
                        // Offers in flight together fail together: only the
                        // first of them backs the hop off further.
                        if now >= line.hold_until_ms {
                            line.failures = line.failures.saturating_add(1);
                            line.hold_until_ms = now + delay_ms;
                        }
                    }
                    Attempt::StoreFailed => {
                        line.put_back(waiting);
                        line.hold_until_ms = line.hold_until_ms.max(now + STORE_RETRY_MS);
                    }
                    Attempt::NotYet => line.put_back(waiting),
                }
            }
        }
    }

    /// Reads the next envelopes of a line that runs low from the store.
    fn refill(&self, dest: &NodeId, line: &mut Line, now: u64) {
        if !line.more_in_store || line.window.len() >= LINE_REFILL_BELOW || line.hold_until_ms > now
        {
            return;
        }
        // The store's line starts with what is known here (in the window
        // or in a task); read past it to a full window.
        let limit = line.known.len() + (LINE_WINDOW - line.window.len());
        match self.queue.line(dest, limit) {
            Ok(read) => {
                line.more_in_store = read.len() >= limit;
                for waiting in read {
                    if line.window.len() >= LINE_WINDOW {
                        line.more_in_store = true;
                        break;
                    }
                    if line.known.insert(waiting.id) {
                        line.push(waiting);
                    }
                }
            }
            Err(e) => {
                self.note_store_failure("reading the queue", &e);
                line.hold_until_ms = line.hold_until_ms.max(now + STORE_RETRY_MS);
            }
        }
    }

    /// Offers the front of a line in as many slots as the hop has free: all
    /// of them while it answers, one (a probe) once it failed, none while
    /// it is backed off.
    fn dispatch(self: &Arc<Self>, dest: &NodeId, line: &mut Line, now: u64) {
        if line.hold_until_ms > now {
            return;
        }
        let slots = if line.failures > 0 {
            1
        } else {
            self.core.config.limits.forward_concurrency_per_peer as usize
        };
        let started = line.in_flight;
        while line.in_flight < slots {
            let Some(taken) = line.window.pop_front() else {
                break;
            };
            line.in_flight += 1;
            let (forwarder, next_hop, failures) = (self.clone(), dest.clone(), line.failures);
            tokio::spawn(async move {
                let id = taken.waiting.id;
                let attempt = forwarder.forward_one(id, &next_hop, failures).await;
                forwarder.finished(next_hop, taken, attempt, true).await;
            });
        }
        if line.in_flight != started {
            self.in_flight_gauge(dest)
                .set(i64::try_from(line.in_flight).unwrap_or(i64::MAX));
        }
    }

    async fn finished(&self, next_hop: NodeId, waiting: InLine, attempt: Attempt, slot: bool) {
        let event = Event::Finished {
            next_hop,
            waiting,
            attempt,
            slot,
        };
        let _ = self.schedule.send(event).await;
    }

    /// Gives up what may wait no longer: the fronts of lines past the retry
    /// horizon (a line is in the order of acceptance, so its front is the
    /// oldest), and what the store says expired. Whether there is more.
    fn sweep_expired(self: &Arc<Self>, lines: &mut HashMap<NodeId, Line>) -> bool {
        let now = self.core.clock.now();
        let retry = &self.core.config.retry;
        let mut due: Vec<(NodeId, InLine)> = Vec::new();
        for (dest, line) in lines.iter_mut() {
            while let Some(front) = line.window.front().copied()
                && retry
                    .gives_up(front.waiting.accepted_at, Timestamp(u64::MAX), now)
                    .is_some()
            {
                line.window.pop_front();
                due.push((dest.clone(), front));
            }
        }
        let expired = match self.queue.expiring(now, EXPIRY_BATCH) {
            Ok(expired) => expired,
            Err(e) => {
                self.note_store_failure("reading the expiry index", &e);
                Vec::new()
            }
        };
        let full_batch = expired.len() >= EXPIRY_BATCH;
        let mut from_index = Vec::new();
        for (id, dest) in expired {
            let line = lines.entry(dest.clone()).or_insert_with(Line::in_store);
            if line.known.contains(&id) {
                // In the window: taken out to be given up; otherwise in a
                // task already.
                let Some(at) = line.window.iter().position(|w| w.waiting.id == id) else {
                    continue;
                };
                if let Some(waiting) = line.window.remove(at) {
                    due.push((dest, waiting));
                }
            } else {
                line.known.insert(id);
                from_index.push((dest, id));
            }
        }
        let more = full_batch && !from_index.is_empty();
        for (next_hop, waiting) in due {
            let forwarder = self.clone();
            tokio::spawn(async move {
                let attempt = forwarder.expire_one(waiting.waiting.id, &next_hop).await;
                forwarder.finished(next_hop, waiting, attempt, false).await;
            });
        }
        for (next_hop, id) in from_index {
            let forwarder = self.clone();
            tokio::spawn(async move {
                // Not from the window: whatever happens, the line forgets
                // it here (a refill or the next sweep reads it again).
                let _ = forwarder.expire_one(id, &next_hop).await;
                let waiting = InLine {
                    waiting: Waiting {
                        id,
                        accepted_at: Timestamp(0),
                    },
                    place: 0,
                };
                forwarder
                    .finished(next_hop, waiting, Attempt::Gone, false)
                    .await;
            });
        }
        more
    }

    /// Gives `id` up if its time is over.
    async fn expire_one(&self, id: EnvelopeId, dest: &NodeId) -> Attempt {
        let record = match self.queue.get(&id) {
            Ok(Some(r)) => r,
            Ok(None) => return Attempt::Gone,
            Err(e) => {
                self.note_store_failure("reading the queue", &e);
                return Attempt::StoreFailed;
            }
        };
        let now = self.core.clock.now();
        match self
            .core
            .config
            .retry
            .gives_up(record.accepted_at, record.expires_at, now)
        {
            Some(reason) => self.give_up(id, dest, &record, reason, None).await,
            None => Attempt::NotYet,
        }
    }

    /// One offer of `id` to `dest`, in a slot of `dest`'s; `failures`: the
    /// hop's failed attempts in a row before it (for the next backoff).
    async fn forward_one(&self, id: EnvelopeId, dest: &NodeId, failures: u32) -> Attempt {
        let record = match self.queue.get(&id) {
            Ok(Some(r)) => r,
            Ok(None) => return Attempt::Gone,
            Err(e) => {
                self.note_store_failure("reading the queue", &e);
                return Attempt::StoreFailed;
            }
        };
        let now = self.core.clock.now();
        let retry = &self.core.config.retry;
        if let Some(reason) = retry.gives_up(record.accepted_at, record.expires_at, now) {
            return self.give_up(id, dest, &record, reason, None).await;
        }
        let trust = self.core.trust();
        let Some(entry) = trust.node(dest) else {
            let error = format!("{dest} is not in the trust list");
            return self.hop_failed(id, dest, &record, failures, error).await;
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
        self.settle(id, dest, &record, &trust, failures, answer)
            .await
    }

    /// What the next hop's answer means for the envelope.
    async fn settle(
        &self,
        id: EnvelopeId,
        dest: &NodeId,
        record: &QueueRecord,
        trust: &TrustList,
        failures: u32,
        answer: Result<Response, crate::transport::TransportError>,
    ) -> Attempt {
        let error = match answer {
            Ok(Response::Accepted(evidence)) => {
                match check_answer(
                    trust,
                    &self.core.checkpoints,
                    dest,
                    &evidence,
                    Digest::of(&record.envelope),
                ) {
                    Ok(back) => {
                        self.note_clock_ahead(dest, back.issued_at);
                        let acceptance = Acceptance {
                            record: back,
                            bytes: evidence.into_vec(),
                        };
                        return match self.queue.forwarded(id, acceptance).await {
                            Ok(()) => {
                                self.core.metrics.forwarded.inc();
                                self.queue_gauge(dest).dec();
                                Attempt::Answered
                            }
                            // Offered again, the next hop answers with the
                            // same acceptance (it keeps duplicates apart).
                            Err(e) => {
                                self.note_store_failure("recording a forward", &e);
                                Attempt::StoreFailed
                            }
                        };
                    }
                    Err(problem) => problem,
                }
            }
            Ok(Response::Rejected(evidence)) => {
                let reason = Evidence::verify_with(&evidence, trust, &self.core.checkpoints)
                    .ok()
                    .and_then(|v| v.record.reason)
                    .unwrap_or(ReasonCode::Malformed);
                return match self
                    .give_up(id, dest, record, reason, Some(evidence.into_vec()))
                    .await
                {
                    Attempt::Gone => Attempt::Answered,
                    other => other,
                };
            }
            Ok(Response::Refused { reason, detail }) => {
                format!("refused ({}): {detail}", reason.code())
            }
            Ok(
                Response::EvidenceStored(_)
                | Response::Citizen(_)
                | Response::Cosigned(_)
                | Response::CheckpointRefused { .. },
            ) => "answer of the wrong kind".into(),
            Err(e) => e.to_string(),
        };
        self.hop_failed(id, dest, record, failures, error).await
    }

    /// The hop failed on `id`: the hop is backed off (the delay grows with
    /// its `failures` in a row), and the attempt recorded on the envelope.
    async fn hop_failed(
        &self,
        id: EnvelopeId,
        dest: &NodeId,
        record: &QueueRecord,
        failures: u32,
        error: String,
    ) -> Attempt {
        self.core.metrics.forward_retries.inc();
        let delay_ms = self.core.config.retry.delay_ms(failures, jitter());
        let next = self.core.clock.now_ms() + delay_ms;
        tracing::debug!(envelope = %id, peer = %dest, failures = failures + 1, delay_ms, error = %error, "forward will be retried");
        if let Some(held_back) = self.core.log_throttle.allow(&format!("forward {dest}")) {
            tracing::warn!(peer = %dest, error = %error, failures_since_last_line = held_back, "forwarding fails; envelopes wait and are retried");
        }
        if let Err(e) = self
            .queue
            .reschedule(id, record.attempts + 1, next, error)
            .await
        {
            // The envelope is tried again all the same; only its attempt
            // count and error text are not kept.
            self.note_store_failure("recording a retry", &e);
        }
        Attempt::HopFailed { delay_ms }
    }

    async fn give_up(
        &self,
        id: EnvelopeId,
        dest: &NodeId,
        record: &QueueRecord,
        reason: ReasonCode,
        rejection: Option<Vec<u8>>,
    ) -> Attempt {
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
        let failure = match self.core.new_evidence(&failure).await {
            Ok(failure) => failure,
            Err(e) => {
                self.core.metrics.forward_store_failures.inc();
                tracing::error!(error = %e, envelope = %id, "logging a failure failed; the envelope is tried again");
                return Attempt::StoreFailed;
            }
        };
        let mut evidence = vec![failure];
        if let Some(bytes) = rejection
            && let Ok(v) = Evidence::verify_with(&bytes, &self.core.trust(), &self.core.checkpoints)
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
                Attempt::Gone
            }
            Err(e) => {
                self.note_store_failure("recording a failure", &e);
                Attempt::StoreFailed
            }
        }
    }

    /// Counts a failure of the forwarder's store; one log line per throttle
    /// interval, with how many were held back since the last. The envelope
    /// stays queued and is tried again in [`STORE_RETRY_MS`].
    fn note_store_failure(&self, doing: &str, error: &StoreError) {
        self.core.metrics.forward_store_failures.inc();
        if let Some(held_back) = self.core.log_throttle.allow("forward store") {
            tracing::error!(error = %error, failures_since_last_line = held_back, "{doing} failed; the envelope is tried again");
        }
    }

    /// An acceptance is the receipt of a durable handover, kept whatever its
    /// date (offered again, the envelope would get the same one). Dated
    /// beyond this node's clock and the tolerated skew, it says the next
    /// hop's clock is ahead: one warning line in a while.
    fn note_clock_ahead(&self, peer: &NodeId, issued_at: estafette_spec::Timestamp) {
        let now = self.core.clock.now();
        if issued_at <= now.plus_s(estafette_spec::limits::MAX_CLOCK_SKEW_S) {
            return;
        }
        if let Some(held_back) = self.core.log_throttle.allow("acceptance dated ahead") {
            tracing::warn!(
                peer = %peer,
                ahead_s = issued_at.0.saturating_sub(now.0),
                acceptances_since_last_line = held_back,
                "the next hop dates its acceptance ahead of this node's clock by more than the tolerated skew; \
                 kept as the receipt of the handover (check both nodes' clocks)"
            );
        }
    }
}

/// Checks the next hop's acceptance: its receipt from the next hop's log, the right event, and
/// that it is about the envelope we offered.
fn check_answer(
    trust: &TrustList,
    checkpoints: &CheckpointCache,
    peer: &NodeId,
    evidence: &[u8],
    envelope_digest: Digest,
) -> Result<EvidenceRecord, String> {
    let verified = Evidence::verify_with(evidence, trust, checkpoints)
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
