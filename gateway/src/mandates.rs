//! Mandates in the gateway's records: voluntary mandates and legal
//! representations, kept by `crate::store` indexed by holder and by
//! representative. The rules of who may act when are
//! `estafette_spec::mandate`; this is the question the monitor and the
//! paper queue ask of them: to whom does a letter go.

use estafette_spec::citizen::PostalAddress;
use estafette_spec::{Oin, Recipient, Timestamp, TrustList};

use crate::registry::PersonRecord;
use crate::store::{ReadRecords, RecordsError};

/// Most mandates one person may give or hold.
pub const MAX_MANDATES_PER_PERSON: usize = 1_000;

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
    records: &dyn ReadRecords,
    holder: &Recipient,
    person: &PersonRecord,
    sender: Option<&Oin>,
    now: Timestamp,
    trust: &TrustList,
) -> Result<Correspondent, RecordsError> {
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
    let mandates = records.mandates_of_holder(holder)?;
    let Some(m) = estafette_spec::mandate::correspondence_for(&mandates, sender, now, trust) else {
        return Ok(own);
    };
    let rep = records
        .person_entry(&m.representative.person)?
        .map(|(_, p)| p);
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
