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
use estafette_pki::{AssertedPerson, Federation, NodeKind};
use estafette_relay::RunningNode;
use estafette_relay::config::Config;
use estafette_relay::home::client::CitizenClient;
use estafette_spec::relay::RetryPolicy;
use estafette_spec::{EvidenceEvent, Letter, MessageId, Nature, NodeId, Oin};
use rand_core::OsRng;

use crate::RunningGateway;
use crate::client::{AgencyClient, timeline};
use crate::config::GatewayConfig;
use crate::gateway::ManualClock;
use crate::notify::SmtpSettings;
use crate::smtp_sink::SmtpSink;

mod administrator;
mod steps;

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
        oidc: vec![],
        wallet: None,
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
