//! `estafette-gateway-load`: letters per second through the whole path.
//!
//! Builds a throwaway federation, starts a transit relay and a home relay as
//! real `estafette-relay` processes (the binary next to this one) and the
//! gateway in this process, then has many agency connections (mutual TLS,
//! HTTP/1.1 kept alive) submit sealed letters. Prints letters/s accepted,
//! letters/s delivered end to end (ContentConsignment back at the gateway),
//! and the time from submission to ContentConsignment. fsync at every hop.
//! The gateway also notifies every recipient by e-mail, through an SMTP
//! server in this process.
//!
//!     cargo build --release -p estafette-relay -p estafette-gateway
//!     target/release/estafette-gateway-load
//!     target/release/estafette-gateway-load --store postgres --gateways 3
//!
//! With `--store postgres` the tool starts a PostgreSQL server of its own
//! (initdb in a temp dir, fsync and synchronous_commit on) and prints its
//! CPU per letter too; `--gateways N` runs N instances on it, the agency
//! connections spread over them.
#![forbid(unsafe_code)]
// No function over about 80 lines (clippy.toml): a long one reads as named steps.
#![warn(clippy::too_many_lines)]

// mimalloc: the nodes allocate many short-lived buffers on several threads;
// glibc's allocator cost about a tenth of the CPU under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use estafette_gateway::client::AgencyClient;
use estafette_gateway::config::{GatewayConfig, StoreBackend, StoreSettings};
use estafette_gateway::notify::SmtpSettings;
use estafette_gateway::smtp_sink::SmtpSink;
use estafette_gateway::store::test_postgres::TestPostgres;
use estafette_gateway::{RunningGateway, registry};
use estafette_pki::{NodeKind, keys};
use estafette_relay::testkit::{AGENCY, RelayProcess, TestFederation};
use estafette_spec::{Bsn, EvidenceEvent, Letter, MessageId, Nature, SignedMessage};
use rand_core::OsRng;
use tokio::sync::Mutex;

/// Measure letters/s accepted and delivered end to end.
#[derive(Parser)]
#[command(name = "estafette-gateway-load", version)]
struct Args {
    /// Letters to send.
    #[arg(long, default_value_t = 20_000)]
    letters: usize,
    /// Concurrent agency connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Size of each letter's body, in bytes.
    #[arg(long, default_value_t = 2048)]
    body_bytes: usize,
    /// Distinct recipients (each with an active inbox and consent).
    #[arg(long, default_value_t = 1000)]
    recipients: usize,
    /// Longest wait for the last delivery.
    #[arg(long, default_value_t = 600)]
    timeout_s: u64,
    /// Where the gateway keeps its records: `redb` (its embedded database)
    /// or `postgres` (a PostgreSQL server this tool starts, initdb in a
    /// temp dir; needs PostgreSQL's server binaries).
    #[arg(long, value_enum, default_value_t = StoreChoice::Redb)]
    store: StoreChoice,
    /// Gateway instances (more than one needs `--store postgres`); the
    /// agency connections are spread over them.
    #[arg(long, default_value_t = 1)]
    gateways: usize,
    /// With `--store postgres`: print the statements that took the server's
    /// time during the run, with calls per letter (pg_stat_statements).
    #[arg(long)]
    statements: bool,
    /// With `--store postgres`: how the gateways reach the server, over
    /// TCP (as from another machine) or over its Unix socket (as a server
    /// on the same machine is best reached).
    #[arg(long, value_enum, default_value_t = PostgresTransport::Tcp)]
    postgres_via: PostgresTransport,
}

/// How the gateways reach the load tool's PostgreSQL server.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
enum PostgresTransport {
    Tcp,
    Socket,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum StoreChoice {
    Redb,
    Postgres,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

/// CPU seconds (user + system, all threads) and bytes written to storage by
/// a process so far, from Linux's /proc; `None` elsewhere.
#[derive(Clone, Copy)]
struct Usage {
    cpu_s: f64,
    written: u64,
}

fn usage(pid: u32) -> Option<Usage> {
    // utime and stime are fields 14 and 15, counted after the command name
    // (which may contain spaces) in clock ticks of USER_HZ, 100 on Linux.
    const USER_HZ: f64 = 100.0;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    let written = io
        .lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))?
        .trim()
        .parse()
        .ok()?;
    Some(Usage {
        cpu_s: ticks as f64 / USER_HZ,
        written,
    })
}

