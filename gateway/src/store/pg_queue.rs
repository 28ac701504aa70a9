//! The shared outbox on PostgreSQL: instances claim envelopes with a lease
//! ([`PgRecords::claim_outbox`]) and finish them under it
//! ([`PgRecords::forwarded`]); and the forward queue of one instance: the forwarder
//! (`estafette_relay::forwarder`) sends what this instance claimed from the
//! shared outbox, under its lease; every write is made only while the
//! lease is this instance's, so that an envelope another instance took
//! over is left to it.

use std::sync::Arc;

use estafette_relay::forwarder::{Acceptance, ForwardQueue, QueueWrite, Waiting};
use estafette_relay::origin::{EvidenceNotes, StoredEvidence};
use estafette_relay::store::{NewEvidence, QueueRecord, StoreError};
use estafette_spec::{Digest, EnvelopeId, NodeId, Timestamp};

use super::{RecordsError, SealedEnvelope};

use estafette_spec::MessageId;

use super::pg_statements::Prepared;

/// The columns of [`outbox_item`], as a literal for `concat!`.
macro_rules! outbox_item_columns {
    () => {
        "envelope_id, message_id, next_hop, envelope, previous, next_attempt_ms, queued_at"
    };
}

/// The columns of [`queue_record`], as a literal for `concat!`.
macro_rules! queue_record_columns {
    () => {
        "next_hop, previous, expires_at, queued_at, attempts, \
         next_attempt_ms, last_error, envelope, envelope_id"
    };
}
use super::postgres::{PgRecords, Writing, id16};
use super::{WriteRecords, db};

/// How long a claim lasts without renewal, in seconds.
pub const LEASE_S: u64 = 30;
/// Most envelopes an instance holds claimed at once.
pub const MAX_CLAIMED: usize = 1024;

/// An envelope an instance claimed from the outbox, to forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    pub envelope_id: estafette_spec::EnvelopeId,
    pub message_id: MessageId,
    pub next_hop: String,
    pub envelope: Vec<u8>,
    pub previous: Option<Digest>,
    /// When the forwarder tries it next (milliseconds since 1970).
    pub next_attempt_ms: u64,
    /// When it was queued: where the retry horizon starts.
    pub queued_at: Timestamp,
}

/// Most envelopes one claim takes.
pub const MAX_CLAIM: usize = 1024;

/// Most bytes of envelopes kept in memory between queuing them and
/// handing them to the forwarder (see [`FreshEnvelopes`]).
pub const MAX_FRESH_ENVELOPE_BYTES: usize = 16 * 1024 * 1024;

/// Envelopes this instance just queued, kept in memory until its forwarder
/// asks for them, so that the first attempt reads nothing back from the
/// database. One is given out only while the lease it was queued with is
/// good for another [`LEASE_RENEW_S`] (until then no other instance can
/// have taken it over); otherwise, and past [`MAX_FRESH_ENVELOPE_BYTES`],
/// the forwarder reads the outbox as before.
#[derive(Default)]
pub(super) struct FreshEnvelopes {
    /// Each with the end of the lease it was queued with (seconds).
    entries: std::collections::HashMap<EnvelopeId, (QueueRecord, i64)>,
    bytes: usize,
    /// No kept lease ends before this (seconds): while full, the entries
    /// are swept only once one may have ended, not at every envelope.
    sweep_at: i64,
}

impl FreshEnvelopes {
    /// Keeps `record` (queued under a lease until `lease_until`), if there
    /// is room once envelopes whose lease ran out are dropped.
    pub(super) fn keep(
        &mut self,
        id: EnvelopeId,
        record: QueueRecord,
        lease_until: i64,
        now: Timestamp,
    ) {
        let size = record.envelope.len();
        let now = now.0.min(i64::MAX as u64) as i64;
        if self.bytes + size > MAX_FRESH_ENVELOPE_BYTES && now >= self.sweep_at {
            self.entries.retain(|_, (_, until)| *until > now);
            self.bytes = self.entries.values().map(|(r, _)| r.envelope.len()).sum();
            self.sweep_at = self
                .entries
                .values()
                .map(|(_, until)| *until)
                .min()
                .unwrap_or(0);
        }
        if self.bytes + size > MAX_FRESH_ENVELOPE_BYTES {
            return;
        }
        if self.entries.is_empty() || lease_until < self.sweep_at {
            self.sweep_at = lease_until;
        }
        if let Some((old, _)) = self.entries.insert(id, (record, lease_until)) {
            self.bytes -= old.envelope.len();
        }
        self.bytes += size;
    }

