//! The durable store: one redb database with immediate durability, written
//! by a single writer thread that commits everything pending in one
//! transaction (group commit: one fsync per batch) and only then answers the
//! requests of that batch. Nothing is acknowledged before it is on disk.
//!
//! Tables (keys are raw 16-byte ids; values CBOR records):
//! - `dedup_ids`: envelope id → when it was accepted and, while it is
//!   queued, its place: 16 bytes a value, so that the one table keyed by
//!   random id stays small enough to live in memory; remembered for
//!   `dedup_retention_s`. `dedup_evidence`: (accepted at, envelope id) →
//!   the evidence we signed, written once at the end of a time-ordered
//!   table, which pruning reads from its front.
//! - `queue_by_place`: place → an envelope waiting to be forwarded, written
//!   once. Places are numbered in the order envelopes are accepted, so a
//!   queue of a million appends at its end and drains from its front
//!   (keyed by random envelope id, every write went to a different page);
//!   `queue_retries`: place → how its attempts went, so that a retry
//!   rewrites a few bytes and not the envelope.
//! - `lines`: (next hop, place) → (envelope id, accepted at): each next
//!   hop's envelopes in the order they were queued, which the forwarder
//!   reads a window at a time; `line_lengths`: next hop → how many wait;
//!   `expiries`: (expires at, envelope id) → next hop, for giving up what
//!   expired without reading the queue.
//! - `inbox`: (inbox id, envelope id) → a letter (home role).
//! - `outbox_by_place`: place → (evidence id, evidence) waiting to be
//!   delivered to the gateway, in the order it goes out, written once at
//!   the end and read a batch at a time from the front.
//! - `evidence`: (message id, evidence id) → evidence (gateway role: where
//!   all evidence ends up).
//!
//! Records and operations are in `records`; the writer thread that applies
//! them in `writer`.

mod records;
mod space;
mod writer;

pub use records::*;
pub use space::DEFAULT_MIN_FREE_BYTES;
pub use writer::Tables;
use writer::Writer;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use estafette_spec::{EnvelopeId, EvidenceId, InboxId, MessageId, NodeId, Timestamp};

use crate::forwarder::Waiting;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;

/// Every envelope accepted: envelope id → (accepted at in seconds, its
/// place while queued, or [`NOT_QUEUED`]).
const DEDUP: TableDefinition<[u8; 16], (u64, u64)> = TableDefinition::new("dedup_ids");
/// The place of an envelope delivered here (never queued).
const NOT_QUEUED: u64 = u64::MAX;
/// The evidence signed for each accepted envelope: (accepted at in
/// seconds, envelope id) → evidence bytes. Written once.
const DEDUP_EVIDENCE: TableDefinition<(u64, [u8; 16]), &[u8]> =
    TableDefinition::new("dedup_evidence");
/// Dedup as versions before `dedup_ids` kept it (envelope id → a CBOR
/// [`DedupRecord`], and an index by time); moved when the store opens.
const LEGACY_DEDUP: TableDefinition<[u8; 16], &[u8]> = TableDefinition::new("dedup");
const LEGACY_DEDUP_BY_TIME: TableDefinition<(u64, [u8; 16]), ()> =
    TableDefinition::new("dedup_by_time");
/// Queued envelopes by place: place → [`QueueRecord`], written once.
const QUEUE: TableDefinition<u64, &[u8]> = TableDefinition::new("queue_by_place");
/// How the attempts to forward each queued envelope went: place → [`RetryRecord`].
const RETRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("queue_retries");
/// The queue as versions before places kept it (envelope id → record);
/// moved into [`QUEUE`] when the store opens.
const LEGACY_QUEUE: TableDefinition<[u8; 16], &[u8]> = TableDefinition::new("queue");
/// The small part of each letter, what listing an inbox reads:
/// (inbox id, envelope id) → [`InboxRecord`].
const INBOX: TableDefinition<([u8; 16], [u8; 16]), &[u8]> = TableDefinition::new("inbox");
/// Each inbox's letters in the order they arrived, what a page of an inbox
/// reads: (inbox id, received at in seconds, envelope id) → ().
const INBOX_BY_TIME: TableDefinition<([u8; 16], u64, [u8; 16]), ()> =
    TableDefinition::new("inbox_by_time");
