//! The operator report's counters on PostgreSQL (`report_counts`,
//! migration V7): each row of `people` and `paper_queue` keeps its tally,
//! a write reads the old one under the row lock in the same statement,
//! and a change's counter changes are written once, at its end, in name
//! order. Rows from before the counters are counted when an instance
//! connects.

use std::collections::HashMap;

use estafette_spec::Recipient;

use super::pg_statements::Prepared;
use super::postgres::Writing;
use super::{MAX_PAPER_ITEM_BYTES, MAX_RECORD_BYTES, RecordsError, db, decode};
use crate::gateway::PaperItem;
use crate::registry::PersonRecord;
use crate::report::tally;

/// Replaces a person's entry under a row lock, giving what the old one
/// counted for, or makes a new one (none of either when another
/// transaction made it meanwhile); the letters of the person's identities
/// are due to be looked at.
pub(super) const PUT_PERSON: &str = "WITH put AS (UPDATE people p SET record = $2, tally = $3, away_since = $4 \
     FROM (SELECT recipient, tally FROM people WHERE recipient = $1 FOR UPDATE) old \
     WHERE p.recipient = old.recipient RETURNING old.tally), \
     made AS (INSERT INTO people (recipient, record, tally, away_since) \
     SELECT $1, $2, $3, $4 WHERE NOT EXISTS (SELECT 1 FROM put) \
     ON CONFLICT (recipient) DO NOTHING RETURNING 1), \
     due AS (UPDATE tracking SET due_at = 0 WHERE recipient = ANY($5) AND due_at <> 0) \
     SELECT (SELECT tally FROM put), EXISTS (SELECT 1 FROM put), EXISTS (SELECT 1 FROM made)";

/// [`PUT_PERSON`] for many people at once (`$1` keys, `$2` records, `$3`
/// tallies joined by commas, `$4` away_since, `$5` every identity whose
/// letters become due): the existing entries replaced under row locks,
/// giving their keys and old tallies; the new ones made, giving their keys.
/// A key in neither was made by another transaction meanwhile.
pub(super) const PUT_PEOPLE: &str = "WITH input AS (SELECT * FROM \
     unnest($1::text[], $2::bytea[], $3::text[], $4::bigint[]) AS i (recipient, record, tally, away_since)), \
     old AS (SELECT p.recipient, p.tally FROM people p JOIN input i ON i.recipient = p.recipient FOR UPDATE OF p), \
     put AS (UPDATE people p SET record = i.record, tally = string_to_array(i.tally, ','), away_since = i.away_since \
     FROM input i JOIN old o ON o.recipient = i.recipient WHERE p.recipient = i.recipient RETURNING p.recipient), \
     made AS (INSERT INTO people (recipient, record, tally, away_since) \
     SELECT i.recipient, i.record, string_to_array(i.tally, ','), i.away_since FROM input i \
     WHERE NOT EXISTS (SELECT 1 FROM old o WHERE o.recipient = i.recipient) \
     ON CONFLICT (recipient) DO NOTHING RETURNING recipient), \
     due AS (UPDATE tracking SET due_at = 0 WHERE recipient = ANY($5) AND due_at <> 0) \
     SELECT recipient, tally, true FROM old UNION ALL SELECT recipient, NULL, false FROM made";

/// People per [`PUT_PEOPLE`] statement.
pub(super) const PUT_PEOPLE_BATCH: usize = 1_000;

/// As [`PUT_PERSON`], for an item of the paper queue.
pub(super) const PUT_PAPER: &str = "WITH put AS (UPDATE paper_queue p SET item = $2, tally = $3, waiting = $4 \
     FROM (SELECT id, tally FROM paper_queue WHERE id = $1 FOR UPDATE) old \
     WHERE p.id = old.id RETURNING old.tally), \
     made AS (INSERT INTO paper_queue (id, item, tally, waiting) \
     SELECT $1, $2, $3, $4 WHERE NOT EXISTS (SELECT 1 FROM put) \
     ON CONFLICT (id) DO NOTHING RETURNING 1) \
     SELECT (SELECT tally FROM put), EXISTS (SELECT 1 FROM put), EXISTS (SELECT 1 FROM made)";

