//! Every metric ingest exposes (docs/metrics.md, "Ingest"): its name, the closed sets of its
//! label values, and the one function that moves it. [`register`] creates each series of a
//! closed label set at zero when the role starts, so that all of them are on `/metrics` (and
//! `rate()` over them works) before the first push.

use ::metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use nines_proto::v1::PushResponse;

pub const EVENTS_ACCEPTED: &str = "nines_ingest_events_accepted_total";
pub const PUSHES_REJECTED: &str = "nines_ingest_pushes_rejected_total";
pub const PUSH_DURATION: &str = "nines_ingest_push_duration_seconds";
pub const OTLP_ITEMS_REJECTED: &str = "nines_ingest_otlp_items_rejected_total";
pub const CONNECTIONS: &str = "nines_ingest_connections";
pub const CONNECTIONS_TIMED_OUT: &str = "nines_ingest_connections_timed_out_total";
pub const CALLS_ABANDONED: &str = "nines_ingest_calls_abandoned_total";
pub const REQUESTS_IN_FLIGHT: &str = "nines_ingest_requests_in_flight";
pub const TRACKED_SERVICES_EVICTED: &str = "nines_ingest_tracked_services_evicted_total";
pub const OPERATIONS_OVERFLOWED: &str = "nines_ingest_operations_overflowed_total";
pub const TELEMETRY_DEPLOYS: &str = "nines_ingest_telemetry_deploys_total";

/// `kind` of [`EVENTS_ACCEPTED`].
pub const EVENT_KINDS: [&str; 4] = ["request", "deploy", "incident", "gate_decision"];
/// `outcome` of [`PUSH_DURATION`].
pub const PUSH_OUTCOMES: [&str; 2] = ["ok", "rejected"];
/// `map` of [`TRACKED_SERVICES_EVICTED`]: the operation guard and the version tracker.
pub const TRACKED_MAPS: [&str; 2] = ["operations", "versions"];
/// The (`signal`, `reason`) pairs of [`OTLP_ITEMS_REJECTED`] (docs/otlp.md).
pub const OTLP_REJECTIONS: [(&str, &str); 7] = [
    ("traces", "no_service"),
    ("traces", "invalid"),
    ("traces", "span_kind"),
    ("logs", "no_service"),
    ("logs", "invalid"),
    ("logs", "not_an_event"),
    ("metrics", "not_stored"),
];

/// Why a push (or an OTLP export) was refused as a whole: the `reason` of
/// [`PUSHES_REJECTED`]. Every refusal of every door is one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// No API key, or one nines does not know (before the body is read).
    Unauthenticated,
    /// The body is not protobuf of the method's type, or could not be decompressed.
    Undecodable,
    /// The body is over `ingest.max_request_bytes` (after gzip).
    RequestTooLarge,
    /// More events than `ingest.max_events_per_request` (seen on the wire).
    TooManyEvents,
    /// More than `ingest.max_decoded_bytes` once decoded (seen on the wire).
    DecodedTooLarge,
    /// A field failed validation.
    Invalid,
    /// One event is larger than a Kafka record may be (`bus.max_record_bytes`).
    TooLarge,
    /// The call did not finish within `ingest.request_timeout`.
    RequestTimeout,
    /// The producer's queue is full.
    QueueFull,
    /// The broker failed retryably (unreachable, every broker down).
    BrokerUnavailable,
    /// The broker did not acknowledge within `bus.delivery_timeout`.
    BrokerTimeout,
    /// The broker refused a record for good.
    BrokerRejected,
}

impl RejectReason {
    pub const ALL: [Self; 12] = [
        Self::Unauthenticated,
        Self::Undecodable,
        Self::RequestTooLarge,
        Self::TooManyEvents,
        Self::DecodedTooLarge,
        Self::Invalid,
        Self::TooLarge,
        Self::RequestTimeout,
        Self::QueueFull,
        Self::BrokerUnavailable,
        Self::BrokerTimeout,
        Self::BrokerRejected,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthenticated => "unauthenticated",
            Self::Undecodable => "undecodable",
            Self::RequestTooLarge => "request_too_large",
            Self::TooManyEvents => "too_many_events",
            Self::DecodedTooLarge => "decoded_too_large",
            Self::Invalid => "invalid",
            Self::TooLarge => "too_large",
            Self::RequestTimeout => "request_timeout",
            Self::QueueFull => "queue_full",
            Self::BrokerUnavailable => "broker_unavailable",
            Self::BrokerTimeout => "broker_timeout",
            Self::BrokerRejected => "broker_rejected",
        }
    }
}

