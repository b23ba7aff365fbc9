//! Crash points for the fault tests, built on the `fail` crate.
//!
//! Every point is inert unless the `FAILPOINTS` environment variable names it (the binary
//! calls `fail::FailScenario::setup()` at start). Its `return` action aborts the process on
//! the spot, as a SIGKILL or a power cut of the process would: no destructor runs, nothing
//! is flushed. `FAILPOINTS="store.after_rename=2*off->return"` aborts at the third rename.
//!
//! | point | where the process dies |
//! |---|---|
//! | `store.before_write` | buffers built, no file started |
//! | `store.mid_file` | a data file is being encoded, nothing of the flush is stored |
//! | `store.after_file` | a data file is stored; no commit names it (an orphan) |
//! | `store.between_tables` | the first table's commit is done, the other tables' are not |
//! | `aggregate.before_commit` | every table committed, Kafka offset not committed |

/// Every crash point, for tests that walk them all.
pub const POINTS: [&str; 5] = [
    "store.before_write",
    "store.mid_file",
    "store.after_file",
    "store.between_tables",
    "aggregate.before_commit",
];

/// Aborts the process (the `return` action of every crash point).
pub fn crash<T>(point: &str) -> T {
    eprintln!("FAILPOINT {point}: aborting the process");
    std::process::abort()
}
