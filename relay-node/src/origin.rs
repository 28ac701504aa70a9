//! Building blocks for the origin of envelopes (the gateway, and the test
//! gateway of `testkit`): a forward queue in a [`Store`] whose evidence is
//! archived rather than sent on, the taking of evidence deliveries from
//! nodes, and notes to whoever follows stored evidence (the gateway's
//! monitor).

use std::sync::Arc;

use estafette_spec::limits::MAX_CLOCK_SKEW_S;
use estafette_spec::relay::{MAX_EVIDENCE_PER_DELIVERY, Receiver, Response};
use estafette_spec::{
    EnvelopeId, Evidence, EvidenceEvent, MessageId, NodeId, ReasonCode, Timestamp,
};
use tokio::sync::broadcast;

use crate::core::NodeCore;
use crate::forwarder::{Acceptance, ForwardQueue, QueueWrite, Waiting};
use crate::server::{refused, refused_clock_ahead};
use crate::store::{EvidenceTo, NewEvidence, Op, QueueRecord, Store, StoreError, Tables};

/// Evidence an origin has just stored durably.
#[derive(Debug, Clone)]
pub struct StoredEvidence {
    pub message_id: Option<MessageId>,
    pub event: EvidenceEvent,
    pub issuer: NodeId,
}

impl StoredEvidence {
    /// The note of evidence `record`, once stored.
    pub fn of(record: &estafette_spec::evidence::EvidenceRecord) -> StoredEvidence {
        StoredEvidence {
            message_id: record.message_id,
            event: record.event,
            issuer: record.issuer.clone(),
        }
    }
}

/// How many notes an observer may fall behind before it misses some.
pub const EVIDENCE_NOTES_CAPACITY: usize = 65_536;

/// Who hears about evidence stored at an origin.
#[derive(Clone)]
pub struct EvidenceNotes(broadcast::Sender<StoredEvidence>);

impl Default for EvidenceNotes {
    fn default() -> Self {
        EvidenceNotes(broadcast::channel(EVIDENCE_NOTES_CAPACITY).0)
    }
}

impl EvidenceNotes {
    pub fn subscribe(&self) -> broadcast::Receiver<StoredEvidence> {
        self.0.subscribe()
    }

    pub fn note(&self, note: StoredEvidence) {
        // No observer is fine.
        let _ = self.0.send(note);
    }
}

/// Runs in the transaction that archives the evidence of an envelope an
/// origin forwarded or gave up, with the messages that evidence is about
/// (the gateway files those letters as due to be looked at).
pub type ArchiveHook = Arc<
    dyn Fn(&mut Tables<'_>, &redb::WriteTransaction, &[MessageId]) -> Result<(), StoreError>
        + Send
        + Sync,
>;

/// An origin's forward queue: the next hop's acceptance, a failure and a
/// rejection are archived, and noted.
pub struct OriginQueue {
    pub store: Arc<Store>,
    pub notes: EvidenceNotes,
    pub on_archive: Option<ArchiveHook>,
}

impl OriginQueue {
    /// Envelope `id` leaves the queue with `evidence` archived, and the
    /// archive hook, if any, run in the same transaction.
    fn off_the_queue(&self, id: EnvelopeId, evidence: Vec<NewEvidence>) -> Op {
        let hook = self.on_archive.clone();
        Op::Apply(Box::new(move |tables, txn| {
            tables.off_the_queue(&id, &evidence, EvidenceTo::Archive)?;
            let Some(hook) = hook else {
                return Ok(());
            };
            let messages: Vec<MessageId> = evidence.iter().filter_map(|e| e.message_id).collect();
            hook(tables, txn, &messages)
        }))
    }
}

impl ForwardQueue for OriginQueue {
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

    fn forwarded(&self, id: EnvelopeId, acceptance: Acceptance) -> QueueWrite<'_> {
        Box::pin(async move {
            let note = StoredEvidence::of(&acceptance.record);
            let evidence = acceptance.evidence();
            self.store
                .write(self.off_the_queue(id, vec![evidence]))
                .await?;
            self.notes.note(note);
            Ok(())
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
                .write(self.off_the_queue(id, evidence))
                .await
                .map(|_| ())
        })
    }
}

