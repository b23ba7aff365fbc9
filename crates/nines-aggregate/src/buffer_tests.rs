//! Snapshot specs of what a [`PartitionBuffer`] flush holds, table by table: the rules of
//! docs/tables.md on hand-made events, rendered with Arrow's pretty printer.
//!
//! Each snapshot in `src/snapshots/` was checked value by value against the rule it pins
//! (the comments above each test work the numbers out). A change of rule shows as a diff
//! there; CI (`CI=true`) fails on a snapshot that is missing or differs.
//!
//! Rendering: NULL prints as `NULL`, an empty string as an empty cell, so the two stay
//! apart. Timestamps print as RFC 3339 in UTC (`…Z`), with a fraction (to the
//! microsecond) only when they have one. Each table's batches are headed by
//! the table and the UTC day (`date=`) it is written under.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt64Array};
use arrow::compute::{SortColumn, cast, lexsort_to_indices, take_record_batch};
use arrow::datatypes::DataType;
use arrow::util::display::FormatOptions;
use arrow::util::pretty::pretty_format_batches_with_options;
use nines_model::LatencySketch;
use nines_model::flush::Flush;
use nines_model::schema::SLI_1M;
use nines_model::time::day_string;
use nines_proto::v1::{
    Attribute, Commit, DeployEvent, DeployOutcome, DeploySource, EventBatch, IncidentEvent,
    RequestEvent, Resource,
};

use crate::PartitionBuffer;

/// Nanoseconds in a second and a millisecond, for readable inputs.
const S: i64 = 1_000_000_000;
const MS: i64 = 1_000_000;
/// 2025-11-10T12:00:00Z (day 20,402 since the epoch, plus 12 hours), a minute start.
const M0: i64 = (20_402 * 86_400 + 12 * 3_600) * S;
/// 2025-11-10T12:01:00Z, the next minute.
const M1: i64 = M0 + 60 * S;

fn resource(service: &str, environment: &str, version: &str) -> Resource {
    Resource {
        tenant: "acme".into(),
        service: service.into(),
        environment: environment.into(),
        version: version.into(),
    }
}

fn request(t: i64, operation: &str, status_code: i32, error: bool, duration: i64) -> RequestEvent {
    RequestEvent {
        time_unix_nano: t,
        operation: operation.into(),
        status_code,
        error,
        duration_nano: duration,
        ..Default::default()
    }
}

/// Every batch of `flush`, table by table, as text. `sli_1m` rows are sorted by their key
/// (the buffer emits the operations of one minute in hash order; the writer sorts anyway) and
/// the latency sketch, whose bytes no person can check, is shown as what it holds: its count
/// and how many of its durations are at most one second.
fn render(flush: &Flush, table: &str) -> String {
    let mut out = format!(
        "partition={} first_offset={} last_offset={} events={}\n",
        flush.partition, flush.first_offset, flush.last_offset, flush.events
    );
    let options = FormatOptions::default()
        .with_null("NULL")
        .with_display_error(true);
    for b in flush.batches.iter().filter(|b| b.table == table) {
        let batch = if table == SLI_1M {
            readable_sli_1m(&b.batch)
        } else {
            b.batch.clone()
        };
        let batch = utc_as_offset(&batch);
        let text = pretty_format_batches_with_options(&[batch], &options).expect("renders");
        out.push_str(&format!(
            "{} date={} rows={}\n{text}\n",
            b.table,
            day_string(b.day),
            b.batch.num_rows()
        ));
    }
    out
}

