//! The gateway's records in redb: tables of the gateway node's own
//! database, written by the node store's writer thread in the same
//! transactions as its forward queue. Values are deterministic CBOR, read
//! back with a size limit per kind of record.

use std::sync::{Arc, Mutex};

use ::redb::{
    Key, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    TableError, Value, WriteTransaction,
};
use estafette_relay::core::NodeCore;
use estafette_relay::forwarder::Forwarder;
use estafette_relay::origin::{ArchiveHook, QueueError};
use estafette_relay::store::{Extra, NewEvidence, Op, Outcome, Store, StoreError, Tables};
use estafette_spec::citizen::ChangeEntry;
use estafette_spec::mandate::{Mandate, MandateId};
use estafette_spec::{Digest, MessageId, Recipient, Timestamp};
use futures_util::future::BoxFuture;
use serde::de::DeserializeOwned;

use super::{
    Change, MAX_PAPER_ITEM_BYTES, MAX_RECORD_BYTES, PaperId, ReadRecords, Records, RecordsError,
    SealedEnvelope, WriteRecords, db, decode, encode,
};
use crate::gateway::{PaperItem, SubmissionRecord, TrackedLetter};
use crate::mandates::MAX_MANDATES_PER_PERSON;
use crate::registry::{MAX_HISTORY_PER_PERSON, PersonRecord};

mod counts;
#[cfg(test)]
pub(super) use counts::forget_counts;

/// People by recipient (`bsn:…`, `eidas:…`) → [`PersonRecord`].
const PEOPLE: TableDefinition<&str, &[u8]> = TableDefinition::new("registry_people");
/// Each person's change history: (recipient, sequence number) → [`ChangeEntry`].
const HISTORY: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("registry_history");
/// Assertion nonces seen: nonce → (assertion digest, expiry).
const NONCES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("registry_nonces");
/// Pending e-mail verifications: SHA-256 of the token → (recipient, expiry).
const EMAIL_TOKENS: TableDefinition<[u8; 32], &[u8]> =
    TableDefinition::new("registry_email_tokens");
const MANDATES: TableDefinition<[u8; 16], &[u8]> = TableDefinition::new("registry_mandates");
/// (holder, mandate id) → ().
const BY_HOLDER: TableDefinition<(&str, [u8; 16]), ()> =
    TableDefinition::new("registry_mandates_by_holder");
/// (representative, mandate id) → ().
const BY_REPRESENTATIVE: TableDefinition<(&str, [u8; 16]), ()> =
    TableDefinition::new("registry_mandates_by_representative");
/// Message id → [`SubmissionRecord`].
const SUBMISSIONS: TableDefinition<[u8; 16], &[u8]> = TableDefinition::new("gateway_submissions");
/// [`PaperId`] → [`PaperItem`].
const PAPER: TableDefinition<[u8; 16], &[u8]> = TableDefinition::new("gateway_paper_queue");
/// Digital letters not yet opened or on paper: message id → [`TrackedLetter`].
const TRACKING: TableDefinition<[u8; 16], &[u8]> = TableDefinition::new("gateway_tracking");
/// The signed letter of each followed letter, for a paper copy. Kept apart
/// from [`TRACKING`], whose small records change at every step, so that a
/// step does not rewrite the letter.
const PAPER_COPIES: TableDefinition<[u8; 16], &[u8]> = TableDefinition::new("gateway_paper_copies");
/// The followed letters by recipient: (recipient, message id) → ().
const UNREAD: TableDefinition<(&str, [u8; 16]), ()> = TableDefinition::new("gateway_unread");
/// The followed letters by when their next step is due: (due, message id)
/// → (); [`LOOK_NOW`] for a letter to look at in the next cycle.
const DUE: TableDefinition<(u64, [u8; 16]), ()> = TableDefinition::new("gateway_due");
/// Each followed letter's key in [`DUE`]: message id → due.
const DUE_OF: TableDefinition<[u8; 16], u64> = TableDefinition::new("gateway_due_of");

/// The due time of a letter to look at in the next cycle.
const LOOK_NOW: u64 = 0;
/// The due time of a letter with nothing ever due (until something changes).
const NEVER: u64 = u64::MAX;

