//! One letter's next steps: learn from its evidence whether it reached the
//! inbox or was opened, then notify, remind, or put it on paper as
//! [`escalation::next_step`] says, and record what was done (evidence,
//! progress, paper, the person's failed address) in one transaction.
//!
//! Crash safety: the record is written after the step; a crash between
//! sending an e-mail and that write sends the e-mail again (at least once),
//! never loses it.

use estafette_relay::store::NewEvidence;
use estafette_spec::citizen::{Change, ChangeEntry, ChannelKind, ChannelState};
use estafette_spec::escalation::{self, LetterProgress, MAX_NOTIFY_ATTEMPTS, Step};
use estafette_spec::evidence::EvidenceRecord;
use estafette_spec::{
    Digest, Evidence, EvidenceEvent, MessageId, ReasonCode, Recipient, Timestamp,
};

use super::{CHANNEL_NOTICE_INTERVAL_S, CycleReport, DEFAULT_INBOX_URL};
use crate::gateway::{Gateway, PaperItem, PaperKind, TrackedLetter};
use crate::mandates::{self, Correspondent};
use crate::notify::NotifyError;
use crate::registry::PersonRecord;
use crate::store::{self, PaperId, ReadRecords, RecordsError, StepKey, WriteRecords};
use crate::texts::{self, LetterFacts};

/// Most steps taken for one letter in one pass (a bounce, then paper).
const MAX_STEPS_AT_ONCE: usize = 4;

/// What the steps of one pass did, to record together.
struct Steps {
    message_id: MessageId,
    letter: TrackedLetter,
    /// The person's entry and the identifier it is kept under.
    holder: Recipient,
    person: PersonRecord,
    /// Where notifications and paper go (the holder or a representative).
    to: Correspondent,
    sender_name: String,
    /// The newest evidence of the letter: what new evidence links to.
    previous: Option<Digest>,
    /// Records of the steps taken, logged together when the steps are done.
    records: Vec<EvidenceRecord>,
    evidence: Vec<NewEvidence>,
    /// A paper copy to make: (reason, consigned at); the letter itself is
    /// the paper copy kept at submission, taken in the same transaction.
    paper: Option<(ReasonCode, Option<Timestamp>)>,
    person_changes: Vec<ChangeEntry>,
    channel_notice: Option<PaperItem>,
    /// When the letter's next step is due after these.
    due: Option<Timestamp>,
}

/// A letter's progress after what its evidence says.
enum Progressed {
    Opened(store::Change),
    Gone,
    Steps(Box<Steps>, LetterProgress),
}

/// Whether to take another step now.
enum Then {
    Continue,
    Stop,
}

impl Gateway {
    /// Takes the steps due for one letter, if any are, under this
    /// instance's claim of the letter: with several instances, each step is
    /// taken once. `letter` is what the cycle read; under the claim the
    /// letter is read again, so that a step another instance took in the
    /// meantime is seen. A letter `from_due_index` is looked at under the
    /// claim even when nothing seems due, so that its place in the index
    /// is made right.
    pub(super) async fn advance(
        &self,
        message_id: MessageId,
        letter: TrackedLetter,
        seen: Option<super::Seen>,
        from_due_index: bool,
        now: Timestamp,
        report: &mut CycleReport,
    ) -> Result<(), RecordsError> {
        if !from_due_index {
            let seen = match seen {
                Some(seen) => seen,
                None => self.seen(&message_id)?,
            };
            if !self.has_work(&letter, &seen, now) {
                return Ok(());
            }
        }
        self.claimed(
            StepKey::Letter(message_id),
            self.advance_claimed(message_id, now, report),
        )
        .await
    }

