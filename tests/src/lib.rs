//! Helpers of the integration tests: the workspace's binaries, processes
//! that are killed when the test ends, and a federation whose gateway,
//! transit relay and home relay each run as their own process.
#![forbid(unsafe_code)]
// No function over about 80 lines (clippy.toml): a long one reads as named steps.
#![warn(clippy::too_many_lines)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod lazyfs;
pub mod udp_proxy;

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use estafette_gateway::client::AgencyClient;
use estafette_gateway::config::GatewayConfig;
use estafette_pki::{NodeKind, keys};
use estafette_relay::testkit::{AGENCY, TestFederation, free_tcp};
use estafette_spec::*;
use rand_core::OsRng;

/// Longest wait for a process to come up.
pub const START_WAIT: Duration = Duration::from_secs(60);

/// A binary of this workspace, built by `cargo test --workspace` (the
/// README's test command) into the target directory next to this test.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (scripts/test runs `cargo test --workspace`, \
         which builds every binary), or `cargo build --bins`",
        path.display()
    );
    path
}

/// What a stopped home node's inboxes hold: every letter as delivered, and
/// the distinct ones (more of the first than of the second: duplicates).
pub fn delivered_at(
    home: &estafette_relay::testkit::TestNode,
) -> (Vec<MessageId>, std::collections::HashSet<MessageId>) {
    let arrived: Vec<MessageId> = estafette_relay::testkit::open_store(home)
        .inbox_all()
        .unwrap()
        .into_iter()
        .map(|(_, _, m)| m)
        .collect();
    let unique = arrived.iter().copied().collect();
    (arrived, unique)
}

/// Submits `count` envelopes for home.test through an in-process gateway,
/// all at once; gives their message ids.
pub async fn submit_envelopes(
    fed: &TestFederation,
    gateway: &std::sync::Arc<estafette_relay::testkit::TestGateway>,
    count: usize,
) -> std::collections::HashSet<MessageId> {
    let mut sent = std::collections::HashSet::new();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..count {
        let (envelope, _, header) = fed.envelope(
            "home.test",
            estafette_relay::testkit::random_inbox(),
            &format!("letter {i}"),
        );
        sent.insert(header.message_id);
        let gateway = gateway.clone();
        tasks.spawn(async move { gateway.submit(envelope, None).await.unwrap() });
    }
    while let Some(t) = tasks.join_next().await {
        t.unwrap();
    }
    sent
}

/// The soft limit of open files a process of the test starts with.
pub const SERVICE_OPEN_FILES: u64 = 1024;

