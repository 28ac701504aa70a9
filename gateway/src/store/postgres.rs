//! The gateway's records on PostgreSQL: the tables of
//! `gateway/migrations/` (applied at start with refinery), the same
//! deterministic CBOR values as in redb, keys and what is looked up by as
//! columns.
//!
//! The client is the blocking `postgres` crate, run on worker threads of
//! our own, one connection each: a change ([`Records::write`]) runs on a
//! worker inside one transaction while its caller awaits; a read
//! ([`Records::read`]) reserves a worker for a REPEATABLE READ READ ONLY
//! transaction and asks it query by query, so that it sees one consistent
//! state. A connection that fails is made again for the next job.
//!
//! Instances share the outbox through leases (`pg_queue.rs`). Not yet here (the PostgreSQL backend cannot
//! be chosen in the configuration until it is): the forwarder that sends
//! what an instance claimed.

use std::cell::RefCell;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use estafette_relay::origin::QueueError;
use estafette_relay::store::{NewEvidence, Outcome, QueueRecord, StoreError};
use estafette_spec::citizen::ChangeEntry;
use estafette_spec::mandate::{Mandate, MandateId};
use estafette_spec::{Digest, EnvelopeId, MessageId, Recipient, Timestamp};
use futures_util::future::BoxFuture;
use postgres::{IsolationLevel, NoTls};

use super::pg_counts::{PUT_PAPER, PUT_PEOPLE_BATCH, PUT_PERSON, count_from_before};
use super::pg_queue::{FreshEnvelopes, insert_outbox, queued_evidence};
use super::pg_statements::{Prepared, forget_prepared};

use super::{
    Change, MAX_RECORD_BYTES, PaperId, ReadRecords, Records, RecordsError, STEP_CLAIM_S,
    SealedEnvelope, StepKey, WriteRecords, db, decode, encode,
};
use crate::gateway::{PaperItem, SubmissionRecord, TrackedLetter};
use crate::registry::{MAX_HISTORY_PER_PERSON, PersonRecord};
use crate::report::tally;

mod migrations {
    refinery::embed_migrations!("migrations");
}

/// Most connections (worker threads) of one gateway instance.
pub const MAX_CONNECTIONS: usize = 64;
/// Most jobs waiting for a worker; a caller past it waits.
pub const MAX_WAITING_JOBS: usize = 1024;
/// People read per round trip when visiting all of them.
pub const PEOPLE_PAGE: i64 = 1000;

fn recipient(text: &str) -> Result<Recipient, RecordsError> {
    text.parse().map_err(|e| RecordsError::Corrupt {
        what: "recipient",
        detail: format!("{e}"),
    })
}

pub(super) fn id16(what: &'static str, bytes: &[u8]) -> Result<[u8; 16], RecordsError> {
    bytes.try_into().map_err(|_| RecordsError::Corrupt {
        what,
        detail: format!("{} bytes, not 16", bytes.len()),
    })
}

/// Runs `wait`, which blocks the thread until the database answers: on a
/// worker of a multi-threaded tokio runtime through `block_in_place`, so
/// that the runtime moves its other tasks elsewhere meanwhile (the reads
/// of [`ReadRecords`] are synchronous); anywhere else directly.
fn waiting_for_database<T>(wait: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(wait)
        }
        _ => wait(),
    }
}

fn closed() -> RecordsError {
    RecordsError::Node(StoreError::Closed)
}

type Job = Box<dyn FnOnce(&mut postgres::Client) + Send>;
type Query = Box<dyn for<'t> FnOnce(&mut postgres::Transaction<'t>) + Send>;

/// The gateway's records in a PostgreSQL database.
pub struct PgRecords {
    jobs: SyncSender<Job>,
    /// The running instance's forwarder, once it has one: what it queues is
    /// claimed for it and handed to its forwarder (an offline tool has none).
    pub(super) first_hop: std::sync::OnceLock<super::pg_queue::FirstHop>,
    /// What this instance queued, until its forwarder takes it.
    fresh: Mutex<FreshEnvelopes>,
}

