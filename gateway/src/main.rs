//! `estafette-gateway`: the federation's front door for agencies.
#![forbid(unsafe_code)]

// mimalloc: the nodes allocate many short-lived buffers on several threads;
// glibc's allocator cost about a tenth of the CPU under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use estafette_gateway::config::{EXAMPLE, GatewayConfig};
use estafette_gateway::{RunningGateway, registry};

/// The Estafette gateway: agencies submit signed letters over HTTPS with
/// their client certificates; the gateway routes them to citizens' inboxes
/// through the relay nodes, or to paper, and keeps the evidence.
///
///   estafette-gateway demo                                 a whole federation on loopback, letters, evidence
///   estafette-gateway init > gateway.toml                  a commented example config
///   estafette-gateway run --config gateway.toml            run the gateway
///   estafette-gateway registry import --config gateway.toml --file people.json
///   estafette-gateway report --config gateway.toml         dormant inboxes, silent inboxes, paper by reason
#[derive(Parser)]
#[command(name = "estafette-gateway", version, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build a fresh test federation, start a gateway and two relays on
    /// loopback, send letters from two agencies, print each letter's evidence.
    Demo {
        /// Build the federation here (default: a temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Keep running afterwards and print the addresses.
        #[arg(long)]
        serve: bool,
    },
    /// Print a commented example configuration (or write it with --output).
    Init {
        /// Write to this file; an existing file is never replaced.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Run the gateway. SIGTERM stops it after the commits in flight.
    Run {
        #[arg(long)]
        config: PathBuf,
    },
    /// The operator report of the running gateway (from its admin endpoint):
    /// active inboxes with unread mail and no session for --months, inboxes
    /// without a working notification channel, letters on paper by reason.
    Report {
        #[arg(long)]
        config: PathBuf,
        /// The look-back for inboxes not visited.
        #[arg(long, default_value_t = 12)]
        months: u64,
        /// Print the JSON as served.
        #[arg(long)]
        json: bool,
    },
    /// The registry of people, inboxes and consent.
    Registry {
        #[command(subcommand)]
        what: RegistryCommand,
    },
}

#[derive(Subcommand)]
enum RegistryCommand {
    /// Import people from a JSON file (for tests and demos): an array of
    /// {recipient, home_node, inbox_id, active, digital_senders, postal_address, language}.
    Import {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "estafette-gateway: {}",
                estafette_pki::report::anyhow_text(&e)
            );
            ExitCode::from(2)
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Demo { dir, serve } => {
            estafette_relay::cli::init_logging(false, "warn");
            runtime()?.block_on(estafette_gateway::demo::run(dir, serve))
        }
        Command::Init { output } => estafette_relay::cli::write_example(EXAMPLE, output.as_deref())
            .context("writing the example configuration"),
        Command::Run { config } => {
            let config = GatewayConfig::load(&config)?;
            estafette_relay::cli::init_logging(config.node.log_json, "info");
            runtime()?.block_on(async move {
                let gateway = RunningGateway::start(config).await?;
                estafette_relay::cli::wait_for_stop(&gateway.gateway.node).await?;
                gateway.shutdown().await;
                Ok(())
            })
        }
        Command::Report {
            config,
            months,
            json,
        } => {
            let config = GatewayConfig::load(&config)?;
            let admin = config
                .node
                .admin_listen
                .context("the gateway has no admin_listen in its [node] configuration")?;
            let body =
                estafette_relay::admin::local_get(admin, &format!("/report?months={months}"))
                    .with_context(|| format!("asking the running gateway at {admin}"))?;
            if json {
                println!("{body}");
            } else {
                let report: estafette_gateway::report::OperatorReport =
                    serde_json::from_str(&body).context("reading the report")?;
                print!("{}", report.text());
            }
            Ok(())
        }
        Command::Registry {
            what: RegistryCommand::Import { config, file },
        } => {
            let config = GatewayConfig::load(&config)?;
            let json = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            runtime()?.block_on(async move {
                let p = &config.node.pki;
                let root = estafette_pki::tls::load_certs(&p.root_cert)?.remove(0);
                let root_key = estafette_pki::tls::ed25519_public_key(&root)?;
                let trust = estafette_spec::TrustList::verify(
                    &std::fs::read(&p.trust_list)?,
                    &ed25519_dalek::VerifyingKey::from_bytes(&root_key)?,
                    estafette_pki::now(),
                )?;
                let metrics = std::sync::Arc::new(estafette_relay::metrics::Metrics::new());
                let store = estafette_relay::Store::open(
                    &config.node.db_path(),
                    true,
                    u64::MAX,
                    1,
                    metrics,
                )
                .with_context(|| "opening the gateway's database (stop the gateway first)")?;
                let count = registry::import(&store, &trust, &json).await?;
                println!("imported {count} people");
                Ok(())
            })
        }
    }
}
