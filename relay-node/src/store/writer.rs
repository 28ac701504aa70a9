//! The single writer thread: takes every pending [`Op`], applies them in
//! one transaction and commits (one fsync per batch), then answers each.
//! [`Tables`] is the store's open tables inside that transaction.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use estafette_spec::{Digest, EnvelopeId, InboxId, Timestamp};
use redb::{Database, ReadableTable};
use tokio::sync::mpsc;

use super::*;
use crate::metrics::Metrics;

pub(super) struct Writer {
    pub(super) db: Arc<Database>,
    pub(super) space: super::space::DiskSpace,
    /// The reserve of free bytes (set through `Store::keep_free`).
    pub(super) min_free: Arc<AtomicU64>,
    /// Whether the last batch met a full disk: a change is logged once.
    pub(super) disk_full: bool,
    pub(super) max_queue_len: u64,
    pub(super) max_commit_batch: usize,
    pub(super) queue_len: Arc<AtomicU64>,
    pub(super) outbox_len: Arc<AtomicU64>,
    /// The place the next queued envelope takes in its line.
    pub(super) next_seq: u64,
    /// The place the next evidence object takes in the outbox's line.
    pub(super) next_outbox_seq: u64,
    pub(super) metrics: Arc<Metrics>,
}

/// The place after the last one taken in any line.
pub(super) fn next_seq(db: &Database) -> Result<u64, StoreError> {
    let txn = db.begin_read()?;
    let (lengths, lines) = (txn.open_table(LINE_LENGTHS)?, txn.open_table(LINES)?);
    let mut next = 0;
    for item in lengths.iter()? {
        let (hop, _) = item?;
        let hop = hop.value();
        if let Some(last) = lines.range((hop, 0u64)..=(hop, u64::MAX))?.next_back() {
            next = next.max(last?.0.value().1 + 1);
        }
    }
    Ok(next)
}

/// The place after the last one taken in the outbox's line.
pub(super) fn next_outbox_seq(db: &Database) -> Result<u64, StoreError> {
    let txn = db.begin_read()?;
    let outbox = txn.open_table(OUTBOX)?;
    Ok(match outbox.last()? {
        Some((place, _)) => place.value() + 1,
        None => 0,
    })
}

/// Moves an outbox kept by evidence id (a store from an earlier version)
/// to `outbox_by_place`: what its line held first, in the line's order,
/// then evidence from before it kept a line; then drops the old tables.
/// Does nothing to a store without them.
pub(super) fn move_outbox_to_places(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    let legacy = txn.open_table(LEGACY_OUTBOX)?;
    let line = txn.open_table(LEGACY_OUTBOX_LINE)?;
    if !legacy.is_empty()? {
        let mut outbox = txn.open_table(OUTBOX)?;
        let mut place = match outbox.last()? {
            Some((last, _)) => last.value() + 1,
            None => 0,
        };
        let mut lined_up = std::collections::HashSet::new();
        let in_line = line.iter()?.map(|item| item.map(|(_, id)| id.value()));
        let unlined = legacy.iter()?.map(|item| item.map(|(id, _)| id.value()));
        for id in in_line.chain(unlined) {
            let id = id?;
            if !lined_up.insert(id) {
                continue;
            }
            let Some(record) = legacy.get(id)? else {
                continue;
            };
            let record: OutboxRecord = decode(record.value())?;
            outbox.insert(place, (id, record.evidence.as_slice()))?;
            place += 1;
        }
    }
    drop((legacy, line));
    txn.delete_table(LEGACY_OUTBOX)?;
    txn.delete_table(LEGACY_OUTBOX_LINE)?;
    Ok(())
}

/// Indexes every letter of every inbox by arrival (a store from before
/// `inbox_by_time`); nothing when each letter is indexed already.
pub(super) fn index_inboxes_by_time(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    let inbox = txn.open_table(INBOX)?;
    let mut by_time = txn.open_table(INBOX_BY_TIME)?;
    if by_time.len()? == inbox.len()? {
        return Ok(());
    }
    for item in inbox.iter()? {
        let (k, v) = item?;
        let (id, envelope) = k.value();
        let record: InboxRecord = decode(v.value())?;
        by_time.insert((id, record.received_at.0, envelope), ())?;
    }
    Ok(())
}

