//! The home node's citizen side: what a person reaches at the node that
//! holds their inbox. It builds on the relay proper ([`crate::Node`]: its
//! store holds the inboxes the relay delivered into) and adds the citizen
//! API and web inbox over HTTPS, sessions from identity assertions, the
//! opening of letters (ContentHandover), representatives, the access log,
//! and the carrying of people's requests to the gateway. The relay proper
//! never uses this module; with the `home` feature off it is not built.
//!
//! - `api.rs` — the JSON citizen API and the sessions behind it.
//! - `web.rs` — the web inbox's pages.
//! - `inbox.rs` — reading and opening letters.
//! - `client.rs` — a client of the citizen API (tests, demo, apps).

pub mod api;
pub mod client;
pub mod inbox;
pub mod oidc;
pub mod session;
pub mod wallet;
pub mod web;

use std::net::SocketAddr;
use std::sync::Arc;

use estafette_spec::citizen::{CitizenReply, CitizenRequest};
use estafette_spec::relay::{Request, Response};

use crate::node::Node;
use crate::store::StoreError;
use crate::transport::TransportError;

/// What the citizen side could not do.
#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    #[error("no such letter")]
    NoSuchLetter,
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Log(#[from] crate::evidence_log::LogError),
    #[error("the gateway could not be asked: {0}")]
    Gateway(#[from] GatewayError),
    #[error("the citizen API needs the home role (an hpke_key)")]
    NotAHomeNode,
    #[error("citizen API TLS: {0}")]
    Tls(#[from] estafette_pki::PkiError),
    #[error("citizen API TLS: {0}")]
    TlsConfig(#[from] rustls::Error),
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("test_idp is allowed only in a test federation")]
    TestIdpOutsideTestFederation,
    #[error("OpenID login: {0}")]
    Oidc(#[from] crate::home::oidc::OidcError),
    #[error("wallet login: {0}")]
    Wallet(#[from] crate::home::wallet::WalletError),
}

/// Why the gateway did not answer a person's request.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("no gateway in the trust list")]
    NoGateway,
    #[error("{0}")]
    Transport(#[from] TransportError),
    #[error("refused ({reason}): {detail}", reason = reason.code())]
    Refused {
        reason: estafette_spec::ReasonCode,
        detail: String,
    },
    #[error("answer of the wrong kind")]
    WrongAnswer,
}

/// Carries a person's request to the gateway and gives its answer.
pub async fn carry(node: &Node, request: CitizenRequest) -> Result<CitizenReply, GatewayError> {
    let core = node.core();
    let trust = core.trust();
    let gateway = trust.gateway().ok_or(GatewayError::NoGateway)?;
    let answer = core
        .peers
        .request_node(gateway, &Request::Citizen(Box::new(request)))
        .await;
    match answer {
        Ok(Response::Citizen(reply)) => Ok(reply),
        Ok(Response::Refused { reason, detail }) => Err(GatewayError::Refused { reason, detail }),
        Ok(_) => Err(GatewayError::WrongAnswer),
        Err(e) => {
            if let Some(held_back) = core.log_throttle.allow("citizen request") {
                tracing::warn!(gateway = %gateway.id, address = %gateway.address, error = %e, failures_since_last_line = held_back, "the gateway cannot be reached at the address the trust list gives; citizen requests fail");
            }
            Err(GatewayError::Transport(e))
        }
    }
}

/// The citizen API and web inbox of a home node, while it runs.
pub struct CitizenService {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl CitizenService {
    /// Starts the citizen API of `node` as its `[citizen]` section says.
    pub async fn start(
        node: Arc<Node>,
        config: &crate::config::CitizenApiConfig,
    ) -> Result<CitizenService, HomeError> {
        if node.core().hpke.is_none() {
            return Err(HomeError::NotAHomeNode);
        }
        let (addr, task) = api::start(node, config).await?;
        Ok(CitizenService { addr, task })
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for CitizenService {
    fn drop(&mut self) {
        self.task.abort();
    }
}
