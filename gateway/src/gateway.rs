//! The gateway's decisions: accept a submission (who sent it, is it sealed
//! by that agency, is it new), choose digital or paper, seal and queue the
//! envelope, sign the evidence, and answer agencies' questions. Everything a
//! submission writes is one transaction of the node's store.

use std::sync::Arc;

use crate::node::GatewayNode;
use estafette_relay::store::{NewEvidence, Op, Outcome, StoreError};
use estafette_spec::evidence::EvidenceRecord;
use estafette_spec::{
    Digest, Envelope, EnvelopeId, Evidence, EvidenceEvent, EvidenceId, MessageError, MessageId,
    Oin, ReasonCode, Recipient, RoutingHeader, SignedMessage, Timestamp, TrustError, VerifyError,
};
use rand_core::OsRng;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::notify::Notifier;
use crate::paper::Spool;
use crate::registry::{self, Channel};
use estafette_spec::escalation::{self, Activity, EscalationPolicy, LetterProgress};

const SUBMISSIONS: TableDefinition<[u8; 16], &[u8]> = TableDefinition::new("gateway_submissions");
pub(crate) const PAPER: TableDefinition<[u8; 16], &[u8]> =
    TableDefinition::new("gateway_paper_queue");
/// Digital letters not yet opened or on paper: message id → [`TrackedLetter`].
pub(crate) const TRACKING: TableDefinition<[u8; 16], &[u8]> =
    TableDefinition::new("gateway_tracking");
/// The signed letter of each tracked letter, for a paper copy: message id →
/// `SignedMessage` bytes. Written once at submission and kept apart from
/// [`TRACKING`], whose small records change at every step, so that a step
/// does not rewrite the letter.
pub(crate) const PAPER_COPIES: TableDefinition<[u8; 16], &[u8]> =
    TableDefinition::new("gateway_paper_copies");
/// The same letters by recipient: (recipient, message id) → ().
pub(crate) const UNREAD: TableDefinition<(&str, [u8; 16]), ()> =
    TableDefinition::new("gateway_unread");

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

impl From<StoreError> for SubmitError {
    fn from(e: StoreError) -> Self {
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
    pub(crate) last_report: std::sync::Mutex<Option<crate::report::OperatorReport>>,
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
    fn count(&self, answer: &Result<Submitted, SubmitError>) {
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

fn db_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Database(e.to_string())
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

    /// The envelope id of a message: keyed by a secret of the gateway (so it
    /// reveals nothing) and the same for the same message (so a submission
    /// repeated after a crash can never make a second envelope).
    fn envelope_id(&self, sender: &Oin, message: &MessageId) -> EnvelopeId {
        let mut h = Sha256::new();
        h.update(b"estafette/1 envelope id");
        h.update(self.node.signing_key().to_bytes());
        h.update(sender.as_str().as_bytes());
        h.update(message.as_bytes());
        let digest = h.finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        EnvelopeId::from_bytes(id)
    }

    fn submission(&self, message: &MessageId) -> Result<Option<SubmissionRecord>, StoreError> {
        let db = self.node.store().database();
        let txn = db.begin_read().map_err(db_err)?;
        let table = match txn.open_table(SUBMISSIONS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(db_err(e)),
        };
        let found = table.get(message.as_bytes()).map_err(db_err)?;
        found
            .map(|v| {
                estafette_spec::cbor::from_slice(v.value(), 64 * 1024)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))
            })
            .transpose()
    }

    fn answer(record: &SubmissionRecord, message_id: MessageId, repeated: bool) -> Submitted {
        Submitted {
            message_id,
            envelope_id: record.envelope_id,
            channel: if record.channel == "digital" {
                "digital"
            } else {
                "paper"
            },
            reason: record.reason,
            acceptance: record.acceptance.clone(),
            repeated,
            failure: record.failure,
        }
    }

    /// Accepts a SignedMessage from the agency `caller` (read from its TLS certificate).
    pub async fn submit(&self, caller: &Oin, bytes: &[u8]) -> Result<Submitted, SubmitError> {
        let answer = self.submit_counted(caller, bytes).await;
        self.counters.count(&answer);
        answer
    }

