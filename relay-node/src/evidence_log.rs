//! This node's evidence log (SPEC.md §15): every evidence record the node
//! makes is appended, in commit order, to an RFC 9162 Merkle tree kept in a
//! redb database of its own; after each commit the node signs **one**
//! checkpoint, and each record comes back with its receipt. The log keeps
//! hashes only: the records stay in the node's store, with whoever holds
//! them today.
//!
//! One writer thread takes every record waiting, appends them, signs the
//! checkpoint and commits (one fsync) before it answers: a checkpoint is
//! never handed out before the records under it are on disk, so a node that
//! loses power cannot sign a second history of a size it signed before.
//! The node appends a record before its store keeps it (the store's commit
//! comes after); if that later commit fails, the log holds a record nobody
//! was handed, which proves nothing to anyone.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use ed25519_dalek::SigningKey;
use estafette_spec::merkle::{self, Hash, NodeSource};
use estafette_spec::receipt::{Cosignature, InclusionProof, Receipt, SignedCheckpoint};
use estafette_spec::{Clock, Digest, Evidence, EvidenceError, EvidenceRecord};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;

/// Every perfect subtree of the log, stored once when its last leaf
/// arrives: (height, index) → hash. Level-`L` tiles are the nodes of height
/// `8·L`.
const NODES: TableDefinition<(u8, u64), [u8; 32]> = TableDefinition::new("log_nodes");
/// The log's origin, its size, its newest signed checkpoint and the newest
/// one witnesses cosigned (with their cosignatures).
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("log_meta");
/// Other nodes' logs this node witnesses: origin → the size and root it
/// last cosigned. Written (and synced) before the cosignature is given.
const WITNESSED: TableDefinition<&str, (u64, [u8; 32])> = TableDefinition::new("witnessed");

/// Most records one checkpoint covers: one commit of the log.
pub const MAX_LOG_BATCH: usize = 4096;
/// Most records waiting for the log's writer; more wait to be taken.
pub const MAX_LOG_PENDING: usize = 16_384;

/// Why the log could not take a record, or be read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LogError {
    #[error("evidence log storage: {0}")]
    Storage(String),
    #[error("evidence log {found:?} is kept in {path}, not {expected:?}")]
    OtherOrigin {
        path: String,
        found: String,
        expected: String,
    },
    #[error("evidence log is damaged: node {0:?} is missing")]
    Missing((u8, u64)),
    #[error("the evidence log has stopped")]
    Closed,
    #[error("{0}")]
    Record(#[from] EvidenceError),
}

/// Why a witness gave no cosignature.
#[derive(Debug, Clone)]
pub enum Witnessing {
    /// The checkpoint was refused, with the size this node knows of the log.
    Refused {
        refusal: estafette_spec::witness::WitnessRefusal,
        known_size: u64,
    },
    /// This node could not read or write what it knows.
    Failed(LogError),
}

fn storage(e: impl std::fmt::Display) -> LogError {
    LogError::Storage(e.to_string())
}

/// A record in the log: its evidence object and its chain digest.
#[derive(Debug, Clone)]
pub struct Logged {
    pub evidence: Vec<u8>,
    pub digest: Digest,
}

impl Logged {
    /// The evidence object of `record`, to keep in the store.
    pub fn keep(self, record: &EvidenceRecord) -> crate::store::NewEvidence {
        crate::store::NewEvidence {
            evidence_id: record.evidence_id,
            message_id: record.message_id,
            bytes: self.evidence,
        }
    }
}

/// The log's newest state, as readers see it.
#[derive(Debug, Clone, Default)]
struct Head {
    size: u64,
    checkpoint: Option<SignedCheckpoint>,
}

struct Job {
    entry: Vec<u8>,
    reply: oneshot::Sender<Result<Vec<u8>, LogError>>,
}

