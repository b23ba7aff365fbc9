//! The table store: every table is a Delta Lake table (decision 0006), under
//! `tables/<table>/` of the store's location (a local directory or an object store URL),
//! partitioned by `date`.
//!
//! A flush writes its data files (our sorted ZSTD Parquet writer), then commits them to each
//! table in one Delta commit carrying `txn(appId = "<topic>-<partition>", version = last
//! offset)`: the files and the offset become visible together, or not at all. A partition
//! resumes after the smallest version over the tables; files no commit names are orphans,
//! invisible to every reader. Only after the commits may offsets be committed to Kafka.
//!
//! This is the only crate that writes Parquet.

mod delta;
mod error;
pub mod faults;
pub mod layout;
pub mod maintenance;
mod merge;
pub mod metrics;
mod upload;
pub mod writer;

pub use error::{Error, Result};
pub use layout::{
    CommitOutcome, Fenced, FileName, IDEMPOTENCY, Location, Pending, Positions, Store, app_id,
};
pub use maintenance::{CompactionReport, StorageConfig};
