//! What the gateway writes to people (notification e-mails and paper
//! letters), in plain language, in Dutch, English, German and French. A
//! language the catalogue does not have falls back to Dutch.
//!
//! Notifications name the sender, the kind of letter, the expected action
//! and the deadline, and never the letter's subject or body.

use estafette_spec::{Nature, ReasonCode, Timestamp};

/// The texts of one language. Placeholders in braces are filled in by the
/// functions below.
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

const NL: Texts = Texts {
    language: "nl",
    new_letter_subject: "U hebt een nieuwe brief van {sender}",
    reminder_subject: "Herinnering: u hebt een brief van {sender} nog niet gelezen",
    new_letter_intro: "{sender} heeft u een brief gestuurd. De brief staat in uw digitale brievenbus.",
    reminder_intro: "Op {date} kreeg u een brief van {sender}. U hebt deze brief nog niet gelezen.",
    kind_label: "Soort brief",
    natures: ["Besluit", "Herinnering", "Verzoek", "Informatie"],
    legal_effect: "Deze brief heeft gevolgen voor u. U kunt er misschien bezwaar tegen maken.",
    action_label: "Wat u moet doen",
    deadline_label: "Uiterlijk",
    no_deadline: "geen datum",
    read_at: "Lees de brief in uw digitale brievenbus",
    never_content: "In deze e-mail staat nooit de brief zelf. Wij vragen u nooit om uw wachtwoord of bankgegevens.",
    verify_subject: "Bevestig uw e-mailadres",
    verify_body: "U hebt dit e-mailadres opgegeven voor berichten over uw digitale brievenbus.\nKlik op de link om het te bevestigen. De link werkt 24 uur.\n\n{link}\n\nHebt u dit niet zelf gedaan? Dan hoeft u niets te doen.",
    paper_heading: "Waarom krijgt u deze brief op papier?",
    from_label: "Van",
    date_label: "Datum",
    reference_label: "Kenmerk",
    on_behalf_label: "Voor",
    subject_label: "Onderwerp",
    attachments_label: "Bijlagen (in uw digitale brievenbus)",
    why_choice: "U hebt niet gekozen voor digitale post van {sender}. Daarom krijgt u deze brief op papier.",
    why_unread: "Wij hebben deze brief op {date} in uw digitale brievenbus gezet. U hebt de brief nog niet geopend. Daarom krijgt u hem ook op papier.",
    why_deadline: "Wij hebben deze brief op {date} in uw digitale brievenbus gezet. U hebt de brief nog niet geopend en de termijn loopt bijna af. Daarom krijgt u hem ook op papier.",
    why_channel: "Wij konden u geen e-mail sturen over deze brief. Daarom krijgt u hem ook op papier. Controleer uw e-mailadres in uw digitale brievenbus.",
    why_dormant: "U hebt uw digitale brievenbus meer dan een jaar niet bekeken. Daarom krijgt u deze brief ook op papier.",
    why_failed: "Deze brief kon niet in uw digitale brievenbus worden gezet. Daarom krijgt u hem op papier.",
    how_to_choose: "Wilt u post digitaal krijgen, of juist alles op papier? Dat kiest u zelf, per afzender, in uw digitale brievenbus. Alles op papier kan in één stap. Doet u niets, dan verandert er niets.",
    confirm_subject: "Wilt u uw post nog digitaal krijgen?",
    confirm_body: "U hebt gekozen voor digitale post. Maar u hebt uw digitale brievenbus meer dan een jaar niet bekeken, en er staan ongelezen brieven in. Tot u weer inlogt, sturen wij nieuwe brieven ook op papier. Log in om uw keuze te bevestigen, of kies voor alles op papier.",
    channel_subject: "Wij kunnen u geen e-mail sturen",
    channel_body: "Uw digitale brievenbus staat aan, maar e-mails over nieuwe brieven komen niet aan. Log in en geef een e-mailadres op dat werkt. Tot die tijd sturen wij uw brieven ook op papier.",
    page_label: "Pagina",
};

