//! The operator report's counters in redb: counters by name, the index
//! of active inboxes by last session and the index of paper waiting for
//! the spool, changed with each write of a person or a paper item in its
//! transaction; a store from before them is counted when it is opened.

use ::redb::{ReadableTable, TableDefinition};
use estafette_relay::store::Store;
use estafette_spec::Timestamp;

use super::{
    MAX_PAPER_ITEM_BYTES, MAX_RECORD_BYTES, PAPER, PEOPLE, PaperId, RecordsError, Source, UNREAD,
    Writing, db, decode, of,
};
use crate::gateway::PaperItem;
use crate::registry::PersonRecord;
use crate::report::tally;

/// The operator report's counters: name → count ([`crate::report::tally`]).
const REPORT_COUNTS: TableDefinition<&str, i64> = TableDefinition::new("gateway_report_counts");
/// In [`REPORT_COUNTS`]: the store has been counted (a store from before
/// the counters is counted once, when it is opened).
const COUNTED: &str = "#counted";
/// Active inboxes by their last session (0: never): (last session,
/// recipient) → ().
const AWAY: TableDefinition<(u64, &str), ()> =
    TableDefinition::new("gateway_active_by_last_session");
/// Paper items waiting for the print spool: id → ().
const PAPER_WAITING: TableDefinition<[u8; 16], ()> = TableDefinition::new("gateway_paper_waiting");

/// Counts a store from before the report's counters once: every person's
/// and paper item's tally, the dormancy index and the waiting paper, in one
/// transaction with the mark that it was done. Nothing for a store counted
/// already (a new store is counted at once, with nothing in it).
pub(super) fn count_from_before(store: &Store) -> Result<(), RecordsError> {
    let txn = store.database().begin_write().map_err(db)?;
    {
        let mut counts = txn.open_table(REPORT_COUNTS).map_err(db)?;
        if counts.get(COUNTED).map_err(db)?.is_some() {
            return Ok(());
        }
        let mut totals: std::collections::BTreeMap<String, i64> = Default::default();
        let mut away = txn.open_table(AWAY).map_err(db)?;
        for item in txn.open_table(PEOPLE).map_err(db)?.iter().map_err(db)? {
            let (k, v) = item.map_err(db)?;
            let person: PersonRecord = decode("person", v.value(), MAX_RECORD_BYTES)?;
            for name in tally::person(&person) {
                *totals.entry(name).or_default() += 1;
            }
            if let Some(since) = tally::away_since(&person) {
                away.insert((since, k.value()), ()).map_err(db)?;
            }
        }
        let mut waiting = txn.open_table(PAPER_WAITING).map_err(db)?;
        for item in txn.open_table(PAPER).map_err(db)?.iter().map_err(db)? {
            let (k, v) = item.map_err(db)?;
            let paper: PaperItem = decode("paper item", v.value(), MAX_PAPER_ITEM_BYTES)?;
            for name in tally::paper(&paper) {
                *totals.entry(name).or_default() += 1;
            }
            if tally::waiting(&paper) {
                waiting.insert(k.value(), ()).map_err(db)?;
            }
        }
        for (name, n) in &totals {
            counts.insert(name.as_str(), n).map_err(db)?;
        }
        counts.insert(COUNTED, 1).map_err(db)?;
    }
    txn.commit().map_err(db)
}

/// Makes the store at `path` look as if it were from before the report's
/// counters (for the test that it is counted when opened).
#[cfg(test)]
pub(in crate::store) fn forget_counts(path: &std::path::Path) -> Result<(), RecordsError> {
    let database = ::redb::Database::open(path).map_err(db)?;
    let txn = database.begin_write().map_err(db)?;
    txn.delete_table(REPORT_COUNTS).map_err(db)?;
    txn.delete_table(PAPER_WAITING).map_err(db)?;
    txn.delete_table(AWAY).map_err(db)?;
    txn.commit().map_err(db)
}

pub(super) fn paper_waiting<S: Source>(
    source: &S,
    limit: usize,
) -> Result<Vec<PaperId>, RecordsError> {
    let Some(table) = source.open(PAPER_WAITING)? else {
        return Ok(vec![]);
    };
    let mut out = Vec::new();
    for item in table.iter().map_err(db)?.take(limit) {
        out.push(PaperId(item.map_err(db)?.0.value()));
    }
    Ok(out)
}

pub(super) fn report_counts<S: Source>(
    source: &S,
) -> Result<std::collections::BTreeMap<String, i64>, RecordsError> {
    let Some(table) = source.open(REPORT_COUNTS)? else {
        return Ok(Default::default());
    };
    let mut out = std::collections::BTreeMap::new();
    for item in table.iter().map_err(db)? {
        let (name, n) = item.map_err(db)?;
        if name.value() != COUNTED {
            out.insert(name.value().to_owned(), n.value());
        }
    }
    Ok(out)
}

pub(super) fn dormant_inboxes<S: Source>(
    source: &S,
    away_by: Timestamp,
) -> Result<usize, RecordsError> {
    let (Some(away), Some(unread)) = (source.open(AWAY)?, source.open(UNREAD)?) else {
        return Ok(0);
    };
    let mut dormant = 0;
    for item in away.iter().map_err(db)? {
        let (key, _) = item.map_err(db)?;
        let (since, recipient) = key.value();
        if since > away_by.0 {
            break;
        }
        let mut letters = unread
            .range(of(recipient, [0u8; 16], [0xff; 16]))
            .map_err(db)?;
        if letters.next().is_some() {
            dormant += 1;
        }
    }
    Ok(dormant)
}

impl Writing<'_, '_> {
    /// Adds `changes` to the report's counters.
    fn add_counts(&mut self, changes: &[(String, i64)]) -> Result<(), RecordsError> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut counts = self.txn.open_table(REPORT_COUNTS).map_err(db)?;
        for (name, change) in changes {
            let n = counts
                .get(name.as_str())
                .map_err(db)?
                .map_or(0, |n| n.value());
            counts.insert(name.as_str(), n + change).map_err(db)?;
        }
        Ok(())
    }

    /// Counts a person's entry (`key`) that replaced `before`, and files it
    /// in the dormancy index.
    pub(super) fn count_person(
        &mut self,
        key: &str,
        before: Option<&PersonRecord>,
        record: &PersonRecord,
    ) -> Result<(), RecordsError> {
        let (old_tally, old_away) =
            before.map_or((vec![], None), |b| (tally::person(b), tally::away_since(b)));
        self.add_counts(&tally::changes(&old_tally, &tally::person(record)))?;
        let new_away = tally::away_since(record);
        if old_away != new_away {
            let mut away = self.txn.open_table(AWAY).map_err(db)?;
            if let Some(since) = old_away {
                away.remove((since, key)).map_err(db)?;
            }
            if let Some(since) = new_away {
                away.insert((since, key), ()).map_err(db)?;
            }
        }
        Ok(())
    }

    /// Counts a paper item that replaced `before`, and files it as
    /// waiting for the spool or not.
    pub(super) fn count_paper(
        &mut self,
        id: PaperId,
        before: Option<&PaperItem>,
        item: &PaperItem,
    ) -> Result<(), RecordsError> {
        let old_tally = before.map(tally::paper).unwrap_or_default();
        self.add_counts(&tally::changes(&old_tally, &tally::paper(item)))?;
        let mut waiting = self.txn.open_table(PAPER_WAITING).map_err(db)?;
        if tally::waiting(item) {
            waiting.insert(&id.0, ()).map_err(db)?;
        } else {
            waiting.remove(&id.0).map_err(db)?;
        }
        Ok(())
    }
}