/// A process of the test; killed when dropped. Its standard error goes to
/// `<name>.log` in the given directory.
pub struct Daemon {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `binary` with `args` and waits until `ready` accepts TCP.
    pub fn start(
        name: &str,
        binary: &Path,
        args: &[&str],
        log_dir: &Path,
        ready: SocketAddr,
    ) -> Daemon {
        let log = log_dir.join(format!("{name}.log"));
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        // With the soft limit of open files services usually start with
        // (systemd's 1,024): a node raises its own as it needs.
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ulimit -Sn {SERVICE_OPEN_FILES} 2>/dev/null; exec \"$0\" \"$@\""
            ))
            .arg(binary)
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut daemon = Daemon {
            name: name.into(),
            child,
            log,
        };
        let started = Instant::now();
        while TcpStream::connect_timeout(&ready, Duration::from_millis(200)).is_err() {
            if let Some(status) = daemon.child.try_wait().unwrap() {
                panic!(
                    "{name} exited ({status}) before listening:\n{}",
                    daemon.log_text()
                );
            }
            assert!(
                started.elapsed() < START_WAIT,
                "{name} did not listen on {ready} within {START_WAIT:?}:\n{}",
                daemon.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        daemon
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits (bounded) for the exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        signal(self.pid(), "TERM");
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < START_WAIT,
                "{} did not stop after SIGTERM",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process's peak resident memory (VmHWM), in bytes.
    pub fn peak_rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap();
        kb * 1024
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends a signal by name (`TERM`, `HUP`) to a process.
pub fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .args(["-s", name, "--"])
        .arg(pid.to_string())
        .status();
}

/// Waits for `condition` with a bounded timeout (polling, in the runtime).
pub async fn wait_for(what: &str, timeout: Duration, mut condition: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !condition().await {
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The resident of the process federations: active, digital for [`AGENCY`].
pub const RESIDENT: &str = "bsn:999999990";

/// A federation of processes: `estafette-gateway run`, a transit relay
/// and a home relay (`estafette-relay run`), each from its own config file.
pub struct ProcessFederation {
    pub fed: TestFederation,
    pub gateway_config: PathBuf,
    pub https: SocketAddr,
    pub gateway_admin: SocketAddr,
    pub citizen: SocketAddr,
}

impl ProcessFederation {
    /// gateway → relay.test → home.test, with [`RESIDENT`] registered at
    /// home.test and digital for the test agency.
    pub fn new() -> ProcessFederation {
        Self::with_store(estafette_gateway::config::StoreSettings::default())
    }

    /// As [`Self::new`], the gateway's records in `store` (PostgreSQL, say).
    pub fn with_store(store: estafette_gateway::config::StoreSettings) -> ProcessFederation {
        let mut fed = TestFederation::new(
            &[
                ("relay.test", NodeKind::Transit),
                ("home.test", NodeKind::Home),
            ],
            &["relay.test", "home.test"],
        );
        let citizen = free_tcp();
        {
            let home = fed
                .relays
                .iter_mut()
                .find(|n| n.id.as_str() == "home.test")
                .unwrap();
            home.config.citizen.as_mut().unwrap().listen = citizen;
            home.save();
        }
        let https = free_tcp();
        let gateway_admin = fed.gateway.config.admin_listen.unwrap();
        let mut config = GatewayConfig::new(https, fed.gateway.config.clone());
        config.store = store;
        let gateway_config = fed.tmp.path().join("gateway.toml");
        std::fs::write(&gateway_config, toml::to_string(&config).unwrap()).unwrap();
        let people = fed.tmp.path().join("people.json");
        std::fs::write(
            &people,
            serde_json::json!([{
                "recipient": RESIDENT,
                "home_node": "home.test",
                "active": true,
                "digital_senders": [AGENCY],
                "language": "nl",
            }])
            .to_string(),
        )
        .unwrap();
        let out = Command::new(binary("estafette-gateway"))
            .args(["registry", "import", "--config"])
            .arg(&gateway_config)
            .arg("--file")
            .arg(&people)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "registry import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        ProcessFederation {
            fed,
            gateway_config,
            https,
            gateway_admin,
            citizen,
        }
    }

    pub fn dir(&self) -> &Path {
        self.fed.tmp.path()
    }

    pub fn start_gateway(&self) -> Daemon {
        let config = self.gateway_config.to_str().unwrap();
        Daemon::start(
            "gateway",
            &binary("estafette-gateway"),
            &["run", "--config", config],
            self.dir(),
            self.https,
        )
    }

    pub fn start_relay(&self, id: &str) -> Daemon {
        let node = self.fed.relay(id);
        Daemon::start(
            id,
            &binary("estafette-relay"),
            &["run", "--config", node.config_path.to_str().unwrap()],
            self.dir(),
            node.config.admin_listen.unwrap(),
        )
    }

    /// [`RESIDENT`], logged in at home.test's citizen API with a fresh
    /// assertion of the national test login.
    pub async fn resident_session(
        &self,
    ) -> Result<estafette_relay::home::client::CitizenClient, String> {
        let assertion = self
            .fed
            .fed
            .mint_assertion(
                &estafette_relay::testkit::NATIONAL_IDP.parse().unwrap(),
                &estafette_pki::AssertedPerson::test(RESIDENT.parse().unwrap()),
                &"home.test".parse().unwrap(),
                estafette_pki::now(),
                300,
            )
            .unwrap();
        let mut client = estafette_relay::home::client::CitizenClient::new(
            self.citizen,
            "home.test",
            &self.fed.fed.web_ca_path(),
        )
        .unwrap();
        client.login(&assertion).await.map_err(|e| e.to_string())?;
        Ok(client)
    }

    /// The test agency's client of the gateway.
    pub fn agency(&self) -> AgencyClient {
        self.agency_as(AGENCY)
    }

    pub fn agency_as(&self, oin: &str) -> AgencyClient {
        AgencyClient::for_agency_dir(
            self.https,
            "gateway.test",
            &self.fed.fed.root_cert_path(),
            &self.fed.fed.agency_dir(&oin.parse().unwrap()),
        )
        .unwrap()
    }

    /// A letter from agency `oin` to `to`, sealed with its seal key.
    pub fn letter(&self, oin: &str, to: &str, body: &str) -> (MessageId, Vec<u8>) {
        let letter = Letter {
            message_id: MessageId::random(&mut OsRng),
            sender: oin.parse().unwrap(),
            recipient: to.parse().unwrap(),
            created_at: estafette_pki::now(),
            subject: "Voorlopige aanslag".into(),
            body: body.into(),
            attachments: vec![],
            nature: Nature::Decision,
            legal_effect: true,
            expected_action: "Betaal het bedrag".into(),
            response_deadline: None,
            language: "nl".into(),
            sender_reference: "T-1".into(),
        };
        let key = keys::read_ed25519(
            &self
                .fed
                .fed
                .agency_dir(&oin.parse().unwrap())
                .join("seal.key.pem"),
        )
        .unwrap();
        (
            letter.message_id,
            SignedMessage::sign(&letter, &key).unwrap(),
        )
    }

    /// The events of a message's evidence, as the agency sees them.
    pub async fn events(&self, message: &MessageId) -> Vec<EvidenceEvent> {
        let Ok(chain) = self.agency().evidence(message).await else {
            return vec![];
        };
        let trust = self.fed.trust();
        chain
            .iter()
            .filter_map(|b| Evidence::verify(b, &trust).ok())
            .map(|v| v.record.event)
            .collect()
    }

    /// Waits until the agency sees `event` for `message`; gives how long.
    pub async fn wait_for_event(
        &self,
        message: &MessageId,
        event: EvidenceEvent,
        timeout: Duration,
    ) -> Duration {
        let started = Instant::now();
        wait_for(&format!("{event:?}"), timeout, async || {
            self.events(message).await.contains(&event)
        })
        .await;
        started.elapsed()
    }
}

impl Default for ProcessFederation {
    fn default() -> Self {
        Self::new()
    }
}
