//! The table store: Parquet files laid out as `tables/<table>/date=YYYY-MM-DD/<name>.parquet`,
//! written durably, plus the per-partition checkpoints that make a multi-file flush atomic.
//!
//! A flush writes every data file (temporary name, fsync, rename, fsync of the directory),
//! then a checkpoint recording the last Kafka offset it covers. Only after that may offsets be
//! committed to Kafka. On assignment, [`Store::recover`] deletes what a crashed flush left
//! behind (temporary files, data files beyond the checkpoint) and returns where to resume.
//!
//! This is the only crate that writes Parquet.

mod error;
pub mod faults;
pub mod layout;
pub mod writer;

pub use error::{Error, Result};
pub use layout::{FileName, Store};