impl PgRecords {
    /// Connects `connections` workers to the database at `url` (libpq
    /// style: `host=… port=… user=… dbname=…`, several hosts and
    /// `target_session_attrs=read-write` included) and brings its schema
    /// up to date.
    pub async fn connect(url: &str, connections: usize) -> Result<PgRecords, RecordsError> {
        let config: postgres::Config = url.parse().map_err(db)?;
        let (jobs, queue) = sync_channel::<Job>(MAX_WAITING_JOBS);
        let queue = Arc::new(Mutex::new(queue));
        let mut ready = Vec::new();
        for index in 0..connections.clamp(1, MAX_CONNECTIONS) {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let (config, queue) = (config.clone(), queue.clone());
            std::thread::Builder::new()
                .name(format!("gateway-pg-{index}"))
                .spawn(move || worker(config, queue, index == 0, tx))
                .map_err(db)?;
            ready.push(rx);
            // The first one migrates the schema before the others connect.
            if index == 0
                && let Some(first) = ready.pop()
            {
                first.await.map_err(|_| closed())??;
            }
        }
        for rx in ready {
            rx.await.map_err(|_| closed())??;
        }
        let records = PgRecords {
            jobs,
            first_hop: std::sync::OnceLock::new(),
            fresh: Mutex::new(FreshEnvelopes::default()),
        };
        let counted = records.run(count_from_before).await?;
        if counted > 0 {
            tracing::info!(
                entries = counted,
                "entries from before counted for the report"
            );
        }
        Ok(records)
    }

    /// The envelope `id` as this instance queued it, if it still holds it
    /// in memory and safely under its lease (see [`FreshEnvelopes`]).
    pub(super) fn take_fresh(&self, id: &EnvelopeId, now: Timestamp) -> Option<QueueRecord> {
        self.fresh.lock().ok()?.take(id, now)
    }

    /// Runs `job` on a worker's connection and waits for it, blocking the
    /// calling thread (for the sync parts of the forward queue).
    pub(super) fn blocking<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut postgres::Client) -> Result<T, RecordsError> + Send + 'static,
    ) -> Result<T, RecordsError> {
        let (tx, rx) = sync_channel(1);
        waiting_for_database(|| {
            self.jobs
                .send(Box::new(move |client| {
                    let _ = tx.send(job(client));
                }))
                .map_err(|_| closed())?;
            rx.recv().map_err(|_| closed())?
        })
    }

    /// Runs `job` on a worker's connection; gives what it returned.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut postgres::Client) -> Result<T, RecordsError> + Send + 'static,
    ) -> Result<T, RecordsError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |client| {
            let _ = tx.send(job(client));
        });
        match self.jobs.try_send(job) {
            Ok(()) => {}
            // The queue is bounded: waiting for room must not hold up the
            // runtime's thread, so only then does a blocking thread wait.
            Err(std::sync::mpsc::TrySendError::Full(job)) => {
                let jobs = self.jobs.clone();
                tokio::task::spawn_blocking(move || jobs.send(job))
                    .await
                    .map_err(|_| closed())?
                    .map_err(|_| closed())?;
            }
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => return Err(closed()),
        }
        rx.await.map_err(|_| closed())?
    }
}

impl PgRecords {
    /// `job` on a worker's connection, waited for on this thread (out of
    /// the runtime's way, as a snapshot's queries are).
    fn run_blocking<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut postgres::Client) -> Result<T, RecordsError> + Send + 'static,
    ) -> Result<T, RecordsError> {
        let (tx, rx) = sync_channel(1);
        let job: Job = Box::new(move |client| {
            let _ = tx.send(job(client));
        });
        waiting_for_database(|| {
            self.jobs.send(job).map_err(|_| closed())?;
            rx.recv().map_err(|_| closed())?
        })
    }
}

