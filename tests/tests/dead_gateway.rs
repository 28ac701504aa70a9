//! The fault lab's dead gateway: agencies submit letters over real TLS
//! while the gateway process is killed with SIGKILL again and again (and,
//! in the power-loss version, its data directory is on LazyFS and loses
//! everything it had not fsynced). Each agency sends the same signed
//! message again after a failure (the client library's retrying submit),
//! as `estafette-agency send` does. Afterwards every letter has exactly one
//! SubmissionAcceptance at the gateway and is in the inbox exactly once.
//!
//! The PostgreSQL version does the same to a gateway whose records are in
//! a PostgreSQL server of the test's own, with that server's data directory
//! on LazyFS too: at each power loss the gateway is killed, the server is
//! shut down at once (no checkpoint, nothing more written), the unsynced
//! data is dropped, and both start again (the server recovers from its
//! write-ahead log).
//!
//! `ESTAFETTE_GATEWAY_KILLS` and `ESTAFETTE_TEST_LETTERS` make longer
//! versions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use estafette_gateway::client::RetryPolicy;
use estafette_gateway::config::GatewayConfig;
use estafette_gateway::store::test_postgres::TestPostgres;
use estafette_gateway::store::{PgRecords, Records, RedbRecords};
use estafette_relay::testkit::AGENCY;
use estafette_spec::{Evidence, EvidenceEvent, MessageId};
use estafette_tests::lazyfs::LazyFs;
use estafette_tests::{ProcessFederation, RESIDENT};
use rand_core::{OsRng, RngCore};

/// SIGKILLs of the gateway during [`LETTERS`] submissions.
const KILLS: usize = 10;
/// Letters submitted while the gateway is killed (the short version, in
/// `scripts/test`; `ESTAFETTE_TEST_LETTERS=10000` is the long one).
const LETTERS: usize = 3_000;
/// Power losses of the gateway during [`POWER_LOSS_LETTERS`] submissions.
const POWER_LOSSES: usize = 20;
/// Letters submitted while the gateway loses power.
const POWER_LOSS_LETTERS: usize = 2_000;
/// LazyFS's cache when PostgreSQL's data is on it too: its write-ahead log
/// segments (16 MiB each, written whole when made) must fit besides what is
/// unsynced, or LazyFS would write through and the test would prove nothing
/// (`drop_unsynced` fails on a full cache; 4% of 1 GiB was the most seen).
const POSTGRES_LAZYFS_CACHE: &str = "512mb";
/// PostgreSQL's settings for the power-loss test: checkpoints (which fsync
/// the data files) during the test, and the default durability (fsync,
/// synchronous commit, full page writes).
const POSTGRES_SETTINGS: &str = "checkpoint_timeout = 30s\nmax_wal_size = 64MB\n";
/// Agency connections submitting at once.
const AGENTS: usize = 16;
/// How long the gateway may take to come back before the test fails.
const COME_BACK: Duration = Duration::from_secs(120);

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Puts the gateway's data directory on `lazy` (its files, the registry of
/// a redb gateway among them, copied and synced there first).
fn gateway_data_on(pf: &ProcessFederation, lazy: &LazyFs) {
    let text = std::fs::read_to_string(&pf.gateway_config).unwrap();
    let mut config: GatewayConfig = toml::from_str(&text).unwrap();
    let moved = lazy.path().join("gateway");
    std::fs::create_dir_all(&moved).unwrap();
    std::fs::set_permissions(&moved, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    // With its records in PostgreSQL, the gateway has made no files yet.
    let entries: Vec<std::fs::DirEntry> = match std::fs::read_dir(&config.node.data_dir) {
        Ok(dir) => dir.map(Result::unwrap).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("{}: {e}", config.node.data_dir.display()),
    };
    for entry in entries {
        if entry.file_type().unwrap().is_file() {
            let to = moved.join(entry.file_name());
            std::fs::copy(entry.path(), &to).unwrap();
            std::fs::File::open(&to).unwrap().sync_all().unwrap();
        }
    }
    config.node.data_dir = moved;
    std::fs::write(&pf.gateway_config, toml::to_string(&config).unwrap()).unwrap();
}

/// Submitted letters: each message's acceptance as its agency got it
/// (each letter is sent until it is answered once).
type Answers = Arc<Mutex<HashMap<MessageId, String>>>;

/// [`AGENTS`] agency connections submitting `letters`, each retrying the
/// same bytes until the gateway answers.
fn agencies(
    pf: &ProcessFederation,
    letters: Vec<(MessageId, Vec<u8>)>,
    answers: &Answers,
    retries: &Arc<std::sync::atomic::AtomicUsize>,
) -> tokio::task::JoinSet<()> {
    let work = Arc::new(Mutex::new(letters));
    let mut agents = tokio::task::JoinSet::new();
    for _ in 0..AGENTS {
        let (client, work, answers, retries) =
            (pf.agency(), work.clone(), answers.clone(), retries.clone());
        agents.spawn(async move {
            let policy = RetryPolicy {
                attempts: 1_000,
                first_delay: Duration::from_millis(50),
                max_delay: Duration::from_millis(500),
            };
            // One kept-alive connection per agent, opened again after a kill.
            let mut session = client.session(policy);
            loop {
                let Some((message, signed)) = work.lock().unwrap().pop() else {
                    return;
                };
                let summary = session
                    .submit(signed, |_, _, _| {
                        retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    })
                    .await
                    .unwrap();
                answers.lock().unwrap().insert(message, summary.evidence);
            }
        });
    }
    agents
}

/// The letters delivered at home.test so far (its metric).
fn delivered(pf: &ProcessFederation) -> f64 {
    let admin = pf.fed.relay("home.test").config.admin_listen.unwrap();
    estafette_relay::admin::local_get(admin, "/metrics").map_or(0.0, |text| {
        estafette_relay::testkit::metric(&text, "estafette_relay_delivered_total")
    })
}

/// What happens to the gateway, again and again, during the submissions.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// SIGKILL.
    Kill,
    /// SIGKILL and its data directory's unsynced data dropped (redb).
    PowerLoss,
    /// SIGKILL, PostgreSQL shut down at once, and the unsynced data of
    /// both data directories dropped.
    PostgresPowerLoss,
}

