//! A PostgreSQL server of its own for a test: `initdb` into a temporary
//! directory, `pg_ctl start` on a free loopback port, stopped and removed
//! on drop. Run as root, the cluster belongs to `nobody` (PostgreSQL
//! refuses to run as root). Needs PostgreSQL's server binaries (Debian's
//! `postgresql`, installed by `scripts/test`); a test that needs them fails
//! loudly without them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Longest wait for the server to accept connections.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The uid and gid the cluster runs as when the test runs as root.
const NOBODY: u32 = 65534;

/// Settings of a primary whose commits wait for a synchronous standby named
/// `standby` (an acknowledged commit is on two servers).
pub const REPLICATED_PRIMARY: &str = "wal_level = replica\nmax_wal_senders = 4\nsynchronous_commit = on\nsynchronous_standby_names = 'standby'\n";

/// One running cluster; stopped (immediate shutdown) and deleted on drop.
pub struct TestPostgres {
    /// The socket, the log, and (unless placed elsewhere) the data.
    dir: tempfile::TempDir,
    data: PathBuf,
    bin: PathBuf,
    pub port: u16,
}

/// The directory of PostgreSQL's server programs.
fn bin_dir() -> PathBuf {
    let found = std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").exists())
        .max();
    found.unwrap_or_else(|| {
        panic!("PostgreSQL's server binaries (initdb, pg_ctl) are missing: scripts/test installs Debian's postgresql")
    })
}

fn is_root() -> bool {
    // The owner of /proc/self is the effective user.
    std::os::unix::fs::MetadataExt::uid(
        &std::fs::metadata("/proc/self").unwrap_or_else(|e| panic!("reading /proc/self: {e}")),
    ) == 0
}

impl TestPostgres {
    /// Starts a fresh cluster with `settings` appended to its
    /// postgresql.conf (`fsync` stays on).
    pub fn start(settings: &str) -> TestPostgres {
        Self::start_in(None, settings)
    }

    /// As [`Self::start`], with the data directory at `data` (missing or
    /// empty, on the file system under test), the socket and the log still
    /// in a temp dir.
    pub fn start_with_data_at(data: &Path, settings: &str) -> TestPostgres {
        Self::start_in(Some(data), settings)
    }

