//! The escalation monitor: every cycle (and early, when evidence arrives)
//! it looks at each digital letter not yet opened, learns from the stored
//! evidence whether it reached the inbox or was opened, and takes the next
//! step of [`escalation::next_step`]: a notification, a reminder, or a
//! paper copy. Each step is signed evidence. Then it prints what waits in
//! the paper queue into the spool.
//!
//! Crash safety: a step's record (evidence, progress, paper item) is one
//! transaction written after the step; a crash between sending an e-mail
//! and that write sends the e-mail again (at least once), never loses it.

use std::collections::BTreeMap;

use estafette_relay::store::{NewEvidence, Op, StoreError};
use estafette_spec::citizen::{Change, ChangeEntry, ChannelKind, ChannelState};
use estafette_spec::escalation::{self, MAX_NOTIFY_ATTEMPTS, Step};
use estafette_spec::evidence::EvidenceRecord;
use estafette_spec::{
    Digest, Evidence, EvidenceEvent, EvidenceId, MessageId, ReasonCode, SignedMessage, Timestamp,
};
use rand_core::OsRng;
use redb::{ReadableDatabase, ReadableTable};

use crate::gateway::{
    Gateway, PAPER, PAPER_COPIES, PaperItem, PaperKind, TRACKING, TrackedLetter, UNREAD,
};
use crate::mandates;
use crate::notify::NotifyError;
use crate::paper::{ManifestEntry, PaperLetter};
use crate::registry::{self, PersonRecord};
use crate::texts::{self, LetterFacts};

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

fn db_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Database(e.to_string())
}

/// What a letter's stored evidence says.
#[derive(Default)]
struct Seen {
    consigned_at: Option<Timestamp>,
    opened: bool,
    failed: bool,
    /// The newest record: what new evidence links to.
    last: Option<((Timestamp, u8), Digest)>,
}

