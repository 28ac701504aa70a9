//! The operator's report: which active inboxes hold unread mail without a
//! visit for months, which have no working notification channel, and what
//! went on paper and why. Served on the admin endpoint (`GET /report`,
//! `estafette-gateway report`) and as metrics. Counts only: no BSN, no
//! address, nothing of a letter.
//!
//! Nothing here reads the whole registry or the paper queue: each write of
//! an entry adds its [`tally`] to counters in its own transaction, and the
//! dormant inboxes are found through an index by last session.

use std::collections::BTreeMap;

use estafette_spec::Timestamp;
use serde::{Deserialize, Serialize};

use crate::gateway::Gateway;
use crate::store::{Records, RecordsError};

const MONTH_S: u64 = 30 * 24 * 3600;
/// How often the monitor counts the dormant inboxes again (the rest of its
/// report is counters, read at every cycle); dormancy is measured in months.
pub const DORMANCY_EVERY_S: u64 = 3600;
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

impl Gateway {
    /// Computes the report from the records' counters and indexes.
    pub fn operator_report(&self, months: u64) -> Result<OperatorReport, RecordsError> {
        operator_report(self.records(), self.clock.now(), months)
    }
}

/// The report at `now`: [`counted_report`] with [`dormant_inboxes`].
pub fn operator_report(
    records: &dyn Records,
    now: Timestamp,
    months: u64,
) -> Result<OperatorReport, RecordsError> {
    let mut report = counted_report(records, now, months)?;
    report.dormant_inboxes = dormant_inboxes(records, now, report.months)?;
    Ok(report)
}

/// Active inboxes with unread mail and no session for `months` months,
/// through the index of active inboxes by their last session: the work is
/// proportional to the inboxes away that long, not to the registry.
pub fn dormant_inboxes(
    records: &dyn Records,
    now: Timestamp,
    months: u64,
) -> Result<usize, RecordsError> {
    let months = months.clamp(1, MAX_MONTHS);
    let away_by = Timestamp(now.0.saturating_sub(months * MONTH_S));
    records.read()?.dormant_inboxes(away_by)
}

/// The report at `now` from the counters each change keeps in its own
/// transaction and the count of followed letters, without the dormant
/// inboxes (0): a few reads, whatever the size of the registry.
pub fn counted_report(
    records: &dyn Records,
    now: Timestamp,
    months: u64,
) -> Result<OperatorReport, RecordsError> {
    let months = months.clamp(1, MAX_MONTHS);
    let read = records.read()?;
    let counts = read.report_counts()?;
    let mut report = OperatorReport {
        generated_at: now,
        months,
        ..Default::default()
    };
    for (name, n) in counts {
        let n = usize::try_from(n).unwrap_or(0);
        match name.split_once(':') {
            None if name == tally::PEOPLE => report.people = n,
            None if name == tally::ACTIVE => report.active_inboxes = n,
            None if name == tally::NO_WORKING_CHANNEL => report.inboxes_without_working_channel = n,
            None if name == tally::PAPER_NOT_SPOOLED => report.paper_not_spooled = n,
            Some((tally::PAPER_LETTERS, reason)) => {
                report.paper_by_reason.insert(reason.to_owned(), n);
            }
            Some((tally::PAPER_NOTICES, kind)) => {
                report.paper_notices.insert(kind.to_owned(), n);
            }
            Some((tally::PAPER_FAILED, reason)) => {
                report.paper_failed.insert(reason.to_owned(), n);
            }
            _ => {}
        }
    }
    // Counters that went back to 0 are no category at all.
    report.paper_by_reason.retain(|_, n| *n > 0);
    report.paper_notices.retain(|_, n| *n > 0);
    report.paper_failed.retain(|_, n| *n > 0);
    report.letters_followed = read.tracked_count()?;
    Ok(report)
}

/// What each stored entry adds to the report: the names of the counters
/// it adds one to. A store adds the difference between an entry's tally and
/// the tally of the entry it replaces to its counters, in the same
/// transaction, so the report never reads the registry or the paper queue.
pub mod tally {
    use estafette_spec::Timestamp;

    use crate::gateway::{PaperItem, PaperKind};
    use crate::registry::PersonRecord;

    pub const PEOPLE: &str = "people";
    pub const ACTIVE: &str = "active_inboxes";
    pub const NO_WORKING_CHANNEL: &str = "inboxes_without_working_channel";
    pub const PAPER_NOT_SPOOLED: &str = "paper_not_spooled";
    /// Prefixes, followed by `:` and a reason code or a kind.
    pub const PAPER_LETTERS: &str = "paper_letters";
    pub const PAPER_NOTICES: &str = "paper_notices";
    pub const PAPER_FAILED: &str = "paper_failed";

    /// What a registry entry counts for.
    pub fn person(record: &PersonRecord) -> Vec<String> {
        let mut names = vec![PEOPLE.to_owned()];
        if record.active {
            names.push(ACTIVE.to_owned());
            if !record.channel_working() {
                names.push(NO_WORKING_CHANNEL.to_owned());
            }
        }
        names
    }

    /// An active inbox's key in the dormancy index: its last session (0
    /// when it never had one); `None` for an entry that is not an active
    /// inbox.
    pub fn away_since(record: &PersonRecord) -> Option<u64> {
        record.active.then(|| {
            record
                .activity
                .last_session_at
                .map_or(0, |t: Timestamp| t.0)
        })
    }

    /// What a paper item counts for.
    pub fn paper(item: &PaperItem) -> Vec<String> {
        let mut names = Vec::with_capacity(3);
        if let Some(failure) = item.failure {
            names.push(format!("{PAPER_FAILED}:{}", failure.code()));
        }
        if waiting(item) {
            names.push(PAPER_NOT_SPOOLED.to_owned());
        }
        if item.kind == PaperKind::Letter {
            let reason = item.reason.map_or("none", |r| r.code());
            names.push(format!("{PAPER_LETTERS}:{reason}"));
        } else {
            names.push(format!("{PAPER_NOTICES}:{}", item.kind.name()));
        }
        names
    }

    /// Whether a paper item waits for the print spool.
    pub fn waiting(item: &PaperItem) -> bool {
        item.spooled_at.is_none() && item.failure.is_none()
    }

    /// What replacing an entry that counted for `old` by one that counts
    /// for `new` adds to each counter (nothing for a counter it leaves).
    pub fn changes(old: &[String], new: &[String]) -> Vec<(String, i64)> {
        let mut out: std::collections::BTreeMap<&str, i64> = Default::default();
        for name in old {
            *out.entry(name).or_default() -= 1;
        }
        for name in new {
            *out.entry(name).or_default() += 1;
        }
        out.into_iter()
            .filter(|(_, d)| *d != 0)
            .map(|(name, d)| (name.to_owned(), d))
            .collect()
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