/// Largest stored nonce or token record.
const MAX_SMALL_RECORD_BYTES: usize = 4096;

/// The full key range of one person in a (recipient, …) table.
fn of<T: Copy>(key: &str, min: T, max: T) -> std::ops::RangeInclusive<(&str, T)> {
    (key, min)..=(key, max)
}

/// The gateway's records in the node's redb database.
pub struct RedbRecords {
    store: Arc<Store>,
    /// Where queued envelopes go next; none for an offline tool.
    first_hop: Option<(Arc<NodeCore>, Arc<Forwarder>)>,
}

impl RedbRecords {
    /// The records of a running gateway node, which queues submissions
    /// with its `forwarder`.
    /// Counts a store from before the report's counters first (see
    /// [`counts::count_from_before`]).
    pub fn new(
        core: Arc<NodeCore>,
        store: Arc<Store>,
        forwarder: Arc<Forwarder>,
    ) -> Result<RedbRecords, RecordsError> {
        counts::count_from_before(&store)?;
        Ok(RedbRecords {
            store,
            first_hop: Some((core, forwarder)),
        })
    }

    /// The records in the database at `path`, for an administrator's tool
    /// while the gateway is stopped (it cannot queue envelopes), with a page
    /// cache of `cache_bytes` (`limits.store_cache_bytes()`).
    pub fn open_offline(
        path: &std::path::Path,
        cache_bytes: usize,
    ) -> Result<RedbRecords, RecordsError> {
        let metrics = Arc::new(estafette_relay::metrics::Metrics::new());
        let store = Store::open_with_cache(path, u64::MAX, 1, cache_bytes, metrics)?;
        counts::count_from_before(&store)?;
        Ok(RedbRecords {
            store: Arc::new(store),
            first_hop: None,
        })
    }

    /// What the gateway's forward queue runs where it archives the next
    /// hop's evidence (the home node's ContentConsignment, a failure): the
    /// letters it is about are due to be looked at, in the same
    /// transaction.
    pub fn archive_hook(store: Arc<Store>) -> ArchiveHook {
        Arc::new(move |tables, txn, messages| {
            let mut writing = Writing {
                tables,
                txn,
                store: &store,
            };
            for message in messages {
                writing
                    .look_soon(message)
                    .map_err(|e| StoreError::Aborted(e.to_string()))?;
            }
            Ok(())
        })
    }

    /// Files every followed letter that is not in the due index (a store
    /// from before the index) as due now; how many. Run at start.
    pub async fn index_due_letters(&self) -> Result<u64, RecordsError> {
        let filed = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = filed.clone();
        self.store
            .write(Op::Apply(Box::new(move |_tables, txn| {
                let tracking = txn.open_table(TRACKING)?;
                let mut due_of = txn.open_table(DUE_OF)?;
                if due_of.len()? >= tracking.len()? {
                    return Ok(());
                }
                let mut due = txn.open_table(DUE)?;
                for item in tracking.iter()? {
                    let message = item?.0.value();
                    if due_of.get(message)?.is_none() {
                        due_of.insert(message, LOOK_NOW)?;
                        due.insert((LOOK_NOW, message), ())?;
                        counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                Ok(())
            })))
            .await?;
        Ok(filed.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// The node store's form of `change`; a failure of the change itself
    /// is kept in `failed`, so that its caller gets the typed error.
    fn extra(&self, change: Change, failed: Arc<Mutex<Option<RecordsError>>>) -> Extra {
        let store = self.store.clone();
        Box::new(move |tables, txn| {
            let mut writing = Writing {
                tables,
                txn,
                store: &store,
            };
            change(&mut writing).map_err(|e| {
                let shown = e.to_string();
                if let Ok(mut slot) = failed.lock() {
                    *slot = Some(e);
                }
                StoreError::Aborted(shown)
            })
        })
    }
}

/// The error of a change, if it failed, else the store's.
fn failure(failed: &Mutex<Option<RecordsError>>, store: StoreError) -> RecordsError {
    failed
        .lock()
        .ok()
        .and_then(|mut slot| slot.take())
        .unwrap_or(RecordsError::Node(store))
}

impl Records for RedbRecords {
    fn read(&self) -> Result<Box<dyn ReadRecords + '_>, RecordsError> {
        let txn = self.store.database().begin_read().map_err(db)?;
        Ok(Box::new(Snapshot {
            txn,
            store: &self.store,
        }))
    }

    fn write(&self, change: Change) -> BoxFuture<'_, Result<(), RecordsError>> {
        Box::pin(async move {
            let failed = Arc::new(Mutex::new(None));
            match self
                .store
                .write(Op::Apply(self.extra(change, failed.clone())))
                .await
            {
                Ok(_) => Ok(()),
                Err(e) => Err(failure(&failed, e)),
            }
        })
    }

    fn queue_submission(
        &self,
        sealed: SealedEnvelope,
        change: Change,
    ) -> BoxFuture<'_, Result<Outcome, QueueError>> {
        Box::pin(async move {
            let Some((core, forwarder)) = &self.first_hop else {
                return Err(QueueError::Store(StoreError::Closed));
            };
            let failed = Arc::new(Mutex::new(None));
            estafette_relay::origin::queue_envelope(
                core,
                &self.store,
                forwarder,
                sealed.envelope,
                &sealed.header,
                sealed.previous,
                sealed.evidence,
                Some(self.extra(change, failed)),
            )
            .await
        })
    }

    fn outbox_len(&self) -> Result<u64, RecordsError> {
        Ok(self.store.queue_len())
    }
}

/// Where the read side finds its tables: a read transaction (a table never
/// written is empty), or the write transaction of a change.
trait Source {
    type Table<'s, K: Key + 'static, V: Value + 'static>: ReadableTable<K, V>
    where
        Self: 's;

