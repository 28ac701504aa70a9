//! The gateway: its parts (node, records, clock, notifier, print spool),
//! the records it keeps of letters, the evidence it signs about paper, and
//! its answers to agencies' questions. A submission's steps are in
//! `submit`, the citizen desk in `desk`, the escalation monitor in
//! `monitor`.

use std::sync::Arc;

use crate::node::GatewayNode;

use estafette_spec::evidence::EvidenceRecord;
use estafette_spec::{
    Digest, EnvelopeId, Evidence, EvidenceEvent, EvidenceId, MessageError, MessageId, Oin,
    ReasonCode, Recipient, Timestamp,
};
use rand_core::OsRng;
use serde::{Deserialize, Serialize};

use crate::notify::Notifier;
use crate::paper::Spool;
use crate::registry::{self, Channel};
use crate::store::{MAX_UNREAD_COUNTED, PaperId, Records, RecordsError};
use estafette_spec::escalation::{EscalationPolicy, LetterProgress};

pub use estafette_spec::clock::{Clock, ManualClock};

/// What the gateway keeps of a digital letter until it is opened or on
/// paper: what a notification may say, its progress, and the SignedMessage
/// (to print it if it must go on paper; dropped once it is).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrackedLetter {
    pub recipient: Recipient,
    pub sender: Oin,
    pub sender_reference: String,
    pub nature: estafette_spec::Nature,
    pub legal_effect: bool,
    pub expected_action: String,
    pub envelope_id: EnvelopeId,
    pub message_digest: Digest,
    pub progress: LetterProgress,
}

/// Envelope settings of the gateway.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeSettings {
    /// Most relay hops an envelope may take.
    pub hop_limit: u8,
    /// How long an envelope may travel before it is given up.
    pub lifetime_s: u64,
}

impl Default for EnvelopeSettings {
    fn default() -> Self {
        EnvelopeSettings {
            hop_limit: 8,
            lifetime_s: 14 * 24 * 3600,
        }
    }
}

/// What the gateway remembers of a submission (idempotency by message id).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubmissionRecord {
    pub sender: Oin,
    pub digest: Digest,
    pub envelope_id: Option<EnvelopeId>,
    pub channel: String,
    pub reason: Option<ReasonCode>,
    pub received_at: Timestamp,
    #[serde(with = "serde_bytes")]
    pub acceptance: Vec<u8>,
    /// Why the letter cannot go on paper either, when that was known at
    /// submission (PaperFailure evidence says the same).
    #[serde(default)]
    pub failure: Option<ReasonCode>,
}

/// What goes on paper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaperKind {
    /// An agency's letter (the SignedMessage is in the item).
    Letter,
    /// A dormant account: "please confirm your choice".
    ConfirmChoice,
    /// An active inbox whose notifications do not arrive.
    ChannelNotice,
}

impl PaperKind {
    pub fn name(self) -> &'static str {
        match self {
            PaperKind::Letter => "letter",
            PaperKind::ConfirmChoice => "confirm_choice",
            PaperKind::ChannelNotice => "channel_notice",
        }
    }
}

/// A letter to print and post. Kept after spooling (with the time), so that
/// the queue is also the record of what went on paper.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PaperItem {
    pub recipient: Recipient,
    pub kind: PaperKind,
    pub reason: Option<ReasonCode>,
    pub received_at: Timestamp,
    /// When the letter reached the digital inbox, if it did.
    pub consigned_at: Option<Timestamp>,
    #[serde(with = "serde_bytes")]
    pub message: Vec<u8>,
    /// When it was written to the print spool.
    pub spooled_at: Option<Timestamp>,
    /// Why it cannot be printed (no postal address): it will not be
    /// spooled, and PaperFailure evidence says so.
    #[serde(default)]
    pub failure: Option<ReasonCode>,
}

impl PaperItem {
    /// An agency's letter (`message`, the SignedMessage) to print.
    pub fn letter(
        recipient: Recipient,
        reason: ReasonCode,
        received_at: Timestamp,
        consigned_at: Option<Timestamp>,
        message: Vec<u8>,
    ) -> PaperItem {
        PaperItem {
            recipient,
            kind: PaperKind::Letter,
            reason: Some(reason),
            received_at,
            consigned_at,
            message,
            spooled_at: None,
            failure: None,
        }
    }
}