/// Counts one refused push: the only place [`PUSHES_REJECTED`] moves.
pub fn push_rejected(reason: RejectReason) {
    counter!(PUSHES_REJECTED, "reason" => reason.as_str()).increment(1);
}

/// Counts a call whose client went away before its body was whole (not a refusal).
pub fn call_abandoned() {
    counter!(CALLS_ABANDONED).increment(1);
}

/// Counts the events of a push answered OK, by kind.
pub fn events_accepted(answer: &PushResponse) {
    let counts = [
        answer.accepted_requests,
        answer.accepted_deploys,
        answer.accepted_incidents,
        answer.accepted_gate_decisions,
    ];
    for (kind, n) in EVENT_KINDS.into_iter().zip(counts) {
        counter!(EVENTS_ACCEPTED, "kind" => kind).increment(n);
    }
}

/// Records how long a push took to answer, accepted or not.
pub fn push_answered(accepted: bool, seconds: f64) {
    let outcome = PUSH_OUTCOMES[usize::from(!accepted)];
    histogram!(PUSH_DURATION, "outcome" => outcome).record(seconds);
}

/// Counts OTLP items (spans, log records, data points) refused one by one, answered in
/// `partial_success`.
pub fn otlp_item_rejected(signal: &'static str, reason: &'static str) {
    debug_assert!(
        OTLP_REJECTIONS.contains(&(signal, reason)),
        "({signal}, {reason}) is not in OTLP_REJECTIONS (and docs/metrics.md)"
    );
    counter!(OTLP_ITEMS_REJECTED, "signal" => signal, "reason" => reason).increment(1);
}

/// Counts services forgotten by the operation guard or the version tracker (`map`).
pub fn tracked_services_evicted(map: &'static str, n: u64) {
    debug_assert!(TRACKED_MAPS.contains(&map), "{map} is not in TRACKED_MAPS");
    counter!(TRACKED_SERVICES_EVICTED, "map" => map).increment(n);
}

/// Describes every ingest metric and creates each series at zero.
pub fn register() {
    describe_counter!(EVENTS_ACCEPTED, "Events in pushes answered OK, by kind.");
    for kind in EVENT_KINDS {
        counter!(EVENTS_ACCEPTED, "kind" => kind).increment(0);
    }
    describe_counter!(
        PUSHES_REJECTED,
        "Pushes and exports refused as a whole, by reason."
    );
    for reason in RejectReason::ALL {
        counter!(PUSHES_REJECTED, "reason" => reason.as_str()).increment(0);
    }
    describe_histogram!(PUSH_DURATION, "Time to answer a push, by outcome.");
    for outcome in PUSH_OUTCOMES {
        let _ = histogram!(PUSH_DURATION, "outcome" => outcome);
    }
    describe_counter!(
        OTLP_ITEMS_REJECTED,
        "OTLP spans, log records and data points refused in partial_success."
    );
    for (signal, reason) in OTLP_REJECTIONS {
        counter!(OTLP_ITEMS_REJECTED, "signal" => signal, "reason" => reason).increment(0);
    }
    describe_gauge!(CONNECTIONS, "Open client connections.");
    gauge!(CONNECTIONS).increment(0.0);
    describe_counter!(
        CONNECTIONS_TIMED_OUT,
        "Connections closed for sending nothing within ingest.handshake_timeout."
    );
    counter!(CONNECTIONS_TIMED_OUT).increment(0);
    describe_counter!(
        CALLS_ABANDONED,
        "Calls whose client went away before the request body was whole."
    );
    counter!(CALLS_ABANDONED).increment(0);
    describe_gauge!(
        REQUESTS_IN_FLIGHT,
        "Calls past authentication, not yet answered."
    );
    gauge!(REQUESTS_IN_FLIGHT).increment(0.0);
    describe_counter!(
        TRACKED_SERVICES_EVICTED,
        "Services forgotten past ingest.max_tracked_bytes, by map."
    );
    for map in TRACKED_MAPS {
        counter!(TRACKED_SERVICES_EVICTED, "map" => map).increment(0);
    }
    describe_counter!(
        OPERATIONS_OVERFLOWED,
        "Requests stored under __overflow__: their service had too many operations."
    );
    counter!(OPERATIONS_OVERFLOWED).increment(0);
    describe_counter!(
        TELEMETRY_DEPLOYS,
        "Deploys noticed from a new service.version in request telemetry."
    );
    counter!(TELEMETRY_DEPLOYS).increment(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reject_reasons_are_distinct_snake_case_labels() {
        let labels: std::collections::BTreeSet<&str> =
            RejectReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels.len(), RejectReason::ALL.len());
        for l in labels {
            assert!(l.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{l}");
        }
    }
}