/// One worker: its connection, then jobs until the records are dropped.
fn worker(
    config: postgres::Config,
    queue: Arc<Mutex<Receiver<Job>>>,
    migrate: bool,
    ready: tokio::sync::oneshot::Sender<Result<(), RecordsError>>,
) {
    let connect = || -> Result<postgres::Client, RecordsError> {
        let mut client = config.connect(NoTls).map_err(db)?;
        if migrate {
            migrations::migrations::runner()
                .run(&mut client)
                .map_err(db)?;
        }
        Ok(client)
    };
    let mut client = match connect() {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    loop {
        let job = match queue.lock() {
            Ok(q) => q.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else {
            return;
        };
        if client.is_closed() {
            match config.connect(NoTls) {
                Ok(c) => {
                    client = c;
                    forget_prepared();
                }
                Err(e) => tracing::warn!(error = %e, "the gateway's database cannot be reached"),
            }
        }
        job(&mut client);
    }
}

impl Records for PgRecords {
    fn read(&self) -> Result<Box<dyn ReadRecords + '_>, RecordsError> {
        // The transaction starts with the snapshot's first query, in the
        // same hand-over to the worker: most snapshots ask one thing.
        Ok(Box::new(Snapshot {
            jobs: self.jobs.clone(),
            queries: std::cell::OnceCell::new(),
        }))
    }

    fn person_entry_now(
        &self,
        recipient: &Recipient,
    ) -> Result<Option<(Recipient, PersonRecord)>, RecordsError> {
        let key = recipient.clone();
        // Statements outside a transaction, each its own snapshot: the
        // entry, and only for a linked identity the entry it links to (a
        // link never points at a linked entry, so one step is all).
        self.run_blocking(
            move |client| match read::person(client, &key.to_string())? {
                Some(PersonRecord {
                    linked_to: Some(primary),
                    ..
                }) => Ok(read::person(client, &primary.to_string())?.map(|p| (primary, p))),
                Some(p) => Ok(Some((key, p))),
                None => Ok(None),
            },
        )
    }

    fn write(&self, change: Change) -> BoxFuture<'_, Result<(), RecordsError>> {
        Box::pin(self.run(move |client| {
            let mut tx = client.transaction().map_err(db)?;
            let mut writing = Writing::new(&mut tx);
            change(&mut writing)?;
            writing.finish()?;
            tx.commit().map_err(db)
        }))
    }

    fn queue_submission(
        &self,
        sealed: SealedEnvelope,
        change: Change,
    ) -> BoxFuture<'_, Result<Outcome, QueueError>> {
        Box::pin(async move {
            let envelope_id = sealed.header.envelope_id;
            let accepted_at = sealed.header.created_at;
            // The first hop on the way to the home node, as the trust list
            // routes it (without a running instance: the home node).
            let first_hop = self.first_hop.get();
            let next_hop = match first_hop {
                Some(f) => f.next_hop(&sealed.header.home_node)?,
                None => sealed.header.home_node.clone(),
            };
            let hop = next_hop.clone();
            let claim = first_hop.map(|f| f.claim());
            let outcome = self
                .run(move |client| {
                    let mut tx = client.transaction().map_err(db)?;
                    let header = &sealed.header;
                    // The envelope first: a twin queued before (or racing,
                    // which waits for it) makes this a duplicate, and then
                    // nothing of this one is kept.
                    let queued = insert_outbox(&mut tx, &sealed, &hop, claim.as_ref())?;
                    let lease_until = claim.as_ref().map(|(_, until, _)| *until);
                    let now_ms = claim.as_ref().map_or(0, |(_, _, now_ms)| *now_ms);
                    if queued == 0 {
                        let evidence = queued_evidence(&mut tx, &header.envelope_id)?;
                        let evidence = evidence.unwrap_or_default();
                        return Ok((Outcome::Duplicate { evidence }, None));
                    }
                    let mut writing = Writing::new(&mut tx);
                    if let Some(evidence) = &sealed.evidence {
                        writing.archive_evidence(evidence)?;
                    }
                    change(&mut writing)?;
                    writing.finish()?;
                    tx.commit().map_err(db)?;
                    // As the outbox row reads, for this instance's forwarder.
                    let fresh = lease_until.map(|until| {
                        let record = QueueRecord {
                            destination: hop,
                            hops_taken: 0,
                            our_evidence: sealed.previous,
                            expires_at: header.expires_at,
                            accepted_at: header.created_at,
                            attempts: 0,
                            next_attempt_ms: now_ms.max(0) as u64,
                            last_error: None,
                            envelope: sealed.envelope,
                            seq: 0,
                        };
                        (record, until)
                    });
                    Ok((Outcome::Stored, fresh))
                })
                .await;
            let (outcome, fresh) = match outcome {
                Ok(outcome) => outcome,
                Err(e) => {
                    // The commit may have reached the database all the same.
                    if let Some(first_hop) = first_hop {
                        first_hop.forwarder.queuing_failed(next_hop).await;
                    }
                    return Err(QueueError::Store(StoreError::Aborted(e.to_string())));
                }
            };
            if let (Outcome::Stored, Some(first_hop)) = (&outcome, first_hop) {
                if let (Some((record, until)), Ok(mut kept)) = (fresh, self.fresh.lock()) {
                    kept.keep(envelope_id, record, until, (first_hop.now)());
                }
                first_hop
                    .forwarder
                    .enqueued(envelope_id, next_hop, accepted_at)
                    .await;
            }
            Ok(outcome)
        })
    }

    fn claim_step(
        &self,
        instance: &str,
        step: StepKey,
    ) -> BoxFuture<'_, Result<bool, RecordsError>> {
        let instance = instance.to_owned();
        Box::pin(self.run(move |client| {
            // On the server's clock, so that instances need not agree on time.
            let claimed = client
                .query_opt_prepared(
                    "INSERT INTO step_claims (step, instance, until) \
                     VALUES ($1, $2, extract(epoch FROM now())::bigint + $3) \
                     ON CONFLICT (step) DO UPDATE SET instance = EXCLUDED.instance, until = EXCLUDED.until \
                     WHERE step_claims.instance = EXCLUDED.instance \
                     OR step_claims.until < extract(epoch FROM now())::bigint \
                     RETURNING step",
                    &[&step.to_bytes().as_slice(), &instance, &(STEP_CLAIM_S as i64)],
                )
                .map_err(db)?;
            Ok(claimed.is_some())
        }))
    }

    fn release_step(
        &self,
        instance: &str,
        step: StepKey,
    ) -> BoxFuture<'_, Result<(), RecordsError>> {
        let instance = instance.to_owned();
        Box::pin(self.run(move |client| {
            client
                .execute_prepared(RELEASE_STEP, &[&step.to_bytes().as_slice(), &instance])
                .map_err(db)?;
            Ok(())
        }))
    }

    fn outbox_len(&self) -> Result<u64, RecordsError> {
        self.blocking(|client| {
            let n: i64 = client
                .query_one_prepared("SELECT count(*) FROM outbox", &[])
                .map_err(db)?
                .get(0);
            Ok(n.max(0) as u64)
        })
    }
}

