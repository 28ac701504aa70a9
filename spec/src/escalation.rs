//! Escalation: what the gateway's monitor does next for a digital letter so
//! that nobody misses one. Pure: it is given what the gateway knows (from
//! the evidence that came back and its own records) and the time, and
//! answers with the next step. The gateway applies the step and records it
//! as evidence; the simulation test drives the same functions.

use serde::{Deserialize, Serialize};

use crate::evidence::ReasonCode;
use crate::text::Timestamp;

const DAY_S: u64 = 24 * 3600;

/// Most attempts at one notification after temporary failures.
pub const MAX_NOTIFY_ATTEMPTS: u32 = 8;
/// Longest wait between two notification attempts.
pub const MAX_NOTIFY_RETRY_S: u64 = 3600;

/// The thresholds (configurable at the gateway).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EscalationPolicy {
    /// Unread this long after consignment: a reminder.
    pub reminder_after_s: u64,
    /// Unread this long after consignment: a paper copy.
    pub paper_after_s: u64,
    /// A letter with a deadline goes on paper at the latest this long before it.
    pub deadline_margin_s: u64,
    /// No session this long while holding unread mail: the account is dormant.
    pub dormant_after_s: u64,
    /// How often the monitor runs. Escalations fall due one cycle early, so
    /// that none is ever late.
    pub cycle_s: u64,
    /// First wait after a temporary notification failure (doubling, capped).
    pub notify_retry_s: u64,
}

impl Default for EscalationPolicy {
    fn default() -> Self {
        EscalationPolicy {
            reminder_after_s: 7 * DAY_S,
            paper_after_s: 14 * DAY_S,
            deadline_margin_s: 5 * DAY_S,
            dormant_after_s: 365 * DAY_S,
            cycle_s: 300,
            notify_retry_s: 60,
        }
    }
}

impl EscalationPolicy {
    /// The wait before notification attempt `attempts + 1`.
    pub fn notify_retry_delay_s(&self, attempts: u32) -> u64 {
        self.notify_retry_s
            .saturating_mul(1u64 << attempts.min(20))
            .min(MAX_NOTIFY_RETRY_S)
    }
}

/// What the gateway knows of one digital letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LetterProgress {
    pub submitted_at: Timestamp,
    /// ContentConsignment: it is in the inbox.
    pub consigned_at: Option<Timestamp>,
    pub deadline: Option<Timestamp>,
    /// ContentHandover: opened by the holder or a representative.
    pub opened: bool,
    /// RelayFailure: it will not reach the inbox.
    pub failed: bool,
    pub notified: bool,
    /// The notification failed for good (bounce, or attempts used up).
    pub notify_failed: bool,
    pub notify_attempts: u32,
    /// No notification attempt before this time (a retry is waiting).
    pub next_notify_at: Timestamp,
    pub reminded: bool,
    pub on_paper: bool,
}

/// The monitor's next step for a letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Send the notification of a new letter.
    Notify,
    /// Send a reminder.
    Remind,
    /// Print and post a copy, for this reason.
    Paper(ReasonCode),
}

/// When a letter goes on paper if it stays unread, and why then.
pub fn paper_due(progress: &LetterProgress, policy: &EscalationPolicy) -> (Timestamp, ReasonCode) {
    let since = progress.consigned_at.unwrap_or(progress.submitted_at);
    let unread = (
        since.plus_s(policy.paper_after_s),
        ReasonCode::UnreadTooLong,
    );
    match progress.deadline {
        Some(deadline) => {
            let near = (
                deadline.minus_s(policy.deadline_margin_s),
                ReasonCode::DeadlineApproaching,
            );
            if near.0 <= unread.0 { near } else { unread }
        }
        None => unread,
    }
}

/// The next step for a letter, if one is due at `now`. `channel_working`:
/// the person has a verified notification channel that has not failed.
pub fn next_step(
    progress: &LetterProgress,
    channel_working: bool,
    now: Timestamp,
    policy: &EscalationPolicy,
) -> Option<Step> {
    if progress.opened || progress.on_paper {
        return None;
    }
    if progress.failed {
        return Some(Step::Paper(ReasonCode::DeliveryFailed));
    }
    let (due, why) = paper_due(progress, policy);
    if now.plus_s(policy.cycle_s) >= due {
        return Some(Step::Paper(why));
    }
    let consigned_at = progress.consigned_at?;
    if progress.notify_failed {
        return Some(Step::Paper(ReasonCode::NotificationBounced));
    }
    if !channel_working {
        return Some(Step::Paper(ReasonCode::NoNotificationChannel));
    }
    if !progress.notified {
        return (now >= progress.next_notify_at).then_some(Step::Notify);
    }
    if !progress.reminded && now >= consigned_at.plus_s(policy.reminder_after_s) {
        return Some(Step::Remind);
    }
    None
}