    /// Whether anything would happen to `letter` now (read before a claim).
    fn has_work(&self, letter: &TrackedLetter, seen: &super::Seen, now: Timestamp) -> bool {
        let mut progress = letter.progress;
        if progress.consigned_at.is_none() && seen.consigned_at.is_some() {
            return true;
        }
        if (seen.opened && !progress.opened) || (seen.failed && !progress.failed) {
            return true;
        }
        progress.opened |= seen.opened;
        [true, false]
            .into_iter()
            .any(|working| escalation::next_step(&progress, working, now, &self.policy).is_some())
    }

    /// [`Self::advance`] under the claim: gives the change that records
    /// them, to commit in one transaction with the end of the claim.
    async fn advance_claimed(
        &self,
        message_id: MessageId,
        now: Timestamp,
        report: &mut CycleReport,
    ) -> Result<Option<store::Change>, RecordsError> {
        // The letter, its evidence, its person and correspondent: one snapshot.
        let (mut steps, before) = {
            let records = self.records().read()?;
            let Some(letter) = records.tracked(&message_id)? else {
                // Opened or on paper meanwhile.
                return Ok(None);
            };
            let seen = Self::seen_in(&*records, &message_id)?;
            let stored = letter.clone();
            match self.progressed(message_id, letter, &seen, now, report, &*records)? {
                Progressed::Opened(change) => return Ok(Some(change)),
                // Registry entry gone: nothing to notify; paper has no
                // address either. Nothing is due until the entry returns.
                Progressed::Gone => {
                    return Ok(Some(Box::new(move |records| {
                        records.update_tracked(&message_id, &stored, None)
                    })));
                }
                Progressed::Steps(steps, before) => (*steps, before),
            }
        };
        for _ in 0..MAX_STEPS_AT_ONCE {
            let step = escalation::next_step(
                &steps.letter.progress,
                steps.person.channel_working(),
                now,
                &self.policy,
            );
            let then = match step {
                None => Then::Stop,
                Some(Step::Notify) => self.notify(&mut steps, false, now, report).await,
                Some(Step::Remind) => self.notify(&mut steps, true, now, report).await,
                Some(Step::Paper(reason)) => self.to_paper(&mut steps, reason, now, report),
            };
            if let Then::Stop = then {
                break;
            }
        }
        steps.due = escalation::due_at(
            &steps.letter.progress,
            steps.person.channel_working(),
            &self.policy,
        );
        steps.evidence = self.node.log_evidence(&steps.records).await?;
        if steps.letter.progress == before && steps.evidence.is_empty() {
            // Nothing done: the letter waits in the due index until its
            // next step (it may have been there as due now).
            let (letter, due) = (steps.letter, steps.due);
            return Ok(Some(Box::new(move |records| {
                records.update_tracked(&message_id, &letter, due)
            })));
        }
        Ok(Some(Box::new(move |records| {
            record_steps(records, steps, now)
        })))
    }

    /// What the evidence `seen` changes in `letter`'s progress: it was
    /// opened (the change that stops following it), or the steps to take
    /// from here with the progress before them; `Gone` when its registry
    /// entry is.
    fn progressed(
        &self,
        message_id: MessageId,
        mut letter: TrackedLetter,
        seen: &super::Seen,
        now: Timestamp,
        report: &mut CycleReport,
        records: &dyn ReadRecords,
    ) -> Result<Progressed, RecordsError> {
        let before = letter.progress;
        // The gateway's clock, when it first saw the consignment: escalation
        // times stay in one clock (at most a cycle late, never early).
        if letter.progress.consigned_at.is_none() && seen.consigned_at.is_some() {
            letter.progress.consigned_at = Some(now);
        }
        letter.progress.opened |= seen.opened;
        letter.progress.failed |= seen.failed;
        if letter.progress.opened {
            report.opened += 1;
            let recipient = letter.recipient;
            return Ok(Progressed::Opened(Box::new(move |records| {
                records.forget(&recipient, &message_id)
            })));
        }
        let previous = seen.last.map(|(_, d)| d);
        Ok(
            match self.steps_for(records, message_id, letter, previous, now)? {
                Some(steps) => Progressed::Steps(Box::new(steps), before),
                None => Progressed::Gone,
            },
        )
    }

