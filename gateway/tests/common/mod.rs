//! A gateway, a home node with its citizen API, an SMTP server and a clock
//! the test moves: shared by the citizen tests.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

pub mod chromium;
pub mod oidc;
pub mod wallet;

use std::sync::Arc;
use std::time::Duration;

use estafette_gateway::RunningGateway;
use estafette_gateway::client::AgencyClient;
use estafette_gateway::config::GatewayConfig;
use estafette_gateway::gateway::ManualClock;
use estafette_gateway::notify::SmtpSettings;
use estafette_gateway::smtp_sink::SmtpSink;
use estafette_gateway::store::test_postgres::TestStore;
use estafette_pki::{AssertedPerson, NodeKind, keys};
use estafette_relay::RunningNode;
use estafette_relay::home::client::CitizenClient;
use estafette_relay::testkit::{AGENCY, NATIONAL_IDP, TestFederation, wait_until};
use estafette_spec::*;
use rand_core::OsRng;

pub const RESIDENT: &str = "bsn:999999990";
pub const ABROAD: &str = "bsn:111222333";
/// The BSN Jonas (abroad, `eidas:DE/NL/…`) gets later.
pub const JONAS_BSN: &str = "bsn:123456782";
pub const EMAIL: &str = "a.jansen@example.nl";
pub const DAY: u64 = 24 * 3600;
pub const WAIT: Duration = Duration::from_secs(60);

/// A short decision letter from `sender` to `to`.
pub fn short_letter(sender: &str, to: &str, reference: &str) -> Letter {
    Letter {
        message_id: MessageId::random(&mut OsRng),
        sender: sender.parse().unwrap(),
        recipient: to.parse().unwrap(),
        created_at: estafette_pki::now(),
        subject: "Aanslag".into(),
        body: "Tekst".into(),
        attachments: vec![],
        nature: Nature::Decision,
        legal_effect: true,
        expected_action: "Betaal het bedrag".into(),
        response_deadline: None,
        language: "nl".into(),
        sender_reference: reference.into(),
    }
}

pub struct World {
    pub fed: TestFederation,
    pub sink: SmtpSink,
    pub clock: Arc<ManualClock>,
    pub gateway: RunningGateway,
    pub home: Arc<RunningNode>,
    pub spool: std::path::PathBuf,
    /// The gateway's database (PostgreSQL when the suite runs on it).
    pub db: TestStore,
    /// The gateway's configuration.
    pub config: GatewayConfig,
}

impl World {
    pub async fn start() -> World {
        Self::start_with(|_| {}).await
    }

    /// As [`Self::start`], with more members added to the federation first.
    pub async fn start_with(prepare: impl FnOnce(&mut estafette_pki::Federation)) -> World {
        Self::start_custom(|f| prepare(&mut f.fed)).await
    }

    /// As [`Self::start`], with the federation and its nodes' configuration
    /// changed first (the home node is `home.test`).
    pub async fn start_custom(prepare: impl FnOnce(&mut TestFederation)) -> World {
        Self::start_on(TestStore::from_env(), prepare).await
    }

    /// As [`Self::start_custom`] on the given database.
    pub async fn start_on(db: TestStore, prepare: impl FnOnce(&mut TestFederation)) -> World {
        let mut fed = TestFederation::new(&[("home.test", NodeKind::Home)], &["home.test"]);
        prepare(&mut fed);
        let sink = SmtpSink::start().await.unwrap();
        let clock = Arc::new(ManualClock::new(estafette_pki::now()));
        let home = RunningNode::start(fed.relay("home.test").config.clone())
            .await
            .unwrap();
        let spool = fed.tmp.path().join("spool");
        let mut config =
            GatewayConfig::new("127.0.0.1:0".parse().unwrap(), fed.gateway.config.clone());
        config.notifications = Some(SmtpSettings::plain(
            "127.0.0.1",
            sink.addr.port(),
            "Berichtenbox <noreply@gateway.test>",
        ));
        config.paper_spool = Some(spool.clone());
        config.store = db.settings.clone();
        let gateway = RunningGateway::start_with_clock(config.clone(), clock.clone())
            .await
            .unwrap();
        World {
            fed,
            sink,
            clock,
            gateway,
            home,
            spool,
            db,
            config,
        }
    }

    /// Another instance of the gateway on the same database (PostgreSQL),
    /// named `name`: its own node address, data directory and print spool
    /// (`<spool>-<name>`), the same keys, clock and SMTP server.
    pub async fn start_instance(&self, name: &str) -> RunningGateway {
        self.start_instance_at(name, "127.0.0.1:0".parse().unwrap())
            .await
    }

