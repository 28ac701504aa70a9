//! The durable store: one redb database with immediate durability, written
//! by a single writer thread that commits everything pending in one
//! transaction (group commit: one fsync per batch) and only then answers the
//! requests of that batch. Nothing is acknowledged before it is on disk.
//!
//! Tables (keys are raw 16-byte ids; values CBOR records):
//! - `dedup`: envelope id → the evidence we signed and the envelope's state;
//!   remembered for `dedup_retention_s`.
//! - `queue`: envelope id → an envelope waiting to be forwarded.
//! - `inbox`: (inbox id, envelope id) → a letter (home role).
//! - `outbox`: evidence id → evidence waiting to be delivered to the gateway.
//! - `evidence`: (message id, evidence id) → evidence (gateway role: where
//!   all evidence ends up).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use estafette_spec::{Digest, EnvelopeId, EvidenceId, InboxId, MessageId, NodeId, Timestamp};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;

const DEDUP: TableDefinition<[u8; 16], &[u8]> = TableDefinition::new("dedup");
const QUEUE: TableDefinition<[u8; 16], &[u8]> = TableDefinition::new("queue");
/// The small part of each letter, what listing an inbox reads:
/// (inbox id, envelope id) → [`InboxRecord`].
const INBOX: TableDefinition<([u8; 16], [u8; 16]), &[u8]> = TableDefinition::new("inbox");
/// The signed letters themselves, read only when one is opened: envelope
/// id → `SignedMessage` bytes. Written once at delivery.
const LETTERS: TableDefinition<[u8; 16], &[u8]> = TableDefinition::new("letters");
/// Every opening of a letter, per inbox: (inbox, sequence) → [`AccessEntry`].
const ACCESS_LOG: TableDefinition<([u8; 16], u64), &[u8]> = TableDefinition::new("access_log");
/// Inboxes merged into another (a person linked two identities): from → into.
const INBOX_ALIAS: TableDefinition<[u8; 16], [u8; 16]> = TableDefinition::new("inbox_alias");
const OUTBOX: TableDefinition<[u8; 16], &[u8]> = TableDefinition::new("outbox");
const EVIDENCE: TableDefinition<([u8; 16], [u8; 16]), &[u8]> = TableDefinition::new("evidence");

/// Most write requests waiting for the writer; senders wait beyond this.
pub const MAX_PENDING_WRITES: usize = 65_536;
/// Memory for redb's page cache. The working set is the recent end of each
/// table (queues drain, letters are read soon after delivery) and the
/// kernel's page cache holds the rest; under load 16 MiB did better than
/// 64 MiB, 256 MiB or redb's 1 GiB default (estafette-gateway-load).
pub const STORE_CACHE_BYTES: usize = 16 * 1024 * 1024;
/// Largest stored record we read back (an envelope plus its fields).
const MAX_RECORD_BYTES: usize = estafette_spec::limits::MAX_ENVELOPE_BYTES + 4096;

/// Creates `dir` (and its parents) if missing, the last one readable only
/// by this user (0700); refuses one that others may read or enter, as
/// OpenSSH refuses a key file others can read: the node's data holds
/// letters, names and addresses.
pub fn private_dir(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let shown = dir.display();
    match std::fs::metadata(dir) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(StoreError::Permissions(format!(
                    "{shown} is open to other users (mode {mode:04o}); it holds private data: run `chmod 700 {shown}`"
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .map_err(|e| StoreError::Database(format!("{}: {e}", parent.display())))?;
            }
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(dir)
                .map_err(|e| StoreError::Database(format!("{shown}: {e}")))
        }
        Err(e) => Err(StoreError::Database(format!("{shown}: {e}"))),
    }
}

