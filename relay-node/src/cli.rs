//! Pieces shared by the command-line programs of the relay and the gateway:
//! logging, `init`, `status`, `queue`, and waiting for signals.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::admin::{QueueReport, StatusReport};
use crate::config::{Config, InitValues, listen_for};

/// Targets never logged below info: they would log personal data.
pub const QUIET_TARGETS: &[&str] = &["tokio_postgres", "postgres"];

/// Logs to standard error through `tracing`: JSON lines when `json`, text
/// otherwise; `RUST_LOG` overrides the `default` filter.
pub fn init_logging(json: bool, default: &str) {
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Libraries that log what they carry at their debug level (the
    // PostgreSQL client logs every statement's parameters: BSNs, letters)
    // stay at info whatever RUST_LOG asks.
    for quiet in QUIET_TARGETS {
        if let Ok(directive) = format!("{quiet}=info").parse() {
            filter = filter.add_directive(directive);
        }
    }
    // Colours only for a person at a terminal, not in a log file or journal.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Prints an example configuration, or writes it to a new file (an existing
/// file is never replaced).
pub fn write_example(example: &str, output: Option<&Path>) -> std::io::Result<()> {
    match output {
        None => {
            print!("{example}");
            Ok(())
        }
        Some(path) => {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)?;
            file.write_all(example.as_bytes())?;
            println!("wrote {}", path.display());
            Ok(())
        }
    }
}

/// Waits for SIGTERM or Ctrl-C; on SIGHUP meanwhile, the node re-reads
/// its trust list and CRL at once.
pub async fn wait_for_stop(node: &crate::Node) -> std::io::Result<()> {
    let reload = || node.reload();
    wait_for_signals(reload).await
}

/// Waits for SIGTERM or Ctrl-C; calls `reload` on SIGHUP meanwhile.
pub async fn wait_for_signals(reload: impl Fn()) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => {
                tracing::info!("SIGTERM: stopping");
                return Ok(());
            }
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("interrupt: stopping");
                return Ok(());
            }
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: reloading the trust list and CRL");
                reload();
            }
        }
    }
}

/// What `status` takes.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// The configuration file.
    #[arg(long)]
    pub config: PathBuf,
    /// Wait up to this many seconds for the process to come up.
    #[arg(long, default_value_t = 0)]
    pub wait: u64,
    /// Print the status as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What `queue` takes.
