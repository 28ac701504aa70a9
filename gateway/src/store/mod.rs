//! The gateway's records: the registry (people, their history, e-mail
//! tokens, assertion nonces), mandates, submissions, the letters the
//! monitor follows and the paper queue. This module is the only place that
//! knows how they are stored; everything else asks in the gateway's words
//! through [`Records`], [`ReadRecords`] and [`WriteRecords`].
//!
//! Invariants every implementation keeps:
//! - a [`Records::write`] change is one transaction: all of it is durable
//!   before the call returns `Ok`, or none of it is;
//! - [`Records::queue_submission`] commits the queued envelope, the
//!   gateway's evidence and the change together, so a SubmissionAcceptance
//!   is only ever given for a submission that is fully recorded;
//! - a read sees one consistent state;
//! - every followed letter is in the due index no later than its next
//!   step ([`ReadRecords::due_letters`] finds it then, without a scan), and
//!   at once when evidence about it arrives or its person's entry changes.
//!
//! Today's implementation, [`redb::RedbRecords`], keeps the tables in the
//! gateway node's own database, next to its forward queue, so that both
//! commit in one transaction. The signatures carry no storage types, so
//! another database can implement the same traits.

#[cfg(test)]
mod contract;
mod pg_counts;
mod pg_queue;
mod pg_read;
mod pg_statements;
mod postgres;
mod redb;
pub mod test_postgres;

pub use self::pg_queue::{FirstHop, LEASE_S, OutboxItem, PgForwardQueue};
pub use self::postgres::{MAX_CONNECTIONS as MAX_PG_CONNECTIONS, PgRecords};
pub use self::redb::RedbRecords;

use std::collections::BTreeMap;

use estafette_relay::origin::QueueError;
use estafette_relay::store::{NewEvidence, Outcome, StoreError};
use estafette_spec::citizen::ChangeEntry;
use estafette_spec::mandate::{Mandate, MandateId};
use estafette_spec::{Digest, MessageId, Recipient, RoutingHeader, Timestamp};
use futures_util::future::BoxFuture;

use crate::gateway::{PaperItem, SubmissionRecord, TrackedLetter};
use crate::registry::PersonRecord;

/// Largest stored record of a person, a mandate, a history entry or a submission.
const MAX_RECORD_BYTES: usize = 64 * 1024;
/// Largest stored paper item (it holds the signed letter).
const MAX_PAPER_ITEM_BYTES: usize = estafette_spec::limits::MAX_MESSAGE_BYTES + 4096;

/// A database's own error, as the records' error.
fn db<E: std::error::Error + Send + Sync + 'static>(e: E) -> RecordsError {
    RecordsError::Database(Box::new(e))
}

/// A stored value (deterministic CBOR, read back with a size limit per
/// kind of record): the same in every backend.
fn decode<T: serde::de::DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
    limit: usize,
) -> Result<T, RecordsError> {
    estafette_spec::cbor::from_slice(bytes, limit).map_err(|e| RecordsError::Corrupt {
        what,
        detail: e.to_string(),
    })
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    estafette_spec::cbor::to_vec(value)
}

/// Most letters of one person counted as unread (the count stops there).
pub const MAX_UNREAD_COUNTED: usize = 10_000;

/// Why the gateway's records could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    #[error("the gateway's database failed: {0}")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("a stored {what} cannot be read: {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error(transparent)]
    Node(#[from] StoreError),
    #[error(transparent)]
    Log(#[from] estafette_relay::evidence_log::LogError),
    /// The submission was recorded by a twin first (a retry that raced).
    #[error("the submission is already recorded")]
    AlreadyRecorded,
}

/// The key of an item in the paper queue: the message id of an agency's
/// letter, or a random id for the gateway's own letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PaperId(pub [u8; 16]);

impl PaperId {
    /// The paper copy of an agency's letter.
    pub fn of_message(message: &MessageId) -> PaperId {
        PaperId(*message.as_bytes())
    }

    /// One of the gateway's own letters.
    pub fn random() -> PaperId {
        PaperId(*estafette_spec::EvidenceId::random(&mut rand_core::OsRng).as_bytes())
    }

    /// The message id, for an agency's letter.
    pub fn message(&self) -> MessageId {
        MessageId::from_bytes(self.0)
    }
}

impl std::fmt::Display for PaperId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", estafette_spec::bytes::Hex(&self.0))
    }
}