/// Creates `file` empty with mode 0600 if missing; refuses one that others
/// may read or write.
fn private_file(file: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let shown = file.display();
    match std::fs::metadata(file) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(StoreError::Permissions(format!(
                    "{shown} is open to other users (mode {mode:04o}); it holds private data: run `chmod 600 {shown}`"
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(file)
            .map(|_| ())
            .map_err(|e| StoreError::Database(format!("{shown}: {e}"))),
        Err(e) => Err(StoreError::Database(format!("{shown}: {e}"))),
    }
}

/// What the store could not do.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(String),
    #[error("stored record is damaged: {0}")]
    Corrupt(String),
    #[error("the store is shut down")]
    Closed,
    #[error("{0}")]
    Permissions(String),
}

macro_rules! db_err {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Database(e.to_string())
            }
        }
    )*};
}
db_err!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

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
    pub attempts: u32,
    pub next_attempt_ms: u64,
    pub last_error: Option<String>,
    #[serde(with = "serde_bytes")]
    pub envelope: Vec<u8>,
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
    pub attempts: u32,
    pub next_attempt_ms: u64,
    pub last_error: Option<String>,
    #[serde(with = "serde_bytes")]
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
    /// Evidence objects the gateway stored: out of the outbox.
    OutboxDone { ids: Vec<EvidenceId> },
    /// Evidence delivery failed: try again later.
    OutboxRetry {
        ids: Vec<EvidenceId>,
        next_attempt_ms: u64,
        last_error: String,
    },
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
    /// Forget dedup entries of envelopes no longer queued and older than `before`.
    Prune { before: Timestamp },
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
            Op::OutboxRetry { .. } => "OutboxRetry",
            Op::StoreEvidence { .. } => "StoreEvidence",
            Op::MarkOpened { .. } => "MarkOpened",
            Op::Prune { .. } => "Prune",
        };
        f.write_str(name)
    }
}

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
}

struct Job {
    op: Op,
    reply: oneshot::Sender<Result<Outcome, StoreError>>,
}

/// The durable store of one node.
pub struct Store {
    db: Arc<Database>,
    jobs: mpsc::Sender<Job>,
    writer: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
    queue_len: Arc<AtomicU64>,
    outbox_len: Arc<AtomicU64>,
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    estafette_spec::cbor::to_vec(value)
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    estafette_spec::cbor::from_slice(bytes, MAX_RECORD_BYTES)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl Store {
    /// Opens (or creates) the database and starts the writer thread.
    pub fn open(
        path: &Path,
        max_queue_len: u64,
        max_commit_batch: usize,
        metrics: Arc<Metrics>,
    ) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent() {
            private_dir(dir)?;
        }
        private_file(path)?;
        let db = Arc::new(
            Database::builder()
                .set_cache_size(STORE_CACHE_BYTES)
                .create(path)?,
        );
        {
            // Create every table so that readers never meet a missing one.
            let txn = db.begin_write()?;
            txn.open_table(DEDUP)?;
            txn.open_table(QUEUE)?;
            txn.open_table(INBOX)?;
            txn.open_table(LETTERS)?;
            txn.open_table(OUTBOX)?;
            txn.open_table(EVIDENCE)?;
            txn.commit()?;
        }
        let (queue_len, outbox_len) = {
            let txn = db.begin_read()?;
            (
                txn.open_table(QUEUE)?.len()?,
                txn.open_table(OUTBOX)?.len()?,
            )
        };
        let queue_len = Arc::new(AtomicU64::new(queue_len));
        let outbox_len = Arc::new(AtomicU64::new(outbox_len));
        let (jobs, rx) = mpsc::channel(MAX_PENDING_WRITES);
        let writer = Writer {
            db: db.clone(),
            max_queue_len,
            max_commit_batch,
            queue_len: queue_len.clone(),
            outbox_len: outbox_len.clone(),
            metrics,
        };
        let handle = std::thread::Builder::new()
            .name("estafette-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::Database(format!("starting the writer: {e}")))?;
        Ok(Store {
            db,
            jobs,
            writer: std::sync::Mutex::new(Some(handle)),
            queue_len,
            outbox_len,
        })
    }

    /// Submits a write and waits until its batch is committed.
    pub async fn write(&self, op: Op) -> Result<Outcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { op, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// The database, for reading tables of the caller's own (writes go
    /// through [`Op::Apply`] and [`Op::Accept`]'s `extra`).
    pub fn database(&self) -> &Database {
        &self.db
    }

    pub fn queue_len(&self) -> u64 {
        self.queue_len.load(Ordering::Relaxed)
    }

    pub fn outbox_len(&self) -> u64 {
        self.outbox_len.load(Ordering::Relaxed)
    }

    /// Every queued envelope, without its bytes.
    pub fn queue_snapshot(&self) -> Result<Vec<(EnvelopeId, QueueRecord)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(QUEUE)?;
        let mut out = Vec::new();
        for item in table.iter()? {
            let (k, v) = item?;
            let mut record: QueueRecord = decode(v.value())?;
            record.envelope = Vec::new();
            out.push((EnvelopeId::from_bytes(k.value()), record));
        }
        Ok(out)
    }

    pub fn queue_get(&self, id: &EnvelopeId) -> Result<Option<QueueRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(QUEUE)?;
        table
            .get(id.as_bytes())?
            .map(|v| decode(v.value()))
            .transpose()
    }

