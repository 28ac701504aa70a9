//! The escalation monitor: every cycle (and early, when evidence arrives)
//! it looks at the digital letters not yet opened whose next step is due
//! (an index by due time, [`crate::store::ReadRecords::due_letters`], which
//! evidence arriving and changes of a person also put letters in as due
//! now: the work of a cycle is what is due, not all that is followed), learns from the stored
//! evidence whether it reached the inbox or was opened, and takes the next
//! step of [`escalation::next_step`]: a notification, a reminder, or a
//! paper copy. Each step is signed evidence. Then it prints what waits in
//! the paper queue into the spool.
//!
//! Crash safety: a step's record (evidence, progress, paper item) is one
//! transaction written after the step; a crash between sending an e-mail
//! and that write sends the e-mail again (at least once), never loses it.

mod spool;
mod steps;

use std::collections::BTreeMap;

use estafette_spec::evidence::EvidenceRecord;
use estafette_spec::{
    Digest, Evidence, EvidenceEvent, EvidenceId, MessageId, ReasonCode, Timestamp,
};
use rand_core::OsRng;

use crate::gateway::{Gateway, TrackedLetter};
use crate::registry::PersonRecord;
use crate::store::{Change, ReadRecords, RecordsError, StepKey};

/// Where notifications point when the home node gave no inbox address.
pub const DEFAULT_INBOX_URL: &str = "https://mijn.estafette.example/";
/// At most one "your e-mail does not work" letter per person in this time.
pub const CHANNEL_NOTICE_INTERVAL_S: u64 = 30 * 24 * 3600;
/// Most tracked letters looked at in one cycle (the rest wait for the next).
pub const MAX_LETTERS_PER_CYCLE: usize = 100_000;
/// Most people whose letters the monitor handles at once.
pub const MONITOR_CONCURRENCY: usize = 64;

/// What one monitor cycle did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CycleReport {
    pub letters_checked: usize,
    pub opened: usize,
    pub notified: usize,
    pub reminded: usize,
    pub notify_retries: usize,
    pub notify_failed: usize,
    /// Letters put on paper, by reason code.
    pub papered: BTreeMap<&'static str, usize>,
    pub channel_notices: usize,
    /// PDFs written to the spool.
    pub spooled: usize,
    /// Paper waiting because the person has no postal address on record.
    pub no_address: usize,
}

impl CycleReport {
    fn merge(&mut self, other: CycleReport) {
        self.letters_checked += other.letters_checked;
        self.opened += other.opened;
        self.notified += other.notified;
        self.reminded += other.reminded;
        self.notify_retries += other.notify_retries;
        self.notify_failed += other.notify_failed;
        for (reason, n) in other.papered {
            *self.papered.entry(reason).or_default() += n;
        }
        self.channel_notices += other.channel_notices;
        self.spooled += other.spooled;
        self.no_address += other.no_address;
    }
}

/// What a letter's stored evidence says.
#[derive(Default)]
pub(crate) struct Seen {
    consigned_at: Option<Timestamp>,
    opened: bool,
    failed: bool,
    /// The newest record: what new evidence links to.
    last: Option<((Timestamp, u8), Digest)>,
}

/// A followed letter, with what its evidence says when that was read
/// with it.
type Followed = (MessageId, TrackedLetter, Option<Seen>);

impl Gateway {
    fn seen(&self, message: &MessageId) -> Result<Seen, RecordsError> {
        Self::seen_in(&*self.records().read()?, message)
    }

    /// What the evidence in `records` says of `message`.
    fn seen_in(records: &dyn ReadRecords, message: &MessageId) -> Result<Seen, RecordsError> {
        let mut seen = Seen::default();
        for bytes in records.evidence_for(message)? {
            let Ok(v) = Evidence::read_stored(&bytes) else {
                continue;
            };
            let r = &v.record;
            match r.event {
                EvidenceEvent::ContentConsignment => {
                    seen.consigned_at = Some(
                        seen.consigned_at
                            .map_or(r.issued_at, |t| t.min(r.issued_at)),
                    )
                }
                EvidenceEvent::ContentHandover => seen.opened = true,
                EvidenceEvent::RelayFailure | EvidenceEvent::RelayRejection => seen.failed = true,
                _ => {}
            }
            // The newest record; within one second, the later step of a
            // letter's life (a notification follows its consignment).
            let key = (r.issued_at, lifecycle_rank(r.event));
            if seen.last.is_none_or(|(k, _)| key >= k) {
                seen.last = Some((key, v.digest));
            }
        }
        Ok(seen)
    }

