//! The person's own settings, inside the desk's transaction: registering
//! an inbox, adding and verifying an e-mail address, activating, consent
//! per sender, all on paper, the history, and linking a second identity.
//! Refusals write nothing but the assertion's nonce; only storage errors
//! are `Err`.

use estafette_spec::citizen::{
    Change, ChangeEntry, ChannelKind, ChannelState, CitizenAction, CitizenReply, MAX_CONSENTS,
    MAX_HISTORY_ENTRIES, VERIFICATION_TOKEN_BYTES,
};
use estafette_spec::{
    Digest, IdentityClaims, InboxId, NodeId, Oin, ReasonCode, Recipient, Timestamp,
};
use rand_core::OsRng;

use super::{Asking, Refusal, VerificationMail, refused, replayed, token_digest};
use crate::monitor::DEFAULT_INBOX_URL;
use crate::registry::{ContactChannel, EMAIL_TOKEN_LIFETIME_S, InboxLocation, PersonRecord};
use crate::store::{RecordsError, WriteRecords};

type Answer = (CitizenReply, Option<VerificationMail>);

fn refusal(reason: ReasonCode, detail: impl Into<String>) -> Answer {
    (refused(reason, detail), None)
}

/// A change to the person's entry, or the refusal to make it.
type Step = Result<(), Refusal>;

/// Applies one assertion-carrying request to the person's own entry.
pub(super) fn apply(
    records: &mut dyn WriteRecords,
    asking: &Asking,
    other: Option<(IdentityClaims, Digest)>,
    action: CitizenAction,
    inbox_url: Option<String>,
    token: [u8; VERIFICATION_TOKEN_BYTES],
) -> Result<Answer, RecordsError> {
    // Nonces are single use: one nonce, one assertion (which may authorise
    // several changes while it is fresh, from the home node it names).
    if !asking.use_nonce(records)? {
        return Ok((replayed(), None));
    }
    if let (CitizenAction::Link { .. }, Some((other, other_digest))) = (&action, &other)
        && !records.use_nonce(&other.nonce, *other_digest, other.expires_at)?
    {
        return Ok((replayed(), None));
    }
    // A linked identity acts on the person's one entry.
    let (key, stored) = match records.person_entry(&asking.claims.subject)? {
        Some((key, person)) => (key, Some(person)),
        None => (asking.claims.subject.clone(), None),
    };
    if let (CitizenAction::Link { .. }, Some((other, _))) = (&action, &other) {
        // Checked before the transaction; recorded in the history.
        let matched =
            estafette_spec::identity::same_person(&asking.claims, other).unwrap_or_default();
        return link(records, asking, &key, stored, other, matched, inbox_url);
    }
    let home = &asking.home;
    let mut person = match (&action, stored) {
        (CitizenAction::History, _) => {
            let history = records.history(&key, MAX_HISTORY_ENTRIES)?;
            return Ok((CitizenReply::History(history), None));
        }
        (CitizenAction::SessionStarted, None) => {
            // Not registered: show an empty record; nothing is stored.
            let empty = PersonRecord::new("nl");
            return Ok((CitizenReply::Person(empty.view(&key, home)), None));
        }
        (CitizenAction::Register { language, .. }, None) => PersonRecord::new(language),
        (_, None) => {
            return Ok(refusal(
                ReasonCode::NotRegistered,
                "you have no digital inbox yet; register first",
            ));
        }
        (_, Some(p)) => p,
    };
    let mut changes: Vec<ChangeEntry> = Vec::new();
    let mut mail = None;
    let step = match action {
        CitizenAction::Register {
            language,
            postal_address,
        } => register(&mut person, asking, language, postal_address, &mut changes),
        CitizenAction::AddEmail { address } => {
            let new = NewEmail {
                key: &key,
                address,
                token,
                inbox_url: inbox_url.clone(),
            };
            mail = Some(add_email(records, &mut person, asking, new, &mut changes)?);
            Ok(())
        }
        CitizenAction::Activate => activate(&mut person, asking, &mut changes),
        CitizenAction::SetConsent { sender, digital } => {
            set_consent(&mut person, asking, sender, digital, &mut changes)
        }
        CitizenAction::AllPaper => all_paper(&mut person, asking, &mut changes),
        CitizenAction::SetLanguage { language } => {
            set_language(&mut person, asking, language, &mut changes)
        }
        // A session, or an action answered elsewhere: only the visit counts.
        _ => Ok(()),
    };
    if let Err(refusal) = step {
        return Ok((refusal.into(), None));
    }
    // Every request is a session: the monitor's dormancy rule counts them.
    person.activity.last_session_at = Some(asking.now);
    if inbox_url.is_some() {
        person.inbox_url = inbox_url;
    }
    records.put_person(&key, &person)?;
    for change in &changes {
        records.record_change(&key, change)?;
    }
    Ok((CitizenReply::Person(person.view(&key, home)), mail))
}

/// Every sender back to paper; recorded only if something changed.
fn all_paper(
    person: &mut PersonRecord,
    asking: &Asking,
    changes: &mut Vec<ChangeEntry>,
) -> Result<(), Refusal> {
    if !person.digital_senders.is_empty() {
        person.digital_senders.clear();
        changes.push(asking.entry(Change::AllPaper));
    }
    Ok(())
}