/// A node's evidence log: appends records, gives their receipts, serves
/// checkpoints, tiles and proofs.
pub struct EvidenceLog {
    origin: String,
    key: SigningKey,
    db: Arc<Database>,
    head: Arc<RwLock<Head>>,
    jobs: mpsc::Sender<Job>,
    writer: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl EvidenceLog {
    /// Opens (or starts) the log `origin` in the database at `path`; its
    /// checkpoints are signed with `key` at `clock`'s time.
    pub fn open(
        path: &Path,
        origin: String,
        key: SigningKey,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> Result<EvidenceLog, LogError> {
        estafette_spec::receipt::check_origin(&origin).map_err(storage)?;
        let db = Arc::new(Database::create(path).map_err(storage)?);
        let head = {
            let txn = db.begin_write().map_err(storage)?;
            let head = {
                txn.open_table(NODES).map_err(storage)?;
                txn.open_table(WITNESSED).map_err(storage)?;
                let mut meta = txn.open_table(META).map_err(storage)?;
                let found = meta
                    .get("origin")
                    .map_err(storage)?
                    .map(|v| String::from_utf8_lossy(v.value()).into_owned());
                match found {
                    Some(found) if found != origin => {
                        return Err(LogError::OtherOrigin {
                            path: path.display().to_string(),
                            found,
                            expected: origin,
                        });
                    }
                    Some(_) => {}
                    None => {
                        meta.insert("origin", origin.as_bytes()).map_err(storage)?;
                    }
                }
                read_head(&meta)?
            };
            txn.commit().map_err(storage)?;
            head
        };
        metrics
            .log_records
            .set(head.size.min(i64::MAX as u64) as i64);
        let head = Arc::new(RwLock::new(head));
        let (jobs, rx) = mpsc::channel(MAX_LOG_PENDING);
        let writer = LogWriter {
            db: db.clone(),
            head: head.clone(),
            origin: origin.clone(),
            key: key.clone(),
            clock,
            metrics,
        };
        let handle = std::thread::Builder::new()
            .name("estafette-log".into())
            .spawn(move || writer.run(rx))
            .map_err(storage)?;
        Ok(EvidenceLog {
            origin,
            key,
            db,
            head,
            jobs,
            writer: std::sync::Mutex::new(Some(handle)),
        })
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// How many records the log holds (as of its last commit).
    pub fn size(&self) -> u64 {
        self.read_head().size
    }

    /// The newest signed checkpoint, if any record was ever logged.
    pub fn checkpoint(&self) -> Option<SignedCheckpoint> {
        self.read_head().checkpoint
    }

    /// Appends `record` and waits for the commit: the evidence object
    /// `[record, receipt]`, and the record's digest (what the next record
    /// of its letter links to).
    pub async fn append(&self, record: &EvidenceRecord) -> Result<Logged, LogError> {
        let entry = Evidence::record_bytes(record)?;
        let digest = Digest::of(&entry);
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { entry, reply })
            .await
            .map_err(|_| LogError::Closed)?;
        let evidence = answer.await.map_err(|_| LogError::Closed)??;
        Ok(Logged { evidence, digest })
    }

    /// The tile of C2SP tlog-tiles at `level`, `index`, `width` hashes, if
    /// the log has it: 32 bytes a hash, nothing else.
    pub fn tile(&self, level: u8, index: u64, width: u64) -> Result<Option<Vec<u8>>, LogError> {
        let height = level * merkle::TILE_HEIGHT;
        let nodes_at_level = self.size() >> height;
        let start = index.saturating_mul(merkle::TILE_WIDTH);
        let available = nodes_at_level.saturating_sub(start).min(merkle::TILE_WIDTH);
        // A tile of any width the log has: the first hashes of a tile never
        // change, so a reader holding an older checkpoint gets the partial
        // tile of its tree, not only of the newest.
        if width == 0 || width > available {
            return Ok(None);
        }
        let txn = self.db.begin_read().map_err(storage)?;
        let nodes = txn.open_table(NODES).map_err(storage)?;
        let mut tile = Vec::with_capacity(width as usize * 32);
        for item in nodes
            .range((height, start)..(height, start + width))
            .map_err(storage)?
        {
            tile.extend_from_slice(&item.map_err(storage)?.1.value());
        }
        if tile.len() != width as usize * 32 {
            return Err(LogError::Missing((height, start)));
        }
        Ok(Some(tile))
    }

    /// The consistency proof from `old` to `new` records (0 < old ≤ new ≤
    /// size), or `None`.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Option<Vec<Hash>>, LogError> {
        if new > self.size() {
            return Ok(None);
        }
        let txn = self.db.begin_read().map_err(storage)?;
        let nodes = txn.open_table(NODES).map_err(storage)?;
        merkle::stored_consistency_proof(&Stored::new(&nodes), old, new)
    }

    /// Witnesses `offer` (a checkpoint of another node's log) as `me`:
    /// cosigns it at `time` if it extends what this node cosigned of that
    /// log before, and remembers it durably first. Blocks on the database:
    /// call it off the async threads.
    pub fn witness(
        &self,
        me: &estafette_spec::NodeId,
        offer: &estafette_spec::witness::CheckpointOffer<'_>,
        trust: &estafette_spec::TrustList,
        time: u64,
    ) -> Result<Cosignature, Witnessing> {
        use estafette_spec::witness::{LogHead, cosign};
        let failed = |e: LogError| Witnessing::Failed(e);
        let origin = offer.checkpoint.checkpoint.origin.clone();
        let txn = self.db.begin_write().map_err(|e| failed(storage(e)))?;
        let cosignature = {
            let mut table = txn.open_table(WITNESSED).map_err(|e| failed(storage(e)))?;
            let known = table
                .get(origin.as_str())
                .map_err(|e| failed(storage(e)))?
                .map(|v| {
                    let (tree_size, root) = v.value();
                    LogHead {
                        origin: origin.clone(),
                        tree_size,
                        root,
                    }
                });
            let known_size = known.as_ref().map_or(0, |k| k.tree_size);
            let (head, cosignature) = cosign(me, &self.key, known.as_ref(), offer, trust, time)
                .map_err(|refusal| Witnessing::Refused {
                    refusal,
                    known_size,
                })?;
            table
                .insert(origin.as_str(), (head.tree_size, head.root))
                .map_err(|e| failed(storage(e)))?;
            cosignature
        };
        txn.commit().map_err(|e| failed(storage(e)))?;
        Ok(cosignature)
    }

    /// Keeps `checkpoint` (of this log) with the cosignatures witnesses
    /// gave it: what this node serves as its checkpoint, and what receipts
    /// in a proof bundle are renewed against.
    pub fn keep_cosigned(
        &self,
        checkpoint: &SignedCheckpoint,
        cosignatures: &[Cosignature],
    ) -> Result<(), LogError> {
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut meta = txn.open_table(META).map_err(storage)?;
            meta.insert("cosigned", checkpoint.to_cose(cosignatures).as_slice())
                .map_err(storage)?;
        }
        txn.commit().map_err(storage)
    }

