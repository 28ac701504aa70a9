//! The gateway's configuration (TOML): its node (QUIC, store, keys) and the
//! agency API.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::gateway::EnvelopeSettings;

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
    /// The gateway's node: QUIC towards the relays, the durable store, keys.
    pub node: estafette_relay::Config,
}

impl GatewayConfig {
    pub fn load(path: &Path) -> Result<GatewayConfig, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| invalid(e.to_string()))?;
        let config: GatewayConfig = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
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
        Ok(config)
    }
}

/// The commented example written by `estafette-gateway init`.
pub const EXAMPLE: &str = r#"# Estafette gateway configuration.
# Start with:  estafette-gateway run --config gateway.toml

# The agency API: HTTPS, client certificates from the federation required.
https_listen = "0.0.0.0:8443"

# Envelopes the gateway seals and signs.
[envelope]
hop_limit = 8              # most relay hops
lifetime_s = 1209600       # 14 days, then RelayFailure evidence

# The gateway's own node: QUIC towards the relays, its durable store, keys.
# Same settings as a relay node (see `estafette-relay init`).
[node]
node_id = "gateway.example"
listen = "0.0.0.0:4433"
data_dir = "/var/lib/estafette-gateway"
admin_listen = "127.0.0.1:9465"

[node.pki]
cert = "fed/nodes/gateway.example/tls.crt.pem"
key = "fed/nodes/gateway.example/tls.key.pem"
signing_key = "fed/nodes/gateway.example/signing.key.pem"
root_cert = "fed/root/ca.crt.pem"
crl = "fed/crl.pem"
trust_list = "fed/trust-list.cose"
"#;
