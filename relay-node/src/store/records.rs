//! What the store keeps and what it is asked to do: the records of its
//! tables (CBOR values), the write operations ([`Op`]) and their outcomes.

use estafette_spec::{Digest, EnvelopeId, EvidenceId, InboxId, MessageId, NodeId, Timestamp};
use serde::{Deserialize, Serialize};

use super::{StoreError, Tables};

/// Where an accepted envelope was put. Whether a queued one is still
/// waiting is the queue table's to say: the dedup record is written once,
/// never rewritten when the envelope moves on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnvelopeState {
    Queued,
    Delivered,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DedupRecord {
    #[serde(with = "serde_bytes")]
    pub evidence: Vec<u8>,
    pub accepted_at: Timestamp,
    pub state: EnvelopeState,
    /// A queued envelope's place in the queue table (and its next hop's
    /// line): how the store finds it by id. Records from before the queue
    /// was kept by place have none until the store opens and moves them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub place: Option<u64>,
}

impl DedupRecord {
    /// The record as the dedup tables keep it: the evidence, the second it
    /// was accepted, and its place ([`NOT_QUEUED`] for one delivered here).
    pub(super) fn kept(evidence: Vec<u8>, accepted_s: u64, place: u64) -> DedupRecord {
        let place = (place != super::NOT_QUEUED).then_some(place);
        DedupRecord {
            evidence,
            accepted_at: Timestamp(accepted_s),
            state: match place {
                Some(_) => EnvelopeState::Queued,
                None => EnvelopeState::Delivered,
            },
            place,
        }
    }

    /// Its place, or [`NOT_QUEUED`](super::NOT_QUEUED).
    pub(super) fn place_or_not_queued(&self) -> u64 {
        match (self.state, self.place) {
            (EnvelopeState::Queued, Some(place)) => place,
            _ => super::NOT_QUEUED,
        }
    }
}

/// How the attempts to forward a queued envelope have gone: kept apart from
/// the envelope, which is written once, so that a retry rewrites a few
/// bytes and not the whole envelope.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RetryRecord {
    pub attempts: u32,
    pub next_attempt_ms: u64,
    pub last_error: Option<String>,
}

/// An envelope waiting to be forwarded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueueRecord {
    pub destination: NodeId,
    /// Hops taken before it reached this node.
    pub hops_taken: u8,
    /// Digest of our own acceptance evidence: the next node links to it.
    pub our_evidence: Option<Digest>,
    pub expires_at: Timestamp,
    pub accepted_at: Timestamp,
    /// As stored: 0, None. Read back with the envelope's [`RetryRecord`].
    pub attempts: u32,
    pub next_attempt_ms: u64,
    pub last_error: Option<String>,
    #[serde(with = "serde_bytes")]
    pub envelope: Vec<u8>,
    /// Its place in the queue and in its next hop's line: the store numbers
    /// queued envelopes in the order it takes them (records from before
    /// lines were kept have none, and are numbered when the store opens).
    #[serde(default)]
    pub seq: u64,
}

impl QueueRecord {
    /// The record with how its attempts went.
    pub fn with_retries(mut self, retry: RetryRecord) -> QueueRecord {
        self.attempts = retry.attempts;
        self.next_attempt_ms = retry.next_attempt_ms;
        self.last_error = retry.last_error;
        self
    }
}

/// One opening of a letter: who, when, under which mandate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessEntry {
    pub at: Timestamp,
    pub envelope_id: EnvelopeId,
    pub message_id: MessageId,
    pub actor: estafette_spec::Actor,
}

/// A letter in an inbox: what the home node parsed from it once, at
/// delivery, so that listing an inbox reads no letter and hashes nothing.
/// The signed letter itself is kept apart ([`Store::letter`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InboxRecord {
    pub message_id: MessageId,
    pub received_at: Timestamp,
    pub opened_at: Option<Timestamp>,
    /// Digest of the newest evidence for this letter on this node.
    pub last_evidence: Digest,
    /// SHA-256 of the signed letter (as in the routing header).
    pub message_digest: Digest,
    pub sender: estafette_spec::Oin,
    pub subject: String,
    pub nature: estafette_spec::Nature,
    pub legal_effect: bool,
    pub expected_action: String,
    pub response_deadline: Option<Timestamp>,
}