/// The answer to a submission.
#[derive(Debug, Clone)]
pub struct Submitted {
    pub message_id: MessageId,
    pub envelope_id: Option<EnvelopeId>,
    pub channel: &'static str,
    /// Why paper (absent for digital).
    pub reason: Option<ReasonCode>,
    /// The signed SubmissionAcceptance.
    pub acceptance: Vec<u8>,
    /// Whether this answers an earlier identical submission.
    pub repeated: bool,
    /// Why the letter cannot reach the recipient on paper either (no
    /// postal address), when known at submission.
    pub failure: Option<ReasonCode>,
}

/// Why a submission is refused. Each maps to an HTTP status and a problem type.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the message is {actual} bytes, the limit is {limit} bytes")]
    TooLarge { actual: usize, limit: usize },
    #[error("the message is not a valid SignedMessage: {0}")]
    Invalid(MessageError),
    #[error("the message is not sealed by an agency of this federation: {0}")]
    UntrustedSigner(MessageError),
    #[error("your certificate is for agency {certificate}, but the message is sent as {sender}")]
    SenderMismatch { certificate: Oin, sender: Oin },
    #[error("message id {0} was already submitted with other content")]
    Conflict(MessageId),
    #[error("the recipient's home node cannot be reached: {0}")]
    NoRoute(String),
    #[error("the gateway could not store the submission: {0}")]
    Unavailable(String),
}

impl From<RecordsError> for SubmitError {
    fn from(e: RecordsError) -> Self {
        SubmitError::Unavailable(e.to_string())
    }
}

/// The gateway: a node in the gateway role plus the agency-facing logic,
/// the registry's citizen desk and the escalation monitor.
pub struct Gateway {
    pub node: Arc<GatewayNode>,
    pub envelope: EnvelopeSettings,
    pub policy: EscalationPolicy,
    pub clock: Arc<dyn Clock>,
    pub notifier: Arc<dyn Notifier>,
    pub spool: Spool,
    /// Wakes the monitor early (new evidence, a test).
    pub(crate) monitor_wake: tokio::sync::Notify,
    /// One monitor cycle at a time.
    pub(crate) monitor_lock: tokio::sync::Mutex<()>,
    /// The operator report of the last monitor cycle (for `/metrics`).
    /// The report behind `/metrics`, and when its dormant inboxes were
    /// counted.
    pub(crate) last_report: std::sync::Mutex<Option<(crate::report::OperatorReport, Timestamp)>>,
    /// Submissions answered, for `/metrics`.
    pub(crate) counters: SubmissionCounters,
}

/// What the agency API has answered since start.
#[derive(Debug, Default)]
pub struct SubmissionCounters {
    pub digital: std::sync::atomic::AtomicU64,
    pub paper: std::sync::atomic::AtomicU64,
    /// Answers to a message id already known (a retry).
    pub repeated: std::sync::atomic::AtomicU64,
    /// Letters that cannot go on paper either (PaperFailure at submission).
    pub paper_failed: std::sync::atomic::AtomicU64,
    pub refused: std::sync::atomic::AtomicU64,
}

impl SubmissionCounters {
    pub(crate) fn count(&self, answer: &Result<Submitted, SubmitError>) {
        use std::sync::atomic::Ordering::Relaxed;
        match answer {
            Ok(s) if s.repeated => self.repeated.fetch_add(1, Relaxed),
            Ok(s) if s.channel == "digital" => self.digital.fetch_add(1, Relaxed),
            Ok(s) => {
                if s.failure.is_some() {
                    self.paper_failed.fetch_add(1, Relaxed);
                }
                self.paper.fetch_add(1, Relaxed)
            }
            Err(_) => self.refused.fetch_add(1, Relaxed),
        };
    }

    /// OpenMetrics lines.
    pub fn metrics(&self) -> String {
        use std::sync::atomic::Ordering::Relaxed;
        format!(
            "# HELP estafette_gateway_submissions Submissions answered, by outcome.\n\
             # TYPE estafette_gateway_submissions counter\n\
             estafette_gateway_submissions_total{{outcome=\"digital\"}} {}\n\
             estafette_gateway_submissions_total{{outcome=\"paper\"}} {}\n\
             estafette_gateway_submissions_total{{outcome=\"repeated\"}} {}\n\
             estafette_gateway_submissions_total{{outcome=\"refused\"}} {}\n\
             # HELP estafette_gateway_paper_failures Letters that cannot go on paper (PaperFailure at submission).\n\
             # TYPE estafette_gateway_paper_failures counter\n\
             estafette_gateway_paper_failures_total{{reason=\"no_postal_address\"}} {}\n",
            self.digital.load(Relaxed),
            self.paper.load(Relaxed),
            self.repeated.load(Relaxed),
            self.refused.load(Relaxed),
            self.paper_failed.load(Relaxed),
        )
    }
}

