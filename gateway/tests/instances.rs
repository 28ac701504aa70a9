//! Several gateway instances on one PostgreSQL database: agencies submit to
//! any of them, each forwards what it queued, and the monitors of all of
//! them together take each letter's next step exactly once. These tests run
//! on PostgreSQL whatever `ESTAFETTE_TEST_STORE` says (their names start
//! with `cluster_`, which the PostgreSQL pass of `scripts/test` skips, since
//! it would only run them again).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;

use common::*;
use estafette_gateway::registry;
use estafette_gateway::store::test_postgres::TestStore;
use estafette_relay::RunningNode;
use estafette_relay::testkit::{AGENCY, free_udp, wait_until};
use estafette_spec::*;
use futures_util::stream::{self, StreamExt};

/// People the letters go to.
const PEOPLE: usize = 10;
/// Unread letters the two monitors escalate.
const LETTERS: usize = 1000;
/// Submissions in flight at once.
const IN_FLIGHT: usize = 16;

fn valid_bsns(n: usize) -> Vec<Bsn> {
    (100_000_000u32..)
        .filter_map(|i| i.to_string().parse::<Bsn>().ok())
        .take(n)
        .collect()
}

/// PEOPLE digital readers of the agency at `home.test`, with an e-mail
/// address and a postal address, imported through `records` (any
/// instance's, while all run); their BSNs.
async fn import_people(w: &World, records: &dyn estafette_gateway::store::Records) -> Vec<Bsn> {
    let bsns = valid_bsns(PEOPLE);
    let people: Vec<serde_json::Value> = bsns
        .iter()
        .map(|bsn| serde_json::json!({ "recipient": format!("bsn:{bsn}"), "home_node": "home.test", "active": true, "digital_senders": [AGENCY],
            "contact_channels": [{ "kind": "email", "address": format!("p{bsn}@example.nl"), "state": "verified" }],
            "postal_address": { "street_lines": ["Stationsweg 3"], "postal_code": "1234 AB", "city": "Voorbeeld", "country": "NL" } }))
        .collect();
    registry::import(
        records,
        &w.fed.trust(),
        &serde_json::Value::Array(people).to_string(),
    )
    .await
    .unwrap();
    bsns
}

/// A World on PostgreSQL whose trust list gives the gateway the addresses
/// `addresses` makes of the World's own one, with a home node `later.test`
/// issued that the test starts later; its configuration.
async fn world_with_later_home(
    addresses: impl FnOnce(String) -> Vec<String>,
) -> (World, estafette_relay::Config) {
    let later: NodeId = "later.test".parse().unwrap();
    let mut later_config = None;
    let w = World::start_on(TestStore::postgres(), |f| {
        let own = f.gateway.config.listen.to_string();
        f.fed.set_gateway_addresses(&addresses(own)).unwrap();
        let addr = free_udp();
        f.fed
            .issue_node(&later, &addr.to_string(), estafette_pki::NodeKind::Home)
            .unwrap();
        later_config = Some(estafette_relay::Config::for_federation_node(
            &f.fed, &later, addr, true,
        ));
    })
    .await;
    (w, later_config.unwrap())
}

/// One digital reader of the agency at home node `later.test`.
async fn import_later_person(w: &World, bsn: Bsn) {
    let people = serde_json::json!([{ "recipient": format!("bsn:{bsn}"), "home_node": "later.test", "active": true, "digital_senders": [AGENCY],
        "contact_channels": [{ "kind": "email", "address": format!("p{bsn}@example.nl"), "state": "verified" }] }]);
    registry::import(
        w.gateway.gateway.records(),
        &w.fed.trust(),
        &people.to_string(),
    )
    .await
    .unwrap();
}

/// How often each event occurs in each letter's evidence.
fn event_counts(w: &World, ids: &[MessageId]) -> Vec<HashMap<EvidenceEvent, usize>> {
    ids.iter()
        .map(|id| {
            let mut counts = HashMap::new();
            for (event, _) in w.events(id) {
                *counts.entry(event).or_insert(0) += 1;
            }
            counts
        })
        .collect()
}

