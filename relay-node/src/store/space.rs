//! The free space the store keeps on its file system. A write that meets a
//! full disk fails inside redb, which then refuses every later write until
//! the database is opened again; worse, what the kernel did with the pages
//! of a failed write is not known (PostgreSQL's "fsyncgate"). So the writer
//! never lets it come to that: below a reserve of free space it refuses the
//! writes that add data, with a typed, retryable error, and lets through the
//! ones that end work (forwarded, failed, delivered evidence), which is how
//! space comes back.

use std::path::{Path, PathBuf};

/// The reserve by default: a group commit writes a few MiB at most.
pub const DEFAULT_MIN_FREE_BYTES: u64 = 64 * 1024 * 1024;

/// The file system a store lives on.
pub(super) struct DiskSpace {
    dir: PathBuf,
}

impl DiskSpace {
    pub(super) fn of(db_path: &Path) -> DiskSpace {
        DiskSpace {
            dir: db_path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .to_path_buf(),
        }
    }

    /// Bytes an unprivileged writer may still use; none if the file
    /// system cannot say (then nothing is refused for space).
    pub(super) fn free_bytes(&self) -> Option<u64> {
        let stat = rustix::fs::statvfs(&self.dir).ok()?;
        Some(stat.f_bavail.saturating_mul(stat.f_frsize))
    }
}
