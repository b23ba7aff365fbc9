//! The nines domain: table schemas (a public API: analysts write SQL against these names),
//! minute windows and the mergeable latency sketch.
//!
//! This crate does no I/O and knows nothing of gRPC, Kafka or Parquet files: it is the
//! vocabulary the other crates share, so it must stay small and dependency-light.

pub mod flush;
pub mod keys;
pub mod schema;
pub mod sketch;
pub mod time;

pub use sketch::LatencySketch;
