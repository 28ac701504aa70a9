//! LazyFS, the fault lab's power switch: a FUSE file system that keeps
//! written data in its own cache until fsync and drops what is not synced
//! on command. A node whose data directory lives on it can be "powered
//! off" (SIGKILL, then the unsynced data dropped) and started again.
//!
//! The sources (MIT, patched to build offline from Debian's packages) are
//! in `../shared/vendor/lazyfs/` beside the repository, or where
//! `ESTAFETTE_LAZYFS_SRC` says; the first use builds them into
//! `target/lazyfs/` with their `build.sh` (which installs the Debian build
//! dependencies it misses). A test that needs LazyFS fails, never skips,
//! when it cannot be built or mounted.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// LazyFS's own cache, allocated whole at mount. A node fsyncs each group
/// commit, so what is unsynced at any moment is far smaller; were the cache
/// to fill, LazyFS would write through and the test would look durable
/// when it is not.
pub const LAZYFS_CACHE: &str = "256mb";

/// Where the vendored LazyFS sources and scripts are.
fn sources() -> PathBuf {
    let dir = std::env::var_os("ESTAFETTE_LAZYFS_SRC").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vendor/lazyfs"),
        PathBuf::from,
    );
    assert!(
        dir.join("build.sh").exists(),
        "LazyFS sources not found at {} (set ESTAFETTE_LAZYFS_SRC to the vendored lazyfs folder)",
        dir.display()
    );
    dir
}

/// Builds LazyFS (incrementally; a no-op once built) and returns its binary.
pub fn binary() -> PathBuf {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/lazyfs");
    let built = Command::new("bash")
        .arg(sources().join("build.sh"))
        .arg(&out)
        .stderr(Stdio::inherit())
        .output()
        .expect("bash runs LazyFS's build.sh");
    assert!(
        built.status.success(),
        "LazyFS did not build: {}",
        built.status
    );
    let stdout = String::from_utf8_lossy(&built.stdout);
    let binary = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
    assert!(
        binary.exists(),
        "LazyFS's build.sh named no binary: {stdout}"
    );
    binary
}

/// A mounted LazyFS; unmounted when dropped.
pub struct LazyFs {
    mount: PathBuf,
    fifo: PathBuf,
    pid: String,
    scripts: PathBuf,
}

impl LazyFs {
    /// Mounts LazyFS at `dir/mnt`, its data kept in `dir/root`, with a
    /// cache of [`LAZYFS_CACHE`].
    pub fn mount(dir: &Path) -> LazyFs {
        Self::mount_with_cache(dir, LAZYFS_CACHE)
    }

    /// As [`Self::mount`], with a cache of `cache` (`512mb`, `1gb`).
    pub fn mount_with_cache(dir: &Path, cache: &str) -> LazyFs {
        let scripts = sources();
        let binary = binary();
        let (mount, root, fifo) = (dir.join("mnt"), dir.join("root"), dir.join("faults.fifo"));
        let mounted = Command::new("bash")
            .arg(scripts.join("mount-lazyfs.sh"))
            .args([&mount, &root, &fifo])
            .env("LAZYFS_BIN", &binary)
            .env("LAZYFS_CACHE_SIZE", cache)
            .stderr(Stdio::inherit())
            .output()
            .expect("bash runs mount-lazyfs.sh");
        let stdout = String::from_utf8_lossy(&mounted.stdout);
        assert!(
            mounted.status.success(),
            "LazyFS did not mount at {}: {} {stdout}",
            mount.display(),
            mounted.status
        );
        let pid = stdout.lines().last().unwrap_or_default().trim().to_owned();
        // Others may pass through (a PostgreSQL server runs as its own
        // user) but not list it; the nodes' data directories inside are
        // 0700, as the nodes require.
        std::fs::set_permissions(&mount, std::os::unix::fs::PermissionsExt::from_mode(0o711))
            .unwrap();
        LazyFs {
            mount,
            fifo,
            pid,
            scripts,
        }
    }

    /// The mounted directory.
    pub fn path(&self) -> &Path {
        &self.mount
    }

    /// How full LazyFS's cache is, in percent of its pages (it says so in
    /// its log when asked through its fault FIFO).
    pub fn cache_usage_percent(&self) -> f64 {
        let log = PathBuf::from(format!("{}.log", self.fifo.display()));
        let said = || -> Vec<String> {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            text.lines()
                .filter(|l| l.contains("cache usage"))
                .map(str::to_owned)
                .collect()
        };
        let before = said().len();
        let asked = Command::new("bash")
            .arg(self.scripts.join("clear-cache.sh"))
            .arg(&self.fifo)
            .arg("lazyfs::display-cache-usage")
            .status()
            .expect("bash runs clear-cache.sh");
        assert!(asked.success(), "LazyFS did not take the command: {asked}");
        let started = std::time::Instant::now();
        loop {
            let lines = said();
            if let Some(line) = lines.get(before) {
                let number = line
                    .rsplit(" is ")
                    .next()
                    .and_then(|n| n.trim().trim_end_matches('%').parse().ok());
                return number.unwrap_or_else(|| panic!("LazyFS's cache usage line: {line}"));
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "LazyFS did not say its cache usage within 10 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Drops every byte written and not yet fsynced, as a power loss would
    /// (the writer must be dead already: kill it first). Waits until done.
    /// Fails first if the cache is full: LazyFS then writes through, and
    /// the data a power loss should take would have survived. Gives the
    /// cache's usage (percent) just before.
    pub fn drop_unsynced(&self) -> f64 {
        let usage = self.cache_usage_percent();
        assert!(
            usage < 100.0,
            "LazyFS's cache is full ({usage}%): it wrote through, so this power loss would prove nothing; give it a larger cache"
        );
        let cleared = Command::new("bash")
            .arg(self.scripts.join("clear-cache.sh"))
            .arg(&self.fifo)
            .status()
            .expect("bash runs clear-cache.sh");
        assert!(
            cleared.success(),
            "LazyFS did not clear its cache: {cleared}"
        );
        usage
    }
}

impl Drop for LazyFs {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(self.scripts.join("umount-lazyfs.sh"))
            .arg(&self.mount)
            .arg(&self.pid)
            .status();
    }
}
