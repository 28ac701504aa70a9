//! The operator's report: which active inboxes hold unread mail without a
//! visit for months, which have no working notification channel, and what
//! went on paper and why. Served on the admin endpoint (`GET /report`,
//! `estafette-gateway report`) and as metrics. Counts only: no BSN, no
//! address, nothing of a letter.

use std::collections::BTreeMap;

use estafette_relay::store::StoreError;
use estafette_spec::Timestamp;
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};
use serde::{Deserialize, Serialize};

use crate::gateway::{Gateway, PAPER, PaperItem, UNREAD};
use crate::registry::{PEOPLE, PersonRecord};

const MONTH_S: u64 = 30 * 24 * 3600;
/// Longest look-back of the dormancy figure.
pub const MAX_MONTHS: u64 = 120;

/// What the report says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorReport {
    pub generated_at: Timestamp,
    /// The look-back of `dormant_inboxes`.
    pub months: u64,
    pub people: usize,
    pub active_inboxes: usize,
    /// Active inboxes with unread mail and no session for `months` months.
    pub dormant_inboxes: usize,
    /// Active inboxes without a verified, working notification channel.
    pub inboxes_without_working_channel: usize,
    /// Digital letters the monitor still follows (not opened, not on paper).
    pub letters_followed: usize,
    /// Letters put on paper, by reason code (all time).
    pub paper_by_reason: BTreeMap<String, usize>,
    /// The gateway's own letters (confirm your choice; channel not working).
    pub paper_notices: BTreeMap<String, usize>,
    /// Paper waiting for the print spool (not yet spooled).
    pub paper_not_spooled: usize,
    /// Paper that cannot be printed, by reason (`no_postal_address`): each
    /// agency letter among them has PaperFailure evidence.
    #[serde(default)]
    pub paper_failed: BTreeMap<String, usize>,
}

fn db_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Database(e.to_string())
}