/// A read: its first query reserves a worker, which starts a REPEATABLE
/// READ READ ONLY transaction (the snapshot is taken at that query) and
/// holds it for the later queries until the snapshot is dropped.
struct Snapshot {
    jobs: SyncSender<Job>,
    queries: std::cell::OnceCell<SyncSender<Query>>,
}

impl Snapshot {
    fn ask<T: Send + 'static>(
        &self,
        query: impl for<'t> FnOnce(&mut postgres::Transaction<'t>) -> Result<T, RecordsError>
        + Send
        + 'static,
    ) -> Result<T, RecordsError> {
        let (tx, rx) = sync_channel(1);
        let query: Query = Box::new(move |t: &mut postgres::Transaction<'_>| {
            let _ = tx.send(query(t));
        });
        waiting_for_database(|| {
            match self.queries.get() {
                Some(queries) => queries.send(query).map_err(|_| closed())?,
                None => {
                    let (queries, asked) = sync_channel::<Query>(0);
                    let (failed, failure) = sync_channel::<RecordsError>(1);
                    self.jobs
                        .send(Box::new(move |client: &mut postgres::Client| {
                            let tx = client
                                .build_transaction()
                                .isolation_level(IsolationLevel::RepeatableRead)
                                .read_only(true)
                                .start();
                            let mut tx = match tx {
                                Ok(tx) => tx,
                                Err(e) => {
                                    let _ = failed.send(db(e));
                                    return;
                                }
                            };
                            query(&mut tx);
                            while let Ok(query) = asked.recv() {
                                query(&mut tx);
                            }
                            let _ = tx.commit();
                        }))
                        .map_err(|_| closed())?;
                    let _ = self.queries.set(queries);
                    return match rx.recv() {
                        Ok(answer) => answer,
                        Err(_) => Err(failure.recv().unwrap_or_else(|_| closed())),
                    };
                }
            }
            rx.recv().map_err(|_| closed())?
        })
    }
}

