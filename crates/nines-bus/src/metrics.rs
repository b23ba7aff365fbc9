//! Every metric of the Kafka side (docs/metrics.md, "Bus" and "Broker"): the acknowledged
//! producer's, which every role with a producer exposes, and the embedded broker's log
//! retention guard's. [`register`] creates the producer's series at zero when a role starts.

use ::metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

pub const PRODUCE_DURATION: &str = "nines_bus_produce_duration_seconds";
pub const RECORDS_IN_FLIGHT: &str = "nines_bus_records_in_flight";
pub const SENDS_REFUSED: &str = "nines_bus_sends_refused_total";
pub const LOG_RETENTION: &str = "nines_broker_log_retention_seconds";
pub const LOG_RETENTION_HELD: &str = "nines_broker_log_retention_held";

/// `outcome` of [`PRODUCE_DURATION`].
pub const PRODUCE_OUTCOMES: [&str; 2] = ["acked", "failed"];
/// `reason` of [`SENDS_REFUSED`]: the breaker is open (every broker down).
pub const BROKERS_DOWN: &str = "brokers_down";

/// Records the time from a record's send to the broker's answer.
pub fn produced(acked: bool, seconds: f64) {
    let outcome = PRODUCE_OUTCOMES[usize::from(!acked)];
    histogram!(PRODUCE_DURATION, "outcome" => outcome).record(seconds);
}

/// Counts a send failed at once because every broker is down.
pub fn send_refused() {
    counter!(SENDS_REFUSED, "reason" => BROKERS_DOWN).increment(1);
}

/// Sets the `retention.ms` (in seconds) a topic has now and whether it is held above
/// `broker.log_retention`.
pub fn log_retention(topic: &str, seconds: f64, held: bool) {
    let labels = [("topic", topic.to_owned())];
    gauge!(LOG_RETENTION, &labels).set(seconds);
    gauge!(LOG_RETENTION_HELD, &labels).set(f64::from(u8::from(held)));
}

/// Describes the producer's metrics and creates each series at zero (a role with a
/// producer: ingest, aggregate, `nines up`).
pub fn register() {
    describe_histogram!(
        PRODUCE_DURATION,
        "Time from a record's send to the broker's answer, by outcome."
    );
    for outcome in PRODUCE_OUTCOMES {
        let _ = histogram!(PRODUCE_DURATION, "outcome" => outcome);
    }
    describe_gauge!(
        RECORDS_IN_FLIGHT,
        "Records handed to librdkafka and not yet answered."
    );
    gauge!(RECORDS_IN_FLIGHT).increment(0.0);
    describe_counter!(
        SENDS_REFUSED,
        "Sends failed at once while every broker is down, by reason."
    );
    counter!(SENDS_REFUSED, "reason" => BROKERS_DOWN).increment(0);
}

/// Describes the embedded broker's metrics (one series per topic, after the retention
/// guard's first pass).
pub fn describe_broker() {
    describe_gauge!(
        LOG_RETENTION,
        "The retention.ms the topic has now, in seconds."
    );
    describe_gauge!(
        LOG_RETENTION_HELD,
        "1 while the topic's retention is held above broker.log_retention."
    );
}