/// The language of the person's e-mails and paper letters.
fn set_language(
    person: &mut PersonRecord,
    asking: &Asking,
    language: String,
    changes: &mut Vec<ChangeEntry>,
) -> Result<(), Refusal> {
    if person.language != language {
        person.language.clone_from(&language);
        changes.push(asking.entry(Change::Language { language }));
    }
    Ok(())
}

/// An inbox at the asking home node; it starts inactive.
fn register(
    person: &mut PersonRecord,
    asking: &Asking,
    language: String,
    postal_address: Option<estafette_spec::citizen::PostalAddress>,
    changes: &mut Vec<ChangeEntry>,
) -> Step {
    match &person.inbox {
        Some(inbox) if inbox.home_node != asking.home => Err(Refusal::new(
            ReasonCode::NotForThisNode,
            format!(
                "you already have an inbox at {}; registration is there",
                inbox.home_node
            ),
        )),
        Some(_) => Ok(()),
        None => {
            person.inbox = Some(InboxLocation {
                home_node: asking.home.clone(),
                inbox_id: InboxId::random(&mut OsRng),
            });
            // An inbox starts inactive: activation is its own act.
            person.active = false;
            person.language = language;
            if postal_address.is_some() {
                person.postal_address = postal_address;
            }
            let claims = &asking.claims;
            person.name = Some(format!("{} {}", claims.given_names, claims.family_name));
            changes.push(asking.entry(Change::Registered {
                home_node: asking.home.clone(),
            }));
            Ok(())
        }
    }
}

/// An e-mail address to add, and what its verification link needs.
struct NewEmail<'a> {
    key: &'a Recipient,
    address: String,
    token: [u8; VERIFICATION_TOKEN_BYTES],
    inbox_url: Option<String>,
}

/// The address replaces any earlier one (an older link stops working);
/// it counts once verified through the e-mailed link.
fn add_email(
    records: &mut dyn WriteRecords,
    person: &mut PersonRecord,
    asking: &Asking,
    new: NewEmail<'_>,
    changes: &mut Vec<ChangeEntry>,
) -> Result<VerificationMail, RecordsError> {
    for old in person
        .contact_channels
        .iter()
        .filter_map(|c| c.token_digest)
    {
        records.take_email_token(&old.0)?;
    }
    person
        .contact_channels
        .retain(|c| c.kind != ChannelKind::Email);
    let digest = token_digest(&new.token);
    records.put_email_token(&digest, new.key, asking.now.plus_s(EMAIL_TOKEN_LIFETIME_S))?;
    person.contact_channels.push(ContactChannel {
        kind: ChannelKind::Email,
        address: new.address.clone(),
        state: ChannelState::Pending,
        token_digest: Some(Digest(digest)),
    });
    changes.push(asking.entry(Change::EmailAdded {
        address: new.address.clone(),
    }));
    Ok(VerificationMail {
        address: new.address,
        token: new.token,
        language: person.language.clone(),
        inbox_url: new
            .inbox_url
            .or_else(|| person.inbox_url.clone())
            .unwrap_or_else(|| DEFAULT_INBOX_URL.into()),
    })
}

fn activate(person: &mut PersonRecord, asking: &Asking, changes: &mut Vec<ChangeEntry>) -> Step {
    if !person.channel_working() {
        return Err(Refusal::new(
            ReasonCode::NoNotificationChannel,
            "verify an e-mail address first: it is how you hear of new letters",
        ));
    }
    if !person.active {
        person.active = true;
        changes.push(asking.entry(Change::Activated));
    }
    Ok(())
}

fn set_consent(
    person: &mut PersonRecord,
    asking: &Asking,
    sender: Oin,
    digital: bool,
    changes: &mut Vec<ChangeEntry>,
) -> Step {
    let has = person.digital_senders.contains(&sender);
    if digital && !has {
        if person.digital_senders.len() >= MAX_CONSENTS {
            return Err(Refusal::new(
                ReasonCode::TooLarge,
                format!("at most {MAX_CONSENTS} senders can be chosen for digital mail"),
            ));
        }
        person.digital_senders.push(sender.clone());
    } else if !digital && has {
        person.digital_senders.retain(|s| s != &sender);
    }
    if digital != has {
        changes.push(asking.entry(Change::Consent { sender, digital }));
    }
    Ok(())
}

