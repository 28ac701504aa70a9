//! The print spool: every paper item not yet spooled is rendered to a PDF
//! for the holder's address (or the office of the representative whose
//! mandate takes the correspondence) and marked spooled; an item with
//! nowhere to go is marked so, with PaperFailure evidence for an agency's
//! letter.

use estafette_spec::{
    Digest, Evidence, EvidenceEvent, Letter, MessageId, ReasonCode, SignedMessage, Timestamp,
};

use super::CycleReport;
use crate::gateway::{Gateway, PaperItem, PaperKind};
use crate::mandates::{self, Correspondent};
use crate::paper::{ManifestEntry, PaperLetter};
use crate::store::{PaperId, RecordsError, StepKey};
use crate::texts;

/// Most paper items printed in one cycle; the rest wait for the next.
pub const MAX_PAPER_PER_CYCLE: usize = 10_000;

/// Whether an item was printed.
enum Printed {
    Yes,
    /// Not now (a spool failure, a damaged item): tried again next cycle.
    Later,
    /// There is no postal address for it.
    Nowhere,
}

impl Gateway {
    /// Renders every paper item not yet spooled and marks it spooled.
    pub(super) async fn spool_pending(
        &self,
        now: Timestamp,
        report: &mut CycleReport,
    ) -> Result<(), RecordsError> {
        // Through the index of waiting items: not the queue's whole history.
        let pending = self.records().read()?.paper_waiting(MAX_PAPER_PER_CYCLE)?;
        for id in pending {
            // One instance prints an item, once: under its claim, and only
            // if it is still waiting when read again.
            // The item's records are written as it goes (before and after
            // printing), so the claim ends on its own.
            let printing = async { self.spool_claimed(id, now, report).await.map(|()| None) };
            self.claimed(StepKey::Paper(id), printing).await?;
        }
        Ok(())
    }

    /// Prints one item under this instance's claim, if it still waits.
    async fn spool_claimed(
        &self,
        id: PaperId,
        now: Timestamp,
        report: &mut CycleReport,
    ) -> Result<(), RecordsError> {
        let Some(item) = self.records().read()?.paper(id)? else {
            return Ok(());
        };
        if item.spooled_at.is_some() || item.failure.is_some() {
            return Ok(());
        }
        match self.print(id, &item, now).await? {
            Printed::Yes => {
                let mut item = item;
                item.spooled_at = Some(now);
                self.records()
                    .write(Box::new(move |records| records.put_paper(id, &item)))
                    .await?;
                report.spooled += 1;
            }
            Printed::Later => {}
            Printed::Nowhere => {
                report.no_address += 1;
                self.cannot_print(id, item, now).await?;
            }
        }
        Ok(())
    }

