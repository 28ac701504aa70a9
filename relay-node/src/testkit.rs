//! A federation on loopback for tests and load tools: the PKI in a temp
//! dir, relay processes started from the real binary, an in-process gateway
//! node, and envelopes signed with the federation's real keys. Not for
//! production: it panics on any setup failure, which is what a test wants.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::core::NodeCore;
use crate::forwarder::{Acceptance, ForwardQueue, Forwarder, QueueWrite, Waiting};
use crate::origin::{EvidenceNotes, OriginQueue};
use crate::server::{Handled, RequestHandler, Server, refused};
use crate::store::{NewEvidence, Outcome, QueueRecord, Store, StoreError};
use estafette_pki::{Federation, NodeKind, keys};
use estafette_spec::relay::RetryPolicy;
use estafette_spec::*;
use rand_core::{OsRng, RngCore};

pub const AGENCY: &str = "00000001003214345000";
pub const GATEWAY: &str = "gateway.test";
/// The national identity provider of test federations (up to level high).
pub const NATIONAL_IDP: &str = "idp.nl.test";
/// A German eID node of test federations (up to level substantial).
pub const GERMAN_EID: &str = "eid.de.test";
/// Longest wait for a process to come up or a condition to hold.
pub const WAIT: Duration = Duration::from_secs(120);

/// Ports handed out by [`free_udp`] and [`free_tcp`] are below the kernel's
/// ephemeral range (32768 and up on Linux), from which port-0 binds and
/// outgoing connections take theirs: a port chosen now and bound later
/// cannot be taken meanwhile by a socket the system numbers itself.
const TEST_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A port of [`TEST_PORTS`] not handed out before in this process, which
/// `bindable` can bind now.
fn free_port(bindable: impl Fn(u16) -> bool) -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    for _ in 0..10_000 {
        let span = u32::from(TEST_PORTS.end - TEST_PORTS.start);
        let port = TEST_PORTS.start + (OsRng.next_u32() % span) as u16;
        if !given.contains(&port) && bindable(port) {
            given.push(port);
            return port;
        }
    }
    panic!("no free test port in {TEST_PORTS:?}");
}

pub fn free_udp() -> SocketAddr {
    let port = free_port(|p| UdpSocket::bind(("127.0.0.1", p)).is_ok());
    SocketAddr::from(([127, 0, 0, 1], port))
}

pub fn free_tcp() -> SocketAddr {
    let port = free_port(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok());
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The `estafette-relay` executable next to the running one: the load
/// tools and benches run from one target directory.
pub fn relay_binary() -> anyhow::Result<PathBuf> {
    let binary = std::env::current_exe()?
        .parent()
        .ok_or_else(|| anyhow::anyhow!("no directory for this executable"))?
        .join("estafette-relay");
    if !binary.exists() {
        anyhow::bail!(
            "{} not found: build it first (cargo build --release -p estafette-relay)",
            binary.display()
        );
    }
    Ok(binary)
}

/// The value of one series (name and labels, as written) in Prometheus
/// text; 0 when it is not there.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// A process's resident memory (VmRSS, KiB) from Linux's /proc; `None` elsewhere.
pub fn resident_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Waits for `condition` with a bounded timeout, polling.
pub fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub struct TestNode {
    pub id: NodeId,
    pub config: Config,
    pub config_path: PathBuf,
}

impl TestNode {
    /// Writes the (changed) configuration back to its file.
    pub fn save(&self) {
        std::fs::write(&self.config_path, toml::to_string(&self.config).unwrap()).unwrap();
    }
}

pub struct TestFederation {
    pub tmp: tempfile::TempDir,
    pub fed: Federation,
    pub gateway: TestNode,
    pub relays: Vec<TestNode>,
}

fn node_config(fed: &Federation, id: &NodeId, listen: SocketAddr, home: bool) -> Config {
    Config {
        admin_listen: Some(free_tcp()),
        log_listen: Some(free_tcp()),
        citizen: home.then(|| {
            // Browsers do not speak Ed25519: the web inbox gets a P-256 certificate.
            let (_, cert, key) = fed
                .issue_web_certificate(
                    &format!("{id}-web"),
                    &[id.to_string(), "127.0.0.1".into(), "localhost".into()],
                )
                .unwrap();
            crate::config::CitizenApiConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                public_url: None,
                cert: Some(cert),
                key: Some(key),
                test_idp: Some(crate::config::TestIdpConfig {
                    id: NATIONAL_IDP.parse().unwrap(),
                    key: fed
                        .identity_provider_dir(&NATIONAL_IDP.parse().unwrap())
                        .join("signing.key.pem"),
                }),
                oidc: vec![],
                wallet: None,
            }
        }),
        retry: RetryPolicy {
            base_ms: 20,
            cap_ms: 1_000,
            horizon_s: 3_600,
        },
        ..Config::for_federation_node(fed, id, listen, home)
    }
}

