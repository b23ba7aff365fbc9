//! The gRPC front door: decode, validate, cut into byte-bounded records, publish, and answer
//! OK only once the broker has acknowledged every record.
//!
//! Ingest keeps no state and no buffer of its own beyond the producer's bounded queue, so any
//! number of ingest processes can run behind a load balancer.

pub mod auth;
pub mod config;
#[cfg(feature = "server")]
pub mod door;
mod error;
#[cfg(feature = "server")]
pub mod frame;
pub mod guard;
pub mod metrics;
pub mod otlp;
#[cfg(test)]
mod otlp_tests;
pub mod otlp_wire;
#[cfg(test)]
mod otlp_wire_tests;
#[cfg(feature = "server")]
pub mod service;
pub mod validate;
pub mod wire;

pub use auth::Auth;
pub use config::IngestConfig;
pub use error::{Error, Result};
#[cfg(feature = "server")]
pub use service::{NativeIngest, Pipeline};