const EN: Texts = Texts {
    language: "en",
    new_letter_subject: "You have a new letter from {sender}",
    reminder_subject: "Reminder: you have not read a letter from {sender}",
    new_letter_intro: "{sender} has sent you a letter. It is in your digital inbox.",
    reminder_intro: "On {date} you received a letter from {sender}. You have not read it yet.",
    kind_label: "Kind of letter",
    natures: ["Decision", "Reminder", "Request", "Information"],
    legal_effect: "This letter has consequences for you. You may be able to object to it.",
    action_label: "What you need to do",
    deadline_label: "By",
    no_deadline: "no date",
    read_at: "Read the letter in your digital inbox",
    never_content: "This e-mail never contains the letter itself. We never ask for your password or bank details.",
    verify_subject: "Confirm your e-mail address",
    verify_body: "You gave this e-mail address for messages about your digital inbox.\nFollow the link to confirm it. The link works for 24 hours.\n\n{link}\n\nDid you not do this yourself? Then you need not do anything.",
    paper_heading: "Why do you get this letter on paper?",
    from_label: "From",
    date_label: "Date",
    reference_label: "Reference",
    on_behalf_label: "For",
    subject_label: "Subject",
    attachments_label: "Attachments (in your digital inbox)",
    why_choice: "You have not chosen digital mail from {sender}. That is why you get this letter on paper.",
    why_unread: "We put this letter in your digital inbox on {date}. You have not opened it yet. That is why you also get it on paper.",
    why_deadline: "We put this letter in your digital inbox on {date}. You have not opened it yet and the deadline is close. That is why you also get it on paper.",
    why_channel: "We could not send you an e-mail about this letter. That is why you also get it on paper. Please check your e-mail address in your digital inbox.",
    why_dormant: "You have not looked at your digital inbox for more than a year. That is why you also get this letter on paper.",
    why_failed: "This letter could not be put in your digital inbox. That is why you get it on paper.",
    how_to_choose: "Do you want your mail digitally, or everything on paper? You choose, per sender, in your digital inbox. Everything on paper takes one step. If you do nothing, nothing changes.",
    confirm_subject: "Do you still want your mail digitally?",
    confirm_body: "You chose digital mail. But you have not looked at your digital inbox for more than a year, and it holds unread letters. Until you log in again, we also send new letters on paper. Log in to confirm your choice, or choose everything on paper.",
    channel_subject: "We cannot send you e-mail",
    channel_body: "Your digital inbox is switched on, but e-mails about new letters do not arrive. Please log in and give an e-mail address that works. Until then we also send your letters on paper.",
    page_label: "Page",
};

const DE: Texts = Texts {
    language: "de",
    new_letter_subject: "Sie haben einen neuen Brief von {sender}",
    reminder_subject: "Erinnerung: Sie haben einen Brief von {sender} noch nicht gelesen",
    new_letter_intro: "{sender} hat Ihnen einen Brief geschickt. Er liegt in Ihrem digitalen Briefkasten.",
    reminder_intro: "Am {date} haben Sie einen Brief von {sender} bekommen. Sie haben ihn noch nicht gelesen.",
    kind_label: "Art des Briefes",
    natures: ["Bescheid", "Erinnerung", "Anfrage", "Information"],
    legal_effect: "Dieser Brief hat Folgen für Sie. Vielleicht können Sie Einspruch erheben.",
    action_label: "Was Sie tun müssen",
    deadline_label: "Bis",
    no_deadline: "kein Datum",
    read_at: "Lesen Sie den Brief in Ihrem digitalen Briefkasten",
    never_content: "Diese E-Mail enthält nie den Brief selbst. Wir fragen nie nach Ihrem Passwort oder Ihren Bankdaten.",
    verify_subject: "Bestätigen Sie Ihre E-Mail-Adresse",
    verify_body: "Sie haben diese E-Mail-Adresse für Nachrichten über Ihren digitalen Briefkasten angegeben.\nFolgen Sie dem Link, um sie zu bestätigen. Der Link gilt 24 Stunden.\n\n{link}\n\nWaren Sie das nicht selbst? Dann müssen Sie nichts tun.",
    paper_heading: "Warum bekommen Sie diesen Brief auf Papier?",
    from_label: "Von",
    date_label: "Datum",
    reference_label: "Zeichen",
    on_behalf_label: "Für",
    subject_label: "Betreff",
    attachments_label: "Anlagen (in Ihrem digitalen Briefkasten)",
    why_choice: "Sie haben keine digitale Post von {sender} gewählt. Darum bekommen Sie diesen Brief auf Papier.",
    why_unread: "Wir haben diesen Brief am {date} in Ihren digitalen Briefkasten gelegt. Sie haben ihn noch nicht geöffnet. Darum bekommen Sie ihn auch auf Papier.",
    why_deadline: "Wir haben diesen Brief am {date} in Ihren digitalen Briefkasten gelegt. Sie haben ihn noch nicht geöffnet, und die Frist läuft bald ab. Darum bekommen Sie ihn auch auf Papier.",
    why_channel: "Wir konnten Ihnen zu diesem Brief keine E-Mail schicken. Darum bekommen Sie ihn auch auf Papier. Bitte prüfen Sie Ihre E-Mail-Adresse in Ihrem digitalen Briefkasten.",
    why_dormant: "Sie haben Ihren digitalen Briefkasten seit über einem Jahr nicht angesehen. Darum bekommen Sie diesen Brief auch auf Papier.",
    why_failed: "Dieser Brief konnte nicht in Ihren digitalen Briefkasten gelegt werden. Darum bekommen Sie ihn auf Papier.",
    how_to_choose: "Möchten Sie Ihre Post digital bekommen, oder alles auf Papier? Das wählen Sie selbst, für jeden Absender, in Ihrem digitalen Briefkasten. Alles auf Papier geht in einem Schritt. Wenn Sie nichts tun, ändert sich nichts.",
    confirm_subject: "Möchten Sie Ihre Post weiter digital bekommen?",
    confirm_body: "Sie haben digitale Post gewählt. Aber Sie haben Ihren digitalen Briefkasten seit über einem Jahr nicht angesehen, und darin liegen ungelesene Briefe. Bis Sie sich wieder anmelden, schicken wir neue Briefe auch auf Papier. Melden Sie sich an, um Ihre Wahl zu bestätigen, oder wählen Sie alles auf Papier.",
    channel_subject: "Wir können Ihnen keine E-Mail schicken",
    channel_body: "Ihr digitaler Briefkasten ist eingeschaltet, aber E-Mails über neue Briefe kommen nicht an. Bitte melden Sie sich an und geben Sie eine E-Mail-Adresse an, die funktioniert. Bis dahin schicken wir Ihre Briefe auch auf Papier.",
    page_label: "Seite",
};

