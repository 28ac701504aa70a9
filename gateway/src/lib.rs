//! # estafette-gateway: the federation's front door
//!
//! Agencies submit signed letters over HTTPS with their client certificates;
//! the gateway checks that each sends as itself, looks the recipient up in
//! the registry, chooses digital or paper, seals the letter to the home node
//! and hands the envelope to its node (the same queue and forwarder as a
//! relay), and keeps every piece of evidence per message for the agency.
#![forbid(unsafe_code)]

pub mod client;
pub mod config;
pub mod demo;
pub mod desk;
pub mod gateway;
pub mod http;
pub mod mandates;
pub mod monitor;
pub mod notify;
pub mod paper;
pub mod registry;
pub mod report;
pub mod smtp_sink;
pub mod texts;

use std::net::SocketAddr;
use std::sync::Arc;

use estafette_pki::tls;
use estafette_relay::Node;

pub use config::GatewayConfig;
pub use gateway::Gateway;

/// A running gateway: its node and the agency API.
pub struct RunningGateway {
    pub gateway: Arc<Gateway>,
    pub https_addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
    monitor: tokio::task::JoinHandle<()>,
}

impl RunningGateway {
    /// Starts the node, the HTTPS API, the citizen desk and the monitor,
    /// on the system clock.
    pub async fn start(config: GatewayConfig) -> anyhow::Result<RunningGateway> {
        Self::start_with_clock(config, Arc::new(gateway::SystemClock)).await
    }

    /// As [`Self::start`] with another clock for the gateway's own
    /// decisions (tests and the demo let weeks pass).
    pub async fn start_with_clock(
        config: GatewayConfig,
        clock: Arc<dyn gateway::Clock>,
    ) -> anyhow::Result<RunningGateway> {
        let p = &config.node.pki;
        let (cert_chain, key) = (tls::load_certs(&p.cert)?, tls::load_private_key(&p.key)?);
        let node = Node::start(config.node.clone()).await?;
        let tls = http::tls_config(cert_chain, key, &node.verifiers())
            .map_err(|e| anyhow::anyhow!("agency TLS: {e}"))?;
        anyhow::ensure!(
            node.is_gateway(),
            "{} is not the gateway in the trust list",
            node.id
        );
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
        // The node's hooks hold the gateway weakly: no cycle through the node.
        let desk = Arc::downgrade(&gateway);
        node.set_citizen_desk(Arc::new(move |home, request| {
            let desk = desk.clone();
            Box::pin(async move {
                match desk.upgrade() {
                    Some(desk) => desk.citizen(home, request).await,
                    None => estafette_spec::citizen::CitizenReply::Refused {
                        reason: estafette_spec::ReasonCode::StorageFailure,
                        detail: "the gateway is stopping".into(),
                    },
                }
            })
        }));
        let (for_report, for_metrics) = (Arc::downgrade(&gateway), Arc::downgrade(&gateway));
        node.set_admin_extension(estafette_relay::node::AdminExtension {
            report: Box::new(move |query| {
                let months = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("months="))
                    .and_then(|m| m.parse().ok())
                    .unwrap_or(12);
                let gateway = for_report.upgrade().ok_or("the gateway is stopping")?;
                let report = gateway.operator_report(months).map_err(|e| e.to_string())?;
                serde_json::to_string_pretty(&report).map_err(|e| e.to_string())
            }),
            metrics: Box::new(move || {
                let Some(gateway) = for_metrics.upgrade() else {
                    return String::new();
                };
                let report = gateway
                    .last_report
                    .lock()
                    .ok()
                    .and_then(|r| r.clone())
                    .map(|r| r.metrics())
                    .unwrap_or_default();
                format!("{}{report}", gateway.counters.metrics())
            }),
        });
        let monitor = tokio::spawn(gateway.clone().monitor_loop());
        let listener = http::bind(config.https_listen).await?;
        let https_addr = listener.local_addr()?;
        let admission = estafette_relay::https::Admission::new(config.agency_api.clone());
        let server = tokio::spawn(http::serve(listener, tls, admission, gateway.clone()));
        tracing::info!(%https_addr, "agency API listening");
        Ok(RunningGateway {
            gateway,
            https_addr,
            server,
            monitor,
        })
    }

    /// Stops the API, then the node (finishing the commits in flight).
    pub async fn shutdown(self) {
        self.server.abort();
        self.monitor.abort();
        // A cycle in progress finishes its write first.
        let _ = self.gateway.monitor_lock.lock().await;
        self.gateway.node.shutdown().await;
    }
}