    fn open<'s, K: Key + 'static, V: Value + 'static>(
        &'s self,
        table: TableDefinition<'static, K, V>,
    ) -> Result<Option<Self::Table<'s, K, V>>, RecordsError>;

    fn node_store(&self) -> &Store;
}

/// A consistent view for readers.
struct Snapshot<'a> {
    txn: ReadTransaction,
    store: &'a Store,
}

impl Source for Snapshot<'_> {
    type Table<'s, K: Key + 'static, V: Value + 'static>
        = ::redb::ReadOnlyTable<K, V>
    where
        Self: 's;

    fn open<'s, K: Key + 'static, V: Value + 'static>(
        &'s self,
        table: TableDefinition<'static, K, V>,
    ) -> Result<Option<Self::Table<'s, K, V>>, RecordsError> {
        match self.txn.open_table(table) {
            Ok(t) => Ok(Some(t)),
            Err(TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(db(e)),
        }
    }

    fn node_store(&self) -> &Store {
        self.store
    }
}

/// Inside a change: the node store's open tables and the transaction.
struct Writing<'a, 't> {
    tables: &'a mut Tables<'t>,
    txn: &'a WriteTransaction,
    store: &'a Store,
}

impl Source for Writing<'_, '_> {
    type Table<'s, K: Key + 'static, V: Value + 'static>
        = ::redb::Table<'s, K, V>
    where
        Self: 's;

    fn open<'s, K: Key + 'static, V: Value + 'static>(
        &'s self,
        table: TableDefinition<'static, K, V>,
    ) -> Result<Option<Self::Table<'s, K, V>>, RecordsError> {
        self.txn.open_table(table).map(Some).map_err(db)
    }

    /// Evidence is append-only: what was committed before this change.
    fn node_store(&self) -> &Store {
        self.store
    }
}

/// A CBOR value stored under `key` of `table`.
fn get_value<'k, S: Source, K: Key + 'static, T: DeserializeOwned>(
    source: &S,
    table: TableDefinition<'static, K, &'static [u8]>,
    key: impl std::borrow::Borrow<K::SelfType<'k>>,
    (what, limit): (&'static str, usize),
) -> Result<Option<T>, RecordsError> {
    let Some(table) = source.open(table)? else {
        return Ok(None);
    };
    let found = table.get(key).map_err(db)?;
    found.map(|v| decode(what, v.value(), limit)).transpose()
}

/// The mandates whose ids `index` lists under `who`.
fn indexed_mandates<S: Source>(
    source: &S,
    index: TableDefinition<'static, (&'static str, [u8; 16]), ()>,
    who: &Recipient,
) -> Result<Vec<Mandate>, RecordsError> {
    let Some(index) = source.open(index)? else {
        return Ok(vec![]);
    };
    let key = who.to_string();
    let mut out = Vec::new();
    for item in index
        .range(of(key.as_str(), [0u8; 16], [0xff; 16]))
        .map_err(db)?
        .take(MAX_MANDATES_PER_PERSON)
    {
        let id = item.map_err(db)?.0.value().1;
        if let Some(m) = get_value(source, MANDATES, &id, ("mandate", MAX_RECORD_BYTES))? {
            out.push(m);
        }
    }
    Ok(out)
}