/// When [`next_step`] first has a step for this letter, if nothing new is
/// learnt (no evidence, no change of the person's channel): the monitor
/// keeps followed letters in an index by this time and looks only at those
/// due, instead of at every letter it follows. `Timestamp(0)`: due now.
///
/// Exact, not a bound: `next_step(progress, channel_working, now)` is
/// `Some` exactly when `now >= due_at(..)`, because each of its conditions
/// is "now has reached a time" (tested below).
pub fn due_at(
    progress: &LetterProgress,
    channel_working: bool,
    policy: &EscalationPolicy,
) -> Option<Timestamp> {
    const NOW: Timestamp = Timestamp(0);
    if progress.opened || progress.on_paper {
        return None;
    }
    if progress.failed {
        return Some(NOW);
    }
    // `now + cycle_s >= due`, as next_step asks, saturating as plus_s does.
    let paper = paper_due(progress, policy).0.minus_s(policy.cycle_s);
    let Some(consigned_at) = progress.consigned_at else {
        return Some(paper);
    };
    let step = if progress.notify_failed || !channel_working {
        NOW
    } else if !progress.notified {
        progress.next_notify_at
    } else if !progress.reminded {
        consigned_at.plus_s(policy.reminder_after_s)
    } else {
        paper
    };
    Some(step.min(paper))
}

/// What the gateway knows of a person's use of the inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Activity {
    /// The last session (registration counts as one).
    pub last_session_at: Option<Timestamp>,
    /// Digital letters not yet opened.
    pub unread: u32,
    /// When the last "please confirm your choice" letter went out.
    pub confirm_letter_at: Option<Timestamp>,
}

/// Whether the account is dormant: unread mail and no session for long.
/// Without any session on record (an imported account) the clock has not
/// started: the first registration or session starts it.
pub fn is_dormant(activity: &Activity, now: Timestamp, policy: &EscalationPolicy) -> bool {
    activity.unread > 0
        && activity
            .last_session_at
            .is_some_and(|t| t.plus_s(policy.dormant_after_s) <= now)
}

/// What a new digital letter needs besides the inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubmissionPlan {
    /// Also send it on paper at once, for this reason.
    pub also_paper: Option<ReasonCode>,
    /// Also send the person a letter asking them to confirm their choice.
    pub confirm_letter: bool,
}