    /// The record of `id`, once, if its lease is still safely this instance's.
    pub(super) fn take(&mut self, id: &EnvelopeId, now: Timestamp) -> Option<QueueRecord> {
        let (record, until) = self.entries.remove(id)?;
        self.bytes -= record.envelope.len();
        let safe_until = now.0.saturating_add(LEASE_RENEW_S).min(i64::MAX as u64) as i64;
        (until > safe_until).then_some(record)
    }
}

impl PgRecords {
    /// Claims up to `limit` envelopes nobody holds a live lease on, oldest
    /// first, for `instance` until `now + lease_s`. Two instances never
    /// claim the same envelope at once (FOR UPDATE SKIP LOCKED); an
    /// instance's own envelopes are given again (after a restart).
    pub async fn claim_outbox(
        &self,
        instance: &str,
        limit: usize,
        lease_s: u64,
        now: Timestamp,
    ) -> Result<Vec<OutboxItem>, RecordsError> {
        let instance = instance.to_owned();
        self.run(move |client| claim(client, &instance, limit, lease_s, now))
            .await
    }

    /// [`Self::claim_outbox`], blocking the calling thread.
    pub fn claim_outbox_blocking(
        &self,
        instance: &str,
        limit: usize,
        lease_s: u64,
        now: Timestamp,
    ) -> Result<Vec<OutboxItem>, RecordsError> {
        let instance = instance.to_owned();
        self.blocking(move |client| claim(client, &instance, limit, lease_s, now))
    }

    /// Envelope `envelope_id` is done with (the next hop took it, or it was
    /// given up): it leaves the outbox and `evidence` (the hop's acceptance,
    /// or the failure) is kept, in one transaction; false (and nothing
    /// changed) when `instance` no longer holds its lease.
    pub async fn forwarded(
        &self,
        instance: &str,
        envelope_id: estafette_spec::EnvelopeId,
        evidence: Vec<NewEvidence>,
    ) -> Result<bool, RecordsError> {
        let instance = instance.to_owned();
        self.run(move |client| {
            if let [evidence] = evidence.as_slice() {
                // The usual case, one statement (one round trip, not four).
                let message = evidence.message_id.map(|m| m.as_bytes().to_vec());
                let taken: i64 = client
                    .query_one_prepared(
                        FORWARDED_WITH_EVIDENCE,
                        &[
                            &envelope_id.as_bytes().as_slice(),
                            &instance,
                            &evidence.evidence_id.as_bytes().as_slice(),
                            &message,
                            &evidence.bytes,
                        ],
                    )
                    .map_err(db)?
                    .get(0);
                return Ok(taken > 0);
            }
            let mut tx = client.transaction().map_err(db)?;
            let taken = tx
                .execute_prepared(
                    "DELETE FROM outbox WHERE envelope_id = $1 AND claimed_by = $2",
                    &[&envelope_id.as_bytes().as_slice(), &instance],
                )
                .map_err(db)?;
            if taken == 0 {
                return Ok(false);
            }
            let mut writing = Writing::new(&mut tx);
            for e in &evidence {
                writing.archive_evidence(e)?;
                if let Some(message) = &e.message_id {
                    writing.look_soon(message)?;
                }
            }
            writing.finish()?;
            tx.commit().map_err(db)?;
            Ok(true)
        })
        .await
    }
}

