//! Everything Kafka: topics, the acknowledged producer, the consumer group whose assignments
//! resume from durable storage, and (feature `embedded-broker`) the in-process broker.
//!
//! This is the only crate that links rdkafka or tansu. It knows nothing of what the records
//! mean: payloads are opaque bytes, keys are chosen by the caller.

pub mod admin;
pub mod config;
pub mod consumer;
pub mod drain;
#[cfg(feature = "embedded-broker")]
pub mod embedded;
mod error;
pub mod metrics;
pub mod producer;
#[cfg(feature = "embedded-broker")]
pub mod retention;

pub use config::BusConfig;
pub use error::{Error, Result};
