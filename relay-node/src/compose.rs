//! What `estafette-relay run` starts, composed from its parts: the relay
//! node, its admin endpoint, and on a home node with a `[citizen]` section
//! the citizen API and web inbox. The relay proper does not start the
//! parts above it; this does.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::admin::{AdminSource, QueueReport, StatusReport};
use crate::config::Config;
use crate::node::{Node, NodeError};
use crate::store::StoreError;

/// Why a node process could not start.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("{0}")]
    Node(#[from] NodeError),
    #[cfg(feature = "home")]
    #[error("{0}")]
    Home(#[from] crate::home::HomeError),
    #[cfg(not(feature = "home"))]
    #[error(
        "this build has no citizen API (feature `home`); remove [citizen] from the configuration"
    )]
    NoHome,
}

/// A running relay or home node process.
pub struct RunningNode {
    pub node: Arc<Node>,
    #[cfg(feature = "home")]
    citizen: Option<crate::home::CitizenService>,
}

impl std::ops::Deref for RunningNode {
    type Target = Node;
    fn deref(&self) -> &Node {
        &self.node
    }
}

impl RunningNode {
    /// Starts the node, its admin endpoint (when configured) and its
    /// citizen API (when configured).
    pub async fn start(config: Config) -> Result<Arc<RunningNode>, ComposeError> {
        let admin = config.admin_listen;
        let citizen = config.citizen.clone();
        let node = Node::start(config).await?;
        #[cfg(feature = "home")]
        let citizen = match citizen {
            Some(c) => Some(crate::home::CitizenService::start(node.clone(), &c).await?),
            None => None,
        };
        #[cfg(not(feature = "home"))]
        if citizen.is_some() {
            return Err(ComposeError::NoHome);
        }
        let running = Arc::new(RunningNode {
            node,
            #[cfg(feature = "home")]
            citizen,
        });
        if let Some(addr) = admin {
            let source: Arc<dyn AdminSource> = running.clone();
            crate::admin::spawn(source, addr).await?;
        }
        Ok(running)
    }

    /// Where the citizen API listens, when it runs.
    pub fn citizen_addr(&self) -> Option<SocketAddr> {
        #[cfg(feature = "home")]
        return self.citizen.as_ref().map(|c| c.addr);
        #[cfg(not(feature = "home"))]
        None
    }

    /// Stops the citizen API, then the node (finishing its commits).
    pub async fn shutdown(&self) {
        #[cfg(feature = "home")]
        if let Some(c) = &self.citizen {
            c.stop();
        }
        self.node.shutdown().await;
    }
}

impl AdminSource for RunningNode {
    fn metrics(&self) -> String {
        self.node.metrics.encode()
    }

    fn queue(&self) -> Result<QueueReport, StoreError> {
        let now = self.node.core().clock.now_ms();
        crate::admin::queue_report(&self.node.id, self.node.store(), now)
    }

    fn status(&self) -> StatusReport {
        let store = self.node.store();
        StatusReport::of(
            self.node.core(),
            store.queue_len(),
            store.outbox_len(),
            self.citizen_addr(),
        )
    }
}