/// Counts the unread letters of every inbox (a store from before
/// `inbox_unread`); nothing when the counts are there.
pub(super) fn count_unread_letters(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    let inbox = txn.open_table(INBOX)?;
    let mut unread = txn.open_table(INBOX_UNREAD)?;
    if !unread.is_empty()? || inbox.is_empty()? {
        return Ok(());
    }
    let mut counts: std::collections::BTreeMap<[u8; 16], u64> = Default::default();
    for item in inbox.iter()? {
        let (k, v) = item?;
        let record: InboxRecord = decode(v.value())?;
        *counts.entry(k.value().0).or_default() += u64::from(record.opened_at.is_none());
    }
    for (id, n) in counts {
        unread.insert(id, n)?;
    }
    Ok(())
}

/// Adds `change` to an inbox's count of unread letters.
fn add_unread(
    txn: &redb::WriteTransaction,
    inbox: [u8; 16],
    change: i64,
) -> Result<(), StoreError> {
    let mut unread = txn.open_table(INBOX_UNREAD)?;
    let now = unread.get(inbox)?.map_or(0, |n| n.value());
    unread.insert(inbox, now.saturating_add_signed(change))?;
    Ok(())
}

/// Moves dedup records kept by envelope id as CBOR (a store from an
/// earlier version) into `dedup_ids` and the time-ordered
/// `dedup_evidence`, then drops the old tables. Runs after
/// [`move_queue_to_places`], which writes places into the old records.
/// Does nothing to a store without them.
pub(super) fn move_dedup_to_time_order(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    let legacy = txn.open_table(LEGACY_DEDUP)?;
    if !legacy.is_empty()? {
        let mut ids = txn.open_table(DEDUP)?;
        let mut evidence = txn.open_table(DEDUP_EVIDENCE)?;
        for item in legacy.iter()? {
            let (k, v) = item?;
            let (id, record): ([u8; 16], DedupRecord) = (k.value(), decode(v.value())?);
            let accepted_s = record.accepted_at.0;
            ids.insert(id, (accepted_s, record.place_or_not_queued()))?;
            evidence.insert((accepted_s, id), record.evidence.as_slice())?;
        }
    }
    drop(legacy);
    txn.delete_table(LEGACY_DEDUP)?;
    txn.delete_table(LEGACY_DEDUP_BY_TIME)?;
    Ok(())
}

/// Moves a queue kept by envelope id (a store from an earlier version)
/// into the queue kept by place, each envelope at its place in its line
/// (numbering them first, in the order they were accepted, if the store
/// kept no lines yet), with its place in its dedup record and its attempts
/// apart; then drops the old table. Does nothing to a store without one.
pub(super) fn move_queue_to_places(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    let legacy = txn.open_table(LEGACY_QUEUE)?;
    if !legacy.is_empty()? {
        let numbered = !txn.open_table(LINE_LENGTHS)?.is_empty()?;
        // Only ids and times in memory: the records are read one at a time.
        let mut order: Vec<(u64, u64, [u8; 16])> = Vec::new();
        for item in legacy.iter()? {
            let (k, v) = item?;
            let record: QueueRecord = decode(v.value())?;
            order.push((record.seq, record.accepted_at.0, k.value()));
        }
        if !numbered {
            order.sort_by_key(|&(_, accepted_at, id)| (accepted_at, id));
        }
        let mut moved = Moved {
            queue: txn.open_table(QUEUE)?,
            retries: txn.open_table(RETRIES)?,
            dedup: txn.open_table(LEGACY_DEDUP)?,
            lines: Lines::open(txn)?,
        };
        for (n, (seq, _, id)) in (0u64..).zip(order) {
            let Some(v) = legacy.get(&id)? else { continue };
            let mut record: QueueRecord = decode(v.value())?;
            drop(v);
            record.seq = if numbered { seq } else { n };
            if !numbered {
                moved.lines.add(&EnvelopeId::from_bytes(id), &record)?;
            }
            moved.put(&id, record)?;
        }
    }
    drop(legacy);
    txn.delete_table(LEGACY_QUEUE)?;
    Ok(())
}

