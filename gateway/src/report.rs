//! The operator's report: which active inboxes hold unread mail without a
//! visit for months, which have no working notification channel, and what
//! went on paper and why. Served on the admin endpoint (`GET /report`,
//! `estafette-gateway report`) and as metrics. Counts only: no BSN, no
//! address, nothing of a letter.

use std::collections::BTreeMap;

use estafette_spec::Timestamp;
use serde::{Deserialize, Serialize};

use crate::gateway::{Gateway, PaperItem, PaperKind};
use crate::registry::PersonRecord;
use crate::store::{ReadRecords, RecordsError};

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

impl Gateway {
    /// Computes the report (reads the registry and the paper queue once).
    pub fn operator_report(&self, months: u64) -> Result<OperatorReport, RecordsError> {
        let months = months.clamp(1, MAX_MONTHS);
        let now = self.clock.now();
        let records = self.records().read()?;
        let mut report = OperatorReport {
            generated_at: now,
            months,
            ..Default::default()
        };
        records
            .each_person(&mut |key, person| report.count_person(&*records, key, &person, now))?;
        report.letters_followed = records.tracked_count()?;
        for (_, item) in records.paper_queue()? {
            report.count_paper(&item);
        }
        Ok(report)
    }
}

impl OperatorReport {
    fn count_person(
        &mut self,
        records: &dyn ReadRecords,
        key: &estafette_spec::Recipient,
        person: &PersonRecord,
        now: Timestamp,
    ) -> Result<(), RecordsError> {
        self.people += 1;
        if !person.active {
            return Ok(());
        }
        self.active_inboxes += 1;
        if !person.channel_working() {
            self.inboxes_without_working_channel += 1;
        }
        let away = person
            .activity
            .last_session_at
            .is_none_or(|t| t.plus_s(self.months * MONTH_S) <= now);
        if away && records.unread_count(key, 1)? > 0 {
            self.dormant_inboxes += 1;
        }
        Ok(())
    }

    fn count_paper(&mut self, item: &PaperItem) {
        if let Some(failure) = item.failure {
            *self
                .paper_failed
                .entry(failure.code().to_owned())
                .or_default() += 1;
        }
        let waiting = item.spooled_at.is_none() && item.failure.is_none();
        if waiting {
            self.paper_not_spooled += 1;
        }
        if item.kind == PaperKind::Letter {
            let reason = item.reason.map_or("none", |r| r.code()).to_owned();
            *self.paper_by_reason.entry(reason).or_default() += 1;
        } else {
            *self
                .paper_notices
                .entry(item.kind.name().to_owned())
                .or_default() += 1;
        }
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
