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
use estafette_spec::relay::RetryPolicy;
use estafette_spec::{EvidenceEvent, Letter, MessageId, Nature, NodeId, Oin, SignedMessage};
use rand_core::OsRng;

use crate::client::{AgencyClient, timeline};
use crate::config::GatewayConfig;
use crate::gateway::ManualClock;
use crate::notify::SmtpSettings;
use crate::smtp_sink::SmtpSink;
use crate::{RunningGateway, registry};

mod administrator;

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

/// A letter the demo sent: who to, and whether it went digitally.
struct Sent {
    sender: Oin,
    to: &'static Person,
    subject: &'static str,
    message: MessageId,
    digital: bool,
}

/// The running demo federation.
struct Demo {
    fed_dir: PathBuf,
    fed: Federation,
    tax: Oin,
    town: Oin,
    gw_id: NodeId,
    home_id: NodeId,
    court: NodeId,
    sink: SmtpSink,
    relay: Arc<RunningNode>,
    home: Arc<RunningNode>,
    citizen_addr: SocketAddr,
    clock: Arc<ManualClock>,
    spool: PathBuf,
    gateway: RunningGateway,
    trust: estafette_spec::TrustList,
}

/// Runs the demo. `dir`: where to build the federation (a temp dir if none).
/// `serve`: keep running after the letters and print the addresses.
pub async fn run(dir: Option<PathBuf>, serve: bool) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = dir.unwrap_or_else(|| tmp.path().to_path_buf());
    let demo = Demo::start(root).await?;
    let (anna, jonas) = demo.registry().await?;
    let sent = demo.send_letters().await?;
    let mut all_verified = demo.show_evidence(&sent).await?;
    all_verified &= demo.reading_and_time(&anna, &jonas, &sent).await?;
    demo.administrator().await?;
    demo.show_paper()?;
    if !all_verified {
        bail!("some evidence did not verify");
    }
    println!("Every signature verified against the trust list.");
    if serve {
        demo.serve_until_ctrl_c().await?;
    }
    demo.gateway.shutdown().await;
    demo.relay.shutdown().await;
    demo.home.shutdown().await;
    drop(tmp);
    Ok(())
}

impl Demo {
    /// Steps 1 and 2: the PKI, then the nodes, an SMTP server and the
    /// gateway on a clock the demo can move on.
    async fn start(root: PathBuf) -> Result<Demo> {
        let fed_dir = root.join("federation");
        if fed_dir.exists() {
            bail!("{} already exists: give an empty --dir", fed_dir.display());
        }
        println!(
            "Estafette demo: a federation on loopback in {}\n",
            root.display()
        );
        let Pki {
            fed,
            tax,
            town,
            gw_id,
            relay_id,
            home_id,
            court,
            ports: (gw_quic, relay_quic, home_quic),
        } = Pki::issue(&fed_dir)?;
        let sink = SmtpSink::start().await?;
        let relay = RunningNode::start(node_config(&fed, &relay_id, relay_quic, false)).await?;
        let home = RunningNode::start(home_config(&fed, &home_id, home_quic)?).await?;
        let citizen_addr = home
            .citizen_addr()
            .context("the citizen API did not start")?;
        let clock = Arc::new(ManualClock::new(estafette_pki::now()));
        let spool = root.join("paper-spool");
        let mut config = GatewayConfig::new(free_tcp()?, node_config(&fed, &gw_id, gw_quic, false));
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
        let trust = fed.trust_list(estafette_pki::now())?;
        Ok(Demo {
            fed_dir,
            fed,
            tax,
            town,
            gw_id,
            home_id,
            court,
            sink,
            relay,
            home,
            citizen_addr,
            clock,
            spool,
            gateway,
            trust,
        })
    }

    /// An agency's HTTPS client, with its client certificate.
    fn client_for(&self, oin: &Oin) -> Result<AgencyClient> {
        Ok(AgencyClient::for_agency_dir(
            self.gateway.https_addr,
            self.gw_id.as_str(),
            &self.fed.root_cert_path(),
            &self.fed.agency_dir(oin),
        )?)
    }

    /// Logs a person in at the home node with an assertion from `idp`.
    async fn log_in(&self, subject: &str, idp: &str, names: (&str, &str)) -> Result<CitizenClient> {
        log_in(
            &self.fed,
            self.citizen_addr,
            &self.home_id,
            subject,
            idp,
            names,
        )
        .await
    }