/// `batch` with every `UTC` timestamp (nested ones too) relabelled `+00:00`, the same instant:
/// Arrow prints a zone name only with its `chrono-tz` feature, an offset without it, and
/// prints either as `…Z`.
fn utc_as_offset(batch: &RecordBatch) -> RecordBatch {
    fn relabel(t: &DataType) -> DataType {
        match t {
            DataType::Timestamp(unit, Some(_)) => DataType::Timestamp(*unit, Some("+00:00".into())),
            DataType::List(item) => DataType::List(Arc::new(
                item.as_ref()
                    .clone()
                    .with_data_type(relabel(item.data_type())),
            )),
            DataType::Struct(fields) => DataType::Struct(
                fields
                    .iter()
                    .map(|f| f.as_ref().clone().with_data_type(relabel(f.data_type())))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
    let schema = batch.schema();
    let columns = schema
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(field, column)| {
            let to = relabel(field.data_type());
            let column = if &to == field.data_type() {
                column.clone()
            } else {
                cast(column, &to).expect("a relabelled timestamp")
            };
            (field.name().clone(), column)
        });
    RecordBatch::try_from_iter(columns).expect("same lengths")
}

/// `sli_1m` sorted by (tenant, service, environment, version, operation, window_start), with
/// `latency_sketch` replaced by `sketch_count` and `sketch_le_1s` in its place.
fn readable_sli_1m(batch: &RecordBatch) -> RecordBatch {
    let key = [
        "tenant",
        "service",
        "environment",
        "version",
        "operation",
        "window_start",
    ]
    .map(|c| SortColumn {
        values: batch.column_by_name(c).expect("sli_1m column").clone(),
        options: None,
    });
    let order = lexsort_to_indices(&key, None).expect("sorts");
    let sorted = take_record_batch(batch, &order).expect("takes");
    let sketches: Vec<LatencySketch> = sorted
        .column_by_name("latency_sketch")
        .expect("latency_sketch")
        .as_binary::<i32>()
        .iter()
        .map(|b| LatencySketch::from_bytes(b.expect("never null")).expect("decodes"))
        .collect();
    let mut columns: Vec<(String, ArrayRef)> = Vec::new();
    for (field, column) in sorted.schema().fields().iter().zip(sorted.columns()) {
        if field.name() == "latency_sketch" {
            let count = UInt64Array::from_iter_values(sketches.iter().map(LatencySketch::count));
            let le_1s =
                UInt64Array::from_iter_values(sketches.iter().map(|s| s.count_at_most(S as f64)));
            columns.push(("sketch_count".into(), Arc::new(count)));
            columns.push(("sketch_le_1s".into(), Arc::new(le_1s)));
        } else {
            columns.push((field.name().clone(), column.clone()));
        }
    }
    RecordBatch::try_from_iter(columns).expect("same lengths")
}

/// Four records on partition 3 (offsets 40..=43), all on 2025-11-10:
///
/// | offset | resource (acme, …) | event | time | op | status | error | duration |
/// |---|---|---|---|---|---|---|---|
/// | 40 | checkout, prod, v2 | a1 | 12:00:01.5 | GET /cart | 200 | | 20 ms |
/// | | | a2 | 12:00:12.25 | GET /cart | 503 | yes | 35 ms |
/// | | | a3 | 12:00:30 | POST /pay | 200 | | 2.4 s (slow) |
/// | | | a4 | 12:00:45 | POST /pay | 404 | | 5 ms |
/// | | | a5 | 12:01:00 (a minute's first instant) | GET /cart | 200 | | 10 ms |
/// | 41 | search, prod, no version | b1 | 12:00:59.999999999 | GET /search | 200 | | 8 ms |
/// | | | b2 | 12:01:05 | GET /search | 429 | yes | 1 ms |
/// | 42 | checkout, prod, v2 again | a6 | 12:00:50 | GET /cart | 0 | | 0 |
/// | 43 | checkout, prod, v3 | c1 | 12:00:20 | GET /cart | 500 | no flag | 15 ms |
///
/// a1 carries a trace id and an attribute; the others carry neither.
fn traffic() -> Flush {
    let mut a1 = request(M0 + 1_500 * MS, "GET /cart", 200, false, 20 * MS);
    a1.trace_id = "4bf92f3577b34da6a3ce929d0e0e4736".into();
    a1.attributes = vec![Attribute {
        key: "region".into(),
        value: "eu-west-1".into(),
    }];
    let records = [
        EventBatch {
            resource: Some(resource("checkout", "prod", "v2")),
            received_at_unix_nano: M0 + 150 * S,
            requests: vec![
                a1,
                request(M0 + 12_250 * MS, "GET /cart", 503, true, 35 * MS),
                request(M0 + 30 * S, "POST /pay", 200, false, 2_400 * MS),
                request(M0 + 45 * S, "POST /pay", 404, false, 5 * MS),
                request(M1, "GET /cart", 200, false, 10 * MS),
            ],
            ..Default::default()
        },
        EventBatch {
            resource: Some(resource("search", "prod", "")),
            received_at_unix_nano: M0 + 151 * S,
            requests: vec![
                request(M1 - 1, "GET /search", 200, false, 8 * MS),
                request(M1 + 5 * S, "GET /search", 429, true, MS),
            ],
            ..Default::default()
        },
        EventBatch {
            resource: Some(resource("checkout", "prod", "v2")),
            received_at_unix_nano: M0 + 152 * S,
            requests: vec![request(M0 + 50 * S, "GET /cart", 0, false, 0)],
            ..Default::default()
        },
        EventBatch {
            resource: Some(resource("checkout", "prod", "v3")),
            received_at_unix_nano: M0 + 153 * S,
            requests: vec![request(M0 + 20 * S, "GET /cart", 500, false, 15 * MS)],
            ..Default::default()
        },
    ];
    let mut b = PartitionBuffer::new(3);
    for (offset, record) in (40..).zip(&records) {
        b.add(record, offset);
    }
    b.take().expect("builds").expect("not empty")
}

// `requests`: one row per event, in the order added, all on 2025-11-10.
// - tenant, service, environment, version are the record's resource, as given: b1 and b2 have
//   version '' (an empty cell, not NULL; the column is not nullable).
// - time is the event's start in microseconds, floored: b1's 12:00:59.999999999 is
//   12:00:59.999999.
// - status_code, error and duration_ns as sent: c1's 500 without the error flag stays
//   error = false (the flag decides, not the code).
// - trace_id is NULL when the event has none (all but a1); attributes an empty map then.
// - received_at is the record's (12:02:30 + offset − 40 seconds); kafka_partition 3 and
//   kafka_offset the record's own offset (40, 41, 42, 43).
#[test]
fn requests_are_one_row_per_event_with_the_resource_and_the_record() {
    insta::assert_snapshot!(render(&traffic(), "requests"));
}

// The resource's four columns of `requests` and the operation are dictionaries: each
// distinct value once, in the order first seen, and a key per event (the snapshot above shows
// them as their values). Records 40–43 carry checkout/prod/v2 (5 events: GET /cart twice,
// POST /pay twice, GET /cart), search/prod/'' (2 GET /search), checkout/prod/v2 (1 GET
// /cart), checkout/prod/v3 (1 GET /cart).
#[test]
fn the_resource_and_operation_columns_keep_each_value_once() {
    let flush = traffic();
    let batch = &flush.batches[0].batch;
    let column = |name: &str| {
        let d = batch
            .column_by_name(name)
            .expect("column")
            .as_dictionary::<arrow::datatypes::UInt32Type>();
        let values: Vec<&str> = d.values().as_string::<i32>().iter().flatten().collect();
        (values, d.keys().values().to_vec())
    };
    assert_eq!(column("tenant"), (vec!["acme"], vec![0; 9]));
    assert_eq!(column("environment"), (vec!["prod"], vec![0; 9]));
    assert_eq!(
        column("service"),
        (vec!["checkout", "search"], vec![0, 0, 0, 0, 0, 1, 1, 0, 0])
    );
    assert_eq!(
        column("version"),
        (vec!["v2", "", "v3"], vec![0, 0, 0, 0, 0, 1, 1, 0, 2])
    );
    assert_eq!(
        column("operation"),
        (
            vec!["GET /cart", "POST /pay", "GET /search"],
            vec![0, 0, 1, 1, 0, 2, 2, 0, 0]
        )
    );
}

// `sli_1m`: one row per (tenant, service, environment, version, operation, minute), whatever
// the records it came in; all rows kafka_partition 3, kafka_offset 43 (the flush's last).
// - checkout v2 GET /cart 12:00 — a1, a2 (record 40) and a6 (record 42): total 3, errors 1
//   (a2), client_errors 0; sum 20 + 35 + 0 = 55 ms, max 35 ms; sketch 3, all ≤ 1 s.
// - checkout v2 GET /cart 12:01 — a5 alone (12:01:00 opens the minute): 1, 0, 0; 10 ms, 10 ms.
// - checkout v2 POST /pay 12:00 — a3, a4: total 2, errors 0, client_errors 1 (a4's 404); sum
//   2,400 + 5 = 2,405 ms, max 2,400 ms (the slow one); sketch 2, one ≤ 1 s.
// - checkout v3 GET /cart 12:00 — c1: its own row beside v2's; 500 without the error flag
//   counts neither as error nor as client error: 1, 0, 0; 15 ms, 15 ms.
// - search '' GET /search 12:00 — b1 (a nanosecond before 12:01): 1, 0, 0; 8 ms, 8 ms;
//   version '' (empty, not NULL).
// - search '' GET /search 12:01 — b2, a flagged 429: an error, and so not a client error:
//   1, 1, 0; 1 ms, 1 ms.
#[test]
fn sli_1m_is_one_row_per_resource_minute_and_operation() {
    insta::assert_snapshot!(render(&traffic(), SLI_1M));
}

/// One record (partition 0, offset 5) of resource (acme, checkout, prod, v7), received at
/// 12:05, with deploys and incidents.
fn facts() -> Flush {
    let record = EventBatch {
        resource: Some(resource("checkout", "prod", "v7")),
        received_at_unix_nano: M0 + 300 * S,
        deploys: vec![
            DeployEvent {
                time_unix_nano: M0 + 10 * S,
                outcome: DeployOutcome::Succeeded as i32,
                commits: vec![
                    Commit {
                        sha: "a1b2c3".into(),
                        time_unix_nano: M0 - 3_600 * S,
                    },
                    Commit {
                        sha: "d4e5f6".into(),
                        time_unix_nano: M0 - 60 * S,
                    },
                ],
                ..Default::default()
            },
            DeployEvent {
                time_unix_nano: M0 + 20 * S,
                environment: "staging".into(),
                version: "v6".into(),
                outcome: DeployOutcome::Failed as i32,
                source: DeploySource::Telemetry as i32,
                ..Default::default()
            },
            DeployEvent {
                time_unix_nano: M0 + 30 * S,
                service: "payments".into(),
                outcome: DeployOutcome::RolledBack as i32,
                ..Default::default()
            },
            DeployEvent {
                time_unix_nano: M0 + 40 * S,
                outcome: DeployOutcome::Unspecified as i32,
                ..Default::default()
            },
            DeployEvent {
                time_unix_nano: M0 + 50 * S,
                outcome: 42,
                source: 7,
                ..Default::default()
            },
            // 2025-11-09T23:59:59Z: the day before.
            DeployEvent {
                time_unix_nano: M0 - 12 * 3_600 * S - S,
                outcome: DeployOutcome::Succeeded as i32,
                ..Default::default()
            },
        ],
        incidents: vec![
            IncidentEvent {
                id: "INC-1".into(),
                opened_at_unix_nano: M0 + 60 * S,
                severity: "sev2".into(),
                ..Default::default()
            },
            IncidentEvent {
                id: "INC-2".into(),
                service: "search".into(),
                opened_at_unix_nano: M0 + 120 * S,
                resolved_at_unix_nano: M0 + 900 * S,
                cause_version: "v7".into(),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let mut b = PartitionBuffer::new(0);
    b.add(&record, 5);
    b.take().expect("builds").expect("not empty")
}

// `deploys`: one batch per UTC day of the deploy's time, earlier day first (2025-11-09 holds
// the 23:59:59 deploy, 2025-11-10 the other five, in the order sent). 8 events in the flush.
// - service, environment, version: the deploy's own, else the resource's (checkout, prod,
//   v7). The 12:00:20 deploy keeps its staging / v6; the 12:00:30 one its service payments.
// - outcome names: succeeded, failed, rolled_back; unspecified (0) and an unknown value (42)
//   are both `unknown`.
// - source: `telemetry` only for DEPLOY_SOURCE_TELEMETRY; API (0) and an unknown value (7)
//   are `api`.
// - commits: the list as sent (12:00:10's two, with their times 11:00 and 11:59), else empty.
// - received_at 12:05:00, kafka_partition 0, kafka_offset 5 on every row.
#[test]
fn deploys_take_what_they_leave_empty_from_the_resource() {
    insta::assert_snapshot!(render(&facts(), "deploys"));
}

// `incidents`, on the day they opened (2025-11-10):
// - INC-1 leaves service empty: checkout (the resource's). Still open (resolved 0):
//   resolved_at NULL. No cause: cause_version NULL. severity sev2.
// - INC-2 names service search; resolved at 12:15:00; cause_version v7. No severity: an
//   empty cell ('' — the column is not nullable, unlike resolved_at and cause_version).
#[test]
fn incidents_are_null_where_unknown() {
    insta::assert_snapshot!(render(&facts(), "incidents"));
}

// Events of one flush land in the batch of their own UTC day, in `requests` and `sli_1m`
// alike: the request at 23:59:59.999999999 on 2025-11-10 and the one at 00:00:00 on
// 2025-11-11, sent in one record, make one batch each per table; their rows are the minutes
// 23:59 and 00:00, and the flush counts 2 events.
#[test]
fn a_flush_splits_by_utc_day() {
    let midnight = M0 + 12 * 3_600 * S;
    let record = EventBatch {
        resource: Some(resource("checkout", "prod", "v2")),
        received_at_unix_nano: midnight + S,
        requests: vec![
            request(midnight - 1, "GET /cart", 200, false, MS),
            request(midnight, "GET /cart", 200, false, 2 * MS),
        ],
        ..Default::default()
    };
    let mut b = PartitionBuffer::new(1);
    b.add(&record, 0);
    let flush = b.take().expect("builds").expect("not empty");
    let days: Vec<(&str, String, usize)> = flush
        .batches
        .iter()
        .map(|t| (t.table, day_string(t.day), t.batch.num_rows()))
        .collect();
    assert_eq!(
        days,
        [
            ("requests", "2025-11-10".to_owned(), 1),
            ("requests", "2025-11-11".to_owned(), 1),
            ("sli_1m", "2025-11-10".to_owned(), 1),
            ("sli_1m", "2025-11-11".to_owned(), 1),
        ]
    );
    let window = |i: usize| {
        let b = &flush.batches[i].batch;
        let w = b.column_by_name("window_start").expect("window_start");
        assert_eq!(w.null_count(), 0);
        w.as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
            .value(0)
    };
    // Microseconds since the epoch of 23:59:00 and 00:00:00.
    assert_eq!(window(2), (midnight - 60 * S) / 1_000);
    assert_eq!(window(3), midnight / 1_000);
    assert_eq!(flush.events, 2);
}