    pub fn dedup_get(&self, id: &EnvelopeId) -> Result<Option<DedupRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(DEDUP)?;
        table
            .get(id.as_bytes())?
            .map(|v| decode(v.value()))
            .transpose()
    }

    /// Every outbox entry: id, next attempt, attempts.
    pub fn outbox_snapshot(&self) -> Result<Vec<(EvidenceId, u64, u32)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(OUTBOX)?;
        let mut out = Vec::new();
        for item in table.iter()? {
            let (k, v) = item?;
            let record: OutboxRecord = decode(v.value())?;
            out.push((
                EvidenceId::from_bytes(k.value()),
                record.next_attempt_ms,
                record.attempts,
            ));
        }
        Ok(out)
    }

    /// The evidence bytes of these outbox entries (missing ones are skipped).
    pub fn outbox_get(&self, ids: &[EvidenceId]) -> Result<Vec<(EvidenceId, Vec<u8>)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(OUTBOX)?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(v) = table.get(id.as_bytes())? {
                let record: OutboxRecord = decode(v.value())?;
                out.push((*id, record.evidence));
            }
        }
        Ok(out)
    }

    /// The letters of one inbox, newest last.
    pub fn inbox_list(
        &self,
        inbox: &InboxId,
    ) -> Result<Vec<(EnvelopeId, InboxRecord)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(INBOX)?;
        let mut out = Vec::new();
        for item in
            table.range((*inbox.as_bytes(), [0u8; 16])..=(*inbox.as_bytes(), [0xffu8; 16]))?
        {
            let (k, v) = item?;
            out.push((
                EnvelopeId::from_bytes(k.value().1),
                decode::<InboxRecord>(v.value())?,
            ));
        }
        out.sort_by_key(|(_, r)| r.received_at);
        Ok(out)
    }

    /// The access log of an inbox, oldest first (at most `limit`, newest kept).
    pub fn access_log(
        &self,
        inbox: &InboxId,
        limit: usize,
    ) -> Result<Vec<AccessEntry>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = match txn.open_table(ACCESS_LOG) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(vec![]),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for item in table
            .range((*inbox.as_bytes(), 0u64)..=(*inbox.as_bytes(), u64::MAX))?
            .rev()
            .take(limit)
        {
            let (_, v) = item?;
            out.push(decode(v.value())?);
        }
        out.reverse();
        Ok(out)
    }

    pub fn inbox_get(
        &self,
        inbox: &InboxId,
        envelope: &EnvelopeId,
    ) -> Result<Option<InboxRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(INBOX)?;
        table
            .get((*inbox.as_bytes(), *envelope.as_bytes()))?
            .map(|v| decode(v.value()))
            .transpose()
    }

    /// The signed letter delivered in envelope `envelope`.
    pub fn letter(&self, envelope: &EnvelopeId) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(LETTERS)?;
        Ok(table.get(envelope.as_bytes())?.map(|v| v.value().to_vec()))
    }

    /// Letters not yet opened in one inbox.
    pub fn count_unread(&self, inbox: &InboxId) -> Result<usize, StoreError> {
        Ok(self
            .inbox_list(inbox)?
            .iter()
            .filter(|(_, r)| r.opened_at.is_none())
            .count())
    }

    /// Every letter in every inbox: (inbox, envelope, message id).
    pub fn inbox_all(&self) -> Result<Vec<(InboxId, EnvelopeId, MessageId)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(INBOX)?;
        let mut out = Vec::new();
        for item in table.iter()? {
            let (k, v) = item?;
            let (inbox, envelope) = k.value();
            let record: InboxRecord = decode(v.value())?;
            out.push((
                InboxId::from_bytes(inbox),
                EnvelopeId::from_bytes(envelope),
                record.message_id,
            ));
        }
        Ok(out)
    }

    /// All evidence kept for a message (gateway role), in no particular order.
    pub fn evidence_for(&self, message: &MessageId) -> Result<Vec<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(EVIDENCE)?;
        let mut out = Vec::new();
        for item in
            table.range((*message.as_bytes(), [0u8; 16])..=(*message.as_bytes(), [0xffu8; 16]))?
        {
            out.push(item?.1.value().to_vec());
        }
        Ok(out)
    }

    /// Every evidence object kept (gateway role).
    pub fn evidence_all(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(EVIDENCE)?;
        let mut out = Vec::new();
        for item in table.iter()? {
            out.push(item?.1.value().to_vec());
        }
        Ok(out)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // The sender is dropped with self; wait for the writer to finish the
        // batches already submitted so that nothing acknowledged is lost.
        let (dummy, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.jobs, dummy));
        if let Some(handle) = self.writer.lock().ok().and_then(|mut h| h.take()) {
            let _ = handle.join();
        }
    }
}