/// The claim of [`PgRecords::claim_outbox`], on one connection.
fn claim(
    client: &mut postgres::Client,
    instance: &str,
    limit: usize,
    lease_s: u64,
    now: Timestamp,
) -> Result<Vec<OutboxItem>, RecordsError> {
    let limit = limit.min(MAX_CLAIM) as i64;
    let (now, until) = (now.0 as i64, now.0.saturating_add(lease_s) as i64);
    let rows = client
        .query_prepared(
            concat!(
                "UPDATE outbox SET claimed_by = $1, lease_until = $2 WHERE envelope_id IN \
             (SELECT envelope_id FROM outbox WHERE lease_until IS NULL OR lease_until < $3 \
              OR claimed_by = $1 ORDER BY queued_at LIMIT $4 FOR UPDATE SKIP LOCKED) \
             RETURNING ",
                outbox_item_columns!()
            ),
            &[&instance, &until, &now, &limit],
        )
        .map_err(db)?;
    rows.iter().map(outbox_item).collect()
}

/// An outbox row of [`outbox_item_columns`].
fn outbox_item(r: &postgres::Row) -> Result<OutboxItem, RecordsError> {
    let previous: Option<Vec<u8>> = r.get(4);
    let next: i64 = r.get(5);
    let queued: i64 = r.get(6);
    Ok(OutboxItem {
        envelope_id: estafette_spec::EnvelopeId::from_bytes(id16(
            "envelope id",
            r.get::<_, &[u8]>(0),
        )?),
        message_id: MessageId::from_bytes(id16("message id", r.get::<_, &[u8]>(1))?),
        next_hop: r.get(2),
        envelope: r.get(3),
        previous: previous
            .map(|p| {
                <[u8; 32]>::try_from(p.as_slice())
                    .map(Digest)
                    .map_err(|_| RecordsError::Corrupt {
                        what: "previous evidence digest",
                        detail: format!("{} bytes", p.len()),
                    })
            })
            .transpose()?,
        next_attempt_ms: next.max(0) as u64,
        queued_at: Timestamp(queued.max(0) as u64),
    })
}

fn next_hop(hop: &str) -> Result<NodeId, RecordsError> {
    hop.parse().map_err(|e| RecordsError::Corrupt {
        what: "next hop",
        detail: format!("{e}"),
    })
}

fn store_error(e: RecordsError) -> StoreError {
    StoreError::Aborted(e.to_string())
}

/// [`PgRecords::forwarded`] with one piece of evidence, in one statement:
/// the evidence is kept only if the envelope was still this instance's,
/// and then the letter it is about is due to be looked at.
const FORWARDED_WITH_EVIDENCE: &str = "WITH gone AS \
     (DELETE FROM outbox WHERE envelope_id = $1 AND claimed_by = $2 RETURNING envelope_id), \
     kept AS (INSERT INTO evidence (evidence_id, message_id, evidence) SELECT $3::bytea, $4::bytea, $5::bytea FROM gone \
     ON CONFLICT (evidence_id) DO NOTHING), \
     looked AS (UPDATE tracking SET due_at = 0 WHERE message_id = $4::bytea AND due_at <> 0 \
     AND EXISTS (SELECT 1 FROM gone)) \
     SELECT count(*) FROM gone";

/// One instance's view of the outbox.
pub struct PgForwardQueue {
    pub records: Arc<PgRecords>,
    /// This instance's name (unique among the gateway's instances).
    pub instance: String,
    pub notes: EvidenceNotes,
    pub now: Arc<dyn Fn() -> Timestamp + Send + Sync>,
}

impl PgForwardQueue {
    fn write<'a>(
        &'a self,
        job: impl FnOnce(&mut postgres::Client, &str) -> Result<(), RecordsError> + Send + 'static,
    ) -> QueueWrite<'a> {
        let instance = self.instance.clone();
        Box::pin(async move {
            self.records
                .run(move |client| job(client, &instance))
                .await
                .map_err(store_error)
        })
    }
}

impl ForwardQueue for PgForwardQueue {
    /// Claims what this instance held before a restart (and what nobody
    /// holds, up to [`MAX_CLAIMED`]), then counts this instance's per hop.
    fn lines(&self) -> Result<Vec<(NodeId, u64)>, StoreError> {
        self.records
            .claim_outbox_blocking(&self.instance, MAX_CLAIMED, LEASE_S, (self.now)())
            .map_err(store_error)?;
        let instance = self.instance.clone();
        self.records
            .blocking(move |client| {
                let rows = client
                    .query_prepared(
                        "SELECT next_hop, count(*) FROM outbox WHERE claimed_by = $1                          GROUP BY next_hop",
                        &[&instance],
                    )
                    .map_err(db)?;
                rows.iter()
                    .map(|r| {
                        let n: i64 = r.get(1);
                        Ok((next_hop(r.get(0))?, n.max(0) as u64))
                    })
                    .collect()
            })
            .map_err(store_error)
    }