    fn step_evidence(
        &self,
        event: EvidenceEvent,
        letter: &TrackedLetter,
        message_id: MessageId,
        reason: Option<ReasonCode>,
        previous: Option<Digest>,
        now: Timestamp,
    ) -> EvidenceRecord {
        EvidenceRecord {
            evidence_id: EvidenceId::random(&mut OsRng),
            event,
            envelope_id: Some(letter.envelope_id),
            message_id: Some(message_id),
            message_digest: Some(letter.message_digest),
            envelope_digest: None,
            issuer: self.node.id.clone(),
            issued_at: now,
            reason,
            actor: None,
            previous,
        }
    }

    /// Does `work` under this instance's claim of `step`, and nothing when
    /// another instance holds it (that one is doing the same work).
    ///
    /// The change `work` gives, if any, commits together with the end of
    /// the claim: one transaction, not two.
    async fn claimed(
        &self,
        step: StepKey,
        work: impl std::future::Future<Output = Result<Option<Change>, RecordsError>>,
    ) -> Result<(), RecordsError> {
        let instance = self.node.instance.clone();
        if !self.records().claim_step(&instance, step).await? {
            return Ok(());
        }
        let done = match work.await {
            Ok(Some(change)) => {
                let releasing = instance.clone();
                let written = self
                    .records()
                    .write(Box::new(move |records| {
                        change(records)?;
                        records.release_step(&releasing, step)
                    }))
                    .await;
                if written.is_ok() {
                    return Ok(());
                }
                written
            }
            other => other.map(|_| ()),
        };
        // No change, or it failed: the claim ends on its own.
        if let Err(e) = self.records().release_step(&instance, step).await {
            tracing::warn!(error = %e, "releasing a step's claim failed; it runs out by itself");
        }
        done
    }

    /// Wakes the monitor before its next cycle is due.
    pub fn wake_monitor(&self) {
        self.monitor_wake.notify_one();
    }

