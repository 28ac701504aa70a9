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
        usable_bytes(stat.f_blocks, stat.f_bavail, stat.f_frsize)
    }
}

/// Free bytes from a statvfs answer. A file system that reports no blocks
/// at all (some FUSE file systems, LazyFS among them) says nothing about
/// its space: none, rather than "0 free" and every write refused.
fn usable_bytes(blocks: u64, available: u64, fragment_size: u64) -> Option<u64> {
    (blocks > 0).then(|| available.saturating_mul(fragment_size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_system_without_sizes_says_nothing_and_a_full_one_says_zero() {
        assert_eq!(usable_bytes(0, 0, 512), None);
        assert_eq!(usable_bytes(1_000, 0, 4096), Some(0));
        assert_eq!(usable_bytes(1_000, 10, 4096), Some(40_960));
        assert_eq!(usable_bytes(u64::MAX, u64::MAX, 4096), Some(u64::MAX));
    }

    #[test]
    fn the_temp_dir_has_a_size() {
        let dir = tempfile::tempdir().unwrap();
        let free = DiskSpace::of(&dir.path().join("store.redb")).free_bytes();
        assert!(free.is_some_and(|f| f > 0), "{free:?}");
    }
}