/// Why an origin could not queue an envelope.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("no route to {0}")]
    NoRoute(NodeId),
    #[error("the forward queue is full; try again later")]
    QueueFull,
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// Queues an envelope this origin sealed and signed itself (its header is
/// known): durably, with `evidence` archived and `extra` written in the
/// same transaction, then hands it to the forwarder. `previous`: the
/// digest of the evidence the next node's evidence links to. A known
/// envelope id answers with the evidence kept the first time.
#[allow(clippy::too_many_arguments)]
pub async fn queue_envelope(
    core: &NodeCore,
    store: &Store,
    forwarder: &crate::forwarder::Forwarder,
    envelope: Vec<u8>,
    header: &estafette_spec::RoutingHeader,
    previous: Option<estafette_spec::Digest>,
    evidence: Option<NewEvidence>,
    extra: Option<crate::store::Extra>,
) -> Result<crate::store::Outcome, QueueError> {
    let now = core.clock.now();
    let next_hop = core
        .trust()
        .next_hop(&core.id, &header.home_node)
        .ok_or_else(|| QueueError::NoRoute(header.home_node.clone()))?
        .id
        .clone();
    let written = store
        .write(Op::Accept {
            envelope_id: header.envelope_id,
            evidence,
            placement: crate::store::Placement::Queue(QueueRecord {
                destination: next_hop.clone(),
                hops_taken: 0,
                our_evidence: previous,
                expires_at: header.expires_at,
                accepted_at: now,
                attempts: 0,
                next_attempt_ms: 0,
                last_error: None,
                envelope,
                seq: 0,
            }),
            now,
            extra,
            evidence_to: Some(EvidenceTo::Archive),
        })
        .await;
    let outcome = match written {
        Ok(outcome) => outcome,
        Err(e) => {
            forwarder.queuing_failed(next_hop).await;
            return Err(e.into());
        }
    };
    match outcome {
        crate::store::Outcome::Stored => {
            forwarder.enqueued(header.envelope_id, next_hop, now).await
        }
        crate::store::Outcome::QueueFull => return Err(QueueError::QueueFull),
        _ => {}
    }
    Ok(outcome)
}

/// Checks a delivery of evidence from `peer`: whether it may deliver, and
/// which objects verify (the others are dropped: worth nothing, and not to
/// be retried forever). Gives what to keep with its notes, or the refusal.
#[allow(clippy::result_large_err)]
pub fn check_delivery(
    core: &NodeCore,
    peer: &NodeId,
    list: Vec<serde_bytes::ByteBuf>,
) -> Result<(Vec<NewEvidence>, Vec<StoredEvidence>), Response> {
    let trust = core.trust();
    let receiver = Receiver {
        trust: &trust,
        me: &core.id,
    };
    if let Err(r) = receiver.authorize_evidence_delivery(peer) {
        return Err(refused(r.reason, r.detail));
    }
    if list.len() > MAX_EVIDENCE_PER_DELIVERY {
        return Err(refused(
            ReasonCode::TooLarge,
            format!("more than {MAX_EVIDENCE_PER_DELIVERY} evidence objects"),
        ));
    }
    let mut keep = Vec::with_capacity(list.len());
    let mut stored = Vec::with_capacity(list.len());
    let latest = core.clock.now().plus_s(MAX_CLOCK_SKEW_S);
    for bytes in list {
        match Evidence::verify_with(&bytes, &trust, &core.checkpoints) {
            // The sender's clock is ahead: it keeps the evidence in its
            // outbox and delivers it again once the clocks agree.
            Ok(v) if v.record.issued_at > latest => {
                let detail = format!(
                    "evidence issued at {}, {} s beyond this node's clock and its {MAX_CLOCK_SKEW_S} s tolerance",
                    v.record.issued_at,
                    v.record.issued_at.0.saturating_sub(latest.0)
                );
                return Err(refused_clock_ahead(core, peer, "evidence", detail));
            }
            Ok(v) => {
                stored.push(StoredEvidence::of(&v.record));
                keep.push(NewEvidence {
                    evidence_id: v.record.evidence_id,
                    message_id: v.record.message_id,
                    bytes: bytes.into_vec(),
                })
            }
            Err(e) => {
                tracing::warn!(peer = %peer, reason = e.reason().code(), "dropping evidence that does not verify")
            }
        }
    }
    Ok((keep, stored))
}

/// Takes a delivery of evidence from `peer` into `store`: keeps what
/// verifies, notes it, and says how many it stored.
pub async fn take_evidence(
    core: &NodeCore,
    store: &Store,
    notes: &EvidenceNotes,
    peer: &NodeId,
    list: Vec<serde_bytes::ByteBuf>,
) -> Response {
    let (keep, stored) = match check_delivery(core, peer, list) {
        Ok(checked) => checked,
        Err(refusal) => return refusal,
    };
    let count = keep.len() as u32;
    match store.write(Op::StoreEvidence { evidence: keep }).await {
        Ok(_) => {
            core.metrics.evidence_stored.inc_by(u64::from(count));
            for note in stored {
                notes.note(note);
            }
            Response::EvidenceStored(count)
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
