//! The queries of the PostgreSQL records' read side, on any client or
//! transaction: a snapshot's, or a change's own (see `postgres.rs`).

use postgres::GenericClient;

use super::pg_statements::Prepared;
use serde::de::DeserializeOwned;

use super::postgres::{PEOPLE_PAGE, id16};
use super::{MAX_PAPER_ITEM_BYTES, MAX_RECORD_BYTES, PaperId, RecordsError, db, decode};
use estafette_spec::citizen::ChangeEntry;
use estafette_spec::mandate::Mandate;
use estafette_spec::{MessageId, Timestamp};

use crate::gateway::{PaperItem, TrackedLetter};
use crate::mandates::MAX_MANDATES_PER_PERSON;
use crate::registry::PersonRecord;

pub fn person(c: &mut impl GenericClient, key: &str) -> Result<Option<PersonRecord>, RecordsError> {
    c.query_opt_prepared("SELECT record FROM people WHERE recipient = $1", &[&key])
        .map_err(db)?
        .map(|r| decode("person", r.get::<_, &[u8]>(0), MAX_RECORD_BYTES))
        .transpose()
}

/// Up to [`PEOPLE_PAGE`] people after `after`, in key order.
pub fn people_after(
    c: &mut impl GenericClient,
    after: &str,
) -> Result<Vec<(String, Vec<u8>)>, RecordsError> {
    Ok(c.query_prepared(
        "SELECT recipient, record FROM people WHERE recipient > $1 ORDER BY recipient LIMIT $2",
        &[&after, &PEOPLE_PAGE],
    )
    .map_err(db)?
    .into_iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect())
}

pub fn history(
    c: &mut impl GenericClient,
    key: &str,
    limit: usize,
) -> Result<Vec<ChangeEntry>, RecordsError> {
    let rows = c
        .query_prepared(
            "SELECT entry FROM (SELECT seq, entry FROM history WHERE recipient = $1 \
             ORDER BY seq DESC LIMIT $2) newest ORDER BY seq",
            &[&key, &(limit.min(i64::MAX as usize) as i64)],
        )
        .map_err(db)?;
    rows.iter()
        .map(|r| decode("history entry", r.get::<_, &[u8]>(0), MAX_RECORD_BYTES))
        .collect()
}

pub fn mandate(c: &mut impl GenericClient, id: &[u8]) -> Result<Option<Mandate>, RecordsError> {
    c.query_opt_prepared("SELECT mandate FROM mandates WHERE id = $1", &[&id])
        .map_err(db)?
        .map(|r| decode("mandate", r.get::<_, &[u8]>(0), MAX_RECORD_BYTES))
        .transpose()
}

pub fn mandates_by(
    c: &mut impl GenericClient,
    sql: &'static str,
    who: &str,
) -> Result<Vec<Mandate>, RecordsError> {
    let rows = c
        .query_prepared(sql, &[&who, &(MAX_MANDATES_PER_PERSON as i64)])
        .map_err(db)?;
    rows.iter()
        .map(|r| decode("mandate", r.get::<_, &[u8]>(0), MAX_RECORD_BYTES))
        .collect()
}

