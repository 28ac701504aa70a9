//! Step 7: a financial administrator registers the court's attestations
//! for ten clients, the tax office writes to each, the administrator (who
//! gets the notifications) opens one letter, and that client sees it in
//! the access log.

use anyhow::{Context, Result};
use estafette_pki::keys;
use estafette_relay::home::client::CitizenClient;
use estafette_spec::citizen::PostalAddress;
use estafette_spec::mandate::{Attestation, AttestationContent, LegalKind, Representative};
use estafette_spec::{Bsn, EvidenceEvent, MessageId, Nature, SignedMessage};

use super::{ADMIN, ADMIN_EMAIL, Demo, TAX, demo_letter, verify_email, wait_for_evidence};
use crate::registry;

impl Demo {
    pub(super) async fn administrator(&self) -> Result<()> {
        let clients = self.import_clients().await?;
        let admin = self.log_in(ADMIN, "idp.nl.demo", ("Bakker", "Bea")).await?;
        admin.register("nl", None).await?;
        verify_email(&admin, &self.sink, ADMIN_EMAIL).await?;
        self.register_attestations(&admin, &clients).await?;
        let list = admin.clients().await?;
        println!(
            "\n7. B. Bakker (Bewindvoering De Brug) registers the court's attestations of financial administration for {} clients;",
            list.len()
        );
        let sent = self.write_to_clients(&clients).await?;
        let to_admin = self
            .sink
            .mails()
            .iter()
            .filter(|m| m.to == [ADMIN_EMAIL] && m.subject.contains("Belastingdienst"))
            .count();
        println!(
            "   the tax office writes to all {}; {to_admin} notifications go to the administrator, each naming the client.",
            sent.len()
        );
        let third = list
            .iter()
            .find(|c| c.client_name.as_deref() == Some("Cliënt 3"))
            .context("client 3")?;
        let letters = admin.client_letters(&third.mandate).await?;
        let letter = letters.first().context("client 3's letter")?;
        admin
            .open_client_letter(&third.mandate, &letter.envelope_id.to_string())
            .await?;
        let client3 = format!("bsn:{}", clients[2]);
        let client3 = self
            .log_in(&client3, "idp.nl.demo", ("Drie", "Cliënt"))
            .await?;
        show_access_log(&client3).await
    }

    /// Ten clients in the registry, digital for the tax office.
    async fn import_clients(&self) -> Result<Vec<Bsn>> {
        let clients: Vec<Bsn> = (200_000_000u32..)
            .filter_map(|i| i.to_string().parse().ok())
            .take(10)
            .collect();
        let home = self.home_id.as_str();
        let people: Vec<serde_json::Value> = clients
            .iter()
            .enumerate()
            .map(|(i, bsn)| serde_json::json!({
                "recipient": format!("bsn:{bsn}"), "home_node": home, "active": true,
                "digital_senders": [TAX], "name": format!("Cliënt {}", i + 1),
                "contact_channels": [{ "kind": "email", "address": format!("client{}@example.nl", i + 1), "state": "verified" }],
                "postal_address": { "street_lines": [format!("Laan {}", i + 1)], "postal_code": "1234 AB", "city": "Voorbeeld", "country": "NL" }
            }))
            .collect();
        registry::import(
            self.gateway.gateway.records(),
            &self.trust,
            &serde_json::Value::Array(people).to_string(),
        )
        .await?;
        Ok(clients)
    }

    /// The court's attestation for each client, registered by the administrator.
    async fn register_attestations(&self, admin: &CitizenClient, clients: &[Bsn]) -> Result<()> {
        let court_key = keys::read_ed25519(
            &self
                .fed
                .court_registry_dir(&self.court)
                .join("signing.key.pem"),
        )?;
        let office = PostalAddress {
            street_lines: vec!["Postbus 100".into()],
            postal_code: "3500 AA".into(),
            city: "Utrecht".into(),
            country: estafette_spec::CountryCode::NL,
        };
        let now = estafette_pki::now();
        for (i, bsn) in clients.iter().enumerate() {
            let content = AttestationContent {
                registry: self.court.clone(),
                kind: LegalKind::FinancialAdministration,
                case_reference: format!("C/16/2027/{:03}", i + 1),
                represented: format!("bsn:{bsn}").parse()?,
                representative: Representative {
                    person: ADMIN.parse()?,
                    name: "B. Bakker".into(),
                    organisation: Some("KvK 12345678 Bewindvoering De Brug".into()),
                },
                valid_from: now.minus_s(86_400),
                valid_until: None,
                issued_at: now.minus_s(86_400),
            };
            let attestation = Attestation::sign(&content, &court_key)?;
            admin
                .register_legal_representation(&attestation, true, Some(&office))
                .await?;
        }
        Ok(())
    }

    /// A tax letter to each client, followed until its notification went out.
    async fn write_to_clients(&self, clients: &[Bsn]) -> Result<Vec<MessageId>> {
        let seal = keys::read_ed25519(&self.fed.agency_dir(&self.tax).join("seal.key.pem"))?;
        let mut sent = Vec::new();
        for bsn in clients {
            let letter = demo_letter(
                &self.tax,
                format!("bsn:{bsn}").parse()?,
                "Voorlopige aanslag 2027",
                Nature::Decision,
                "Betaal € 50 voor 1 maart 2027.",
                "DEMO-BW".into(),
            );
            let signed = SignedMessage::sign(&letter, &seal)?;
            self.client_for(&self.tax)?.submit_summary(signed).await?;
            sent.push(letter.message_id);
        }
        let client = self.client_for(&self.tax)?;
        for m in &sent {
            wait_for_evidence(
                &client,
                m,
                EvidenceEvent::ConsignmentNotification,
                &self.trust,
            )
            .await?;
        }
        Ok(sent)
    }
}

async fn show_access_log(client: &CitizenClient) -> Result<()> {
    println!("   The administrator opens Cliënt 3's letter; Cliënt 3's access log:");
    for entry in client.access_log().await? {
        println!(
            "     {}  {} opened {} under mandate {}",
            entry.at,
            entry
                .actor
                .representative
                .as_deref()
                .unwrap_or("the holder"),
            entry.message_id,
            entry.actor.mandate.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}
