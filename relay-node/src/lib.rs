//! # estafette-relay: the relay node
//!
//! Accepts envelopes over QUIC from the gateway or another node, stores them
//! durably before it says so (group commit, one fsync per batch), forwards
//! them towards their home node with retries, and on a home node puts the
//! letters into inboxes. Every step is evidence in the node's log
//! ([`evidence_log`], one signed checkpoint per commit) that goes straight
//! to the gateway through a durable outbox. The gateway builds on the same
//! parts ([`core`], [`server`], [`forwarder`], [`origin`]) with a role of
//! its own; the citizen side of a home node is [`home`] (feature `home`).
#![forbid(unsafe_code)]
// No function over about 80 lines (clippy.toml): a long one reads as named steps.
#![warn(clippy::too_many_lines)]

pub mod admin;
pub mod cli;
pub mod compose;
pub mod config;
pub mod core;
pub mod evidence_log;
pub mod forwarder;
#[cfg(feature = "home")]
pub mod home;
pub mod https;
pub mod log_audit;
pub mod metrics;
pub mod node;
pub mod open_files;
pub mod origin;
pub mod public_log;
pub mod relay;
pub mod server;
pub mod store;
pub mod testkit;
pub mod texts;
pub mod throttle;
pub mod transport;
pub mod trust_state;
pub mod witness;

pub use compose::RunningNode;
pub use config::Config;
pub use node::{Node, NodeError};
pub use store::Store;