/// The tables an envelope moved from the old queue is written to.
struct Moved<'t> {
    queue: redb::Table<'t, u64, &'static [u8]>,
    retries: redb::Table<'t, u64, &'static [u8]>,
    dedup: redb::Table<'t, [u8; 16], &'static [u8]>,
    lines: Lines<'t>,
}

impl Moved<'_> {
    fn put(&mut self, id: &[u8; 16], record: QueueRecord) -> Result<(), StoreError> {
        let place = record.seq;
        let mut dedup: DedupRecord = match self.dedup.get(id)? {
            Some(v) => decode(v.value())?,
            None => DedupRecord {
                evidence: Vec::new(),
                accepted_at: record.accepted_at,
                state: EnvelopeState::Queued,
                place: None,
            },
        };
        dedup.place = Some(place);
        self.dedup.insert(id, encode(&dedup).as_slice())?;
        if record.attempts > 0 || record.last_error.is_some() {
            let retry = RetryRecord {
                attempts: record.attempts,
                next_attempt_ms: record.next_attempt_ms,
                last_error: record.last_error.clone(),
            };
            self.retries.insert(place, encode(&retry).as_slice())?;
        }
        let record = record.with_retries(RetryRecord::default());
        self.queue.insert(place, encode(&record).as_slice())?;
        Ok(())
    }
}

/// The tables that say where queued envelopes wait (see the store's doc).
pub(super) struct Lines<'t> {
    lines: redb::Table<'t, (&'static str, u64), ([u8; 16], u64)>,
    lengths: redb::Table<'t, &'static str, u64>,
    expiries: redb::Table<'t, (u64, [u8; 16]), &'static str>,
}

impl<'t> Lines<'t> {
    fn open(txn: &'t redb::WriteTransaction) -> Result<Lines<'t>, StoreError> {
        Ok(Lines {
            lines: txn.open_table(LINES)?,
            lengths: txn.open_table(LINE_LENGTHS)?,
            expiries: txn.open_table(EXPIRIES)?,
        })
    }

    fn add(&mut self, id: &EnvelopeId, r: &QueueRecord) -> Result<(), StoreError> {
        let hop = r.destination.as_str();
        self.lines
            .insert((hop, r.seq), (*id.as_bytes(), r.accepted_at.0))?;
        self.expiries
            .insert((r.expires_at.0, *id.as_bytes()), hop)?;
        let length = self.lengths.get(hop)?.map_or(0, |v| v.value());
        self.lengths.insert(hop, length + 1)?;
        Ok(())
    }

    fn remove(&mut self, id: &EnvelopeId, r: &QueueRecord) -> Result<(), StoreError> {
        let hop = r.destination.as_str();
        self.lines.remove((hop, r.seq))?;
        self.expiries.remove((r.expires_at.0, *id.as_bytes()))?;
        let length = self.lengths.get(hop)?.map_or(0, |v| v.value());
        if length <= 1 {
            self.lengths.remove(hop)?;
        } else {
            self.lengths.insert(hop, length - 1)?;
        }
        Ok(())
    }
}

impl Writer {
    /// While free space is below the reserve, answers the writes of `batch`
    /// that add data with [`StoreError::DiskFull`] and gives back the rest.
    /// Logs once when the disk becomes full and once when space returns.
    fn refuse_while_full(&mut self, batch: Vec<Job>) -> Vec<Job> {
        let reserve = self.min_free.load(Ordering::Relaxed);
        let free = self.space.free_bytes();
        if let Some(free) = free {
            self.metrics
                .store_free_bytes
                .set(free.min(i64::MAX as u64) as i64);
        }
        let full = free.is_some_and(|free| free < reserve);
        let (free_mib, reserve_mib) = (free.unwrap_or(0) >> 20, reserve >> 20);
        if full != self.disk_full {
            self.disk_full = full;
            self.metrics.store_disk_full.set(i64::from(full));
            if full {
                tracing::error!(
                    free_mib,
                    reserve_mib,
                    "the disk is full: refusing new envelopes and records (retryable) until space returns; \
                     forwarding and delivering go on"
                );
            } else {
                tracing::warn!(
                    free_mib,
                    reserve_mib,
                    "disk space returned: accepting again"
                );
            }
        }
        if !full {
            return batch;
        }
        let mut kept = Vec::with_capacity(batch.len());
        for job in batch {
            if job.op.adds_data() {
                let _ = job.reply.send(Err(StoreError::DiskFull {
                    free_mib,
                    reserve_mib,
                }));
            } else {
                kept.push(job);
            }
        }
        kept
    }