    async fn submit_counted(&self, caller: &Oin, bytes: &[u8]) -> Result<Submitted, SubmitError> {
        let limit = estafette_spec::limits::MAX_MESSAGE_BYTES;
        if bytes.len() > limit {
            return Err(SubmitError::TooLarge {
                actual: bytes.len(),
                limit,
            });
        }
        let trust = self.node.trust();
        let verified = SignedMessage::verify(bytes, &trust).map_err(|e| match &e {
            MessageError::Verify(VerifyError::Trust(
                TrustError::UnknownKey(_)
                | TrustError::Revoked { .. }
                | TrustError::WrongRole { .. },
            ))
            | MessageError::SenderMismatch { .. }
            | MessageError::Sender(_) => SubmitError::UntrustedSigner(e),
            // A CBOR limit inside a small body (too many items, too deep)
            // is not "too large": the CBOR error names the limit, truly.
            _ => SubmitError::Invalid(e),
        })?;
        let letter = &verified.letter;
        // An agency can only send as itself.
        if &letter.sender != caller {
            return Err(SubmitError::SenderMismatch {
                certificate: caller.clone(),
                sender: letter.sender.clone(),
            });
        }
        if let Some(known) = self.submission(&letter.message_id)? {
            if known.sender == *caller && known.digest == verified.digest {
                return Ok(Self::answer(&known, letter.message_id, true));
            }
            return Err(SubmitError::Conflict(letter.message_id));
        }
        let person = registry::lookup(self.node.store().database(), &letter.recipient)?;
        let channel = registry::channel(person.as_ref(), &letter.sender);
        // Envelope times are for the relays' clocks; the gateway's own records
        // and evidence follow its (injectable) clock.
        let wall = estafette_pki::now();
        let now = self.clock.now();
        let envelope_id = self.envelope_id(caller, &letter.message_id);
        let acceptance_record = EvidenceRecord {
            evidence_id: EvidenceId::random(&mut OsRng),
            event: EvidenceEvent::SubmissionAcceptance,
            envelope_id: matches!(channel, Channel::Digital(_)).then_some(envelope_id),
            message_id: Some(letter.message_id),
            message_digest: Some(verified.digest),
            envelope_digest: None,
            issuer: self.node.id.clone(),
            issued_at: now,
            reason: None,
            actor: None,
            previous: None,
        };
        let acceptance = self.node.sign_evidence(&acceptance_record);
        let acceptance_evidence = NewEvidence {
            evidence_id: acceptance_record.evidence_id,
            message_id: Some(letter.message_id),
            bytes: acceptance.clone(),
        };
        let mut record = SubmissionRecord {
            sender: caller.clone(),
            digest: verified.digest,
            envelope_id: None,
            channel: channel.name().into(),
            reason: None,
            received_at: now,
            acceptance: acceptance.clone(),
            failure: None,
        };
        match channel {
            Channel::Digital(inbox) => {
                let home_key = trust
                    .node(&inbox.home_node)
                    .ok_or_else(|| {
                        SubmitError::NoRoute(format!(
                            "{} is not in the trust list",
                            inbox.home_node
                        ))
                    })?
                    .hpke_key;
                let header = RoutingHeader {
                    envelope_id,
                    home_node: inbox.home_node.clone(),
                    inbox_id: inbox.inbox_id,
                    message_id: letter.message_id,
                    message_digest: verified.digest,
                    hop_limit: self.envelope.hop_limit,
                    created_at: wall,
                    expires_at: wall.plus_s(self.envelope.lifetime_s),
                };
                let envelope = Envelope::seal(
                    header.clone(),
                    bytes,
                    &home_key,
                    self.node.signing_key(),
                    &mut OsRng,
                )
                .map_err(|e| SubmitError::Unavailable(e.to_string()))?;
                record.envelope_id = Some(envelope_id);
                // A dormant account gets the letter on paper too (and, once a
                // year, a letter asking to confirm the choice).
                let activity = Activity {
                    unread: self.unread(&letter.recipient)?,
                    ..person.as_ref().map(|p| p.activity).unwrap_or_default()
                };
                let plan = escalation::plan_digital(&activity, now, &self.policy);
                let dormant_paper = plan.also_paper.map(|reason| {
                    let evidence = self.paper_evidence(
                        letter.message_id,
                        verified.digest,
                        reason,
                        Digest::of(&acceptance),
                        now,
                    );
                    let item = PaperItem::letter(
                        letter.recipient.clone(),
                        reason,
                        now,
                        None,
                        bytes.to_vec(),
                    );
                    (item, evidence)
                });
                let confirm = plan.confirm_letter.then(|| PaperItem {
                    recipient: letter.recipient.clone(),
                    kind: PaperKind::ConfirmChoice,
                    reason: Some(ReasonCode::DormantAccount),
                    received_at: now,
                    consigned_at: None,
                    message: vec![],
                    spooled_at: None,
                    failure: None,
                });
                let tracked = TrackedLetter {
                    recipient: letter.recipient.clone(),
                    sender: letter.sender.clone(),
                    sender_reference: letter.sender_reference.clone(),
                    nature: letter.nature,
                    legal_effect: letter.legal_effect,
                    expected_action: letter.expected_action.clone(),
                    envelope_id,
                    message_digest: verified.digest,
                    progress: LetterProgress {
                        submitted_at: now,
                        deadline: letter.response_deadline,
                        on_paper: dormant_paper.is_some(),
                        ..Default::default()
                    },
                };
                let paper_copy = bytes.to_vec();
                let to_store = record.clone();
                let message_id = letter.message_id;
                let extra: estafette_relay::store::Extra = Box::new(move |tables, txn| {
                    let mut table = txn.open_table(SUBMISSIONS).map_err(db_err)?;
                    table
                        .insert(
                            message_id.as_bytes(),
                            estafette_spec::cbor::to_vec(&to_store).as_slice(),
                        )
                        .map_err(db_err)?;
                    if !tracked.progress.on_paper {
                        let key = tracked.recipient.to_string();
                        txn.open_table(TRACKING)
                            .map_err(db_err)?
                            .insert(
                                message_id.as_bytes(),
                                estafette_spec::cbor::to_vec(&tracked).as_slice(),
                            )
                            .map_err(db_err)?;
                        txn.open_table(PAPER_COPIES)
                            .map_err(db_err)?
                            .insert(message_id.as_bytes(), paper_copy.as_slice())
                            .map_err(db_err)?;
                        txn.open_table(UNREAD)
                            .map_err(db_err)?
                            .insert((key.as_str(), *message_id.as_bytes()), ())
                            .map_err(db_err)?;
                    }
                    let mut paper = txn.open_table(PAPER).map_err(db_err)?;
                    if let Some((item, evidence)) = dormant_paper {
                        paper
                            .insert(
                                message_id.as_bytes(),
                                estafette_spec::cbor::to_vec(&item).as_slice(),
                            )
                            .map_err(db_err)?;
                        tables.archive(&evidence)?;
                    }
                    if let Some(item) = confirm {
                        paper
                            .insert(
                                EvidenceId::random(&mut OsRng).as_bytes(),
                                estafette_spec::cbor::to_vec(&item).as_slice(),
                            )
                            .map_err(db_err)?;
                        if let Some(mut person) = registry::get_person(txn, &item.recipient)? {
                            person.activity.confirm_letter_at = Some(item.received_at);
                            registry::put_person(txn, &item.recipient, &person)?;
                        }
                    }
                    Ok(())
                });
                let outcome = self
                    .node
                    .submit_sealed(
                        envelope,
                        header,
                        Some(Digest::of(&acceptance)),
                        Some(acceptance_evidence),
                        Some(extra),
                    )
                    .await
                    .map_err(|e| match e {
                        estafette_relay::origin::QueueError::NoRoute(home) => {
                            SubmitError::NoRoute(format!("no route to {home}"))
                        }
                        other => SubmitError::Unavailable(other.to_string()),
                    })?;
                match outcome {
                    Outcome::Stored => Ok(Self::answer(&record, letter.message_id, false)),
                    // The same envelope id: this message was queued before a
                    // crash lost its submission record. The evidence stored then answers.
                    Outcome::Duplicate { evidence } => {
                        record.acceptance = evidence;
                        Ok(Self::answer(&record, letter.message_id, true))
                    }
                    Outcome::QueueFull => Err(SubmitError::Unavailable(
                        "the forward queue is full; try again later".into(),
                    )),
                    Outcome::Done => {
                        Err(SubmitError::Unavailable("unexpected store outcome".into()))
                    }
                }
            }
            Channel::Paper(reason) => {
                let paper_evidence = self.paper_evidence(
                    letter.message_id,
                    verified.digest,
                    reason,
                    Digest::of(&acceptance),
                    now,
                );
                record.reason = Some(reason);
                let mut item =
                    PaperItem::letter(letter.recipient.clone(), reason, now, None, bytes.to_vec());
                // Nowhere to print it: say so now, in evidence and in the
                // answer, instead of letting the agency believe it went out.
                let failure_evidence = if self
                    .postal_address(&letter.recipient, &letter.sender, now)?
                    .is_none()
                {
                    let failure = self.paper_failure_evidence(
                        letter.message_id,
                        verified.digest,
                        ReasonCode::NoPostalAddress,
                        Digest::of(&paper_evidence.bytes),
                        now,
                    );
                    record.failure = Some(ReasonCode::NoPostalAddress);
                    item.failure = Some(ReasonCode::NoPostalAddress);
                    tracing::warn!(agency = %caller, message = %letter.message_id, reason = ReasonCode::NoPostalAddress.code(), "a paper letter cannot be printed: no postal address is known; PaperFailure signed");
                    Some(failure)
                } else {
                    None
                };
                let to_store = record.clone();
                let message_id = letter.message_id;
                let op = Op::Apply(Box::new(move |tables, txn| {
                    let mut submissions = txn.open_table(SUBMISSIONS).map_err(db_err)?;
                    // Checked again inside the transaction: two identical
                    // submissions racing make one paper letter.
                    if submissions
                        .get(message_id.as_bytes())
                        .map_err(db_err)?
                        .is_some()
                    {
                        return Ok(());
                    }
                    submissions
                        .insert(
                            message_id.as_bytes(),
                            estafette_spec::cbor::to_vec(&to_store).as_slice(),
                        )
                        .map_err(db_err)?;
                    let mut paper = txn.open_table(PAPER).map_err(db_err)?;
                    paper
                        .insert(
                            message_id.as_bytes(),
                            estafette_spec::cbor::to_vec(&item).as_slice(),
                        )
                        .map_err(db_err)?;
                    tables.archive(&acceptance_evidence)?;
                    tables.archive(&paper_evidence)?;
                    if let Some(failure) = &failure_evidence {
                        tables.archive(failure)?;
                    }
                    Ok(())
                }));
                self.node.store().write(op).await?;
                // Answer with what is stored (the racing twin's, if it won).
                match self.submission(&letter.message_id)? {
                    Some(stored) if stored.digest == verified.digest => {
                        let repeated = stored.acceptance != record.acceptance;
                        Ok(Self::answer(&stored, letter.message_id, repeated))
                    }
                    _ => Err(SubmitError::Conflict(letter.message_id)),
                }
            }
        }
    }