    /// The letter's person and correspondent; `None` when its registry entry is gone.
    fn steps_for(
        &self,
        records: &dyn ReadRecords,
        message_id: MessageId,
        letter: TrackedLetter,
        previous: Option<Digest>,
        now: Timestamp,
    ) -> Result<Option<Steps>, RecordsError> {
        let Some((holder, person)) = records.person_entry(&letter.recipient)? else {
            return Ok(None);
        };
        // The holder, or the representative whose mandate takes the correspondence.
        let trust = self.node.trust();
        let to =
            mandates::correspondent(records, &holder, &person, Some(&letter.sender), now, &trust)?;
        let sender_name = trust
            .agency(&letter.sender)
            .map(|a| a.name.clone())
            .unwrap_or_else(|| letter.sender.to_string());
        Ok(Some(Steps {
            message_id,
            letter,
            holder,
            person,
            to,
            sender_name,
            previous,
            records: vec![],
            evidence: vec![],
            paper: None,
            person_changes: vec![],
            channel_notice: None,
            due: None,
        }))
    }

    /// Records a step and links the next one to it; the records are
    /// logged when the letter's steps are done.
    fn sign_step(
        &self,
        steps: &mut Steps,
        event: EvidenceEvent,
        reason: Option<ReasonCode>,
        now: Timestamp,
    ) {
        let record = self.step_evidence(
            event,
            &steps.letter,
            steps.message_id,
            reason,
            steps.previous,
            now,
        );
        steps.previous = Evidence::record_bytes(&record)
            .ok()
            .map(|bytes| Digest::of(&bytes));
        steps.records.push(record);
    }

    /// A notification (or the reminder) by e-mail.
    async fn notify(
        &self,
        steps: &mut Steps,
        reminder: bool,
        now: Timestamp,
        report: &mut CycleReport,
    ) -> Then {
        let Some(address) = steps.to.email.clone() else {
            return Then::Stop;
        };
        let progress = &steps.letter.progress;
        let facts = LetterFacts {
            sender_name: steps.sender_name.clone(),
            nature: steps.letter.nature,
            legal_effect: steps.letter.legal_effect,
            expected_action: steps.letter.expected_action.clone(),
            deadline: progress.deadline,
            consigned_at: progress.consigned_at.unwrap_or(now),
        };
        let url = steps.to.inbox_url.as_deref().unwrap_or(DEFAULT_INBOX_URL);
        let mut mail =
            texts::for_language(&steps.to.language).letter_notification(&facts, url, reminder);
        if let Some(client) = &steps.to.on_behalf_of {
            // A representative: whose letter it is (a name, never a BSN).
            mail.subject = format!("{} ({client})", mail.subject);
        }
        match self.notifier.send(&address, &mail).await {
            Ok(()) => {
                if reminder {
                    steps.letter.progress.reminded = true;
                    report.reminded += 1;
                } else {
                    steps.letter.progress.notified = true;
                    report.notified += 1;
                }
                self.sign_step(steps, EvidenceEvent::ConsignmentNotification, None, now);
                Then::Continue
            }
            Err(e @ NotifyError::Temporary(_)) => {
                tracing::info!(message = %steps.message_id, smtp = e.log_code(), "notification will be retried");
                self.notify_later(steps, reminder, now, report)
            }
            Err(e @ NotifyError::Permanent(_)) => {
                tracing::info!(message = %steps.message_id, smtp = e.log_code(), "notification bounced; the address is marked failed");
                self.bounced(steps, address, now, report);
                Then::Continue
            }
        }
    }

