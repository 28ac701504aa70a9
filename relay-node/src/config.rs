//! The node's configuration file (TOML). `estafette-relay init` writes
//! [`example`], a commented example; every limit has a default here.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use estafette_spec::NodeId;
use estafette_spec::relay::RetryPolicy;
use serde::{Deserialize, Serialize};

/// Why a configuration is refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {field} must be {rule}")]
    Invalid {
        path: PathBuf,
        field: &'static str,
        rule: &'static str,
    },
}

/// The directory a configuration file's relative paths start from.
pub fn config_dir(file: &Path) -> PathBuf {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// `path` relative to `base`, unless it is absolute.
pub fn resolve(base: &Path, path: &mut PathBuf) {
    if path.is_relative() {
        *path = base.join(&*path);
    }
}

/// A relay node's configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This node's id: must match its certificate and the trust list.
    pub node_id: NodeId,
    /// UDP address for QUIC.
    pub listen: SocketAddr,
    /// Directory of the node's database (created if missing).
    pub data_dir: PathBuf,
    /// Local address of the operator's HTTP endpoint: `/metrics`
    /// (Prometheus) and `/queue` (JSON). Keep it on loopback.
    pub admin_listen: Option<SocketAddr>,
    /// TCP address where the node serves its evidence log, read-only over
    /// HTTPS (tiles of hashes and checkpoints, for auditors): usually the
    /// node address's port, which QUIC uses over UDP.
    #[serde(default)]
    pub log_listen: Option<SocketAddr>,
    /// Log lines as JSON objects instead of text.
    #[serde(default)]
    pub log_json: bool,
    pub pki: PkiPaths,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default = "default_retry")]
    pub retry: RetryPolicy,
    /// The citizen API (home role): HTTPS for the inbox, sessions, consent.
    #[serde(default)]
    pub citizen: Option<CitizenApiConfig>,
}

/// Where and how a home node serves its citizens.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CitizenApiConfig {
    /// TCP address of the citizen API (HTTPS, server TLS only).
    pub listen: SocketAddr,
    /// The address people use (links in e-mails); default `https://<listen>`.
    pub public_url: Option<String>,
    /// A certificate for the public name (web PKI); default the node's own.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Test federations only: an identity provider whose key this node
    /// holds, so that the web login page can log test people in.
    #[serde(default)]
    pub test_idp: Option<TestIdpConfig>,
    /// OpenID providers people log in with (`[[citizen.oidc]]`): national
    /// logins, foreign providers, eIDAS bridges. Each must be in the trust
    /// list with a client id for this node.
    #[serde(default)]
    pub oidc: Vec<OidcClientConfig>,
    /// Logins with an EU Digital Identity Wallet's PID (`[citizen.wallet]`),
    /// offered while the trust list has a PID provider. Requests are signed
    /// with the node's TLS key (Ed25519 or ECDSA P-256).
    #[serde(default)]
    pub wallet: Option<WalletConfig>,
}

/// This node as an OpenID4VP verifier.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalletConfig {
    /// Roots for the PID providers' status list servers (PEM); default the
    /// system's.
    pub status_ca_file: Option<PathBuf>,
}

/// This node as a client of one OpenID provider.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcClientConfig {
    /// The identity provider's id in the trust list.
    pub provider: NodeId,
    /// The file holding this node's client secret there (mode 0600).
    pub client_secret_file: PathBuf,
    /// The login button's text, e.g. "DigiD"; default the provider's id.
    pub label: Option<String>,
    /// The scopes asked for (the claims the trust list names must come with them).
    #[serde(default = "default_oidc_scope")]
    pub scope: String,
    /// `acr_values` to ask for, e.g. the provider's value for "substantial".
    pub acr_values: Option<String>,
    /// Roots for the provider's TLS certificate (PEM); default the system's.
    pub ca_file: Option<PathBuf>,
}

fn default_oidc_scope() -> String {
    "openid profile".into()
}

/// A test identity provider's id and signing key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestIdpConfig {
    pub id: NodeId,
    pub key: PathBuf,
}