/// Per letter: CPU time and bytes written by one process over the run.
fn per_letter(name: &str, before: Option<Usage>, after: Option<Usage>, letters: usize) {
    if let (Some(b), Some(a)) = (before, after) {
        println!(
            "  {name:<28} {:>5.0} µs CPU, {:>4.0} KiB written per letter",
            (a.cpu_s - b.cpu_s) / letters as f64 * 1e6,
            (a.written - b.written) as f64 / letters as f64 / 1024.0
        );
    }
}

fn valid_bsns(n: usize) -> Vec<Bsn> {
    (100_000_000u32..)
        .filter_map(|i| i.to_string().parse::<Bsn>().ok())
        .take(n)
        .collect()
}

/// The federation under load: two relay processes, an SMTP server and the
/// gateway's instances in this process, with `recipients` digital people.
struct Rig {
    fed: TestFederation,
    relay: RelayProcess,
    home: RelayProcess,
    sink: SmtpSink,
    gateways: Vec<RunningGateway>,
    bsns: Vec<Bsn>,
    /// The PostgreSQL server, with `--store postgres`.
    postgres: Option<TestPostgres>,
}

/// One gateway instance per node address in `listens`, on `postgres` when
/// given (each its own instance name), the first one the federation's.
async fn start_gateways(
    fed: &TestFederation,
    listens: &[std::net::SocketAddr],
    sink: &SmtpSink,
    postgres: Option<(&TestPostgres, PostgresTransport)>,
) -> Result<Vec<RunningGateway>> {
    let mut gateways = Vec::with_capacity(listens.len());
    for (i, listen) in listens.iter().enumerate() {
        let mut config = GatewayConfig::new("127.0.0.1:0".parse()?, fed.gateway.config.clone());
        config.notifications = Some(SmtpSettings::plain(
            "127.0.0.1",
            sink.addr.port(),
            "Berichtenbox <noreply@gateway.test>",
        ));
        if let Some((pg, via)) = postgres {
            config.store = StoreSettings {
                backend: StoreBackend::Postgres,
                url: Some(match via {
                    PostgresTransport::Tcp => pg.url(),
                    PostgresTransport::Socket => pg.socket_url(),
                }),
                instance: Some(format!("load-{i}")),
                ..Default::default()
            };
        }
        if i > 0 {
            config.node.listen = *listen;
            config.node.admin_listen = None;
            config.node.log_listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
            config.node.data_dir = fed.tmp.path().join(format!("gateway-{i}"));
        }
        config.paper_spool = Some(fed.tmp.path().join(format!("spool-{i}")));
        gateways.push(RunningGateway::start(config).await?);
    }
    Ok(gateways)
}