struct Writer {
    db: Arc<Database>,
    max_queue_len: u64,
    max_commit_batch: usize,
    queue_len: Arc<AtomicU64>,
    outbox_len: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
}

impl Writer {
    fn run(self, mut rx: mpsc::Receiver<Job>) {
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < self.max_commit_batch {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            let started = Instant::now();
            let (queue_before, outbox_before) = (
                self.queue_len.load(Ordering::Relaxed),
                self.outbox_len.load(Ordering::Relaxed),
            );
            let mut queue_len = queue_before;
            let mut outbox_len = outbox_before;
            let (ops, replies): (Vec<Op>, Vec<_>) =
                batch.into_iter().map(|j| (j.op, j.reply)).unzip();
            let count = ops.len();
            let result = (|| -> Result<Vec<Outcome>, StoreError> {
                let txn = self.db.begin_write()?;
                let mut outcomes = Vec::with_capacity(count);
                {
                    let mut t = Tables {
                        dedup: txn.open_table(DEDUP)?,
                        queue: txn.open_table(QUEUE)?,
                        inbox: txn.open_table(INBOX)?,
                        outbox: txn.open_table(OUTBOX)?,
                        evidence: txn.open_table(EVIDENCE)?,
                        queue_len: &mut queue_len,
                        outbox_len: &mut outbox_len,
                        max_queue_len: self.max_queue_len,
                    };
                    for op in ops {
                        outcomes.push(t.apply(op, &txn)?);
                    }
                }
                txn.commit()?;
                Ok(outcomes)
            })();
            self.metrics
                .commit_seconds
                .observe(started.elapsed().as_secs_f64());
            self.metrics.commit_batch_size.observe(count as f64);
            match result {
                Ok(outcomes) => {
                    self.queue_len.store(queue_len, Ordering::Relaxed);
                    self.outbox_len.store(outbox_len, Ordering::Relaxed);
                    self.metrics.outbox_depth.set(outbox_len as i64);
                    for (reply, outcome) in replies.into_iter().zip(outcomes) {
                        let _ = reply.send(Ok(outcome));
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, batch = count, "commit failed; nothing in this batch is acknowledged");
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
        }
    }
}

/// The store's open tables inside one write transaction.
pub struct Tables<'t> {
    dedup: redb::Table<'t, [u8; 16], &'static [u8]>,
    queue: redb::Table<'t, [u8; 16], &'static [u8]>,
    inbox: redb::Table<'t, ([u8; 16], [u8; 16]), &'static [u8]>,
    outbox: redb::Table<'t, [u8; 16], &'static [u8]>,
    evidence: redb::Table<'t, ([u8; 16], [u8; 16]), &'static [u8]>,
    queue_len: &'t mut u64,
    outbox_len: &'t mut u64,
    max_queue_len: u64,
}

impl Tables<'_> {
    /// Moves every letter of inbox `from` into `into` (each exactly once,
    /// records unchanged) and redirects later deliveries to `from`. Doing
    /// it again moves nothing. Gives the number of letters moved.
    pub fn merge_inbox(
        &mut self,
        txn: &redb::WriteTransaction,
        from: &InboxId,
        into: &InboxId,
    ) -> Result<usize, StoreError> {
        if from == into {
            return Ok(0);
        }
        let mut moved = Vec::new();
        for item in self
            .inbox
            .range((*from.as_bytes(), [0u8; 16])..=(*from.as_bytes(), [0xff; 16]))?
        {
            let (k, v) = item?;
            moved.push((k.value().1, v.value().to_vec()));
        }
        for (envelope, record) in &moved {
            self.inbox.remove((*from.as_bytes(), *envelope))?;
            self.inbox
                .insert((*into.as_bytes(), *envelope), record.as_slice())?;
        }
        let mut aliases = txn.open_table(INBOX_ALIAS)?;
        aliases.insert(from.as_bytes(), into.as_bytes())?;
        // Inboxes merged into `from` earlier now point further.
        let earlier: Vec<[u8; 16]> = aliases
            .iter()?
            .filter_map(Result::ok)
            .filter(|(_, v)| v.value() == *from.as_bytes())
            .map(|(k, _)| k.value())
            .collect();
        for k in earlier {
            aliases.insert(&k, into.as_bytes())?;
        }
        Ok(moved.len())
    }