/// Where the node's certificate, keys and the federation's files are.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PkiPaths {
    /// The node's TLS certificate (PEM).
    pub cert: PathBuf,
    /// The node's TLS key (PKCS#8 PEM).
    pub key: PathBuf,
    /// The key that signs this node's evidence.
    pub signing_key: PathBuf,
    /// The HPKE key that opens envelopes sealed to this node (home role).
    pub hpke_key: Option<PathBuf>,
    /// The federation root certificate.
    pub root_cert: PathBuf,
    /// The federation CRL.
    pub crl: PathBuf,
    /// The signed trust list.
    pub trust_list: PathBuf,
}

/// Limits on everything the node holds or does at once.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Most QUIC connections at once (incoming).
    pub max_connections: u32,
    /// Most concurrent request streams per connection.
    pub max_streams_per_connection: u32,
    /// Most bytes in flight per connection (QUIC receive window).
    pub max_connection_window_bytes: u64,
    /// Most envelopes waiting in the forward queue; offers beyond are refused.
    pub max_queue_len: u64,
    /// Most envelopes forwarded to one peer at once.
    pub forward_concurrency_per_peer: u32,
    /// Longest wait for a peer's answer to one request.
    pub request_timeout_ms: u64,
    /// Most write operations committed in one transaction (group commit).
    pub max_commit_batch: usize,
    /// How long accepted envelope ids are remembered for de-duplication.
    /// At least the longest retry horizon and envelope lifetime.
    pub dedup_retention_s: u64,
    /// Memory for the store's page cache, in MiB (1 to
    /// [`MAX_STORE_CACHE_MIB`]). A relay's working set is the ends of its
    /// queues; a gateway with a national registry reads people at random.
    pub store_cache_mib: u64,
    /// Free disk space the store keeps, in MiB: below it, new envelopes and
    /// records are refused (retryable) while forwarding and delivering go
    /// on, so that a full disk never fails a write half way.
    pub store_min_free_mib: u64,
}

/// Largest page cache a node may be configured with (64 GiB).
pub const MAX_STORE_CACHE_MIB: u64 = 64 * 1024;

impl Limits {
    /// The page cache in bytes.
    pub fn store_cache_bytes(&self) -> usize {
        usize::try_from(self.store_cache_mib.min(MAX_STORE_CACHE_MIB) * 1024 * 1024)
            .unwrap_or(usize::MAX)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1_000,
            max_streams_per_connection: 512,
            max_connection_window_bytes: 64 * 1024 * 1024,
            max_queue_len: 1_000_000,
            forward_concurrency_per_peer: 256,
            request_timeout_ms: 30_000,
            max_commit_batch: 4_096,
            dedup_retention_s: 31 * 24 * 3600,
            store_cache_mib: (crate::store::STORE_CACHE_BYTES / (1024 * 1024)) as u64,
            store_min_free_mib: crate::store::DEFAULT_MIN_FREE_BYTES >> 20,
        }
    }
}