/// What a federation for a fault has besides its processes; dropped in
/// this order (the server stops before its file system goes).
struct Faulty {
    pg: Option<TestPostgres>,
    lazy: Option<LazyFs>,
    _lazy_dir: Option<tempfile::TempDir>,
}

/// A federation for `fault`: the gateway's data (and PostgreSQL's) on
/// LazyFS when the fault is a power loss.
fn federation(fault: Fault) -> (ProcessFederation, Faulty) {
    if fault != Fault::PostgresPowerLoss {
        let pf = ProcessFederation::new();
        let lazy = (fault == Fault::PowerLoss).then(|| LazyFs::mount(&pf.dir().join("lazyfs")));
        if let Some(lazy) = &lazy {
            gateway_data_on(&pf, lazy);
        }
        let faulty = Faulty {
            pg: None,
            lazy,
            _lazy_dir: None,
        };
        return (pf, faulty);
    }
    // PostgreSQL first: the federation's registry import writes to it.
    let lazy_dir = tempfile::tempdir().unwrap();
    let lazy = LazyFs::mount_with_cache(lazy_dir.path(), POSTGRES_LAZYFS_CACHE);
    let pg = TestPostgres::start_with_data_at(&lazy.path().join("postgres"), POSTGRES_SETTINGS);
    let pf = ProcessFederation::with_store(estafette_gateway::config::StoreSettings {
        backend: estafette_gateway::config::StoreBackend::Postgres,
        url: Some(pg.url()),
        connections: Some(4),
        ..Default::default()
    });
    gateway_data_on(&pf, &lazy);
    let faulty = Faulty {
        pg: Some(pg),
        lazy: Some(lazy),
        _lazy_dir: Some(lazy_dir),
    };
    (pf, faulty)
}