/// Inside a change: the worker's transaction, and what its writes add to
/// the report's counters (written at its end, by [`Writing::finish`]).
pub(super) struct Writing<'a, 't> {
    pub(super) tx: RefCell<&'a mut postgres::Transaction<'t>>,
    pub(super) counts: RefCell<std::collections::BTreeMap<String, i64>>,
}

impl<'a, 't> Writing<'a, 't> {
    pub(super) fn new(tx: &'a mut postgres::Transaction<'t>) -> Writing<'a, 't> {
        Writing {
            tx: RefCell::new(tx),
            counts: RefCell::default(),
        }
    }
}

use super::pg_read as read;

const SUBMISSION: &str = "SELECT record FROM submissions WHERE message_id = $1";
const TRACKED: &str = "SELECT letter FROM tracking WHERE message_id = $1";
const UNREAD: &str =
    "SELECT count(*) FROM (SELECT 1 FROM tracking WHERE recipient = $1 LIMIT $2) unread";
const MANDATES_OF_HOLDER: &str =
    "SELECT mandate FROM mandates WHERE holder = $1 ORDER BY id LIMIT $2";
const MANDATES_OF_REPRESENTATIVE: &str =
    "SELECT mandate FROM mandates WHERE representative = $1 ORDER BY id LIMIT $2";
const TRACKED_COUNT: &str = "SELECT count(*) FROM tracking";