    /// The newest checkpoint witnesses cosigned, with their cosignatures.
    pub fn cosigned(&self) -> Result<Option<(SignedCheckpoint, Vec<Cosignature>)>, LogError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let meta = txn.open_table(META).map_err(storage)?;
        match meta.get("cosigned").map_err(storage)? {
            Some(v) => Ok(Some(SignedCheckpoint::parse(v.value()).map_err(storage)?)),
            None => Ok(None),
        }
    }

    fn read_head(&self) -> Head {
        // A panic while holding the lock leaves a head that is still whole.
        self.head
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl Drop for EvidenceLog {
    fn drop(&mut self) {
        // Let the writer finish what was submitted, and close the database
        // before another instance may open it.
        let (dummy, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.jobs, dummy));
        if let Some(handle) = self.writer.lock().ok().and_then(|mut h| h.take()) {
            let _ = handle.join();
        }
    }
}

fn read_head(meta: &impl ReadableTable<&'static str, &'static [u8]>) -> Result<Head, LogError> {
    let size = match meta.get("size").map_err(storage)? {
        Some(v) => u64::from_be_bytes(
            v.value()
                .try_into()
                .map_err(|_| storage("log size is not 8 bytes"))?,
        ),
        None => 0,
    };
    let checkpoint = match meta.get("checkpoint").map_err(storage)? {
        Some(v) => Some(SignedCheckpoint::parse(v.value()).map_err(storage)?.0),
        None => None,
    };
    Ok(Head { size, checkpoint })
}