impl Gateway {
    /// Computes the report (reads the registry and the paper queue once).
    pub fn operator_report(&self, months: u64) -> Result<OperatorReport, StoreError> {
        let months = months.clamp(1, MAX_MONTHS);
        let now = self.clock.now();
        let db = self.node.store().database();
        let txn = db.begin_read().map_err(db_err)?;
        let mut report = OperatorReport {
            generated_at: now,
            months,
            ..Default::default()
        };
        let holds_unread = |key: &str| -> Result<bool, StoreError> {
            match txn.open_table(UNREAD) {
                Ok(t) => Ok(t
                    .range((key, [0u8; 16])..=(key, [0xff; 16]))
                    .map_err(db_err)?
                    .next()
                    .is_some()),
                Err(redb::TableError::TableDoesNotExist(_)) => Ok(false),
                Err(e) => Err(db_err(e)),
            }
        };
        match txn.open_table(PEOPLE) {
            Ok(people) => {
                for item in people.iter().map_err(db_err)? {
                    let (k, v) = item.map_err(db_err)?;
                    let person: PersonRecord =
                        estafette_spec::cbor::from_slice(v.value(), 64 * 1024)
                            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    report.people += 1;
                    if !person.active {
                        continue;
                    }
                    report.active_inboxes += 1;
                    if !person.channel_working() {
                        report.inboxes_without_working_channel += 1;
                    }
                    let away = person
                        .activity
                        .last_session_at
                        .is_none_or(|t| t.plus_s(months * MONTH_S) <= now);
                    if away && holds_unread(k.value())? {
                        report.dormant_inboxes += 1;
                    }
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(db_err(e)),
        }
        if let Ok(t) = txn.open_table(crate::gateway::TRACKING) {
            report.letters_followed = t.len().map_err(db_err)? as usize;
        }
        match txn.open_table(PAPER) {
            Ok(paper) => {
                for item in paper.iter().map_err(db_err)? {
                    let (_, v) = item.map_err(db_err)?;
                    let item: PaperItem = estafette_spec::cbor::from_slice(
                        v.value(),
                        estafette_spec::limits::MAX_MESSAGE_BYTES + 4096,
                    )
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    if let Some(failure) = item.failure {
                        *report
                            .paper_failed
                            .entry(failure.code().to_owned())
                            .or_default() += 1;
                    }
                    let waiting = item.spooled_at.is_none() && item.failure.is_none();
                    let reason = item.reason.map_or("none", |r| r.code()).to_owned();
                    let into = match item.kind {
                        crate::gateway::PaperKind::Letter => &mut report.paper_by_reason,
                        other => {
                            *report
                                .paper_notices
                                .entry(other.name().to_owned())
                                .or_default() += 1;
                            if waiting {
                                report.paper_not_spooled += 1;
                            }
                            continue;
                        }
                    };
                    *into.entry(reason).or_default() += 1;
                    if waiting {
                        report.paper_not_spooled += 1;
                    }
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(db_err(e)),
        }
        Ok(report)
    }
}

impl OperatorReport {
    /// The report as OpenMetrics gauge families (for `/metrics`).
    pub fn metrics(&self) -> String {
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, lines: Vec<(String, usize)>| {
            out.push_str(&format!(
                "# HELP estafette_gateway_{name} {help}\n# TYPE estafette_gateway_{name} gauge\n"
            ));
            for (labels, value) in lines {
                out.push_str(&format!("estafette_gateway_{name}{labels} {value}\n"));
            }
        };
        gauge(
            "active_inboxes",
            "Active inboxes.",
            vec![(String::new(), self.active_inboxes)],
        );
        gauge(
            "dormant_inboxes",
            "Active inboxes with unread mail and no session for the dormancy period.",
            vec![(String::new(), self.dormant_inboxes)],
        );
        gauge(
            "inboxes_without_working_channel",
            "Active inboxes without a verified, working notification channel.",
            vec![(String::new(), self.inboxes_without_working_channel)],
        );
        gauge(
            "letters_followed",
            "Digital letters not yet opened or on paper.",
            vec![(String::new(), self.letters_followed)],
        );
        gauge(
            "paper_letters",
            "Letters put on paper, by reason.",
            self.paper_by_reason
                .iter()
                .map(|(r, n)| (format!("{{reason=\"{r}\"}}"), *n))
                .collect(),
        );
        gauge(
            "paper_not_spooled",
            "Paper letters not yet in the print spool.",
            vec![(String::new(), self.paper_not_spooled)],
        );
        gauge(
            "paper_failed",
            "Paper letters that cannot be printed (PaperFailure), by reason.",
            self.paper_failed
                .iter()
                .map(|(r, n)| (format!("{{reason=\"{r}\"}}"), *n))
                .collect(),
        );
        out
    }

    /// The report in plain words (for `estafette-gateway report`).
    pub fn text(&self) -> String {
        let mut out = format!(
            "Operator report at {}\n\
             people in the registry:                      {}\n\
             active inboxes:                              {}\n\
             active, unread mail, no session {:>3} months: {}\n\
             active, no working notification channel:     {}\n\
             digital letters followed (unread):           {}\n\
             letters on paper, by reason:\n",
            self.generated_at,
            self.people,
            self.active_inboxes,
            self.months,
            self.dormant_inboxes,
            self.inboxes_without_working_channel,
            self.letters_followed,
        );
        if self.paper_by_reason.is_empty() {
            out.push_str("  (none)\n");
        }
        for (reason, n) in &self.paper_by_reason {
            out.push_str(&format!("  {reason:<28} {n}\n"));
        }
        for (kind, n) in &self.paper_notices {
            out.push_str(&format!("gateway letters {kind:<20} {n}\n"));
        }
        out.push_str(&format!(
            "paper not yet in the print spool:            {}\n",
            self.paper_not_spooled
        ));
        for (reason, n) in &self.paper_failed {
            out.push_str(&format!(
                "paper that cannot be printed ({reason}): {n:>8}\n"
            ));
        }
        out
    }
}