    /// As [`Self::start_instance`], its node listening at `listen`.
    pub async fn start_instance_at(
        &self,
        name: &str,
        listen: std::net::SocketAddr,
    ) -> RunningGateway {
        let mut config = self.config.clone();
        config.https_listen = "127.0.0.1:0".parse().unwrap();
        config.node.listen = listen;
        config.node.admin_listen = None;
        // Each instance serves its own log (origin gateway/<name>).
        config.node.log_listen = Some("127.0.0.1:0".parse().unwrap());
        config.node.data_dir = self.fed.tmp.path().join(format!("gateway-{name}"));
        config.paper_spool = Some(self.instance_spool(name));
        config.store.instance = Some(name.into());
        RunningGateway::start_with_clock(config, self.clock.clone())
            .await
            .unwrap()
    }

    /// The print spool of instance `name`.
    pub fn instance_spool(&self, name: &str) -> std::path::PathBuf {
        self.fed.tmp.path().join(format!("spool-{name}"))
    }

    /// An agency client of `sender` for the gateway instance at `addr`.
    pub fn agency_client(&self, sender: &str, addr: std::net::SocketAddr) -> AgencyClient {
        AgencyClient::for_agency_dir(
            addr,
            "gateway.test",
            &self.fed.fed.root_cert_path(),
            &self.fed.fed.agency_dir(&sender.parse().unwrap()),
        )
        .unwrap()
    }

    /// A letter from `sender` to `to`, sealed: its id and the SignedMessage.
    pub fn sealed_letter(&self, sender: &str, to: &str) -> (MessageId, Vec<u8>) {
        let letter = short_letter(sender, to, "AANSLAG-3");
        (letter.message_id, self.sealed(&letter).0)
    }

    /// The token of the newest verification link e-mailed to `email`.
    pub async fn verification_token(&self, email: &str) -> String {
        let mails = self
            .sink
            .wait_for(WAIT, |m| {
                m.iter()
                    .any(|m| m.to == [email] && m.body.contains("verify-email"))
            })
            .await
            .expect("a verification e-mail");
        mails
            .iter()
            .rev()
            .filter(|m| m.to == [email])
            .flat_map(|m| m.body.lines())
            .find_map(|l| l.trim().split_once("token=").map(|(_, t)| t.to_owned()))
            .expect("a verification link")
    }

    /// Registers the logged-in person, verifies `email` from its link,
    /// activates, and chooses digital mail from `senders`.
    pub async fn go_digital(
        &self,
        c: &CitizenClient,
        language: &str,
        address: Option<&estafette_spec::citizen::PostalAddress>,
        email: &str,
        senders: &[&str],
    ) {
        c.register(language, address).await.unwrap();
        c.add_email(email).await.unwrap();
        let token = self.verification_token(email).await;
        c.verify_email(&token).await.unwrap();
        c.activate().await.unwrap();
        for s in senders {
            c.set_consent(s, true).await.unwrap();
        }
    }

    /// The gateway's (moved) clock.
    pub fn clock_now(&self) -> Timestamp {
        use estafette_gateway::gateway::Clock;
        self.clock.now()
    }

    pub fn citizen(&self) -> CitizenClient {
        CitizenClient::new(
            self.home.citizen_addr().unwrap(),
            "home.test",
            &self.fed.fed.web_ca_path(),
        )
        .unwrap()
    }

    pub fn assertion(&self, subject: &str, audience: &str, level: LevelOfAssurance) -> Vec<u8> {
        self.assertion_by(NATIONAL_IDP, subject, audience, level)
    }

    /// An assertion by identity provider `idp` (a name is made up per country).
    pub fn assertion_by(
        &self,
        idp: &str,
        subject: &str,
        audience: &str,
        level: LevelOfAssurance,
    ) -> Vec<u8> {
        let mut person = AssertedPerson::test(subject.parse().unwrap());
        person.level = level;
        // Jonas abroad (eID node: his first given name only) and with the
        // BSN he got later (the national login: all his given names).
        (person.family_name, person.given_names) = if subject.starts_with("eidas:") {
            ("Müller".into(), "Jonas".into())
        } else if subject == JONAS_BSN {
            ("Mueller".into(), "Jonas Maria".into())
        } else {
            ("Jansen".into(), "Anna".into())
        };
        self.fed
            .fed
            .mint_assertion(
                &idp.parse().unwrap(),
                &person,
                &audience.parse().unwrap(),
                estafette_pki::now(),
                300,
            )
            .unwrap()
    }