impl<S: Source> ReadRecords for S {
    fn person(&self, key: &Recipient) -> Result<Option<PersonRecord>, RecordsError> {
        let key = key.to_string();
        get_value(self, PEOPLE, key.as_str(), ("person", MAX_RECORD_BYTES))
    }

    fn each_person(
        &self,
        visit: &mut dyn FnMut(&Recipient, PersonRecord) -> Result<(), RecordsError>,
    ) -> Result<(), RecordsError> {
        let Some(people) = self.open(PEOPLE)? else {
            return Ok(());
        };
        for item in people.iter().map_err(db)? {
            let (k, v) = item.map_err(db)?;
            let key: Recipient = k.value().parse().map_err(|e| RecordsError::Corrupt {
                what: "recipient",
                detail: format!("{e}"),
            })?;
            visit(&key, decode("person", v.value(), MAX_RECORD_BYTES)?)?;
        }
        Ok(())
    }

    fn history(&self, key: &Recipient, limit: usize) -> Result<Vec<ChangeEntry>, RecordsError> {
        let Some(table) = self.open(HISTORY)? else {
            return Ok(vec![]);
        };
        let key = key.to_string();
        let mut out = Vec::new();
        for item in table
            .range(of(key.as_str(), 0u64, u64::MAX))
            .map_err(db)?
            .rev()
            .take(limit)
        {
            let (_, v) = item.map_err(db)?;
            out.push(decode("history entry", v.value(), MAX_RECORD_BYTES)?);
        }
        out.reverse();
        Ok(out)
    }

    fn mandate(&self, id: &MandateId) -> Result<Option<Mandate>, RecordsError> {
        get_value(self, MANDATES, id.as_bytes(), ("mandate", MAX_RECORD_BYTES))
    }

    fn mandates_of_holder(&self, holder: &Recipient) -> Result<Vec<Mandate>, RecordsError> {
        indexed_mandates(self, BY_HOLDER, holder)
    }

    fn mandates_of_representative(
        &self,
        representative: &Recipient,
    ) -> Result<Vec<Mandate>, RecordsError> {
        indexed_mandates(self, BY_REPRESENTATIVE, representative)
    }

    fn submission(&self, message: &MessageId) -> Result<Option<SubmissionRecord>, RecordsError> {
        get_value(
            self,
            SUBMISSIONS,
            message.as_bytes(),
            ("submission", MAX_RECORD_BYTES),
        )
    }

    fn tracked(&self, message: &MessageId) -> Result<Option<TrackedLetter>, RecordsError> {
        get_value(
            self,
            TRACKING,
            message.as_bytes(),
            ("followed letter", MAX_RECORD_BYTES),
        )
    }

    fn due_letters(
        &self,
        by: Timestamp,
        limit: usize,
    ) -> Result<Vec<(MessageId, TrackedLetter)>, RecordsError> {
        let (Some(due), Some(tracking)) = (self.open(DUE)?, self.open(TRACKING)?) else {
            return Ok(vec![]);
        };
        let mut out = Vec::new();
        let range = (0, [0u8; 16])..=(by.0.min(NEVER - 1), [0xff; 16]);
        for item in due.range(range).map_err(db)?.take(limit) {
            let (key, _) = item.map_err(db)?;
            let message = key.value().1;
            // The index and the letters change in one transaction; a key
            // without its letter would be a bug, and is passed over.
            if let Some(letter) = tracking.get(message).map_err(db)? {
                out.push((
                    MessageId::from_bytes(message),
                    decode("followed letter", letter.value(), MAX_RECORD_BYTES)?,
                ));
            }
        }
        Ok(out)
    }

