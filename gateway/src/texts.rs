//! What the gateway writes to people (notification e-mails and paper
//! letters), in plain language, composed from the texts of the one text
//! catalogue (`estafette_relay::texts`, a file per language). A language
//! the catalogue does not have falls back to Dutch.
//!
//! Notifications name the sender, the kind of letter, the expected action
//! and the deadline, and never the letter's subject or body.

use std::sync::LazyLock;

use estafette_relay::texts::Catalogue;
use estafette_spec::{Nature, ReasonCode, Timestamp};

/// The texts of one language, from the catalogue. Placeholders in braces
/// are filled in by the functions below.
pub struct Texts {
    pub language: &'static str,
    new_letter_subject: &'static str,
    reminder_subject: &'static str,
    new_letter_intro: &'static str,
    reminder_intro: &'static str,
    kind_label: &'static str,
    natures: [&'static str; 4],
    legal_effect: &'static str,
    action_label: &'static str,
    deadline_label: &'static str,
    no_deadline: &'static str,
    read_at: &'static str,
    never_content: &'static str,
    verify_subject: &'static str,
    verify_body: &'static str,
    pub paper_heading: &'static str,
    pub from_label: &'static str,
    pub date_label: &'static str,
    pub reference_label: &'static str,
    pub on_behalf_label: &'static str,
    pub subject_label: &'static str,
    pub attachments_label: &'static str,
    why_choice: &'static str,
    why_unread: &'static str,
    why_deadline: &'static str,
    why_channel: &'static str,
    why_dormant: &'static str,
    why_failed: &'static str,
    how_to_choose: &'static str,
    pub confirm_subject: &'static str,
    confirm_body: &'static str,
    pub channel_subject: &'static str,
    channel_body: &'static str,
    pub page_label: &'static str,
}

/// The texts of one language, from the catalogue.
fn from_catalogue(c: &'static Catalogue) -> Texts {
    Texts {
        language: c.language(),
        new_letter_subject: c.text("mail.new-letter.subject"),
        reminder_subject: c.text("mail.reminder.subject"),
        new_letter_intro: c.text("mail.new-letter.intro"),
        reminder_intro: c.text("mail.reminder.intro"),
        kind_label: c.text("mail.kind"),
        natures: [
            c.text("nature.decision"),
            c.text("nature.reminder"),
            c.text("nature.request"),
            c.text("nature.information"),
        ],
        legal_effect: c.text("mail.legal-effect"),
        action_label: c.text("mail.action"),
        deadline_label: c.text("mail.deadline"),
        no_deadline: c.text("mail.no-deadline"),
        read_at: c.text("mail.read-at"),
        never_content: c.text("mail.never-content"),
        verify_subject: c.text("mail.verify.subject"),
        verify_body: c.text("mail.verify.body"),
        paper_heading: c.text("paper.heading"),
        from_label: c.text("paper.from"),
        date_label: c.text("paper.date"),
        reference_label: c.text("paper.reference"),
        on_behalf_label: c.text("paper.on-behalf-of"),
        subject_label: c.text("paper.subject"),
        attachments_label: c.text("paper.attachments"),
        why_choice: c.text("paper.why.choice"),
        why_unread: c.text("paper.why.unread"),
        why_deadline: c.text("paper.why.deadline"),
        why_channel: c.text("paper.why.channel"),
        why_dormant: c.text("paper.why.dormant"),
        why_failed: c.text("paper.why.failed"),
        how_to_choose: c.text("paper.how-to-choose"),
        confirm_subject: c.text("paper.confirm.subject"),
        confirm_body: c.text("paper.confirm.body"),
        channel_subject: c.text("paper.channel.subject"),
        channel_body: c.text("paper.channel.body"),
        page_label: c.text("paper.page"),
    }
}

/// The texts of every language of the catalogue.
static TEXTS: LazyLock<Vec<Texts>> = LazyLock::new(|| {
    estafette_relay::texts::languages()
        .filter_map(estafette_relay::texts::catalogue)
        .map(from_catalogue)
        .collect()
});

/// The texts for a BCP 47 tag (`de-DE` → German); Dutch when unknown.
pub fn for_language(tag: &str) -> &'static Texts {
    let language = estafette_relay::texts::catalogue_or(tag, "nl").language();
    TEXTS
        .iter()
        .find(|t| t.language == language)
        .or_else(|| TEXTS.first())
        .unwrap_or(&EMPTY)
}

/// Only if no catalogue parsed (the catalogue's tests make sure they all do).
static EMPTY: LazyLock<Texts> = LazyLock::new(|| {
    from_catalogue(estafette_relay::texts::catalogue_or(
        estafette_relay::texts::FALLBACK,
        "nl",
    ))
});