impl InboxRecord {
    /// The record of a letter just delivered, from what `check_offer` read.
    pub fn delivered(
        header: &estafette_spec::RoutingHeader,
        letter: &estafette_spec::Letter,
        received_at: Timestamp,
        our_evidence: Digest,
    ) -> InboxRecord {
        InboxRecord {
            message_id: header.message_id,
            received_at,
            opened_at: None,
            last_evidence: our_evidence,
            message_digest: header.message_digest,
            sender: letter.sender.clone(),
            subject: letter.subject.clone(),
            nature: letter.nature,
            legal_effect: letter.legal_effect,
            expected_action: letter.expected_action.clone(),
            response_deadline: letter.response_deadline,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutboxRecord {
    /// Written once; records from before the outbox line also carry
    /// attempt counts, which are ignored (the outbox backs off as a whole).
    #[serde(with = "serde_bytes")]
    pub evidence: Vec<u8>,
}

/// One evidence object at its place in the outbox's line.
#[derive(Debug, Clone)]
pub struct OutboxEntry {
    pub place: u64,
    pub id: EvidenceId,
    pub evidence: Vec<u8>,
}

/// Where a node keeps evidence it signed or received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvidenceTo {
    /// The durable outbox, delivered to the gateway (relays and home nodes).
    Outbox,
    /// The evidence table, kept for good (an origin of envelopes: the gateway).
    Archive,
}

/// One evidence object to keep: in the outbox, or in the evidence table.
#[derive(Debug, Clone)]
pub struct NewEvidence {
    pub evidence_id: EvidenceId,
    pub message_id: Option<MessageId>,
    pub bytes: Vec<u8>,
}

/// Where an accepted envelope goes.
#[derive(Debug, Clone)]
pub enum Placement {
    Queue(QueueRecord),
    Inbox {
        inbox_id: InboxId,
        record: InboxRecord,
        /// The signed letter.
        message: Vec<u8>,
    },
}

/// More writes to make in the same transaction as an [`Op`], with the open
/// tables of the store and the transaction (for tables of the caller's own,
/// such as the gateway's registry). Runs on the writer thread: keep it short.
pub type Extra =
    Box<dyn FnOnce(&mut Tables<'_>, &redb::WriteTransaction) -> Result<(), StoreError> + Send>;

/// A write, applied by the writer thread inside a batch.
pub enum Op {
    /// Store an accepted envelope with our evidence, unless its id is known;
    /// `extra` runs in the same transaction when it is new.
    Accept {
        envelope_id: EnvelopeId,
        evidence: Option<NewEvidence>,
        placement: Placement,
        now: Timestamp,
        extra: Option<Extra>,
        /// Where the evidence goes besides the dedup index (none: only there).
        evidence_to: Option<EvidenceTo>,
    },
    /// Any writes of the caller's, in one transaction with the batch.
    Apply(Extra),
    /// The next hop accepted it: off the queue; an origin also keeps the
    /// next hop's acceptance.
    Forwarded {
        envelope_id: EnvelopeId,
        evidence: Option<(NewEvidence, EvidenceTo)>,
    },
    /// Try again later.
    Reschedule {
        envelope_id: EnvelopeId,
        attempts: u32,
        next_attempt_ms: u64,
        last_error: String,
    },
    /// Given up: off the queue, with the failure evidence (and any rejection received).
    Fail {
        envelope_id: EnvelopeId,
        evidence: Vec<NewEvidence>,
        to: EvidenceTo,
    },
    /// Evidence objects the gateway stored: out of the outbox (each by its
    /// place in the outbox's line and its id).
    OutboxDone { entries: Vec<(u64, EvidenceId)> },
    /// The gateway refused these: to the end of the outbox's line, so that
    /// what it refuses does not hold up the rest.
    OutboxToBack { entries: Vec<(u64, EvidenceId)> },
    /// Keep evidence in the evidence table (evidence delivered by nodes).
    StoreEvidence { evidence: Vec<NewEvidence> },
    /// A letter was opened: record it with its ContentHandover evidence,
    /// and in the inbox's access log.
    MarkOpened {
        inbox_id: InboxId,
        envelope_id: EnvelopeId,
        opened_at: Timestamp,
        evidence: NewEvidence,
        access: AccessEntry,
    },
    /// Forget dedup entries of envelopes no longer queued and older than
    /// `before`: at most [`PRUNE_BATCH`] of them, from `from` on (where the
    /// last round's [`Outcome::Pruned`] said to go on; `(0, [0; 16])` to
    /// start).
    Prune { before: Timestamp, from: DedupPlace },
}

impl Op {
    /// Whether the write adds data (refused while the disk is full); the
    /// others end work and are how space comes back.
    pub fn adds_data(&self) -> bool {
        match self {
            Op::Accept { .. } | Op::Apply(_) | Op::StoreEvidence { .. } | Op::MarkOpened { .. } => {
                true
            }
            Op::Forwarded { .. }
            | Op::Reschedule { .. }
            | Op::Fail { .. }
            | Op::OutboxDone { .. }
            | Op::OutboxToBack { .. }
            | Op::Prune { .. } => false,
        }
    }
}

impl std::fmt::Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Op::Accept { .. } => "Accept",
            Op::Apply(_) => "Apply",
            Op::Forwarded { .. } => "Forwarded",
            Op::Reschedule { .. } => "Reschedule",
            Op::Fail { .. } => "Fail",
            Op::OutboxDone { .. } => "OutboxDone",
            Op::OutboxToBack { .. } => "OutboxToBack",
            Op::StoreEvidence { .. } => "StoreEvidence",
            Op::MarkOpened { .. } => "MarkOpened",
            Op::Prune { .. } => "Prune",
        };
        f.write_str(name)
    }
}

/// Where a dedup entry sits in the index by time: (accepted at, envelope id).
pub type DedupPlace = (u64, [u8; 16]);

/// Most dedup entries one [`Op::Prune`] looks at, so that pruning a large
/// store never holds the writer long.
pub const PRUNE_BATCH: usize = 10_000;

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stored as new.
    Stored,
    /// Already known: the evidence signed the first time.
    Duplicate { evidence: Vec<u8> },
    /// The forward queue is full; nothing stored.
    QueueFull,
    /// Done (or nothing to do).
    Done,
    /// Pruned one batch; `next` is where the next batch starts, if any is
    /// left before the cut-off.
    Pruned { next: Option<DedupPlace> },
}
