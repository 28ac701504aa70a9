//! # estafette-relay: the relay node
//!
//! Accepts envelopes over QUIC from the gateway or another node, stores them
//! durably before it says so (group commit, one fsync per batch), forwards
//! them towards their home node with retries, and on a home node puts the
//! letters into inboxes. Every step is signed evidence that goes straight to
//! the gateway through a durable outbox. The gateway runs the same [`Node`]
//! in its gateway role (one queue and forwarder for both).
#![forbid(unsafe_code)]

pub mod admin;
pub mod citizen;
pub mod citizen_client;
pub mod cli;
pub mod config;
pub mod https;
pub mod metrics;
pub mod node;
pub mod store;
pub mod testkit;
pub mod throttle;
pub mod transport;
pub mod web;

pub use config::Config;
pub use node::{Node, NodeError};
pub use redb;
pub use store::Store;
