//! The gateway's configuration (TOML): its node (QUIC, store, keys) and the
//! agency API.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use estafette_spec::escalation::EscalationPolicy;

use crate::gateway::EnvelopeSettings;
use crate::notify::SmtpSettings;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// TCP address of the agency API (HTTPS with client certificates).
    pub https_listen: SocketAddr,
    #[serde(default)]
    pub envelope: EnvelopeSettings,
    /// When unread letters get a reminder and go on paper.
    #[serde(default)]
    pub escalation: EscalationPolicy,
    /// Where notification e-mail goes out (the operator's SMTP relay host).
    /// Without it no notification can be sent, and every digital letter
    /// ends on paper after the retries.
    #[serde(default)]
    pub notifications: Option<SmtpSettings>,
    /// The print spool directory; default `<node.data_dir>/paper-spool`.
    #[serde(default)]
    pub paper_spool: Option<PathBuf>,
    /// Where the gateway keeps its records and its forward queue.
    #[serde(default)]
    pub store: StoreSettings,
    /// The gateway's node: QUIC towards the relays, the durable store, keys.
    pub node: estafette_relay::Config,
    /// How the agency API admits connections and bodies (not in the file:
    /// the defaults of `HttpsLimits::agency`, documented in ARCHITECTURE.md).
    #[serde(skip, default = "estafette_relay::https::HttpsLimits::agency")]
    pub agency_api: estafette_relay::https::HttpsLimits,
}

/// The database that holds the gateway's records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// The node's own embedded database in `node.data_dir`: one instance.
    #[default]
    Redb,
    /// A PostgreSQL database shared by any number of instances.
    Postgres,
}

/// Most connections one instance opens to PostgreSQL.
pub const MAX_STORE_CONNECTIONS: usize = crate::store::MAX_PG_CONNECTIONS;

/// `[store]`: which database, and for PostgreSQL how to reach it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    #[serde(default)]
    pub backend: StoreBackend,
    /// libpq-style connection string, for example `host=db1,db2 port=5432
    /// user=estafette dbname=estafette target_session_attrs=read-write`
    /// (several hosts: the one that takes writes is used, so a promoted
    /// standby needs no change here). No password here: see `password_file`.
    #[serde(default)]
    pub url: Option<String>,
    /// A file (mode 0600) holding the database password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// This instance's name, unique among the gateway's instances. With
    /// the same name after a restart, an instance takes back its own
    /// envelopes at once; without one, a random name is chosen at each
    /// start, and what it held is taken over when its lease runs out.
    #[serde(default)]
    pub instance: Option<String>,
    /// Connections to PostgreSQL (default 8, at most 64).
    #[serde(default)]
    pub connections: Option<usize>,
}

impl StoreSettings {
    /// The PostgreSQL connection settings, password included.
    pub fn postgres_url(&self) -> Result<String, String> {
        let url = self
            .url
            .clone()
            .ok_or("store.url must be set for backend = \"postgres\"")?;
        if url.split_whitespace().any(|kv| kv.starts_with("password")) {
            return Err("store.url must not hold the password: use store.password_file".into());
        }
        match &self.password_file {
            None => Ok(url),
            Some(path) => {
                let password = std::fs::read_to_string(path)
                    .map_err(|e| format!("store.password_file {}: {e}", path.display()))?;
                let password = password.trim_end_matches(['\r', '\n']);
                // libpq quoting: single quotes, with \ and ' escaped.
                let quoted = password.replace('\\', "\\\\").replace('\'', "\\'");
                Ok(format!("{url} password='{quoted}'"))
            }
        }
    }
}

impl GatewayConfig {
    /// A configuration with every optional part at its default.
    pub fn new(https_listen: SocketAddr, node: estafette_relay::Config) -> GatewayConfig {
        GatewayConfig {
            https_listen,
            envelope: EnvelopeSettings::default(),
            escalation: EscalationPolicy::default(),
            notifications: None,
            paper_spool: None,
            store: StoreSettings::default(),
            node,
            agency_api: estafette_relay::https::HttpsLimits::agency(),
        }
    }