    fn line(&self, hop: &NodeId, limit: usize) -> Result<Vec<Waiting>, StoreError> {
        let (hop, instance) = (hop.to_string(), self.instance.clone());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.records
            .blocking(move |client| {
                let rows = client
                    .query_prepared(
                        "SELECT envelope_id, queued_at FROM outbox                          WHERE next_hop = $1 AND claimed_by = $2 ORDER BY seq LIMIT $3",
                        &[&hop, &instance, &limit],
                    )
                    .map_err(db)?;
                rows.iter()
                    .map(|r| {
                        let queued: i64 = r.get(1);
                        Ok(Waiting {
                            id: EnvelopeId::from_bytes(id16("envelope id", r.get::<_, &[u8]>(0))?),
                            accepted_at: Timestamp(queued.max(0) as u64),
                        })
                    })
                    .collect()
            })
            .map_err(store_error)
    }

    fn expiring(
        &self,
        by: Timestamp,
        limit: usize,
    ) -> Result<Vec<(EnvelopeId, NodeId)>, StoreError> {
        let instance = self.instance.clone();
        let (by, limit) = (
            i64::try_from(by.0).unwrap_or(i64::MAX),
            i64::try_from(limit).unwrap_or(i64::MAX),
        );
        self.records
            .blocking(move |client| {
                let rows = client
                    .query_prepared(
                        "SELECT envelope_id, next_hop FROM outbox                          WHERE claimed_by = $1 AND expires_at <= $2 ORDER BY expires_at LIMIT $3",
                        &[&instance, &by, &limit],
                    )
                    .map_err(db)?;
                rows.iter()
                    .map(|r| {
                        let id = EnvelopeId::from_bytes(id16("envelope id", r.get::<_, &[u8]>(0))?);
                        Ok((id, next_hop(r.get(1))?))
                    })
                    .collect()
            })
            .map_err(store_error)
    }

    fn get(&self, id: &EnvelopeId) -> Result<Option<QueueRecord>, StoreError> {
        if let Some(record) = self.records.take_fresh(id, (self.now)()) {
            return Ok(Some(record));
        }
        let (id, instance) = (*id.as_bytes(), self.instance.clone());
        self.records
            .blocking(move |client| {
                let row = client
                    .query_opt_prepared(
                        concat!(
                            "SELECT ",
                            queue_record_columns!(),
                            " FROM outbox WHERE envelope_id = $1 AND claimed_by = $2"
                        ),
                        &[&id.as_slice(), &instance],
                    )
                    .map_err(db)?;
                row.map(|r| queue_record(&r)).transpose()
            })
            .map_err(store_error)
    }

    fn forwarded(&self, id: EnvelopeId, acceptance: Acceptance) -> QueueWrite<'_> {
        Box::pin(async move {
            let note = StoredEvidence::of(&acceptance.record);
            let evidence = acceptance.evidence();
            let ours = self
                .records
                .forwarded(&self.instance, id, vec![evidence])
                .await
                .map_err(store_error)?;
            if ours {
                self.notes.note(note);
            }
            Ok(())
        })
    }

    fn reschedule(
        &self,
        id: EnvelopeId,
        attempts: u32,
        next_attempt_ms: u64,
        error: String,
    ) -> QueueWrite<'_> {
        self.write(move |client, instance| {
            client
                .execute_prepared(
                    "UPDATE outbox SET attempts = $1, next_attempt_ms = $2, last_error = $3 \
                     WHERE envelope_id = $4 AND claimed_by = $5",
                    &[
                        &(attempts.min(i32::MAX as u32) as i32),
                        &(next_attempt_ms.min(i64::MAX as u64) as i64),
                        &error,
                        &id.as_bytes().as_slice(),
                        &instance,
                    ],
                )
                .map_err(db)?;
            Ok(())
        })
    }

    fn give_up(&self, id: EnvelopeId, evidence: Vec<NewEvidence>) -> QueueWrite<'_> {
        Box::pin(async move {
            self.records
                .forwarded(&self.instance, id, evidence)
                .await
                .map(|_| ())
                .map_err(store_error)
        })
    }
}

