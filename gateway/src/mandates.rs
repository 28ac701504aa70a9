//! Mandates in the gateway's store: voluntary mandates and legal
//! representations, indexed by holder and by representative. The rules of
//! who may act when are `estafette_spec::mandate`; this is their storage and
//! the questions the desk and the monitor ask of it.

use estafette_relay::store::StoreError;
use estafette_spec::citizen::PostalAddress;
use estafette_spec::mandate::{Mandate, MandateId};
use estafette_spec::{Oin, Recipient, Timestamp, TrustList};
use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use crate::registry::{self, PersonRecord};

pub(crate) const MANDATES: TableDefinition<[u8; 16], &[u8]> =
    TableDefinition::new("registry_mandates");
pub(crate) const BY_HOLDER: TableDefinition<(&str, [u8; 16]), ()> =
    TableDefinition::new("registry_mandates_by_holder");
pub(crate) const BY_REPRESENTATIVE: TableDefinition<(&str, [u8; 16]), ()> =
    TableDefinition::new("registry_mandates_by_representative");

/// Most mandates one person may give or hold.
pub const MAX_MANDATES_PER_PERSON: usize = 1_000;

fn db_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Database(e.to_string())
}

fn decode(bytes: &[u8]) -> Result<Mandate, StoreError> {
    estafette_spec::cbor::from_slice(bytes, 64 * 1024)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Writes a mandate and its two index entries.
pub fn put(txn: &WriteTransaction, m: &Mandate) -> Result<(), StoreError> {
    txn.open_table(MANDATES)
        .map_err(db_err)?
        .insert(m.id.as_bytes(), estafette_spec::cbor::to_vec(m).as_slice())
        .map_err(db_err)?;
    let holder = m.holder.to_string();
    txn.open_table(BY_HOLDER)
        .map_err(db_err)?
        .insert((holder.as_str(), *m.id.as_bytes()), ())
        .map_err(db_err)?;
    let rep = m.representative.person.to_string();
    txn.open_table(BY_REPRESENTATIVE)
        .map_err(db_err)?
        .insert((rep.as_str(), *m.id.as_bytes()), ())
        .map_err(db_err)?;
    Ok(())
}

pub fn get(txn: &WriteTransaction, id: &MandateId) -> Result<Option<Mandate>, StoreError> {
    let table = txn.open_table(MANDATES).map_err(db_err)?;
    let found = table.get(id.as_bytes()).map_err(db_err)?;
    found.map(|v| decode(v.value())).transpose()
}

/// The mandates indexed under `who` in `index`, inside a write transaction.
pub fn listed(
    txn: &WriteTransaction,
    index: TableDefinition<(&str, [u8; 16]), ()>,
    who: &Recipient,
) -> Result<Vec<Mandate>, StoreError> {
    let ids: Vec<[u8; 16]> = {
        let table = txn.open_table(index).map_err(db_err)?;
        let key = who.to_string();
        let mut ids = Vec::new();
        for item in table
            .range((key.as_str(), [0u8; 16])..=(key.as_str(), [0xff; 16]))
            .map_err(db_err)?
            .take(MAX_MANDATES_PER_PERSON)
        {
            ids.push(item.map_err(db_err)?.0.value().1);
        }
        ids
    };
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(m) = get(txn, &MandateId::from_bytes(id))? {
            out.push(m);
        }
    }
    Ok(out)
}

/// A holder's mandates, for readers outside a transaction (the monitor).
pub fn of_holder(db: &redb::Database, holder: &Recipient) -> Result<Vec<Mandate>, StoreError> {
    let txn = db.begin_read().map_err(db_err)?;
    let index = match txn.open_table(BY_HOLDER) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(vec![]),
        Err(e) => return Err(db_err(e)),
    };
    let table = txn.open_table(MANDATES).map_err(db_err)?;
    let key = holder.to_string();
    let mut out = Vec::new();
    for item in index
        .range((key.as_str(), [0u8; 16])..=(key.as_str(), [0xff; 16]))
        .map_err(db_err)?
        .take(MAX_MANDATES_PER_PERSON)
    {
        let id = item.map_err(db_err)?.0.value().1;
        if let Some(v) = table.get(&id).map_err(db_err)? {
            out.push(decode(v.value())?);
        }
    }
    Ok(out)
}

/// Where a letter's notifications and paper go: the holder, or the
/// representative whose mandate asks for the correspondence.
#[derive(Debug, Clone)]
pub struct Correspondent {
    /// The verified, working e-mail address, if any.
    pub email: Option<String>,
    pub language: String,
    pub inbox_url: Option<String>,
    pub address: Option<PostalAddress>,
    /// The first line of the address block.
    pub addressee: String,
    /// Whose letter it is, when the correspondent is a representative.
    pub on_behalf_of: Option<String>,
}

/// The correspondent for a letter from `sender` to `holder` (whose entry is `person`).
pub fn correspondent(
    db: &redb::Database,
    holder: &Recipient,
    person: &PersonRecord,
    sender: Option<&Oin>,
    now: Timestamp,
    trust: &TrustList,
) -> Result<Correspondent, StoreError> {
    let own = Correspondent {
        email: person.working_email().map(str::to_owned),
        language: person.language.clone(),
        inbox_url: person.inbox_url.clone(),
        address: person.postal_address.clone(),
        addressee: person.name.clone().unwrap_or_default(),
        on_behalf_of: None,
    };
    let Some(sender) = sender else {
        return Ok(own);
    };
    let mandates = of_holder(db, holder)?;
    let Some(m) = estafette_spec::mandate::correspondence_for(&mandates, sender, now, trust) else {
        return Ok(own);
    };
    let rep = registry::lookup(db, &m.representative.person)?;
    Ok(Correspondent {
        email: rep
            .as_ref()
            .and_then(|r| r.working_email().map(str::to_owned)),
        language: rep
            .as_ref()
            .map(|r| r.language.clone())
            .unwrap_or(own.language),
        inbox_url: rep.as_ref().and_then(|r| r.inbox_url.clone()),
        address: m
            .office_address
            .clone()
            .or_else(|| rep.as_ref().and_then(|r| r.postal_address.clone())),
        addressee: m.representative.label(),
        on_behalf_of: Some(own.addressee),
    })
}
