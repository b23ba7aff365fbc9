//! What a flush hands the store: one partition's rows per table and UTC day, the offset range
//! they cover, and the idempotency keys of the records in it. The contract between the
//! aggregator (which builds it) and the store (which makes it durable), so the store depends
//! on the model, not on the aggregator.

use arrow::record_batch::RecordBatch;

/// One table's rows for one UTC day.
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

/// Identity of one record of one push.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BatchKey {
    pub tenant: String,
    pub batch_id: String,
    pub part: u32,
    /// The push's content fingerprint (`EventBatch.content_fingerprint`); 0 for records
    /// written before fingerprints existed.
    pub fingerprint: u128,
}

impl BatchKey {
    /// A fingerprint as it travels on the bus (16 bytes; empty in old records).
    pub fn fingerprint_of(bytes: &[u8]) -> u128 {
        let mut out = [0_u8; 16];
        let n = bytes.len().min(16);
        out[..n].copy_from_slice(&bytes[..n]);
        u128::from_be_bytes(out)
    }
}

/// A remembered key, with the offset of the record that carried it and when the aggregator
/// saw it (nanoseconds since the epoch, the aggregator's clock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub key: BatchKey,
    pub offset: i64,
    pub seen_at: i64,
}