/// The stored nodes, read through a table (and remembered for the batch).
struct Stored<'a, T> {
    nodes: &'a T,
    seen: std::cell::RefCell<HashMap<(u8, u64), Hash>>,
}

impl<'a, T> Stored<'a, T> {
    fn new(nodes: &'a T) -> Self {
        Stored {
            nodes,
            seen: Default::default(),
        }
    }
}

impl<T: ReadableTable<(u8, u64), [u8; 32]>> NodeSource for Stored<'_, T> {
    type Error = LogError;
    fn node(&self, height: u8, index: u64) -> Result<Hash, LogError> {
        if let Some(hash) = self.seen.borrow().get(&(height, index)) {
            return Ok(*hash);
        }
        let hash = self
            .nodes
            .get((height, index))
            .map_err(storage)?
            .map(|v| v.value())
            .ok_or(LogError::Missing((height, index)))?;
        self.seen.borrow_mut().insert((height, index), hash);
        Ok(hash)
    }
}

struct LogWriter {
    db: Arc<Database>,
    head: Arc<RwLock<Head>>,
    origin: String,
    key: SigningKey,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
}

impl LogWriter {
    fn run(self, mut rx: mpsc::Receiver<Job>) {
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_LOG_BATCH {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            let (entries, replies): (Vec<Vec<u8>>, Vec<_>) =
                batch.into_iter().map(|j| (j.entry, j.reply)).unzip();
            match self.commit(&entries) {
                Ok((receipts, head)) => {
                    self.metrics.log_checkpoints.inc();
                    self.metrics
                        .log_records
                        .set(head.size.min(i64::MAX as u64) as i64);
                    *self
                        .head
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = head;
                    for ((reply, entry), receipt) in replies.into_iter().zip(&entries).zip(receipts)
                    {
                        let _ = reply.send(Ok(Evidence::assemble(entry, &receipt)));
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, records = entries.len(), "evidence log commit failed; none of these records is logged");
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
        }
    }

    /// Appends `entries`, signs one checkpoint, commits: their receipts and
    /// the new head. Nothing changes if it fails.
    fn commit(&self, entries: &[Vec<u8>]) -> Result<(Vec<Vec<u8>>, Head), LogError> {
        let txn = self.db.begin_write().map_err(storage)?;
        // This thread is the log's only writer: the head is what is stored.
        let old_size = self
            .head
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .size;
        let new_size = old_size + entries.len() as u64;
        let (receipts, signed) = {
            let mut table = txn.open_table(NODES).map_err(storage)?;
            for (i, entry) in entries.iter().enumerate() {
                let index = old_size + i as u64;
                let nodes = merkle::append(&Stored::new(&table), index, merkle::leaf_hash(entry))?;
                for (height, at, hash) in nodes {
                    table.insert((height, at), hash).map_err(storage)?;
                }
            }
            let stored = Stored::new(&table);
            let root = merkle::stored_root(&stored, new_size)?;
            let signed = SignedCheckpoint::sign(
                estafette_spec::receipt::Checkpoint {
                    origin: self.origin.clone(),
                    tree_size: new_size,
                    root,
                    issued_at: self.clock.now(),
                },
                &self.key,
            );
            let mut receipts = Vec::with_capacity(entries.len());
            for index in old_size..new_size {
                let path = merkle::stored_inclusion_proof(&stored, index, new_size)?
                    .ok_or(LogError::Missing((0, index)))?;
                receipts.push(
                    Receipt {
                        checkpoint: signed.clone(),
                        proof: InclusionProof {
                            tree_size: new_size,
                            leaf_index: index,
                            path,
                        },
                        cosignatures: Vec::new(),
                    }
                    .encode(),
                );
            }
            (receipts, signed)
        };
        {
            let mut meta = txn.open_table(META).map_err(storage)?;
            meta.insert("size", new_size.to_be_bytes().as_slice())
                .map_err(storage)?;
            meta.insert("checkpoint", signed.to_cose(&[]).as_slice())
                .map_err(storage)?;
        }
        txn.commit().map_err(storage)?;
        Ok((
            receipts,
            Head {
                size: new_size,
                checkpoint: Some(signed),
            },
        ))
    }
}
