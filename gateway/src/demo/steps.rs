//! Steps 3 to 6 of the demo: the registry (Anna and Jonas go digital
//! themselves), letters from two agencies, each letter's evidence, and
//! reading, with a letter nobody reads that goes on paper.

use anyhow::{Context, Result};
use estafette_pki::keys;
use estafette_relay::home::client::CitizenClient;
use estafette_spec::citizen::PostalAddress;
use estafette_spec::{EvidenceEvent, Nature, Oin, SignedMessage};

use super::*;
use crate::registry;

impl Demo {
    /// Step 3: the registry. Anna and Jonas choose digital mail themselves;
    /// the others are imported (no inbox, or not active).
    pub(super) async fn registry(&self) -> Result<(CitizenClient, CitizenClient)> {
        let people = serde_json::json!([
            { "recipient": CLIENT.recipient, "home_node": "home.demo", "active": false, "language": "nl", "name": "P. de Vries",
              "postal_address": { "street_lines": ["Dorpsstraat 1"], "postal_code": "1234 AB", "city": "Voorbeeld", "country": "NL" } },
            { "recipient": NO_INBOX.recipient, "language": "nl", "name": "F. el Amrani",
              "postal_address": { "street_lines": ["Kerkweg 12"], "postal_code": "5678 CD", "city": "Voorbeeld", "country": "NL" } }
        ]);
        registry::import(
            self.gateway.gateway.records(),
            &self.trust,
            &people.to_string(),
        )
        .await?;
        println!(
            "3. Registry: {}; {} (imported).",
            CLIENT.label, NO_INBOX.label
        );
        Ok((self.anna().await?, self.jonas().await?))
    }

    /// Anna goes digital step by step.
    async fn anna(&self) -> Result<CitizenClient> {
        println!(
            "   {} chooses digital mail herself, step by step:",
            RESIDENT.label
        );
        let anna = self
            .log_in(RESIDENT.recipient, "idp.nl.demo", ("Jansen", "Anna"))
            .await?;
        let address = PostalAddress {
            street_lines: vec!["Stationsweg 3".into()],
            postal_code: "1234 AB".into(),
            city: "Voorbeeld".into(),
            country: estafette_spec::CountryCode::NL,
        };
        let view = anna.register("nl", Some(&address)).await?;
        println!(
            "   - logged in at {} with idp.nl.demo (level substantial); registered: inbox {}, not active",
            self.home_id,
            view.inbox.map(|i| i.to_string()).unwrap_or_default()
        );
        let subject = verify_email(&anna, &self.sink, ANNA_EMAIL).await?;
        println!("   - added {ANNA_EMAIL}; the verification e-mail arrived (\"{subject}\")");
        println!("   - followed the link: address verified");
        anna.activate().await?;
        println!("   - activated her inbox (an explicit act; it started inactive)");
        anna.set_consent(TAX, true).await?;
        anna.set_consent(TOWN, true).await?;
        println!(
            "   - chose digital mail from Belastingdienst and Gemeente Voorbeeld (everyone else: paper)"
        );
        Ok(anna)
    }

    /// Jonas has no BSN: the German eID node vouches for him (eidas:DE/NL/…).
    async fn jonas(&self) -> Result<CitizenClient> {
        let jonas = self
            .log_in(ABROAD.recipient, "eid.de.demo", ("Müller", "Jonas"))
            .await?;
        let address = PostalAddress {
            street_lines: vec!["Hauptstraße 5".into()],
            postal_code: "10115".into(),
            city: "Berlin".into(),
            country: "DE".parse()?,
        };
        jonas.register("de", Some(&address)).await?;
        let subject = verify_email(&jonas, &self.sink, JONAS_EMAIL).await?;
        jonas.activate().await?;
        jonas.set_consent(TAX, true).await?;
        println!(
            "   {} logs in through the German eID node eid.de.demo (no BSN), registers with his address in Berlin",
            ABROAD.label
        );
        println!(
            "   and German as his language (\"{subject}\"), verifies {JONAS_EMAIL}, activates, and chooses digital mail from Belastingdienst"
        );
        Ok(jonas)
    }