impl Gateway {
    fn tracked_letters(&self) -> Result<Vec<([u8; 16], TrackedLetter)>, StoreError> {
        let db = self.node.store().database();
        let txn = db.begin_read().map_err(db_err)?;
        let table = match txn.open_table(TRACKING) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(vec![]),
            Err(e) => return Err(db_err(e)),
        };
        let mut out = Vec::new();
        for item in table.iter().map_err(db_err)?.take(MAX_LETTERS_PER_CYCLE) {
            let (k, v) = item.map_err(db_err)?;
            out.push((k.value(), decode_tracked(v.value())?));
        }
        Ok(out)
    }

    fn seen(&self, message: &MessageId) -> Result<Seen, StoreError> {
        let mut seen = Seen::default();
        for bytes in self.node.store().evidence_for(message)? {
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
    ) -> NewEvidence {
        let record = EvidenceRecord {
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
        };
        NewEvidence {
            evidence_id: record.evidence_id,
            message_id: Some(message_id),
            bytes: self.node.sign_evidence(&record),
        }
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
    pub async fn monitor_cycle(&self) -> Result<CycleReport, StoreError> {
        let _one_at_a_time = self.monitor_lock.lock().await;
        let now = self.clock.now();
        let letters = self
            .tracked_letters()?
            .into_iter()
            .map(|(id, l)| (MessageId::from_bytes(id), l))
            .collect();
        let mut report = self.advance_all(letters, now).await?;
        self.spool_pending(now, &mut report).await?;
        self.prune_nonces(now).await?;
        let months = (self.policy.dormant_after_s / (30 * 24 * 3600)).max(1);
        match self.operator_report(months) {
            Ok(r) => {
                if let Ok(mut last) = self.last_report.lock() {
                    *last = Some(r);
                }
            }
            Err(e) => tracing::warn!(error = %e, "operator report failed"),
        }
        Ok(report)
    }

    /// The next steps of just these letters (those still tracked).
    pub async fn monitor_letters(&self, ids: &[MessageId]) -> Result<CycleReport, StoreError> {
        let _one_at_a_time = self.monitor_lock.lock().await;
        let now = self.clock.now();
        let found: Vec<(MessageId, TrackedLetter)> = {
            let db = self.node.store().database();
            let txn = db.begin_read().map_err(db_err)?;
            let table = match txn.open_table(TRACKING) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => {
                    return Ok(CycleReport::default());
                }
                Err(e) => return Err(db_err(e)),
            };
            let mut found = Vec::new();
            for id in ids {
                if let Some(v) = table.get(id.as_bytes()).map_err(db_err)? {
                    found.push((*id, decode_tracked(v.value())?));
                }
            }
            found
        };
        self.advance_all(found, now).await
    }

    /// Advances many letters: different people at once (e-mails and
    /// commits overlap), each person's letters one after the other (so that
    /// a bounce is seen by their next letter).
    async fn advance_all(
        &self,
        mut letters: Vec<(MessageId, TrackedLetter)>,
        now: Timestamp,
    ) -> Result<CycleReport, StoreError> {
        use futures_util::stream::{self, StreamExt};
        letters.sort_by_key(|(_, l)| l.recipient.to_string());
        let mut groups: Vec<Vec<(MessageId, TrackedLetter)>> = Vec::new();
        for item in letters {
            match groups.last_mut() {
                Some(g) if g[0].1.recipient == item.1.recipient => g.push(item),
                _ => groups.push(vec![item]),
            }
        }
        let reports: Vec<Result<CycleReport, StoreError>> = stream::iter(groups)
            .map(|group| async move {
                let mut report = CycleReport::default();
                for (id, letter) in group {
                    report.letters_checked += 1;
                    self.advance(id, letter, now, &mut report).await?;
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
    async fn prune_nonces(&self, now: Timestamp) -> Result<(), StoreError> {
        let expired: Vec<Vec<u8>> = {
            let db = self.node.store().database();
            let txn = db.begin_read().map_err(db_err)?;
            let table = match txn.open_table(registry::NONCES) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
                Err(e) => return Err(db_err(e)),
            };
            let mut out = Vec::new();
            for item in table.iter().map_err(db_err)?.take(MAX_LETTERS_PER_CYCLE) {
                let (k, v) = item.map_err(db_err)?;
                let (_, expires_at): (Digest, Timestamp) =
                    estafette_spec::cbor::from_slice(v.value(), 4096)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                // Kept a little past expiry: the desk checks expiry on the wall clock.
                if expires_at.plus_s(3600) < now.max(estafette_pki::now()) {
                    out.push(k.value().to_vec());
                }
            }
            out
        };
        if expired.is_empty() {
            return Ok(());
        }
        let op = Op::Apply(Box::new(move |_tables, txn| {
            let mut table = txn.open_table(registry::NONCES).map_err(db_err)?;
            for nonce in &expired {
                table.remove(nonce.as_slice()).map_err(db_err)?;
            }
            Ok(())
        }));
        self.node.store().write(op).await?;
        Ok(())
    }

    /// Takes the steps due for one letter and records them in one transaction.
    async fn advance(
        &self,
        message_id: MessageId,
        mut letter: TrackedLetter,
        now: Timestamp,
        report: &mut CycleReport,
    ) -> Result<(), StoreError> {
        let seen = self.seen(&message_id)?;
        let before = letter.progress;
        // The gateway's clock, when it first saw the consignment: escalation
        // times stay in one clock (at most a cycle late, never early).
        if letter.progress.consigned_at.is_none() && seen.consigned_at.is_some() {
            letter.progress.consigned_at = Some(now);
        }
        letter.progress.opened |= seen.opened;
        letter.progress.failed |= seen.failed;
        let key = letter.recipient.to_string();
        if letter.progress.opened {
            report.opened += 1;
            let op = Op::Apply(Box::new(move |_tables, txn| forget(txn, &key, &message_id)));
            self.node.store().write(op).await?;
            return Ok(());
        }
        let db = self.node.store().database();
        let Some((holder, mut person)) = registry::lookup_entry(db, &letter.recipient)? else {
            // Registry entry gone: nothing to notify; paper has no address either.
            return Ok(());
        };
        // The holder, or the representative whose mandate takes the correspondence.
        let trust = self.node.trust();
        let mut to =
            mandates::correspondent(db, &holder, &person, Some(&letter.sender), now, &trust)?;
        let mut previous = seen.last.map(|(_, d)| d);
        let mut evidence: Vec<NewEvidence> = Vec::new();
        // A paper copy to make: (reason, consigned at); the letter itself is
        // taken from PAPER_COPIES in the same transaction.
        let mut paper: Option<(ReasonCode, Option<Timestamp>)> = None;
        let mut person_changes: Vec<ChangeEntry> = Vec::new();
        let mut channel_notice: Option<PaperItem> = None;
        let sender_name = trust
            .agency(&letter.sender)
            .map(|a| a.name.clone())
            .unwrap_or_else(|| letter.sender.to_string());
        // A few steps can fall due at once (a bounce, then paper).
        for _ in 0..4 {
            let step = escalation::next_step(
                &letter.progress,
                person.channel_working(),
                now,
                &self.policy,
            );
            let Some(step) = step else { break };
            match step {
                Step::Notify | Step::Remind => {
                    let reminder = step == Step::Remind;
                    let Some(address) = to.email.clone() else {
                        break;
                    };
                    let facts = LetterFacts {
                        sender_name: sender_name.clone(),
                        nature: letter.nature,
                        legal_effect: letter.legal_effect,
                        expected_action: letter.expected_action.clone(),
                        deadline: letter.progress.deadline,
                        consigned_at: letter.progress.consigned_at.unwrap_or(now),
                    };
                    let url = to.inbox_url.as_deref().unwrap_or(DEFAULT_INBOX_URL);
                    let mut mail = texts::for_language(&to.language)
                        .letter_notification(&facts, url, reminder);
                    if let Some(client) = &to.on_behalf_of {
                        // A representative: whose letter it is (a name, never a BSN).
                        mail.subject = format!("{} ({client})", mail.subject);
                    }
                    match self.notifier.send(&address, &mail).await {
                        Ok(()) => {
                            if reminder {
                                letter.progress.reminded = true;
                                report.reminded += 1;
                            } else {
                                letter.progress.notified = true;
                                report.notified += 1;
                            }
                            let e = self.step_evidence(
                                EvidenceEvent::ConsignmentNotification,
                                &letter,
                                message_id,
                                None,
                                previous,
                                now,
                            );
                            previous = Some(Digest::of(&e.bytes));
                            evidence.push(e);
                        }
                        Err(e @ NotifyError::Temporary(_)) => {
                            tracing::info!(message = %message_id, smtp = e.log_code(), "notification will be retried");
                            report.notify_retries += 1;
                            letter.progress.notify_attempts += 1;
                            if reminder {
                                // The paper copy follows anyway; try the reminder next cycle.
                                break;
                            }
                            if letter.progress.notify_attempts >= MAX_NOTIFY_ATTEMPTS {
                                letter.progress.notify_failed = true;
                                report.notify_failed += 1;
                                let e = self.step_evidence(
                                    EvidenceEvent::ConsignmentNotificationFailure,
                                    &letter,
                                    message_id,
                                    Some(ReasonCode::NoNotificationChannel),
                                    previous,
                                    now,
                                );
                                previous = Some(Digest::of(&e.bytes));
                                evidence.push(e);
                                continue;
                            }
                            letter.progress.next_notify_at = now.plus_s(
                                self.policy
                                    .notify_retry_delay_s(letter.progress.notify_attempts - 1),
                            );
                            break;
                        }
                        Err(e @ NotifyError::Permanent(_)) => {
                            tracing::info!(message = %message_id, smtp = e.log_code(), "notification bounced; the address is marked failed");
                            letter.progress.notify_failed = true;
                            report.notify_failed += 1;
                            let e = self.step_evidence(
                                EvidenceEvent::ConsignmentNotificationFailure,
                                &letter,
                                message_id,
                                Some(ReasonCode::NotificationBounced),
                                previous,
                                now,
                            );
                            previous = Some(Digest::of(&e.bytes));
                            evidence.push(e);
                            for channel in person.contact_channels.iter_mut() {
                                if channel.kind == ChannelKind::Email && channel.address == address
                                {
                                    channel.state = ChannelState::Failed;
                                }
                            }
                            to.email = None;
                            person_changes.push(ChangeEntry {
                                at: now,
                                change: Change::EmailFailed { address },
                                assertion_digest: None,
                            });
                            let notice_due = person
                                .channel_notice_at
                                .is_none_or(|t| t.plus_s(CHANNEL_NOTICE_INTERVAL_S) <= now);
                            if person.active && notice_due {
                                person.channel_notice_at = Some(now);
                                report.channel_notices += 1;
                                channel_notice = Some(PaperItem {
                                    recipient: letter.recipient.clone(),
                                    kind: PaperKind::ChannelNotice,
                                    reason: Some(ReasonCode::NotificationBounced),
                                    received_at: now,
                                    consigned_at: None,
                                    message: vec![],
                                    spooled_at: None,
                                    failure: None,
                                });
                            }
                        }
                    }
                }
                Step::Paper(reason) => {
                    letter.progress.on_paper = true;
                    *report.papered.entry(reason.code()).or_default() += 1;
                    let e = self.step_evidence(
                        EvidenceEvent::PaperFallback,
                        &letter,
                        message_id,
                        Some(reason),
                        previous,
                        now,
                    );
                    evidence.push(e);
                    paper = Some((reason, letter.progress.consigned_at));
                    break;
                }
            }
        }
        if letter.progress == before && evidence.is_empty() {
            return Ok(());
        }
        // Changes to the person go to their one entry (a linked identity points there).
        let recipient = holder.clone();
        let person_changed = !person_changes.is_empty();
        let op = Op::Apply(Box::new(move |tables, txn| {
            let paper = match paper {
                Some((reason, consigned_at)) => {
                    let message = txn
                        .open_table(PAPER_COPIES)
                        .map_err(db_err)?
                        .get(message_id.as_bytes())
                        .map_err(db_err)?
                        .map(|copy| copy.value().to_vec())
                        .ok_or_else(|| {
                            StoreError::Corrupt(format!("no paper copy of message {message_id}"))
                        })?;
                    Some(PaperItem::letter(
                        letter.recipient.clone(),
                        reason,
                        now,
                        consigned_at,
                        message,
                    ))
                }
                None => None,
            };
            if letter.progress.on_paper {
                // Done: nothing more will happen to it.
                forget(txn, &key, &message_id)?;
            } else {
                txn.open_table(TRACKING)
                    .map_err(db_err)?
                    .insert(
                        message_id.as_bytes(),
                        estafette_spec::cbor::to_vec(&letter).as_slice(),
                    )
                    .map_err(db_err)?;
            }
            let mut queue = txn.open_table(PAPER).map_err(db_err)?;
            if let Some(item) = paper {
                queue
                    .insert(
                        message_id.as_bytes(),
                        estafette_spec::cbor::to_vec(&item).as_slice(),
                    )
                    .map_err(db_err)?;
            }
            if let Some(item) = channel_notice {
                queue
                    .insert(
                        EvidenceId::random(&mut OsRng).as_bytes(),
                        estafette_spec::cbor::to_vec(&item).as_slice(),
                    )
                    .map_err(db_err)?;
            }
            drop(queue);
            for e in &evidence {
                tables.archive(e)?;
            }
            if person_changed {
                // Only the channel state and notice time change here; take
                // the stored record so that a concurrent consent change stays.
                if let Some(mut stored) = registry::get_person(txn, &recipient)? {
                    stored.contact_channels = person.contact_channels;
                    stored.channel_notice_at = person.channel_notice_at;
                    registry::put_person(txn, &recipient, &stored)?;
                }
                for change in &person_changes {
                    registry::record_change(txn, &recipient, change)?;
                }
            }
            Ok(())
        }));
        self.node.store().write(op).await?;
        Ok(())
    }

    /// Renders every paper item not yet spooled and marks it spooled.
    async fn spool_pending(
        &self,
        now: Timestamp,
        report: &mut CycleReport,
    ) -> Result<(), StoreError> {
        let pending: Vec<([u8; 16], PaperItem)> = self
            .paper_queue_raw()?
            .into_iter()
            .filter(|(_, item)| item.spooled_at.is_none() && item.failure.is_none())
            .collect();
        let trust = self.node.trust();
        for (id, mut item) in pending {
            let db = self.node.store().database();
            let Some((holder, person)) = registry::lookup_entry(db, &item.recipient)? else {
                report.no_address += 1;
                self.cannot_print(id, item, now).await?;
                continue;
            };
            let letter_in = match item.kind {
                PaperKind::Letter => match SignedMessage::read_stored(&item.message) {
                    Ok(m) => Some(m.letter),
                    Err(_) => {
                        tracing::error!("a paper item holds no readable letter; skipped");
                        continue;
                    }
                },
                _ => None,
            };
            // The holder's address, or the office of the representative
            // whose mandate takes the correspondence for this sender.
            let to = mandates::correspondent(
                db,
                &holder,
                &person,
                letter_in.as_ref().map(|l| &l.sender),
                now,
                &trust,
            )?;
            let Some(address) = to.address.clone() else {
                report.no_address += 1;
                self.cannot_print(id, item, now).await?;
                continue;
            };
            let texts = texts::for_language(&to.language);
            let addressee = to.addressee.clone();
            let on_behalf_of = to.on_behalf_of.clone();
            let (letter, message_id) = match (item.kind, letter_in) {
                (PaperKind::Letter, Some(l)) => {
                    let sender_name = trust
                        .agency(&l.sender)
                        .map(|a| a.name.clone())
                        .unwrap_or_else(|| l.sender.to_string());
                    let explanation = item.reason.map(|reason| {
                        texts.paper_explanation(reason, &sender_name, item.consigned_at)
                    });
                    (
                        PaperLetter {
                            addressee,
                            address: address.clone(),
                            sender_name,
                            date: l.created_at,
                            reference: Some(l.sender_reference.clone()),
                            subject: l.subject.clone(),
                            body: l.body.clone(),
                            attachments: l
                                .attachments
                                .iter()
                                .map(|a| estafette_spec::text::display_file_name(&a.name))
                                .collect(),
                            explanation,
                            on_behalf_of: on_behalf_of.clone(),
                        },
                        Some(l.message_id),
                    )
                }
                _ => {
                    let (subject, body) = if item.kind == PaperKind::ConfirmChoice {
                        (texts.confirm_subject, texts.confirm_choice_body())
                    } else {
                        (texts.channel_subject, texts.channel_notice_body())
                    };
                    (
                        PaperLetter {
                            addressee,
                            address: address.clone(),
                            sender_name: self.node.id.to_string(),
                            date: now,
                            reference: None,
                            subject: subject.into(),
                            body: body.into(),
                            attachments: vec![],
                            explanation: None,
                            on_behalf_of: on_behalf_of.clone(),
                        },
                        None,
                    )
                }
            };
            let (pdf, pages) = crate::paper::render(&letter, texts);
            let name = format!("{}-{}.pdf", item.kind.name(), hex(&id));
            let entry = ManifestEntry {
                file: name.clone(),
                kind: item.kind.name().into(),
                message_id: message_id.map(|m| m.to_string()),
                reason: item.reason.map(|r| r.code().to_owned()),
                country: address.country.as_str().to_owned(),
                pages,
                spooled_at: now,
            };
            let spool = self.spool.clone();
            let written = tokio::task::spawn_blocking(move || spool.put(&name, &pdf, &entry))
                .await
                .map_err(|e| StoreError::Database(e.to_string()))?;
            if let Err(e) = written {
                tracing::error!(error = %e, "writing to the print spool failed; will retry");
                continue;
            }
            item.spooled_at = Some(now);
            let op = Op::Apply(Box::new(move |_tables, txn| {
                txn.open_table(PAPER)
                    .map_err(db_err)?
                    .insert(&id, estafette_spec::cbor::to_vec(&item).as_slice())
                    .map_err(db_err)?;
                Ok(())
            }));
            self.node.store().write(op).await?;
            report.spooled += 1;
        }
        Ok(())
    }
}

impl Gateway {
    /// A paper item with nowhere to go: marked so (it is not tried again)
    /// and, for an agency's letter, PaperFailure evidence the agency sees,
    /// linked to the newest evidence of the letter.
    async fn cannot_print(
        &self,
        id: [u8; 16],
        mut item: PaperItem,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let reason = ReasonCode::NoPostalAddress;
        item.failure = Some(reason);
        let evidence = match item.kind {
            PaperKind::Letter => {
                let message_id = MessageId::from_bytes(id);
                let trust = self.node.trust();
                let chain =
                    Evidence::order_chain(self.node.store().evidence_for(&message_id)?, &trust);
                let previous = chain.last().map(|b| Digest::of(b));
                previous.map(|previous| {
                    self.paper_failure_evidence(
                        message_id,
                        Digest::of(&item.message),
                        reason,
                        previous,
                        now,
                    )
                })
            }
            _ => None,
        };
        tracing::warn!(
            kind = item.kind.name(),
            message = ?evidence.as_ref().and(Some(MessageId::from_bytes(id))),
            reason = reason.code(),
            "a paper letter cannot be printed: no postal address is known"
        );
        let op = Op::Apply(Box::new(move |tables, txn| {
            txn.open_table(PAPER)
                .map_err(db_err)?
                .insert(&id, estafette_spec::cbor::to_vec(&item).as_slice())
                .map_err(db_err)?;
            if let Some(evidence) = &evidence {
                tables.archive(evidence)?;
            }
            Ok(())
        }));
        self.node.store().write(op).await?;
        Ok(())
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

fn decode_tracked(bytes: &[u8]) -> Result<TrackedLetter, StoreError> {
    estafette_spec::cbor::from_slice(bytes, estafette_spec::limits::MAX_MESSAGE_BYTES + 64 * 1024)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A letter leaves the monitor's books (opened, or on paper).
fn forget(
    txn: &redb::WriteTransaction,
    recipient: &str,
    message_id: &MessageId,
) -> Result<(), StoreError> {
    txn.open_table(TRACKING)
        .map_err(db_err)?
        .remove(message_id.as_bytes())
        .map_err(db_err)?;
    txn.open_table(UNREAD)
        .map_err(db_err)?
        .remove((recipient, *message_id.as_bytes()))
        .map_err(db_err)?;
    txn.open_table(PAPER_COPIES)
        .map_err(db_err)?
        .remove(message_id.as_bytes())
        .map_err(db_err)?;
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether the person has an active inbox but no way to be notified.
pub fn silent_inbox(person: &PersonRecord) -> bool {
    person.active && !person.channel_working()
}
