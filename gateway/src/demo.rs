//! `estafette-gateway demo`: a whole federation on loopback in one command.
//! A fresh PKI, a gateway, a transit relay and a home relay, a resident who
//! chooses digital mail herself through the home node's citizen API (login,
//! e-mail verified over SMTP, activation, consent), letters from two
//! agencies over the real HTTPS API with client certificates, each letter's
//! evidence timeline with every signature checked offline, and a letter
//! that goes on paper (a real PDF) because it was not read.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use estafette_pki::{AssertedPerson, Federation, NodeKind, keys};
use estafette_relay::RunningNode;
use estafette_relay::config::Config;
use estafette_relay::home::client::CitizenClient;
use estafette_spec::citizen::PostalAddress;
use estafette_spec::mandate::{Attestation, AttestationContent, LegalKind, Representative};
use estafette_spec::relay::RetryPolicy;
use estafette_spec::{EvidenceEvent, Letter, MessageId, Nature, NodeId, Oin, SignedMessage};
use rand_core::OsRng;

use crate::client::{AgencyClient, timeline};
use crate::config::GatewayConfig;
use crate::gateway::ManualClock;
use crate::notify::SmtpSettings;
use crate::smtp_sink::SmtpSink;
use crate::{RunningGateway, registry};

const TAX: &str = "00000001003214345000";
const TOWN: &str = "00000003273318220000";
/// Longest wait for a letter's evidence to come back.
const EVIDENCE_WAIT: Duration = Duration::from_secs(60);

fn free_udp() -> Result<SocketAddr> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?)
}

fn free_tcp() -> Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

fn node_config(fed: &Federation, id: &NodeId, listen: SocketAddr, home: bool) -> Config {
    Config {
        retry: RetryPolicy {
            base_ms: 200,
            cap_ms: 5_000,
            horizon_s: 3_600,
        },
        ..Config::for_federation_node(fed, id, listen, home)
    }
}

/// A letter the demo leaves unread, to show it going on paper.
const UNREAD_SUBJECT: &str = "Uw paspoort is klaar";
const ANNA_EMAIL: &str = "a.jansen@example.nl";
const JONAS_EMAIL: &str = "j.mueller@example.de";
/// The financial administrator (a professional with ten clients).
const ADMIN: &str = "bsn:111111110";
const ADMIN_EMAIL: &str = "b.bakker@bewindvoering.example";

/// Adds an e-mail address and follows the link that arrives; gives the
/// verification e-mail's subject.
async fn verify_email(client: &CitizenClient, sink: &SmtpSink, address: &str) -> Result<String> {
    client.add_email(address).await?;
    let mails = sink
        .wait_for(EVIDENCE_WAIT, |m| m.iter().any(|m| m.to == [address]))
        .await
        .map_err(|_| anyhow::anyhow!("no verification e-mail arrived"))?;
    let mail = mails
        .iter()
        .find(|m| m.to == [address])
        .context("no verification e-mail")?;
    let token = mail
        .body
        .lines()
        .find_map(|l| {
            l.trim()
                .split_once("/verify-email?token=")
                .map(|(_, t)| t.to_owned())
        })
        .context("no verification link in the e-mail")?;
    client.verify_email(&token).await?;
    Ok(mail.subject.clone())
}

/// Logs a person in at the home node's citizen API with an assertion from `idp`.
async fn log_in(
    fed: &Federation,
    addr: SocketAddr,
    home: &NodeId,
    subject: &str,
    idp: &str,
    (family, given): (&str, &str),
) -> Result<CitizenClient> {
    let mut client = CitizenClient::new(addr, home.as_str(), &fed.web_ca_path())?;
    let mut person = AssertedPerson::test(subject.parse()?);
    person.family_name = family.into();
    person.given_names = given.into();
    let assertion = fed.mint_assertion(&idp.parse()?, &person, home, estafette_pki::now(), 300)?;
    client.login(&assertion).await?;
    Ok(client)
}