/// The plan for a new digital letter to a person with `activity`.
pub fn plan_digital(
    activity: &Activity,
    now: Timestamp,
    policy: &EscalationPolicy,
) -> SubmissionPlan {
    if !is_dormant(activity, now, policy) {
        return SubmissionPlan::default();
    }
    SubmissionPlan {
        also_paper: Some(ReasonCode::DormantAccount),
        confirm_letter: activity
            .confirm_letter_at
            .is_none_or(|t| t.plus_s(policy.dormant_after_s) <= now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timestamp = Timestamp(1_800_000_000);

    fn consigned() -> LetterProgress {
        LetterProgress {
            submitted_at: T,
            consigned_at: Some(T),
            ..Default::default()
        }
    }

    #[test]
    fn notify_then_remind_then_paper() {
        let p = EscalationPolicy::default();
        let mut l = consigned();
        assert_eq!(next_step(&l, true, T, &p), Some(Step::Notify));
        l.notified = true;
        assert_eq!(next_step(&l, true, T.plus_s(7 * DAY_S - 1), &p), None);
        assert_eq!(
            next_step(&l, true, T.plus_s(7 * DAY_S), &p),
            Some(Step::Remind)
        );
        l.reminded = true;
        let edge = T.plus_s(14 * DAY_S - p.cycle_s);
        assert_eq!(next_step(&l, true, edge.minus_s(1), &p), None);
        assert_eq!(
            next_step(&l, true, edge, &p),
            Some(Step::Paper(ReasonCode::UnreadTooLong))
        );
        l.on_paper = true;
        assert_eq!(next_step(&l, true, T.plus_s(30 * DAY_S), &p), None);
    }

    #[test]
    fn a_deadline_brings_paper_forward() {
        let p = EscalationPolicy::default();
        let mut l = consigned();
        l.notified = true;
        l.deadline = Some(T.plus_s(10 * DAY_S));
        let due = T.plus_s(5 * DAY_S - p.cycle_s);
        assert_eq!(next_step(&l, true, due.minus_s(1), &p), None);
        assert_eq!(
            next_step(&l, true, due, &p),
            Some(Step::Paper(ReasonCode::DeadlineApproaching))
        );
    }

    proptest::proptest! {
        /// The monitor may skip a letter until its due time: before it,
        /// next_step has nothing; from it on, next_step has a step.
        #[test]
        fn due_at_is_exactly_when_next_step_has_a_step(
            submitted in 0u64..4_000_000_000,
            consigned in proptest::option::of(0u64..2_000_000),
            deadline in proptest::option::of(0u64..4_000_000_000),
            flags in 0u8..=255,
            next_notify in 0u64..3_000_000,
            working: bool,
            offsets in proptest::collection::vec(0u64..4_000_000, 1..8),
        ) {
            let p = EscalationPolicy::default();
            let bit = |i: u8| flags & (1 << i) != 0;
            let start = Timestamp(submitted);
            let l = LetterProgress {
                submitted_at: start,
                consigned_at: consigned.map(|c| start.plus_s(c)),
                deadline: deadline.map(Timestamp),
                opened: bit(0) && bit(1),
                failed: bit(2) && bit(3),
                notified: bit(4),
                notify_failed: bit(5) && bit(6),
                notify_attempts: 0,
                next_notify_at: start.plus_s(next_notify),
                reminded: bit(7) && bit(4),
                on_paper: bit(1) && bit(3),
            };
            let due = due_at(&l, working, &p);
            let mut times: Vec<Timestamp> = offsets.iter().map(|o| start.plus_s(*o)).collect();
            if let Some(d) = due {
                times.extend([d, d.minus_s(1), d.plus_s(1)]);
            }
            for t in times {
                let has_step = next_step(&l, working, t, &p).is_some();
                proptest::prop_assert_eq!(has_step, due.is_some_and(|d| t >= d), "at {:?}, due {:?}", t, due);
            }
        }
    }

    #[test]
    fn opened_letters_rest() {
        let p = EscalationPolicy::default();
        let mut l = consigned();
        l.opened = true;
        l.deadline = Some(T.plus_s(DAY_S));
        assert_eq!(next_step(&l, false, T.plus_s(100 * DAY_S), &p), None);
    }

    #[test]
    fn no_channel_bounce_or_failure_means_paper() {
        let p = EscalationPolicy::default();
        let l = consigned();
        assert_eq!(
            next_step(&l, false, T, &p),
            Some(Step::Paper(ReasonCode::NoNotificationChannel))
        );
        let mut bounced = consigned();
        bounced.notify_failed = true;
        assert_eq!(
            next_step(&bounced, true, T, &p),
            Some(Step::Paper(ReasonCode::NotificationBounced))
        );
        let failed = LetterProgress {
            submitted_at: T,
            failed: true,
            ..Default::default()
        };
        assert_eq!(
            next_step(&failed, true, T, &p),
            Some(Step::Paper(ReasonCode::DeliveryFailed))
        );
        // Not yet in the inbox: nothing to notify, but the clock runs.
        let in_transit = LetterProgress {
            submitted_at: T,
            ..Default::default()
        };
        assert_eq!(next_step(&in_transit, true, T, &p), None);
        assert_eq!(
            next_step(&in_transit, true, T.plus_s(14 * DAY_S), &p),
            Some(Step::Paper(ReasonCode::UnreadTooLong))
        );
    }

    #[test]
    fn retries_wait_and_are_capped() {
        let p = EscalationPolicy::default();
        let mut l = consigned();
        l.next_notify_at = T.plus_s(60);
        assert_eq!(next_step(&l, true, T, &p), None);
        assert_eq!(next_step(&l, true, T.plus_s(60), &p), Some(Step::Notify));
        assert_eq!(p.notify_retry_delay_s(0), 60);
        assert_eq!(p.notify_retry_delay_s(3), 480);
        assert_eq!(p.notify_retry_delay_s(40), MAX_NOTIFY_RETRY_S);
    }

    #[test]
    fn dormant_accounts_also_get_paper_and_one_confirmation_a_year() {
        let p = EscalationPolicy::default();
        let year = 365 * DAY_S;
        let mut a = Activity {
            last_session_at: Some(T),
            unread: 1,
            confirm_letter_at: None,
        };
        assert_eq!(
            plan_digital(&a, T.plus_s(year - 1), &p),
            SubmissionPlan::default()
        );
        let plan = plan_digital(&a, T.plus_s(year), &p);
        assert_eq!(plan.also_paper, Some(ReasonCode::DormantAccount));
        assert!(plan.confirm_letter);
        a.confirm_letter_at = Some(T.plus_s(year));
        assert!(!plan_digital(&a, T.plus_s(year + 1), &p).confirm_letter);
        a.unread = 0;
        assert_eq!(plan_digital(&a, T.plus_s(3 * year), &p).also_paper, None);
    }
}