    pub(super) fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < self.max_commit_batch {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            let batch = self.refuse_while_full(batch);
            if batch.is_empty() {
                continue;
            }
            let started = Instant::now();
            let (queue_before, outbox_before) = (
                self.queue_len.load(Ordering::Relaxed),
                self.outbox_len.load(Ordering::Relaxed),
            );
            let mut queue_len = queue_before;
            let mut outbox_len = outbox_before;
            let mut next_seq = self.next_seq;
            let mut next_outbox_seq = self.next_outbox_seq;
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
                        retries: txn.open_table(RETRIES)?,
                        inbox: txn.open_table(INBOX)?,
                        outbox: txn.open_table(OUTBOX)?,
                        dedup_evidence: txn.open_table(DEDUP_EVIDENCE)?,
                        evidence: txn.open_table(EVIDENCE)?,
                        lines: Lines::open(&txn)?,
                        next_seq: &mut next_seq,
                        next_outbox_seq: &mut next_outbox_seq,
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
                    self.next_seq = next_seq;
                    self.next_outbox_seq = next_outbox_seq;
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
    dedup: redb::Table<'t, [u8; 16], (u64, u64)>,
    queue: redb::Table<'t, u64, &'static [u8]>,
    retries: redb::Table<'t, u64, &'static [u8]>,
    inbox: redb::Table<'t, ([u8; 16], [u8; 16]), &'static [u8]>,
    outbox: redb::Table<'t, u64, ([u8; 16], &'static [u8])>,
    dedup_evidence: redb::Table<'t, (u64, [u8; 16]), &'static [u8]>,
    evidence: redb::Table<'t, ([u8; 16], [u8; 16]), &'static [u8]>,
    lines: Lines<'t>,
    next_seq: &'t mut u64,
    next_outbox_seq: &'t mut u64,
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
        let mut by_time = txn.open_table(INBOX_BY_TIME)?;
        let mut unread = 0;
        for (envelope, record) in &moved {
            self.inbox.remove((*from.as_bytes(), *envelope))?;
            self.inbox
                .insert((*into.as_bytes(), *envelope), record.as_slice())?;
            let record = decode::<InboxRecord>(record)?;
            by_time.remove((*from.as_bytes(), record.received_at.0, *envelope))?;
            by_time.insert((*into.as_bytes(), record.received_at.0, *envelope), ())?;
            unread += i64::from(record.opened_at.is_none());
        }
        drop(by_time);
        if !moved.is_empty() {
            txn.open_table(INBOX_UNREAD)?.remove(from.as_bytes())?;
            add_unread(txn, *into.as_bytes(), unread)?;
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
                // No lookup by id: evidence kept twice (a next hop answering
                // a retried offer) goes out twice, and the gateway keeps it
                // once, by id.
                self.outbox.insert(
                    *self.next_outbox_seq,
                    (*e.evidence_id.as_bytes(), e.bytes.as_slice()),
                )?;
                *self.next_outbox_seq += 1;
                *self.outbox_len += 1;
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

    /// The place of a queued envelope, from its dedup record.
    fn place_of(&self, id: &EnvelopeId) -> Result<Option<u64>, StoreError> {
        Ok(self
            .dedup
            .get(id.as_bytes())?
            .map(|v| v.value().1)
            .filter(|&place| place != NOT_QUEUED))
    }

    fn remove_queued(&mut self, id: &EnvelopeId) -> Result<bool, StoreError> {
        let Some(place) = self.place_of(id)? else {
            return Ok(false);
        };
        let Some(removed) = self.queue.remove(place)? else {
            return Ok(false);
        };
        let record: QueueRecord = decode(removed.value())?;
        drop(removed);
        self.retries.remove(place)?;
        self.lines.remove(id, &record)?;
        *self.queue_len = self.queue_len.saturating_sub(1);
        Ok(true)
    }

    pub(super) fn apply(
        &mut self,
        op: Op,
        txn: &redb::WriteTransaction,
    ) -> Result<Outcome, StoreError> {
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
                    placement,
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
            Op::Forwarded {
                envelope_id,
                evidence,
            } => {
                let (evidence, to) =
                    evidence.map_or((vec![], EvidenceTo::Archive), |(e, to)| (vec![e], to));
                self.off_the_queue(&envelope_id, &evidence, to)
            }
            Op::Reschedule {
                envelope_id,
                attempts,
                next_attempt_ms,
                last_error,
            } => self.reschedule(&envelope_id, attempts, next_attempt_ms, last_error),
            Op::Fail {
                envelope_id,
                evidence,
                to,
            } => self.off_the_queue(&envelope_id, &evidence, to),
            Op::OutboxDone { entries } => self.outbox_done(&entries),
            Op::OutboxToBack { entries } => self.outbox_to_back(&entries),
            Op::StoreEvidence { evidence } => {
                for e in &evidence {
                    self.archive(e)?;
                }
                Ok(Outcome::Done)
            }
            Op::MarkOpened {
                inbox_id,
                envelope_id,
                opened_at,
                evidence,
                access,
            } => self.mark_opened(
                txn,
                (&inbox_id, &envelope_id),
                opened_at,
                &evidence,
                &access,
            ),
            Op::Prune { before, from } => self.prune(before, from),
        }
    }

