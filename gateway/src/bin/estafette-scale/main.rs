//! `estafette-scale`: the national-scale figures. Each part builds a
//! throwaway federation, fills it to national size and prints what it
//! measured; run it from a release build:
//!
//!     cargo build --release -p estafette-relay -p estafette-gateway
//!     target/release/estafette-scale relay
//!
//! `relay`: one million envelopes queued at a relay behind a stopped home
//! node (real `estafette-relay` processes, fsync on): resident memory and
//! acceptance rate with 10,000 and with 1,000,000 queued, the time from a
//! restart to accepting again, then the drain once the home node starts,
//! its rate, and the order in which the home node received the letters.
//!
//! `monitor`: a monitor cycle's reads with a million letters followed, 1%
//! of them due; `registry`: 17 million people imported, then looked up.
//! Both take `--store postgres` (a PostgreSQL server of their own).
#![forbid(unsafe_code)]
// No function over about 80 lines (clippy.toml): a long one reads as named steps.
#![warn(clippy::too_many_lines)]

mod backend;
mod monitor;
mod registry;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use estafette_pki::NodeKind;
use estafette_relay::config::Limits;
use estafette_relay::testkit::{
    RelayProcess, TestFederation, metric, random_inbox, relay_binary, resident_kib,
};
use estafette_relay::transport::{Peers, TlsMaterial, endpoint};
use estafette_spec::relay::{Offer, Request, Response};
use estafette_spec::{Evidence, InboxId, MessageId, NodeId};

const RELAY: &str = "scale-relay.test";
const HOME: &str = "scale-home.test";
/// Inboxes the letters are spread over.
const INBOXES: usize = 1_000;
/// The letters of one big inbox (the first ones submitted).
const BIG_INBOX_LETTERS: usize = 5_000;
/// The drain is given up when the queue has not moved for this long.
const DRAIN_STALL: Duration = Duration::from_secs(120);
/// How long a restarted relay may take to accept before the bench gives up.
const RESTART_LIMIT: Duration = Duration::from_secs(120);

#[derive(Parser)]
#[command(name = "estafette-scale", version)]
struct Args {
    #[command(subcommand)]
    part: Part,
}

