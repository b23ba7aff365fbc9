//! The wall clock, read in one place. Nothing else in this crate reads it: the model's
//! functions take the instant as an argument, so they stay deterministic and testable, and
//! `tests/architecture.rs` holds every other file of the model, and the pure crates, to that.

/// Nanoseconds since the Unix epoch, now (the unit of every event time and of `received_at`).
/// A clock before 1970 reads 0; one past 2262 saturates.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Milliseconds since the Unix epoch, now (Delta's `modificationTime`, `deletionTimestamp`
/// and `txn.lastUpdated`; Kafka timestamps).
pub fn now_ms() -> i64 {
    now_ns() / 1_000_000
}

/// Whole seconds since the Unix epoch, now (the CLI's and the reports' instants, key expiry).
pub fn now_s() -> i64 {
    now_ns() / 1_000_000_000
}
