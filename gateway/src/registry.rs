//! The registry: who has an inbox where, whether it is active, and which
//! senders the person chose digital mail for. Kept in the gateway node's
//! database, keyed by the recipient's text form (`bsn:…` or `eidas:…`).
//! Later issues fill in contact channels, postal addresses and
//! representatives; here are the schema, lookups and an admin import.

use estafette_relay::redb::{ReadableDatabase, TableDefinition};
use estafette_relay::store::{Op, StoreError};
use estafette_spec::{InboxId, NodeId, Oin, ReasonCode, Recipient};
use rand_core::OsRng;
use serde::{Deserialize, Serialize};

pub(crate) const PEOPLE: TableDefinition<&str, &[u8]> = TableDefinition::new("registry_people");

/// Most people in one import.
pub const MAX_IMPORT_PEOPLE: usize = 100_000;

/// A postal address, as printed on a letter (lines in order), and its country.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostalAddress {
    pub lines: Vec<String>,
    pub country: estafette_spec::CountryCode,
}

/// One person in the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonRecord {
    /// The inbox, once the person registered at a home node.
    pub inbox: Option<InboxLocation>,
    /// Only the holder activates an inbox; until then everything goes on paper.
    pub active: bool,
    /// Senders the holder chose digital mail for; every other sender: paper.
    pub digital_senders: Vec<Oin>,
    pub postal_address: Option<PostalAddress>,
    /// Preferred language of notifications and paper letters (BCP 47).
    pub language: String,
    /// Where notifications go (filled by the holder in later issues).
    #[serde(default)]
    pub contact_channels: Vec<ContactChannel>,
    /// People or organisations acting for this person (mandates come later).
    #[serde(default)]
    pub representatives: Vec<String>,
}

/// A notification channel of a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactChannel {
    /// `email` for now; SMS and app push later.
    pub kind: String,
    pub address: String,
    /// Only a verified channel counts for digital delivery.
    pub verified: bool,
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

fn decode(bytes: &[u8]) -> Result<PersonRecord, StoreError> {
    estafette_spec::cbor::from_slice(bytes, 64 * 1024)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Looks a person up.
pub fn lookup(
    db: &estafette_relay::redb::Database,
    recipient: &Recipient,
) -> Result<Option<PersonRecord>, StoreError> {
    let txn = db
        .begin_read()
        .map_err(|e| StoreError::Database(e.to_string()))?;
    let table = match txn.open_table(PEOPLE) {
        Ok(t) => t,
        Err(estafette_relay::redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(StoreError::Database(e.to_string())),
    };
    let key = recipient.to_string();
    let found = table
        .get(key.as_str())
        .map_err(|e| StoreError::Database(e.to_string()))?;
    found.map(|v| decode(v.value())).transpose()
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
    #[serde(default)]
    pub contact_channels: Vec<ContactChannel>,
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
    Store(#[from] StoreError),
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
        out.push((
            p.recipient,
            PersonRecord {
                inbox,
                active: p.active,
                digital_senders: p.digital_senders,
                postal_address: p.postal_address,
                language: p.language,
                contact_channels: p.contact_channels,
                representatives: vec![],
            },
        ));
    }
    Ok(out)
}

/// Parses, checks and writes an import in one transaction; the number of people.
pub async fn import(
    store: &estafette_relay::Store,
    trust: &estafette_spec::TrustList,
    json: &str,
) -> Result<usize, ImportError> {
    let people = parse_import(json, trust)?;
    let count = people.len();
    store.write(import_op(people)).await?;
    Ok(count)
}

/// The write of an import: all people in one transaction.
pub fn import_op(people: Vec<(Recipient, PersonRecord)>) -> Op {
    Op::Apply(Box::new(move |_tables, txn| {
        let mut table = txn
            .open_table(PEOPLE)
            .map_err(|e| StoreError::Database(e.to_string()))?;
        for (recipient, record) in people {
            let key = recipient.to_string();
            let value = estafette_spec::cbor::to_vec(&record);
            table
                .insert(key.as_str(), value.as_slice())
                .map_err(|e| StoreError::Database(e.to_string()))?;
        }
        Ok(())
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(active: bool, senders: Vec<Oin>) -> PersonRecord {
        PersonRecord {
            inbox: Some(InboxLocation {
                home_node: "home.test".parse().unwrap(),
                inbox_id: InboxId::from_bytes([1; 16]),
            }),
            active,
            digital_senders: senders,
            postal_address: None,
            language: "nl".into(),
            contact_channels: vec![],
            representatives: vec![],
        }
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
