//! Every metric of the query doors (docs/metrics.md, "Query"): names, the closed sets of
//! their labels, and the functions that move them ([`crate::run::account`] decides which).
//! [`register`] creates every series at zero when the query server starts.

use ::metrics::{counter, describe_counter, describe_histogram, histogram};

pub const QUERIES: &str = "nines_query_queries_total";
pub const QUERY_DURATION: &str = "nines_query_duration_seconds";
pub const QUERIES_REFUSED: &str = "nines_query_queries_refused_total";
pub const QUERIES_FAILED: &str = "nines_query_queries_failed_total";

/// The doors with a `/metrics` (`nines sql` counts as `cli` in a process without one).
pub const DOORS: [&str; 2] = ["flight", "http"];
/// `outcome` of [`QUERIES`] and [`QUERY_DURATION`].
pub const OUTCOMES: [&str; 3] = ["ok", "refused", "failed"];
/// `reason` of [`QUERIES_REFUSED`]: the codes of the errors that are the caller's
/// (`Error::code`), and `bad_request` (an HTTP body that is no question at all).
pub const REFUSAL_REASONS: [&str; 7] = [
    "unauthenticated",
    "read_only",
    "memory_limit",
    "timeout",
    "row_limit",
    "byte_limit",
    "too_many_queries",
];
/// The HTTP door's own refusal: a body or format that is not a question.
pub const BAD_REQUEST: &str = "bad_request";
/// `code` of [`QUERIES_FAILED`].
pub const FAILURE_CODES: [&str; 3] = ["sql_error", "execution_error", "internal"];

/// Counts an answered query of `door` and records its duration.
pub fn answered(door: &'static str, outcome: &'static str, seconds: f64) {
    counted(door, outcome);
    histogram!(QUERY_DURATION, "door" => door, "outcome" => outcome).record(seconds);
}

/// Counts an answered query of `door` whose duration is not a query's (a request refused
/// before it was read as one).
pub fn counted(door: &'static str, outcome: &'static str) {
    counter!(QUERIES, "door" => door, "outcome" => outcome).increment(1);
}

/// Counts a refusal of `door` by reason.
pub fn refused(door: &'static str, reason: &'static str) {
    counter!(QUERIES_REFUSED, "door" => door, "reason" => reason).increment(1);
}

/// Counts a failure of `door` by code.
pub fn failed(door: &'static str, code: &'static str) {
    counter!(QUERIES_FAILED, "door" => door, "code" => code).increment(1);
}

/// Describes every query metric and creates each series at zero.
pub fn register() {
    describe_counter!(QUERIES, "Queries answered, by door and outcome.");
    describe_histogram!(
        QUERY_DURATION,
        "Time to answer a query, by door and outcome."
    );
    describe_counter!(QUERIES_REFUSED, "Queries refused, by door and reason.");
    describe_counter!(QUERIES_FAILED, "Queries failed, by door and code.");
    for door in DOORS {
        for outcome in OUTCOMES {
            counter!(QUERIES, "door" => door, "outcome" => outcome).increment(0);
            let _ = histogram!(QUERY_DURATION, "door" => door, "outcome" => outcome);
        }
        let http_only = (door == "http").then_some(BAD_REQUEST);
        for reason in REFUSAL_REASONS.into_iter().chain(http_only) {
            counter!(QUERIES_REFUSED, "door" => door, "reason" => reason).increment(0);
        }
        for code in FAILURE_CODES {
            counter!(QUERIES_FAILED, "door" => door, "code" => code).increment(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    /// Every error is either a refusal or a failure, with its code in the matching list.
    #[test]
    fn every_error_code_is_in_its_list() {
        let errors = [
            Error::Sql("x".into()),
            Error::ReadOnly("x".into()),
            Error::Memory {
                limit: 1,
                detail: "x".into(),
            },
            Error::Timeout(std::time::Duration::from_secs(1)),
            Error::TooManyRows(1),
            Error::TooManyBytes(1),
            Error::Busy(1),
            Error::Unauthenticated("x".into()),
            Error::Execution(datafusion::error::DataFusionError::Internal("x".into())),
            Error::Table("t".into(), "x".into()),
            Error::Format(arrow::error::ArrowError::ComputeError("x".into())),
        ];
        for e in &errors {
            let (list, other): (&[&str], &[&str]) = if crate::run::is_failure(e) {
                (&FAILURE_CODES[..], &REFUSAL_REASONS[..])
            } else {
                (&REFUSAL_REASONS[..], &FAILURE_CODES[..])
            };
            assert!(list.contains(&e.code()), "{e:?}: {}", e.code());
            assert!(!other.contains(&e.code()), "{e:?}: {}", e.code());
        }
        let codes: std::collections::BTreeSet<&str> = errors.iter().map(Error::code).collect();
        let listed: std::collections::BTreeSet<&str> =
            REFUSAL_REASONS.into_iter().chain(FAILURE_CODES).collect();
        assert_eq!(codes, listed, "a listed code no error has");
    }
}
