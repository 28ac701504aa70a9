//! Estafette gateway. This crate is a skeleton until the gateway issue lands:
//! it only re-exports the protocol core it will be built on.
#![forbid(unsafe_code)]

pub use estafette_spec as spec;