/// Adds to the report's counters, in name order (so that two transactions
/// lock the counters' rows in the same order).
const ADD_COUNTS: &str = "INSERT INTO report_counts (name, n) \
     SELECT * FROM unnest($1::text[], $2::bigint[]) \
     ON CONFLICT (name) DO UPDATE SET n = report_counts.n + EXCLUDED.n";

/// Tries of a counted write whose entry another transaction made meanwhile
/// (the second finds it).
const PUT_TRIES: usize = 3;

impl Writing<'_, '_> {
    /// Writes what the change added to the report's counters: call before
    /// the commit.
    pub(super) fn finish(self) -> Result<(), RecordsError> {
        let counts = self.counts.into_inner();
        let (names, changes): (Vec<String>, Vec<i64>) =
            counts.into_iter().filter(|(_, n)| *n != 0).unzip();
        if names.is_empty() {
            return Ok(());
        }
        self.tx
            .borrow_mut()
            .execute_prepared(ADD_COUNTS, &[&names, &changes])
            .map_err(db)?;
        Ok(())
    }

    /// Notes that an entry counting for `old` now counts for `new`.
    pub(super) fn note_counts(&self, old: &[String], new: &[String]) {
        let mut totals = self.counts.borrow_mut();
        for (name, change) in tally::changes(old, new) {
            *totals.entry(name).or_default() += change;
        }
    }

    /// Writes `batch` (at most [`PUT_PEOPLE_BATCH`] people) with one
    /// [`PUT_PEOPLE`] statement, noting what changed in the counters. Gives
    /// the people it could not write that way, in order, for the caller to
    /// write one by one before anything else: a key another transaction
    /// made meanwhile, and a key repeated in `batch` (each of its entries,
    /// so that the last one still wins).
    pub(super) fn put_people_batch<'p>(
        &self,
        batch: &'p [(Recipient, PersonRecord)],
    ) -> Result<Vec<&'p (Recipient, PersonRecord)>, RecordsError> {
        let mut seen: HashMap<&Recipient, usize> = HashMap::with_capacity(batch.len());
        for (key, _) in batch {
            *seen.entry(key).or_default() += 1;
        }
        let (now, repeated): (Vec<_>, Vec<_>) =
            batch.iter().partition(|(key, _)| seen.get(key) == Some(&1));
        let mut left = self.put_people_statement(&now)?;
        left.extend(repeated);
        Ok(left)
    }

    /// One [`PUT_PEOPLE`] statement for `people` (distinct keys).
    fn put_people_statement<'p>(
        &self,
        people: &[&'p (Recipient, PersonRecord)],
    ) -> Result<Vec<&'p (Recipient, PersonRecord)>, RecordsError> {
        if people.is_empty() {
            return Ok(Vec::new());
        }
        let mut keys = Vec::with_capacity(people.len());
        let (mut records, mut tallies, mut away) = (Vec::new(), Vec::new(), Vec::new());
        let (mut counts, mut identities) = (Vec::new(), Vec::new());
        for (key, record) in people.iter().copied() {
            keys.push(key.to_string());
            records.push(super::encode(record));
            let names = tally::person(record);
            // Counter names are ours and hold no comma (the statement splits on it).
            debug_assert!(names.iter().all(|n| !n.contains(',')));
            tallies.push(names.join(","));
            counts.push(names);
            away.push(tally::away_since(record).map(|s| s.min(i64::MAX as u64) as i64));
            identities.push(key.to_string());
            identities.extend(record.linked.iter().map(ToString::to_string));
        }
        let rows = self
            .tx
            .borrow_mut()
            .query_prepared(PUT_PEOPLE, &[&keys, &records, &tallies, &away, &identities])
            .map_err(db)?;
        // Each written key: the old tally of a replaced entry, none of a new one.
        let mut written: HashMap<String, Option<Vec<String>>> = rows
            .iter()
            .map(|row| {
                let (key, old, replaced): (String, Option<Vec<String>>, bool) =
                    (row.get(0), row.get(1), row.get(2));
                (key, replaced.then(|| old.unwrap_or_default()))
            })
            .collect();
        let mut left = Vec::new();
        for ((entry, key), new) in people.iter().copied().zip(&keys).zip(&counts) {
            match written.remove(key) {
                Some(old) => self.note_counts(&old.unwrap_or_default(), new),
                None => left.push(entry),
            }
        }
        Ok(left)
    }

    /// Runs a [`PUT_PERSON`]-shaped statement for an entry that counts for
    /// `counts`, and notes what changed in the counters.
    pub(super) fn put_counted(
        &self,
        sql: &'static str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
        counts: &[String],
    ) -> Result<(), RecordsError> {
        for _ in 0..PUT_TRIES {
            let row = self
                .tx
                .borrow_mut()
                .query_one_prepared(sql, params)
                .map_err(db)?;
            let (old, replaced, made): (Option<Vec<String>>, bool, bool) =
                (row.get(0), row.get(1), row.get(2));
            if replaced || made {
                self.note_counts(&old.unwrap_or_default(), counts);
                return Ok(());
            }
        }
        Err(RecordsError::Database(
            "an entry was made by another transaction and then could not be found".into(),
        ))
    }
}

