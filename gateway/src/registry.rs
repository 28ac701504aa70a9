//! The registry: who has an inbox where, whether it is active, and which
//! senders the person chose digital mail for. Kept in the gateway's records
//! (`crate::store`), keyed by the recipient's text form (`bsn:…` or
//! `eidas:…`). The person changes it through their home node (see `desk`);
//! an admin import fills it for tests and the demo. Every change is
//! recorded in the person's history.

use estafette_spec::citizen::{ChannelKind, ChannelState, ChannelView, PersonView, PostalAddress};
use estafette_spec::escalation::Activity;
use estafette_spec::{Digest, InboxId, NodeId, Oin, ReasonCode, Recipient, Timestamp};
use rand_core::OsRng;
use serde::{Deserialize, Serialize};

use crate::store::{Records, RecordsError};

/// Most people in one import.
pub const MAX_IMPORT_PEOPLE: usize = 100_000;
/// Most history entries kept per person (the oldest go first).
pub const MAX_HISTORY_PER_PERSON: u64 = 10_000;
/// How long an e-mail verification link works.
pub const EMAIL_TOKEN_LIFETIME_S: u64 = 24 * 3600;

/// One person in the registry. Stored as CBOR without the fields that
/// hold nothing (a record of 17 million is read at every submission: its
/// size decides how much of the registry stays in memory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonRecord {
    /// The inbox, once the person registered at a home node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbox: Option<InboxLocation>,
    /// Only the holder activates an inbox; until then everything goes on paper.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub active: bool,
    /// Senders the holder chose digital mail for; every other sender: paper.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub digital_senders: Vec<Oin>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_address: Option<PostalAddress>,
    /// Preferred language of notifications and paper letters (BCP 47).
    pub language: String,
    /// The name to put on paper letters (from the identity assertion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Where notifications go.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contact_channels: Vec<ContactChannel>,
    /// People or organisations acting for this person (mandates come later).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub representatives: Vec<String>,
    /// Sessions and unread mail, for the escalation monitor.
    #[serde(default, skip_serializing_if = "is_default")]
    pub activity: Activity,
    /// The web address of the person's inbox (given by the home node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbox_url: Option<String>,
    /// When the last "your notification channel does not work" letter went out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_notice_at: Option<Timestamp>,
    /// This identity was linked into another entry: everything is there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linked_to: Option<Recipient>,
    /// The person's other identities linked into this entry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub linked: Vec<Recipient>,
    /// Inboxes of linked identities whose letters belong in `inbox`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_inboxes: Vec<InboxId>,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

impl PersonRecord {
    /// A record with no inbox (everything on paper).
    pub fn new(language: &str) -> PersonRecord {
        PersonRecord {
            inbox: None,
            active: false,
            digital_senders: vec![],
            postal_address: None,
            language: language.into(),
            name: None,
            contact_channels: vec![],
            representatives: vec![],
            activity: Activity::default(),
            inbox_url: None,
            channel_notice_at: None,
            linked_to: None,
            linked: vec![],
            merged_inboxes: vec![],
        }
    }

    /// An entry that only points to the person's entry under `primary`.
    pub fn link_to(primary: &Recipient, language: &str) -> PersonRecord {
        PersonRecord {
            linked_to: Some(primary.clone()),
            ..PersonRecord::new(language)
        }
    }

    /// The verified, working e-mail address, if any.
    pub fn working_email(&self) -> Option<&str> {
        self.contact_channels
            .iter()
            .find(|c| c.kind == ChannelKind::Email && c.state == ChannelState::Verified)
            .map(|c| c.address.as_str())
    }

    /// Whether notifications can reach the person.
    pub fn channel_working(&self) -> bool {
        self.working_email().is_some()
    }

    /// The record as its holder sees it, from home node `asking`.
    pub fn view(&self, recipient: &Recipient, asking: &NodeId) -> PersonView {
        PersonView {
            recipient: recipient.clone(),
            inbox: self
                .inbox
                .as_ref()
                .filter(|i| &i.home_node == asking)
                .map(|i| i.inbox_id),
            home_node: self.inbox.as_ref().map(|i| i.home_node.clone()),
            active: self.active,
            digital_senders: self.digital_senders.clone(),
            channels: self
                .contact_channels
                .iter()
                .map(|c| ChannelView {
                    kind: c.kind,
                    address: c.address.clone(),
                    state: c.state,
                })
                .collect(),
            language: self.language.clone(),
            merged_inboxes: if self.inbox.as_ref().is_some_and(|i| &i.home_node == asking) {
                self.merged_inboxes.clone()
            } else {
                vec![]
            },
            linked: self.linked.clone(),
        }
    }
}

