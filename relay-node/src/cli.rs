//! Pieces shared by the command-line programs of the relay and the gateway.

use std::io::Write;
use std::path::Path;

/// Logs to standard error through `tracing`: JSON lines when `json`, text
/// otherwise; `RUST_LOG` overrides the `default` filter.
pub fn init_logging(json: bool, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
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
                node.reload();
            }
        }
    }
}