    /// Keeps evidence where `to` says.
    pub fn keep(&mut self, e: &NewEvidence, to: EvidenceTo) -> Result<(), StoreError> {
        match to {
            EvidenceTo::Archive => self.archive(e),
            EvidenceTo::Outbox => {
                let record = OutboxRecord {
                    attempts: 0,
                    next_attempt_ms: 0,
                    last_error: None,
                    evidence: e.bytes.clone(),
                };
                if self
                    .outbox
                    .insert(e.evidence_id.as_bytes(), encode(&record).as_slice())?
                    .is_none()
                {
                    *self.outbox_len += 1;
                }
                Ok(())
            }
        }
    }

    /// Keeps evidence in the evidence table, by message.
    pub fn archive(&mut self, e: &NewEvidence) -> Result<(), StoreError> {
        let message = e.message_id.map(|m| *m.as_bytes()).unwrap_or([0; 16]);
        self.evidence
            .insert((message, *e.evidence_id.as_bytes()), e.bytes.as_slice())?;
        Ok(())
    }

    fn remove_queued(&mut self, id: &EnvelopeId) -> Result<bool, StoreError> {
        let removed = self.queue.remove(id.as_bytes())?.is_some();
        if removed {
            *self.queue_len = self.queue_len.saturating_sub(1);
        }
        Ok(removed)
    }

    fn apply(&mut self, op: Op, txn: &redb::WriteTransaction) -> Result<Outcome, StoreError> {
        match op {
            Op::Apply(extra) => {
                extra(self, txn)?;
                Ok(Outcome::Done)
            }
            Op::Accept {
                envelope_id,
                evidence,
                placement,
                now,
                extra,
                evidence_to,
            } => {
                let outcome = self.accept(
                    txn,
                    &envelope_id,
                    evidence.as_ref(),
                    &placement,
                    now,
                    evidence_to,
                )?;
                if outcome == Outcome::Stored
                    && let Some(extra) = extra
                {
                    extra(self, txn)?;
                }
                Ok(outcome)
            }
            Op::MarkOpened {
                inbox_id,
                envelope_id,
                opened_at,
                evidence,
                access,
            } => {
                let op = Op::MarkOpened {
                    inbox_id,
                    envelope_id,
                    opened_at,
                    evidence,
                    access,
                };
                let outcome = self.apply_ref(&op)?;
                if let (
                    Outcome::Stored,
                    Op::MarkOpened {
                        inbox_id, access, ..
                    },
                ) = (&outcome, &op)
                {
                    let mut log = txn.open_table(ACCESS_LOG)?;
                    let next = log
                        .range((*inbox_id.as_bytes(), 0u64)..=(*inbox_id.as_bytes(), u64::MAX))?
                        .next_back()
                        .transpose()?
                        .map_or(0, |(k, _)| k.value().1 + 1);
                    log.insert((*inbox_id.as_bytes(), next), encode(access).as_slice())?;
                }
                Ok(outcome)
            }
            other => self.apply_ref(&other),
        }
    }