    /// A temporary failure: try again after the policy's delay, or give up
    /// on e-mail after [`MAX_NOTIFY_ATTEMPTS`].
    fn notify_later(
        &self,
        steps: &mut Steps,
        reminder: bool,
        now: Timestamp,
        report: &mut CycleReport,
    ) -> Then {
        report.notify_retries += 1;
        let progress = &mut steps.letter.progress;
        progress.notify_attempts += 1;
        if reminder {
            // The paper copy follows anyway; try the reminder next cycle.
            return Then::Stop;
        }
        if progress.notify_attempts >= MAX_NOTIFY_ATTEMPTS {
            progress.notify_failed = true;
            report.notify_failed += 1;
            self.sign_step(
                steps,
                EvidenceEvent::ConsignmentNotificationFailure,
                Some(ReasonCode::NoNotificationChannel),
                now,
            );
            return Then::Continue;
        }
        progress.next_notify_at = now.plus_s(
            self.policy
                .notify_retry_delay_s(progress.notify_attempts - 1),
        );
        Then::Stop
    }

    /// A permanent failure: the address is marked failed and, at most once
    /// per [`CHANNEL_NOTICE_INTERVAL_S`], a letter on paper says so.
    fn bounced(
        &self,
        steps: &mut Steps,
        address: String,
        now: Timestamp,
        report: &mut CycleReport,
    ) {
        steps.letter.progress.notify_failed = true;
        report.notify_failed += 1;
        self.sign_step(
            steps,
            EvidenceEvent::ConsignmentNotificationFailure,
            Some(ReasonCode::NotificationBounced),
            now,
        );
        let person = &mut steps.person;
        for channel in person.contact_channels.iter_mut() {
            if channel.kind == ChannelKind::Email && channel.address == address {
                channel.state = ChannelState::Failed;
            }
        }
        steps.to.email = None;
        steps.person_changes.push(ChangeEntry {
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
            steps.channel_notice = Some(PaperItem {
                recipient: steps.letter.recipient.clone(),
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

    /// The letter goes on paper: the last step.
    fn to_paper(
        &self,
        steps: &mut Steps,
        reason: ReasonCode,
        now: Timestamp,
        report: &mut CycleReport,
    ) -> Then {
        steps.letter.progress.on_paper = true;
        *report.papered.entry(reason.code()).or_default() += 1;
        self.sign_step(steps, EvidenceEvent::PaperFallback, Some(reason), now);
        steps.paper = Some((reason, steps.letter.progress.consigned_at));
        Then::Stop
    }
}

/// What one pass did, in one transaction.
fn record_steps(
    records: &mut dyn WriteRecords,
    steps: Steps,
    now: Timestamp,
) -> Result<(), RecordsError> {
    let Steps {
        message_id,
        letter,
        holder,
        person,
        ..
    } = &steps;
    if let Some((reason, consigned_at)) = steps.paper {
        let message = records
            .paper_copy(message_id)?
            .ok_or_else(|| RecordsError::Corrupt {
                what: "paper copy",
                detail: format!("no paper copy of message {message_id}"),
            })?;
        let item = PaperItem::letter(letter.recipient.clone(), reason, now, consigned_at, message);
        records.put_paper(PaperId::of_message(message_id), &item)?;
    }
    if letter.progress.on_paper {
        // Done: nothing more will happen to it.
        records.forget(&letter.recipient, message_id)?;
    } else {
        records.update_tracked(message_id, letter, steps.due)?;
    }
    if let Some(item) = &steps.channel_notice {
        records.put_paper(PaperId::random(), item)?;
    }
    for e in &steps.evidence {
        records.archive_evidence(e)?;
    }
    if !steps.person_changes.is_empty() {
        // Changes go to the person's one entry (a linked identity points
        // there). Only the channel state and notice time change here; take
        // the stored record so that a concurrent consent change stays.
        if let Some(mut stored) = records.person(holder)? {
            stored.contact_channels = person.contact_channels.clone();
            stored.channel_notice_at = person.channel_notice_at;
            records.put_person(holder, &stored)?;
        }
        for change in &steps.person_changes {
            records.record_change(holder, change)?;
        }
    }
    Ok(())
}