    fn tracked_count(&self) -> Result<usize, RecordsError> {
        match self.open(TRACKING)? {
            Some(t) => Ok(t.len().map_err(db)? as usize),
            None => Ok(0),
        }
    }

    fn paper_copy(&self, message: &MessageId) -> Result<Option<Vec<u8>>, RecordsError> {
        let Some(table) = self.open(PAPER_COPIES)? else {
            return Ok(None);
        };
        let found = table.get(message.as_bytes()).map_err(db)?;
        Ok(found.map(|v| v.value().to_vec()))
    }

    fn unread_count(&self, key: &Recipient, limit: usize) -> Result<usize, RecordsError> {
        let Some(table) = self.open(UNREAD)? else {
            return Ok(0);
        };
        let key = key.to_string();
        let range = table
            .range(of(key.as_str(), [0u8; 16], [0xff; 16]))
            .map_err(db)?;
        Ok(range.take(limit).count())
    }

    fn paper_queue(&self) -> Result<Vec<(PaperId, PaperItem)>, RecordsError> {
        let Some(table) = self.open(PAPER)? else {
            return Ok(vec![]);
        };
        let mut out = Vec::new();
        for item in table.iter().map_err(db)? {
            let (k, v) = item.map_err(db)?;
            out.push((
                PaperId(k.value()),
                decode("paper item", v.value(), MAX_PAPER_ITEM_BYTES)?,
            ));
        }
        Ok(out)
    }

    fn paper(&self, id: PaperId) -> Result<Option<PaperItem>, RecordsError> {
        let Some(table) = self.open(PAPER)? else {
            return Ok(None);
        };
        table
            .get(id.0)
            .map_err(db)?
            .map(|v| decode("paper item", v.value(), MAX_PAPER_ITEM_BYTES))
            .transpose()
    }

    fn paper_waiting(&self, limit: usize) -> Result<Vec<PaperId>, RecordsError> {
        counts::paper_waiting(self, limit)
    }

    fn report_counts(&self) -> Result<std::collections::BTreeMap<String, i64>, RecordsError> {
        counts::report_counts(self)
    }

    fn dormant_inboxes(&self, away_by: Timestamp) -> Result<usize, RecordsError> {
        counts::dormant_inboxes(self, away_by)
    }

    fn expired_nonces(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, RecordsError> {
        let Some(table) = self.open(NONCES)? else {
            return Ok(vec![]);
        };
        let mut out = Vec::new();
        for item in table.iter().map_err(db)?.take(limit) {
            let (k, v) = item.map_err(db)?;
            let (_, expires_at): (Digest, Timestamp) =
                decode("nonce", v.value(), MAX_SMALL_RECORD_BYTES)?;
            if expires_at < before {
                out.push(k.value().to_vec());
            }
        }
        Ok(out)
    }

    fn evidence_for(&self, message: &MessageId) -> Result<Vec<Vec<u8>>, RecordsError> {
        Ok(self.node_store().evidence_for(message)?)
    }
}

impl Writing<'_, '_> {
    /// Files a followed letter under `due` in the due index, out of its
    /// earlier place.
    fn set_due(&mut self, message: [u8; 16], due: u64) -> Result<(), RecordsError> {
        let earlier = self
            .txn
            .open_table(DUE_OF)
            .map_err(db)?
            .insert(message, due)
            .map_err(db)?
            .map(|d| d.value());
        if earlier == Some(due) {
            return Ok(());
        }
        let mut index = self.txn.open_table(DUE).map_err(db)?;
        if let Some(earlier) = earlier {
            index.remove((earlier, message)).map_err(db)?;
        }
        index.insert((due, message), ()).map_err(db)?;
        Ok(())
    }

    /// Files a followed letter as due now; nothing for one not followed or
    /// already due now (so that repeated evidence rewrites no page).
    fn due_now(&mut self, message: [u8; 16]) -> Result<(), RecordsError> {
        let earlier = self
            .txn
            .open_table(DUE_OF)
            .map_err(db)?
            .get(message)
            .map_err(db)?
            .map(|d| d.value());
        match earlier {
            Some(due) if due != LOOK_NOW => self.set_due(message, LOOK_NOW),
            _ => Ok(()),
        }
    }