    pub fn load(path: &Path) -> Result<GatewayConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Invalid {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut config = GatewayConfig::parse(&text, path)?;
        // Relative paths start at the configuration file, not where the
        // command happens to run.
        let base = estafette_relay::config::config_dir(path);
        config.node.resolve_paths(&base);
        if let Some(spool) = &mut config.paper_spool {
            estafette_relay::config::resolve(&base, spool);
        }
        if let Some(file) = &mut config.store.password_file {
            estafette_relay::config::resolve(&base, file);
        }
        if config.store.backend == StoreBackend::Postgres {
            config
                .store
                .postgres_url()
                .map_err(|message| ConfigError::Invalid {
                    path: path.to_path_buf(),
                    message,
                })?;
        }
        Ok(config)
    }

    /// Parses and checks configuration text without reading any file;
    /// `path` only names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<GatewayConfig, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let config: GatewayConfig = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        config.node.check(path).map_err(|e| match e {
            estafette_relay::config::ConfigError::Invalid { field, rule, .. } => {
                invalid(format!("node.{field} must be {rule}"))
            }
            other => invalid(other.to_string()),
        })?;
        if config
            .store
            .connections
            .is_some_and(|n| n == 0 || n > MAX_STORE_CONNECTIONS)
        {
            return Err(invalid(format!(
                "store.connections must be 1..={MAX_STORE_CONNECTIONS}"
            )));
        }
        if config.envelope.hop_limit == 0
            || config.envelope.hop_limit > estafette_spec::limits::MAX_HOP_LIMIT
        {
            return Err(invalid("envelope.hop_limit must be 1..=16".into()));
        }
        if config.envelope.lifetime_s == 0
            || config.envelope.lifetime_s > estafette_spec::limits::MAX_ENVELOPE_LIFETIME_S
        {
            return Err(invalid("envelope.lifetime_s must be 1 s .. 30 days".into()));
        }
        let p = &config.escalation;
        if p.cycle_s == 0 || p.cycle_s > 3600 {
            return Err(invalid("escalation.cycle_s must be 1..=3600".into()));
        }
        if p.reminder_after_s >= p.paper_after_s {
            return Err(invalid(
                "escalation.reminder_after_s must be less than paper_after_s".into(),
            ));
        }
        Ok(config)
    }

    /// The print spool directory.
    pub fn spool_dir(&self) -> PathBuf {
        self.paper_spool
            .clone()
            .unwrap_or_else(|| self.node.data_dir.join("paper-spool"))
    }
}

/// What `estafette-gateway init` fills in (see `estafette-relay init`).
#[derive(Debug, Clone)]
pub struct GatewayInitValues {
    pub https_listen: String,
    pub node_id: String,
    /// The gateway's node address (QUIC): where relays and home nodes send.
    pub node_listen: String,
    pub data_dir: String,
    pub admin_listen: String,
    pub node_dir: String,
    pub fed_dir: String,
    /// The SMTP relay host and how to reach it.
    pub smtp_host: String,
    pub smtp_port: u16,
    pub smtp_tls: &'static str,
}

impl GatewayInitValues {
    pub fn example() -> GatewayInitValues {
        GatewayInitValues {
            https_listen: "0.0.0.0:8443".into(),
            node_id: "gateway.example".into(),
            node_listen: "0.0.0.0:4430".into(),
            data_dir: "/var/lib/estafette-gateway".into(),
            admin_listen: "127.0.0.1:9465".into(),
            node_dir: "fed/nodes/gateway.example".into(),
            fed_dir: "fed".into(),
            smtp_host: "smtp.example.nl".into(),
            smtp_port: 587,
            smtp_tls: "starttls",
        }
    }
}

