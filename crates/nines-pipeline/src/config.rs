//! The `[aggregate]` section of the configuration.

use std::time::Duration;

use serde::Deserialize;

/// How the aggregator buffers, flushes and remembers idempotency keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AggregateConfig {
    /// Flush a partition's buffer once it holds this many events.
    pub flush_events: u64,
    /// Flush a partition's buffer once its events take about this many bytes (strings and
    /// columns), whatever their number.
    pub flush_bytes: u64,
    /// Flush a partition's buffer at the latest this long after its first record.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// A push retried with the same batch_id within this time (of the aggregator's clock)
    /// is counted once.
    #[serde(with = "humantime_serde")]
    pub dedup_window: Duration,
    /// At most this many batch ids are remembered per tenant and partition.
    pub dedup_max_batches: usize,
    /// At most this many bytes of batch ids are remembered per partition, all tenants
    /// together; past it the oldest go first
    /// (`nines_aggregate_idempotency_keys_evicted_total`).
    pub dedup_max_bytes: usize,
}

impl Default for AggregateConfig {
    fn default() -> Self {
        Self {
            flush_events: 200_000,
            flush_bytes: 64 * 1024 * 1024,
            flush_interval: Duration::from_secs(2),
            dedup_window: Duration::from_secs(15 * 60),
            dedup_max_batches: 200_000,
            dedup_max_bytes: 128 * 1024 * 1024,
        }
    }
}