/// The read side, once for a snapshot (through its worker) and once for a
/// change (on its transaction).
macro_rules! read_records {
    ($self:ident, $c:ident) => {
        fn person(&$self, key: &Recipient) -> Result<Option<PersonRecord>, RecordsError> {
            let key = key.to_string();
            $self.with(move |$c| read::person($c, &key))
        }

        fn each_person(
            &$self,
            visit: &mut dyn FnMut(&Recipient, PersonRecord) -> Result<(), RecordsError>,
        ) -> Result<(), RecordsError> {
            let mut after = String::new();
            loop {
                let from = after.clone();
                let page = $self.with(move |$c| read::people_after($c, &from))?;
                let Some((last, _)) = page.last() else {
                    return Ok(());
                };
                after = last.clone();
                for (key, record) in &page {
                    visit(&recipient(key)?, decode("person", record, MAX_RECORD_BYTES)?)?;
                }
            }
        }

        fn history(&$self, key: &Recipient, limit: usize) -> Result<Vec<ChangeEntry>, RecordsError> {
            let key = key.to_string();
            $self.with(move |$c| read::history($c, &key, limit))
        }

        fn mandate(&$self, id: &MandateId) -> Result<Option<Mandate>, RecordsError> {
            let id = *id.as_bytes();
            $self.with(move |$c| read::mandate($c, &id))
        }

        fn mandates_of_holder(&$self, holder: &Recipient) -> Result<Vec<Mandate>, RecordsError> {
            let who = holder.to_string();
            $self.with(move |$c| read::mandates_by($c, MANDATES_OF_HOLDER, &who))
        }

        fn mandates_of_representative(
            &$self,
            representative: &Recipient,
        ) -> Result<Vec<Mandate>, RecordsError> {
            let who = representative.to_string();
            $self.with(move |$c| read::mandates_by($c, MANDATES_OF_REPRESENTATIVE, &who))
        }

        fn submission(&$self, message: &MessageId) -> Result<Option<SubmissionRecord>, RecordsError> {
            let m = *message.as_bytes();
            $self.with(move |$c| read::by_message($c, SUBMISSION, &m, ("submission", MAX_RECORD_BYTES)))
        }

        fn tracked(&$self, message: &MessageId) -> Result<Option<TrackedLetter>, RecordsError> {
            let m = *message.as_bytes();
            $self.with(move |$c| read::by_message($c, TRACKED, &m, ("followed letter", MAX_RECORD_BYTES)))
        }

        fn due_letters(
            &$self,
            by: Timestamp,
            limit: usize,
        ) -> Result<Vec<(MessageId, TrackedLetter)>, RecordsError> {
            $self.with(move |$c| read::due_letters($c, by, limit))
        }

        fn tracked_count(&$self) -> Result<usize, RecordsError> {
            $self.with(move |$c| read::count($c, TRACKED_COUNT, &[]))
        }

        fn paper_copy(&$self, message: &MessageId) -> Result<Option<Vec<u8>>, RecordsError> {
            let m = *message.as_bytes();
            $self.with(move |$c| read::paper_copy($c, &m))
        }

        fn unread_count(&$self, key: &Recipient, limit: usize) -> Result<usize, RecordsError> {
            let key = key.to_string();
            let limit = limit.min(i64::MAX as usize) as i64;
            $self.with(move |$c| read::count($c, UNREAD, &[&key, &limit]))
        }

        fn paper_queue(&$self) -> Result<Vec<(PaperId, PaperItem)>, RecordsError> {
            $self.with(move |$c| read::paper_queue($c))
        }

        fn paper(&$self, id: PaperId) -> Result<Option<PaperItem>, RecordsError> {
            $self.with(move |$c| read::paper($c, &id.0))
        }

        fn paper_waiting(&$self, limit: usize) -> Result<Vec<PaperId>, RecordsError> {
            $self.with(move |$c| read::paper_waiting($c, limit))
        }

        fn report_counts(&$self) -> Result<std::collections::BTreeMap<String, i64>, RecordsError> {
            $self.with(move |$c| read::report_counts($c))
        }

        fn dormant_inboxes(&$self, away_by: Timestamp) -> Result<usize, RecordsError> {
            $self.with(move |$c| read::dormant_inboxes($c, away_by))
        }

        fn expired_nonces(
            &$self,
            before: Timestamp,
            limit: usize,
        ) -> Result<Vec<Vec<u8>>, RecordsError> {
            $self.with(move |$c| read::expired_nonces($c, before, limit))
        }

        fn evidence_for(&$self, message: &MessageId) -> Result<Vec<Vec<u8>>, RecordsError> {
            let m = *message.as_bytes();
            $self.with(move |$c| read::evidence_for($c, &m))
        }
    };
}

impl Snapshot {
    fn with<T: Send + 'static>(
        &self,
        query: impl for<'t> FnOnce(&mut postgres::Transaction<'t>) -> Result<T, RecordsError>
        + Send
        + 'static,
    ) -> Result<T, RecordsError> {
        self.ask(query)
    }
}

impl ReadRecords for Snapshot {
    read_records!(self, c);
}

impl Writing<'_, '_> {
    pub(super) fn with<T>(
        &self,
        query: impl for<'t> FnOnce(&mut postgres::Transaction<'t>) -> Result<T, RecordsError>,
    ) -> Result<T, RecordsError> {
        let mut tx = self.tx.borrow_mut();
        query(&mut tx)
    }

    pub(super) fn exec(
        &self,
        sql: &'static str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<u64, RecordsError> {
        self.tx
            .borrow_mut()
            .execute_prepared(sql, params)
            .map_err(db)
    }
}

impl ReadRecords for Writing<'_, '_> {
    read_records!(self, c);
}

const RELEASE_STEP: &str = "DELETE FROM step_claims WHERE step = $1 AND instance = $2";