/// The commented configuration `estafette-gateway init` writes.
pub fn example(v: &GatewayInitValues) -> String {
    let login = if v.smtp_tls == "starttls" {
        "# Log in to the relay host (over TLS only); the password lives in its own\n# file, mode 0600, never in this one.\n# username = \"estafette\"\n# password_file = \"/etc/estafette/smtp-password\"\n# Roots for the relay host's certificate if it is not from a public CA:\n# ca_file = \"/etc/estafette/smtp-ca.pem\"\n"
    } else {
        ""
    };
    format!(
        r#"# Estafette gateway configuration.
# Start with:  estafette-gateway run --config gateway.toml
# Relative paths are relative to this file.

# The agency API: HTTPS, client certificates from the federation required.
# (Not the node address: that is [node] listen below.)
https_listen = "{https_listen}"

# Paper letters (PDF) and their manifest, for the print house.
# Default: <node.data_dir>/paper-spool
# paper_spool = "/var/spool/estafette/paper"

# Where the gateway keeps its records and forward queue: "redb" (the node's
# own database in node.data_dir; one instance) or "postgres" (one database
# for any number of instances; migrations run at start).
[store]
backend = "redb"
# url = "host=db1.example,db2.example port=5432 user=estafette dbname=estafette target_session_attrs=read-write"
# password_file = "/etc/estafette/db-password"
# instance = "gateway-1"       # unique per instance
# connections = 8

# Envelopes the gateway seals and signs.
[envelope]
hop_limit = 8              # most relay hops
lifetime_s = 1209600       # 14 days, then RelayFailure evidence

# Unread letters: a reminder, then paper (seconds). The monitor runs every
# cycle_s and takes each step one cycle early rather than late.
[escalation]
reminder_after_s = 604800      # 7 days
paper_after_s = 1209600        # 14 days
deadline_margin_s = 432000     # paper at the latest 5 days before a deadline
dormant_after_s = 31536000     # no session for a year while holding unread mail
cycle_s = 300

# Notification e-mail goes to the operator's SMTP relay host. tls is
# "starttls" (required: no mail goes in the clear) or "none" (plain SMTP,
# only for a relay host on this machine, such as `estafette-gateway
# smtp-sink` when trying things out).
[notifications]
host = "{smtp_host}"
port = {smtp_port}
from = "Berichtenbox <noreply@{node_id}>"
tls = "{smtp_tls}"
{login}
# The gateway's own node: QUIC towards the relays, its durable store, keys.
# Same settings as a relay node (see `estafette-relay init`).
[node]
node_id = "{node_id}"
# The node address (UDP, QUIC): where relays and home nodes reach the
# gateway (evidence, citizen requests). It must be where the trust list
# says the gateway is (estafette-pki issue gateway --addr); the gateway
# checks at start that it answers there, and says so if not.
listen = "{node_listen}"
data_dir = "{data_dir}"
admin_listen = "{admin_listen}"
# The gateway's evidence log, public and read-only over HTTPS (TCP): tiles
# of hashes and signed checkpoints, for auditors (estafette-relay audit).
log_listen = "{node_listen}"

[node.pki]
cert = "{node_dir}/tls.crt.pem"
key = "{node_dir}/tls.key.pem"
signing_key = "{node_dir}/signing.key.pem"
root_cert = "{fed_dir}/root/ca.crt.pem"
crl = "{fed_dir}/crl.pem"
trust_list = "{fed_dir}/trust-list.cose"
"#,
        https_listen = v.https_listen,
        smtp_host = v.smtp_host,
        smtp_port = v.smtp_port,
        smtp_tls = v.smtp_tls,
        node_id = v.node_id,
        node_listen = v.node_listen,
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
    fn the_example_parses() {
        let config: GatewayConfig =
            toml::from_str(&example(&GatewayInitValues::example())).unwrap();
        assert_eq!(config.escalation.paper_after_s, 14 * 24 * 3600);
        let smtp = config.notifications.as_ref().unwrap();
        assert_eq!(
            (smtp.port, smtp.tls),
            (587, crate::notify::SmtpTls::Starttls)
        );
        assert_eq!(config.node.listen.port(), 4430, "not the relays' 4433");
        assert_eq!(
            config.spool_dir(),
            PathBuf::from("/var/lib/estafette-gateway/paper-spool")
        );
    }
}
