//! `estafette-gateway`: the federation's front door for agencies.
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
use estafette_gateway::config::{GatewayConfig, GatewayInitValues, example};
use estafette_gateway::{RunningGateway, registry};

/// The Estafette gateway: agencies submit signed letters over HTTPS with
/// their client certificates; the gateway routes them to citizens' inboxes
/// through the relay nodes, or to paper, and keeps the evidence.
///
///   estafette-gateway demo                                 a whole federation on loopback, letters, evidence
///   estafette-gateway init --fed fed --node-id gw.example > gateway.toml
///                                                          a config that agrees with the trust list
///   estafette-gateway run --config gateway.toml            run the gateway (SIGHUP re-reads trust list and CRL)
///   estafette-gateway status --config gateway.toml         is it up, and reachable where the trust list says
///   estafette-gateway queue --config gateway.toml          envelopes waiting for the first relay, and why
///   estafette-gateway registry import --config gateway.toml --file people.json
///   estafette-gateway report --config gateway.toml         dormant inboxes, silent inboxes, paper by reason
///   estafette-gateway smtp-sink --listen 127.0.0.1:2525 --dir mail
///                                                          an SMTP server that keeps mail as files (to try e-mail)
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
    /// Print a commented configuration (or write it with --output). With
    /// --fed and --node-id it is filled in from the federation: the
    /// gateway's files and its node address from the trust list.
    Init {
        #[command(flatten)]
        args: estafette_relay::cli::InitArgs,
        /// The agency API's address (HTTPS).
        #[arg(long, default_value = "0.0.0.0:8443")]
        https_listen: String,
        /// The SMTP relay host as host:port, plain SMTP (a relay host on this
        /// machine, or `smtp-sink`); without it, the example's STARTTLS relay host.
        #[arg(long)]
        smtp_plain: Option<String>,
    },
    /// Run the gateway. SIGTERM stops it after the commits in flight;
    /// SIGHUP re-reads the trust list and CRL at once.
    Run {
        #[arg(long)]
        config: PathBuf,
    },
    /// Whether the running gateway is up, and answers at the node address
    /// the trust list gives for it (relays send evidence and citizen
    /// requests there). Exits 1 when it does not.
    Status(estafette_relay::cli::StatusArgs),
    /// Envelopes waiting to be forwarded to the first relay: attempts, next
    /// retry and last error (from the running gateway, or its database).
    Queue(estafette_relay::cli::QueueArgs),
    /// An SMTP server that keeps every mail it gets as a text file in --dir
    /// (and says so on standard output): to try e-mail verification without a
    /// mail server. Plain SMTP; point [notifications] at it with tls = "none".
    SmtpSink {
        #[arg(long, default_value = "127.0.0.1:2525")]
        listen: std::net::SocketAddr,
        /// Where the mails go, one .txt file each (decoded).
        #[arg(long)]
        dir: PathBuf,
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
    /// Import people from a JSON file, all or nothing (migrations, tests,
    /// demos): an array of {recipient, home_node, inbox_id, active,
    /// digital_senders, postal_address, language, name, contact_channels};
    /// the JSON Schema is gateway/registry-import.schema.json, an example
    /// gateway/examples/people.json. Stop the gateway first.
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
        Command::Init {
            args,
            https_listen,
            smtp_plain,
        } => {
            let values = gateway_values(&args, https_listen, smtp_plain)?;
            estafette_relay::cli::write_example(&example(&values), args.output.as_deref())
                .context("writing the configuration")
        }
        Command::Status(a) => {
            let config = GatewayConfig::load(&a.config)?;
            if !estafette_relay::cli::status(&config.node, a.wait, a.json)? {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Queue(a) => {
            estafette_relay::cli::queue(&GatewayConfig::load(&a.config)?.node, a.json)
        }
        Command::SmtpSink { listen, dir } => runtime()?.block_on(smtp_sink(listen, dir)),
        Command::Run { config } => {
            let config = GatewayConfig::load(&config)?;
            estafette_relay::cli::init_logging(config.node.log_json, "info");
            estafette_relay::open_files::raise_for(config.agency_api.max_connections as u64);
            runtime()?.block_on(async move {
                let gateway = RunningGateway::start(config).await?;
                estafette_relay::cli::wait_for_signals(|| gateway.reload()).await?;
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
        } => registry_import(&config, &file),
    }
}

/// `registry import`: people into the registry; on PostgreSQL while the
/// gateway's instances run (one transaction, like any change), on redb
/// into the database of a stopped gateway.
fn registry_import(config: &std::path::Path, file: &std::path::Path) -> Result<()> {
    let config = GatewayConfig::load(config)?;
    let json =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let p = &config.node.pki;
    let trust =
        estafette_pki::tls::read_trust_list(&p.root_cert, &p.trust_list, estafette_pki::now())?;
    let runtime = runtime()?;
    let records: Box<dyn estafette_gateway::store::Records> = match config.store.backend {
        estafette_gateway::config::StoreBackend::Redb => Box::new(
            estafette_gateway::store::RedbRecords::open_offline(
                &config.node.db_path(),
                config.node.limits.store_cache_bytes(),
            )
            .with_context(|| "opening the gateway's database (stop the gateway first)")?,
        ),
        estafette_gateway::config::StoreBackend::Postgres => {
            let url = config.store.postgres_url().map_err(anyhow::Error::msg)?;
            Box::new(
                runtime
                    .block_on(estafette_gateway::store::PgRecords::connect(&url, 1))
                    .with_context(|| "connecting to the gateway's database")?,
            )
        }
    };
    let count = runtime
        .block_on(registry::import(&*records, &trust, &json))
        .with_context(|| {
            format!(
                "{} was not imported (nothing was written); its format is \
                 gateway/registry-import.schema.json, with an example in \
                 gateway/examples/people.json",
                file.display()
            )
        })?;
    println!("imported {count} people");
    Ok(())
}

/// The values of `init`, from the federation when given.
fn gateway_values(
    args: &estafette_relay::cli::InitArgs,
    https_listen: String,
    smtp_plain: Option<String>,
) -> Result<GatewayInitValues> {
    let mut values = GatewayInitValues {
        https_listen,
        ..GatewayInitValues::example()
    };
    if let (Some(fed_dir), Some(id)) = (&args.fed, &args.node_id) {
        let fed = estafette_pki::Federation::open(fed_dir)
            .with_context(|| format!("opening the federation in {}", fed_dir.display()))?;
        let trust = fed.trust_list(estafette_pki::now())?;
        let gateway = trust.gateway().filter(|g| &g.id == id).with_context(|| {
            format!(
                "{id} is not the gateway in the trust list of {}",
                fed_dir.display()
            )
        })?;
        let fed_path = estafette_relay::cli::absolute(fed.dir())?;
        values.node_id = id.to_string();
        values.node_listen = estafette_relay::config::listen_for(&gateway.address);
        values.node_dir = format!("{fed_path}/nodes/{id}");
        values.fed_dir = fed_path;
        values.data_dir = format!("data/{id}");
    }
    if let Some(admin) = &args.admin_listen {
        values.admin_listen = admin.clone();
    }
    if let Some(data) = &args.data_dir {
        values.data_dir = data.clone();
    }
    if let Some(smtp) = smtp_plain {
        let (host, port) = smtp
            .rsplit_once(':')
            .context("--smtp-plain takes host:port")?;
        values.smtp_host = host.to_owned();
        values.smtp_port = port.parse().context("--smtp-plain: the port is a number")?;
        values.smtp_tls = "none";
    }
    Ok(values)
}

/// `smtp-sink`: keeps every mail as a file until stopped.
async fn smtp_sink(listen: std::net::SocketAddr, dir: PathBuf) -> Result<()> {
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let sink = estafette_gateway::smtp_sink::SmtpSink::start_with(
        listen,
        estafette_gateway::smtp_sink::SinkOptions::default(),
    )
    .await
    .with_context(|| format!("listening on {listen}"))?;
    println!(
        "SMTP sink listening on {}; mail goes to {}",
        sink.addr,
        dir.display()
    );
    let mut written = 0;
    loop {
        let wait = sink.wait_for(std::time::Duration::from_secs(3600), |m| m.len() > written);
        let mails = tokio::select! {
            m = wait => m.unwrap_or_else(|m| m),
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        for mail in mails.iter().skip(written) {
            written += 1;
            // Decoded, for people to read (and copy a link from).
            let path = dir.join(format!("{written:06}.txt"));
            let text = format!(
                "To: {}\nSubject: {}\n\n{}",
                mail.to.join(", "),
                mail.subject,
                mail.body
            );
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            println!(
                "{}: to {} \"{}\"",
                path.display(),
                mail.to.join(", "),
                mail.subject
            );
        }
    }
}