async fn start_rig(args: &Args) -> Result<Rig> {
    let relay_binary = estafette_relay::testkit::relay_binary()?;
    if args.gateways == 0 || (args.gateways > 1 && args.store != StoreChoice::Postgres) {
        bail!("--gateways must be 1, or more with --store postgres");
    }
    if args.statements && args.store != StoreChoice::Postgres {
        bail!("--statements needs --store postgres");
    }
    let mut fed = TestFederation::new(
        &[
            ("load-relay.test", NodeKind::Transit),
            ("load-home.test", NodeKind::Home),
        ],
        &["load-relay.test", "load-home.test"],
    );
    // Each instance at its own node address, all in the trust list.
    let listens: Vec<std::net::SocketAddr> = std::iter::once(fed.gateway.config.listen)
        .chain((1..args.gateways).map(|_| estafette_relay::testkit::free_udp()))
        .collect();
    if args.gateways > 1 {
        let addresses: Vec<String> = listens.iter().map(|a| a.to_string()).collect();
        fed.fed.set_gateway_addresses(&addresses)?;
    }
    let relay = RelayProcess::start(&relay_binary, fed.relay("load-relay.test"));
    let home = RelayProcess::start(&relay_binary, fed.relay("load-home.test"));
    // Notifications go to an SMTP server in this process, as they would to
    // the operator's relay host.
    let sink = SmtpSink::start().await?;
    let postgres = (args.store == StoreChoice::Postgres).then(|| {
        TestPostgres::start(if args.statements {
            STATEMENT_STATISTICS
        } else {
            ""
        })
    });
    let gateways = start_gateways(
        &fed,
        &listens,
        &sink,
        postgres.as_ref().map(|pg| (pg, args.postgres_via)),
    )
    .await?;
    // Recipients, all digital for the agency.
    let bsns = valid_bsns(args.recipients);
    let people: Vec<serde_json::Value> = bsns
        .iter()
        .map(|b| serde_json::json!({ "recipient": format!("bsn:{b}"), "home_node": "load-home.test", "active": true, "digital_senders": [AGENCY],
            "contact_channels": [{ "kind": "email", "address": format!("p{b}@example.nl"), "state": "verified" }] }))
        .collect();
    registry::import(
        gateways[0].gateway.records(),
        &fed.trust(),
        &serde_json::Value::Array(people).to_string(),
    )
    .await?;
    Ok(Rig {
        fed,
        relay,
        home,
        sink,
        gateways,
        bsns,
        postgres,
    })
}

/// The server settings of `--statements`.
const STATEMENT_STATISTICS: &str = "shared_preload_libraries = 'pg_stat_statements'\n\
    pg_stat_statements.track_planning = on\n";