/// A notification e-mail: subject and plain-text body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub subject: String,
    pub body: String,
}

/// What a notification says about a letter (never its subject or body).
#[derive(Debug, Clone)]
pub struct LetterFacts {
    pub sender_name: String,
    pub nature: Nature,
    pub legal_effect: bool,
    pub expected_action: String,
    pub deadline: Option<Timestamp>,
    pub consigned_at: Timestamp,
}

impl Texts {
    /// A date as people of this language write it.
    pub fn date(&self, t: Timestamp) -> String {
        let (y, m, d) = t.ymd();
        match self.language {
            "de" | "pl" => format!("{d:02}.{m:02}.{y}"),
            "en" | "fr" => format!("{d:02}/{m:02}/{y}"),
            _ => format!("{d:02}-{m:02}-{y}"),
        }
    }

    pub fn nature(&self, nature: Nature) -> &'static str {
        match nature {
            Nature::Decision => self.natures[0],
            Nature::Reminder => self.natures[1],
            Nature::Request => self.natures[2],
            Nature::Information => self.natures[3],
        }
    }

    /// The notification of a new letter, or the reminder of an unread one.
    pub fn letter_notification(
        &self,
        facts: &LetterFacts,
        inbox_url: &str,
        reminder: bool,
    ) -> Notification {
        let fill = |t: &str| {
            t.replace("{sender}", &facts.sender_name)
                .replace("{date}", &self.date(facts.consigned_at))
        };
        let (subject, intro) = if reminder {
            (fill(self.reminder_subject), fill(self.reminder_intro))
        } else {
            (fill(self.new_letter_subject), fill(self.new_letter_intro))
        };
        let mut body = format!(
            "{intro}\n\n{}: {}\n",
            self.kind_label,
            self.nature(facts.nature)
        );
        if facts.legal_effect {
            body.push_str(self.legal_effect);
            body.push('\n');
        }
        body.push_str(&format!(
            "{}: {}\n{}: {}\n\n{}:\n{inbox_url}\n\n{}\n",
            self.action_label,
            facts.expected_action,
            self.deadline_label,
            facts
                .deadline
                .map_or_else(|| self.no_deadline.to_owned(), |d| self.date(d)),
            self.read_at,
            self.never_content
        ));
        Notification { subject, body }
    }

    /// The e-mail with the verification link.
    pub fn verification(&self, link: &str) -> Notification {
        Notification {
            subject: self.verify_subject.into(),
            body: self.verify_body.replace("{link}", link),
        }
    }

    /// Why a letter came on paper, and how to choose.
    pub fn paper_explanation(
        &self,
        reason: ReasonCode,
        sender_name: &str,
        consigned_at: Option<Timestamp>,
    ) -> String {
        let why = match reason {
            ReasonCode::UnreadTooLong => self.why_unread,
            ReasonCode::DeadlineApproaching => self.why_deadline,
            ReasonCode::NotificationBounced | ReasonCode::NoNotificationChannel => self.why_channel,
            ReasonCode::DormantAccount => self.why_dormant,
            ReasonCode::DeliveryFailed => self.why_failed,
            _ => self.why_choice,
        };
        let date = consigned_at.map(|t| self.date(t)).unwrap_or_default();
        format!(
            "{} {}",
            why.replace("{sender}", sender_name)
                .replace("{date}", &date),
            self.how_to_choose
        )
    }

    pub fn confirm_choice_body(&self) -> &'static str {
        self.confirm_body
    }

    pub fn channel_notice_body(&self) -> &'static str {
        self.channel_body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_name_sender_kind_action_deadline() {
        let facts = LetterFacts {
            sender_name: "Belastingdienst".into(),
            nature: Nature::Decision,
            legal_effect: true,
            expected_action: "Betaal vóór de datum".into(),
            deadline: Some(Timestamp(1_800_000_000)),
            consigned_at: Timestamp(1_799_000_000),
        };
        for tag in ["nl", "en", "de-DE", "fr", "pl-PL", "xx"] {
            let t = for_language(tag);
            let n = t.letter_notification(&facts, "https://inbox.example/", false);
            assert!(n.subject.contains("Belastingdienst"), "{tag}");
            assert!(n.body.contains(t.nature(Nature::Decision)), "{tag}");
            assert!(n.body.contains("Betaal vóór de datum"), "{tag}");
            assert!(n.body.contains(&t.date(Timestamp(1_800_000_000))), "{tag}");
            assert!(n.body.contains("https://inbox.example/"), "{tag}");
        }
        assert_eq!(
            for_language("de").date(Timestamp(1_800_000_000)),
            "15.01.2027"
        );
    }
}
