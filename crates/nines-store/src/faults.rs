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
//! | `store.mid_file` | a temporary file holds row groups but no footer |
//! | `store.after_rename` | a data file has its final name; the flush's other files and its checkpoint do not exist yet |
//! | `store.before_checkpoint` | every data file renamed, idempotency keys and checkpoint not written |
//! | `aggregate.before_commit` | checkpoint durable, Kafka offset not committed |

/// Every crash point, for tests that walk them all.
pub const POINTS: [&str; 5] = [
    "store.before_write",
    "store.mid_file",
    "store.after_rename",
    "store.before_checkpoint",
    "aggregate.before_commit",
];

/// Aborts the process (the `return` action of every crash point).
pub fn crash<T>(point: &str) -> T {
    eprintln!("FAILPOINT {point}: aborting the process");
    std::process::abort()
}