async fn gateway_killed_during_submissions(fault: Fault) {
    let (kills, count) = match fault {
        Fault::Kill => (KILLS, LETTERS),
        Fault::PowerLoss | Fault::PostgresPowerLoss => (POWER_LOSSES, POWER_LOSS_LETTERS),
    };
    let kills = env_or("ESTAFETTE_GATEWAY_KILLS", kills);
    let count = env_or("ESTAFETTE_TEST_LETTERS", count);
    let (pf, faulty) = federation(fault);
    let (lazy, pg) = (&faulty.lazy, &faulty.pg);
    let mut relay = pf.start_relay("relay.test");
    let mut home = pf.start_relay("home.test");
    let mut gateway = pf.start_gateway();
    let letters: Vec<(MessageId, Vec<u8>)> = (0..count)
        .map(|i| pf.letter(AGENCY, RESIDENT, &format!("letter {i}")))
        .collect();
    let sent: HashSet<MessageId> = letters.iter().map(|(m, _)| *m).collect();
    let answers: Answers = Arc::default();
    let retries = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut agents = agencies(&pf, letters, &answers, &retries);

    let answered = || answers.lock().unwrap().len();
    for kill in 1..=kills {
        // Spread over the submissions by their progress, then a random moment.
        let progress = count * kill / (kills + 1);
        estafette_tests::wait_for("the submissions to go on", COME_BACK, async || {
            answered() >= progress
        })
        .await;
        let pause = u64::from(OsRng.next_u32() % 100);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        gateway.kill();
        if let Some(pg) = pg {
            pg.kill();
        }
        let cache = lazy.as_ref().map(LazyFs::drop_unsynced);
        if let Some(pg) = pg {
            pg.start_again();
        }
        println!(
            "kill {kill} of the gateway{}: {pause} ms after {progress} answers; {} now{}",
            match fault {
                Fault::Kill => "",
                Fault::PowerLoss => " and its unsynced data",
                Fault::PostgresPowerLoss => " and PostgreSQL, and the unsynced data of both",
            },
            answered(),
            cache.map_or(String::new(), |c| format!(" (LazyFS cache {c:.1}% full)"))
        );
        gateway = pf.start_gateway();
    }
    while let Some(agent) = agents.join_next().await {
        agent.unwrap();
    }
    let submitted = started.elapsed();
    estafette_tests::wait_for("every letter delivered", COME_BACK, async || {
        delivered(&pf) >= count as f64
    })
    .await;
    for daemon in [&mut gateway, &mut relay, &mut home] {
        assert!(
            daemon.terminate().success(),
            "{} did not stop cleanly",
            daemon.name
        );
    }
    let records: Box<dyn Records> = match pg {
        Some(pg) => Box::new(PgRecords::connect(&pg.url(), 1).await.unwrap()),
        None => {
            let text = std::fs::read_to_string(&pf.gateway_config).unwrap();
            let config: GatewayConfig = toml::from_str(&text).unwrap();
            Box::new(RedbRecords::open_offline(&config.node.db_path(), 16 << 20).unwrap())
        }
    };
    tokio::task::block_in_place(|| {
        check_once_each(&pf, &*records, &sent, &answers, kills, submitted, &retries);
    });
}

/// Each letter: one SubmissionAcceptance at the gateway, the same one every
/// time the agency was answered, and one copy in the inbox.
fn check_once_each(
    pf: &ProcessFederation,
    records: &dyn Records,
    sent: &HashSet<MessageId>,
    answers: &Answers,
    kills: usize,
    took: Duration,
    retries: &std::sync::atomic::AtomicUsize,
) {
    let trust = pf.fed.trust();
    let read = records.read().unwrap();
    let answers = answers.lock().unwrap();
    // A lost acceptance would show here: the agency holding one signed
    // acceptance and the gateway, after a power loss, another.
    let (mut acceptances_not_one, mut differing) = (0, 0);
    for message in sent {
        let stored: Vec<String> = read
            .evidence_for(message)
            .unwrap()
            .iter()
            .filter(|b| {
                Evidence::verify(b, &trust).unwrap().record.event
                    == EvidenceEvent::SubmissionAcceptance
            })
            .map(|b| b.iter().map(|byte| format!("{byte:02x}")).collect())
            .collect();
        acceptances_not_one += usize::from(stored.len() != 1);
        differing += usize::from(
            answers
                .get(message)
                .is_some_and(|got| stored.first() != Some(got)),
        );
    }
    let (arrived, unique) = estafette_tests::delivered_at(pf.fed.relay("home.test"));
    println!(
        "gateway killed {kills} times during {} submissions ({:.1} s, {} failed attempts sent again): \
         answered {}, delivered {}, duplicates {}, lost {}, letters without exactly one acceptance {acceptances_not_one}, \
         agency's acceptance not the gateway's {differing}",
        sent.len(),
        took.as_secs_f64(),
        retries.load(std::sync::atomic::Ordering::Relaxed),
        answers.len(),
        arrived.len(),
        arrived.len() - unique.len(),
        sent.difference(&unique).count()
    );
    assert_eq!(answers.len(), sent.len(), "every letter was answered");
    assert_eq!(
        differing, 0,
        "an agency holds an acceptance the gateway does not"
    );
    assert_eq!(
        acceptances_not_one, 0,
        "a letter without exactly one acceptance"
    );
    assert_eq!(arrived.len(), unique.len(), "a letter was delivered twice");
    assert_eq!(&unique, sent, "every letter was delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_during_submissions_accepts_and_delivers_each_letter_once() {
    gateway_killed_during_submissions(Fault::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_losing_power_during_submissions_accepts_and_delivers_each_letter_once() {
    gateway_killed_during_submissions(Fault::PowerLoss).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_on_postgresql_losing_power_during_submissions_accepts_and_delivers_each_letter_once()
 {
    gateway_killed_during_submissions(Fault::PostgresPowerLoss).await;
}
