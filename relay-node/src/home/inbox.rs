//! Opening a letter: ContentHandover evidence, logged and committed with
//! the access-log entry before the letter is given. Listing reads only the
//! small records the relay wrote at delivery (see `store::InboxRecord`).

use estafette_spec::evidence::{Actor, EvidenceRecord};
use estafette_spec::{ActorRole, EnvelopeId, EvidenceEvent, EvidenceId, InboxId};
use rand_core::OsRng;

use super::HomeError;
use crate::node::Node;
use crate::store::{AccessEntry, InboxRecord, Op};

/// Opens a letter for `actor`: logs ContentHandover, records it durably
/// (with the access-log entry), and only then gives the record and the
/// signed letter.
pub async fn open_letter(
    node: &Node,
    inbox: &InboxId,
    envelope: &EnvelopeId,
    actor: Actor,
) -> Result<(InboxRecord, Vec<u8>), HomeError> {
    let store = node.store();
    let mut record = store
        .inbox_get(inbox, envelope)?
        .ok_or(HomeError::NoSuchLetter)?;
    let message = store.letter(envelope)?.ok_or(HomeError::NoSuchLetter)?;
    let core = node.core();
    let now = core.clock.now();
    let handover = EvidenceRecord {
        evidence_id: EvidenceId::random(&mut OsRng),
        event: EvidenceEvent::ContentHandover,
        envelope_id: Some(*envelope),
        message_id: Some(record.message_id),
        message_digest: Some(record.message_digest),
        envelope_digest: None,
        issuer: core.id.clone(),
        issued_at: now,
        reason: None,
        actor: Some(actor),
        previous: Some(record.last_evidence),
    };
    let access = AccessEntry {
        at: now,
        envelope_id: *envelope,
        message_id: record.message_id,
        actor: handover.actor.clone().unwrap_or(Actor {
            role: ActorRole::Holder,
            representative: None,
            mandate: None,
        }),
    };
    let evidence = core.new_evidence(&handover).await?;
    store
        .write(Op::MarkOpened {
            inbox_id: *inbox,
            envelope_id: *envelope,
            opened_at: now,
            evidence,
            access,
        })
        .await?;
    node.outbox().added();
    record.opened_at = Some(record.opened_at.unwrap_or(now));
    Ok((record, message))
}