/// Step 7: a financial administrator registers the court's attestations for
/// ten clients, the tax office writes to each, the administrator (who gets
/// the notifications) opens one letter, and that client sees it in the
/// access log.
#[allow(clippy::too_many_arguments)]
async fn administrator(
    fed: &Federation,
    gateway: &RunningGateway,
    sink: &SmtpSink,
    citizen_addr: SocketAddr,
    home: &NodeId,
    court: &NodeId,
    client_for: &dyn Fn(&Oin) -> Result<AgencyClient>,
    trust: &estafette_spec::TrustList,
) -> Result<()> {
    let tax: Oin = TAX.parse()?;
    let clients: Vec<estafette_spec::Bsn> = (200_000_000u32..)
        .filter_map(|i| i.to_string().parse().ok())
        .take(10)
        .collect();
    let people: Vec<serde_json::Value> = clients
        .iter()
        .enumerate()
        .map(|(i, bsn)| serde_json::json!({
            "recipient": format!("bsn:{bsn}"), "home_node": home.as_str(), "active": true,
            "digital_senders": [TAX], "name": format!("Cliënt {}", i + 1),
            "contact_channels": [{ "kind": "email", "address": format!("client{}@example.nl", i + 1), "state": "verified" }],
            "postal_address": { "street_lines": [format!("Laan {}", i + 1)], "postal_code": "1234 AB", "city": "Voorbeeld", "country": "NL" }
        }))
        .collect();
    registry::import(
        gateway.gateway.records(),
        trust,
        &serde_json::Value::Array(people).to_string(),
    )
    .await?;
    let admin = log_in(
        fed,
        citizen_addr,
        home,
        ADMIN,
        "idp.nl.demo",
        ("Bakker", "Bea"),
    )
    .await?;
    admin.register("nl", None).await?;
    verify_email(&admin, sink, ADMIN_EMAIL).await?;
    let court_key = keys::read_ed25519(&fed.court_registry_dir(court).join("signing.key.pem"))?;
    let office = PostalAddress {
        street_lines: vec!["Postbus 100".into()],
        postal_code: "3500 AA".into(),
        city: "Utrecht".into(),
        country: estafette_spec::CountryCode::NL,
    };
    let now = estafette_pki::now();
    for (i, bsn) in clients.iter().enumerate() {
        let content = AttestationContent {
            registry: court.clone(),
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
    let list = admin.clients().await?;
    println!(
        "\n7. B. Bakker (Bewindvoering De Brug) registers the court's attestations of financial administration for {} clients;",
        list.len()
    );
    let mut sent = Vec::new();
    for bsn in &clients {
        let seal = keys::read_ed25519(&fed.agency_dir(&tax).join("seal.key.pem"))?;
        let letter = Letter {
            message_id: MessageId::random(&mut OsRng),
            sender: tax.clone(),
            recipient: format!("bsn:{bsn}").parse()?,
            created_at: estafette_pki::now(),
            subject: "Voorlopige aanslag 2027".into(),
            body: "Voorlopige aanslag 2027\n\nDit is een voorbeeldbrief van de Estafette-demo."
                .into(),
            attachments: vec![],
            nature: Nature::Decision,
            legal_effect: true,
            expected_action: "Betaal € 50 voor 1 maart 2027.".into(),
            response_deadline: Some(estafette_pki::now().plus_s(60 * 86_400)),
            language: "nl".into(),
            sender_reference: "DEMO-BW".into(),
        };
        let signed = SignedMessage::sign(&letter, &seal)?;
        client_for(&tax)?.submit_summary(signed).await?;
        sent.push(letter.message_id);
    }
    for m in &sent {
        wait_for_evidence(
            &client_for(&tax)?,
            m,
            EvidenceEvent::ConsignmentNotification,
            trust,
        )
        .await?;
    }
    let to_admin = sink
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
    let client3 = log_in(
        fed,
        citizen_addr,
        home,
        &format!("bsn:{}", clients[2]),
        "idp.nl.demo",
        ("Drie", "Cliënt"),
    )
    .await?;
    println!("   The administrator opens Cliënt 3's letter; Cliënt 3's access log:");
    for entry in client3.access_log().await? {
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

/// Fetches a letter's evidence until it holds `want` (bounded wait).
async fn wait_for_evidence(
    client: &AgencyClient,
    message: &MessageId,
    want: EvidenceEvent,
    trust: &estafette_spec::TrustList,
) -> Result<Vec<Vec<u8>>> {
    let started = Instant::now();
    loop {
        let chain = client.evidence(message).await?;
        let done = chain
            .iter()
            .filter_map(|b| estafette_spec::Evidence::verify(b, trust).ok())
            .any(|v| v.record.event == want);
        if done {
            return Ok(chain);
        }
        if started.elapsed() > EVIDENCE_WAIT {
            bail!("no {want:?} evidence for {message} within {EVIDENCE_WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Prints a letter's evidence timeline; whether every signature verified.
fn print_timeline(title: &str, chain: &[Vec<u8>], trust: &estafette_spec::TrustList) -> bool {
    let (lines, ok) = timeline(chain, trust);
    println!("   {title}");
    for line in lines {
        println!("     {line}");
    }
    println!();
    ok
}

/// Someone in the demo registry.
struct Person {
    label: &'static str,
    recipient: &'static str,
}

const RESIDENT: Person = Person {
    label: "Anna Jansen, resident",
    recipient: "bsn:999999990",
};
const ABROAD: Person = Person {
    label: "Jonas Müller, cross-border worker (German eID, no BSN)",
    recipient: "eidas:DE/NL/DE-4711-0815",
};
const CLIENT: Person = Person {
    label: "Piet de Vries, client of an administrator (not yet digital)",
    recipient: "bsn:111222333",
};
const NO_INBOX: Person = Person {
    label: "Fatima el Amrani, no digital inbox",
    recipient: "bsn:123456782",
};

/// Runs the demo. `dir`: where to build the federation (a temp dir if none).
/// `serve`: keep running after the letters and print the addresses.
pub async fn run(dir: Option<PathBuf>, serve: bool) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = dir.unwrap_or_else(|| tmp.path().to_path_buf());
    let fed_dir = root.join("federation");
    if fed_dir.exists() {
        bail!("{} already exists: give an empty --dir", fed_dir.display());
    }
    println!(
        "Estafette demo: a federation on loopback in {}\n",
        root.display()
    );

    // 1. The PKI: root, two agencies, gateway, relays, identity providers.
    let mut fed = Federation::init(&fed_dir, "Demo", true)?;
    let tax: Oin = TAX.parse()?;
    let town: Oin = TOWN.parse()?;
    fed.issue_agency(
        &tax,
        "Belastingdienst",
        vec![estafette_spec::Sector::Financial],
    )?;
    fed.issue_agency(&town, "Gemeente Voorbeeld", vec![])?;
    let (gw_id, relay_id, home_id): (NodeId, NodeId, NodeId) = (
        "gateway.demo".parse()?,
        "relay.demo".parse()?,
        "home.demo".parse()?,
    );
    let (gw_quic, relay_quic, home_quic, https) =
        (free_udp()?, free_udp()?, free_udp()?, free_tcp()?);
    fed.issue_gateway(&gw_id, &gw_quic.to_string())?;
    fed.issue_node(&relay_id, &relay_quic.to_string(), NodeKind::Transit)?;
    fed.issue_node(&home_id, &home_quic.to_string(), NodeKind::Home)?;
    fed.set_route(&gw_id, &home_id, Some(&relay_id))?;
    fed.issue_identity_provider(
        &"idp.nl.demo".parse()?,
        estafette_spec::CountryCode::NL,
        estafette_spec::LevelOfAssurance::High,
    )?;
    fed.issue_identity_provider(
        &"eid.de.demo".parse()?,
        "DE".parse()?,
        estafette_spec::LevelOfAssurance::Substantial,
    )?;
    let court: NodeId = "court.demo".parse()?;
    fed.issue_court_registry(&court)?;
    println!("1. PKI: root CA, agencies {TAX} (Belastingdienst) and {TOWN} (Gemeente Voorbeeld),");
    println!(
        "   gateway {gw_id}, transit relay {relay_id}, home relay {home_id}, identity providers for NL and DE, court registry {court}"
    );

    // 2. The nodes, a local SMTP server for notification e-mail, and the
    // gateway on a clock the demo can move on.
    let sink = SmtpSink::start().await?;
    let relay = RunningNode::start(node_config(&fed, &relay_id, relay_quic, false)).await?;
    let mut home_config = node_config(&fed, &home_id, home_quic, true);
    // Browsers do not speak Ed25519: the web inbox gets a P-256 certificate
    // from the federation's web test CA.
    let (_, web_cert, web_key) = fed.issue_web_certificate(
        "home.demo-web",
        &[home_id.to_string(), "127.0.0.1".into(), "localhost".into()],
    )?;
    home_config.citizen = Some(estafette_relay::config::CitizenApiConfig {
        listen: free_tcp()?,
        public_url: None,
        cert: Some(web_cert),
        key: Some(web_key),
        // The demo federation is a test federation: its web login page
        // logs test people in with the national test provider.
        test_idp: Some(estafette_relay::config::TestIdpConfig {
            id: "idp.nl.demo".parse()?,
            key: fed
                .identity_provider_dir(&"idp.nl.demo".parse()?)
                .join("signing.key.pem"),
        }),
    });
    let home = RunningNode::start(home_config).await?;
    let citizen_addr = home
        .citizen_addr()
        .context("the citizen API did not start")?;
    let clock = Arc::new(ManualClock::new(estafette_pki::now()));
    let spool = root.join("paper-spool");
    let mut config = GatewayConfig::new(https, node_config(&fed, &gw_id, gw_quic, false));
    config.notifications = Some(SmtpSettings::plain(
        "127.0.0.1",
        sink.addr.port(),
        "Berichtenbox <noreply@gateway.demo>",
    ));
    config.paper_spool = Some(spool.clone());
    let gateway = RunningGateway::start_with_clock(config, clock.clone()).await?;
    println!(
        "2. Running: agency API https://{} (mutual TLS), gateway QUIC {gw_quic}, relay {relay_quic}, home {home_quic},",
        gateway.https_addr
    );
    println!(
        "   citizen API https://{citizen_addr} at {home_id}, notification e-mail to an SMTP server on {}",
        sink.addr
    );

    // 3. The registry: Anna and Jonas choose digital mail themselves; the
    // others are imported (no inbox, or not active).
    let trust = fed.trust_list(estafette_pki::now())?;
    let people = serde_json::json!([
        { "recipient": CLIENT.recipient, "home_node": "home.demo", "active": false, "language": "nl", "name": "P. de Vries",
          "postal_address": { "street_lines": ["Dorpsstraat 1"], "postal_code": "1234 AB", "city": "Voorbeeld", "country": "NL" } },
        { "recipient": NO_INBOX.recipient, "language": "nl", "name": "F. el Amrani",
          "postal_address": { "street_lines": ["Kerkweg 12"], "postal_code": "5678 CD", "city": "Voorbeeld", "country": "NL" } }
    ]);
    registry::import(gateway.gateway.records(), &trust, &people.to_string()).await?;
    println!(
        "3. Registry: {}; {} (imported).",
        CLIENT.label, NO_INBOX.label
    );
    println!(
        "   {} chooses digital mail herself, step by step:",
        RESIDENT.label
    );
    let anna = log_in(
        &fed,
        citizen_addr,
        &home_id,
        RESIDENT.recipient,
        "idp.nl.demo",
        ("Jansen", "Anna"),
    )
    .await?;
    let anna_address = PostalAddress {
        street_lines: vec!["Stationsweg 3".into()],
        postal_code: "1234 AB".into(),
        city: "Voorbeeld".into(),
        country: estafette_spec::CountryCode::NL,
    };
    let view = anna.register("nl", Some(&anna_address)).await?;
    println!(
        "   - logged in at {home_id} with idp.nl.demo (level substantial); registered: inbox {}, not active",
        view.inbox.map(|i| i.to_string()).unwrap_or_default()
    );
    let subject = verify_email(&anna, &sink, ANNA_EMAIL).await?;
    println!("   - added {ANNA_EMAIL}; the verification e-mail arrived (\"{subject}\")");
    println!("   - followed the link: address verified");
    anna.activate().await?;
    println!("   - activated her inbox (an explicit act; it started inactive)");
    anna.set_consent(TAX, true).await?;
    anna.set_consent(TOWN, true).await?;
    println!(
        "   - chose digital mail from Belastingdienst and Gemeente Voorbeeld (everyone else: paper)"
    );
    // Jonas has no BSN: the German eID node vouches for him (eidas:DE/NL/…).
    let jonas = log_in(
        &fed,
        citizen_addr,
        &home_id,
        ABROAD.recipient,
        "eid.de.demo",
        ("Müller", "Jonas"),
    )
    .await?;
    let jonas_address = PostalAddress {
        street_lines: vec!["Hauptstraße 5".into()],
        postal_code: "10115".into(),
        city: "Berlin".into(),
        country: "DE".parse()?,
    };
    jonas.register("de", Some(&jonas_address)).await?;
    let subject = verify_email(&jonas, &sink, JONAS_EMAIL).await?;
    jonas.activate().await?;
    jonas.set_consent(TAX, true).await?;
    println!(
        "   {} logs in through the German eID node eid.de.demo (no BSN), registers with his address in Berlin",
        ABROAD.label
    );
    println!(
        "   and German as his language (\"{subject}\"), verifies {JONAS_EMAIL}, activates, and chooses digital mail from Belastingdienst"
    );

    // 4. Letters over HTTPS with each agency's client certificate.
    let client_for = |oin: &Oin| -> Result<AgencyClient> {
        Ok(AgencyClient::for_agency_dir(
            gateway.https_addr,
            gw_id.as_str(),
            &fed.root_cert_path(),
            &fed.agency_dir(oin),
        )?)
    };
    let letters: [(&Oin, &Person, &str, Nature, &str); 5] = [
        (
            &tax,
            &RESIDENT,
            "Voorlopige aanslag 2027",
            Nature::Decision,
            "Betaal € 412 voor 1 maart 2027.",
        ),
        (
            &tax,
            &ABROAD,
            "Steuerbescheid 2026 (Niederlande)",
            Nature::Decision,
            "Zahlen Sie € 95 bis zum 1. März 2027.",
        ),
        (
            &town,
            &RESIDENT,
            UNREAD_SUBJECT,
            Nature::Information,
            "Haal uw paspoort op bij het gemeentehuis.",
        ),
        (
            &tax,
            &CLIENT,
            "Herinnering: aangifte 2026",
            Nature::Reminder,
            "Doe aangifte voor 1 mei 2027.",
        ),
        (
            &town,
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
        let seal = keys::read_ed25519(&fed.agency_dir(oin).join("seal.key.pem"))?;
        let letter = Letter {
            message_id: MessageId::random(&mut OsRng),
            sender: oin.clone(),
            recipient: person.recipient.parse()?,
            created_at: estafette_pki::now(),
            subject: subject.into(),
            body: format!("{subject}\n\nDit is een voorbeeldbrief van de Estafette-demo."),
            attachments: vec![],
            nature,
            legal_effect: nature == Nature::Decision,
            expected_action: action.into(),
            response_deadline: (nature != Nature::Information)
                .then(|| estafette_pki::now().plus_s(60 * 86_400)),
            language: "nl".into(),
            sender_reference: format!("DEMO-{}", sent.len() + 1),
        };
        let signed = SignedMessage::sign(&letter, &seal)?;
        let summary = client_for(oin)?.submit_summary(signed).await?;
        let why = summary
            .reason
            .as_deref()
            .map(|r| format!(" (reason: {r})"))
            .unwrap_or_default();
        println!(
            "   {} → {}: \"{subject}\" — channel {}{why}",
            trust.agency(oin).map(|a| a.name.as_str()).unwrap_or("?"),
            person.label,
            summary.channel
        );
        sent.push((
            oin.clone(),
            person,
            subject,
            letter.message_id,
            summary.channel == "digital",
        ));
    }

    // 5. Evidence timelines, fetched over HTTPS and verified offline.
    println!(
        "\n5. Evidence per letter, fetched by the sending agency and verified against the trust list:\n"
    );
    let mut all_verified = true;
    for (oin, person, subject, message, digital) in &sent {
        let want = if *digital {
            EvidenceEvent::ConsignmentNotification
        } else {
            EvidenceEvent::PaperFallback
        };
        let chain = wait_for_evidence(&client_for(oin)?, message, want, &trust).await?;
        all_verified &= print_timeline(
            &format!("\"{subject}\" to {}", person.label),
            &chain,
            &trust,
        );
    }
    for mail in sink.mails() {
        println!("   e-mail to {}: \"{}\"", mail.to.join(", "), mail.subject);
    }

    // 6. Reading, and a letter nobody reads.
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
    for (oin, _, subject, message, digital) in &sent {
        if *digital && *subject != UNREAD_SUBJECT {
            wait_for_evidence(
                &client_for(oin)?,
                message,
                EvidenceEvent::ContentHandover,
                &trust,
            )
            .await?;
        }
    }
    println!(
        "   \"{UNREAD_SUBJECT}\" stays unread. The gateway's clock is moved on: 8 days (a reminder), then 7 more (paper):\n"
    );
    clock.advance_s(8 * 24 * 3600);
    let first = gateway.gateway.monitor_cycle().await?;
    clock.advance_s(7 * 24 * 3600);
    let report = gateway.gateway.monitor_cycle().await?;
    let (_, _, subject, message, _) = sent
        .iter()
        .find(|(_, _, s, _, _)| *s == UNREAD_SUBJECT)
        .context("the unread letter")?;
    let chain = client_for(&town)?.evidence(message).await?;
    all_verified &= print_timeline(
        &format!("\"{subject}\" to {}", RESIDENT.label),
        &chain,
        &trust,
    );
    println!(
        "   The monitor sent {} reminder(s) and put {} letter(s) on paper: {:?}",
        first.reminded + report.reminded,
        report.papered.values().sum::<usize>(),
        report.papered
    );

    // 7. A court-appointed financial administrator with ten clients.
    administrator(
        &fed,
        &gateway,
        &sink,
        citizen_addr,
        &home_id,
        &court,
        &client_for,
        &trust,
    )
    .await?;

    // 8. What went on paper: real PDFs in the print spool.
    let manifest = crate::paper::Spool::new(&spool).manifest()?;
    println!("\n8. The print spool ({}):", spool.display());
    for entry in &manifest {
        println!(
            "   {}  {} page(s), {}, reason {}",
            entry.file,
            entry.pages,
            entry.country,
            entry.reason.as_deref().unwrap_or("-")
        );
    }
    let inbox_count = home.store().inbox_all()?.len();
    let paper = gateway.gateway.paper_queue()?.len();
    println!("\nIn the home relay's inboxes: {inbox_count} letters. Paper letters: {paper}.");
    if !all_verified {
        bail!("some evidence did not verify");
    }
    println!("Every signature verified against the trust list.");

    if serve {
        println!("\nServing (Ctrl-C to stop):");
        println!(
            "  agency API:   https://{} (server name {gw_id})",
            gateway.https_addr
        );
        println!(
            "  web inbox:    https://{citizen_addr}/ (test logins: bsn:999999990 Anna, bsn:111111110 the administrator; the certificate is from the demo's web test CA)"
        );
        println!("  citizen API:  https://{citizen_addr} (server name {home_id})");
        println!(
            "  log in:       estafette-pki assert --dir {} --idp idp.nl.demo --subject bsn:999999990 --audience {home_id} --out a.cose",
            fed_dir.display()
        );
        println!(
            "                curl --cacert {} --resolve {home_id}:{}:127.0.0.1 --data-binary @a.cose -H 'content-type: application/cose' https://{home_id}:{}/v1/session",
            fed.web_ca_path().display(),
            citizen_addr.port(),
            citizen_addr.port()
        );
        println!("  federation:   {}", fed_dir.display());
        println!(
            "  try:          curl --cacert {} --cert {} --key {} https://{gw_id}:{}/v1/recipients/bsn:999999990/reachability --resolve {gw_id}:{}:127.0.0.1",
            fed.root_cert_path().display(),
            fed.agency_dir(&tax).join("tls.crt.pem").display(),
            fed.agency_dir(&tax).join("tls.key.pem").display(),
            gateway.https_addr.port(),
            gateway.https_addr.port()
        );
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
    }
    gateway.shutdown().await;
    relay.shutdown().await;
    home.shutdown().await;
    drop(tmp);
    Ok(())
}