    /// Runs the monitor until the task is stopped: a full cycle every
    /// `cycle_s`, and in between, soon after evidence arrives, the steps of
    /// just the letters it is about (the notification of a consignment).
    pub async fn monitor_loop(self: std::sync::Arc<Self>) {
        let mut notes = self.node.subscribe_evidence();
        let period = std::time::Duration::from_secs(self.policy.cycle_s.max(1));
        let mut next_cycle = tokio::time::Instant::now();
        loop {
            if tokio::time::Instant::now() >= next_cycle {
                if let Err(e) = self.monitor_cycle().await {
                    tracing::error!(error = %e, "monitor cycle failed");
                }
                next_cycle = tokio::time::Instant::now() + period;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(next_cycle) => {}
                _ = self.monitor_wake.notified() => next_cycle = tokio::time::Instant::now(),
                note = notes.recv() => {
                    let mut ids = Vec::new();
                    match note {
                        Ok(n) => ids.extend(n.message_id),
                        // Fell behind: the full cycle catches up.
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            next_cycle = tokio::time::Instant::now();
                            continue;
                        }
                        Err(_) => return,
                    }
                    // Let a burst settle into one batch.
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    while let Ok(n) = notes.try_recv() {
                        ids.extend(n.message_id);
                        if ids.len() >= MAX_LETTERS_PER_CYCLE {
                            break;
                        }
                    }
                    ids.sort_unstable_by_key(|m| *m.as_bytes());
                    ids.dedup();
                    if let Err(e) = self.monitor_letters(&ids).await {
                        tracing::error!(error = %e, "monitor step failed");
                    }
                }
            }
        }
    }

    /// One cycle: every tracked letter's next step, then the print spool.
    pub async fn monitor_cycle(&self) -> Result<CycleReport, RecordsError> {
        let _one_at_a_time = self.monitor_lock.lock().await;
        let now = self.clock.now();
        // The letters whose next step is due, or about which something was
        // learnt: not every letter followed.
        let letters = self
            .records()
            .read()?
            .due_letters(now, MAX_LETTERS_PER_CYCLE)?
            .into_iter()
            .map(|(id, letter)| (id, letter, None))
            .collect();
        let mut report = self.advance_all(letters, true, now).await?;
        self.spool_pending(now, &mut report).await?;
        self.prune_nonces(now).await?;
        if let Err(e) = self.refresh_report(now) {
            tracing::warn!(error = %e, "operator report failed");
        }
        Ok(report)
    }

    /// The report behind `/metrics`: its counters at every cycle, the
    /// dormant inboxes once per [`crate::report::DORMANCY_EVERY_S`].
    fn refresh_report(&self, now: Timestamp) -> Result<(), RecordsError> {
        let months = (self.policy.dormant_after_s / (30 * 24 * 3600)).max(1);
        let mut report = crate::report::counted_report(self.records(), now, months)?;
        // Only the last dormancy figure and its time, not a copy of the report.
        let last = self
            .last_report
            .lock()
            .ok()
            .and_then(|l| l.as_ref().map(|(report, at)| (report.dormant_inboxes, *at)));
        let counted_at = match last {
            Some((dormant, at)) if now.0 < at.0.saturating_add(crate::report::DORMANCY_EVERY_S) => {
                report.dormant_inboxes = dormant;
                at
            }
            _ => {
                report.dormant_inboxes =
                    crate::report::dormant_inboxes(self.records(), now, months)?;
                now
            }
        };
        if let Ok(mut slot) = self.last_report.lock() {
            *slot = Some((report, counted_at));
        }
        Ok(())
    }

    /// The next steps of just these letters (those still tracked).
    pub async fn monitor_letters(&self, ids: &[MessageId]) -> Result<CycleReport, RecordsError> {
        let _one_at_a_time = self.monitor_lock.lock().await;
        let now = self.clock.now();
        let mut found: Vec<Followed> = Vec::new();
        {
            // Each letter with what its evidence says, in one snapshot.
            let records = self.records().read()?;
            for id in ids {
                if let Some(letter) = records.tracked(id)? {
                    let seen = Self::seen_in(&*records, id)?;
                    found.push((*id, letter, Some(seen)));
                }
            }
        }
        self.advance_all(found, false, now).await
    }

    /// Advances many letters: different people at once (e-mails and
    /// commits overlap), each person's letters one after the other (so that
    /// a bounce is seen by their next letter).
    async fn advance_all(
        &self,
        mut letters: Vec<Followed>,
        from_due_index: bool,
        now: Timestamp,
    ) -> Result<CycleReport, RecordsError> {
        use futures_util::stream::{self, StreamExt};
        letters.sort_by_key(|(_, l, _)| l.recipient.to_string());
        let mut groups: Vec<Vec<Followed>> = Vec::new();
        for item in letters {
            match groups.last_mut() {
                Some(g) if g[0].1.recipient == item.1.recipient => g.push(item),
                _ => groups.push(vec![item]),
            }
        }
        let reports: Vec<Result<CycleReport, RecordsError>> = stream::iter(groups)
            .map(|group| async move {
                let mut report = CycleReport::default();
                for (id, letter, seen) in group {
                    report.letters_checked += 1;
                    self.advance(id, letter, seen, from_due_index, now, &mut report)
                        .await?;
                }
                Ok(report)
            })
            .buffer_unordered(MONITOR_CONCURRENCY)
            .collect()
            .await;
        let mut total = CycleReport::default();
        for r in reports {
            total.merge(r?);
        }
        Ok(total)
    }

    /// Forgets assertion nonces whose assertions have expired.
    async fn prune_nonces(&self, now: Timestamp) -> Result<(), RecordsError> {
        // Kept a little past expiry: the desk checks expiry on the
        // federation's clock, which may be behind the monitor's.
        let before = now.max(self.node.core.clock.now()).minus_s(3600);
        let expired = self
            .records()
            .read()?
            .expired_nonces(before, MAX_LETTERS_PER_CYCLE)?;
        if expired.is_empty() {
            return Ok(());
        }
        self.records()
            .write(Box::new(move |records| records.forget_nonces(&expired)))
            .await
    }
}

/// Where an event comes in a letter's life.
fn lifecycle_rank(event: EvidenceEvent) -> u8 {
    match event {
        EvidenceEvent::SubmissionAcceptance | EvidenceEvent::SubmissionRejection => 0,
        EvidenceEvent::RelayAcceptance
        | EvidenceEvent::RelayRejection
        | EvidenceEvent::RelayFailure => 1,
        EvidenceEvent::ContentConsignment => 2,
        EvidenceEvent::ConsignmentNotification | EvidenceEvent::ConsignmentNotificationFailure => 3,
        EvidenceEvent::ContentHandover => 4,
        EvidenceEvent::PaperFallback => 5,
        EvidenceEvent::PaperFailure => 6,
    }
}

/// Whether the person has an active inbox but no way to be notified.
pub fn silent_inbox(person: &PersonRecord) -> bool {
    person.active && !person.channel_working()
}