    /// Where a paper letter from `sender` to `recipient` would go: the
    /// holder's postal address, or the office of the representative whose
    /// mandate takes the correspondence; `None` when none is known.
    pub(crate) fn postal_address(
        &self,
        recipient: &Recipient,
        sender: &Oin,
        now: Timestamp,
    ) -> Result<Option<estafette_spec::citizen::PostalAddress>, StoreError> {
        let db = self.node.store().database();
        let Some((holder, person)) = registry::lookup_entry(db, recipient)? else {
            return Ok(None);
        };
        let to = crate::mandates::correspondent(
            db,
            &holder,
            &person,
            Some(sender),
            now,
            &self.node.trust(),
        )?;
        Ok(to.address)
    }

    /// Signed PaperFailure evidence: the letter cannot go on paper.
    pub(crate) fn paper_failure_evidence(
        &self,
        message_id: MessageId,
        message_digest: Digest,
        reason: ReasonCode,
        previous: Digest,
        now: Timestamp,
    ) -> NewEvidence {
        self.paper_record(
            EvidenceEvent::PaperFailure,
            (message_id, message_digest),
            reason,
            previous,
            now,
        )
    }

    /// Signed PaperFallback evidence for a message.
    pub(crate) fn paper_evidence(
        &self,
        message_id: MessageId,
        message_digest: Digest,
        reason: ReasonCode,
        previous: Digest,
        now: Timestamp,
    ) -> NewEvidence {
        self.paper_record(
            EvidenceEvent::PaperFallback,
            (message_id, message_digest),
            reason,
            previous,
            now,
        )
    }

