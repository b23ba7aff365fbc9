//! Event batches from the bus become Arrow RecordBatches: raw `requests`, additive `sli_1m`
//! rollups, `deploys` and `incidents`, split by UTC day for time partitioning.
//!
//! Pure and synchronous: no I/O, no async, no clock. The caller decides when to flush and
//! where the batches go.

mod buffer;
#[cfg(test)]
mod buffer_tests;
mod rollup;

pub use buffer::PartitionBuffer;
pub use nines_model::flush::{Flush, TableBatch};
pub use rollup::Rollup;