#[derive(Subcommand)]
enum Part {
    /// A relay with a million envelopes queued behind a stopped home node.
    Relay {
        /// Envelopes to queue.
        #[arg(long, default_value_t = 1_000_000)]
        queued: usize,
        /// The small queue to compare with.
        #[arg(long, default_value_t = 10_000)]
        baseline: usize,
        /// Offers in flight at once (concurrent QUIC streams).
        #[arg(long, default_value_t = 256)]
        concurrency: usize,
        /// Size of each letter's body, in bytes.
        #[arg(long, default_value_t = 1024)]
        payload_bytes: usize,
    },
    /// A monitor cycle's reads with a million letters followed, 1% due.
    Monitor {
        /// Letters followed.
        #[arg(long, default_value_t = 1_000_000)]
        followed: usize,
        /// The share of them due.
        #[arg(long, default_value_t = 0.01)]
        due_share: f64,
        #[arg(long, value_enum, default_value_t = backend::Backend::Redb)]
        store: backend::Backend,
        /// The store's cache in MiB: redb's page cache (the gateway's
        /// `limits.store_cache_mib`; 16 by default) or PostgreSQL's
        /// `shared_buffers` (its own default by default).
        #[arg(long)]
        cache_mib: Option<u64>,
    },
    /// A registry of 17 million people: import rate, size, lookups.
    Registry {
        /// People to import.
        #[arg(long, default_value_t = 17_000_000)]
        people: usize,
        /// The small registry to compare lookups with.
        #[arg(long, default_value_t = 10_000)]
        baseline: usize,
        #[arg(long, value_enum, default_value_t = backend::Backend::Redb)]
        store: backend::Backend,
        /// The store's cache in MiB: redb's page cache (the gateway's
        /// `limits.store_cache_mib`; 16 by default) or PostgreSQL's
        /// `shared_buffers` (its own default by default).
        #[arg(long)]
        cache_mib: Option<u64>,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    match Args::parse().part {
        Part::Relay {
            queued,
            baseline,
            concurrency,
            payload_bytes,
        } => relay(queued, baseline.min(queued), concurrency, payload_bytes).await,
        Part::Monitor {
            followed,
            due_share,
            store,
            cache_mib,
        } => monitor::monitor(followed, due_share, backend::Chosen::new(store, cache_mib)).await,
        Part::Registry {
            people,
            baseline,
            store,
            cache_mib,
        } => {
            registry::registry(
                people,
                baseline.min(people),
                backend::Chosen::new(store, cache_mib),
            )
            .await
        }
    }
}

/// A process's resident memory in MiB.
fn resident_mib(pid: u32) -> Result<f64> {
    let kib = resident_kib(pid).context("no resident memory in /proc")?;
    Ok(kib as f64 / 1024.0)
}

/// The letters to queue: signed and sealed envelopes in submission order,
/// and each letter's place in that order.
struct Letters {
    envelopes: Vec<Vec<u8>>,
    place: HashMap<MessageId, usize>,
    big_inbox: InboxId,
}

/// Makes `n` envelopes for the home node on all cores.
fn make_letters(fed: &TestFederation, n: usize, payload_bytes: usize) -> Letters {
    let body = "x".repeat(payload_bytes);
    let inboxes: Vec<InboxId> = (0..INBOXES).map(|_| random_inbox()).collect();
    let big_inbox = random_inbox();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let per_thread = n.div_ceil(threads);
    let made: Vec<Vec<(Vec<u8>, MessageId)>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (inboxes, body) = (&inboxes, &body);
                scope.spawn(move || {
                    let range = (t * per_thread)..((t + 1) * per_thread).min(n);
                    range
                        .map(|i| {
                            let inbox = if i < BIG_INBOX_LETTERS {
                                big_inbox
                            } else {
                                inboxes[i % INBOXES]
                            };
                            let (envelope, _, header) = fed.envelope(HOME, inbox, body);
                            (envelope, header.message_id)
                        })
                        .collect()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_default())
            .collect()
    });
    let mut letters = Letters {
        envelopes: Vec::with_capacity(n),
        place: HashMap::with_capacity(n),
        big_inbox,
    };
    for (envelope, message_id) in made.into_iter().flatten() {
        letters.place.insert(message_id, letters.envelopes.len());
        letters.envelopes.push(envelope);
    }
    letters
}

/// The federation's view from the gateway's seat: offers to the relay.
struct Offerer {
    peers: Arc<Peers>,
    relay_id: NodeId,
    relay_addr: String,
}

impl Offerer {
    fn new(fed: &TestFederation) -> Result<Offerer> {
        let dir = fed.fed.node_dir(&"gateway.test".parse()?);
        let material = TlsMaterial::from_dir(&dir, &fed.fed.root_cert_path(), &fed.fed.crl_path())?;
        let client = endpoint("127.0.0.1:0".parse()?, &material, &Limits::default())?;
        let relay = fed.relay(RELAY);
        Ok(Offerer {
            peers: Arc::new(Peers::new(client, Duration::from_secs(60))),
            relay_id: relay.id.clone(),
            relay_addr: relay.config.listen.to_string(),
        })
    }

    async fn offer(&self, envelope: Vec<u8>) -> bool {
        let offer = Request::Offer(Offer {
            hops_taken: 0,
            previous_evidence: None,
            envelope,
        });
        matches!(
            self.peers
                .request(&self.relay_id, &self.relay_addr, &offer)
                .await,
            Ok(Response::Accepted(_))
        )
    }