fn default_retry() -> RetryPolicy {
    RetryPolicy {
        base_ms: 500,
        cap_ms: 5 * 60 * 1000,
        horizon_s: 7 * 24 * 3600,
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Config::parse(&text, path)?;
        config.resolve_paths(&config_dir(path));
        Ok(config)
    }

    /// Parses and checks configuration text; `path` only names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        config.check(path)?;
        Ok(config)
    }

    /// Makes every relative path in the configuration relative to `base`
    /// (the configuration file's directory), not to the working directory.
    pub fn resolve_paths(&mut self, base: &Path) {
        let p = &mut self.pki;
        for path in [
            &mut self.data_dir,
            &mut p.cert,
            &mut p.key,
            &mut p.signing_key,
            &mut p.root_cert,
            &mut p.crl,
            &mut p.trust_list,
        ] {
            resolve(base, path);
        }
        if let Some(hpke) = &mut p.hpke_key {
            resolve(base, hpke);
        }
        if let Some(c) = &mut self.citizen {
            if let Some(ca) = c.wallet.as_mut().and_then(|w| w.status_ca_file.as_mut()) {
                resolve(base, ca);
            }
            for path in [&mut c.cert, &mut c.key].into_iter().flatten() {
                resolve(base, path);
            }
            if let Some(idp) = &mut c.test_idp {
                resolve(base, &mut idp.key);
            }
            for o in &mut c.oidc {
                resolve(base, &mut o.client_secret_file);
                if let Some(ca) = &mut o.ca_file {
                    resolve(base, ca);
                }
            }
        }
    }

    pub fn check(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |field, rule| ConfigError::Invalid {
            path: path.to_path_buf(),
            field,
            rule,
        };
        let l = &self.limits;
        if l.max_connections == 0 {
            return Err(invalid("limits.max_connections", "at least 1"));
        }
        if l.max_streams_per_connection == 0 {
            return Err(invalid("limits.max_streams_per_connection", "at least 1"));
        }
        if l.max_connection_window_bytes < estafette_spec::relay::MAX_FRAME_BYTES as u64 {
            return Err(invalid(
                "limits.max_connection_window_bytes",
                "at least the largest frame (16 MiB + 17 KiB)",
            ));
        }
        if l.forward_concurrency_per_peer == 0 || l.max_commit_batch == 0 {
            return Err(invalid(
                "limits.forward_concurrency_per_peer and limits.max_commit_batch",
                "at least 1",
            ));
        }
        if !(1..=MAX_STORE_CACHE_MIB).contains(&l.store_cache_mib) {
            return Err(invalid("limits.store_cache_mib", "1 to 65536 (64 GiB)"));
        }
        if self.retry.base_ms == 0 || self.retry.cap_ms < self.retry.base_ms {
            return Err(invalid("retry", "base_ms > 0 and cap_ms >= base_ms"));
        }
        if l.dedup_retention_s < self.retry.horizon_s
            || l.dedup_retention_s < estafette_spec::limits::MAX_ENVELOPE_LIFETIME_S
        {
            return Err(invalid(
                "limits.dedup_retention_s",
                "at least retry.horizon_s and the 30-day envelope lifetime",
            ));
        }
        Ok(())
    }

    /// The configuration of node `id` of the federation in `fed`: its files
    /// from the federation directory, its data under `<fed>/data/<id>`,
    /// default limits and retries, no admin endpoint.
    pub fn for_federation_node(
        fed: &estafette_pki::Federation,
        id: &NodeId,
        listen: SocketAddr,
        home: bool,
    ) -> Config {
        let dir = fed.node_dir(id);
        Config {
            node_id: id.clone(),
            listen,
            data_dir: fed.dir().join("data").join(id.as_str()),
            admin_listen: None,
            log_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            log_json: false,
            pki: PkiPaths {
                cert: dir.join("tls.crt.pem"),
                key: dir.join("tls.key.pem"),
                signing_key: dir.join("signing.key.pem"),
                hpke_key: home.then(|| dir.join("hpke.key.pem")),
                root_cert: fed.root_cert_path(),
                crl: fed.crl_path(),
                trust_list: fed.trust_list_path(),
            },
            limits: Limits::default(),
            retry: default_retry(),
            citizen: None,
        }
    }

    /// The database file.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("relay.redb")
    }
}

/// What `estafette-relay init` fills in: from the command line and, with a
/// federation directory, from its trust list (the node's address and
/// roles), so that the configuration agrees with the trust list.
#[derive(Debug, Clone)]
pub struct InitValues {
    pub node_id: String,
    /// The node address to listen on (UDP, QUIC).
    pub listen: String,
    pub data_dir: String,
    pub admin_listen: String,
    /// The directory of the node's files (`tls.crt.pem`, …).
    pub node_dir: String,
    /// The federation directory (root, CRL, trust list).
    pub fed_dir: String,
    /// A home node: the HPKE key and the citizen API.
    pub home: bool,
    pub citizen_listen: String,
    pub public_url: String,
}

impl InitValues {
    /// The values of the plain example.
    pub fn example() -> InitValues {
        InitValues {
            node_id: "relay1.example".into(),
            listen: "0.0.0.0:4433".into(),
            data_dir: "/var/lib/estafette-relay".into(),
            admin_listen: "127.0.0.1:9464".into(),
            node_dir: "fed/nodes/relay1.example".into(),
            fed_dir: "fed".into(),
            home: false,
            citizen_listen: "0.0.0.0:8444".into(),
            public_url: "https://relay1.example:8444".into(),
        }
    }
}