    pub fn login_assertion(&self, subject: &str) -> Vec<u8> {
        self.assertion(subject, "home.test", LevelOfAssurance::Substantial)
    }

    /// Seals and submits a letter from the test agency; gives its id and channel.
    pub async fn send(&self, to: &str, deadline: Option<Timestamp>) -> (MessageId, String) {
        self.send_from(AGENCY, to, deadline).await
    }

    /// As [`Self::send`] from another agency of the federation.
    pub async fn send_from(
        &self,
        sender: &str,
        to: &str,
        deadline: Option<Timestamp>,
    ) -> (MessageId, String) {
        let letter = Letter {
            message_id: MessageId::random(&mut OsRng),
            sender: sender.parse().unwrap(),
            recipient: to.parse().unwrap(),
            created_at: estafette_pki::now(),
            subject: "Geheime aanslag onderwerp".into(),
            body: "Inhoud die nooit in een notificatie mag staan.".into(),
            attachments: vec![],
            nature: Nature::Decision,
            legal_effect: true,
            expected_action: "Betaal het bedrag".into(),
            response_deadline: deadline,
            language: "nl".into(),
            sender_reference: "AANSLAG-1".into(),
        };
        self.send_letter(letter).await
    }

    /// As [`Self::send`], giving the whole JSON answer.
    pub async fn send_summary(
        &self,
        to: &str,
    ) -> (MessageId, estafette_gateway::http::SubmissionSummary) {
        let letter = short_letter(AGENCY, to, "AANSLAG-2");
        let (signed, client) = self.sealed(&letter);
        let summary = client.submit_summary(signed).await.unwrap();
        (letter.message_id, summary)
    }

    /// The letter sealed by its sender, and that sender's client.
    fn sealed(&self, letter: &Letter) -> (Vec<u8>, AgencyClient) {
        let sender = letter.sender.to_string();
        let key = keys::read_ed25519(
            &self
                .fed
                .fed
                .agency_dir(&sender.parse().unwrap())
                .join("seal.key.pem"),
        )
        .unwrap();
        let signed = SignedMessage::sign(letter, &key).unwrap();
        let client = AgencyClient::for_agency_dir(
            self.gateway.https_addr,
            "gateway.test",
            &self.fed.fed.root_cert_path(),
            &self.fed.fed.agency_dir(&sender.parse().unwrap()),
        )
        .unwrap();
        (signed, client)
    }

    /// Seals and submits a letter as its sender; gives its id and channel.
    pub async fn send_letter(&self, letter: Letter) -> (MessageId, String) {
        let (signed, client) = self.sealed(&letter);
        let summary = client.submit_summary(signed).await.unwrap();
        (letter.message_id, summary.channel)
    }

    /// The events of a message's evidence at the gateway, each verified.
    pub fn events(&self, message: &MessageId) -> Vec<(EvidenceEvent, Option<ReasonCode>)> {
        self.records(message)
            .into_iter()
            .map(|r| (r.event, r.reason))
            .collect()
    }

    /// The verified evidence records of a message at the gateway.
    pub fn records(&self, message: &MessageId) -> Vec<estafette_spec::evidence::EvidenceRecord> {
        let trust = self.gateway.gateway.node.trust();
        self.gateway
            .gateway
            .records()
            .read()
            .unwrap()
            .evidence_for(message)
            .unwrap()
            .iter()
            .map(|b| {
                Evidence::verify(b, &trust)
                    .expect("evidence verifies")
                    .record
            })
            .collect()
    }

    pub async fn wait_for_event(&self, message: &MessageId, event: EvidenceEvent) {
        wait_until(&format!("{event:?} for a letter"), WAIT, || {
            self.events(message).iter().any(|(e, _)| *e == event)
        })
        .await;
    }

    pub fn pdf_text(&self, message: &MessageId) -> String {
        let manifest = estafette_gateway::paper::Spool::new(&self.spool)
            .manifest()
            .unwrap();
        let entry = manifest
            .iter()
            .find(|e| e.message_id.as_deref() == Some(&message.to_string()))
            .unwrap_or_else(|| panic!("no PDF for the letter in {manifest:?}"));
        let out = std::process::Command::new("pdftotext")
            .arg(self.spool.join(&entry.file))
            .arg("-")
            .output()
            .expect("pdftotext (poppler-utils) is installed by scripts/test");
        assert!(out.status.success(), "pdftotext failed");
        // One line: the PDF wraps sentences wherever the page ends.
        String::from_utf8(out.stdout)
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub async fn stop(self) {
        self.gateway.shutdown().await;
        self.home.shutdown().await;
    }
}