    fn accept(
        &mut self,
        txn: &redb::WriteTransaction,
        envelope_id: &EnvelopeId,
        evidence: Option<&NewEvidence>,
        placement: Placement,
        now: Timestamp,
        evidence_to: Option<EvidenceTo>,
    ) -> Result<Outcome, StoreError> {
        if let Some(v) = self.dedup.get(envelope_id.as_bytes())? {
            let (accepted_s, _) = v.value();
            let evidence = self
                .dedup_evidence
                .get((accepted_s, *envelope_id.as_bytes()))?
                .map(|e| e.value().to_vec())
                .unwrap_or_default();
            return Ok(Outcome::Duplicate { evidence });
        }
        let place = match placement {
            Placement::Queue(mut record) => {
                if *self.queue_len >= self.max_queue_len {
                    return Ok(Outcome::QueueFull);
                }
                record.seq = *self.next_seq;
                *self.next_seq += 1;
                self.lines.add(envelope_id, &record)?;
                self.queue.insert(record.seq, encode(&record).as_slice())?;
                *self.queue_len += 1;
                record.seq
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
                let delivered_before = self
                    .inbox
                    .insert(
                        (target, *envelope_id.as_bytes()),
                        encode(&record).as_slice(),
                    )?
                    .is_some();
                if !delivered_before {
                    add_unread(txn, target, i64::from(record.opened_at.is_none()))?;
                }
                txn.open_table(INBOX_BY_TIME)?
                    .insert((target, record.received_at.0, *envelope_id.as_bytes()), ())?;
                txn.open_table(LETTERS)?
                    .insert(envelope_id.as_bytes(), message.as_slice())?;
                NOT_QUEUED
            }
        };
        self.dedup.insert(envelope_id.as_bytes(), (now.0, place))?;
        self.dedup_evidence.insert(
            (now.0, *envelope_id.as_bytes()),
            evidence.map_or(&[][..], |e| e.bytes.as_slice()),
        )?;
        if let (Some(evidence), Some(to)) = (evidence, evidence_to) {
            self.keep(evidence, to)?;
        }
        Ok(Outcome::Stored)
    }

    /// An envelope leaves the queue (forwarded or given up) with the
    /// evidence of that, kept only if it was still queued.
    pub fn off_the_queue(
        &mut self,
        envelope_id: &EnvelopeId,
        evidence: &[NewEvidence],
        to: EvidenceTo,
    ) -> Result<Outcome, StoreError> {
        if self.remove_queued(envelope_id)? {
            for e in evidence {
                self.keep(e, to)?;
            }
        }
        Ok(Outcome::Done)
    }