/// Letters not yet opened per inbox: inbox id → count. Every inbox with a
/// letter has an entry (a store with letters and no entry is from before
/// the counts, and is counted when it opens).
const INBOX_UNREAD: TableDefinition<[u8; 16], u64> = TableDefinition::new("inbox_unread");
/// The signed letters themselves, read only when one is opened: envelope
/// id → `SignedMessage` bytes. Written once at delivery.
const LETTERS: TableDefinition<[u8; 16], &[u8]> = TableDefinition::new("letters");
/// Every opening of a letter, per inbox: (inbox, sequence) → [`AccessEntry`].
const ACCESS_LOG: TableDefinition<([u8; 16], u64), &[u8]> = TableDefinition::new("access_log");
/// Inboxes merged into another (a person linked two identities): from → into.
const INBOX_ALIAS: TableDefinition<[u8; 16], [u8; 16]> = TableDefinition::new("inbox_alias");
const OUTBOX: TableDefinition<u64, ([u8; 16], &[u8])> = TableDefinition::new("outbox_by_place");
/// The outbox as versions before `outbox_by_place` kept it: evidence id →
/// CBOR [`OutboxRecord`], and a line place → evidence id; moved at open.
const LEGACY_OUTBOX: TableDefinition<[u8; 16], &[u8]> = TableDefinition::new("outbox");
const LEGACY_OUTBOX_LINE: TableDefinition<u64, [u8; 16]> = TableDefinition::new("outbox_line");
/// Each next hop's line: (next hop, place) → (envelope id, accepted at in
/// seconds).
const LINES: TableDefinition<(&str, u64), ([u8; 16], u64)> = TableDefinition::new("lines");
/// How many envelopes wait for each next hop.
const LINE_LENGTHS: TableDefinition<&str, u64> = TableDefinition::new("line_lengths");
/// Queued envelopes by expiry: (expires at in seconds, envelope id) → next hop.
const EXPIRIES: TableDefinition<(u64, [u8; 16]), &str> = TableDefinition::new("expiries");
const EVIDENCE: TableDefinition<([u8; 16], [u8; 16]), &[u8]> = TableDefinition::new("evidence");

/// Where a page of an inbox ends: the next page holds the letters that
/// arrived before it. Written `<received at>.<envelope id in hex>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboxCursor {
    pub received_at: Timestamp,
    pub envelope: EnvelopeId,
}

impl std::fmt::Display for InboxCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}.{}",
            self.received_at.0,
            estafette_spec::bytes::Hex(self.envelope.as_bytes())
        )
    }
}

/// A cursor that is not `<seconds>.<32 hex digits>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a page cursor is <seconds>.<32 hex digits>")]
pub struct BadCursor;

impl std::str::FromStr for InboxCursor {
    type Err = BadCursor;
    fn from_str(s: &str) -> Result<InboxCursor, BadCursor> {
        let (at, envelope) = s.split_once('.').ok_or(BadCursor)?;
        if envelope.len() != 32 || !envelope.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BadCursor);
        }
        let mut id = [0u8; 16];
        for (i, byte) in id.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&envelope[2 * i..2 * i + 2], 16).map_err(|_| BadCursor)?;
        }
        Ok(InboxCursor {
            received_at: Timestamp(at.parse().map_err(|_| BadCursor)?),
            envelope: EnvelopeId::from_bytes(id),
        })
    }
}

/// A page of an inbox, newest first.
#[derive(Debug, Default)]
pub struct InboxPage {
    pub letters: Vec<(EnvelopeId, InboxRecord)>,
    /// Where the next (older) page starts; `None` on the last page.
    pub next: Option<InboxCursor>,
}

