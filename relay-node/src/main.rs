//! `estafette-relay`: run a relay node of an Estafette federation.
#![forbid(unsafe_code)]
// No function over about 80 lines (clippy.toml): a long one reads as named steps.
#![warn(clippy::too_many_lines)]

// mimalloc: the nodes allocate many short-lived buffers on several threads;
// glibc's allocator cost about a tenth of the CPU under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use estafette_relay::RunningNode;
use estafette_relay::cli::{AuditArgs, InitArgs, QueueArgs, StatusArgs};
use estafette_relay::config::{Config, example};

/// Run a relay node of an Estafette federation.
///
/// A relay node takes envelopes from the gateway or another node over QUIC
/// (mutual TLS 1.3), stores them on disk before it says "accepted", and
/// forwards them towards the home node named in each envelope. A home node
/// puts the letters into citizens' inboxes. Every step is signed evidence,
/// sent straight to the gateway.
///
///   estafette-relay init --fed fed --node-id relay1.example > relay.toml
///                                               a config that agrees with the trust list
///   estafette-relay run --config relay.toml     run the node (stop with SIGTERM or Ctrl-C;
///                                               SIGHUP re-reads the trust list and CRL)
///   estafette-relay status --config relay.toml  is it up, and reachable where the trust list says
///   estafette-relay queue --config relay.toml   what is queued per destination, and why
///   estafette-relay audit --root-cert ca.crt.pem --trust-list trust-list.cose \
///       --state audit/ https://relay1.example:4433   has each node's evidence log only grown
#[derive(Parser)]
#[command(name = "estafette-relay", version, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the node. SIGTERM stops accepting, finishes the commits in flight,
    /// and exits 0; SIGHUP re-reads the trust list and CRL at once.
    Run {
        /// The node's configuration file (see `init`).
        #[arg(long)]
        config: PathBuf,
    },
    /// Print a commented configuration (or write it with --output). With
    /// --fed and --node-id it is filled in from the federation: the node's
    /// files, its address and its roles from the trust list (a home node
    /// gets its HPKE key and a [citizen] section, a transit node neither).
    Init {
        #[command(flatten)]
        args: InitArgs,
        /// Where the citizen API listens (home nodes).
        #[arg(long, default_value = "0.0.0.0:8444")]
        citizen_listen: String,
    },
    /// Whether the running node is up, where it listens, and whether it
    /// answers at the address the trust list gives for it (peers send there).
    /// Exits 1 when it does not.
    Status(StatusArgs),
    /// Show what is queued per destination: next retry and last error.
    ///
    /// Asks the running node through its admin endpoint; when the node is
    /// not running, reads its database directly.
    Queue(QueueArgs),
    /// Audit nodes' evidence logs: check each one's newest checkpoint
    /// against the trust list and against the last one this auditor saw,
    /// with a consistency proof read from the log's tiles, and remember it.
    /// Exits 1 when a log showed two histories (a split view), lost records,
    /// or rewrote its history; run it regularly (cron) with the same --state.
    Audit(AuditArgs),
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!(
                "estafette-relay: {}",
                estafette_pki::report::anyhow_text(&e)
            );
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<bool> {
    match cli.command {
        Command::Init {
            args,
            citizen_listen,
        } => {
            let values = args.relay_values(&citizen_listen)?;
            estafette_relay::cli::write_example(&example(&values), args.output.as_deref())
                .context("writing the configuration")?;
            Ok(true)
        }
        Command::Run { config } => {
            let config = Config::load(&config)?;
            estafette_relay::cli::init_logging(config.log_json, "info");
            let citizen_connections = config.citizen.as_ref().map_or(0, |_| {
                estafette_relay::https::HttpsLimits::citizen().max_connections as u64
            });
            estafette_relay::open_files::raise_for(citizen_connections);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the runtime")?;
            runtime.block_on(serve(config))?;
            Ok(true)
        }
        Command::Status(a) => {
            estafette_relay::cli::status(&Config::load(&a.config)?, a.wait, a.json)
        }
        Command::Audit(a) => estafette_relay::cli::audit(&a),
        Command::Queue(a) => {
            estafette_relay::cli::queue(&Config::load(&a.config)?, a.json)?;
            Ok(true)
        }
    }
}

async fn serve(config: Config) -> Result<()> {
    let node = RunningNode::start(config).await?;
    estafette_relay::cli::wait_for_stop(&node).await?;
    node.shutdown().await;
    Ok(())
}