    /// Step 4: letters over HTTPS with each agency's client certificate.
    pub(super) async fn send_letters(&self) -> Result<Vec<Sent>> {
        let (tax, town) = (&self.tax, &self.town);
        let letters: [(&Oin, &'static Person, &'static str, Nature, &str); 5] = [
            (
                tax,
                &RESIDENT,
                "Voorlopige aanslag 2027",
                Nature::Decision,
                "Betaal € 412 voor 1 maart 2027.",
            ),
            (
                tax,
                &ABROAD,
                "Steuerbescheid 2026 (Niederlande)",
                Nature::Decision,
                "Zahlen Sie € 95 bis zum 1. März 2027.",
            ),
            (
                town,
                &RESIDENT,
                UNREAD_SUBJECT,
                Nature::Information,
                "Haal uw paspoort op bij het gemeentehuis.",
            ),
            (
                tax,
                &CLIENT,
                "Herinnering: aangifte 2026",
                Nature::Reminder,
                "Doe aangifte voor 1 mei 2027.",
            ),
            (
                town,
                &NO_INBOX,
                "Afvalkalender 2027",
                Nature::Information,
                "Geen actie nodig.",
            ),
        ];
        println!(
            "\n4. Letters, each sealed by its agency and submitted with the agency's client certificate:\n"
        );
        let mut sent = Vec::new();
        for (oin, person, subject, nature, action) in letters {
            let reference = format!("DEMO-{}", sent.len() + 1);
            let letter = demo_letter(
                oin,
                person.recipient.parse()?,
                subject,
                nature,
                action,
                reference,
            );
            let seal = keys::read_ed25519(&self.fed.agency_dir(oin).join("seal.key.pem"))?;
            let signed = SignedMessage::sign(&letter, &seal)?;
            let summary = self.client_for(oin)?.submit_summary(signed).await?;
            let why = summary
                .reason
                .as_deref()
                .map(|r| format!(" (reason: {r})"))
                .unwrap_or_default();
            println!(
                "   {} → {}: \"{subject}\" — channel {}{why}",
                self.trust
                    .agency(oin)
                    .map(|a| a.name.as_str())
                    .unwrap_or("?"),
                person.label,
                summary.channel
            );
            sent.push(Sent {
                sender: oin.clone(),
                to: person,
                subject,
                message: letter.message_id,
                digital: summary.channel == "digital",
            });
        }
        Ok(sent)
    }

    /// Step 5: each letter's evidence, fetched over HTTPS and verified
    /// offline; whether every signature verified.
    pub(super) async fn show_evidence(&self, sent: &[Sent]) -> Result<bool> {
        println!(
            "\n5. Evidence per letter, fetched by the sending agency and verified against the trust list:\n"
        );
        let mut all_verified = true;
        for letter in sent {
            let want = if letter.digital {
                EvidenceEvent::ConsignmentNotification
            } else {
                EvidenceEvent::PaperFallback
            };
            let client = self.client_for(&letter.sender)?;
            let chain = wait_for_evidence(&client, &letter.message, want, &self.trust).await?;
            all_verified &= print_timeline(
                &format!("\"{}\" to {}", letter.subject, letter.to.label),
                &chain,
                &self.trust,
            );
        }
        for mail in self.sink.mails() {
            println!("   e-mail to {}: \"{}\"", mail.to.join(", "), mail.subject);
        }
        Ok(all_verified)
    }

    /// Step 6: reading, and a letter nobody reads that goes on paper once
    /// the gateway's clock has moved on.
    pub(super) async fn reading_and_time(
        &self,
        anna: &CitizenClient,
        jonas: &CitizenClient,
        sent: &[Sent],
    ) -> Result<bool> {
        let letters = anna.letters().await?;
        let read = letters
            .iter()
            .find(|l| l.subject == "Voorlopige aanslag 2027")
            .context("Anna's tax letter is not in her inbox")?;
        anna.open(&read.envelope_id.to_string()).await?;
        for letter in jonas.letters().await? {
            jonas.open(&letter.envelope_id.to_string()).await?;
        }
        println!(
            "\n6. Anna opens \"{}\" and Jonas opens his letter: ContentHandover evidence naming the holder.",
            read.subject
        );
        // The gateway learns of the openings before time moves on.
        for letter in sent
            .iter()
            .filter(|l| l.digital && l.subject != UNREAD_SUBJECT)
        {
            let client = self.client_for(&letter.sender)?;
            wait_for_evidence(
                &client,
                &letter.message,
                EvidenceEvent::ContentHandover,
                &self.trust,
            )
            .await?;
        }
        println!(
            "   \"{UNREAD_SUBJECT}\" stays unread. The gateway's clock is moved on: 8 days (a reminder), then 7 more (paper):\n"
        );
        self.clock.advance_s(8 * 24 * 3600);
        let first = self.gateway.gateway.monitor_cycle().await?;
        self.clock.advance_s(7 * 24 * 3600);
        let report = self.gateway.gateway.monitor_cycle().await?;
        let unread = sent
            .iter()
            .find(|l| l.subject == UNREAD_SUBJECT)
            .context("the unread letter")?;
        let chain = self
            .client_for(&self.town)?
            .evidence(&unread.message)
            .await?;
        let verified = print_timeline(
            &format!("\"{}\" to {}", unread.subject, RESIDENT.label),
            &chain,
            &self.trust,
        );
        println!(
            "   The monitor sent {} reminder(s) and put {} letter(s) on paper: {:?}",
            first.reminded + report.reminded,
            report.papered.values().sum::<usize>(),
            report.papered
        );
        Ok(verified)
    }
}
