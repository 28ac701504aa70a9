//! Mandates at the desk, inside its transaction: granting, accepting and
//! revoking a voluntary mandate, registering a court's legal
//! representation, and what a representative may see and do for a client.
//! The rules of who may act when are `estafette_spec::mandate`. Refusals
//! write nothing but the assertion's nonce.

use estafette_spec::citizen::{
    AccessDecision, Change, CitizenAction, CitizenReply, ClientView, MandateGrant,
};
use estafette_spec::mandate::{Mandate, MandateId, MandateKind, Rights, VerifiedAttestation};
use estafette_spec::{InboxId, NodeId, Oin, ReasonCode, Recipient, TrustList};
use rand_core::OsRng;

use super::{Asking, refused, replayed};
use crate::registry::PersonRecord;
use crate::store::{ReadRecords, RecordsError, WriteRecords};

type Reply = Result<CitizenReply, RecordsError>;

fn is_mandate_action(action: &CitizenAction) -> bool {
    matches!(
        action,
        CitizenAction::GrantMandate { .. }
            | CitizenAction::AcceptMandate { .. }
            | CitizenAction::RevokeMandate { .. }
            | CitizenAction::RegisterLegalRepresentation { .. }
            | CitizenAction::Mandates
            | CitizenAction::Clients
            | CitizenAction::CheckAccess { .. }
            | CitizenAction::SetClientConsent { .. }
    )
}

/// The person's one entry: a linked identity acts for it.
struct Me(Recipient);

impl Me {
    fn of(records: &dyn ReadRecords, subject: &Recipient) -> Result<Me, RecordsError> {
        Ok(Me(match records.person_entry(subject)? {
            Some((key, _)) => key,
            None => subject.clone(),
        }))
    }

    /// Whether `r` is this person, under any of their identities.
    fn is(&self, records: &dyn ReadRecords, r: &Recipient) -> Result<bool, RecordsError> {
        Ok(r == &self.0
            || records
                .person_entry(r)?
                .is_some_and(|(key, _)| key == self.0))
    }
}

/// A mandate action's answer; `None`: not a mandate action.
pub(super) fn mandate_action(
    records: &mut dyn WriteRecords,
    asking: &Asking,
    action: &CitizenAction,
    attestation: Option<&VerifiedAttestation>,
    trust: &TrustList,
) -> Result<Option<CitizenReply>, RecordsError> {
    if !is_mandate_action(action) {
        return Ok(None);
    }
    if !asking.use_nonce(records)? {
        return Ok(Some(replayed()));
    }
    let me = Me::of(records, &asking.claims.subject)?;
    let subject = &asking.claims.subject;
    let reply = match action {
        CitizenAction::GrantMandate { grant } => grant_mandate(records, asking, &me, grant)?,
        CitizenAction::AcceptMandate { id } | CitizenAction::RevokeMandate { id } => {
            let accept = matches!(action, CitizenAction::AcceptMandate { .. });
            change_mandate(records, asking, &me, id, accept)?
        }
        CitizenAction::RegisterLegalRepresentation {
            correspondence,
            office_address,
            ..
        } => {
            let Some(attestation) = attestation else {
                return Ok(Some(refused(ReasonCode::Malformed, "no attestation")));
            };
            let office = (*correspondence, office_address.clone());
            legal_representation(records, asking, &me, attestation, office)?
        }
        CitizenAction::Mandates => {
            let mut all = records.mandates_of_holder(&me.0)?;
            all.extend(records.mandates_of_representative(subject)?);
            CitizenReply::Mandates(all)
        }
        CitizenAction::Clients => clients(records, asking)?,
        CitizenAction::CheckAccess { mandate, sender } => {
            check_access(records, asking, mandate, sender, trust)?
        }
        CitizenAction::SetClientConsent {
            mandate,
            sender,
            digital,
        } => set_client_consent(records, asking, (mandate, sender), *digital, trust)?,
        _ => return Ok(None),
    };
    Ok(Some(reply))
}