fn id32(bytes: &[u8]) -> Result<[u8; 32], RecordsError> {
    bytes.try_into().map_err(|_| RecordsError::Corrupt {
        what: "evidence digest",
        detail: format!("{} bytes, not 32", bytes.len()),
    })
}

/// What a running instance adds to the shared records: its name, its
/// forwarder (what the instance queues, it forwards) and its wall clock
/// for leases (instances' clocks must agree to well within [`LEASE_S`]).
pub struct FirstHop {
    pub core: Arc<estafette_relay::core::NodeCore>,
    pub instance: String,
    pub forwarder: Arc<estafette_relay::forwarder::Forwarder>,
    pub now: Arc<dyn Fn() -> Timestamp + Send + Sync>,
}

impl FirstHop {
    /// The first hop towards `home`, as the trust list routes it.
    pub(super) fn next_hop(
        &self,
        home: &NodeId,
    ) -> Result<NodeId, estafette_relay::origin::QueueError> {
        self.core
            .trust()
            .next_hop(&self.core.id, home)
            .map(|n| n.id.clone())
            .ok_or_else(|| estafette_relay::origin::QueueError::NoRoute(home.clone()))
    }

    /// The claim a newly queued envelope starts with: (instance, lease
    /// until, now in milliseconds: its first attempt is due now).
    pub(super) fn claim(&self) -> (String, i64, i64) {
        let now = (self.now)().0;
        let until = now.saturating_add(LEASE_S).min(i64::MAX as u64) as i64;
        let now_ms = now.saturating_mul(1000).min(i64::MAX as u64) as i64;
        (self.instance.clone(), until, now_ms)
    }
}

/// How often an instance renews its leases and looks for envelopes whose
/// lease ran out: three times per lease.
pub const LEASE_RENEW_S: u64 = LEASE_S / 3;

impl PgRecords {
    /// Attaches the running instance's forwarder (what it queues from now
    /// on is claimed for it and forwarded by it), then keeps its leases
    /// alive and takes over, for it, the envelopes of instances whose leases
    /// ran out, until the node stops.
    pub fn attach(
        self: &Arc<Self>,
        first_hop: FirstHop,
        stopped: Arc<tokio::sync::Notify>,
    ) -> Result<(), RecordsError> {
        let (instance, forwarder, now) = (
            first_hop.instance.clone(),
            first_hop.forwarder.clone(),
            first_hop.now.clone(),
        );
        self.first_hop
            .set(first_hop)
            .map_err(|_| RecordsError::Corrupt {
                what: "instance",
                detail: "the records already belong to a running instance".into(),
            })?;
        tokio::spawn(self.clone().keep_leases(instance, forwarder, now, stopped));
        Ok(())
    }