    /// Step 3: the registry. Anna and Jonas choose digital mail themselves;
    /// the others are imported (no inbox, or not active).
    async fn registry(&self) -> Result<(CitizenClient, CitizenClient)> {
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
    async fn send_letters(&self) -> Result<Vec<Sent>> {
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
    async fn show_evidence(&self, sent: &[Sent]) -> Result<bool> {
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
    async fn reading_and_time(
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

    /// Step 8: what went on paper: real PDFs in the print spool.
    fn show_paper(&self) -> Result<()> {
        let manifest = crate::paper::Spool::new(&self.spool).manifest()?;
        println!("\n8. The print spool ({}):", self.spool.display());
        for entry in &manifest {
            println!(
                "   {}  {} page(s), {}, reason {}",
                entry.file,
                entry.pages,
                entry.country,
                entry.reason.as_deref().unwrap_or("-")
            );
        }
        let inbox_count = self.home.store().inbox_all()?.len();
        let paper = self.gateway.gateway.paper_queue()?.len();
        println!("\nIn the home relay's inboxes: {inbox_count} letters. Paper letters: {paper}.");
        Ok(())
    }

    /// `--serve`: the addresses to try, until Ctrl-C.
    async fn serve_until_ctrl_c(&self) -> Result<()> {
        let (gw_id, home_id, citizen_addr) = (&self.gw_id, &self.home_id, self.citizen_addr);
        let https = self.gateway.https_addr;
        println!("\nServing (Ctrl-C to stop):");
        println!("  agency API:   https://{https} (server name {gw_id})");
        println!(
            "  web inbox:    https://{citizen_addr}/ (test logins: bsn:999999990 Anna, bsn:111111110 the administrator; the certificate is from the demo's web test CA)"
        );
        println!("  citizen API:  https://{citizen_addr} (server name {home_id})");
        println!(
            "  log in:       estafette-pki assert --dir {} --idp idp.nl.demo --subject bsn:999999990 --audience {home_id} --out a.cose",
            self.fed_dir.display()
        );
        println!(
            "                curl --cacert {} --resolve {home_id}:{}:127.0.0.1 --data-binary @a.cose -H 'content-type: application/cose' https://{home_id}:{}/v1/session",
            self.fed.web_ca_path().display(),
            citizen_addr.port(),
            citizen_addr.port()
        );
        println!("  federation:   {}", self.fed_dir.display());
        let agency = self.fed.agency_dir(&self.tax);
        println!(
            "  try:          curl --cacert {} --cert {} --key {} https://{gw_id}:{}/v1/recipients/bsn:999999990/reachability --resolve {gw_id}:{}:127.0.0.1",
            self.fed.root_cert_path().display(),
            agency.join("tls.crt.pem").display(),
            agency.join("tls.key.pem").display(),
            https.port(),
            https.port()
        );
        tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")
    }
}

/// Step 1: the PKI: root, two agencies, gateway, relays, identity
/// providers, a court registry.
struct Pki {
    fed: Federation,
    tax: Oin,
    town: Oin,
    gw_id: NodeId,
    relay_id: NodeId,
    home_id: NodeId,
    court: NodeId,
    /// QUIC addresses of the gateway, the relay and the home node.
    ports: (SocketAddr, SocketAddr, SocketAddr),
}

impl Pki {
    fn issue(fed_dir: &std::path::Path) -> Result<Pki> {
        let mut fed = Federation::init(fed_dir, "Demo", true)?;
        let (tax, town): (Oin, Oin) = (TAX.parse()?, TOWN.parse()?);
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
        let (gw_quic, relay_quic, home_quic) = (free_udp()?, free_udp()?, free_udp()?);
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
        println!(
            "1. PKI: root CA, agencies {TAX} (Belastingdienst) and {TOWN} (Gemeente Voorbeeld),"
        );
        println!(
            "   gateway {gw_id}, transit relay {relay_id}, home relay {home_id}, identity providers for NL and DE, court registry {court}"
        );
        Ok(Pki {
            fed,
            tax,
            town,
            gw_id,
            relay_id,
            home_id,
            court,
            ports: (gw_quic, relay_quic, home_quic),
        })
    }
}

/// The home node's configuration: its citizen API and web inbox, with a
/// P-256 certificate from the federation's web test CA (browsers do not
/// speak Ed25519), and the test login of a test federation.
fn home_config(fed: &Federation, home_id: &NodeId, listen: SocketAddr) -> Result<Config> {
    let mut config = node_config(fed, home_id, listen, true);
    let (_, web_cert, web_key) = fed.issue_web_certificate(
        "home.demo-web",
        &[home_id.to_string(), "127.0.0.1".into(), "localhost".into()],
    )?;
    config.citizen = Some(estafette_relay::config::CitizenApiConfig {
        listen: free_tcp()?,
        public_url: None,
        cert: Some(web_cert),
        key: Some(web_key),
        test_idp: Some(estafette_relay::config::TestIdpConfig {
            id: "idp.nl.demo".parse()?,
            key: fed
                .identity_provider_dir(&"idp.nl.demo".parse()?)
                .join("signing.key.pem"),
        }),
    });
    Ok(config)
}

/// One of the demo's letters.
fn demo_letter(
    sender: &Oin,
    recipient: estafette_spec::Recipient,
    subject: &str,
    nature: Nature,
    action: &str,
    sender_reference: String,
) -> Letter {
    Letter {
        message_id: MessageId::random(&mut OsRng),
        sender: sender.clone(),
        recipient,
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
        sender_reference,
    }
}
