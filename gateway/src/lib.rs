//! # estafette-gateway: the federation's front door
//!
//! Agencies submit signed letters over HTTPS with their client certificates;
//! the gateway checks that each sends as itself, looks the recipient up in
//! the registry, chooses digital or paper, seals the letter to the home node
//! and hands the envelope to its node (the same queue and forwarder as a
//! relay), and keeps every piece of evidence per message for the agency.
#![forbid(unsafe_code)]
// No function over about 80 lines (clippy.toml): a long one reads as named steps.
#![warn(clippy::too_many_lines)]

pub mod client;
pub mod config;
pub mod demo;
pub mod desk;
pub mod gateway;
pub mod http;
pub mod mandates;
pub mod monitor;
pub mod node;
pub mod notify;
pub mod paper;
pub mod registry;
pub mod report;
pub mod smtp_sink;
pub mod store;
mod submit;
pub mod texts;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::node::GatewayNode;
use estafette_pki::tls;

pub use config::GatewayConfig;
pub use gateway::Gateway;

/// A running gateway: its node, its QUIC server, the agency API, the
/// monitor and the admin endpoint, composed here.
pub struct RunningGateway {
    pub gateway: Arc<Gateway>,
    pub https_addr: SocketAddr,
    quic: Arc<estafette_relay::server::Server>,
    server: tokio::task::JoinHandle<()>,
    monitor: tokio::task::JoinHandle<()>,
}

/// The gateway's admin endpoint: the node's metrics with the gateway's
/// own (submissions, the operator report), its queue, status and report.
struct GatewayAdmin(std::sync::Weak<Gateway>);

impl estafette_relay::admin::AdminSource for GatewayAdmin {
    fn metrics(&self) -> String {
        let Some(gateway) = self.0.upgrade() else {
            return "# EOF\n".into();
        };
        let report = gateway
            .last_report
            .lock()
            .ok()
            .and_then(|r| r.as_ref().map(|(report, _)| report.metrics()))
            .unwrap_or_default();
        let more = format!("{}{report}", gateway.counters.metrics());
        estafette_relay::admin::metrics_with(&gateway.node.core.metrics, &more)
    }

    fn queue(
        &self,
    ) -> Result<estafette_relay::admin::QueueReport, estafette_relay::store::StoreError> {
        let gateway = self
            .0
            .upgrade()
            .ok_or(estafette_relay::store::StoreError::Closed)?;
        let now = gateway.node.core.clock.now_ms();
        match gateway.node.shared() {
            Some(shared) => {
                let entries = shared
                    .outbox_snapshot(estafette_relay::admin::MAX_QUEUE_REPORTED)
                    .map_err(|e| estafette_relay::store::StoreError::Aborted(e.to_string()))?;
                Ok(estafette_relay::admin::queue_report_of(
                    &gateway.node.id,
                    entries,
                    0,
                    now,
                ))
            }
            None => {
                estafette_relay::admin::queue_report(&gateway.node.id, gateway.node.store(), now)
            }
        }
    }

    fn status(&self) -> estafette_relay::admin::StatusReport {
        match self.0.upgrade() {
            Some(gateway) => estafette_relay::admin::StatusReport::of(
                &gateway.node.core,
                gateway.node.queue_len(),
                0,
                None,
            ),
            None => estafette_relay::admin::StatusReport::default(),
        }
    }

    fn report(&self, query: &str) -> Option<Result<String, String>> {
        let months = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("months="))
            .and_then(|m| m.parse().ok())
            .unwrap_or(12);
        let gateway = self.0.upgrade()?;
        Some(
            gateway
                .operator_report(months)
                .map_err(|e| e.to_string())
                .and_then(|r| serde_json::to_string_pretty(&r).map_err(|e| e.to_string())),
        )
    }
}

impl RunningGateway {
    /// Starts the node, the HTTPS API, the citizen desk and the monitor,
    /// on the system clock.
    pub async fn start(config: GatewayConfig) -> anyhow::Result<RunningGateway> {
        Self::start_with_clock(config, Arc::new(estafette_pki::SystemClock)).await
    }

    /// As [`Self::start`] with another clock for the gateway's own
    /// decisions (tests and the demo let weeks pass).
    pub async fn start_with_clock(
        config: GatewayConfig,
        clock: Arc<dyn estafette_spec::Clock>,
    ) -> anyhow::Result<RunningGateway> {
        let p = &config.node.pki;
        let (cert_chain, key) = (tls::load_certs(&p.cert)?, tls::load_private_key(&p.key)?);
        let node = GatewayNode::start(
            config.node.clone(),
            &config.store,
            Arc::new(estafette_pki::SystemClock),
        )
        .await?;
        anyhow::ensure!(
            node.trust().gateway().is_some_and(|g| g.id == node.id),
            "{} is not the gateway in the trust list",
            node.id
        );
        let tls = tls::server_config(
            cert_chain,
            key,
            tls::ClientAuth::Required(node.core.trust.verifiers().client_verifier()),
            &[b"h2", b"http/1.1"],
        )?;
        let notifier: Arc<dyn notify::Notifier> = match &config.notifications {
            Some(smtp) => Arc::new(
                notify::SmtpNotifier::new(smtp)
                    .map_err(|e| anyhow::anyhow!("notifications: {e}"))?,
            ),
            None => {
                tracing::warn!("no [notifications] configured: digital letters will end on paper");
                Arc::new(notify::Unconfigured)
            }
        };
        let gateway = Arc::new(Gateway::new(
            node.clone(),
            gateway::GatewayParts {
                envelope: config.envelope,
                policy: config.escalation,
                clock,
                notifier,
                spool: paper::Spool::new(config.spool_dir()),
            },
        ));
        let quic = crate::node::serve(&gateway);
        if let Some(addr) = config.node.admin_listen {
            let source: Arc<dyn estafette_relay::admin::AdminSource> =
                Arc::new(GatewayAdmin(Arc::downgrade(&gateway)));
            estafette_relay::admin::spawn(source, addr).await?;
        }
        let monitor = tokio::spawn(gateway.clone().monitor_loop());
        let listener = http::bind(config.https_listen).await?;
        let https_addr = listener.local_addr()?;
        let admission = estafette_relay::https::Admission::new(config.agency_api.clone());
        let server = tokio::spawn(http::serve(listener, tls, admission, gateway.clone()));
        tracing::info!(%https_addr, "agency API listening");
        Ok(RunningGateway {
            gateway,
            https_addr,
            quic,
            server,
            monitor,
        })
    }

    /// Re-reads the trust list and CRL at once (SIGHUP).
    pub fn reload(&self) {
        self.gateway.node.core.trust.reload_soon();
    }

    /// Stops the API, then the node (finishing the commits in flight).
    pub async fn shutdown(self) {
        self.server.abort();
        self.monitor.abort();
        // A cycle in progress finishes its write first.
        let _ = self.gateway.monitor_lock.lock().await;
        self.gateway.node.shutdown(&self.quic).await;
    }
}