/// Entries read per round trip while counting rows from before the
/// report's counters.
const UNCOUNTED_PAGE: i64 = 100;

/// Counts the people and paper items written before the report's counters
/// (migration V7), in one transaction that instances starting together
/// take one after the other; how many. Nothing when every row is counted.
pub(super) fn count_from_before(client: &mut postgres::Client) -> Result<u64, RecordsError> {
    let mut tx = client.transaction().map_err(db)?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('estafette report counts'))",
        &[],
    )
    .map_err(db)?;
    let counted;
    {
        let writing = Writing::new(&mut tx);
        let people = each_uncounted(
            &writing,
            "SELECT recipient, record FROM people WHERE tally IS NULL ORDER BY recipient LIMIT $1",
            |row| {
                let key: String = row.get(0);
                let person: PersonRecord = decode("person", row.get(1), MAX_RECORD_BYTES)?;
                let counts = tally::person(&person);
                let away = tally::away_since(&person).map(|s| s.min(i64::MAX as u64) as i64);
                writing.exec(
                    "UPDATE people SET tally = $2, away_since = $3 WHERE recipient = $1",
                    &[&key, &counts, &away],
                )?;
                writing.note_counts(&[], &counts);
                Ok(())
            },
        )?;
        let paper = each_uncounted(
            &writing,
            "SELECT id, item FROM paper_queue WHERE tally IS NULL ORDER BY id LIMIT $1",
            |row| {
                let id: Vec<u8> = row.get(0);
                let item: PaperItem = decode("paper item", row.get(1), MAX_PAPER_ITEM_BYTES)?;
                let counts = tally::paper(&item);
                writing.exec(
                    "UPDATE paper_queue SET tally = $2, waiting = $3 WHERE id = $1",
                    &[&id, &counts, &tally::waiting(&item)],
                )?;
                writing.note_counts(&[], &counts);
                Ok(())
            },
        )?;
        counted = people + paper;
        writing.finish()?;
    }
    tx.commit().map_err(db)?;
    Ok(counted)
}

/// Runs `count` on each row `select` finds, a page (`$1` rows) at a time
/// until it finds none (`count` makes a row no longer match); how many.
fn each_uncounted(
    writing: &Writing<'_, '_>,
    select: &'static str,
    mut count: impl FnMut(&postgres::Row) -> Result<(), RecordsError>,
) -> Result<u64, RecordsError> {
    let mut counted = 0;
    loop {
        let rows = writing.with(|c| c.query_prepared(select, &[&UNCOUNTED_PAGE]).map_err(db))?;
        if rows.is_empty() {
            return Ok(counted);
        }
        for row in &rows {
            count(row)?;
            counted += 1;
        }
    }
}