    fn accept(
        &mut self,
        txn: &redb::WriteTransaction,
        envelope_id: &EnvelopeId,
        evidence: Option<&NewEvidence>,
        placement: &Placement,
        now: Timestamp,
        evidence_to: Option<EvidenceTo>,
    ) -> Result<Outcome, StoreError> {
        if let Some(v) = self.dedup.get(envelope_id.as_bytes())? {
            let known: DedupRecord = decode(v.value())?;
            return Ok(Outcome::Duplicate {
                evidence: known.evidence,
            });
        }
        let state = match placement {
            Placement::Queue(record) => {
                if *self.queue_len >= self.max_queue_len {
                    return Ok(Outcome::QueueFull);
                }
                self.queue
                    .insert(envelope_id.as_bytes(), encode(record).as_slice())?;
                *self.queue_len += 1;
                EnvelopeState::Queued
            }
            Placement::Inbox {
                inbox_id,
                record,
                message,
            } => {
                // A letter still addressed to a merged inbox goes to the one
                // it was merged into.
                let target = txn
                    .open_table(INBOX_ALIAS)?
                    .get(inbox_id.as_bytes())?
                    .map(|v| v.value())
                    .unwrap_or(*inbox_id.as_bytes());
                self.inbox
                    .insert((target, *envelope_id.as_bytes()), encode(record).as_slice())?;
                txn.open_table(LETTERS)?
                    .insert(envelope_id.as_bytes(), message.as_slice())?;
                EnvelopeState::Delivered
            }
        };
        let dedup = DedupRecord {
            evidence: evidence.map(|e| e.bytes.clone()).unwrap_or_default(),
            accepted_at: now,
            state,
        };
        self.dedup
            .insert(envelope_id.as_bytes(), encode(&dedup).as_slice())?;
        if let (Some(evidence), Some(to)) = (evidence, evidence_to) {
            self.keep(evidence, to)?;
        }
        Ok(Outcome::Stored)
    }