    /// The last sequence numbers of a person's history, oldest and newest.
    fn history_bounds(&self, key: &str) -> Result<(Option<u64>, Option<u64>), RecordsError> {
        let table = self.txn.open_table(HISTORY).map_err(db)?;
        let mut entries = table.range(of(key, 0u64, u64::MAX)).map_err(db)?;
        let first = entries
            .next()
            .transpose()
            .map_err(db)?
            .map(|(k, _)| k.value().1);
        let last = entries
            .next_back()
            .transpose()
            .map_err(db)?
            .map(|(k, _)| k.value().1)
            .or(first);
        Ok((first, last))
    }
}

impl WriteRecords for Writing<'_, '_> {
    fn put_person(&mut self, key: &Recipient, record: &PersonRecord) -> Result<(), RecordsError> {
        let key_text = key.to_string();
        let mut table = self.txn.open_table(PEOPLE).map_err(db)?;
        let before: Option<PersonRecord> = table
            .insert(key_text.as_str(), encode(record).as_slice())
            .map_err(db)?
            .map(|old| decode("person", old.value(), MAX_RECORD_BYTES))
            .transpose()?;
        drop(table);
        self.count_person(&key_text, before.as_ref(), record)?;
        let mut letters = Vec::new();
        {
            let unread = self.txn.open_table(UNREAD).map_err(db)?;
            for identity in std::iter::once(key).chain(&record.linked) {
                let identity = identity.to_string();
                let range = unread
                    .range(of(identity.as_str(), [0u8; 16], [0xff; 16]))
                    .map_err(db)?;
                for item in range {
                    letters.push(item.map_err(db)?.0.value().1);
                }
            }
        }
        for message in letters {
            self.due_now(message)?;
        }
        Ok(())
    }

    fn record_change(&mut self, key: &Recipient, entry: &ChangeEntry) -> Result<(), RecordsError> {
        let key = key.to_string();
        let (first, last) = self.history_bounds(&key)?;
        let next = last.map_or(0, |l| l + 1);
        let mut table = self.txn.open_table(HISTORY).map_err(db)?;
        if let Some(first) = first
            && next - first >= MAX_HISTORY_PER_PERSON
        {
            table.remove((key.as_str(), first)).map_err(db)?;
        }
        table
            .insert((key.as_str(), next), encode(entry).as_slice())
            .map_err(db)?;
        Ok(())
    }

    fn use_nonce(
        &mut self,
        nonce: &[u8],
        digest: Digest,
        expires_at: Timestamp,
    ) -> Result<bool, RecordsError> {
        let mut nonces = self.txn.open_table(NONCES).map_err(db)?;
        let seen = nonces.get(nonce).map_err(db)?.map(|v| v.value().to_vec());
        if let Some(seen) = seen {
            let (first, _): (Digest, Timestamp) = decode("nonce", &seen, MAX_SMALL_RECORD_BYTES)?;
            return Ok(first == digest);
        }
        nonces
            .insert(nonce, encode(&(digest, expires_at)).as_slice())
            .map_err(db)?;
        Ok(true)
    }

    fn forget_nonces(&mut self, nonces: &[Vec<u8>]) -> Result<(), RecordsError> {
        let mut table = self.txn.open_table(NONCES).map_err(db)?;
        for nonce in nonces {
            table.remove(nonce.as_slice()).map_err(db)?;
        }
        Ok(())
    }

    fn put_email_token(
        &mut self,
        token_digest: &[u8; 32],
        key: &Recipient,
        expires_at: Timestamp,
    ) -> Result<(), RecordsError> {
        let mut tokens = self.txn.open_table(EMAIL_TOKENS).map_err(db)?;
        tokens
            .insert(token_digest, encode(&(key, expires_at)).as_slice())
            .map_err(db)?;
        Ok(())
    }

    fn take_email_token(
        &mut self,
        token_digest: &[u8; 32],
    ) -> Result<Option<(Recipient, Timestamp)>, RecordsError> {
        let mut tokens = self.txn.open_table(EMAIL_TOKENS).map_err(db)?;
        let found = tokens
            .remove(token_digest)
            .map_err(db)?
            .map(|v| v.value().to_vec());
        found
            .map(|bytes| decode("e-mail token", &bytes, MAX_SMALL_RECORD_BYTES))
            .transpose()
    }