const FR: Texts = Texts {
    language: "fr",
    new_letter_subject: "Vous avez un nouveau courrier de {sender}",
    reminder_subject: "Rappel : vous n'avez pas lu un courrier de {sender}",
    new_letter_intro: "{sender} vous a envoyé un courrier. Il se trouve dans votre boîte aux lettres numérique.",
    reminder_intro: "Le {date}, vous avez reçu un courrier de {sender}. Vous ne l'avez pas encore lu.",
    kind_label: "Type de courrier",
    natures: ["Décision", "Rappel", "Demande", "Information"],
    legal_effect: "Ce courrier a des conséquences pour vous. Vous pouvez peut-être le contester.",
    action_label: "Ce que vous devez faire",
    deadline_label: "Avant le",
    no_deadline: "pas de date",
    read_at: "Lisez le courrier dans votre boîte aux lettres numérique",
    never_content: "Cet e-mail ne contient jamais le courrier lui-même. Nous ne demandons jamais votre mot de passe ni vos coordonnées bancaires.",
    verify_subject: "Confirmez votre adresse e-mail",
    verify_body: "Vous avez donné cette adresse e-mail pour les messages sur votre boîte aux lettres numérique.\nSuivez le lien pour la confirmer. Le lien est valable 24 heures.\n\n{link}\n\nCe n'était pas vous ? Vous n'avez rien à faire.",
    paper_heading: "Pourquoi recevez-vous ce courrier sur papier ?",
    from_label: "De",
    date_label: "Date",
    reference_label: "Référence",
    on_behalf_label: "Pour",
    subject_label: "Objet",
    attachments_label: "Pièces jointes (dans votre boîte aux lettres numérique)",
    why_choice: "Vous n'avez pas choisi le courrier numérique de {sender}. C'est pourquoi vous recevez ce courrier sur papier.",
    why_unread: "Nous avons mis ce courrier dans votre boîte aux lettres numérique le {date}. Vous ne l'avez pas encore ouvert. C'est pourquoi vous le recevez aussi sur papier.",
    why_deadline: "Nous avons mis ce courrier dans votre boîte aux lettres numérique le {date}. Vous ne l'avez pas encore ouvert et le délai se termine bientôt. C'est pourquoi vous le recevez aussi sur papier.",
    why_channel: "Nous n'avons pas pu vous envoyer d'e-mail pour ce courrier. C'est pourquoi vous le recevez aussi sur papier. Vérifiez votre adresse e-mail dans votre boîte aux lettres numérique.",
    why_dormant: "Vous n'avez pas regardé votre boîte aux lettres numérique depuis plus d'un an. C'est pourquoi vous recevez aussi ce courrier sur papier.",
    why_failed: "Ce courrier n'a pas pu être mis dans votre boîte aux lettres numérique. C'est pourquoi vous le recevez sur papier.",
    how_to_choose: "Voulez-vous recevoir votre courrier en numérique, ou tout sur papier ? C'est vous qui choisissez, pour chaque expéditeur, dans votre boîte aux lettres numérique. Tout sur papier se fait en une étape. Si vous ne faites rien, rien ne change.",
    confirm_subject: "Voulez-vous toujours recevoir votre courrier en numérique ?",
    confirm_body: "Vous avez choisi le courrier numérique. Mais vous n'avez pas regardé votre boîte aux lettres numérique depuis plus d'un an, et elle contient des courriers non lus. Jusqu'à votre prochaine connexion, nous envoyons aussi les nouveaux courriers sur papier. Connectez-vous pour confirmer votre choix, ou choisissez tout sur papier.",
    channel_subject: "Nous ne pouvons pas vous envoyer d'e-mail",
    channel_body: "Votre boîte aux lettres numérique est activée, mais les e-mails sur les nouveaux courriers n'arrivent pas. Connectez-vous et donnez une adresse e-mail qui fonctionne. En attendant, nous envoyons aussi vos courriers sur papier.",
    page_label: "Page",
};

/// The catalogue for a BCP 47 tag (`de-DE` → German); Dutch when unknown.
pub fn for_language(tag: &str) -> &'static Texts {
    match tag.split('-').next().unwrap_or("") {
        "en" => &EN,
        "de" => &DE,
        "fr" => &FR,
        _ => &NL,
    }
}

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
            "de" => format!("{d:02}.{m:02}.{y}"),
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
        for tag in ["nl", "en", "de-DE", "fr", "xx"] {
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