/// Most write requests waiting for the writer; senders wait beyond this.
pub const MAX_PENDING_WRITES: usize = 65_536;
/// Memory for redb's page cache unless configured (`limits.store_cache_mib`).
/// The working set is the recent end of each table (queues drain, letters
/// are read soon after delivery) and the kernel's page cache holds the rest;
/// under load 16 MiB did better than 64 MiB, 256 MiB or redb's 1 GiB
/// default (estafette-gateway-load).
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
                std::fs::create_dir_all(parent).map_err(|e| StoreError::io(parent, e))?;
            }
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(dir)
                .map_err(|e| StoreError::io(dir, e))
        }
        Err(e) => Err(StoreError::io(dir, e)),
    }
}

/// Creates `file` empty with mode 0600 if missing; refuses one that others
/// may read or write.
pub fn private_file(file: &Path) -> Result<(), StoreError> {
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
            .map_err(|e| StoreError::io(file, e)),
        Err(e) => Err(StoreError::io(file, e)),
    }
}

/// What the store could not do. Cloned to every write of a failed batch.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[source] Arc<redb::Error>),
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: Arc<std::io::Error>,
    },
    #[error("starting the writer thread: {0}")]
    Writer(#[source] Arc<std::io::Error>),
    #[error("stored record is damaged: {0}")]
    Corrupt(String),
    #[error("the store is shut down")]
    Closed,
    #[error("{0}")]
    Permissions(String),
    /// A write of the caller's own ([`Op::Apply`], an `extra`) refused to
    /// go on; nothing of its batch was committed.
    #[error("the change was not made: {0}")]
    Aborted(String),
    /// The store's file system has less free space than the store keeps in
    /// reserve; the write that adds data was not made. Try again later.
    #[error(
        "the disk is full: {free_mib} MiB free, below the reserve of {reserve_mib} MiB; try again later"
    )]
    DiskFull { free_mib: u64, reserve_mib: u64 },
}

impl StoreError {
    fn io(path: &Path, source: std::io::Error) -> StoreError {
        StoreError::Io {
            path: path.to_path_buf(),
            source: Arc::new(source),
        }
    }
}