pub fn by_message<T: DeserializeOwned>(
    c: &mut impl GenericClient,
    sql: &'static str,
    message: &[u8],
    (what, limit): (&'static str, usize),
) -> Result<Option<T>, RecordsError> {
    c.query_opt_prepared(sql, &[&message])
        .map_err(db)?
        .map(|r| decode(what, r.get::<_, &[u8]>(0), limit))
        .transpose()
}

pub fn due_letters(
    c: &mut impl GenericClient,
    by: Timestamp,
    limit: usize,
) -> Result<Vec<(MessageId, TrackedLetter)>, RecordsError> {
    let rows = c
        .query_prepared(
            "SELECT message_id, letter FROM tracking WHERE due_at <= $1 ORDER BY due_at LIMIT $2",
            &[
                &(by.0.min(i64::MAX as u64 - 1) as i64),
                &(limit.min(i64::MAX as usize) as i64),
            ],
        )
        .map_err(db)?;
    rows.iter()
        .map(|r| {
            Ok((
                MessageId::from_bytes(id16("message id", r.get::<_, &[u8]>(0))?),
                decode("followed letter", r.get::<_, &[u8]>(1), MAX_RECORD_BYTES)?,
            ))
        })
        .collect()
}

pub fn count(
    c: &mut impl GenericClient,
    sql: &'static str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
) -> Result<usize, RecordsError> {
    let n: i64 = c.query_one_prepared(sql, params).map_err(db)?.get(0);
    Ok(n.max(0) as usize)
}

pub fn paper_copy(
    c: &mut impl GenericClient,
    message: &[u8],
) -> Result<Option<Vec<u8>>, RecordsError> {
    Ok(c.query_opt_prepared(
        "SELECT signed_letter FROM paper_copies WHERE message_id = $1",
        &[&message],
    )
    .map_err(db)?
    .map(|r| r.get(0)))
}

pub fn paper_queue(c: &mut impl GenericClient) -> Result<Vec<(PaperId, PaperItem)>, RecordsError> {
    let rows = c
        .query_prepared("SELECT id, item FROM paper_queue ORDER BY id", &[])
        .map_err(db)?;
    rows.iter()
        .map(|r| {
            Ok((
                PaperId(id16("paper id", r.get::<_, &[u8]>(0))?),
                decode("paper item", r.get::<_, &[u8]>(1), MAX_PAPER_ITEM_BYTES)?,
            ))
        })
        .collect()
}

pub fn paper(c: &mut impl GenericClient, id: &[u8]) -> Result<Option<PaperItem>, RecordsError> {
    c.query_opt_prepared("SELECT item FROM paper_queue WHERE id = $1", &[&id])
        .map_err(db)?
        .map(|r| decode("paper item", r.get::<_, &[u8]>(0), MAX_PAPER_ITEM_BYTES))
        .transpose()
}

pub fn expired_nonces(
    c: &mut impl GenericClient,
    before: Timestamp,
    limit: usize,
) -> Result<Vec<Vec<u8>>, RecordsError> {
    Ok(c.query_prepared(
        "SELECT nonce FROM nonces WHERE expires_at < $1 ORDER BY expires_at LIMIT $2",
        &[&(before.0 as i64), &(limit.min(i64::MAX as usize) as i64)],
    )
    .map_err(db)?
    .into_iter()
    .map(|r| r.get(0))
    .collect())
}

pub fn evidence_for(
    c: &mut impl GenericClient,
    message: &[u8],
) -> Result<Vec<Vec<u8>>, RecordsError> {
    Ok(c.query_prepared(
        "SELECT evidence FROM evidence WHERE message_id = $1",
        &[&message],
    )
    .map_err(db)?
    .into_iter()
    .map(|r| r.get(0))
    .collect())
}

pub fn paper_waiting(
    c: &mut impl GenericClient,
    limit: usize,
) -> Result<Vec<PaperId>, RecordsError> {
    let limit = limit.min(i64::MAX as usize) as i64;
    let rows = c
        .query_prepared(
            "SELECT id FROM paper_queue WHERE waiting ORDER BY id LIMIT $1",
            &[&limit],
        )
        .map_err(db)?;
    rows.iter()
        .map(|r| Ok(PaperId(id16("paper id", r.get::<_, &[u8]>(0))?)))
        .collect()
}

pub fn report_counts(
    c: &mut impl GenericClient,
) -> Result<std::collections::BTreeMap<String, i64>, RecordsError> {
    let rows = c
        .query_prepared("SELECT name, n FROM report_counts", &[])
        .map_err(db)?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Active inboxes away since `away_by` or longer with a followed letter:
/// an index range of the away ones, each probed in the letters' index.
pub fn dormant_inboxes(
    c: &mut impl GenericClient,
    away_by: Timestamp,
) -> Result<usize, RecordsError> {
    let away_by = away_by.0.min(i64::MAX as u64) as i64;
    count(
        c,
        "SELECT count(*) FROM people p WHERE p.away_since IS NOT NULL AND p.away_since <= $1 \
         AND EXISTS (SELECT 1 FROM tracking t WHERE t.recipient = p.recipient)",
        &[&away_by],
    )
}
