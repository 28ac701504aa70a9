//! `estafette-relay-load`: how many envelopes one relay node accepts per
//! second, and how long each acknowledgement takes, with fsync on.
//!
//! Builds a throwaway federation, starts one real `estafette-relay` process
//! (the binary next to this one) as a transit node, and offers it signed
//! envelopes with 1 KiB letters from many concurrent QUIC streams, as the
//! gateway would. Run it from a release build:
//!
//!     cargo run --release -p estafette-relay --bin estafette-relay-load
#![forbid(unsafe_code)]
// No function over about 80 lines (clippy.toml): a long one reads as named steps.
#![warn(clippy::too_many_lines)]

// mimalloc: the nodes allocate many short-lived buffers on several threads;
// glibc's allocator cost about a tenth of the CPU under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use estafette_pki::NodeKind;
use estafette_relay::config::Limits;
use estafette_relay::testkit::{
    RelayProcess, TestFederation, metric, random_inbox, relay_binary, resident_kib,
};
use estafette_relay::transport::{Peers, TlsMaterial, endpoint};
use estafette_spec::NodeId;
use estafette_spec::relay::{Offer, Request, Response};

/// Measure one relay node: accepted envelopes/s and acknowledgement latency.
#[derive(Parser)]
#[command(name = "estafette-relay-load", version)]
struct Args {
    /// Envelopes to offer.
    #[arg(long, default_value_t = 20_000)]
    envelopes: usize,
    /// Offers in flight at once (concurrent QUIC streams).
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Size of each letter's body, in bytes.
    #[arg(long, default_value_t = 1024)]
    payload_bytes: usize,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// A relay process under test, and what its offers need.
struct Target {
    fed: TestFederation,
    process: RelayProcess,
    relay_id: NodeId,
    relay_addr: String,
    admin: std::net::SocketAddr,
}

/// Starts the relay (its home node is not started: the relay only accepts
/// and queues, and tries to forward rarely, measuring acceptance, not the
/// next hop).
fn start_relay() -> Result<Target> {
    let relay_binary = relay_binary()?;
    let mut fed = TestFederation::new(
        &[
            ("bench-relay.test", NodeKind::Transit),
            ("bench-home.test", NodeKind::Home),
        ],
        &["bench-relay.test", "bench-home.test"],
    );
    let relay = fed
        .relays
        .iter_mut()
        .find(|n| n.id.as_str() == "bench-relay.test")
        .context("relay")?;
    relay.config.retry.base_ms = 60_000;
    relay.config.retry.cap_ms = 600_000;
    relay.save();
    let relay = fed.relay("bench-relay.test");
    let (relay_id, relay_addr, admin) = (
        relay.id.clone(),
        relay.config.listen.to_string(),
        relay.config.admin_listen.context("admin")?,
    );
    let process = RelayProcess::start(&relay_binary, relay);
    Ok(Target {
        fed,
        process,
        relay_id,
        relay_addr,
        admin,
    })
}

/// Offers every envelope, `concurrency` at once: how many were accepted,
/// and each acknowledgement's latency.
async fn offer_all(
    peers: Arc<Peers>,
    target: &Target,
    envelopes: Vec<Vec<u8>>,
    concurrency: usize,
) -> Result<(usize, Vec<Duration>)> {
    let slots = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    for envelope in envelopes {
        let permit = slots.clone().acquire_owned().await?;
        let peers = peers.clone();
        let (id, addr) = (target.relay_id.clone(), target.relay_addr.clone());
        tasks.spawn(async move {
            let sent = Instant::now();
            let offer = Request::Offer(Offer {
                hops_taken: 0,
                previous_evidence: None,
                envelope,
            });
            let answer = peers.request(&id, &addr, &offer).await;
            drop(permit);
            (matches!(answer, Ok(Response::Accepted(_))), sent.elapsed())
        });
    }
    let mut latencies = Vec::new();
    let mut accepted = 0usize;
    while let Some(done) = tasks.join_next().await {
        let (ok, latency) = done?;
        accepted += usize::from(ok);
        latencies.push(latency);
    }
    latencies.sort();
    Ok((accepted, latencies))
}

/// The relay's group commit over the run, from its metrics before and after.
fn print_commits(before: &str, after: &str) {
    let delta = |name: &str| metric(after, name) - metric(before, name);
    let commits = delta("estafette_relay_commit_batch_size_count");
    if commits > 0.0 {
        println!(
            "group commit: {commits:.0} transactions (one fsync each), {:.1} writes per transaction, {:.2} ms per commit",
            delta("estafette_relay_commit_batch_size_sum") / commits,
            delta("estafette_relay_commit_seconds_sum") / commits * 1e3
        );
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let mut target = start_relay()?;
    println!(
        "preparing {} envelopes with {}-byte letters ...",
        args.envelopes, args.payload_bytes
    );
    let body = "x".repeat(args.payload_bytes);
    let inbox = random_inbox();
    let envelopes: Vec<Vec<u8>> = (0..args.envelopes)
        .map(|_| target.fed.envelope("bench-home.test", inbox, &body).0)
        .collect();
    let envelope_bytes = envelopes.first().map(|e| e.len()).unwrap_or(0);
    let fed = &target.fed.fed;
    let dir = fed.node_dir(&"gateway.test".parse()?);
    let material = TlsMaterial::from_dir(&dir, &fed.root_cert_path(), &fed.crl_path())?;
    let client = endpoint("127.0.0.1:0".parse()?, &material, &Limits::default())?;
    let peers = Arc::new(Peers::new(client, Duration::from_secs(60)));
    // Warm up the connection.
    let _ = peers
        .request(
            &target.relay_id,
            &target.relay_addr,
            &Request::Evidence(vec![]),
        )
        .await;
    let metrics_before = estafette_relay::admin::local_get(target.admin, "/metrics")?;
    let started = Instant::now();
    let (accepted, latencies) = offer_all(peers, &target, envelopes, args.concurrency).await?;
    let elapsed = started.elapsed();
    let metrics_after = estafette_relay::admin::local_get(target.admin, "/metrics")?;
    println!(
        "one relay node, fsync on, {} in flight, envelopes of {envelope_bytes} bytes",
        args.concurrency
    );
    println!(
        "accepted {accepted} of {} in {:.2} s: {:.0} envelopes/s",
        args.envelopes,
        elapsed.as_secs_f64(),
        accepted as f64 / elapsed.as_secs_f64()
    );
    println!(
        "acknowledgement latency: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    print_commits(&metrics_before, &metrics_after);
    // Nothing leaves: the home node is not running, so all of it waits.
    if let Some(kib) = resident_kib(target.process.child.id()) {
        println!(
            "relay resident memory with {accepted} envelopes queued: {:.0} MiB ({:.0} bytes per queued envelope over all)",
            kib as f64 / 1024.0,
            kib as f64 * 1024.0 / accepted.max(1) as f64
        );
    }
    let status = target.process.terminate();
    if !status.success() {
        bail!("relay exited with {status}");
    }
    if accepted != args.envelopes {
        bail!("{} offers were not accepted", args.envelopes - accepted);
    }
    Ok(())
}