/// The parts of a gateway besides its node.
pub struct GatewayParts {
    pub envelope: EnvelopeSettings,
    pub policy: EscalationPolicy,
    pub clock: Arc<dyn Clock>,
    pub notifier: Arc<dyn Notifier>,
    pub spool: Spool,
}

impl Gateway {
    pub fn new(node: Arc<GatewayNode>, parts: GatewayParts) -> Gateway {
        Gateway {
            node,
            envelope: parts.envelope,
            policy: parts.policy,
            clock: parts.clock,
            notifier: parts.notifier,
            spool: parts.spool,
            monitor_wake: tokio::sync::Notify::new(),
            monitor_lock: tokio::sync::Mutex::new(()),
            last_report: std::sync::Mutex::new(None),
            counters: SubmissionCounters::default(),
        }
    }

    /// The gateway's records.
    pub fn records(&self) -> &dyn Records {
        self.node.records()
    }

    /// Where a paper letter from `sender` to `recipient` would go: the
    /// holder's postal address, or the office of the representative whose
    /// mandate takes the correspondence; `None` when none is known.
    pub(crate) fn postal_address(
        &self,
        recipient: &Recipient,
        sender: &Oin,
        now: Timestamp,
    ) -> Result<Option<estafette_spec::citizen::PostalAddress>, RecordsError> {
        let records = self.records().read()?;
        let Some((holder, person)) = records.person_entry(recipient)? else {
            return Ok(None);
        };
        let to = crate::mandates::correspondent(
            &*records,
            &holder,
            &person,
            Some(sender),
            now,
            &self.node.trust(),
        )?;
        Ok(to.address)
    }

    /// The gateway's record of a paper `event` (PaperFallback,
    /// PaperFailure) about a message, to log.
    pub(crate) fn paper_record(
        &self,
        event: EvidenceEvent,
        (message_id, message_digest): (MessageId, Digest),
        reason: ReasonCode,
        previous: Digest,
        now: Timestamp,
    ) -> EvidenceRecord {
        EvidenceRecord {
            evidence_id: EvidenceId::random(&mut OsRng),
            event,
            envelope_id: None,
            message_id: Some(message_id),
            message_digest: Some(message_digest),
            envelope_digest: None,
            issuer: self.node.id.clone(),
            issued_at: now,
            reason: Some(reason),
            actor: None,
            previous: Some(previous),
        }
    }

    /// Digital letters to `recipient` not yet opened (as far as the monitor knows).
    pub fn unread(&self, recipient: &Recipient) -> Result<u32, RecordsError> {
        let count = self
            .records()
            .read()?
            .unread_count(recipient, MAX_UNREAD_COUNTED)?;
        Ok(count as u32)
    }

    /// All evidence so far for a message `caller` sent, in chain order.
    /// `None` when there is no such message of this caller (another agency's
    /// message looks exactly like a missing one).
    pub fn evidence(
        &self,
        caller: &Oin,
        message: &MessageId,
    ) -> Result<Option<Vec<Vec<u8>>>, RecordsError> {
        let records = self.records().read()?;
        match records.submission(message)? {
            Some(record) if &record.sender == caller => {
                let all = records.evidence_for(message)?;
                Ok(Some(Evidence::order_chain(all, &self.node.trust())))
            }
            _ => Ok(None),
        }
    }

    /// Whether `recipient` receives letters from `caller` digitally. Nothing more.
    pub fn reachable(&self, caller: &Oin, recipient: &Recipient) -> Result<bool, RecordsError> {
        let person = registry::lookup(self.records(), recipient)?;
        Ok(matches!(
            registry::channel(person.as_ref(), caller),
            Channel::Digital(_)
        ))
    }

    /// Everything in the paper queue (spooled or not).
    pub fn paper_queue(&self) -> Result<Vec<(PaperId, PaperItem)>, RecordsError> {
        self.records().read()?.paper_queue()
    }
}