    /// The gateway's signed record of a paper `event` about a message.
    fn paper_record(
        &self,
        event: EvidenceEvent,
        (message_id, message_digest): (MessageId, Digest),
        reason: ReasonCode,
        previous: Digest,
        now: Timestamp,
    ) -> NewEvidence {
        let record = EvidenceRecord {
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
        };
        NewEvidence {
            evidence_id: record.evidence_id,
            message_id: Some(message_id),
            bytes: self.node.sign_evidence(&record),
        }
    }

    /// Digital letters to `recipient` not yet opened (as far as the monitor knows).
    pub fn unread(&self, recipient: &Recipient) -> Result<u32, StoreError> {
        let db = self.node.store().database();
        let txn = db.begin_read().map_err(db_err)?;
        let table = match txn.open_table(UNREAD) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
            Err(e) => return Err(db_err(e)),
        };
        let key = recipient.to_string();
        let range = (key.as_str(), [0u8; 16])..=(key.as_str(), [0xff; 16]);
        let count = table.range(range).map_err(db_err)?.take(10_000).count();
        Ok(count as u32)
    }

    /// All evidence so far for a message `caller` sent, in chain order.
    /// `None` when there is no such message of this caller (another agency's
    /// message looks exactly like a missing one).
    pub fn evidence(
        &self,
        caller: &Oin,
        message: &MessageId,
    ) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        match self.submission(message)? {
            Some(record) if &record.sender == caller => {
                let all = self.node.store().evidence_for(message)?;
                Ok(Some(Evidence::order_chain(all, &self.node.trust())))
            }
            _ => Ok(None),
        }
    }

    /// Whether `recipient` receives letters from `caller` digitally. Nothing more.
    pub fn reachable(&self, caller: &Oin, recipient: &Recipient) -> Result<bool, StoreError> {
        let person = registry::lookup(self.node.store().database(), recipient)?;
        Ok(matches!(
            registry::channel(person.as_ref(), caller),
            Channel::Digital(_)
        ))
    }

    /// Everything in the paper queue (spooled or not), by message id (or
    /// a random id for the gateway's own letters).
    pub fn paper_queue(&self) -> Result<Vec<(MessageId, PaperItem)>, StoreError> {
        Ok(self
            .paper_queue_raw()?
            .into_iter()
            .map(|(id, item)| (MessageId::from_bytes(id), item))
            .collect())
    }

    pub(crate) fn paper_queue_raw(&self) -> Result<Vec<([u8; 16], PaperItem)>, StoreError> {
        let db = self.node.store().database();
        let txn = db.begin_read().map_err(db_err)?;
        let table = match txn.open_table(PAPER) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(vec![]),
            Err(e) => return Err(db_err(e)),
        };
        let mut out = Vec::new();
        for item in table.iter().map_err(db_err)? {
            let (k, v) = item.map_err(db_err)?;
            let paper: PaperItem = estafette_spec::cbor::from_slice(
                v.value(),
                estafette_spec::limits::MAX_MESSAGE_BYTES + 4096,
            )
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            out.push((k.value(), paper));
        }
        Ok(out)
    }
}