    fn start_in(data: Option<&Path>, settings: &str) -> TestPostgres {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("estafette-pg-")
            .tempdir()
            .unwrap_or_else(|e| panic!("a temp dir for PostgreSQL: {e}"));
        let data = data.map_or_else(|| dir.path().join("data"), Path::to_path_buf);
        std::fs::create_dir_all(&data)
            .unwrap_or_else(|e| panic!("creating {}: {e}", data.display()));
        if is_root() {
            chown_all(dir.path());
            chown_all(&data);
        }
        let port = free_port();
        let pg = TestPostgres {
            dir,
            data: data.clone(),
            bin,
            port,
        };
        pg.run(
            "initdb",
            &[
                "-D",
                &data.display().to_string(),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-instructions",
            ],
        );
        let conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\nmax_connections = 100\n{settings}\n",
            pg.dir.path().display()
        );
        append(&data.join("postgresql.conf"), &conf);
        pg.pg_ctl_start();
        pg.wait_ready();
        pg
    }

    /// Starts the server again after [`Self::kill`] (it recovers from its
    /// write-ahead log) and waits until it listens.
    pub fn start_again(&self) {
        self.pg_ctl_start();
        self.wait_ready();
    }

    fn pg_ctl_start(&self) {
        let data = &self.data;
        self.run(
            "pg_ctl",
            &[
                "-D",
                &data.display().to_string(),
                "-l",
                &self.dir.path().join("server.log").display().to_string(),
                "-w",
                "-t",
                &START_TIMEOUT.as_secs().to_string(),
                "start",
            ],
        );
    }

    /// A standby of this server named `name`, streaming from it
    /// (`pg_basebackup -R` into a temp dir of its own, on a free port):
    /// with [`REPLICATED_PRIMARY`] settings on this one, a synchronous one.
    pub fn standby(&self, name: &str) -> TestPostgres {
        let dir = tempfile::Builder::new()
            .prefix("estafette-pg-standby-")
            .tempdir()
            .unwrap_or_else(|e| panic!("a temp dir for PostgreSQL: {e}"));
        if is_root() {
            chown_all(dir.path());
        }
        let data = dir.path().join("data");
        let port = free_port();
        let pg = TestPostgres {
            data: data.clone(),
            dir,
            bin: self.bin.clone(),
            port,
        };
        pg.run(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-D",
                &data.display().to_string(),
                "-X",
                "stream",
                "-R",
            ],
        );
        // postgresql.auto.conf is read last: what is appended there wins.
        // Promoted, it stands alone: its commits wait for no standby.
        let conf = format!(
            "\nport = {port}\nunix_socket_directories = '{}'\nprimary_conninfo = 'host=127.0.0.1 port={} user=postgres application_name={name}'\n\
             synchronous_standby_names = ''\n",
            pg.dir.path().display(),
            self.port
        );
        append(&data.join("postgresql.auto.conf"), &conf);
        pg.pg_ctl_start();
        pg.wait_ready();
        pg
    }

    /// Waits until a synchronous standby streams from this server.
    pub fn wait_for_sync_standby(&self) {
        let started = Instant::now();
        loop {
            let streaming = self
                .on_own_thread(|c| {
                    c.query_one(
                        "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'",
                        &[],
                    )
                    .map(|row| row.get::<_, i64>(0) > 0)
                })
                .unwrap_or(false);
            if streaming {
                return;
            }
            assert!(
                started.elapsed() < START_TIMEOUT,
                "no synchronous standby within {START_TIMEOUT:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `statements` (one or more, `;`-separated, in one transaction)
    /// as the superuser.
    pub fn execute(&self, statements: &str) {
        let sql = statements.to_owned();
        self.on_own_thread(move |c| c.batch_execute(&sql))
            .unwrap_or_else(|e| panic!("running {statements:?}: {e:?}"));
    }

    /// The one number `query` gives (a count, say).
    pub fn number(&self, query: &str) -> i64 {
        let sql = query.to_owned();
        self.on_own_thread(move |c| c.query_one(&sql, &[]).map(|row| row.get::<_, i64>(0)))
            .unwrap_or_else(|e| panic!("running {query:?}: {e:?}"))
    }

    /// `job` on a connection of its own, on a thread of its own: the
    /// blocking client must not run inside the test's async runtime.
    fn on_own_thread<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut postgres::Client) -> Result<T, postgres::Error> + Send + 'static,
    ) -> Result<T, postgres::Error> {
        let url = self.url();
        std::thread::spawn(move || {
            postgres::Client::connect(&url, postgres::NoTls).and_then(|mut c| job(&mut c))
        })
        .join()
        .unwrap_or_else(|_| panic!("the SQL thread panicked"))
    }

    /// Kills the server as a crash would (immediate shutdown).
    pub fn kill(&self) {
        let data = self.data.display().to_string();
        self.run("pg_ctl", &["-D", &data, "-m", "immediate", "stop"]);
    }

    /// Promotes a standby to primary, waiting until it takes writes.
    pub fn promote(&self) {
        let data = self.data.display().to_string();
        self.run("pg_ctl", &["-D", &data, "-w", "promote"]);
    }

    /// A libpq-style connection string for database `postgres`.
    pub fn url(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }

    /// The connection string to this server over its Unix socket (for a
    /// client on the same machine).
    pub fn socket_url(&self) -> String {
        format!(
            "host={} port={} user=postgres dbname=postgres",
            self.dir.path().display(),
            self.port
        )
    }

    /// The postmaster's process id, from its pid file.
    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.data.join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// The server's log, for a failure's reader.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        let mut command = Command::new(self.bin.join(program));
        command.args(args).current_dir(self.dir.path());
        if is_root() {
            std::os::unix::process::CommandExt::uid(&mut command, NOBODY);
            std::os::unix::process::CommandExt::gid(&mut command, NOBODY);
        }
        let out = command
            .output()
            .unwrap_or_else(|e| panic!("running {program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        out
    }

    fn wait_ready(&self) {
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < START_TIMEOUT,
                "PostgreSQL did not listen on {} within {START_TIMEOUT:?}:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let data = &self.data;
        let mut command = Command::new(self.bin.join("pg_ctl"));
        command
            .args(["-D", &data.display().to_string(), "-m", "immediate", "stop"])
            .current_dir(self.dir.path());
        if is_root() {
            std::os::unix::process::CommandExt::uid(&mut command, NOBODY);
            std::os::unix::process::CommandExt::gid(&mut command, NOBODY);
        }
        let _ = command.output();
    }
}

fn chown_all(dir: &Path) {
    std::os::unix::fs::chown(dir, Some(NOBODY), Some(NOBODY))
        .unwrap_or_else(|e| panic!("chown {}: {e}", dir.display()));
}

fn append(path: &Path, text: &str) {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // Synced, as a configuration file written long ago is: a power-loss
    // test must not lose the server's port with its unsynced data.
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// A TCP port free on 127.0.0.1 right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("a free port: {e}"))
}

/// The environment variable that chooses the backend the gateway's test
/// suites run on: `redb` (the default) or `postgres`. `scripts/test` runs
/// the suites once with each.
pub const TEST_STORE_VAR: &str = "ESTAFETTE_TEST_STORE";

/// The store of a test's gateway: the settings to put in its
/// configuration and, for PostgreSQL, the server of the test's own (kept
/// running as long as this value lives).
pub struct TestStore {
    pub settings: crate::config::StoreSettings,
    pub server: Option<TestPostgres>,
}

impl TestStore {
    /// The backend [`TEST_STORE_VAR`] names; a value it does not know
    /// fails the test rather than quietly testing redb.
    pub fn from_env() -> TestStore {
        match std::env::var(TEST_STORE_VAR).as_deref() {
            Err(_) | Ok("") | Ok("redb") => TestStore {
                settings: crate::config::StoreSettings::default(),
                server: None,
            },
            Ok("postgres") => Self::postgres(),
            Ok(other) => panic!("{TEST_STORE_VAR}={other}: it must be redb or postgres"),
        }
    }

    /// A PostgreSQL server of the test's own.
    pub fn postgres() -> TestStore {
        let server = TestPostgres::start("");
        TestStore {
            settings: crate::config::StoreSettings {
                backend: crate::config::StoreBackend::Postgres,
                url: Some(server.url()),
                connections: Some(4),
                ..Default::default()
            },
            server: Some(server),
        }
    }

    /// The `[store]` section of a configuration file with these settings.
    pub fn toml_section(&self) -> String {
        match &self.settings.url {
            Some(url) => {
                format!("[store]\nbackend = \"postgres\"\nurl = \"{url}\"\nconnections = 4\n")
            }
            None => String::new(),
        }
    }
}