    /// Offers `envelopes`, `concurrency` at once: envelopes accepted per second.
    async fn offer_all(self: &Arc<Self>, envelopes: &[Vec<u8>], concurrency: usize) -> Result<f64> {
        let started = Instant::now();
        let slots = Arc::new(tokio::sync::Semaphore::new(concurrency));
        let mut tasks = tokio::task::JoinSet::new();
        for envelope in envelopes {
            let permit = slots.clone().acquire_owned().await?;
            let (me, envelope) = (self.clone(), envelope.clone());
            tasks.spawn(async move {
                let ok = me.offer(envelope).await;
                drop(permit);
                ok
            });
        }
        let mut accepted = 0usize;
        while let Some(ok) = tasks.join_next().await {
            accepted += usize::from(ok?);
        }
        if accepted != envelopes.len() {
            bail!(
                "{} of {} offers refused",
                envelopes.len() - accepted,
                envelopes.len()
            );
        }
        Ok(accepted as f64 / started.elapsed().as_secs_f64())
    }
}

/// The relay part: fill, restart, drain, and the home node's order.
async fn relay(
    queued: usize,
    baseline: usize,
    concurrency: usize,
    payload_bytes: usize,
) -> Result<()> {
    let binary = relay_binary()?;
    let mut fed = TestFederation::new(
        &[(RELAY, NodeKind::Transit), (HOME, NodeKind::Home)],
        &[RELAY, HOME],
    );
    for node in fed.relays.iter_mut() {
        // Room for the whole backlog and the restart's probes; no gateway
        // runs, so the home node's evidence stays in its outbox line (the
        // order it received the letters in).
        node.config.limits.max_queue_len = 2 * queued as u64 + 1_000;
        node.config.retry.base_ms = 1_000;
        node.config.retry.cap_ms = 5_000;
        node.save();
    }
    println!("making {queued} envelopes with {payload_bytes}-byte letters ...");
    let letters = make_letters(&fed, queued + 1_000, payload_bytes);
    let (queue, probes) = letters.envelopes.split_at(queued);
    let mut relay_process = RelayProcess::start(&binary, fed.relay(RELAY));
    let offerer = Arc::new(Offerer::new(&fed)?);
    offerer.offer(probes[0].clone()).await;

    // Fill: the rate and memory at the baseline, then at every tenth.
    let base_rate = offerer.offer_all(&queue[..baseline], concurrency).await?;
    let base_mib = resident_mib(relay_process.child.id())?;
    println!(
        "{baseline:>9} queued: {base_rate:>6.0} envelopes/s accepted, relay resident {base_mib:.0} MiB"
    );
    let step = (queued / 10).max(1);
    let mut done = baseline;
    let (mut last_rate, mut last_mib) = (base_rate, base_mib);
    while done < queued {
        let next = (done + step).min(queued);
        // The rate with the queue this full: the last slice of the step.
        let slice = (next - done).min(baseline);
        offerer
            .offer_all(&queue[done..next - slice], concurrency)
            .await?;
        last_rate = offerer
            .offer_all(&queue[next - slice..next], concurrency)
            .await?;
        last_mib = resident_mib(relay_process.child.id())?;
        println!(
            "{next:>9} queued: {last_rate:>6.0} envelopes/s accepted, relay resident {last_mib:.0} MiB"
        );
        done = next;
    }
    println!(
        "with {queued} queued: resident {last_mib:.0} MiB = {:.2}x the figure with {baseline}; acceptance {:.0}% of the rate with a near-empty queue",
        last_mib / base_mib,
        100.0 * last_rate / base_rate
    );

    // Restart: from the process's start to the first accepted offer.
    let status = relay_process.terminate();
    if !status.success() {
        bail!("relay exited with {status}");
    }
    let restarted = Instant::now();
    relay_process = RelayProcess::start(&binary, fed.relay(RELAY));
    let mut probe = probes[1..].iter();
    loop {
        let envelope = probe.next().context("out of probe envelopes")?;
        if offerer.offer(envelope.clone()).await {
            break;
        }
        if restarted.elapsed() > RESTART_LIMIT {
            bail!("the restarted relay did not accept within {RESTART_LIMIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "restart with {queued} queued: accepting again {:.2} s after the process started; resident {:.0} MiB",
        restarted.elapsed().as_secs_f64(),
        resident_mib(relay_process.child.id())?
    );

    drain(&binary, &fed, &mut relay_process).await?;
    let status = relay_process.terminate();
    if !status.success() {
        bail!("relay exited with {status}");
    }
    home_order(&fed, &letters, queued)
}

/// Starts the home node and follows the relay's queue until it is empty.
async fn drain(
    binary: &std::path::Path,
    fed: &TestFederation,
    relay_process: &mut RelayProcess,
) -> Result<()> {
    let depth_series = format!("estafette_relay_queue_depth{{destination=\"{HOME}\"}}");
    let depth = |process: &RelayProcess| -> Result<f64> {
        let text = estafette_relay::admin::local_get(process.admin, "/metrics")?;
        Ok(metric(&text, &depth_series))
    };
    let start_depth = depth(relay_process)?;
    let mut home = RelayProcess::start(binary, fed.relay(HOME));
    let started = Instant::now();
    let (mut last, mut last_change) = (start_depth, Instant::now());
    let mut rates = Vec::new();
    let mut window = (Instant::now(), start_depth);
    while last > 0.0 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = depth(relay_process)?;
        if now < last {
            last_change = Instant::now();
        } else if last_change.elapsed() > DRAIN_STALL {
            bail!("the backlog stopped draining at {now} envelopes");
        }
        last = now;
        if window.0.elapsed() >= Duration::from_secs(10) || now == 0.0 {
            let rate = (window.1 - now) / window.0.elapsed().as_secs_f64();
            rates.push(rate);
            println!("  draining: {now:>9.0} left, {rate:>6.0} envelopes/s over the last window");
            window = (Instant::now(), now);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // The last window is short (it ends when the queue does): left out
    // unless it is the only one.
    let full = match rates.len() {
        0 | 1 => &rates[..],
        n => &rates[..n - 1],
    };
    let (min, max) = full
        .iter()
        .fold((f64::MAX, 0.0f64), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
    println!(
        "drain of {start_depth:.0}: {elapsed:.0} s, {:.0} envelopes/s overall; 10-second windows {min:.0} to {max:.0} envelopes/s",
        start_depth / elapsed
    );
    let status = home.terminate();
    if !status.success() {
        bail!("home node exited with {status}");
    }
    Ok(())
}

/// The home node's evidence outbox holds its consignments in the order it
/// received the letters: how far that is from the order of submission.
fn home_order(fed: &TestFederation, letters: &Letters, queued: usize) -> Result<()> {
    let store = estafette_relay::testkit::open_store(fed.relay(HOME));
    let arrived = store.outbox_front(usize::MAX)?;
    let mut places = Vec::with_capacity(arrived.len());
    for entry in &arrived {
        let record = Evidence::read_stored(&entry.evidence)?.record;
        // Only the queue: the probes came in when they came.
        match record.message_id.and_then(|m| letters.place.get(&m)) {
            Some(place) if *place < queued => places.push(*place),
            _ => {}
        }
    }
    // Each letter's place in the arrival order against its place in the
    // submission order (the forwarder sends up to its slots per hop at
    // once, so letters within that window may swap).
    let mut by_submission = places.clone();
    by_submission.sort_unstable();
    let mut furthest = 0usize;
    let mut beyond_window = 0usize;
    let slots = fed.relay(RELAY).config.limits.forward_concurrency_per_peer as usize;
    for (arrival, place) in places.iter().enumerate() {
        let submitted = by_submission.binary_search(place).unwrap_or(arrival);
        let moved = arrival.abs_diff(submitted);
        furthest = furthest.max(moved);
        beyond_window += usize::from(moved > slots);
    }
    println!(
        "order at the home node: {} letters; each at most {furthest} places from its place in submission order ({beyond_window} further than the {slots} slots of the hop)",
        places.len()
    );
    let listed = Instant::now();
    let inbox = store.inbox_list(&letters.big_inbox)?;
    let whole_ms = listed.elapsed().as_secs_f64() * 1e3;
    let paged = Instant::now();
    let page = store.inbox_page(
        &letters.big_inbox,
        None,
        estafette_relay::home::api::LETTERS_PAGE,
    )?;
    println!(
        "inbox of {} letters: first page ({} letters) in {:.2} ms; the whole inbox in {whole_ms:.1} ms",
        inbox.len(),
        page.letters.len(),
        paged.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}