    async fn keep_leases(
        self: Arc<Self>,
        instance: String,
        forwarder: Arc<estafette_relay::forwarder::Forwarder>,
        now: Arc<dyn Fn() -> Timestamp + Send + Sync>,
        stopped: Arc<tokio::sync::Notify>,
    ) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_secs(LEASE_RENEW_S)) => {}
                _ = stopped.notified() => return,
            }
            match self.renew_and_take_over(&instance, now()).await {
                Ok(taken) => {
                    if !taken.is_empty() {
                        tracing::info!(
                            envelopes = taken.len(),
                            "took over envelopes whose lease ran out"
                        );
                    }
                    for item in taken {
                        match item.next_hop.parse() {
                            Ok(hop) => {
                                forwarder
                                    .scheduled(item.envelope_id, hop, item.queued_at, true)
                                    .await
                            }
                            Err(e) => {
                                tracing::error!(envelope = %item.envelope_id, error = %e, "an outbox row names no node")
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "renewing the outbox leases failed; trying again")
                }
            }
        }
    }

    /// Renews `instance`'s leases, then claims for it up to [`MAX_CLAIM`]
    /// envelopes of other instances whose leases ran out (oldest first).
    pub async fn renew_and_take_over(
        &self,
        instance: &str,
        now: Timestamp,
    ) -> Result<Vec<OutboxItem>, RecordsError> {
        let instance = instance.to_owned();
        self.run(move |client| {
            let until = now.0.saturating_add(LEASE_S) as i64;
            client
                .execute_prepared(
                    "UPDATE outbox SET lease_until = $2 WHERE claimed_by = $1",
                    &[&instance, &until],
                )
                .map_err(db)?;
            let rows = client
                .query_prepared(
                    concat!(
                        "UPDATE outbox SET claimed_by = $1, lease_until = $2 WHERE envelope_id IN \
                         (SELECT envelope_id FROM outbox WHERE (lease_until IS NULL OR lease_until < $3) \
                          AND claimed_by IS DISTINCT FROM $1 ORDER BY queued_at LIMIT $4 \
                          FOR UPDATE SKIP LOCKED) RETURNING ",
                        outbox_item_columns!()
                    ),
                    &[&instance, &until, &(now.0 as i64), &(MAX_CLAIM as i64)],
                )
                .map_err(db)?;
            rows.iter().map(outbox_item).collect()
        })
        .await
    }
}

/// An outbox row as the forwarder's queue record.
fn queue_record(r: &postgres::Row) -> Result<QueueRecord, RecordsError> {
    let previous: Option<Vec<u8>> = r.get(1);
    let attempts: i32 = r.get(4);
    let next: i64 = r.get(5);
    let (expires, queued): (i64, i64) = (r.get(2), r.get(3));
    Ok(QueueRecord {
        destination: r
            .get::<_, String>(0)
            .parse()
            .map_err(|e| RecordsError::Corrupt {
                what: "next hop",
                detail: format!("{e}"),
            })?,
        hops_taken: 0,
        our_evidence: previous.map(|p| id32(&p).map(Digest)).transpose()?,
        expires_at: Timestamp(expires.max(0) as u64),
        accepted_at: Timestamp(queued.max(0) as u64),
        attempts: attempts.max(0) as u32,
        next_attempt_ms: next.max(0) as u64,
        last_error: r.get(6),
        envelope: r.get(7),
        seq: 0,
    })
}

impl PgRecords {
    /// Up to `limit` envelopes of the outbox (whoever holds them), for the
    /// operator's queue report.
    pub fn outbox_snapshot(
        &self,
        limit: usize,
    ) -> Result<Vec<(EnvelopeId, QueueRecord)>, RecordsError> {
        self.blocking(move |client| {
            let rows = client
                .query_prepared(
                    concat!(
                        "SELECT ",
                        queue_record_columns!(),
                        " FROM outbox ORDER BY next_attempt_ms LIMIT $1"
                    ),
                    &[&(limit as i64)],
                )
                .map_err(db)?;
            rows.iter()
                .map(|r| {
                    let id = EnvelopeId::from_bytes(id16("envelope id", r.get::<_, &[u8]>(8))?);
                    Ok((id, queue_record(r)?))
                })
                .collect()
        })
    }
}

/// Puts `sealed` in the outbox for `hop`, claimed under `claim` (instance,
/// lease until, now in milliseconds) when an instance forwards it; 0 rows
/// when the envelope is there already.
pub(super) fn insert_outbox(
    tx: &mut postgres::Transaction<'_>,
    sealed: &SealedEnvelope,
    hop: &estafette_spec::NodeId,
    claim: Option<&(String, i64, i64)>,
) -> Result<u64, RecordsError> {
    let header = &sealed.header;
    let evidence_id = sealed
        .evidence
        .as_ref()
        .map(|e| e.evidence_id.as_bytes().to_vec());
    let previous = sealed.previous.map(|d| d.0.to_vec());
    // The instance that queues an envelope forwards it: claimed for it
    // from the start.
    let (claimed_by, lease_until, now_ms) = match claim {
        Some((instance, until, now_ms)) => (Some(instance.as_str()), Some(*until), *now_ms),
        None => (None, None, 0),
    };
    tx.execute_prepared(
        "INSERT INTO outbox (envelope_id, message_id, next_hop, envelope, previous, \
         evidence_id, queued_at, expires_at, claimed_by, lease_until, next_attempt_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (envelope_id) DO NOTHING",
        &[
            &header.envelope_id.as_bytes().as_slice(),
            &header.message_id.as_bytes().as_slice(),
            &hop.as_str(),
            &sealed.envelope,
            &previous,
            &evidence_id,
            &(header.created_at.0 as i64),
            &(header.expires_at.0 as i64),
            &claimed_by,
            &lease_until,
            &now_ms,
        ],
    )
    .map_err(db)
}

