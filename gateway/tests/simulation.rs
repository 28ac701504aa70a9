//! Nobody misses a letter: a seeded simulation with an injected clock.
//!
//! 10,000 people with a realistic mix (20% never start a session, 17%
//! without e-mail, 5% whose e-mail starts bouncing, some who switch back to
//! paper) receive 50,000 letters over 120 simulated days. The gateway's own
//! decisions drive it: `registry::channel` at submission,
//! `escalation::plan_digital` for dormant accounts, and every hour the
//! monitor's `escalation::next_step` for each letter not yet opened or on
//! paper, with notifications that succeed, fail for a while, or bounce.
//! Afterwards every letter with a deadline was opened, or put on paper, at
//! least five days before its deadline.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use estafette_gateway::registry::{self, Channel, ContactChannel, InboxLocation, PersonRecord};
use estafette_spec::citizen::{ChannelKind, ChannelState};
use estafette_spec::escalation::{
    self, EscalationPolicy, LetterProgress, MAX_NOTIFY_ATTEMPTS, Step,
};
use estafette_spec::{InboxId, Oin, ReasonCode, Timestamp};

const PEOPLE: usize = 10_000;
const LETTERS: usize = 50_000;
const DAY: u64 = 24 * 3600;
const HOUR: u64 = 3600;
const SEND_DAYS: u64 = 120;
/// Run on after the last letter until every deadline has passed.
const RUN_DAYS: u64 = SEND_DAYS + 70;
const START: Timestamp = Timestamp(1_798_761_600); // 2027-01-01

/// splitmix64: a small, seeded, reproducible generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// Activated long ago, never starts a session.
    NeverVisits,
    /// No e-mail address: cannot activate, so everything on paper.
    NoEmail,
    /// Reads now and then; their address starts bouncing on `bounce_day`.
    Bouncing,
    /// Reads now and then; switches everything to paper on `paper_day`.
    SwitchesToPaper,
    /// Reads now and then.
    Reader,
}

struct Person {
    kind: Kind,
    record: PersonRecord,
    /// Days between visits (readers).
    visit_every_days: u64,
    next_visit: Timestamp,
    bounce_day: u64,
    paper_day: u64,
    /// Letters in the inbox not yet opened.
    unread: Vec<usize>,
}

struct Letter {
    person: usize,
    sender: Oin,
    sent_at: Timestamp,
    deadline: Option<Timestamp>,
    progress: LetterProgress,
    opened_at: Option<Timestamp>,
    paper_at: Option<Timestamp>,
    /// Delivered digitally (not only on paper).
    digital: bool,
}

#[derive(Default, Debug)]
struct Counts {
    digital: usize,
    paper_at_submission: BTreeMap<&'static str, usize>,
    dormant_paper: usize,
    confirm_letters: usize,
    notified: usize,
    reminded: usize,
    temporary_failures: usize,
    bounced: usize,
    escalated: BTreeMap<&'static str, usize>,
    opened: usize,
}

