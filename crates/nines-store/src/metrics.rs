//! Every metric of the store (docs/metrics.md, "Store"), each counted per table.
//! [`register`] creates every (metric, table) series at zero when an aggregator starts.

use ::metrics::{counter, describe_counter};

use crate::layout::all_tables;

pub const FILES_WRITTEN: &str = "nines_store_files_written_total";
pub const COMMITS: &str = "nines_store_commits_total";
pub const COMMITS_FENCED: &str = "nines_store_commits_fenced_total";
pub const FILES_COMPACTED: &str = "nines_store_files_compacted_total";
pub const PARTITIONS_EXPIRED: &str = "nines_store_partitions_expired_total";
pub const FILES_VACUUMED: &str = "nines_store_files_vacuumed_total";

/// Adds `n` to the counter `name` of `table`.
pub fn count(name: &'static str, table: &'static str, n: u64) {
    counter!(name, "table" => table).increment(n);
}

/// Describes every store metric and creates each series of every table at zero.
pub fn register() {
    let counters = [
        (FILES_WRITTEN, "Data files written by flushes."),
        (COMMITS, "Delta commits made by flushes."),
        (
            COMMITS_FENCED,
            "Flush commits refused because another writer committed the partition.",
        ),
        (FILES_COMPACTED, "Small files rewritten by compaction."),
        (PARTITIONS_EXPIRED, "Days removed by retention."),
        (FILES_VACUUMED, "Unreferenced files deleted by vacuum."),
    ];
    for (name, help) in counters {
        describe_counter!(name, help);
        for table in all_tables() {
            count(name, table, 0);
        }
    }
}