/// The evidence kept with envelope `id` when it is queued already (empty
/// when it has none); `None` when it is not queued.
pub(super) fn queued_evidence(
    tx: &mut postgres::Transaction<'_>,
    id: &estafette_spec::EnvelopeId,
) -> Result<Option<Vec<u8>>, RecordsError> {
    let Some(row) = tx
        .query_opt_prepared(
            "SELECT evidence_id FROM outbox WHERE envelope_id = $1",
            &[&id.as_bytes().as_slice()],
        )
        .map_err(db)?
    else {
        return Ok(None);
    };
    let Some(evidence_id) = row.get::<_, Option<Vec<u8>>>(0) else {
        return Ok(Some(vec![]));
    };
    Ok(Some(
        tx.query_opt_prepared(
            "SELECT evidence FROM evidence WHERE evidence_id = $1",
            &[&evidence_id],
        )
        .map_err(db)?
        .map(|r| r.get::<_, Vec<u8>>(0))
        .unwrap_or_default(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(bytes: usize) -> QueueRecord {
        QueueRecord {
            destination: "relay.test".parse().unwrap(),
            hops_taken: 0,
            our_evidence: None,
            expires_at: Timestamp(2_000_000_000),
            accepted_at: Timestamp(1_000_000_000),
            attempts: 0,
            next_attempt_ms: 0,
            last_error: None,
            envelope: vec![7; bytes],
            seq: 0,
        }
    }

    fn id(n: u8) -> EnvelopeId {
        EnvelopeId::from_bytes([n; 16])
    }

    const NOW: Timestamp = Timestamp(1_000_000_000);
    const LEASE_END: i64 = 1_000_000_000 + LEASE_S as i64;

    #[test]
    fn a_fresh_envelope_is_given_once_and_only_while_its_lease_is_safe() {
        let mut fresh = FreshEnvelopes::default();
        fresh.keep(id(1), record(100), LEASE_END, NOW);
        let given = fresh.take(&id(1), NOW).map(|r| r.envelope);
        assert_eq!(given, Some(vec![7; 100]));
        assert!(fresh.take(&id(1), NOW).is_none(), "given out twice");
        // Too near the end of the lease: another instance may take it over
        // soon, so the forwarder reads the outbox instead.
        fresh.keep(id(2), record(100), LEASE_END, NOW);
        let late = Timestamp(LEASE_END as u64 - LEASE_RENEW_S);
        assert!(fresh.take(&id(2), late).is_none());
        assert_eq!(fresh.bytes, 0);
    }

    #[test]
    fn fresh_envelopes_stay_within_their_byte_limit() {
        let mut fresh = FreshEnvelopes::default();
        let half = MAX_FRESH_ENVELOPE_BYTES / 2;
        fresh.keep(id(1), record(half), LEASE_END, NOW);
        fresh.keep(id(2), record(half), LEASE_END, NOW);
        assert_eq!(
            fresh.bytes, MAX_FRESH_ENVELOPE_BYTES,
            "exactly at the limit is kept"
        );
        fresh.keep(id(3), record(1), LEASE_END, NOW);
        assert!(
            fresh.take(&id(3), NOW).is_none(),
            "past the limit nothing more is kept"
        );
        // Once the kept ones' leases ran out, they make room.
        let later = Timestamp(LEASE_END as u64 + 1);
        fresh.keep(id(4), record(1), LEASE_END + 100, later);
        assert_eq!(fresh.bytes, 1);
        assert!(fresh.take(&id(4), later).is_some());
    }
}