fn senders() -> Vec<Oin> {
    [
        "00000001003214345000",
        "00000003273318220000",
        "00000001823288444000",
        "00000004003214345001",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect()
}

fn person(rng: &mut Rng, senders: &[Oin]) -> Person {
    let roll = rng.below(100);
    let kind = match roll {
        0..20 => Kind::NeverVisits,
        20..37 => Kind::NoEmail,
        37..42 => Kind::Bouncing,
        42..46 => Kind::SwitchesToPaper,
        _ => Kind::Reader,
    };
    let mut record = PersonRecord::new("nl");
    record.inbox = Some(InboxLocation {
        home_node: "home.test".parse().unwrap(),
        inbox_id: InboxId::from_bytes([0; 16]),
    });
    if kind != Kind::NoEmail {
        record.active = true;
        record.contact_channels.push(ContactChannel {
            kind: ChannelKind::Email,
            address: "x@example.nl".into(),
            state: ChannelState::Verified,
            token_digest: None,
        });
        // Most chose digital mail from every sender, some from a few.
        record.digital_senders = senders
            .iter()
            .filter(|_| rng.below(100) < 85)
            .cloned()
            .collect();
    }
    // The last visit: those who never visit activated 6 to 24 months ago.
    record.activity.last_session_at = Some(match kind {
        Kind::NeverVisits => START.minus_s((180 + rng.below(540)) * DAY),
        _ => START.minus_s(rng.below(30) * DAY),
    });
    Person {
        kind,
        record,
        visit_every_days: 1 + rng.below(20),
        next_visit: START.plus_s(rng.below(20 * DAY)),
        bounce_day: rng.below(SEND_DAYS),
        paper_day: rng.below(SEND_DAYS),
        unread: vec![],
    }
}

#[test]
fn ten_thousand_people_fifty_thousand_letters_none_missed() {
    let mut rng = Rng(0x05ee_d0fe_57af_e77e);
    let policy = EscalationPolicy {
        cycle_s: HOUR,
        ..EscalationPolicy::default()
    };
    let senders = senders();
    let mut people: Vec<Person> = (0..PEOPLE).map(|_| person(&mut rng, &senders)).collect();
    // Letters, in order of sending; 60% with a deadline 14 to 60 days on.
    let mut letters: Vec<Letter> = (0..LETTERS)
        .map(|_| {
            let sent_at = START.plus_s(rng.below(SEND_DAYS * DAY));
            Letter {
                person: rng.below(PEOPLE as u64) as usize,
                sender: senders[rng.below(senders.len() as u64) as usize].clone(),
                sent_at,
                deadline: rng
                    .chance(60)
                    .then(|| sent_at.plus_s((14 + rng.below(47)) * DAY)),
                progress: LetterProgress::default(),
                opened_at: None,
                paper_at: None,
                digital: false,
            }
        })
        .collect();
    letters.sort_by_key(|l| l.sent_at);

    let mut counts = Counts::default();
    let mut pending: Vec<usize> = Vec::new();
    let mut next_letter = 0;
    let mut now = START;
    while now < START.plus_s(RUN_DAYS * DAY) {
        let day = (now.0 - START.0) / DAY;
        // The world changes: people switch everything back to paper.
        for p in people.iter_mut() {
            if p.kind == Kind::SwitchesToPaper && day >= p.paper_day {
                p.record.digital_senders.clear();
            }
        }
        // New letters of this hour: the gateway chooses the channel.
        while next_letter < letters.len() && letters[next_letter].sent_at < now.plus_s(HOUR) {
            let i = next_letter;
            next_letter += 1;
            // What the gateway counts as unread: tracked letters, not opened, not on paper.
            let unread = people[letters[i].person]
                .unread
                .iter()
                .filter(|&&u| !letters[u].progress.on_paper && !letters[u].progress.opened)
                .count();
            let l = &mut letters[i];
            let p = &mut people[l.person];
            l.progress = LetterProgress {
                submitted_at: l.sent_at,
                deadline: l.deadline,
                ..Default::default()
            };
            match registry::channel(Some(&p.record), &l.sender) {
                Channel::Paper(reason) => {
                    *counts.paper_at_submission.entry(reason.code()).or_default() += 1;
                    l.paper_at = Some(l.sent_at);
                }
                Channel::Digital(_) => {
                    counts.digital += 1;
                    l.digital = true;
                    let mut activity = p.record.activity;
                    activity.unread = unread as u32;
                    let plan = escalation::plan_digital(&activity, l.sent_at, &policy);
                    if plan.also_paper.is_some() {
                        counts.dormant_paper += 1;
                        l.paper_at = Some(l.sent_at);
                        l.progress.on_paper = true;
                    }
                    if plan.confirm_letter {
                        counts.confirm_letters += 1;
                        p.record.activity.confirm_letter_at = Some(l.sent_at);
                    }
                    // In the inbox a minute later; 0.2% never get there.
                    if rng.below(1000) < 2 {
                        l.progress.failed = true;
                    } else {
                        l.progress.consigned_at = Some(l.sent_at.plus_s(60));
                        p.unread.push(i);
                    }
                    pending.push(i);
                }
            }
        }
        // Visits: a reader opens everything unread.
        for p in people.iter_mut() {
            let visits = matches!(
                p.kind,
                Kind::Reader | Kind::Bouncing | Kind::SwitchesToPaper
            );
            if visits && now >= p.next_visit {
                p.record.activity.last_session_at = Some(now);
                for i in p.unread.drain(..) {
                    let l = &mut letters[i];
                    if l.opened_at.is_none() {
                        l.opened_at = Some(now);
                        l.progress.opened = true;
                        counts.opened += 1;
                    }
                }
                p.next_visit = now.plus_s(p.visit_every_days * DAY + rng.below(DAY));
            }
        }
        // The monitor's cycle.
        pending.retain(|&i| {
            let l = &mut letters[i];
            let p = &mut people[l.person];
            for _ in 0..4 {
                let working = p.record.channel_working();
                let Some(step) = escalation::next_step(&l.progress, working, now, &policy) else {
                    break;
                };
                match step {
                    Step::Notify | Step::Remind => {
                        // Noticed only when a notification bounces.
                        let bouncing = p.kind == Kind::Bouncing && day >= p.bounce_day;
                        if bouncing {
                            counts.bounced += 1;
                            l.progress.notify_failed = true;
                            for c in p.record.contact_channels.iter_mut() {
                                c.state = ChannelState::Failed;
                            }
                        } else if rng.below(100) < 2 {
                            // A full mailbox, a greylisting relay: try later.
                            counts.temporary_failures += 1;
                            l.progress.notify_attempts += 1;
                            if step == Step::Notify {
                                if l.progress.notify_attempts >= MAX_NOTIFY_ATTEMPTS {
                                    l.progress.notify_failed = true;
                                } else {
                                    l.progress.next_notify_at = now.plus_s(
                                        policy.notify_retry_delay_s(l.progress.notify_attempts - 1),
                                    );
                                }
                            }
                            break;
                        } else if step == Step::Notify {
                            counts.notified += 1;
                            l.progress.notified = true;
                        } else {
                            counts.reminded += 1;
                            l.progress.reminded = true;
                        }
                    }
                    Step::Paper(reason) => {
                        *counts.escalated.entry(reason.code()).or_default() += 1;
                        l.progress.on_paper = true;
                        l.paper_at = Some(now);
                        break;
                    }
                }
            }
            !(l.progress.on_paper || l.progress.opened)
        });
        now = now.plus_s(HOUR);
    }

    // Every letter with a deadline: opened or on paper at least 5 days before it.
    let margin = policy.deadline_margin_s;
    let mut missed = 0;
    let mut with_deadline = 0;
    for l in &letters {
        let Some(deadline) = l.deadline else {
            continue;
        };
        with_deadline += 1;
        let reached = [l.opened_at, l.paper_at]
            .into_iter()
            .flatten()
            .min()
            .is_some_and(|t| t.plus_s(margin) <= deadline);
        if !reached {
            missed += 1;
        }
    }
    // And every letter at all reached the person within 14 days + a cycle.
    let late = letters
        .iter()
        .filter(|l| {
            let reached = [l.opened_at, l.paper_at].into_iter().flatten().min();
            reached.is_none_or(|t| t > l.sent_at.plus_s(policy.paper_after_s + 60 + HOUR))
        })
        .count();
    let paper_total = letters.iter().filter(|l| l.paper_at.is_some()).count();
    let kinds = |k: Kind| people.iter().filter(|p| p.kind == k).count();
    println!(
        "people: {PEOPLE} (never visit {}, no e-mail {}, bouncing {}, switch to paper {}, readers {})",
        kinds(Kind::NeverVisits),
        kinds(Kind::NoEmail),
        kinds(Kind::Bouncing),
        kinds(Kind::SwitchesToPaper),
        kinds(Kind::Reader)
    );
    println!(
        "letters: {LETTERS} over {SEND_DAYS} days, {with_deadline} with a deadline; digital {}, paper at submission {:?}",
        counts.digital, counts.paper_at_submission
    );
    println!(
        "dormant accounts: {} letters also on paper, {} confirmation letters",
        counts.dormant_paper, counts.confirm_letters
    );
    println!(
        "notifications {}, reminders {}, temporary failures {}, bounces {}",
        counts.notified, counts.reminded, counts.temporary_failures, counts.bounced
    );
    println!(
        "opened {}, escalated to paper {:?}, paper letters in all {paper_total}",
        counts.opened, counts.escalated
    );
    println!("missed (deadline letters neither opened nor on paper 5 days before): {missed}");
    println!("letters that reached nobody within 14 days: {late}");
    assert_eq!(missed, 0);
    assert_eq!(late, 0);
    // The mix really exercised every path.
    for reason in [
        ReasonCode::UnreadTooLong,
        ReasonCode::DeadlineApproaching,
        ReasonCode::NotificationBounced,
        ReasonCode::DeliveryFailed,
    ] {
        assert!(
            counts.escalated.get(reason.code()).copied().unwrap_or(0) > 0,
            "no escalation for {reason:?}: {:?}",
            counts.escalated
        );
    }
    assert!(counts.dormant_paper > 0 && counts.confirm_letters > 0);
    assert!(counts.paper_at_submission.contains_key("no_consent"));
    assert!(counts.paper_at_submission.contains_key("inbox_inactive"));
}