/// Links the identity of `other` into the person's entry under `key`: the
/// kept entry is the one with an inbox (the session's when both have one);
/// the other becomes a pointer. Consent is the union; a verified channel and
/// a postal address are kept; a second inbox (same home node) is merged.
fn link(
    records: &mut dyn WriteRecords,
    asking: &Asking,
    key: &Recipient,
    mine: Option<PersonRecord>,
    other: &IdentityClaims,
    matched: estafette_spec::identity::IdentityMatch,
    inbox_url: Option<String>,
) -> Result<Answer, RecordsError> {
    let home = &asking.home;
    let theirs = records.person_entry(&other.subject)?;
    if let Some((their_key, _)) = &theirs
        && their_key == key
    {
        // Already one entry.
        let view = mine
            .map(|p| p.view(key, home))
            .unwrap_or_else(|| PersonRecord::new("nl").view(key, home));
        return Ok((CitizenReply::Person(view), None));
    }
    let (their_key, theirs) = match theirs {
        Some((k, p)) => (k, Some(p)),
        None => (other.subject.clone(), None),
    };
    let has_inbox = |p: &Option<PersonRecord>| p.as_ref().is_some_and(|p| p.inbox.is_some());
    let (keep_key, keep, gone_key, gone) = match (has_inbox(&mine), has_inbox(&theirs)) {
        (false, false) => {
            return Ok(refusal(
                ReasonCode::NotRegistered,
                "neither identity has a digital inbox yet; register one first",
            ));
        }
        (true, _) => (key.clone(), mine, their_key, theirs),
        (false, true) => (their_key, theirs, key.clone(), mine),
    };
    let Some(mut kept) = keep else {
        return Ok(refusal(ReasonCode::NotRegistered, "no inbox to keep"));
    };
    if let Some(gone) = &gone {
        if let Err(refusal) = merge_into(&mut kept, gone, home) {
            return Ok((refusal.into(), None));
        }
        // Whoever pointed at the gone entry now points at the kept one.
        for earlier in &gone.linked {
            records.put_person(earlier, &PersonRecord::link_to(&keep_key, &kept.language))?;
        }
    }
    kept.linked.push(gone_key.clone());
    kept.activity.last_session_at = Some(asking.now);
    if inbox_url.is_some() {
        kept.inbox_url = inbox_url;
    }
    let entry = |with: &Recipient| {
        asking.entry(Change::Linked {
            with: with.clone(),
            matched,
        })
    };
    records.put_person(&keep_key, &kept)?;
    records.put_person(&gone_key, &PersonRecord::link_to(&keep_key, &kept.language))?;
    records.record_change(&keep_key, &entry(&gone_key))?;
    records.record_change(&gone_key, &entry(&keep_key))?;
    Ok((CitizenReply::Person(kept.view(&keep_key, home)), None))
}

/// What the kept entry takes over from the gone one: its inbox (merged,
/// at the same home node only), consent, a working channel, the address,
/// the name and the identities linked to it.
fn merge_into(kept: &mut PersonRecord, gone: &PersonRecord, home: &NodeId) -> Step {
    if let (Some(a), Some(b)) = (&kept.inbox, &gone.inbox) {
        if a.home_node != b.home_node {
            return Err(Refusal::new(
                ReasonCode::NotForThisNode,
                format!(
                    "the two inboxes are at {} and {}; linking needs them at one home node",
                    a.home_node, b.home_node
                ),
            ));
        }
        if &a.home_node != home {
            return Err(Refusal::new(
                ReasonCode::NotForThisNode,
                format!("the inboxes are at {}; link there", a.home_node),
            ));
        }
        kept.merged_inboxes.push(b.inbox_id);
        kept.merged_inboxes
            .extend(gone.merged_inboxes.iter().copied());
    }
    for sender in &gone.digital_senders {
        if !kept.digital_senders.contains(sender) {
            kept.digital_senders.push(sender.clone());
        }
    }
    if !kept.channel_working() && gone.channel_working() {
        kept.contact_channels = gone.contact_channels.clone();
    }
    kept.active |= gone.active;
    if kept.postal_address.is_none() {
        kept.postal_address = gone.postal_address.clone();
    }
    if kept.name.is_none() {
        kept.name = gone.name.clone();
    }
    kept.linked.extend(gone.linked.iter().cloned());
    Ok(())
}

/// The e-mailed link was followed: the address with this token is verified.
pub(super) fn apply_verification(
    records: &mut dyn WriteRecords,
    home: &NodeId,
    digest: [u8; 32],
    now: Timestamp,
) -> Result<CitizenReply, RecordsError> {
    let unknown = || {
        refused(
            ReasonCode::InvalidToken,
            "this link is unknown or was already used; add your e-mail address again",
        )
    };
    let Some((recipient, expires_at)) = records.take_email_token(&digest)? else {
        return Ok(unknown());
    };
    if expires_at <= now {
        return Ok(refused(
            ReasonCode::InvalidToken,
            "this link has expired; add your e-mail address again",
        ));
    }
    let Some(mut person) = records.person(&recipient)? else {
        return Ok(unknown());
    };
    let wanted = Some(Digest(digest));
    let Some(channel) = person
        .contact_channels
        .iter_mut()
        .find(|c| c.token_digest == wanted)
    else {
        return Ok(unknown());
    };
    channel.state = ChannelState::Verified;
    channel.token_digest = None;
    let address = channel.address.clone();
    records.put_person(&recipient, &person)?;
    records.record_change(
        &recipient,
        &ChangeEntry {
            at: now,
            change: Change::EmailVerified { address },
            assertion_digest: None,
        },
    )?;
    Ok(CitizenReply::Person(person.view(&recipient, home)))
}