    /// Renders one item and writes it to the spool.
    async fn print(
        &self,
        id: PaperId,
        item: &PaperItem,
        now: Timestamp,
    ) -> Result<Printed, RecordsError> {
        let letter_in = match item.kind {
            PaperKind::Letter => match SignedMessage::read_stored(&item.message) {
                Ok(m) => Some(m.letter),
                Err(_) => {
                    tracing::error!("a paper item holds no readable letter; skipped");
                    return Ok(Printed::Later);
                }
            },
            _ => None,
        };
        let Some(to) = self.paper_correspondent(item, letter_in.as_ref(), now)? else {
            return Ok(Printed::Nowhere);
        };
        let Some(address) = to.address.clone() else {
            return Ok(Printed::Nowhere);
        };
        let texts = texts::for_language(&to.language);
        let (letter, message_id) = match (item.kind, letter_in) {
            (PaperKind::Letter, Some(l)) => {
                let message_id = l.message_id;
                (
                    self.agency_letter(item, l, &to, address.clone(), texts),
                    Some(message_id),
                )
            }
            _ => (
                self.own_letter(item, &to, address.clone(), now, texts),
                None,
            ),
        };
        let (pdf, pages) = match crate::paper::render(&letter, texts) {
            Ok(rendered) => rendered,
            Err(e) => {
                tracing::error!(error = %e, "a paper letter could not be set; will retry");
                return Ok(Printed::Later);
            }
        };
        let name = format!("{}-{id}.pdf", item.kind.name());
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
        let written = tokio::task::spawn_blocking(move || spool.put(&name, &pdf, &entry)).await;
        match written {
            Ok(Ok(())) => Ok(Printed::Yes),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "writing to the print spool failed; will retry");
                Ok(Printed::Later)
            }
            Err(e) => {
                tracing::error!(error = %e, "the print spool writer stopped; will retry");
                Ok(Printed::Later)
            }
        }
    }

    /// Where an item goes: the holder's address, or the office of the
    /// representative whose mandate takes the correspondence for its
    /// sender; `None` when the person has no registry entry.
    fn paper_correspondent(
        &self,
        item: &PaperItem,
        letter: Option<&Letter>,
        now: Timestamp,
    ) -> Result<Option<Correspondent>, RecordsError> {
        let records = self.records().read()?;
        let Some((holder, person)) = records.person_entry(&item.recipient)? else {
            return Ok(None);
        };
        let to = mandates::correspondent(
            &*records,
            &holder,
            &person,
            letter.map(|l| &l.sender),
            now,
            &self.node.trust(),
        )?;
        Ok(Some(to))
    }

    /// An agency's letter on paper, with why it came on paper.
    fn agency_letter(
        &self,
        item: &PaperItem,
        l: Letter,
        to: &Correspondent,
        address: estafette_spec::citizen::PostalAddress,
        texts: &texts::Texts,
    ) -> PaperLetter {
        let sender_name = self
            .node
            .trust()
            .agency(&l.sender)
            .map(|a| a.name.clone())
            .unwrap_or_else(|| l.sender.to_string());
        let explanation = item
            .reason
            .map(|reason| texts.paper_explanation(reason, &sender_name, item.consigned_at));
        PaperLetter {
            addressee: to.addressee.clone(),
            address,
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
            on_behalf_of: to.on_behalf_of.clone(),
        }
    }

    /// One of the gateway's own letters: confirm your choice, or your
    /// notifications do not arrive.
    fn own_letter(
        &self,
        item: &PaperItem,
        to: &Correspondent,
        address: estafette_spec::citizen::PostalAddress,
        now: Timestamp,
        texts: &texts::Texts,
    ) -> PaperLetter {
        let (subject, body) = if item.kind == PaperKind::ConfirmChoice {
            (texts.confirm_subject, texts.confirm_choice_body())
        } else {
            (texts.channel_subject, texts.channel_notice_body())
        };
        PaperLetter {
            addressee: to.addressee.clone(),
            address,
            sender_name: self.node.id.to_string(),
            date: now,
            reference: None,
            subject: subject.into(),
            body: body.into(),
            attachments: vec![],
            explanation: None,
            on_behalf_of: to.on_behalf_of.clone(),
        }
    }

    /// A paper item with nowhere to go: marked so (it is not tried again)
    /// and, for an agency's letter, PaperFailure evidence the agency sees,
    /// linked to the newest evidence of the letter.
    async fn cannot_print(
        &self,
        id: PaperId,
        mut item: PaperItem,
        now: Timestamp,
    ) -> Result<(), RecordsError> {
        let reason = ReasonCode::NoPostalAddress;
        item.failure = Some(reason);
        let evidence = match item.kind {
            PaperKind::Letter => {
                let message_id = id.message();
                let stored = self.records().read()?.evidence_for(&message_id)?;
                let chain = Evidence::order_chain(stored, &self.node.trust());
                match chain.last().and_then(|b| Evidence::chain_digest(b)) {
                    Some(previous) => {
                        let record = self.paper_record(
                            EvidenceEvent::PaperFailure,
                            (message_id, Digest::of(&item.message)),
                            reason,
                            previous,
                            now,
                        );
                        self.node.log_evidence(&[record]).await?.pop()
                    }
                    None => None,
                }
            }
            _ => None,
        };
        tracing::warn!(
            kind = item.kind.name(),
            message = ?evidence.as_ref().and(Some(MessageId::from_bytes(id.0))),
            reason = reason.code(),
            "a paper letter cannot be printed: no postal address is known"
        );
        self.records()
            .write(Box::new(move |records| {
                records.put_paper(id, &item)?;
                if let Some(evidence) = &evidence {
                    records.archive_evidence(evidence)?;
                }
                Ok(())
            }))
            .await
    }
}