fn grant_mandate(
    records: &mut dyn WriteRecords,
    asking: &Asking,
    me: &Me,
    grant: &MandateGrant,
) -> Reply {
    if records.person_entry(&me.0)?.is_none() {
        return Ok(refused(
            ReasonCode::NotRegistered,
            "register first: a mandate is about your inbox",
        ));
    }
    if me.is(records, &grant.representative.person)? {
        return Ok(refused(
            ReasonCode::Malformed,
            "you cannot be your own representative",
        ));
    }
    let m = Mandate {
        id: MandateId::random(&mut OsRng),
        kind: MandateKind::Voluntary,
        holder: me.0.clone(),
        representative: grant.representative.clone(),
        scope: grant.scope.clone(),
        rights: grant.rights,
        valid_from: grant.valid_from.unwrap_or(asking.now),
        valid_until: grant.valid_until,
        accepted: false,
        revoked_at: None,
        correspondence: grant.correspondence,
        office_address: grant.office_address.clone(),
    };
    records.put_mandate(&m)?;
    records.record_change(
        &me.0,
        &asking.entry(Change::MandateGranted {
            id: m.id,
            representative: m.representative.label(),
        }),
    )?;
    Ok(CitizenReply::Mandate(m.id))
}

/// The representative accepts (`accept`), or either side revokes.
fn change_mandate(
    records: &mut dyn WriteRecords,
    asking: &Asking,
    me: &Me,
    id: &MandateId,
    accept: bool,
) -> Reply {
    let Some(mut m) = records.mandate(id)? else {
        return Ok(refused(ReasonCode::NotForThisNode, "no such mandate"));
    };
    let holder = me.is(records, &m.holder)?;
    let rep = me.is(records, &m.representative.person)?;
    if m.revoked_at.is_some() {
        return Ok(refused(ReasonCode::Expired, "this mandate was revoked"));
    }
    let change = match (accept, holder, rep) {
        (true, _, true) => {
            m.accepted = true;
            Change::MandateAccepted { id: m.id }
        }
        (false, true, _) | (false, _, true) => {
            m.revoked_at = Some(asking.now);
            Change::MandateRevoked { id: m.id }
        }
        _ => {
            return Ok(refused(
                ReasonCode::WrongRole,
                "this mandate is not yours to change",
            ));
        }
    };
    records.put_mandate(&m)?;
    records.record_change(&m.holder, &asking.entry(change))?;
    Ok(CitizenReply::Mandate(m.id))
}

/// A court's legal representation, registered by the representative it
/// names; registering the same attestation again answers the same mandate.
fn legal_representation(
    records: &mut dyn WriteRecords,
    asking: &Asking,
    me: &Me,
    v: &VerifiedAttestation,
    (correspondence, office_address): (bool, Option<estafette_spec::citizen::PostalAddress>),
) -> Reply {
    let c = &v.content;
    if !me.is(records, &c.representative.person)? {
        return Ok(refused(
            ReasonCode::WrongRole,
            "the attestation names another representative",
        ));
    }
    let Some((holder, _)) = records.person_entry(&c.represented)? else {
        return Ok(refused(
            ReasonCode::NotRegistered,
            "the represented person is not in the registry",
        ));
    };
    let existing = records.mandates_of_holder(&holder)?.into_iter().find(|m| {
        matches!(&m.kind, MandateKind::Legal { attestation_digest, .. } if *attestation_digest == v.digest)
    });
    if let Some(m) = existing {
        return Ok(CitizenReply::Mandate(m.id));
    }
    let m = Mandate {
        id: MandateId::random(&mut OsRng),
        kind: MandateKind::Legal {
            kind: c.kind,
            registry: c.registry.clone(),
            case_reference: c.case_reference.clone(),
            attestation_digest: v.digest,
        },
        holder: holder.clone(),
        representative: c.representative.clone(),
        scope: c.kind.scope(),
        rights: Rights {
            read: true,
            manage: true,
        },
        valid_from: c.valid_from,
        valid_until: c.valid_until,
        accepted: true,
        revoked_at: None,
        correspondence,
        office_address,
    };
    records.put_mandate(&m)?;
    records.record_change(
        &holder,
        &asking.entry(Change::LegalRepresentation {
            id: m.id,
            kind: c.kind,
            representative: m.representative.label(),
        }),
    )?;
    Ok(CitizenReply::Mandate(m.id))
}

