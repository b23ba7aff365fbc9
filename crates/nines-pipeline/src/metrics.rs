//! Every metric of the aggregator (docs/metrics.md, "Aggregate"): names and the functions
//! that move the per-partition ones. [`register`] creates every series without a
//! partition at zero when the role starts; a partition's series appear once it is owned.

use ::metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

pub const RECORDS: &str = "nines_aggregate_records_total";
pub const EVENTS: &str = "nines_aggregate_events_total";
pub const FLUSHES: &str = "nines_aggregate_flushes_total";
pub const FLUSH_DURATION: &str = "nines_aggregate_flush_duration_seconds";
pub const FLUSHES_FENCED: &str = "nines_aggregate_flushes_fenced_total";
pub const OFFSET_COMMIT_FAILURES: &str = "nines_aggregate_offset_commit_failures_total";
pub const DEAD_LETTERS: &str = "nines_aggregate_dead_letters_total";
pub const DUPLICATE_RECORDS: &str = "nines_aggregate_duplicate_records_total";
pub const IDEMPOTENCY_KEYS_EVICTED: &str = "nines_aggregate_idempotency_keys_evicted_total";
pub const GROUP_REJOINS: &str = "nines_aggregate_group_rejoins_total";
pub const PARTITIONS_OWNED: &str = "nines_aggregate_partitions_owned";
pub const PARTITIONS_STALLED: &str = "nines_aggregate_partitions_stalled";
pub const CONSUMER_LAG: &str = "nines_aggregate_consumer_lag_records";
pub const PARTITION_STALLED: &str = "nines_aggregate_partition_stalled";

/// Sets a partition's lag: records in its log after the last offset the tables hold.
pub fn consumer_lag(partition: i32, records: f64) {
    gauge!(CONSUMER_LAG, "partition" => partition.to_string()).set(records);
}

/// Sets whether a partition is stalled (1) or not (0).
pub fn partition_stalled(partition: i32, stalled: bool) {
    gauge!(PARTITION_STALLED, "partition" => partition.to_string())
        .set(f64::from(u8::from(stalled)));
}

/// Describes every aggregator metric and creates the series without a partition at zero.
pub fn register() {
    let counters = [
        (RECORDS, "Kafka records consumed."),
        (EVENTS, "Events made durable (flushed and committed)."),
        (FLUSHES, "Flushes committed to the tables and to Kafka."),
        (
            FLUSHES_FENCED,
            "Flushes refused because another writer moved the partition.",
        ),
        (
            OFFSET_COMMIT_FAILURES,
            "Kafka offset commits (one per round of partitions flushed together) that failed.",
        ),
        (DEAD_LETTERS, "Records sent to the dead-letter topic."),
        (
            DUPLICATE_RECORDS,
            "Records dropped because their batch part is already stored.",
        ),
        (
            IDEMPOTENCY_KEYS_EVICTED,
            "Idempotency keys forgotten before their window ended (aggregate.idempotency_max_bytes).",
        ),
        (
            GROUP_REJOINS,
            "Rejoins of the consumer group because a partition had records nobody read.",
        ),
    ];
    for (name, help) in counters {
        describe_counter!(name, help);
        counter!(name).increment(0);
    }
    describe_histogram!(FLUSH_DURATION, "Time of a flush: files and Delta commits.");
    let _ = histogram!(FLUSH_DURATION);
    describe_gauge!(PARTITIONS_OWNED, "Partitions this member owns.");
    gauge!(PARTITIONS_OWNED).increment(0.0);
    describe_gauge!(
        PARTITIONS_STALLED,
        "Partitions whose log went backwards, not read until nines reset-offsets."
    );
    gauge!(PARTITIONS_STALLED).increment(0.0);
    describe_gauge!(
        CONSUMER_LAG,
        "Records in an owned partition after the last offset the tables hold."
    );
    describe_gauge!(PARTITION_STALLED, "1 while the partition is stalled.");
}