impl WriteRecords for Writing<'_, '_> {
    fn release_step(&mut self, instance: &str, step: StepKey) -> Result<(), RecordsError> {
        self.exec(RELEASE_STEP, &[&step.to_bytes().as_slice(), &instance])?;
        Ok(())
    }

    fn put_person(&mut self, key: &Recipient, record: &PersonRecord) -> Result<(), RecordsError> {
        // One statement: the entry (replaced, under a row lock, giving what
        // the old one counted for; or new), and its letters due to be
        // looked at.
        let identities: Vec<String> = std::iter::once(key)
            .chain(&record.linked)
            .map(|r| r.to_string())
            .collect();
        let counts = tally::person(record);
        let away = tally::away_since(record).map(|s| s.min(i64::MAX as u64) as i64);
        let (key, bytes) = (key.to_string(), encode(record));
        self.put_counted(
            PUT_PERSON,
            &[&key, &bytes, &counts, &away, &identities],
            &counts,
        )
    }

    fn put_people(&mut self, people: &[(Recipient, PersonRecord)]) -> Result<(), RecordsError> {
        for batch in people.chunks(PUT_PEOPLE_BATCH) {
            for (key, record) in self.put_people_batch(batch)? {
                self.put_person(key, record)?;
            }
        }
        Ok(())
    }

    fn record_change(&mut self, key: &Recipient, entry: &ChangeEntry) -> Result<(), RecordsError> {
        let key = key.to_string();
        let bounds = self.with(|c| {
            c.query_one_prepared(
                "SELECT min(seq), max(seq) FROM history WHERE recipient = $1",
                &[&key],
            )
            .map_err(db)
        })?;
        let (first, last): (Option<i64>, Option<i64>) = (bounds.get(0), bounds.get(1));
        let next = last.map_or(0, |l| l + 1);
        if let Some(first) = first
            && next - first >= MAX_HISTORY_PER_PERSON as i64
        {
            self.exec(
                "DELETE FROM history WHERE recipient = $1 AND seq = $2",
                &[&key, &first],
            )?;
        }
        self.exec(
            "INSERT INTO history (recipient, seq, entry) VALUES ($1, $2, $3)",
            &[&key, &next, &encode(entry)],
        )?;
        Ok(())
    }

    fn use_nonce(
        &mut self,
        nonce: &[u8],
        digest: Digest,
        expires_at: Timestamp,
    ) -> Result<bool, RecordsError> {
        let inserted = self.exec(
            "INSERT INTO nonces (nonce, digest, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (nonce) DO NOTHING",
            &[&nonce, &digest.0.as_slice(), &(expires_at.0 as i64)],
        )?;
        if inserted == 1 {
            return Ok(true);
        }
        let first: Vec<u8> = self.with(|c| {
            c.query_one_prepared("SELECT digest FROM nonces WHERE nonce = $1", &[&nonce])
                .map_err(db)
                .map(|r| r.get(0))
        })?;
        Ok(first == digest.0)
    }

    fn forget_nonces(&mut self, nonces: &[Vec<u8>]) -> Result<(), RecordsError> {
        self.exec("DELETE FROM nonces WHERE nonce = ANY($1)", &[&nonces])?;
        Ok(())
    }

    fn put_email_token(
        &mut self,
        token_digest: &[u8; 32],
        key: &Recipient,
        expires_at: Timestamp,
    ) -> Result<(), RecordsError> {
        self.exec(
            "INSERT INTO email_tokens (token_digest, recipient, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (token_digest) DO UPDATE SET recipient = EXCLUDED.recipient, \
             expires_at = EXCLUDED.expires_at",
            &[
                &token_digest.as_slice(),
                &key.to_string(),
                &(expires_at.0 as i64),
            ],
        )?;
        Ok(())
    }

    fn take_email_token(
        &mut self,
        token_digest: &[u8; 32],
    ) -> Result<Option<(Recipient, Timestamp)>, RecordsError> {
        let row = self.with(|c| {
            c.query_opt_prepared(
                "DELETE FROM email_tokens WHERE token_digest = $1 RETURNING recipient, expires_at",
                &[&token_digest.as_slice()],
            )
            .map_err(db)
        })?;
        row.map(|r| {
            let key: String = r.get(0);
            let expires: i64 = r.get(1);
            Ok((recipient(&key)?, Timestamp(expires.max(0) as u64)))
        })
        .transpose()
    }

