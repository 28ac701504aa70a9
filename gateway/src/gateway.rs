//! The gateway's decisions: accept a submission (who sent it, is it sealed
//! by that agency, is it new), choose digital or paper, seal and queue the
//! envelope, sign the evidence, and answer agencies' questions. Everything a
//! submission writes is one transaction of the node's store.

use std::sync::Arc;

use estafette_relay::Node;
use estafette_relay::redb::{ReadableDatabase, ReadableTable, TableDefinition};
use estafette_relay::store::{NewEvidence, Op, Outcome, StoreError};
use estafette_spec::cose::CoseError;
use estafette_spec::evidence::EvidenceRecord;
use estafette_spec::{
    Digest, Envelope, EnvelopeId, Evidence, EvidenceEvent, EvidenceId, MessageError, MessageId,
    Oin, ReasonCode, Recipient, RoutingHeader, SignedMessage, Timestamp, TrustError, VerifyError,
};
use rand_core::OsRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::registry::{self, Channel};

const SUBMISSIONS: TableDefinition<[u8; 16], &[u8]> = TableDefinition::new("gateway_submissions");
const PAPER: TableDefinition<[u8; 16], &[u8]> = TableDefinition::new("gateway_paper_queue");

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
}

/// A letter waiting to be printed and posted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PaperItem {
    pub recipient: Recipient,
    pub reason: ReasonCode,
    pub received_at: Timestamp,
    #[serde(with = "serde_bytes")]
    pub message: Vec<u8>,
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

/// The gateway: a node in the gateway role plus the agency-facing logic.
pub struct Gateway {
    pub node: Arc<Node>,
    pub envelope: EnvelopeSettings,
}

fn db_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Database(e.to_string())
}

impl Gateway {
    pub fn new(node: Arc<Node>, envelope: EnvelopeSettings) -> Gateway {
        Gateway { node, envelope }
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
            Err(estafette_relay::redb::TableError::TableDoesNotExist(_)) => return Ok(None),
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
        }
    }

    /// Accepts a SignedMessage from the agency `caller` (read from its TLS certificate).
    pub async fn submit(&self, caller: &Oin, bytes: &[u8]) -> Result<Submitted, SubmitError> {
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
            MessageError::Verify(VerifyError::Cose(CoseError::Cbor(c)))
                if c.reason() == ReasonCode::TooLarge =>
            {
                SubmitError::TooLarge {
                    actual: bytes.len(),
                    limit,
                }
            }
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
        let now = estafette_pki::now();
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
                    created_at: now,
                    expires_at: now.plus_s(self.envelope.lifetime_s),
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
                let to_store = record.clone();
                let message_id = letter.message_id;
                let extra: estafette_relay::store::Extra = Box::new(move |_tables, txn| {
                    let mut table = txn.open_table(SUBMISSIONS).map_err(db_err)?;
                    table
                        .insert(
                            message_id.as_bytes(),
                            estafette_spec::cbor::to_vec(&to_store).as_slice(),
                        )
                        .map_err(db_err)?;
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
                        estafette_relay::NodeError::Envelope(m) => SubmitError::NoRoute(m),
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
                let paper_record = EvidenceRecord {
                    evidence_id: EvidenceId::random(&mut OsRng),
                    event: EvidenceEvent::PaperFallback,
                    envelope_id: None,
                    message_id: Some(letter.message_id),
                    message_digest: Some(verified.digest),
                    envelope_digest: None,
                    issuer: self.node.id.clone(),
                    issued_at: now,
                    reason: Some(reason),
                    actor: None,
                    previous: Some(Digest::of(&acceptance)),
                };
                let paper_evidence = NewEvidence {
                    evidence_id: paper_record.evidence_id,
                    message_id: Some(letter.message_id),
                    bytes: self.node.sign_evidence(&paper_record),
                };
                record.reason = Some(reason);
                let item = PaperItem {
                    recipient: letter.recipient.clone(),
                    reason,
                    received_at: now,
                    message: bytes.to_vec(),
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
                    tables.emit(&acceptance_evidence)?;
                    tables.emit(&paper_evidence)?;
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

    /// Letters waiting in the paper queue.
    pub fn paper_queue(&self) -> Result<Vec<(MessageId, PaperItem)>, StoreError> {
        let db = self.node.store().database();
        let txn = db.begin_read().map_err(db_err)?;
        let table = match txn.open_table(PAPER) {
            Ok(t) => t,
            Err(estafette_relay::redb::TableError::TableDoesNotExist(_)) => return Ok(vec![]),
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
            out.push((MessageId::from_bytes(k.value()), paper));
        }
        Ok(out)
    }
}