/// Runs `sql` against the load tool's PostgreSQL server, on a thread of its
/// own (the blocking client must not run on the async runtime's threads).
fn pg_query(pg: &TestPostgres, sql: &'static str) -> Result<Vec<postgres::Row>> {
    let url = pg.url();
    std::thread::spawn(move || -> Result<Vec<postgres::Row>> {
        let mut client = postgres::Client::connect(&url, postgres::NoTls)?;
        Ok(client.query(sql, &[])?)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the statistics thread panicked"))?
}

/// Starts counting statements afresh (`--statements`).
fn reset_statements(pg: &TestPostgres) -> Result<()> {
    pg_query(pg, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")?;
    pg_query(pg, "SELECT pg_stat_statements_reset()::text")?;
    pg_query(pg, "SELECT pg_stat_reset_shared('wal')::text")?;
    pg_query(pg, "SELECT pg_stat_reset_shared('bgwriter')::text")?;
    Ok(())
}

/// The statements that took the server's time since [`reset_statements`]:
/// calls and milliseconds (planning and execution) per letter.
fn print_statements(pg: &TestPostgres, letters: usize) -> Result<()> {
    let rows = pg_query(
        pg,
        "SELECT query, calls, total_plan_time + total_exec_time, plans \
         FROM pg_stat_statements ORDER BY total_plan_time + total_exec_time DESC LIMIT 25",
    )?;
    let per = letters.max(1) as f64;
    println!("PostgreSQL statements by server time (per letter: calls, plans, ms):");
    for row in rows {
        let query: String = row.get(0);
        let (calls, ms, plans): (i64, f64, i64) = (row.get(1), row.get(2), row.get(3));
        let query: String = query.split_whitespace().collect::<Vec<_>>().join(" ");
        println!(
            "  {:6.2} {:6.2} {:7.3}  {}",
            calls as f64 / per,
            plans as f64 / per,
            ms / per,
            query.chars().take(110).collect::<String>()
        );
    }
    let wal = pg_query(
        pg,
        "SELECT wal_records, wal_fpi, wal_bytes::bigint FROM pg_stat_wal",
    )?;
    let checkpoints = pg_query(
        pg,
        "SELECT checkpoints_timed + checkpoints_req, buffers_checkpoint + buffers_clean + buffers_backend \
         FROM pg_stat_bgwriter",
    )?;
    if let (Some(wal), Some(checkpoints)) = (wal.first(), checkpoints.first()) {
        let (records, full_pages, bytes): (i64, i64, i64) = (wal.get(0), wal.get(1), wal.get(2));
        let (count, buffers): (i64, i64) = (checkpoints.get(0), checkpoints.get(1));
        println!(
            "PostgreSQL WAL per letter: {:.1} records, {:.2} full-page images, {:.1} KiB; \
             {count} checkpoints, {:.2} buffers written per letter",
            records as f64 / per,
            full_pages as f64 / per,
            bytes as f64 / per / 1024.0,
            buffers as f64 / per,
        );
    }
    Ok(())
}

/// The letters to send, sealed: (message id, SignedMessage).
fn seal_letters(rig: &Rig, args: &Args) -> Result<Vec<(MessageId, Vec<u8>)>> {
    println!(
        "sealing {} letters with {}-byte bodies for {} recipients ...",
        args.letters, args.body_bytes, args.recipients
    );
    let seal = keys::read_ed25519(
        &rig.fed
            .fed
            .agency_dir(&AGENCY.parse()?)
            .join("seal.key.pem"),
    )?;
    let body = "x".repeat(args.body_bytes);
    let mut letters = Vec::with_capacity(args.letters);
    for i in 0..args.letters {
        let letter = Letter {
            message_id: MessageId::random(&mut OsRng),
            sender: AGENCY.parse()?,
            recipient: estafette_spec::Recipient::Bsn(rig.bsns[i % rig.bsns.len()]),
            created_at: estafette_pki::now(),
            subject: "Load test letter".into(),
            body: body.clone(),
            attachments: vec![],
            nature: Nature::Information,
            legal_effect: false,
            expected_action: "No action needed.".into(),
            response_deadline: None,
            language: "nl".into(),
            sender_reference: format!("L-{i}"),
        };
        letters.push((letter.message_id, SignedMessage::sign(&letter, &seal)?));
    }
    Ok(letters)
}

/// When each letter's ContentConsignment came back to the gateway (to
/// whichever instance the home node delivered it).
fn watch_deliveries(
    gateways: &[RunningGateway],
    total: usize,
) -> tokio::task::JoinHandle<HashMap<MessageId, Instant>> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for gateway in gateways {
        let mut notes = gateway.gateway.node.subscribe_evidence();
        let tx = tx.clone();
        tokio::spawn(async move {
            loop {
                match notes.recv().await {
                    Ok(note) if note.event == EvidenceEvent::ContentConsignment => {
                        if let Some(m) = note.message_id
                            && tx.send((m, Instant::now())).is_err()
                        {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        eprintln!("watcher lagged by {n} notes")
                    }
                    Err(_) => return,
                }
            }
        });
    }
    drop(tx);
    tokio::spawn(async move {
        let mut delivered: HashMap<MessageId, Instant> = HashMap::with_capacity(total);
        while delivered.len() < total {
            let Some((m, at)) = rx.recv().await else {
                break;
            };
            delivered.entry(m).or_insert(at);
        }
        delivered
    })
}

type SentAt = Arc<Mutex<HashMap<MessageId, Instant>>>;

/// Submits every letter over `connections` kept-alive connections, spread
/// over the gateway's instances (`clients`, one per instance); how many
/// were accepted.
async fn submit_all(
    clients: Vec<Arc<AgencyClient>>,
    letters: Vec<(MessageId, Vec<u8>)>,
    connections: usize,
    sent_at: SentAt,
) -> Result<usize> {
    let letters = Arc::new(letters);
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for c in 0..connections {
        let (client, letters, next, sent_at) = (
            clients[c % clients.len()].clone(),
            letters.clone(),
            next.clone(),
            sent_at.clone(),
        );
        workers.spawn(async move {
            let mut connection = client.connect().await?;
            let mut accepted = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((id, bytes)) = letters.get(i) else {
                    break;
                };
                sent_at.lock().await.insert(*id, Instant::now());
                connection.submit(bytes.clone()).await?;
                accepted += 1;
            }
            anyhow::Ok(accepted)
        });
    }
    let mut accepted = 0;
    while let Some(done) = workers.join_next().await {
        accepted += done??;
    }
    Ok(accepted)
}

/// The gateway store's group commit, from its metrics (redb).
fn print_commits(gateway: &RunningGateway) {
    let metrics = gateway.gateway.node.core.metrics.encode();
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let (commits, writes) = (
        value("estafette_relay_commit_batch_size_count"),
        value("estafette_relay_commit_batch_size_sum"),
    );
    if commits > 0.0 {
        println!(
            "gateway store: {commits:.0} commits, {:.1} writes per commit, {:.2} ms per commit",
            writes / commits,
            value("estafette_relay_commit_seconds_sum") / commits * 1e3
        );
    }
}

/// Ed25519 signatures the protocol made per letter: the gateway's envelope
/// (one a letter), each process's log checkpoints (one per commit of its
/// evidence log, however many records it holds) and the cosignatures each
/// gave as a witness. Counted from the processes' metrics.
fn print_signatures(rig: &Rig, letters: usize) {
    let value = |metrics: &str, name: &str| estafette_relay::testkit::metric(metrics, name);
    let gateway: String = rig
        .gateways
        .iter()
        .map(|g| g.gateway.node.core.metrics.encode())
        .collect::<Vec<_>>()
        .join("\n");
    let remote = |admin| estafette_relay::admin::local_get(admin, "/metrics").unwrap_or_default();
    let processes = [
        ("gateway", gateway),
        ("transit relay", remote(rig.relay.admin)),
        ("home relay", remote(rig.home.admin)),
    ];
    let per = |n: f64| n / letters.max(1) as f64;
    let mut total = 1.0;
    let mut parts = Vec::new();
    for (name, metrics) in &processes {
        let checkpoints = value(metrics, "estafette_relay_log_checkpoints_total");
        let cosigned = value(metrics, "estafette_relay_witness_cosigned_total");
        total += per(checkpoints + cosigned);
        parts.push(format!(
            "{name} {:.3} ({checkpoints:.0} checkpoints, {cosigned:.0} cosignatures)",
            per(checkpoints + cosigned)
        ));
    }
    println!(
        "signatures per letter: {total:.3} = 1 envelope + {}",
        parts.join(" + ")
    );
}

/// What one run measured.
struct Run {
    accepted: usize,
    letter_bytes: usize,
    accept_time: Duration,
    deliver_time: Duration,
}

fn print_throughput(
    args: &Args,
    run: &Run,
    delivered: &HashMap<MessageId, Instant>,
    sent_at: &HashMap<MessageId, Instant>,
) {
    let Run {
        accepted,
        letter_bytes,
        accept_time,
        deliver_time,
    } = *run;
    let mut latencies: Vec<Duration> = delivered
        .iter()
        .filter_map(|(m, at)| sent_at.get(m).map(|s| at.saturating_duration_since(*s)))
        .collect();
    latencies.sort();
    let store = match (args.store, args.gateways) {
        (StoreChoice::Redb, _) => "redb".to_owned(),
        (StoreChoice::Postgres, n) => {
            let instances = match n {
                1 => "one instance".to_owned(),
                n => format!("{n} instances"),
            };
            let via = match args.postgres_via {
                PostgresTransport::Tcp => "TCP",
                PostgresTransport::Socket => "Unix socket",
            };
            format!("PostgreSQL over {via}, {instances}")
        }
    };
    println!("gateway ({store}) + transit relay + home relay on one machine, fsync at every hop");
    println!(
        "{accepted} letters of {letter_bytes} bytes (body {} bytes) from {} agency connections",
        args.body_bytes, args.connections
    );
    println!(
        "accepted:  {:.0} letters/s ({accepted} in {:.2} s)",
        accepted as f64 / accept_time.as_secs_f64(),
        accept_time.as_secs_f64()
    );
    println!(
        "delivered: {:.0} letters/s end to end ({} in {:.2} s)",
        delivered.len() as f64 / deliver_time.as_secs_f64(),
        delivered.len(),
        deliver_time.as_secs_f64()
    );
    println!(
        "submission → ContentConsignment: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
}

/// The processes whose CPU the run measures: this one, the relays, and
/// with PostgreSQL its server (the postmaster and its backends).
fn measured_pids(rig: &Rig) -> Vec<(&'static str, Vec<u32>)> {
    let mut pids = vec![
        ("gateway (+ agencies, SMTP)", vec![std::process::id()]),
        ("transit relay", vec![rig.relay.child.id()]),
        ("home relay", vec![rig.home.child.id()]),
    ];
    if let Some(pg) = &rig.postgres
        && let Some(postmaster) = pg.pid()
    {
        let mut all = vec![postmaster];
        all.extend(children(postmaster));
        pids.push(("PostgreSQL server", all));
    }
    pids
}

/// The processes whose parent is `pid`, from /proc.
fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    let fields: Vec<String> = s
                        .rsplit_once(')')?
                        .1
                        .split_whitespace()
                        .map(str::to_owned)
                        .collect();
                    fields.get(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// The summed usage of `pids`.
fn usage_of(pids: &[u32]) -> Option<Usage> {
    let mut total = Usage {
        cpu_s: 0.0,
        written: 0,
    };
    for pid in pids {
        let u = usage(*pid)?;
        total.cpu_s += u.cpu_s;
        total.written += u.written;
    }
    Some(total)
}

/// Stops the gateways, the PostgreSQL server and the relays.
async fn stop_rig(rig: Rig) -> Result<()> {
    let Rig {
        mut relay,
        mut home,
        gateways,
        postgres,
        ..
    } = rig;
    for gateway in gateways {
        gateway.shutdown().await;
    }
    drop(postgres);
    if !relay.terminate().success() || !home.terminate().success() {
        bail!("a relay did not stop cleanly");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let rig = start_rig(&args).await?;
    let letters = seal_letters(&rig, &args)?;
    let letter_bytes = letters.first().map(|(_, b)| b.len()).unwrap_or(0);
    let clients = rig
        .gateways
        .iter()
        .map(|g| {
            AgencyClient::for_agency_dir(
                g.https_addr,
                "gateway.test",
                &rig.fed.fed.root_cert_path(),
                &rig.fed.fed.agency_dir(&AGENCY.parse()?),
            )
            .map(Arc::new)
            .map_err(anyhow::Error::from)
        })
        .collect::<Result<Vec<_>>>()?;
    let sent_at: SentAt = Arc::new(Mutex::new(HashMap::with_capacity(args.letters)));
    let watcher = watch_deliveries(&rig.gateways, args.letters);
    let pids = measured_pids(&rig);
    let usage_before: Vec<Option<Usage>> = pids.iter().map(|(_, p)| usage_of(p)).collect();
    if args.statements
        && let Some(pg) = &rig.postgres
    {
        reset_statements(pg)?;
    }
    let started = Instant::now();
    let accepted = submit_all(clients, letters, args.connections, sent_at.clone()).await?;
    let accept_time = started.elapsed();
    let delivered = tokio::time::timeout(Duration::from_secs(args.timeout_s), watcher)
        .await
        .context("not every letter was delivered in time")??;
    let deliver_time = started.elapsed();
    let run = Run {
        accepted,
        letter_bytes,
        accept_time,
        deliver_time,
    };
    print_throughput(&args, &run, &delivered, &*sent_at.lock().await);
    if args.store == StoreChoice::Redb {
        print_commits(&rig.gateways[0]);
    }
    // The notifications of the run (they trail the deliveries).
    let notified = rig
        .sink
        .wait_for(Duration::from_secs(args.timeout_s), |m| m.len() >= accepted)
        .await
        .map(|m| m.len())
        .unwrap_or_else(|m| m.len());
    println!(
        "notification e-mails received: {notified} ({:.0}/s over the whole run)",
        notified as f64 / started.elapsed().as_secs_f64()
    );
    print_signatures(&rig, accepted);
    // Everything each letter cost, its notification included.
    let usage_after: Vec<Option<Usage>> = pids.iter().map(|(_, p)| usage_of(p)).collect();
    println!("cost per letter, notification included (Linux /proc):");
    for (((name, _), before), after) in pids.iter().zip(usage_before).zip(usage_after) {
        per_letter(name, before, after, accepted);
    }
    if args.statements
        && let Some(pg) = &rig.postgres
    {
        print_statements(pg, accepted)?;
    }
    stop_rig(rig).await?;
    if delivered.len() != accepted {
        bail!(
            "{} letters accepted but not delivered",
            accepted - delivered.len()
        );
    }
    Ok(())
}