impl TestFederation {
    /// A federation with the gateway and the given relays; `path` lists the
    /// relays an envelope takes from the gateway to the last (home) one.
    pub fn new(relays: &[(&str, NodeKind)], path: &[&str]) -> TestFederation {
        // KEEP_TMP=1 keeps the federation's files (logs, stores) for a reader.
        let tmp = tempfile::Builder::new()
            .disable_cleanup(std::env::var_os("KEEP_TMP").is_some())
            .tempdir()
            .unwrap();
        let mut fed = Federation::init(&tmp.path().join("fed"), "test", true).unwrap();
        fed.issue_agency(&AGENCY.parse().unwrap(), "Belastingdienst", vec![])
            .unwrap();
        fed.issue_identity_provider(
            &NATIONAL_IDP.parse().unwrap(),
            CountryCode::NL,
            LevelOfAssurance::High,
        )
        .unwrap();
        fed.issue_identity_provider(
            &GERMAN_EID.parse().unwrap(),
            "DE".parse().unwrap(),
            LevelOfAssurance::Substantial,
        )
        .unwrap();
        let gw_id: NodeId = GATEWAY.parse().unwrap();
        let gw_addr = free_udp();
        fed.issue_gateway(&gw_id, &gw_addr.to_string()).unwrap();
        let mut nodes = Vec::new();
        for (name, kind) in relays {
            let id: NodeId = name.parse().unwrap();
            let addr = free_udp();
            fed.issue_node(&id, &addr.to_string(), *kind).unwrap();
            nodes.push((id, addr, matches!(kind, NodeKind::Home | NodeKind::Both)));
        }
        // Routes: each hop of `path` hands envelopes for the last one to the next.
        let home: NodeId = path.last().unwrap().parse().unwrap();
        let mut from = gw_id.clone();
        for hop in &path[..path.len() - 1] {
            let via: NodeId = hop.parse().unwrap();
            fed.set_route(&from, &home, Some(&via)).unwrap();
            from = via;
        }
        let gateway = {
            let config = node_config(&fed, &gw_id, gw_addr, false);
            TestNode {
                id: gw_id,
                config_path: PathBuf::new(),
                config,
            }
        };
        let relays = nodes
            .into_iter()
            .map(|(id, addr, home)| {
                let config = node_config(&fed, &id, addr, home);
                let config_path = tmp.path().join(format!("{id}.toml"));
                std::fs::write(&config_path, toml::to_string(&config).unwrap()).unwrap();
                TestNode {
                    id,
                    config,
                    config_path,
                }
            })
            .collect();
        TestFederation {
            tmp,
            fed,
            gateway,
            relays,
        }
    }

    pub fn relay(&self, name: &str) -> &TestNode {
        self.relays.iter().find(|n| n.id.as_str() == name).unwrap()
    }

    pub fn trust(&self) -> TrustList {
        self.fed.trust_list(estafette_pki::now()).unwrap()
    }

    /// The test federation's gateway, reduced to what relays meet: the
    /// origin of envelopes and the keeper of evidence.
    pub async fn start_gateway(&self) -> Arc<TestGateway> {
        TestGateway::start(self.gateway.config.clone())
    }

    /// As [`Self::start_gateway`], its forward queue failing as `faults`
    /// says.
    pub async fn start_gateway_with_faults(&self, faults: Arc<QueueFaults>) -> Arc<TestGateway> {
        TestGateway::start_with_faults(self.gateway.config.clone(), faults)
    }

    /// A letter from the test agency, sealed to `home` for a new inbox id.
    pub fn envelope(
        &self,
        home: &str,
        inbox: InboxId,
        body: &str,
    ) -> (Vec<u8>, Vec<u8>, RoutingHeader) {
        let expires_at = estafette_pki::now().plus_s(7 * 86_400);
        self.envelope_expiring(home, inbox, body, expires_at)
    }

