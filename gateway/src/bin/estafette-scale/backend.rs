//! Where a part keeps the gateway's records: redb in a temp dir, or a
//! PostgreSQL server of the bench's own.

use std::sync::Arc;

use anyhow::Result;
use estafette_gateway::store::test_postgres::TestPostgres;
use estafette_gateway::store::{PgRecords, Records, RedbRecords};

/// Which backend holds the records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    Redb,
    Postgres,
}

/// A backend as the bench was told to set it up.
#[derive(Clone, Copy)]
pub struct Chosen {
    pub backend: Backend,
    /// The store's cache in MiB: redb's page cache (the gateway's
    /// `limits.store_cache_mib`, 16 when not given) or PostgreSQL's
    /// `shared_buffers` (its own default, 128 MiB, when not given).
    pub cache_mib: Option<u64>,
}

/// redb's page cache when none is given (the gateway's default).
const REDB_DEFAULT_CACHE_MIB: u64 = 16;

impl Chosen {
    pub fn new(backend: Backend, cache_mib: Option<u64>) -> Chosen {
        Chosen { backend, cache_mib }
    }
}

impl std::fmt::Debug for Chosen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.backend {
            Backend::Redb => write!(
                f,
                "Redb (page cache {} MiB)",
                self.cache_mib.unwrap_or(REDB_DEFAULT_CACHE_MIB)
            ),
            Backend::Postgres => match self.cache_mib {
                Some(mib) => write!(f, "Postgres (shared_buffers {mib} MiB)"),
                None => write!(f, "Postgres (shared_buffers at its default)"),
            },
        }
    }
}

/// The records of one run, and what keeps them alive.
pub struct Opened {
    pub records: Arc<dyn Records>,
    pub dir: Option<tempfile::TempDir>,
    pub server: Option<TestPostgres>,
}

pub async fn open(chosen: Chosen) -> Result<Opened> {
    Ok(match chosen.backend {
        Backend::Redb => {
            let dir = tempfile::tempdir()?;
            // The store refuses a directory others can read.
            std::fs::set_permissions(
                dir.path(),
                std::os::unix::fs::PermissionsExt::from_mode(0o700),
            )?;
            let cache_bytes = estafette_relay::config::Limits {
                store_cache_mib: chosen.cache_mib.unwrap_or(REDB_DEFAULT_CACHE_MIB),
                ..Default::default()
            }
            .store_cache_bytes();
            let records = RedbRecords::open_offline(&dir.path().join("gateway.redb"), cache_bytes)?;
            Opened {
                records: Arc::new(records),
                dir: Some(dir),
                server: None,
            }
        }
        Backend::Postgres => {
            let settings = chosen
                .cache_mib
                .map_or(String::new(), |mib| format!("shared_buffers = {mib}MB\n"));
            let server = TestPostgres::start(&settings);
            let records = PgRecords::connect(&server.url(), 4).await?;
            Opened {
                records: Arc::new(records),
                dir: None,
                server: Some(server),
            }
        }
    })
}

impl Opened {
    /// The records' size on disk, in bytes.
    pub fn size_bytes(&self) -> Result<u64> {
        if let Some(server) = &self.server {
            return Ok(server.number("SELECT pg_database_size('postgres')").max(0) as u64);
        }
        match &self.dir {
            Some(dir) => Ok(std::fs::metadata(dir.path().join("gateway.redb"))?.len()),
            None => Ok(0),
        }
    }
}