/// What the gateway reads.
pub trait ReadRecords {
    /// The entry kept under exactly `key` (a link is not followed).
    fn person(&self, key: &Recipient) -> Result<Option<PersonRecord>, RecordsError>;

    /// A person's entry, following a link to the entry of the person's
    /// other identity (one step: links always point at an entry that is not
    /// linked), with the identifier it is kept under.
    fn person_entry(
        &self,
        recipient: &Recipient,
    ) -> Result<Option<(Recipient, PersonRecord)>, RecordsError> {
        match self.person(recipient)? {
            Some(PersonRecord {
                linked_to: Some(primary),
                ..
            }) => Ok(self.person(&primary)?.map(|p| (primary, p))),
            Some(p) => Ok(Some((recipient.clone(), p))),
            None => Ok(None),
        }
    }

    /// Every entry, in key order.
    fn each_person(
        &self,
        visit: &mut dyn FnMut(&Recipient, PersonRecord) -> Result<(), RecordsError>,
    ) -> Result<(), RecordsError>;

    /// The newest `limit` entries of a person's history, oldest first.
    fn history(&self, key: &Recipient, limit: usize) -> Result<Vec<ChangeEntry>, RecordsError>;

    fn mandate(&self, id: &MandateId) -> Result<Option<Mandate>, RecordsError>;

    /// The mandates `holder` gave (or a court gave over them).
    fn mandates_of_holder(&self, holder: &Recipient) -> Result<Vec<Mandate>, RecordsError>;

    /// The mandates naming `representative`.
    fn mandates_of_representative(
        &self,
        representative: &Recipient,
    ) -> Result<Vec<Mandate>, RecordsError>;

    /// What the gateway answered to message `message` (idempotency).
    fn submission(&self, message: &MessageId) -> Result<Option<SubmissionRecord>, RecordsError>;

    /// A digital letter the monitor follows.
    fn tracked(&self, message: &MessageId) -> Result<Option<TrackedLetter>, RecordsError>;

    /// Followed letters whose next step is due at or before `by` (or
    /// about which something was learnt since they were last looked at),
    /// soonest first, at most `limit`: the monitor's work of one cycle.
    fn due_letters(
        &self,
        by: Timestamp,
        limit: usize,
    ) -> Result<Vec<(MessageId, TrackedLetter)>, RecordsError>;

    fn tracked_count(&self) -> Result<usize, RecordsError>;

    /// The signed letter kept for a paper copy of a followed letter.
    fn paper_copy(&self, message: &MessageId) -> Result<Option<Vec<u8>>, RecordsError>;

    /// How many followed letters to `key` are unread, counting to `limit`.
    fn unread_count(&self, key: &Recipient, limit: usize) -> Result<usize, RecordsError>;

    /// Everything in the paper queue, spooled or not (tools and tests: a
    /// running gateway asks [`Self::paper_waiting`]).
    fn paper_queue(&self) -> Result<Vec<(PaperId, PaperItem)>, RecordsError>;

    /// The paper items waiting for the print spool (neither spooled nor
    /// failed), at most `limit`, through an index of those alone.
    fn paper_waiting(&self, limit: usize) -> Result<Vec<PaperId>, RecordsError>;

    /// The operator report's counters ([`crate::report::tally`]), kept by
    /// every write of a person or a paper item.
    fn report_counts(&self) -> Result<BTreeMap<String, i64>, RecordsError>;

    /// Active inboxes whose last session was at or before `away_by` (or
    /// that never had one) and that hold an unread letter, found through
    /// the index of active inboxes by last session.
    fn dormant_inboxes(&self, away_by: Timestamp) -> Result<usize, RecordsError>;

    /// One item of the paper queue.
    fn paper(&self, id: PaperId) -> Result<Option<PaperItem>, RecordsError>;