    /// As [`Self::envelope`], expiring at `expires_at`.
    pub fn envelope_expiring(
        &self,
        home: &str,
        inbox: InboxId,
        body: &str,
        expires_at: Timestamp,
    ) -> (Vec<u8>, Vec<u8>, RoutingHeader) {
        let seal = keys::read_ed25519(
            &self
                .fed
                .agency_dir(&AGENCY.parse().unwrap())
                .join("seal.key.pem"),
        )
        .unwrap();
        let gw_key =
            keys::read_ed25519(&self.fed.node_dir(&self.gateway.id).join("signing.key.pem"))
                .unwrap();
        let now = estafette_pki::now();
        let letter = Letter {
            message_id: MessageId::random(&mut OsRng),
            sender: AGENCY.parse().unwrap(),
            recipient: "bsn:999999990".parse().unwrap(),
            created_at: now,
            subject: "Test letter".into(),
            body: body.into(),
            attachments: vec![],
            nature: Nature::Information,
            legal_effect: false,
            expected_action: "No action needed".into(),
            response_deadline: None,
            language: "en".into(),
            sender_reference: "T-1".into(),
        };
        let message = SignedMessage::sign(&letter, &seal).unwrap();
        let home_id: NodeId = home.parse().unwrap();
        let trust = self.trust();
        let home_key = trust.node(&home_id).unwrap().hpke_key;
        let header = RoutingHeader {
            envelope_id: EnvelopeId::random(&mut OsRng),
            home_node: home_id,
            inbox_id: inbox,
            message_id: letter.message_id,
            message_digest: Digest::of(&message),
            hop_limit: 8,
            created_at: now,
            expires_at,
        };
        let envelope =
            Envelope::seal(header.clone(), &message, &home_key, &gw_key, &mut OsRng).unwrap();
        (envelope, message, header)
    }
}

/// A relay process from the real binary; killed when dropped.
pub struct RelayProcess {
    pub child: Child,
    pub admin: SocketAddr,
    config_path: PathBuf,
}

impl RelayProcess {
    /// Starts `binary` (the `estafette-relay` executable) for `node` and
    /// waits until its admin endpoint answers.
    pub fn start(binary: &Path, node: &TestNode) -> RelayProcess {
        let log = std::fs::File::create(node.config_path.with_extension("log")).unwrap();
        let child = Command::new(binary)
            .args(["run", "--config"])
            .arg(&node.config_path)
            .env("RUST_LOG", "info,estafette_relay=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let admin = node.config.admin_listen.unwrap();
        let process = RelayProcess {
            child,
            admin,
            config_path: node.config_path.clone(),
        };
        wait_for(&format!("{} to listen", node.id), WAIT, || {
            TcpStream::connect(admin).is_ok()
        });
        process
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(start.elapsed() < WAIT, "relay did not stop after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.config_path.with_extension("log")).unwrap_or_default()
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The relay binary's `queue` report for a node.
pub fn queue_report(binary: &Path, node: &TestNode) -> String {
    let out = Command::new(binary)
        .args(["queue", "--config"])
        .arg(&node.config_path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// Opens a stopped node's store to count what it holds.
pub fn open_store(node: &TestNode) -> crate::Store {
    let metrics = Arc::new(crate::metrics::Metrics::new());
    crate::Store::open(&node.config.db_path(), u64::MAX, 1, metrics).unwrap()
}

pub fn random_inbox() -> InboxId {
    let mut b = [0u8; 16];
    OsRng.fill_bytes(&mut b);
    InboxId::from_bytes(b)
}

/// Async version of [`wait_for`], for use inside the runtime.
pub async fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Checks every evidence object the gateway holds and groups them per
/// message: (events with issuers) in chain order.
pub fn evidence_by_message(
    trust: &TrustList,
    all: Vec<Vec<u8>>,
) -> std::collections::HashMap<MessageId, Vec<(EvidenceEvent, String, Vec<u8>)>> {
    let mut map: std::collections::HashMap<MessageId, Vec<(EvidenceEvent, String, Vec<u8>)>> =
        Default::default();
    for bytes in all {
        let v = Evidence::verify(&bytes, trust).expect("evidence at the gateway verifies");
        map.entry(v.record.message_id.unwrap()).or_default().push((
            v.record.event,
            v.record.issuer.to_string(),
            bytes,
        ));
    }
    map
}

/// A gateway for relay tests: the origin of envelopes (its own queue and
/// forwarder, evidence archived) and the keeper of the evidence nodes
/// deliver. Agencies, the registry and citizens are the real gateway's.
pub struct TestGateway {
    core: Arc<NodeCore>,
    store: Arc<Store>,
    forwarder: Arc<Forwarder>,
    server: Arc<Server>,
}

struct TakesEvidence {
    core: Arc<NodeCore>,
    store: Arc<Store>,
    notes: EvidenceNotes,
}

impl RequestHandler for TakesEvidence {
    fn handle<'a>(&'a self, peer: &'a NodeId, request: relay::Request) -> Handled<'a> {
        Box::pin(async move {
            match request {
                relay::Request::Evidence(list) => {
                    crate::origin::take_evidence(&self.core, &self.store, &self.notes, peer, list)
                        .await
                }
                relay::Request::AddCheckpoint(offer) => {
                    crate::witness::add_checkpoint(&self.core, peer, offer).await
                }
                _ => refused(
                    ReasonCode::NotForThisNode,
                    "the test gateway takes evidence and checkpoints only",
                ),
            }
        })
    }
}

/// Store failures to make the test gateway's forward queue suffer: each
/// counter is how many of the next calls of its kind fail (as a database
/// that fails over or a full disk would), before the queue works again.
#[derive(Debug, Default)]
pub struct QueueFaults {
    pub failing_reads: std::sync::atomic::AtomicU32,
    pub failing_forwards: std::sync::atomic::AtomicU32,
}

impl QueueFaults {
    fn strike(counter: &std::sync::atomic::AtomicU32, what: &str) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering;
        match counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)) {
            Ok(_) => Err(StoreError::Aborted(format!("injected failure of {what}"))),
            Err(_) => Ok(()),
        }
    }
}

/// A forward queue whose calls fail as [`QueueFaults`] says.
struct FaultyQueue {
    inner: OriginQueue,
    faults: Arc<QueueFaults>,
}

impl ForwardQueue for FaultyQueue {
    fn lines(&self) -> Result<Vec<(NodeId, u64)>, StoreError> {
        self.inner.lines()
    }

    fn line(&self, next_hop: &NodeId, limit: usize) -> Result<Vec<Waiting>, StoreError> {
        self.inner.line(next_hop, limit)
    }

    fn expiring(
        &self,
        by: Timestamp,
        limit: usize,
    ) -> Result<Vec<(EnvelopeId, NodeId)>, StoreError> {
        self.inner.expiring(by, limit)
    }

    fn get(&self, id: &EnvelopeId) -> Result<Option<QueueRecord>, StoreError> {
        QueueFaults::strike(&self.faults.failing_reads, "a queue read")?;
        self.inner.get(id)
    }

    fn forwarded(&self, id: EnvelopeId, acceptance: Acceptance) -> QueueWrite<'_> {
        match QueueFaults::strike(&self.faults.failing_forwards, "recording a forward") {
            Ok(()) => self.inner.forwarded(id, acceptance),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }

    fn reschedule(
        &self,
        id: EnvelopeId,
        attempts: u32,
        next_attempt_ms: u64,
        error: String,
    ) -> QueueWrite<'_> {
        self.inner.reschedule(id, attempts, next_attempt_ms, error)
    }

    fn give_up(&self, id: EnvelopeId, evidence: Vec<NewEvidence>) -> QueueWrite<'_> {
        self.inner.give_up(id, evidence)
    }
}

impl TestGateway {
    pub fn start(config: Config) -> Arc<TestGateway> {
        Self::start_with_faults(config, Arc::new(QueueFaults::default()))
    }