    fn put_mandate(&mut self, m: &Mandate) -> Result<(), RecordsError> {
        self.exec(
            "INSERT INTO mandates (id, holder, representative, mandate) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO UPDATE SET holder = EXCLUDED.holder, \
             representative = EXCLUDED.representative, mandate = EXCLUDED.mandate",
            &[
                &m.id.as_bytes().as_slice(),
                &m.holder.to_string(),
                &m.representative.person.to_string(),
                &encode(m),
            ],
        )?;
        Ok(())
    }

    fn put_submission(
        &mut self,
        message: &MessageId,
        record: &SubmissionRecord,
    ) -> Result<bool, RecordsError> {
        let inserted = self.exec(
            "INSERT INTO submissions (message_id, record) VALUES ($1, $2) \
             ON CONFLICT (message_id) DO NOTHING",
            &[&message.as_bytes().as_slice(), &encode(record)],
        )?;
        Ok(inserted == 1)
    }

    fn follow(
        &mut self,
        message: &MessageId,
        letter: &TrackedLetter,
        signed_letter: &[u8],
        due: Option<Timestamp>,
    ) -> Result<(), RecordsError> {
        self.update_tracked(message, letter, due)?;
        self.exec(
            "INSERT INTO paper_copies (message_id, signed_letter) VALUES ($1, $2) \
             ON CONFLICT (message_id) DO UPDATE SET signed_letter = EXCLUDED.signed_letter",
            &[&message.as_bytes().as_slice(), &signed_letter],
        )?;
        Ok(())
    }

    fn update_tracked(
        &mut self,
        message: &MessageId,
        letter: &TrackedLetter,
        due: Option<Timestamp>,
    ) -> Result<(), RecordsError> {
        let due = due.map_or(i64::MAX, |t| t.0.min(i64::MAX as u64) as i64);
        self.exec(
            "INSERT INTO tracking (message_id, recipient, letter, due_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (message_id) DO UPDATE SET recipient = EXCLUDED.recipient, \
             letter = EXCLUDED.letter, due_at = EXCLUDED.due_at",
            &[
                &message.as_bytes().as_slice(),
                &letter.recipient.to_string(),
                &encode(letter),
                &due,
            ],
        )?;
        Ok(())
    }

    fn look_soon(&mut self, message: &MessageId) -> Result<(), RecordsError> {
        self.exec(
            "UPDATE tracking SET due_at = 0 WHERE message_id = $1 AND due_at <> 0",
            &[&message.as_bytes().as_slice()],
        )?;
        Ok(())
    }

    fn forget(&mut self, _recipient: &Recipient, message: &MessageId) -> Result<(), RecordsError> {
        let m = message.as_bytes().as_slice();
        self.exec("DELETE FROM tracking WHERE message_id = $1", &[&m])?;
        self.exec("DELETE FROM paper_copies WHERE message_id = $1", &[&m])?;
        Ok(())
    }

    fn put_paper(&mut self, id: PaperId, item: &PaperItem) -> Result<(), RecordsError> {
        let counts = tally::paper(item);
        let (id, bytes, waiting) = (id.0.to_vec(), encode(item), tally::waiting(item));
        self.put_counted(PUT_PAPER, &[&id, &bytes, &counts, &waiting], &counts)
    }

    fn archive_evidence(&mut self, evidence: &NewEvidence) -> Result<(), RecordsError> {
        let message = evidence.message_id.map(|m| m.as_bytes().to_vec());
        // Append-only: evidence once kept is never replaced.
        self.exec(
            "INSERT INTO evidence (evidence_id, message_id, evidence) VALUES ($1, $2, $3) \
             ON CONFLICT (evidence_id) DO NOTHING",
            &[
                &evidence.evidence_id.as_bytes().as_slice(),
                &message,
                &evidence.bytes,
            ],
        )?;
        Ok(())
    }
}