macro_rules! db_err {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Database(Arc::new(e.into()))
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

struct Job {
    op: Op,
    reply: oneshot::Sender<Result<Outcome, StoreError>>,
}

/// The durable store of one node.
pub struct Store {
    db: Arc<Database>,
    /// Free bytes the writer keeps on the file system (see [`Store::keep_free`]).
    min_free: Arc<AtomicU64>,
    jobs: mpsc::Sender<Job>,
    writer: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
    queue_len: Arc<AtomicU64>,
    outbox_len: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
}

fn parse_hop(hop: &str) -> Result<NodeId, StoreError> {
    hop.parse()
        .map_err(|e| StoreError::Corrupt(format!("next hop {hop:?}: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    estafette_spec::cbor::to_vec(value)
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    estafette_spec::cbor::from_slice(bytes, MAX_RECORD_BYTES)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl Store {
    /// Opens (or creates) the database and starts the writer thread, with
    /// the default page cache ([`STORE_CACHE_BYTES`]).
    pub fn open(
        path: &Path,
        max_queue_len: u64,
        max_commit_batch: usize,
        metrics: Arc<Metrics>,
    ) -> Result<Store, StoreError> {
        Store::open_with_cache(
            path,
            max_queue_len,
            max_commit_batch,
            STORE_CACHE_BYTES,
            metrics,
        )
    }

    /// [`Store::open`] with a page cache of `cache_bytes`.
    pub fn open_with_cache(
        path: &Path,
        max_queue_len: u64,
        max_commit_batch: usize,
        cache_bytes: usize,
        metrics: Arc<Metrics>,
    ) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent() {
            private_dir(dir)?;
        }
        private_file(path)?;
        let db = Arc::new(
            Database::builder()
                .set_cache_size(cache_bytes)
                .create(path)?,
        );
        {
            // Create every table so that readers never meet a missing one.
            let txn = db.begin_write()?;
            txn.open_table(DEDUP)?;
            txn.open_table(QUEUE)?;
            txn.open_table(RETRIES)?;
            txn.open_table(INBOX)?;
            txn.open_table(INBOX_BY_TIME)?;
            txn.open_table(INBOX_UNREAD)?;
            txn.open_table(LETTERS)?;
            txn.open_table(OUTBOX)?;
            txn.open_table(DEDUP_EVIDENCE)?;
            txn.open_table(EVIDENCE)?;
            txn.open_table(LINES)?;
            txn.open_table(LINE_LENGTHS)?;
            txn.open_table(EXPIRIES)?;
            writer::move_queue_to_places(&txn)?;
            writer::move_outbox_to_places(&txn)?;
            writer::move_dedup_to_time_order(&txn)?;
            writer::index_inboxes_by_time(&txn)?;
            writer::count_unread_letters(&txn)?;
            txn.commit()?;
        }
        let next_seq = writer::next_seq(&db)?;
        let next_outbox_seq = writer::next_outbox_seq(&db)?;
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
        let min_free = Arc::new(AtomicU64::new(DEFAULT_MIN_FREE_BYTES));
        let writer = Writer {
            db: db.clone(),
            space: space::DiskSpace::of(path),
            min_free: min_free.clone(),
            disk_full: false,
            max_queue_len,
            max_commit_batch,
            queue_len: queue_len.clone(),
            outbox_len: outbox_len.clone(),
            next_seq,
            next_outbox_seq,
            metrics: metrics.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("estafette-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::Writer(Arc::new(e)))?;
        Ok(Store {
            db,
            min_free,
            jobs,
            writer: std::sync::Mutex::new(Some(handle)),
            queue_len,
            outbox_len,
            metrics,
        })
    }

    /// Keeps `bytes` free on the store's file system: below that, writes
    /// that add data are refused with [`StoreError::DiskFull`] (default
    /// [`DEFAULT_MIN_FREE_BYTES`]).
    pub fn keep_free(&self, bytes: u64) {
        self.min_free.store(bytes, Ordering::Relaxed);
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

    /// The next hops envelopes wait for, with how many wait for each.
    pub fn queue_lines(&self) -> Result<Vec<(NodeId, u64)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(LINE_LENGTHS)?;
        let mut out = Vec::new();
        for item in table.iter()? {
            let (k, v) = item?;
            out.push((parse_hop(k.value())?, v.value()));
        }
        Ok(out)
    }

    /// The first `limit` envelopes waiting for `next_hop`, in the order
    /// they were queued.
    pub fn queue_line(&self, next_hop: &NodeId, limit: usize) -> Result<Vec<Waiting>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(LINES)?;
        let hop = next_hop.as_str();
        let mut out = Vec::new();
        for item in table.range((hop, 0u64)..=(hop, u64::MAX))?.take(limit) {
            let (_, v) = item?;
            let (id, accepted_at) = v.value();
            out.push(Waiting {
                id: EnvelopeId::from_bytes(id),
                accepted_at: Timestamp(accepted_at),
            });
        }
        Ok(out)
    }

    /// Up to `limit` queued envelopes that expire at or before `by`,
    /// soonest first, with their next hop.
    pub fn queue_expiring(
        &self,
        by: Timestamp,
        limit: usize,
    ) -> Result<Vec<(EnvelopeId, NodeId)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(EXPIRIES)?;
        let mut out = Vec::new();
        for item in table.range(..=(by.0, [0xff; 16]))?.take(limit) {
            let (k, v) = item?;
            out.push((EnvelopeId::from_bytes(k.value().1), parse_hop(v.value())?));
        }
        Ok(out)
    }

    /// A queued envelope is tried again at `next_attempt_ms`.
    pub async fn reschedule(
        &self,
        envelope_id: EnvelopeId,
        attempts: u32,
        next_attempt_ms: u64,
        last_error: String,
    ) -> Result<(), StoreError> {
        self.write(Op::Reschedule {
            envelope_id,
            attempts,
            next_attempt_ms,
            last_error,
        })
        .await
        .map(|_| ())
    }

    /// A queued envelope, found through its dedup record's place.
    pub fn queue_get(&self, id: &EnvelopeId) -> Result<Option<QueueRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let dedup = txn.open_table(DEDUP)?;
        let Some(place) = dedup
            .get(id.as_bytes())?
            .map(|v| v.value().1)
            .filter(|&place| place != NOT_QUEUED)
        else {
            return Ok(None);
        };
        let Some(record) = txn.open_table(QUEUE)?.get(place)? else {
            return Ok(None);
        };
        let record: QueueRecord = decode(record.value())?;
        let retry = match txn.open_table(RETRIES)?.get(place)? {
            Some(v) => decode(v.value())?,
            None => RetryRecord::default(),
        };
        Ok(Some(record.with_retries(retry)))
    }

    pub fn dedup_get(&self, id: &EnvelopeId) -> Result<Option<DedupRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let Some((accepted_s, place)) = txn
            .open_table(DEDUP)?
            .get(id.as_bytes())?
            .map(|v| v.value())
        else {
            return Ok(None);
        };
        let evidence = txn
            .open_table(DEDUP_EVIDENCE)?
            .get((accepted_s, *id.as_bytes()))?
            .map(|v| v.value().to_vec())
            .unwrap_or_default();
        Ok(Some(DedupRecord::kept(evidence, accepted_s, place)))
    }

    /// The first `limit` entries of the outbox's line, in the order they
    /// go out: place, evidence id and the evidence.
    pub fn outbox_front(&self, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        let txn = self.db.begin_read()?;
        let outbox = txn.open_table(OUTBOX)?;
        let mut out = Vec::with_capacity(limit.min(1024));
        for item in outbox.iter()?.take(limit) {
            let (place, value) = item?;
            let (id, evidence) = value.value();
            out.push(OutboxEntry {
                place: place.value(),
                id: EvidenceId::from_bytes(id),
                evidence: evidence.to_vec(),
            });
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

    /// A page of one inbox, newest first: at most `limit` letters that
    /// arrived before `before` (from the newest when `None`), and where
    /// the next page starts if there is one. Reads the page's letters only,
    /// through the inbox's index by arrival, however long the inbox is.
    pub fn inbox_page(
        &self,
        inbox: &InboxId,
        before: Option<InboxCursor>,
        limit: usize,
    ) -> Result<InboxPage, StoreError> {
        let txn = self.db.begin_read()?;
        let index = txn.open_table(INBOX_BY_TIME)?;
        let table = txn.open_table(INBOX)?;
        let id = *inbox.as_bytes();
        let first = (id, 0u64, [0u8; 16]);
        let mut keys = match before {
            Some(c) => index.range(first..(id, c.received_at.0, *c.envelope.as_bytes()))?,
            None => index.range(first..=(id, u64::MAX, [0xff; 16]))?,
        }
        .rev();
        let mut page = InboxPage::default();
        for item in keys.by_ref().take(limit) {
            let (_, received_at, envelope) = item?.0.value();
            // The index and the letters change in one transaction.
            if let Some(v) = table.get((id, envelope))? {
                page.letters
                    .push((EnvelopeId::from_bytes(envelope), decode(v.value())?));
            }
            page.next = Some(InboxCursor {
                received_at: Timestamp(received_at),
                envelope: EnvelopeId::from_bytes(envelope),
            });
        }
        if keys.next().is_none() {
            page.next = None;
        }
        Ok(page)
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
        // Counted: listing an inbox must read none (a test holds it to that).
        self.metrics.letters_read.inc();
        let txn = self.db.begin_read()?;
        let table = txn.open_table(LETTERS)?;
        Ok(table.get(envelope.as_bytes())?.map(|v| v.value().to_vec()))
    }

    /// Letters not yet opened in one inbox (a count kept with each
    /// delivery, opening and merge: nothing of the inbox is read).
    pub fn count_unread(&self, inbox: &InboxId) -> Result<usize, StoreError> {
        let txn = self.db.begin_read()?;
        let unread = txn
            .open_table(INBOX_UNREAD)?
            .get(inbox.as_bytes())?
            .map_or(0, |n| n.value());
        Ok(usize::try_from(unread).unwrap_or(usize::MAX))
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

#[cfg(test)]
mod tests;