#[derive(clap::Args, Debug)]
pub struct QueueArgs {
    /// The configuration file.
    #[arg(long)]
    pub config: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What `init` takes to fill in a configuration from a federation.
#[derive(clap::Args, Debug)]
pub struct InitArgs {
    /// Write to this file instead of standard output; an existing file is
    /// never replaced.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// The federation directory (from `estafette-pki`): fills in the node's
    /// files, and its address and roles from the trust list.
    #[arg(long, requires = "node_id")]
    pub fed: Option<PathBuf>,
    /// The node's id in the federation (with --fed).
    #[arg(long, requires = "fed")]
    pub node_id: Option<estafette_spec::NodeId>,
    /// The operator endpoint (metrics, queue, status); keep it on loopback.
    #[arg(long)]
    pub admin_listen: Option<String>,
    /// The data directory (default with --fed: data/<node id> next to the
    /// configuration file).
    #[arg(long)]
    pub data_dir: Option<String>,
}

impl InitArgs {
    /// The values of a relay node's configuration.
    pub fn relay_values(&self, citizen_listen: &str) -> Result<InitValues> {
        let mut values = InitValues::example();
        if let (Some(fed_dir), Some(id)) = (&self.fed, &self.node_id) {
            let (fed, address, home) = member_of(fed_dir, id)?;
            let fed_dir = absolute(fed.dir())?;
            values.node_id = id.to_string();
            values.listen = listen_for(&address);
            values.node_dir = format!("{fed_dir}/nodes/{id}");
            values.fed_dir = fed_dir;
            values.data_dir = format!("data/{id}");
            values.home = home;
            let port = citizen_listen.rsplit(':').next().unwrap_or("8444");
            values.public_url = format!("https://{id}:{port}");
        }
        values.citizen_listen = citizen_listen.to_owned();
        if let Some(admin) = &self.admin_listen {
            values.admin_listen = admin.clone();
        }
        if let Some(data) = &self.data_dir {
            values.data_dir = data.clone();
        }
        Ok(values)
    }
}

/// A path as an absolute string (configuration files name files absolutely
/// when they may be read from anywhere).
pub fn absolute(path: &Path) -> Result<String> {
    let path = std::fs::canonicalize(path).with_context(|| format!("{}", path.display()))?;
    Ok(path.display().to_string())
}

/// The federation, and the node's address and whether it is a home node,
/// from the trust list.
pub fn member_of(
    fed_dir: &Path,
    id: &estafette_spec::NodeId,
) -> Result<(estafette_pki::Federation, String, bool)> {
    let fed = estafette_pki::Federation::open(fed_dir)
        .with_context(|| format!("opening the federation in {}", fed_dir.display()))?;
    let trust = fed.trust_list(estafette_pki::now())?;
    let node = trust.node(id).with_context(|| {
        format!(
            "{id} is not in the trust list of {}: issue it first (estafette-pki issue node --id {id} …)",
            fed_dir.display()
        )
    })?;
    let home = node.roles.contains(&estafette_spec::NodeRole::Home);
    Ok((fed, node.address.clone(), home))
}

/// `status`: asks the running node (waiting up to `wait_s` for it), prints
/// what it says; false when it is not reachable at its trust-list address.
pub fn status(config: &Config, wait_s: u64, json: bool) -> Result<bool> {
    let admin = config
        .admin_listen
        .context("the configuration has no admin_listen: status asks the running node there")?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(wait_s);
    let report: StatusReport = loop {
        let answer = crate::admin::local_get(admin, "/status")
            .map_err(anyhow::Error::from)
            .and_then(|body| Ok(serde_json::from_str::<StatusReport>(&body)?));
        match answer {
            // Up, and done checking its address.
            Ok(r) if r.reachable_at_trust_list_address.is_some() => break r,
            Ok(r) if std::time::Instant::now() >= deadline => break r,
            Err(e) if std::time::Instant::now() >= deadline => {
                return Err(e.context(format!("the node does not answer at {admin}")));
            }
            _ => std::thread::sleep(std::time::Duration::from_millis(100)),
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}: up, listening on {}", report.node, report.listen);
        println!("  trust list version {}", report.trust_list_version);
        match (
            &report.trust_list_address,
            report.reachable_at_trust_list_address,
        ) {
            (Some(address), Some(true)) => {
                println!("  reachable at {address}, where the trust list says it is")
            }
            (Some(address), Some(false)) => println!(
                "  NOT reachable at {address}, where the trust list says it is: {}",
                report.address_problem.as_deref().unwrap_or("")
            ),
            (Some(address), None) => println!("  reachability at {address}: not checked yet"),
            (None, _) => println!("  not in the trust list"),
        }
        if let Some(citizen) = &report.citizen_api {
            println!("  citizen API and web inbox on {citizen}");
        }
        if let Some(log) = &report.public_log {
            println!("  evidence log (tiles and checkpoints, HTTPS) on {log}");
        }
        println!(
            "  {} envelope(s) queued, {} evidence object(s) waiting for the gateway",
            report.queued, report.outbox
        );
    }
    Ok(report.reachable_at_trust_list_address == Some(true))
}

/// `queue`: from the running node's admin endpoint, or from the database
/// of a stopped one.
pub fn queue(config: &Config, json: bool) -> Result<()> {
    let running = config.admin_listen.and_then(|addr| {
        let body = crate::admin::local_get(addr, "/queue").ok()?;
        serde_json::from_str::<QueueReport>(&body).ok()
    });
    let report = match running {
        Some(report) => report,
        None => {
            let metrics = std::sync::Arc::new(crate::metrics::Metrics::new());
            let store =
                crate::Store::open(&config.db_path(), u64::MAX, 1, metrics).with_context(|| {
                    format!(
                        "opening {} (is the node running without an admin endpoint?)",
                        config.db_path().display()
                    )
                })?;
            let now = estafette_spec::Clock::now_ms(&estafette_pki::SystemClock);
            crate::admin::queue_report(&config.node_id, &store, now)?
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_queue(&report);
    }
    Ok(())
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

/// What `audit` takes.
#[derive(clap::Args, Debug)]
pub struct AuditArgs {
    /// The federation's root certificate (PEM): it signs the trust list and
    /// the nodes' TLS certificates.
    #[arg(long)]
    pub root_cert: PathBuf,
    /// The signed trust list: the nodes' keys and who witnesses whom.
    #[arg(long)]
    pub trust_list: PathBuf,
    /// Where the auditor remembers the last checkpoint of each log (made
    /// if missing). Keep it: it is what the next run compares with.
    #[arg(long)]
    pub state: PathBuf,
    /// Connect to HOST:PORT at ADDR instead of resolving HOST (as curl's
    /// --resolve): `relay1.example:4433=192.0.2.7:4433`.
    #[arg(long = "resolve", value_name = "HOST:PORT=ADDR")]
    pub resolve: Vec<String>,
    /// The logs to audit: `https://<node id>:<port>`, where each node
    /// serves its log (its `log_listen`).
    #[arg(required = true, value_name = "LOG_URL")]
    pub logs: Vec<String>,
}

/// `audit`: checks each log once against what this auditor saw before;
/// prints one line per log. False when a log broke its promise.
pub fn audit(args: &AuditArgs) -> Result<bool> {
    use crate::log_audit::{AuditState, LogLocation, audit_log};
    let trust = estafette_pki::tls::read_trust_list(
        &args.root_cert,
        &args.trust_list,
        estafette_pki::now(),
    )
    .context("reading the trust list")?;
    let tls = estafette_pki::tls::web_client_config(Some(&args.root_cert), &[b"http/1.1"])?;
    let state = AuditState::open(&args.state)?;
    let mut resolved = std::collections::HashMap::new();
    for entry in &args.resolve {
        let (authority, addr) = entry
            .split_once('=')
            .with_context(|| format!("--resolve {entry}: HOST:PORT=ADDR"))?;
        let addr: std::net::SocketAddr = addr
            .parse()
            .with_context(|| format!("--resolve {entry}: {addr} is not an IP address and port"))?;
        resolved.insert(authority.to_owned(), addr);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let mut kept_promises = true;
    let mut failures = 0;
    for url in &args.logs {
        let authority = url.trim_start_matches("https://").trim_end_matches('/');
        let location = LogLocation::parse(url, resolved.get(authority).copied())?;
        match runtime.block_on(audit_log(&location, &tls, &trust, &state)) {
            Ok(report) => {
                kept_promises &= !report.finding.is_violation();
                println!("{}", report.explain());
            }
            Err(e) => {
                failures += 1;
                println!("{url}: not audited: {e}");
            }
        }
    }
    anyhow::ensure!(
        failures == 0,
        "{failures} of {} logs could not be audited",
        args.logs.len()
    );
    Ok(kept_promises)
}