/// A notification channel of a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactChannel {
    pub kind: ChannelKind,
    pub address: String,
    /// Only a verified channel counts for digital delivery.
    pub state: ChannelState,
    /// SHA-256 of the pending verification token (the token itself is only in the e-mail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_digest: Option<Digest>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboxLocation {
    pub home_node: NodeId,
    pub inbox_id: InboxId,
}

/// How a letter from a sender reaches a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channel {
    Digital(InboxLocation),
    Paper(ReasonCode),
}

impl Channel {
    pub fn name(&self) -> &'static str {
        match self {
            Channel::Digital(_) => "digital",
            Channel::Paper(_) => "paper",
        }
    }
}

/// The channel for a letter from `sender`: digital only with an active
/// inbox and the holder's consent for this sender.
pub fn channel(person: Option<&PersonRecord>, sender: &Oin) -> Channel {
    let Some(person) = person else {
        return Channel::Paper(ReasonCode::NoInbox);
    };
    let Some(inbox) = &person.inbox else {
        return Channel::Paper(ReasonCode::NoInbox);
    };
    if !person.active {
        return Channel::Paper(ReasonCode::InboxInactive);
    }
    if !person.digital_senders.contains(sender) {
        return Channel::Paper(ReasonCode::NoConsent);
    }
    Channel::Digital(inbox.clone())
}

/// Looks a person up, following a link to the entry of the person's other
/// identity.
pub fn lookup(
    records: &dyn Records,
    recipient: &Recipient,
) -> Result<Option<PersonRecord>, RecordsError> {
    Ok(records.person_entry_now(recipient)?.map(|(_, p)| p))
}

/// One person as given to `registry import` (JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportedPerson {
    pub recipient: Recipient,
    /// The home node of the person's inbox; none: no inbox (paper only).
    pub home_node: Option<NodeId>,
    /// The inbox id; a random one is made when absent.
    pub inbox_id: Option<InboxId>,
    #[serde(default)]
    pub active: bool,
    #[serde(default)]
    pub digital_senders: Vec<Oin>,
    pub postal_address: Option<PostalAddress>,
    #[serde(default = "default_language")]
    pub language: String,
    pub name: Option<String>,
    #[serde(default)]
    pub contact_channels: Vec<ContactChannel>,
    /// The last session, for tests of dormant accounts.
    pub last_session_at: Option<Timestamp>,
}

fn default_language() -> String {
    "nl".into()
}

