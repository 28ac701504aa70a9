//! Pieces shared by the command-line programs of the relay and the gateway.

use std::io::Write;
use std::path::Path;

/// Logs to standard error through `tracing`: JSON lines when `json`, text
/// otherwise; `RUST_LOG` overrides the `default` filter.
pub fn init_logging(json: bool, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
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
