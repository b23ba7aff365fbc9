//! The nines domain: table schemas (a public API: analysts write SQL against these names),
//! minute windows and the mergeable latency sketch.
//!
//! This crate does no I/O and knows nothing of gRPC, Kafka or Parquet files: it is the
//! vocabulary the other crates share, so it must stay small and dependency-light. It reads
//! the wall clock in one place, `clock::now_ns`, for the crates above it; nothing in the
//! model itself calls it.

pub mod clock;
pub mod flush;
pub mod idempotency;
pub mod keys;
pub mod schema;
pub mod sketch;
pub mod time;

pub use sketch::LatencySketch;