/// Why an import was refused (nothing was written).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("import file: {0}")]
    Json(#[from] serde_json::Error),
    #[error("import has {0} people, at most {MAX_IMPORT_PEOPLE} are allowed per import")]
    TooMany(usize),
    #[error("person {index}: {problem}")]
    Invalid { index: usize, problem: String },
    #[error("{0}")]
    Store(#[from] RecordsError),
}

/// Parses and checks an import; builds the records (with new inbox ids where needed).
pub fn parse_import(
    json: &str,
    trust: &estafette_spec::TrustList,
) -> Result<Vec<(Recipient, PersonRecord)>, ImportError> {
    let people: Vec<ImportedPerson> = serde_json::from_str(json)?;
    if people.len() > MAX_IMPORT_PEOPLE {
        return Err(ImportError::TooMany(people.len()));
    }
    let mut out = Vec::with_capacity(people.len());
    for (index, p) in people.into_iter().enumerate() {
        let invalid = |problem: String| ImportError::Invalid { index, problem };
        estafette_spec::text::check_language(&p.language).map_err(|e| invalid(e.to_string()))?;
        let inbox = match p.home_node {
            Some(home_node) => {
                let is_home = trust
                    .node(&home_node)
                    .is_some_and(|n| n.roles.contains(&estafette_spec::NodeRole::Home));
                if !is_home {
                    return Err(invalid(format!(
                        "{home_node} is not a home node in the trust list"
                    )));
                }
                Some(InboxLocation {
                    home_node,
                    inbox_id: p.inbox_id.unwrap_or_else(|| InboxId::random(&mut OsRng)),
                })
            }
            None => None,
        };
        if p.active && inbox.is_none() {
            return Err(invalid("an active person needs a home node".into()));
        }
        if let Some(address) = &p.postal_address {
            address.validate().map_err(|e| invalid(e.to_string()))?;
        }
        for channel in &p.contact_channels {
            estafette_spec::citizen::check_email(&channel.address)
                .map_err(|e| invalid(e.to_string()))?;
        }
        let mut record = PersonRecord::new(&p.language);
        record.inbox = inbox;
        record.active = p.active;
        record.digital_senders = p.digital_senders;
        record.postal_address = p.postal_address;
        record.name = p.name;
        record.contact_channels = p.contact_channels;
        record.activity.last_session_at = p.last_session_at;
        out.push((p.recipient, record));
    }
    Ok(out)
}

/// Parses, checks and writes an import in one transaction; the number of people.
pub async fn import(
    records: &dyn Records,
    trust: &estafette_spec::TrustList,
    json: &str,
) -> Result<usize, ImportError> {
    let people = parse_import(json, trust)?;
    let count = people.len();
    records
        .write(Box::new(move |records| records.put_people(&people)))
        .await?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(active: bool, senders: Vec<Oin>) -> PersonRecord {
        let mut p = PersonRecord::new("nl");
        p.inbox = Some(InboxLocation {
            home_node: "home.test".parse().unwrap(),
            inbox_id: InboxId::from_bytes([1; 16]),
        });
        p.active = active;
        p.digital_senders = senders;
        p
    }

    /// The stored form of a person as records were written before empty
    /// fields were left out: every field, empty ones as null or [].
    #[derive(Serialize)]
    struct WrittenInFull<'a> {
        inbox: &'a Option<InboxLocation>,
        active: bool,
        digital_senders: &'a [Oin],
        postal_address: &'a Option<PostalAddress>,
        language: &'a str,
        name: &'a Option<String>,
        contact_channels: &'a [ContactChannel],
        representatives: &'a [String],
        activity: Activity,
        inbox_url: &'a Option<String>,
        channel_notice_at: Option<Timestamp>,
        linked_to: &'a Option<Recipient>,
        linked: &'a [Recipient],
        merged_inboxes: &'a [InboxId],
    }

    #[test]
    fn a_person_is_stored_without_empty_fields_and_records_in_full_still_read() {
        let oin: Oin = "00000001003214345000".parse().unwrap();
        let person = person(true, vec![oin]);
        let compact = estafette_spec::cbor::to_vec(&person);
        let p = &person;
        let in_full = estafette_spec::cbor::to_vec(&WrittenInFull {
            inbox: &p.inbox,
            active: p.active,
            digital_senders: &p.digital_senders,
            postal_address: &p.postal_address,
            language: &p.language,
            name: &p.name,
            contact_channels: &p.contact_channels,
            representatives: &p.representatives,
            activity: p.activity,
            inbox_url: &p.inbox_url,
            channel_notice_at: p.channel_notice_at,
            linked_to: &p.linked_to,
            linked: &p.linked,
            merged_inboxes: &p.merged_inboxes,
        });
        // Half the bytes: an inbox, consent and a language, nothing else.
        assert!(
            compact.len() * 2 < in_full.len(),
            "{} vs {} bytes",
            compact.len(),
            in_full.len()
        );
        for bytes in [&compact, &in_full] {
            let read: PersonRecord = estafette_spec::cbor::from_slice(bytes, 4096).unwrap();
            assert_eq!(read, person);
        }
        let paper_only = PersonRecord::new("nl");
        let bytes = estafette_spec::cbor::to_vec(&paper_only);
        let read: PersonRecord = estafette_spec::cbor::from_slice(&bytes, 4096).unwrap();
        assert_eq!(read, paper_only);
    }

    #[test]
    fn digital_only_with_an_active_inbox_and_consent() {
        let oin: Oin = "00000001003214345000".parse().unwrap();
        let other: Oin = "00000003273318220000".parse().unwrap();
        assert_eq!(channel(None, &oin), Channel::Paper(ReasonCode::NoInbox));
        assert_eq!(
            channel(Some(&person(false, vec![oin.clone()])), &oin),
            Channel::Paper(ReasonCode::InboxInactive)
        );
        assert_eq!(
            channel(Some(&person(true, vec![other])), &oin),
            Channel::Paper(ReasonCode::NoConsent)
        );
        assert!(matches!(
            channel(Some(&person(true, vec![oin.clone()])), &oin),
            Channel::Digital(_)
        ));
        let mut no_inbox = person(true, vec![oin.clone()]);
        no_inbox.inbox = None;
        assert_eq!(
            channel(Some(&no_inbox), &oin),
            Channel::Paper(ReasonCode::NoInbox)
        );
    }
}
