//! SQL over the nines tables: a DataFusion session with `requests`, `sli_1m`, `deploys` and
//! `incidents` registered as partitioned Parquet listing tables, and SQL functions that merge
//! latency sketches so percentiles re-aggregate correctly across any grouping.
//!
//! Read-only: this crate never writes a table file.

pub mod dora_source;
mod error;
pub mod format;
pub mod release_source;
pub mod session;
pub mod sketch_udaf;
pub mod slo_source;

pub use error::{Error, Result};
pub use format::OutputFormat;
pub use session::QueryEngine;

/// A SQL string literal of `s` (single quotes doubled).
pub fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
