//! What a flush hands the store: one partition's rows per table and UTC day, the offset range
//! they cover, and the idempotency keys of the records in it. The contract between the
//! aggregator (which builds it) and the store (which makes it durable), so the store depends
//! on the model, not on the aggregator.

use arrow::record_batch::RecordBatch;

use crate::idempotency::Seen;

/// One table's rows for one UTC day. A string column may come as a dictionary of strings
/// (the aggregator keeps `requests`' resource and operation so); the store writes it as its
/// values, in the table's schema.
#[derive(Debug)]
pub struct TableBatch {
    pub table: &'static str,
    /// Days since the Unix epoch (the `date=` partition).
    pub day: i64,
    pub batch: RecordBatch,
}

/// Everything a flush writes for one partition: the offset range it covers and its batches.
#[derive(Debug)]
pub struct Flush {
    pub partition: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub events: u64,
    pub batches: Vec<TableBatch>,
    /// Idempotency keys of the records in this flush, to be made durable with it.
    pub seen: Vec<Seen>,
}
