//! `estafette-relay`: run a relay node of an Estafette federation.
#![forbid(unsafe_code)]

// mimalloc: the nodes allocate many short-lived buffers on several threads;
// glibc's allocator cost about a tenth of the CPU under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use estafette_relay::admin::QueueReport;
use estafette_relay::config::{Config, EXAMPLE};
use estafette_relay::{Node, Store};

/// Run a relay node of an Estafette federation.
///
/// A relay node takes envelopes from the gateway or another node over QUIC
/// (mutual TLS 1.3), stores them on disk before it says "accepted", and
/// forwards them towards the home node named in each envelope. A home node
/// puts the letters into citizens' inboxes. Every step is signed evidence,
/// sent straight to the gateway.
///
///   estafette-relay init > relay.toml           write a commented example config
///   estafette-relay run --config relay.toml     run the node (stop with SIGTERM or Ctrl-C)
///   estafette-relay queue --config relay.toml   what is queued per destination, and why
#[derive(Parser)]
#[command(name = "estafette-relay", version, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the node. SIGTERM stops accepting, finishes the commits in flight, and exits 0.
    Run {
        /// The node's configuration file (see `init`).
        #[arg(long)]
        config: PathBuf,
    },
    /// Print a commented example configuration (or write it with --output).
    Init {
        /// Write to this file instead of standard output; an existing file is never replaced.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Show what is queued per destination: next retry and last error.
    ///
    /// Asks the running node through its admin endpoint; when the node is
    /// not running, reads its database directly.
    Queue {
        /// The node's configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "estafette-relay: {}",
                estafette_pki::report::anyhow_text(&e)
            );
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Init { output } => estafette_relay::cli::write_example(EXAMPLE, output.as_deref())
            .context("writing the example configuration"),
        Command::Run { config } => {
            let config = Config::load(&config)?;
            estafette_relay::cli::init_logging(config.log_json, "info");
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the runtime")?;
            runtime.block_on(serve(config))
        }
        Command::Queue { config, json } => {
            let config = Config::load(&config)?;
            let report = match config.admin_listen.and_then(|addr| fetch_queue(addr).ok()) {
                Some(report) => report,
                None => offline_queue(&config)?,
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_queue(&report);
            }
            Ok(())
        }
    }
}

async fn serve(config: Config) -> Result<()> {
    let node = Node::start(config).await?;
    estafette_relay::cli::wait_for_stop(&node).await?;
    node.shutdown().await;
    Ok(())
}

/// Reads the report from the running node's admin endpoint.
fn fetch_queue(addr: std::net::SocketAddr) -> Result<QueueReport> {
    let body = estafette_relay::admin::local_get(addr, "/queue")?;
    Ok(serde_json::from_str(&body)?)
}

/// Reads the report straight from the database of a stopped node.
fn offline_queue(config: &Config) -> Result<QueueReport> {
    let metrics = std::sync::Arc::new(estafette_relay::metrics::Metrics::new());
    let store = Store::open(&config.db_path(), false, u64::MAX, 1, metrics).with_context(|| {
        format!(
            "opening {} (is the node running without an admin endpoint?)",
            config.db_path().display()
        )
    })?;
    Ok(estafette_relay::admin::queue_report(
        &config.node_id,
        &store,
    )?)
}

fn print_queue(report: &QueueReport) {
    println!(
        "{}: {} envelope(s) queued, {} evidence object(s) waiting for the gateway",
        report.node, report.total, report.outbox
    );
    for d in &report.destinations {
        println!("\n  to {}: {} queued", d.destination, d.queued);
        for e in &d.entries {
            let when = if e.next_attempt_in_ms == 0 {
                "due now".to_string()
            } else {
                format!("next try in {:.1} s", e.next_attempt_in_ms as f64 / 1000.0)
            };
            println!(
                "    {}  attempts {:>3}  {}  {}",
                e.envelope_id,
                e.attempts,
                when,
                e.last_error.as_deref().unwrap_or("")
            );
        }
        if d.queued > d.entries.len() {
            println!("    ... and {} more", d.queued - d.entries.len());
        }
    }
}