    /// Assertion nonces whose assertions expired before `before`, at most `limit`.
    fn expired_nonces(&self, before: Timestamp, limit: usize)
    -> Result<Vec<Vec<u8>>, RecordsError>;

    /// Every evidence object kept for a message, in no particular order.
    fn evidence_for(&self, message: &MessageId) -> Result<Vec<Vec<u8>>, RecordsError>;
}

/// What the gateway writes, inside one transaction.
pub trait WriteRecords: ReadRecords {
    /// Writes a person's entry; their followed letters (under `key` and
    /// the identities linked into it) are due to be looked at again, since
    /// a change of their channel changes what is due.
    fn put_person(&mut self, key: &Recipient, record: &PersonRecord) -> Result<(), RecordsError>;

    /// Writes many entries, as [`Self::put_person`] each in turn (a later
    /// entry under the same key replaces an earlier one); a backend may do
    /// it in fewer round trips (an import of a national registry).
    fn put_people(&mut self, people: &[(Recipient, PersonRecord)]) -> Result<(), RecordsError> {
        for (key, record) in people {
            self.put_person(key, record)?;
        }
        Ok(())
    }

    /// Appends to a person's history, dropping the oldest entry beyond
    /// [`crate::registry::MAX_HISTORY_PER_PERSON`].
    fn record_change(&mut self, key: &Recipient, entry: &ChangeEntry) -> Result<(), RecordsError>;

    /// Records that `nonce` belongs to the assertion with `digest` (valid
    /// until `expires_at`); false when another assertion used it first.
    fn use_nonce(
        &mut self,
        nonce: &[u8],
        digest: Digest,
        expires_at: Timestamp,
    ) -> Result<bool, RecordsError>;

    fn forget_nonces(&mut self, nonces: &[Vec<u8>]) -> Result<(), RecordsError>;

    /// A pending e-mail verification, by the SHA-256 of its token.
    fn put_email_token(
        &mut self,
        token_digest: &[u8; 32],
        key: &Recipient,
        expires_at: Timestamp,
    ) -> Result<(), RecordsError>;

    /// Removes a pending verification, giving whose it was and until when.
    fn take_email_token(
        &mut self,
        token_digest: &[u8; 32],
    ) -> Result<Option<(Recipient, Timestamp)>, RecordsError>;

    /// Writes a mandate and its indexes by holder and representative.
    fn put_mandate(&mut self, mandate: &Mandate) -> Result<(), RecordsError>;

    /// Records the answer to a submission; false (and nothing written) when
    /// the message id is already recorded.
    fn put_submission(
        &mut self,
        message: &MessageId,
        record: &SubmissionRecord,
    ) -> Result<bool, RecordsError>;

    /// Starts following a digital letter: its record, its signed letter (for
    /// a paper copy), its place among the recipient's unread letters, and
    /// when its next step is due ([`estafette_spec::escalation::due_at`]; `None`: never).
    fn follow(
        &mut self,
        message: &MessageId,
        letter: &TrackedLetter,
        signed_letter: &[u8],
        due: Option<Timestamp>,
    ) -> Result<(), RecordsError>;

    /// The new progress of a followed letter, and when its next step is due.
    fn update_tracked(
        &mut self,
        message: &MessageId,
        letter: &TrackedLetter,
        due: Option<Timestamp>,
    ) -> Result<(), RecordsError>;

    /// Something was learnt about a followed letter (evidence arrived): the
    /// next cycle looks at it. Nothing when the letter is not followed.
    fn look_soon(&mut self, message: &MessageId) -> Result<(), RecordsError>;

    /// A letter leaves the monitor's books (opened, or on paper).
    fn forget(&mut self, recipient: &Recipient, message: &MessageId) -> Result<(), RecordsError>;

    fn put_paper(&mut self, id: PaperId, item: &PaperItem) -> Result<(), RecordsError>;

    /// Keeps evidence the gateway signed, for good.
    fn archive_evidence(&mut self, evidence: &NewEvidence) -> Result<(), RecordsError>;

    /// Ends `instance`'s claim of `step` with this change (see
    /// [`Records::release_step`]), so that the step's records and the end
    /// of its claim commit together.
    fn release_step(&mut self, instance: &str, step: StepKey) -> Result<(), RecordsError> {
        let _ = (instance, step);
        Ok(())
    }
}

