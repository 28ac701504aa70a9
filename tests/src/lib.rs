//! Helpers shared by the integration tests live here as they grow.
#![forbid(unsafe_code)]