    fn reschedule(
        &mut self,
        envelope_id: &EnvelopeId,
        attempts: u32,
        next_attempt_ms: u64,
        last_error: String,
    ) -> Result<Outcome, StoreError> {
        let Some(place) = self.place_of(envelope_id)? else {
            return Ok(Outcome::Done);
        };
        if self.queue.get(place)?.is_none() {
            return Ok(Outcome::Done);
        }
        let retry = RetryRecord {
            attempts,
            next_attempt_ms,
            last_error: Some(last_error),
        };
        self.retries.insert(place, encode(&retry).as_slice())?;
        Ok(Outcome::Done)
    }

    /// Takes out of the outbox each entry still at its place.
    fn outbox_done(&mut self, entries: &[(u64, EvidenceId)]) -> Result<Outcome, StoreError> {
        for (place, id) in entries {
            if self.outbox_holds(*place, id)? {
                self.outbox.remove(place)?;
                *self.outbox_len = self.outbox_len.saturating_sub(1);
            }
        }
        Ok(Outcome::Done)
    }

    /// Moves each entry still at its place to the end of the outbox.
    fn outbox_to_back(&mut self, entries: &[(u64, EvidenceId)]) -> Result<Outcome, StoreError> {
        for (place, id) in entries {
            if !self.outbox_holds(*place, id)? {
                continue;
            }
            let Some(evidence) = self.outbox.remove(place)?.map(|v| v.value().1.to_vec()) else {
                continue;
            };
            self.outbox
                .insert(*self.next_outbox_seq, (*id.as_bytes(), evidence.as_slice()))?;
            *self.next_outbox_seq += 1;
        }
        Ok(Outcome::Done)
    }

    fn outbox_holds(&self, place: u64, id: &EvidenceId) -> Result<bool, StoreError> {
        Ok(self
            .outbox
            .get(place)?
            .is_some_and(|v| v.value().0 == *id.as_bytes()))
    }

    /// A letter opened: its record, its ContentHandover in the outbox, and
    /// a line in the inbox's access log.
    fn mark_opened(
        &mut self,
        txn: &redb::WriteTransaction,
        (inbox_id, envelope_id): (&InboxId, &EnvelopeId),
        opened_at: Timestamp,
        evidence: &NewEvidence,
        access: &AccessEntry,
    ) -> Result<Outcome, StoreError> {
        let key = (*inbox_id.as_bytes(), *envelope_id.as_bytes());
        let mut record: InboxRecord = match self.inbox.get(key)? {
            Some(v) => decode(v.value())?,
            None => return Ok(Outcome::Done),
        };
        if record.opened_at.is_none() {
            record.opened_at = Some(opened_at);
            add_unread(txn, *inbox_id.as_bytes(), -1)?;
        }
        record.last_evidence = estafette_spec::Evidence::chain_digest(&evidence.bytes)
            .unwrap_or(Digest::of(&evidence.bytes));
        self.inbox.insert(key, encode(&record).as_slice())?;
        self.keep(evidence, EvidenceTo::Outbox)?;
        let mut log = txn.open_table(ACCESS_LOG)?;
        let next = log
            .range((*inbox_id.as_bytes(), 0u64)..=(*inbox_id.as_bytes(), u64::MAX))?
            .next_back()
            .transpose()?
            .map_or(0, |(k, _)| k.value().1 + 1);
        log.insert((*inbox_id.as_bytes(), next), encode(access).as_slice())?;
        Ok(Outcome::Stored)
    }

    /// Forgets dedup entries older than `before`, except those still
    /// queued (a retried offer must still find them).
    fn prune(&mut self, before: Timestamp, from: DedupPlace) -> Result<Outcome, StoreError> {
        let mut examined = Vec::new();
        for item in self
            .dedup_evidence
            .range(from..(before.0, [0u8; 16]))?
            .take(PRUNE_BATCH + 1)
        {
            examined.push(item?.0.value());
        }
        let next = (examined.len() > PRUNE_BATCH).then(|| examined[PRUNE_BATCH]);
        examined.truncate(PRUNE_BATCH);
        for entry in examined {
            // Still queued: remembered until it leaves the queue (a later
            // round finds it again).
            let queued = match self.place_of(&EnvelopeId::from_bytes(entry.1))? {
                Some(place) => self.queue.get(place)?.is_some(),
                None => false,
            };
            if !queued {
                self.dedup.remove(entry.1)?;
                self.dedup_evidence.remove(entry)?;
            }
        }
        Ok(Outcome::Pruned { next })
    }
}
