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
    /// Mounts LazyFS at `dir/mnt`, its data kept in `dir/root`.
    pub fn mount(dir: &Path) -> LazyFs {
        let scripts = sources();
        let binary = binary();
        let (mount, root, fifo) = (dir.join("mnt"), dir.join("root"), dir.join("faults.fifo"));
        let mounted = Command::new("bash")
            .arg(scripts.join("mount-lazyfs.sh"))
            .args([&mount, &root, &fifo])
            .env("LAZYFS_BIN", &binary)
            .env("LAZYFS_CACHE_SIZE", LAZYFS_CACHE)
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
        // The nodes refuse a data directory others can read.
        std::fs::set_permissions(&mount, std::os::unix::fs::PermissionsExt::from_mode(0o700))
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

    /// Drops every byte written and not yet fsynced, as a power loss would
    /// (the writer must be dead already: kill it first). Waits until done.
    pub fn drop_unsynced(&self) {
        let cleared = Command::new("bash")
            .arg(self.scripts.join("clear-cache.sh"))
            .arg(&self.fifo)
            .status()
            .expect("bash runs clear-cache.sh");
        assert!(
            cleared.success(),
            "LazyFS did not clear its cache: {cleared}"
        );
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