/// Letters with exactly `n` records of `event`, of all of them.
fn with_exactly(counts: &[HashMap<EvidenceEvent, usize>], event: EvidenceEvent, n: usize) -> usize {
    counts
        .iter()
        .filter(|c| c.get(&event).copied().unwrap_or(0) == n)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_two_monitors_take_each_step_once() {
    let w = World::start_on(TestStore::postgres(), |_| {}).await;
    let b = w.start_instance("b").await;
    let instances = [&w.gateway, &b];

    // The registry, imported through instance b while both run.
    let bsns = import_people(&w, b.gateway.records()).await;

    // Letters to both instances: IN_FLIGHT kept-alive connections, half
    // to each.
    let letters: Vec<(MessageId, Vec<u8>)> = (0..LETTERS)
        .map(|i| w.sealed_letter(AGENCY, &format!("bsn:{}", bsns[i % PEOPLE])))
        .collect();
    let ids: Vec<MessageId> = stream::iter(0..IN_FLIGHT)
        .map(|c| {
            let client = w.agency_client(AGENCY, instances[c % instances.len()].https_addr);
            let mine: Vec<_> = letters.iter().skip(c).step_by(IN_FLIGHT).cloned().collect();
            async move {
                let mut connection = client.connect().await.unwrap();
                let mut ids = Vec::new();
                for (id, signed) in mine {
                    connection.submit(signed).await.unwrap();
                    ids.push(id);
                }
                ids
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .concat()
        .await;
    assert_eq!(ids.len(), LETTERS);
    println!("submitted {LETTERS} letters to two instances");

    // Each letter reaches the inbox and gets its first notification.
    wait_until("every letter consigned and notified", WAIT * 5, || {
        let counts = event_counts(&w, &ids);
        with_exactly(&counts, EvidenceEvent::ContentConsignment, 1) == LETTERS
            && with_exactly(&counts, EvidenceEvent::ConsignmentNotification, 1) == LETTERS
    })
    .await;
    let mails_before = w.sink.mails().len();

    // A week later both monitors run at once: one reminder per letter.
    w.clock.advance_s(7 * DAY + 60);
    let (ra, rb) = tokio::join!(w.gateway.gateway.monitor_cycle(), b.gateway.monitor_cycle());
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    println!(
        "reminders: instance a {}, instance b {}",
        ra.reminded, rb.reminded
    );
    assert_eq!(ra.reminded + rb.reminded, LETTERS, "{ra:?} {rb:?}");
    let counts = event_counts(&w, &ids);
    assert_eq!(
        with_exactly(&counts, EvidenceEvent::ConsignmentNotification, 2),
        LETTERS,
        "a notification and one reminder each"
    );
    assert_eq!(
        w.sink.mails().len() - mails_before,
        LETTERS,
        "one reminder e-mail per letter"
    );

    // A week more, two cycles each at once: one paper copy per letter.
    w.clock.advance_s(7 * DAY + 60);
    for _ in 0..2 {
        let (ra, rb) = tokio::join!(w.gateway.gateway.monitor_cycle(), b.gateway.monitor_cycle());
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        println!(
            "paper: instance a {:?} spooled {}, instance b {:?} spooled {}",
            ra.papered, ra.spooled, rb.papered, rb.spooled
        );
    }
    let counts = event_counts(&w, &ids);
    assert_eq!(
        with_exactly(&counts, EvidenceEvent::PaperFallback, 1),
        LETTERS,
        "one PaperFallback each"
    );
    assert_eq!(
        with_exactly(&counts, EvidenceEvent::ConsignmentNotification, 2),
        LETTERS,
        "no reminder twice"
    );
    let mut printed: HashMap<String, usize> = HashMap::new();
    for spool in [w.spool.clone(), w.instance_spool("b")] {
        for entry in estafette_gateway::paper::Spool::new(&spool)
            .manifest()
            .unwrap()
        {
            *printed
                .entry(entry.message_id.unwrap_or_default())
                .or_default() += 1;
        }
    }
    assert_eq!(printed.len(), LETTERS, "every letter printed");
    assert!(printed.values().all(|n| *n == 1), "no letter printed twice");
    println!("{LETTERS} letters: 1 reminder, 1 PaperFallback and 1 PDF each");
    b.shutdown().await;
    w.stop().await;
}

/// Letters queued at an instance that dies.
const STRANDED: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_a_dead_instances_envelopes_are_taken_over_and_relays_try_the_next_address() {
    // The trust list gives the gateway two addresses: instance a's first
    // (the one that will die), then the World's own instance. The letters
    // go to a home node that is not running yet.
    let a_addr = free_udp();
    let (w, later_config) = world_with_later_home(move |own| vec![a_addr.to_string(), own]).await;
    let bsn = valid_bsns(1)[0];
    import_later_person(&w, bsn).await;
    let a = w.start_instance_at("a", a_addr).await;

    // Instance a takes letters it cannot forward yet.
    let client = w.agency_client(AGENCY, a.https_addr);
    let mut connection = client.connect().await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..STRANDED {
        let (id, signed) = w.sealed_letter(AGENCY, &format!("bsn:{bsn}"));
        connection.submit(signed).await.unwrap();
        ids.push(id);
    }
    assert_eq!(a.gateway.node.queue_len(), STRANDED as u64);

    // Instance a dies with them; the home node starts.
    a.shutdown().await;
    let died = std::time::Instant::now();
    let config = later_config.clone();
    let home = RunningNode::start(config).await.unwrap();

    // The surviving instance takes them over once a's lease runs out, and
    // the home node's evidence reaches it at the trust list's second
    // address, the first being dead.
    wait_until("every stranded letter consigned", WAIT * 3, || {
        let counts = event_counts(&w, &ids);
        with_exactly(&counts, EvidenceEvent::ContentConsignment, 1) == STRANDED
    })
    .await;
    let took = died.elapsed();
    println!(
        "{STRANDED} envelopes of a dead instance delivered by the other {:.1} s after it died (lease {} s)",
        took.as_secs_f64(),
        estafette_gateway::store::LEASE_S
    );
    assert_eq!(
        home.store().inbox_all().unwrap().len(),
        STRANDED,
        "each delivered once"
    );
    wait_until("the outbox empty", WAIT, || {
        w.gateway.gateway.node.queue_len() == 0
    })
    .await;
    home.shutdown().await;
    w.stop().await;
}

/// Letters submitted across a database failover.
const ACROSS_FAILOVER: usize = 300;
/// Acknowledged letters before the primary is killed.
const BEFORE_FAILOVER: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_a_database_failover_loses_no_acknowledged_letter() {
    use estafette_gateway::config::{StoreBackend, StoreSettings};
    use estafette_gateway::store::test_postgres::{REPLICATED_PRIMARY, TestPostgres};
    use std::sync::atomic::{AtomicUsize, Ordering};

    // A primary whose commits wait for a synchronous standby; the gateway
    // knows both and wants the one that takes writes.
    let primary = TestPostgres::start(REPLICATED_PRIMARY);
    let standby = primary.standby("standby");
    primary.wait_for_sync_standby();
    let url = format!(
        "host=127.0.0.1,127.0.0.1 port={},{} user=postgres dbname=postgres \
         target_session_attrs=read-write connect_timeout=5",
        primary.port, standby.port
    );
    let db = TestStore {
        settings: StoreSettings {
            backend: StoreBackend::Postgres,
            url: Some(url),
            connections: Some(4),
            ..Default::default()
        },
        server: None,
    };
    let w = World::start_on(db, |_| {}).await;
    let bsns = import_people(&w, w.gateway.gateway.records()).await;

    // The agency submits each letter until it is acknowledged (the same
    // signed message again after a failure), on a new connection after one.
    let letters: Vec<(MessageId, Vec<u8>)> = (0..ACROSS_FAILOVER)
        .map(|i| w.sealed_letter(AGENCY, &format!("bsn:{}", bsns[i % PEOPLE])))
        .collect();
    let acknowledged = std::sync::Arc::new(AtomicUsize::new(0));
    let client = w.agency_client(AGENCY, w.gateway.https_addr);
    let submitter = tokio::spawn({
        let acknowledged = acknowledged.clone();
        async move {
            let mut failures = 0usize;
            let mut connection = client.connect().await.unwrap();
            for (_, signed) in &letters {
                let started = std::time::Instant::now();
                while connection.submit(signed.clone()).await.is_err() {
                    failures += 1;
                    assert!(
                        started.elapsed() < WAIT,
                        "a letter not acknowledged for {WAIT:?}"
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    if let Ok(c) = client.connect().await {
                        connection = c;
                    }
                }
                acknowledged.fetch_add(1, Ordering::SeqCst);
            }
            (
                letters.into_iter().map(|(id, _)| id).collect::<Vec<_>>(),
                failures,
            )
        }
    });
    wait_until("the first letters acknowledged", WAIT, || {
        acknowledged.load(Ordering::SeqCst) >= BEFORE_FAILOVER
    })
    .await;

    // The primary dies mid-run; the standby is promoted.
    primary.kill();
    let failed_at = std::time::Instant::now();
    standby.promote();
    println!(
        "primary killed after {} acknowledged letters; standby promoted in {:.1} s",
        acknowledged.load(Ordering::SeqCst),
        failed_at.elapsed().as_secs_f64()
    );
    let (ids, failures) = submitter.await.unwrap();
    println!(
        "all {ACROSS_FAILOVER} letters acknowledged, {failures} failed attempts retried, {:.1} s after the kill",
        failed_at.elapsed().as_secs_f64()
    );

    // Every acknowledged letter is in the promoted standby and reaches the
    // inbox once, soon: an envelope whose queue read failed in the failover
    // is tried again in a moment, not at the sweep for overdue envelopes.
    wait_until("every acknowledged letter consigned", WAIT, || {
        let counts = event_counts(&w, &ids);
        with_exactly(&counts, EvidenceEvent::ContentConsignment, 1) == ACROSS_FAILOVER
    })
    .await;
    let counts = event_counts(&w, &ids);
    let lost = ids.len() - with_exactly(&counts, EvidenceEvent::SubmissionAcceptance, 1);
    println!(
        "acknowledged {ACROSS_FAILOVER}, consigned {ACROSS_FAILOVER}, lost {lost}, {:.1} s after the kill",
        failed_at.elapsed().as_secs_f64()
    );
    assert_eq!(lost, 0);
    assert_eq!(
        w.home.store().inbox_all().unwrap().len(),
        ACROSS_FAILOVER,
        "each delivered once"
    );
    w.stop().await;
    drop(standby);
}

/// A commit that reached the database but whose answer never came back
/// (the connection cut while the commit waited for a standby): the gateway
/// heard an error, yet the letter is queued. The agency's repeat is
/// answered from the stored submission, and the letter goes out all the
/// same, without a second envelope: the forwarder reads its line again
/// after any failed queuing, since the store may hold what it was not told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_a_commit_whose_answer_was_lost_is_forwarded_all_the_same() {
    use estafette_gateway::config::{StoreBackend, StoreSettings};
    use estafette_gateway::store::test_postgres::TestPostgres;

    let pg = TestPostgres::start("");
    let db = TestStore {
        settings: StoreSettings {
            backend: StoreBackend::Postgres,
            url: Some(pg.url()),
            connections: Some(4),
            ..Default::default()
        },
        server: None,
    };
    let w = World::start_on(db, |_| {}).await;
    let bsns = import_people(&w, w.gateway.gateway.records()).await;

    // From now on a commit is written, then waits for a standby that is
    // not there.
    pg.execute("ALTER SYSTEM SET synchronous_standby_names = 'nobody'");
    pg.execute("SELECT pg_reload_conf()");
    let (id, signed) = w.sealed_letter(AGENCY, &format!("bsn:{}", bsns[0]));
    let client = w.agency_client(AGENCY, w.gateway.https_addr);
    let mut connection = client.connect().await.unwrap();
    let first = tokio::spawn({
        let signed = signed.clone();
        async move { connection.submit(signed).await }
    });
    const WAITING_COMMITS: &str =
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'";
    wait_until(
        "the submission's commit waiting for the standby",
        WAIT,
        || pg.number(WAITING_COMMITS) > 0,
    )
    .await;
    // Cut the waiting connection (its commit stays, its answer is lost),
    // then let commits through again.
    let cut = pg.number(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE wait_event = 'SyncRep'",
    );
    assert!(cut >= 1, "no waiting commit cut");
    pg.execute("ALTER SYSTEM RESET synchronous_standby_names");
    pg.execute("SELECT pg_reload_conf()");
    let first = first.await.unwrap();
    println!(
        "the first submission was answered: {:?}",
        first.as_ref().map(|_| "accepted")
    );

    // The agency repeats the same signed letter until it is acknowledged.
    let started = std::time::Instant::now();
    loop {
        if let Ok(mut connection) = client.connect().await
            && connection.submit(signed.clone()).await.is_ok()
        {
            break;
        }
        assert!(started.elapsed() < WAIT, "the letter never acknowledged");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    wait_until("the letter consigned", WAIT, || {
        with_exactly(
            &event_counts(&w, &[id]),
            EvidenceEvent::ContentConsignment,
            1,
        ) == 1
    })
    .await;
    assert_eq!(
        w.home.store().inbox_all().unwrap().len(),
        1,
        "delivered once"
    );
    assert_eq!(
        pg.number("SELECT count(*) FROM outbox"),
        0,
        "nothing left queued"
    );
    w.stop().await;
}

/// Letters of the instance-loss run; `ESTAFETTE_INSTANCE_LOSS_LETTERS` sets
/// more (the issue's 20,000, with `--release`).
const INSTANCE_LOSS_LETTERS: usize = 2_000;
/// Times the one instance is killed during the run.
const KILLS: usize = 5;
/// Agency connections submitting at once.
const SUBMITTERS: usize = 12;

/// A gateway instance as its own `estafette-gateway run` process, to be
/// killed with SIGKILL and started again with the same configuration.
struct InstanceProcess {
    config: std::path::PathBuf,
    log: std::path::PathBuf,
    https: std::net::SocketAddr,
    child: Option<std::process::Child>,
}

impl InstanceProcess {
    fn new(w: &World, name: &str, listen: std::net::SocketAddr) -> InstanceProcess {
        let https = estafette_relay::testkit::free_tcp();
        let mut config = w.config.clone();
        config.https_listen = https;
        config.node.listen = listen;
        config.node.admin_listen = None;
        config.node.log_listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        config.node.data_dir = w.fed.tmp.path().join(format!("gateway-{name}"));
        config.paper_spool = Some(w.instance_spool(name));
        config.store.instance = Some(name.into());
        let path = w.fed.tmp.path().join(format!("gateway-{name}.toml"));
        std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
        InstanceProcess {
            config: path,
            log: w.fed.tmp.path().join(format!("gateway-{name}.log")),
            https,
            child: None,
        }
    }

    async fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_estafette-gateway"))
            .args(["run", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let https = self.https;
        wait_until("the instance's agency API", WAIT, || {
            std::net::TcpStream::connect(https).is_ok()
        })
        .await;
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for InstanceProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Envelopes in the shared outbox claimed by `instance`.
async fn claimed_by(w: &World, instance: &'static str) -> i64 {
    let url = w.db.settings.url.clone().unwrap();
    tokio::task::spawn_blocking(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        client
            .query_one(
                "SELECT count(*) FROM outbox WHERE claimed_by = $1",
                &[&instance],
            )
            .unwrap()
            .get::<_, i64>(0)
    })
    .await
    .unwrap()
}

/// Submits every letter over SUBMITTERS connections spread over the
/// instances; after a failure the same signed message goes again, to the
/// next instance. Counts the acknowledged letters in `acknowledged`; gives
/// the failed attempts.
async fn submit_with_retries(
    clients: Vec<std::sync::Arc<estafette_gateway::client::AgencyClient>>,
    letters: std::sync::Arc<Vec<(MessageId, Vec<u8>)>>,
    acknowledged: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> usize {
    use std::sync::atomic::Ordering;
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..SUBMITTERS {
        let (clients, letters, next, acknowledged) = (
            clients.clone(),
            letters.clone(),
            next.clone(),
            acknowledged.clone(),
        );
        workers.spawn(async move {
            // Each worker's own instance, for each new letter: the next
            // one only while that fails.
            let home = worker % clients.len();
            let mut at = home;
            let mut connection = None;
            let mut failures = 0usize;
            while let Some((_, signed)) = letters.get(next.fetch_add(1, Ordering::SeqCst)) {
                let started = std::time::Instant::now();
                if at != home {
                    at = home;
                    connection = None;
                }
                loop {
                    if connection.is_none() {
                        connection = clients[at].connect().await.ok();
                    }
                    let result = match connection.as_mut() {
                        Some(c) => c.submit(signed.clone()).await.map(|_| ()),
                        None => Err(estafette_gateway::client::ClientError::Connect(
                            "no connection".into(),
                        )),
                    };
                    match result {
                        Ok(()) => break,
                        Err(e) => {
                            assert!(e.is_retryable(), "a refusal not to retry: {e}");
                            assert!(started.elapsed() < WAIT, "a letter not acknowledged: {e}");
                            failures += 1;
                            connection = None;
                            at = (at + 1) % clients.len();
                            // A short pause between attempts, as an agency
                            // client's backoff would make.
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        }
                    }
                }
                acknowledged.fetch_add(1, Ordering::SeqCst);
            }
            failures
        });
    }
    let mut failures = 0;
    while let Some(done) = workers.join_next().await {
        failures += done.unwrap();
    }
    failures
}

/// One letter in LATER_SHARE goes to a home node that starts only after the
/// last kill, so that the killed instance holds envelopes when it dies.
const LATER_SHARE: usize = 10;

/// Three instances on one PostgreSQL; one of them, a process of its own, is
/// SIGKILLed five times while agencies submit and started again. Every
/// acknowledged letter is delivered exactly once, and what the instance held
/// when it died the last time is taken over by the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_an_instance_killed_five_times_under_load_loses_and_duplicates_nothing() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let letters_n: usize = std::env::var("ESTAFETTE_INSTANCE_LOSS_LETTERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(INSTANCE_LOSS_LETTERS);
    let (b_addr, k_addr) = (free_udp(), free_udp());
    let (w, later_config) =
        world_with_later_home(move |own| vec![own, b_addr.to_string(), k_addr.to_string()]).await;
    let bsns = import_people(&w, w.gateway.gateway.records()).await;
    let later_bsn = valid_bsns(PEOPLE + 1)[PEOPLE];
    import_later_person(&w, later_bsn).await;
    let b = w.start_instance_at("b", b_addr).await;
    let mut k = InstanceProcess::new(&w, "k", k_addr);
    k.start().await;

    let letters: std::sync::Arc<Vec<(MessageId, Vec<u8>)>> = std::sync::Arc::new(
        (0..letters_n)
            .map(|i| match i % LATER_SHARE {
                0 => w.sealed_letter(AGENCY, &format!("bsn:{later_bsn}")),
                _ => w.sealed_letter(AGENCY, &format!("bsn:{}", bsns[i % PEOPLE])),
            })
            .collect(),
    );
    let clients = [w.gateway.https_addr, b.https_addr, k.https]
        .iter()
        .map(|addr| std::sync::Arc::new(w.agency_client(AGENCY, *addr)))
        .collect();
    let acknowledged = std::sync::Arc::new(AtomicUsize::new(0));
    let started = std::time::Instant::now();
    let submitter = tokio::spawn(submit_with_retries(
        clients,
        letters.clone(),
        acknowledged.clone(),
    ));

    // Instance k dies at each sixth of the run; it comes back after the
    // others took a few more letters (and claims again what it held),
    // except the last time: then the home node that was away starts, and
    // the others take k's envelopes over once its lease runs out.
    let mut later_home = None;
    let mut takeover = None;
    for kill in 1..=KILLS {
        let at = letters_n * kill / (KILLS + 1);
        wait_until("letters acknowledged before a kill", WAIT * 3, || {
            acknowledged.load(Ordering::SeqCst) >= at
        })
        .await;
        k.kill();
        let killed = std::time::Instant::now();
        let held = claimed_by(&w, "k").await;
        if kill == KILLS {
            let config = later_config.clone();
            later_home = Some(RunningNode::start(config).await.unwrap());
            while claimed_by(&w, "k").await > 0 {
                assert!(
                    killed.elapsed() < WAIT * 2,
                    "k's envelopes never taken over"
                );
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            takeover = Some((held, killed.elapsed()));
        } else {
            let more = (acknowledged.load(Ordering::SeqCst) + letters_n / 50).min(letters_n);
            wait_until("letters acknowledged while k is down", WAIT * 3, || {
                acknowledged.load(Ordering::SeqCst) >= more
            })
            .await;
        }
        k.start().await;
        println!(
            "kill {kill}: k held {held} envelopes; back after {:.1} s",
            killed.elapsed().as_secs_f64()
        );
    }
    let failures = submitter.await.unwrap();
    let submitted_in = started.elapsed();
    let later_home = later_home.unwrap();

    let ids: Vec<MessageId> = letters.iter().map(|(id, _)| *id).collect();
    let inboxes = || {
        let mut all = w.home.store().inbox_all().unwrap_or_default();
        all.extend(later_home.store().inbox_all().unwrap_or_default());
        all
    };
    wait_until("every acknowledged letter consigned", WAIT * 3, || {
        inboxes().len() >= letters_n
    })
    .await;
    wait_until("every consignment recorded", WAIT, || {
        let counts = event_counts(&w, &ids);
        with_exactly(&counts, EvidenceEvent::ContentConsignment, 1) == letters_n
    })
    .await;
    let counts = event_counts(&w, &ids);
    let inbox = inboxes();
    let unique: std::collections::HashSet<MessageId> = inbox.iter().map(|(_, _, m)| *m).collect();
    let (held, took) = takeover.unwrap();
    println!(
        "{letters_n} letters to 3 instances, k SIGKILLed {KILLS} times: acknowledged {}, \
         {failures} failed attempts sent again, in {:.1} s; delivered {}, duplicates {}, \
         lost {}; the last time the others took k's {held} envelopes over in {:.1} s (lease {} s)",
        acknowledged.load(Ordering::SeqCst),
        submitted_in.as_secs_f64(),
        unique.len(),
        inbox.len() - unique.len(),
        letters_n - unique.len(),
        took.as_secs_f64(),
        estafette_gateway::store::LEASE_S
    );
    assert_eq!(acknowledged.load(Ordering::SeqCst), letters_n);
    assert!(held > 0, "k held no envelopes when it died the last time");
    assert_eq!(
        with_exactly(&counts, EvidenceEvent::SubmissionAcceptance, 1),
        letters_n,
        "one SubmissionAcceptance each"
    );
    assert_eq!(inbox.len(), letters_n, "no letter delivered twice");
    assert_eq!(unique, ids.iter().copied().collect());
    k.kill();
    later_home.shutdown().await;
    b.shutdown().await;
    w.stop().await;
}
