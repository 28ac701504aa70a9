//! Prometheus metrics of a node, served as text on the admin endpoint.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DestinationLabel {
    pub destination: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabel {
    pub api: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpsLabel {
    pub api: String,
    pub reason: String,
}

/// Every metric of a node.
pub struct Metrics {
    registry: Registry,
    pub accepted: Counter,
    pub duplicates: Counter,
    pub delivered: Counter,
    pub rejected: Family<ReasonLabel, Counter>,
    pub refused: Family<ReasonLabel, Counter>,
    pub forwarded: Counter,
    pub forward_retries: Counter,
    /// Store reads and writes of the forwarder that failed (the envelope
    /// stays queued and is tried again).
    pub forward_store_failures: Counter,
    pub failed: Family<ReasonLabel, Counter>,
    pub evidence_sent: Counter,
    /// Deliveries of a batch of evidence to the gateway that failed (the
    /// outbox waits and tries again).
    pub evidence_delivery_failures: Counter,
    pub evidence_stored: Counter,
    /// Signed letters read from the store (opening a letter, an attachment).
    pub letters_read: Counter,
    pub queue_depth: Family<DestinationLabel, Gauge>,
    /// Forward attempts under way (each a task holding one of its next
    /// hop's slots), by destination.
    pub forwards_in_flight: Family<DestinationLabel, Gauge>,
    pub outbox_depth: Gauge,
    /// 1 while the store refuses new data for want of disk space.
    pub store_disk_full: Gauge,
    /// Free bytes on the store's file system, at the last write.
    pub store_free_bytes: Gauge,
    pub connections: Gauge,
    pub commit_batch_size: Histogram,
    pub commit_seconds: Histogram,
    pub https_refused: Family<HttpsLabel, Counter>,
    pub https_connections: Family<ApiLabel, Gauge>,
    /// 1 when a QUIC handshake with this node at the address the trust list
    /// gives for it succeeded, 0 when it failed.
    pub reachable_at_trust_list_address: Gauge,
    /// Checkpoints of the evidence log signed: one signature per commit.
    pub log_checkpoints: Counter,
    /// Records in the evidence log.
    pub log_records: Gauge,
    /// Size of this node's newest checkpoint that witnesses cosigned.
    pub log_cosigned_size: Gauge,
    /// Checkpoints of this node's log a witness refused (a fork, a rewrite).
    pub log_witness_refusals: Counter,
    /// Checkpoints of other nodes' logs this node cosigned as a witness.
    pub witness_cosigned: Counter,
    /// Checkpoints of other nodes' logs this node refused to cosign.
    pub witness_refused: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("estafette_relay");
        let m = Metrics {
            accepted: Counter::default(),
            duplicates: Counter::default(),
            delivered: Counter::default(),
            rejected: Family::default(),
            refused: Family::default(),
            forwarded: Counter::default(),
            forward_retries: Counter::default(),
            forward_store_failures: Counter::default(),
            failed: Family::default(),
            evidence_sent: Counter::default(),
            evidence_delivery_failures: Counter::default(),
            evidence_stored: Counter::default(),
            letters_read: Counter::default(),
            queue_depth: Family::default(),
            forwards_in_flight: Family::default(),
            outbox_depth: Gauge::default(),
            store_disk_full: Gauge::default(),
            store_free_bytes: Gauge::default(),
            connections: Gauge::default(),
            commit_batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
            commit_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            https_refused: Family::default(),
            https_connections: Family::default(),
            reachable_at_trust_list_address: Gauge::default(),
            log_checkpoints: Counter::default(),
            log_records: Gauge::default(),
            log_cosigned_size: Gauge::default(),
            log_witness_refusals: Counter::default(),
            witness_cosigned: Counter::default(),
            witness_refused: Counter::default(),
            registry: Registry::default(),
        };
        m.register_in(&mut registry);
        Metrics { registry, ..m }
    }

    /// Registers every metric under its exposed name, with its help text.
    fn register_in(&self, registry: &mut Registry) {
        let m = self;
        // field => exposed name, help
        macro_rules! register {
            ($($field:ident => $name:literal, $help:literal;)*) => {
                $(registry.register($name, $help, m.$field.clone());)*
            };
        }
        register! {
            accepted => "accepted",
                "Envelopes accepted and stored durably";
            duplicates => "duplicates",
                "Offers of envelopes already held, answered with the same evidence";
            delivered => "delivered",
                "Letters put into an inbox (home role)";
            rejected => "rejected",
                "Offers rejected with signed evidence, by reason";
            refused => "refused",
                "Requests refused before any evidence (peer, frame, capacity), by reason";
            forwarded => "forwarded",
                "Envelopes handed to the next hop and accepted there";
            forward_retries => "forward_retries",
                "Forwarding attempts that will be retried";
            forward_store_failures => "forward_store_failures",
                "Queue reads and writes of the forwarder that failed; the envelope is tried again";
            failed => "failed",
                "Envelopes given up with RelayFailure evidence, by reason";
            evidence_sent => "evidence_sent",
                "Evidence objects delivered to the gateway";
            evidence_delivery_failures => "evidence_delivery_failures",
                "Batches of evidence the gateway did not take; the outbox backs off as a whole and tries again";
            evidence_stored => "evidence_stored",
                "Evidence objects stored (gateway role)";
            letters_read => "letters_read",
                "Signed letters read from the store (opening a letter or an attachment; listing reads none)";
            queue_depth => "queue_depth",
                "Envelopes waiting to be forwarded, by destination";
            forwards_in_flight => "forwards_in_flight",
                "Forward attempts under way, by destination (at most forward_concurrency_per_peer each)";
            outbox_depth => "outbox_depth",
                "Evidence objects waiting to be delivered to the gateway";
            store_disk_full => "store_disk_full",
                "1 while the store refuses new data because free disk space is below limits.store_min_free_mib";
            store_free_bytes => "store_free_bytes",
                "Free bytes on the store's file system, at the last write";
            connections => "connections",
                "Open QUIC connections";
            commit_batch_size => "commit_batch_size",
                "Writes per committed transaction (group commit)";
            commit_seconds => "commit_seconds",
                "Time to commit one transaction, fsync included";
            https_refused => "https_closed",
                "HTTPS connections refused or closed by admission (per source, full, evicted, idle, handshake), by API and reason";
            https_connections => "https_connections",
                "HTTPS connections admitted now, by API";
            reachable_at_trust_list_address => "reachable_at_trust_list_address",
                "1 if this node answered a QUIC handshake at the address the trust list gives for it";
            log_checkpoints => "log_checkpoints",
                "Checkpoints of this node's evidence log signed (one signature per commit, covering every record in it)";
            log_records => "log_records",
                "Records in this node's evidence log";
            log_cosigned_size => "log_cosigned_size",
                "Records under this node's newest checkpoint that its witnesses cosigned";
            log_witness_refusals => "log_witness_refusals",
                "Checkpoints of this node's log a witness refused to cosign: a fork or rewrite of the log, or a witness that knows a longer one";
            witness_cosigned => "witness_cosigned",
                "Checkpoints of other nodes' logs cosigned here as a witness";
            witness_refused => "witness_refused",
                "Checkpoints of other nodes' logs refused here as a witness (inconsistent with what was cosigned before)";
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
