//! A submission, step by step: check the size, the seal and the sender;
//! answer a repeat from what was recorded; choose digital or paper from the
//! registry; sign the SubmissionAcceptance; then either seal and queue the
//! envelope (digital) or put the letter in the paper queue, each with its
//! records in one transaction of the gateway's store. The acceptance is
//! answered only after that transaction is committed.

use estafette_relay::origin::QueueError;
use estafette_relay::store::{NewEvidence, Outcome};
use estafette_spec::Evidence;
use estafette_spec::escalation::{self, Activity, LetterProgress};
use estafette_spec::evidence::EvidenceRecord;
use estafette_spec::message::VerifiedMessage;
use estafette_spec::{
    Digest, Envelope, EnvelopeId, EvidenceEvent, EvidenceId, MessageError, MessageId, Oin,
    ReasonCode, RoutingHeader, SignedMessage, Timestamp, TrustError, VerifyError,
};
use rand_core::OsRng;
use sha2::{Digest as _, Sha256};

use crate::gateway::{
    Gateway, PaperItem, PaperKind, SubmissionRecord, SubmitError, Submitted, TrackedLetter,
};
use crate::registry::{self, Channel, InboxLocation, PersonRecord};
use crate::store::{MAX_UNREAD_COUNTED, PaperId, RecordsError, SealedEnvelope, WriteRecords};

/// A submission the gateway accepts, before it is recorded.
struct Accepted<'a> {
    caller: &'a Oin,
    /// The SignedMessage bytes.
    bytes: &'a [u8],
    verified: VerifiedMessage,
    now: Timestamp,
    envelope_id: EnvelopeId,
    /// The SubmissionAcceptance's record; logged with whatever evidence
    /// the submission makes besides (one checkpoint).
    acceptance_record: EvidenceRecord,
    /// SHA-256 of its bytes: what the next evidence links to.
    acceptance_digest: Digest,
    /// The logged SubmissionAcceptance (empty until [`Gateway::log_accepted`]).
    acceptance: NewEvidence,
    record: SubmissionRecord,
}

impl Accepted<'_> {
    fn message_id(&self) -> MessageId {
        self.verified.letter.message_id
    }

    fn acceptance_digest(&self) -> Digest {
        self.acceptance_digest
    }
}

/// The paper a digital letter brings with it for a dormant account (its
/// evidence a record until logged).
#[derive(Default)]
struct DormantPaper<E = NewEvidence> {
    /// A paper copy of the letter, with its PaperFallback evidence.
    copy: Option<(PaperItem, E)>,
    /// A letter asking the person to confirm their choice.
    confirm: Option<PaperItem>,
}

impl Gateway {
    /// Accepts a SignedMessage from the agency `caller` (read from its TLS certificate).
    pub async fn submit(&self, caller: &Oin, bytes: &[u8]) -> Result<Submitted, SubmitError> {
        let answer = self.submit_counted(caller, bytes).await;
        self.counters.count(&answer);
        answer
    }

    async fn submit_counted(&self, caller: &Oin, bytes: &[u8]) -> Result<Submitted, SubmitError> {
        let verified = self.verify_submission(caller, bytes)?;
        // What the submission needs to know, in one snapshot (on
        // PostgreSQL each snapshot is a transaction of its own).
        let (person, channel, unread) = {
            let records = self.records().read()?;
            if let Some(known) = records.submission(&verified.letter.message_id)? {
                return Self::repeated(&known, caller, &verified);
            }
            let recipient = &verified.letter.recipient;
            let person = records.person_entry(recipient)?.map(|(_, p)| p);
            let channel = registry::channel(person.as_ref(), &verified.letter.sender);
            let unread = match channel {
                Channel::Digital(_) => records.unread_count(recipient, MAX_UNREAD_COUNTED)? as u32,
                Channel::Paper(_) => 0,
            };
            (person, channel, unread)
        };
        let accepted = self.accept(caller, bytes, verified, &channel);
        match channel {
            Channel::Digital(inbox) => self.submit_digital(accepted, inbox, person, unread).await,
            Channel::Paper(reason) => self.submit_paper(accepted, reason).await,
        }
    }

    /// The size, the seal, and that the agency sends as itself.
    fn verify_submission(
        &self,
        caller: &Oin,
        bytes: &[u8],
    ) -> Result<VerifiedMessage, SubmitError> {
        let limit = estafette_spec::limits::MAX_MESSAGE_BYTES;
        if bytes.len() > limit {
            return Err(SubmitError::TooLarge {
                actual: bytes.len(),
                limit,
            });
        }
        let verified = SignedMessage::verify(bytes, &self.node.trust()).map_err(|e| match &e {
            MessageError::Verify(VerifyError::Trust(
                TrustError::UnknownKey(_)
                | TrustError::Revoked { .. }
                | TrustError::WrongRole { .. },
            ))
            | MessageError::SenderMismatch { .. }
            | MessageError::Sender(_) => SubmitError::UntrustedSigner(e),
            // A CBOR limit inside a small body (too many items, too deep)
            // is not "too large": the CBOR error names the limit, truly.
            _ => SubmitError::Invalid(e),
        })?;
        if &verified.letter.sender != caller {
            return Err(SubmitError::SenderMismatch {
                certificate: caller.clone(),
                sender: verified.letter.sender.clone(),
            });
        }
        Ok(verified)
    }