/// A change to the records: runs inside one transaction.
pub type Change =
    Box<dyn FnOnce(&mut dyn WriteRecords) -> Result<(), RecordsError> + Send + 'static>;

/// An envelope the gateway sealed and signed, to queue for its first hop.
pub struct SealedEnvelope {
    pub envelope: Vec<u8>,
    pub header: RoutingHeader,
    /// The digest of the gateway's acceptance, the first link of its chain.
    pub previous: Option<Digest>,
    /// The SubmissionAcceptance, kept with the envelope.
    pub evidence: Option<NewEvidence>,
}

/// A step only one instance of the gateway may take at a time: the next
/// steps of a followed letter (a notification, a reminder, its paper copy),
/// or the printing of a paper item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepKey {
    Letter(MessageId),
    Paper(PaperId),
}

impl StepKey {
    /// The key's bytes: a kind byte, then the id.
    pub fn to_bytes(self) -> [u8; 17] {
        let (kind, id) = match self {
            StepKey::Letter(m) => (b'L', *m.as_bytes()),
            StepKey::Paper(p) => (b'P', p.0),
        };
        let mut out = [0u8; 17];
        out[0] = kind;
        out[1..].copy_from_slice(&id);
        out
    }
}

/// How long a step claim holds when its instance neither finishes nor
/// renews it (the instance died): then another instance may take the step.
pub const STEP_CLAIM_S: u64 = 120;

/// The gateway's records.
pub trait Records: Send + Sync {
    /// A consistent view of the records: as they are now (redb), or as
    /// they are at its first query (PostgreSQL), never changing after.
    fn read(&self) -> Result<Box<dyn ReadRecords + '_>, RecordsError>;

    /// Applies `change` in one transaction.
    fn write(&self, change: Change) -> BoxFuture<'_, Result<(), RecordsError>>;

    /// One person's entry as it is now, following a link as
    /// [`ReadRecords::person_entry`] does: for a lookup that needs nothing
    /// else, without the cost of a snapshot where a backend has one
    /// (PostgreSQL: one statement instead of a transaction).
    fn person_entry_now(
        &self,
        recipient: &Recipient,
    ) -> Result<Option<(Recipient, PersonRecord)>, RecordsError> {
        self.read()?.person_entry(recipient)
    }

    /// Queues `sealed` for its first hop and applies `change` in the same
    /// transaction, when the envelope is new; the outcome says whether it was.
    fn queue_submission(
        &self,
        sealed: SealedEnvelope,
        change: Change,
    ) -> BoxFuture<'_, Result<Outcome, QueueError>>;

    /// Claims `step` for `instance` until it is released or
    /// [`STEP_CLAIM_S`] pass; false when another instance holds it. A
    /// backend with one writing process (redb) has nobody to share with:
    /// the claim is always granted there.
    fn claim_step(
        &self,
        instance: &str,
        step: StepKey,
    ) -> BoxFuture<'_, Result<bool, RecordsError>> {
        let _ = (instance, step);
        Box::pin(async { Ok(true) })
    }

    /// Ends `instance`'s claim of `step`.
    fn release_step(
        &self,
        instance: &str,
        step: StepKey,
    ) -> BoxFuture<'_, Result<(), RecordsError>> {
        let _ = (instance, step);
        Box::pin(async { Ok(()) })
    }

    /// How many envelopes wait to be forwarded.
    fn outbox_len(&self) -> Result<u64, RecordsError>;
}

impl<'r> dyn Records + 'r {
    /// Applies `change` in one transaction and gives what it returned.
    pub async fn transact<T: Send + 'static>(
        &self,
        change: impl FnOnce(&mut dyn WriteRecords) -> Result<T, RecordsError> + Send + 'static,
    ) -> Result<T, RecordsError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.write(Box::new(move |records| {
            let _ = tx.send(change(records)?);
            Ok(())
        }))
        .await?;
        rx.await.map_err(|_| RecordsError::Corrupt {
            what: "change",
            detail: "the change gave no answer".into(),
        })
    }
}