/// Where to listen for a node the trust list places at `address`: that IP
/// address if it is one, else every interface on that port.
pub fn listen_for(address: &str) -> String {
    match address.parse::<SocketAddr>() {
        Ok(addr) => addr.to_string(),
        Err(_) => match address.rsplit_once(':') {
            Some((_, port)) => format!("0.0.0.0:{port}"),
            None => address.to_owned(),
        },
    }
}

/// The commented configuration `estafette-relay init` writes.
/// The commented `[[citizen.oidc]]` of `init`: one per login provider.
const OIDC_EXAMPLE: &str = "\
# Login providers (OpenID Connect), one section each. Each must be in the
# trust list with this node's client id (estafette-pki oidc provider|client).
# [[citizen.oidc]]
# provider = \"login.nl.example\"          # its id in the trust list
# client_secret_file = \"oidc-nl.secret\"  # mode 0600
# label = \"DigiD\"                        # the button: Inloggen met DigiD
# scope = \"openid profile bsn\"
# acr_values = \"urn:nl:loa:substantial\"
# ca_file = \"provider-ca.pem\"           # default: the system's roots
";

pub fn example(v: &InitValues) -> String {
    let hpke = if v.home {
        format!("hpke_key = \"{}/hpke.key.pem\"", v.node_dir)
    } else {
        format!(
            "# A home node also needs its HPKE key (it opens the envelopes sealed to it):\n# hpke_key = \"{}/hpke.key.pem\"",
            v.node_dir
        )
    };
    let citizen = format!(
        "listen = \"{}\"\npublic_url = \"{}\"   # used in e-mailed links\n# A certificate for the public name (web PKI); default: the node's own.\n# cert = \"/etc/estafette/inbox.crt.pem\"\n# key = \"/etc/estafette/inbox.key.pem\"",
        v.citizen_listen, v.public_url
    );
    let citizen = if v.home {
        format!(
            "# The citizen API and web inbox (HTTPS, server TLS): people log in with\n# an identity assertion, register, choose digital mail per sender, read.\n[citizen]\n{citizen}\n{OIDC_EXAMPLE}"
        )
    } else {
        let commented: String = citizen.lines().map(|l| format!("# {l}\n")).collect();
        format!(
            "# A home node serves its citizens (HTTPS API and web inbox) with a\n# [citizen] section; a transit node has none.\n# [citizen]\n{commented}"
        )
    };
    format!(
        r#"# Estafette relay node configuration.
# Start the node with:  estafette-relay run --config relay.toml
# Relative paths are relative to this file.

# This node's id: the DNS name in its certificate, as in the trust list.
node_id = "{node_id}"
# The node address (UDP, QUIC): where other nodes reach this node. It must be
# where the trust list says the node is (estafette-pki issue node --addr);
# the node checks at start that it answers there, and says so if not.
listen = "{listen}"
# Where the node keeps its durable queue, inboxes and evidence outbox. It is
# created readable by this user only; one open to others is refused.
data_dir = "{data_dir}"
# Operator endpoint on loopback: GET /metrics (Prometheus), GET /queue,
# GET /status (JSON). Keep it on loopback.
admin_listen = "{admin_listen}"
# The node's evidence log, public and read-only over HTTPS (TCP): tiles of
# hashes and signed checkpoints at https://<node id>:<port>/log/checkpoint,
# for auditors (estafette-relay audit). Records never leave the node.
log_listen = "{listen}"
# Log as JSON lines (for log shippers) instead of text.
log_json = false

# Files from `estafette-pki issue node` and the federation directory. The
# trust list and CRL are re-read when they change (and on SIGHUP).
[pki]
cert = "{node_dir}/tls.crt.pem"
key = "{node_dir}/tls.key.pem"
signing_key = "{node_dir}/signing.key.pem"
{hpke}
root_cert = "{fed_dir}/root/ca.crt.pem"
crl = "{fed_dir}/crl.pem"
trust_list = "{fed_dir}/trust-list.cose"

# Limits. The defaults are shown; every one may be left out.
[limits]
max_connections = 1000                 # incoming QUIC connections at once
max_streams_per_connection = 512       # concurrent requests per connection
max_connection_window_bytes = 67108864 # bytes in flight per connection (64 MiB)
max_queue_len = 1000000                # envelopes waiting to be forwarded
forward_concurrency_per_peer = 256     # envelopes in flight to one peer
request_timeout_ms = 30000             # longest wait for a peer's answer
max_commit_batch = 4096                # writes committed with one fsync
dedup_retention_s = 2678400            # remember accepted ids for 31 days
store_cache_mib = 16                   # page cache of the store (MiB)
store_min_free_mib = 64                # free disk kept; below it new envelopes are refused (retryable)

# Forwarding retries: capped exponential backoff with jitter. An envelope is
# given up (RelayFailure evidence) at its expiry or after horizon_s.
[retry]
base_ms = 500
cap_ms = 300000
horizon_s = 604800

{citizen}"#,
        node_id = v.node_id,
        listen = v.listen,
        data_dir = v.data_dir,
        admin_listen = v.admin_listen,
        node_dir = v.node_dir,
        fed_dir = v.fed_dir,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_examples_parse_and_check() {
        let transit: Config = toml::from_str(&example(&InitValues::example())).unwrap();
        transit.check(Path::new("example")).unwrap();
        assert_eq!(transit.limits.max_commit_batch, 4096);
        assert!(
            transit.citizen.is_none(),
            "a transit node serves no citizens"
        );
        assert!(transit.pki.hpke_key.is_none());
        let home: Config = toml::from_str(&example(&InitValues {
            home: true,
            ..InitValues::example()
        }))
        .unwrap();
        assert_eq!(
            home.citizen.unwrap().public_url.as_deref(),
            Some("https://relay1.example:8444")
        );
        assert!(home.pki.hpke_key.is_some());
    }

    #[test]
    fn relative_paths_start_at_the_config_file() {
        let mut config: Config = toml::from_str(&example(&InitValues {
            data_dir: "data/relay1".into(),
            ..InitValues::example()
        }))
        .unwrap();
        config.resolve_paths(&config_dir(Path::new("/etc/estafette/relay.toml")));
        assert_eq!(config.data_dir, PathBuf::from("/etc/estafette/data/relay1"));
        assert_eq!(
            config.pki.trust_list,
            PathBuf::from("/etc/estafette/fed/trust-list.cose")
        );
        assert_eq!(config_dir(Path::new("relay.toml")), PathBuf::from("."));
        assert_eq!(listen_for("127.0.0.1:4433"), "127.0.0.1:4433");
        assert_eq!(listen_for("relay1.example.nl:4433"), "0.0.0.0:4433");
    }

    #[test]
    fn bad_limits_are_named() {
        let mut config: Config = toml::from_str(&example(&InitValues::example())).unwrap();
        config.limits.dedup_retention_s = 10;
        let err = config.check(Path::new("x")).unwrap_err().to_string();
        assert!(err.contains("limits.dedup_retention_s"), "{err}");
        let err = toml::from_str::<Config>(
            &example(&InitValues::example()).replace("log_json", "log_jsn"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("log_jsn"), "{err}");
    }

    #[test]
    fn the_store_cache_is_bounded_at_both_ends() {
        let mut config: Config = toml::from_str(&example(&InitValues::example())).unwrap();
        assert_eq!(
            config.limits.store_cache_bytes(),
            crate::store::STORE_CACHE_BYTES
        );
        for (mib, ok) in [
            (0, false),
            (1, true),
            (MAX_STORE_CACHE_MIB, true),
            (MAX_STORE_CACHE_MIB + 1, false),
        ] {
            config.limits.store_cache_mib = mib;
            let checked = config.check(Path::new("x"));
            assert_eq!(checked.is_ok(), ok, "{mib} MiB: {checked:?}");
            if let Err(err) = checked {
                assert!(err.to_string().contains("limits.store_cache_mib"), "{err}");
            }
        }
        config.limits.store_cache_mib = 1024;
        assert_eq!(config.limits.store_cache_bytes(), 1 << 30);
    }
}