    /// The answer to a message id already recorded: the same answer for the
    /// same message from the same agency, a conflict otherwise.
    fn repeated(
        known: &SubmissionRecord,
        caller: &Oin,
        verified: &VerifiedMessage,
    ) -> Result<Submitted, SubmitError> {
        if known.sender == *caller && known.digest == verified.digest {
            return Ok(Self::answer(known, verified.letter.message_id, true));
        }
        Err(SubmitError::Conflict(verified.letter.message_id))
    }

    /// Signs the SubmissionAcceptance and drafts the submission's record.
    fn accept<'a>(
        &self,
        caller: &'a Oin,
        bytes: &'a [u8],
        verified: VerifiedMessage,
        channel: &Channel,
    ) -> Accepted<'a> {
        let now = self.clock.now();
        let message_id = verified.letter.message_id;
        let envelope_id = self.envelope_id(caller, &message_id);
        let record = EvidenceRecord {
            evidence_id: EvidenceId::random(&mut OsRng),
            event: EvidenceEvent::SubmissionAcceptance,
            envelope_id: matches!(channel, Channel::Digital(_)).then_some(envelope_id),
            message_id: Some(message_id),
            message_digest: Some(verified.digest),
            envelope_digest: None,
            issuer: self.node.id.clone(),
            issued_at: now,
            reason: None,
            actor: None,
            previous: None,
        };
        let acceptance_digest = Evidence::record_bytes(&record)
            .map(|bytes| Digest::of(&bytes))
            .unwrap_or(Digest([0; 32]));
        let submission = SubmissionRecord {
            sender: caller.clone(),
            digest: verified.digest,
            envelope_id: None,
            channel: channel.name().into(),
            reason: None,
            received_at: now,
            acceptance: Vec::new(),
            failure: None,
        };
        Accepted {
            caller,
            bytes,
            verified,
            now,
            envelope_id,
            acceptance: NewEvidence {
                evidence_id: record.evidence_id,
                message_id: Some(message_id),
                bytes: Vec::new(),
            },
            acceptance_record: record,
            acceptance_digest,
            record: submission,
        }
    }

    /// Logs the SubmissionAcceptance and `more` records of the submission
    /// together (one checkpoint): keeps the acceptance in `accepted`, gives
    /// the others.
    async fn log_accepted(
        &self,
        accepted: &mut Accepted<'_>,
        more: Vec<EvidenceRecord>,
    ) -> Result<Vec<NewEvidence>, SubmitError> {
        let mut records = vec![accepted.acceptance_record.clone()];
        records.extend(more);
        let mut logged = self
            .node
            .log_evidence(&records)
            .await
            .map_err(|e| SubmitError::Unavailable(e.to_string()))?
            .into_iter();
        let acceptance = logged
            .next()
            .ok_or_else(|| SubmitError::Unavailable("the evidence log gave nothing".into()))?;
        accepted.record.acceptance = acceptance.bytes.clone();
        accepted.acceptance = acceptance;
        Ok(logged.collect())
    }

    /// The envelope id of a message: keyed by a secret of the gateway (so it
    /// reveals nothing) and the same for the same message (so a submission
    /// repeated after a crash can never make a second envelope).
    fn envelope_id(&self, sender: &Oin, message: &MessageId) -> EnvelopeId {
        let mut h = Sha256::new();
        h.update(b"estafette/1 envelope id");
        h.update(self.node.signing_key().to_bytes());
        h.update(sender.as_str().as_bytes());
        h.update(message.as_bytes());
        let digest = h.finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        EnvelopeId::from_bytes(id)
    }

    /// A digital letter: sealed for the home node, queued with its
    /// records, followed by the monitor until it is opened.
    async fn submit_digital(
        &self,
        mut accepted: Accepted<'_>,
        inbox: InboxLocation,
        person: Option<PersonRecord>,
        unread: u32,
    ) -> Result<Submitted, SubmitError> {
        let (envelope, header) = self.seal_envelope(&accepted, &inbox)?;
        accepted.record.envelope_id = Some(accepted.envelope_id);
        let dormant = self.dormant_paper(&accepted, person.as_ref(), unread);
        let (copy, confirm) = (dormant.copy, dormant.confirm);
        let more = copy.iter().map(|(_, record)| record.clone()).collect();
        let mut logged = self.log_accepted(&mut accepted, more).await?.into_iter();
        let dormant = DormantPaper {
            copy: copy.and_then(|(item, _)| Some((item, logged.next()?))),
            confirm,
        };
        let tracked = self.tracked_letter(&accepted, dormant.copy.is_some());
        let channel_working = person.as_ref().is_some_and(|p| p.channel_working());
        let due = escalation::due_at(&tracked.progress, channel_working, &self.policy);
        let sealed = SealedEnvelope {
            envelope,
            header,
            previous: Some(accepted.acceptance_digest()),
            evidence: Some(accepted.acceptance.clone()),
        };
        let message_id = accepted.message_id();
        let record = accepted.record.clone();
        let signed_letter = accepted.bytes.to_vec();
        let change = Box::new(move |records: &mut dyn WriteRecords| {
            // Checked again inside the transaction: a twin submission (on
            // another instance) recorded first; nothing of this one is kept.
            if !records.put_submission(&message_id, &record)? {
                return Err(RecordsError::AlreadyRecorded);
            }
            if !tracked.progress.on_paper {
                records.follow(&message_id, &tracked, &signed_letter, due)?;
            }
            record_dormant_paper(records, &message_id, dormant)
        });
        let queued = self.records().queue_submission(sealed, change).await;
        let outcome = match queued {
            Ok(outcome) => outcome,
            Err(QueueError::NoRoute(home)) => {
                return Err(SubmitError::NoRoute(format!("no route to {home}")));
            }
            // A twin that won the race answers, as if it had come first.
            Err(other) => match self.records().read()?.submission(&message_id)? {
                Some(stored) => {
                    return Self::repeated(&stored, accepted.caller, &accepted.verified);
                }
                None => return Err(SubmitError::Unavailable(other.to_string())),
            },
        };
        match outcome {
            Outcome::Stored => Ok(Self::answer(&accepted.record, message_id, false)),
            // The same envelope id: this message was queued before a crash
            // lost its submission record. The evidence stored then answers.
            Outcome::Duplicate { evidence } => {
                accepted.record.acceptance = evidence;
                Ok(Self::answer(&accepted.record, message_id, true))
            }
            Outcome::QueueFull => Err(SubmitError::Unavailable(
                "the forward queue is full; try again later".into(),
            )),
            Outcome::Done | Outcome::Pruned { .. } => {
                Err(SubmitError::Unavailable("unexpected store outcome".into()))
            }
        }
    }

    /// The envelope for the recipient's home node. Its times are the
    /// federation's (the node's clock): relays check them against theirs.
    fn seal_envelope(
        &self,
        accepted: &Accepted<'_>,
        inbox: &InboxLocation,
    ) -> Result<(Vec<u8>, RoutingHeader), SubmitError> {
        let home_key = self
            .node
            .trust()
            .node(&inbox.home_node)
            .ok_or_else(|| {
                SubmitError::NoRoute(format!("{} is not in the trust list", inbox.home_node))
            })?
            .hpke_key;
        let federation_now = self.node.core.clock.now();
        let header = RoutingHeader {
            envelope_id: accepted.envelope_id,
            home_node: inbox.home_node.clone(),
            inbox_id: inbox.inbox_id,
            message_id: accepted.message_id(),
            message_digest: accepted.verified.digest,
            hop_limit: self.envelope.hop_limit,
            created_at: federation_now,
            expires_at: federation_now.plus_s(self.envelope.lifetime_s),
        };
        let envelope = Envelope::seal(
            header.clone(),
            accepted.bytes,
            &home_key,
            self.node.signing_key(),
            &mut OsRng,
        )
        .map_err(|e| SubmitError::Unavailable(e.to_string()))?;
        Ok((envelope, header))
    }

    /// A dormant account gets the letter on paper too (and, once a year, a
    /// letter asking to confirm the choice).
    fn dormant_paper(
        &self,
        accepted: &Accepted<'_>,
        person: Option<&PersonRecord>,
        unread: u32,
    ) -> DormantPaper<EvidenceRecord> {
        let recipient = &accepted.verified.letter.recipient;
        let activity = Activity {
            unread,
            ..person.map(|p| p.activity).unwrap_or_default()
        };
        let plan = escalation::plan_digital(&activity, accepted.now, &self.policy);
        let copy = plan.also_paper.map(|reason| {
            let evidence = self.paper_record(
                EvidenceEvent::PaperFallback,
                (accepted.message_id(), accepted.verified.digest),
                reason,
                accepted.acceptance_digest(),
                accepted.now,
            );
            let item = PaperItem::letter(
                recipient.clone(),
                reason,
                accepted.now,
                None,
                accepted.bytes.to_vec(),
            );
            (item, evidence)
        });
        let confirm = plan.confirm_letter.then(|| PaperItem {
            recipient: recipient.clone(),
            kind: PaperKind::ConfirmChoice,
            reason: Some(ReasonCode::DormantAccount),
            received_at: accepted.now,
            consigned_at: None,
            message: vec![],
            spooled_at: None,
            failure: None,
        });
        DormantPaper { copy, confirm }
    }

    /// What the monitor keeps of a digital letter.
    fn tracked_letter(&self, accepted: &Accepted<'_>, on_paper: bool) -> TrackedLetter {
        let letter = &accepted.verified.letter;
        TrackedLetter {
            recipient: letter.recipient.clone(),
            sender: letter.sender.clone(),
            sender_reference: letter.sender_reference.clone(),
            nature: letter.nature,
            legal_effect: letter.legal_effect,
            expected_action: letter.expected_action.clone(),
            envelope_id: accepted.envelope_id,
            message_digest: accepted.verified.digest,
            progress: LetterProgress {
                submitted_at: accepted.now,
                deadline: letter.response_deadline,
                on_paper,
                ..Default::default()
            },
        }
    }

    /// A paper letter: in the paper queue with its PaperFallback evidence
    /// and, when no postal address is known, its PaperFailure.
    async fn submit_paper(
        &self,
        mut accepted: Accepted<'_>,
        reason: ReasonCode,
    ) -> Result<Submitted, SubmitError> {
        let letter = &accepted.verified.letter;
        let message_id = letter.message_id;
        let fallback = self.paper_record(
            EvidenceEvent::PaperFallback,
            (message_id, accepted.verified.digest),
            reason,
            accepted.acceptance_digest(),
            accepted.now,
        );
        let mut records = vec![fallback.clone()];
        accepted.record.reason = Some(reason);
        let mut item = PaperItem::letter(
            letter.recipient.clone(),
            reason,
            accepted.now,
            None,
            accepted.bytes.to_vec(),
        );
        // Nowhere to print it: say so now, in evidence and in the answer,
        // instead of letting the agency believe it went out.
        let postal_address =
            self.postal_address(&letter.recipient, &letter.sender, accepted.now)?;
        if postal_address.is_none() {
            let failure = ReasonCode::NoPostalAddress;
            let after = Evidence::record_bytes(&fallback)
                .map(|bytes| Digest::of(&bytes))
                .unwrap_or(Digest([0; 32]));
            records.push(self.paper_record(
                EvidenceEvent::PaperFailure,
                (message_id, accepted.verified.digest),
                failure,
                after,
                accepted.now,
            ));
            accepted.record.failure = Some(failure);
            item.failure = Some(failure);
            tracing::warn!(agency = %accepted.caller, message = %message_id, reason = failure.code(), "a paper letter cannot be printed: no postal address is known; PaperFailure signed");
        }
        let mut evidence = self.log_accepted(&mut accepted, records).await?;
        evidence.insert(0, accepted.acceptance.clone());
        let record = accepted.record.clone();
        self.records()
            .write(Box::new(move |records| {
                // Checked again inside the transaction: two identical
                // submissions racing make one paper letter.
                if !records.put_submission(&message_id, &record)? {
                    return Ok(());
                }
                records.put_paper(PaperId::of_message(&message_id), &item)?;
                for e in &evidence {
                    records.archive_evidence(e)?;
                }
                Ok(())
            }))
            .await?;
        // Answer with what is stored (the racing twin's, if it won).
        match self.records().read()?.submission(&message_id)? {
            Some(stored) if stored.digest == accepted.verified.digest => {
                let repeated = stored.acceptance != accepted.record.acceptance;
                Ok(Self::answer(&stored, message_id, repeated))
            }
            _ => Err(SubmitError::Conflict(message_id)),
        }
    }

    fn answer(record: &SubmissionRecord, message_id: MessageId, repeated: bool) -> Submitted {
        Submitted {
            message_id,
            envelope_id: record.envelope_id,
            channel: if record.channel == "digital" {
                "digital"
            } else {
                "paper"
            },
            reason: record.reason,
            acceptance: record.acceptance.clone(),
            repeated,
            failure: record.failure,
        }
    }
}

/// The dormant account's paper, in the submission's transaction.
fn record_dormant_paper(
    records: &mut dyn WriteRecords,
    message_id: &MessageId,
    dormant: DormantPaper,
) -> Result<(), crate::store::RecordsError> {
    if let Some((item, evidence)) = dormant.copy {
        records.put_paper(PaperId::of_message(message_id), &item)?;
        records.archive_evidence(&evidence)?;
    }
    if let Some(item) = dormant.confirm {
        records.put_paper(PaperId::random(), &item)?;
        if let Some(mut person) = records.person(&item.recipient)? {
            person.activity.confirm_letter_at = Some(item.received_at);
            records.put_person(&item.recipient, &person)?;
        }
    }
    Ok(())
}
