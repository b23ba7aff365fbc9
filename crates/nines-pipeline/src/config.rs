//! The `[aggregate]` section of the configuration.

use std::time::Duration;

use serde::Deserialize;

/// How the aggregator buffers, flushes and remembers idempotency keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AggregateConfig {
    /// Flush a partition's buffer once it holds this many events. Only a backlog fills one
    /// before `flush_interval` (at 100,000 and 0.5 s, below ~200,000 events/s per partition
    /// the interval comes first): this bounds an aggregator's memory while it catches up.
    pub flush_events: u64,
    /// Flush a partition's buffer once its events take about this many bytes (strings and
    /// columns), whatever their number.
    pub flush_bytes: u64,
    /// Flush a partition's buffer at the latest this long after its first record; buffers at
    /// least half as old flush with it, in the same commits.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// A push retried with the same batch_id within this time (of the aggregator's clock)
    /// is counted once (`nines_model::idempotency`). `dedup_window` is its former name.
    #[serde(with = "humantime_serde", alias = "dedup_window")]
    pub idempotency_window: Duration,
    /// At most this many idempotency keys are remembered per tenant and partition.
    /// `dedup_max_batches` is its former name.
    #[serde(alias = "dedup_max_batches")]
    pub idempotency_max_keys: usize,
    /// At most this many bytes of idempotency keys are remembered per partition, all tenants
    /// together; past it the oldest go first
    /// (`nines_aggregate_idempotency_keys_evicted_total`). `dedup_max_bytes` is its former
    /// name.
    #[serde(alias = "dedup_max_bytes")]
    pub idempotency_max_bytes: usize,
}

impl Default for AggregateConfig {
    fn default() -> Self {
        Self {
            flush_events: 100_000,
            flush_bytes: 64 * 1024 * 1024,
            flush_interval: Duration::from_millis(500),
            idempotency_window: Duration::from_secs(15 * 60),
            idempotency_max_keys: 200_000,
            idempotency_max_bytes: 128 * 1024 * 1024,
        }
    }
}