    /// As [`Self::start`], with a forward queue that fails as `faults`
    /// says, meanwhile.
    pub fn start_with_faults(config: Config, faults: Arc<QueueFaults>) -> Arc<TestGateway> {
        let core = NodeCore::start(config, Arc::new(estafette_pki::SystemClock), None).unwrap();
        let store = Arc::new(
            Store::open(
                &core.config.db_path(),
                core.config.limits.max_queue_len,
                core.config.limits.max_commit_batch,
                core.metrics.clone(),
            )
            .unwrap(),
        );
        let notes = EvidenceNotes::default();
        let queue = Arc::new(FaultyQueue {
            inner: OriginQueue {
                store: store.clone(),
                notes: notes.clone(),
                on_archive: None,
            },
            faults,
        });
        let forwarder = Forwarder::start(core.clone(), queue).unwrap();
        let handler = Arc::new(TakesEvidence {
            core: core.clone(),
            store: store.clone(),
            notes,
        });
        let server = Server::start(core.clone(), handler);
        Arc::new(TestGateway {
            core,
            store,
            forwarder,
            server,
        })
    }

    /// The test gateway's metrics, in Prometheus text.
    pub fn metrics(&self) -> String {
        self.core.metrics.encode()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn trust(&self) -> TrustList {
        (*self.core.trust()).clone()
    }

    /// Queues an envelope the gateway signed (verified first).
    pub async fn submit(
        &self,
        envelope: Vec<u8>,
        previous: Option<Digest>,
    ) -> Result<Outcome, crate::origin::QueueError> {
        let header = Envelope::verify(&envelope, &self.core.trust(), self.core.clock.now())
            .unwrap()
            .content
            .header;
        crate::origin::queue_envelope(
            &self.core,
            &self.store,
            &self.forwarder,
            envelope,
            &header,
            previous,
            None,
            None,
        )
        .await
    }

    pub async fn shutdown(&self) {
        self.server.stop().await;
        self.core
            .endpoint
            .close(quinn::VarInt::from_u32(0), b"shutting down");
        self.core.stopped.notify_waiters();
    }
}