/// The people the asking person represents now.
fn clients(records: &dyn ReadRecords, asking: &Asking) -> Reply {
    let mut clients = Vec::new();
    for m in records.mandates_of_representative(&asking.claims.subject)? {
        if !m.stands(asking.now) {
            continue;
        }
        let client = records.person(&m.holder)?;
        clients.push(ClientView {
            mandate: m.id,
            client: m.holder.clone(),
            client_name: client.as_ref().and_then(|c| c.name.clone()),
            inbox: inbox_at(client.as_ref(), &asking.home),
            legal: m.is_legal(),
            rights: m.rights,
        });
    }
    Ok(CitizenReply::Clients(clients))
}

/// Whether the asking representative may read a client's letters from `sender`.
fn check_access(
    records: &dyn ReadRecords,
    asking: &Asking,
    mandate: &MandateId,
    sender: &Oin,
    trust: &TrustList,
) -> Reply {
    let need = Rights {
        read: true,
        manage: false,
    };
    match governing_mandate(records, asking, mandate, sender, need, trust)? {
        Ok((named, g)) => {
            let client = records.person(&named.holder)?;
            Ok(CitizenReply::Access(AccessDecision {
                mandate: g.id,
                representative: g.representative.label(),
                inbox: inbox_at(client.as_ref(), &asking.home),
            }))
        }
        Err(refusal) => Ok(refusal),
    }
}

/// A representative with the right to manage chooses digital or paper
/// from `sender` for the client.
fn set_client_consent(
    records: &mut dyn WriteRecords,
    asking: &Asking,
    (mandate, sender): (&MandateId, &Oin),
    digital: bool,
    trust: &TrustList,
) -> Reply {
    let need = Rights {
        read: false,
        manage: true,
    };
    let m = match governing_mandate(records, asking, mandate, sender, need, trust)? {
        Ok((named, _)) => named,
        Err(refusal) => return Ok(refusal),
    };
    if trust.agency(sender).is_none() {
        return Ok(refused(
            ReasonCode::UnknownSigner,
            format!("there is no agency with OIN {sender} in the federation"),
        ));
    }
    let Some(mut client) = records.person(&m.holder)? else {
        return Ok(refused(
            ReasonCode::NotRegistered,
            "the client has no entry",
        ));
    };
    let has = client.digital_senders.contains(sender);
    if digital && !has {
        client.digital_senders.push(sender.clone());
    } else if !digital && has {
        client.digital_senders.retain(|s| s != sender);
    }
    if digital != has {
        records.put_person(&m.holder, &client)?;
        records.record_change(
            &m.holder,
            &asking.entry(Change::Consent {
                sender: sender.clone(),
                digital,
            }),
        )?;
    }
    Ok(CitizenReply::Mandate(m.id))
}

/// The person's inbox, if it is at `home`.
fn inbox_at(person: Option<&PersonRecord>, home: &NodeId) -> Option<InboxId> {
    person
        .and_then(|p| p.inbox.as_ref())
        .filter(|i| &i.home_node == home)
        .map(|i| i.inbox_id)
}

/// The mandate named `id` and the one that governs the asking person
/// acting on letters from `sender` with `need` now; or the refusal to answer.
fn governing_mandate(
    records: &dyn ReadRecords,
    asking: &Asking,
    id: &MandateId,
    sender: &Oin,
    need: Rights,
    trust: &TrustList,
) -> Result<Result<(Mandate, Mandate), CitizenReply>, RecordsError> {
    let Some(named) = records.mandate(id)? else {
        return Ok(Err(refused(ReasonCode::NotForThisNode, "no such mandate")));
    };
    let holders = records.mandates_of_holder(&named.holder)?;
    let who = &asking.claims.subject;
    match estafette_spec::mandate::governing(&holders, who, sender, need, asking.now, trust) {
        Some(g) => {
            let g = g.clone();
            Ok(Ok((named, g)))
        }
        None => Ok(Err(refused(
            ReasonCode::NoMandate,
            "no mandate of yours covers this sender now",
        ))),
    }
}