    fn apply_ref(&mut self, op: &Op) -> Result<Outcome, StoreError> {
        match op {
            Op::Apply(_) | Op::Accept { .. } => Ok(Outcome::Done),
            Op::Forwarded {
                envelope_id,
                evidence,
            } => {
                if self.remove_queued(envelope_id)?
                    && let Some((evidence, to)) = evidence
                {
                    self.keep(evidence, *to)?;
                }
                Ok(Outcome::Done)
            }
            Op::Reschedule {
                envelope_id,
                attempts,
                next_attempt_ms,
                last_error,
            } => {
                let record = match self.queue.get(envelope_id.as_bytes())? {
                    Some(v) => {
                        let mut r: QueueRecord = decode(v.value())?;
                        r.attempts = *attempts;
                        r.next_attempt_ms = *next_attempt_ms;
                        r.last_error = Some(last_error.clone());
                        r
                    }
                    None => return Ok(Outcome::Done),
                };
                self.queue
                    .insert(envelope_id.as_bytes(), encode(&record).as_slice())?;
                Ok(Outcome::Done)
            }
            Op::Fail {
                envelope_id,
                evidence,
                to,
            } => {
                if self.remove_queued(envelope_id)? {
                    for e in evidence {
                        self.keep(e, *to)?;
                    }
                }
                Ok(Outcome::Done)
            }
            Op::OutboxDone { ids } => {
                for id in ids {
                    if self.outbox.remove(id.as_bytes())?.is_some() {
                        *self.outbox_len = self.outbox_len.saturating_sub(1);
                    }
                }
                Ok(Outcome::Done)
            }
            Op::OutboxRetry {
                ids,
                next_attempt_ms,
                last_error,
            } => {
                for id in ids {
                    let record = match self.outbox.get(id.as_bytes())? {
                        Some(v) => {
                            let mut r: OutboxRecord = decode(v.value())?;
                            r.attempts += 1;
                            r.next_attempt_ms = *next_attempt_ms;
                            r.last_error = Some(last_error.clone());
                            r
                        }
                        None => continue,
                    };
                    self.outbox
                        .insert(id.as_bytes(), encode(&record).as_slice())?;
                }
                Ok(Outcome::Done)
            }
            Op::StoreEvidence { evidence } => {
                for e in evidence {
                    self.archive(e)?;
                }
                Ok(Outcome::Done)
            }
            Op::MarkOpened {
                inbox_id,
                envelope_id,
                opened_at,
                evidence,
                ..
            } => {
                let key = (*inbox_id.as_bytes(), *envelope_id.as_bytes());
                let record = match self.inbox.get(key)? {
                    Some(v) => {
                        let mut r: InboxRecord = decode(v.value())?;
                        if r.opened_at.is_none() {
                            r.opened_at = Some(*opened_at);
                        }
                        r.last_evidence = Digest::of(&evidence.bytes);
                        r
                    }
                    None => return Ok(Outcome::Done),
                };
                self.inbox.insert(key, encode(&record).as_slice())?;
                self.keep(evidence, EvidenceTo::Outbox)?;
                Ok(Outcome::Stored)
            }
            Op::Prune { before } => {
                let mut stale = Vec::new();
                for item in self.dedup.iter()? {
                    let (k, v) = item?;
                    let r: DedupRecord = decode(v.value())?;
                    // Kept while it is queued: a retried offer must still
                    // find it.
                    if r.accepted_at < *before && self.queue.get(k.value())?.is_none() {
                        stale.push(k.value());
                    }
                }
                for k in stale {
                    self.dedup.remove(k)?;
                }
                Ok(Outcome::Done)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(at: Timestamp) -> Placement {
        Placement::Queue(QueueRecord {
            destination: "home.test".parse().unwrap(),
            hops_taken: 0,
            our_evidence: None,
            expires_at: at.plus_s(3600),
            accepted_at: at,
            attempts: 0,
            next_attempt_ms: 0,
            last_error: None,
            envelope: vec![1, 2, 3],
        })
    }

    async fn accept(store: &Store, id: EnvelopeId, at: Timestamp) {
        let op = Op::Accept {
            envelope_id: id,
            evidence: None,
            placement: queued(at),
            now: at,
            extra: None,
            evidence_to: None,
        };
        assert_eq!(store.write(op).await.unwrap(), Outcome::Stored);
    }

    #[test]
    fn private_data_is_kept_private_and_open_permissions_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let db = data.join("relay.redb");
        drop(Store::open(&db, 100, 16, Arc::new(Metrics::new())).unwrap());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700, "the data directory is created 0700");
        assert_eq!(mode(&db), 0o600, "the database file is created 0600");
        // Opened up by someone: refused, with what to do, and nothing changed.
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
        let refused = Store::open(&db, 100, 16, Arc::new(Metrics::new()))
            .err()
            .expect("a directory others can enter is refused");
        assert!(refused.to_string().contains("chmod 700"), "{refused}");
        assert_eq!(mode(&data), 0o755, "not silently changed");
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        let refused = Store::open(&db, 100, 16, Arc::new(Metrics::new()))
            .err()
            .expect("a database others can read is refused");
        assert!(refused.to_string().contains("chmod 600"), "{refused}");
    }

    #[tokio::test]
    async fn pruning_keeps_what_is_still_queued() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            &dir.path().join("data").join("store.redb"),
            100,
            16,
            Arc::new(Metrics::new()),
        )
        .unwrap();
        let at = Timestamp(1_800_000_000);
        let (forwarded, waiting) = (
            EnvelopeId::from_bytes([1; 16]),
            EnvelopeId::from_bytes([2; 16]),
        );
        accept(&store, forwarded, at).await;
        accept(&store, waiting, at).await;
        let op = Op::Forwarded {
            envelope_id: forwarded,
            evidence: None,
        };
        store.write(op).await.unwrap();

        // Too young: both stay.
        store.write(Op::Prune { before: at }).await.unwrap();
        assert!(store.dedup_get(&forwarded).unwrap().is_some());
        // Old enough: the forwarded one goes, the queued one stays.
        store
            .write(Op::Prune {
                before: at.plus_s(1),
            })
            .await
            .unwrap();
        assert!(store.dedup_get(&forwarded).unwrap().is_none());
        assert!(store.dedup_get(&waiting).unwrap().is_some());
    }
}