    fn put_mandate(&mut self, m: &Mandate) -> Result<(), RecordsError> {
        self.txn
            .open_table(MANDATES)
            .map_err(db)?
            .insert(m.id.as_bytes(), encode(m).as_slice())
            .map_err(db)?;
        let holder = m.holder.to_string();
        self.txn
            .open_table(BY_HOLDER)
            .map_err(db)?
            .insert((holder.as_str(), *m.id.as_bytes()), ())
            .map_err(db)?;
        let representative = m.representative.person.to_string();
        self.txn
            .open_table(BY_REPRESENTATIVE)
            .map_err(db)?
            .insert((representative.as_str(), *m.id.as_bytes()), ())
            .map_err(db)?;
        Ok(())
    }

    fn put_submission(
        &mut self,
        message: &MessageId,
        record: &SubmissionRecord,
    ) -> Result<bool, RecordsError> {
        let mut table = self.txn.open_table(SUBMISSIONS).map_err(db)?;
        if table.get(message.as_bytes()).map_err(db)?.is_some() {
            return Ok(false);
        }
        table
            .insert(message.as_bytes(), encode(record).as_slice())
            .map_err(db)?;
        Ok(true)
    }

    fn follow(
        &mut self,
        message: &MessageId,
        letter: &TrackedLetter,
        signed_letter: &[u8],
        due: Option<Timestamp>,
    ) -> Result<(), RecordsError> {
        self.update_tracked(message, letter, due)?;
        self.txn
            .open_table(PAPER_COPIES)
            .map_err(db)?
            .insert(message.as_bytes(), signed_letter)
            .map_err(db)?;
        let key = letter.recipient.to_string();
        self.txn
            .open_table(UNREAD)
            .map_err(db)?
            .insert((key.as_str(), *message.as_bytes()), ())
            .map_err(db)?;
        Ok(())
    }

    fn update_tracked(
        &mut self,
        message: &MessageId,
        letter: &TrackedLetter,
        due: Option<Timestamp>,
    ) -> Result<(), RecordsError> {
        self.txn
            .open_table(TRACKING)
            .map_err(db)?
            .insert(message.as_bytes(), encode(letter).as_slice())
            .map_err(db)?;
        self.set_due(*message.as_bytes(), due.map_or(NEVER, |t| t.0))
    }

    fn look_soon(&mut self, message: &MessageId) -> Result<(), RecordsError> {
        self.due_now(*message.as_bytes())
    }

    fn forget(&mut self, recipient: &Recipient, message: &MessageId) -> Result<(), RecordsError> {
        self.txn
            .open_table(TRACKING)
            .map_err(db)?
            .remove(message.as_bytes())
            .map_err(db)?;
        let due = self
            .txn
            .open_table(DUE_OF)
            .map_err(db)?
            .remove(message.as_bytes())
            .map_err(db)?
            .map(|d| d.value());
        if let Some(due) = due {
            self.txn
                .open_table(DUE)
                .map_err(db)?
                .remove((due, *message.as_bytes()))
                .map_err(db)?;
        }
        let key = recipient.to_string();
        self.txn
            .open_table(UNREAD)
            .map_err(db)?
            .remove((key.as_str(), *message.as_bytes()))
            .map_err(db)?;
        self.txn
            .open_table(PAPER_COPIES)
            .map_err(db)?
            .remove(message.as_bytes())
            .map_err(db)?;
        Ok(())
    }

    fn put_paper(&mut self, id: PaperId, item: &PaperItem) -> Result<(), RecordsError> {
        let before: Option<PaperItem> = self
            .txn
            .open_table(PAPER)
            .map_err(db)?
            .insert(&id.0, encode(item).as_slice())
            .map_err(db)?
            .map(|old| decode("paper item", old.value(), MAX_PAPER_ITEM_BYTES))
            .transpose()?;
        self.count_paper(id, before.as_ref(), item)
    }

    fn archive_evidence(&mut self, evidence: &NewEvidence) -> Result<(), RecordsError> {
        Ok(self.tables.archive(evidence)?)
    }
}
