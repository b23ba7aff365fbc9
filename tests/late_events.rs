//! Late events land in the minute of their event time and add rows; they never replace the
//! earlier rollup of that minute.

use std::time::Duration;

use nines_proto::v1::{PushRequest, RequestEvent, Resource};

use crate::support::{Env, now_ns, push_ok};

const MINUTE: i64 = 60_000_000_000;

fn push(minute_start: i64, n: usize, batch: &str) -> PushRequest {
    PushRequest {
        resource: Some(Resource {
            service: "ledger".into(),
            environment: "production".into(),
            ..Default::default()
        }),
        batch_id: batch.into(),
        requests: (0..n)
            .map(|i| RequestEvent {
                // Spread over seconds 1..=50 of the minute.
                time_unix_nano: minute_start + (1 + (i as i64 % 50)) * 1_000_000_000,
                operation: "POST /api/entries".into(),
                status_code: if i % 10 == 0 { 500 } else { 201 },
                error: i % 10 == 0,
                duration_nano: 1_000_000 + i as i64,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_events_add_rows_to_their_minute() {
    let env = Env::new();
    let _up = env.up();
    let mut client = env.client().await;
    // The minute that started 10 minutes ago, computed here, not by nines.
    let minute = (now_ns() / MINUTE - 10) * MINUTE;
    let minute_sql = format!("to_timestamp_nanos({minute})");

    push_ok(&mut client, &push(minute, 40, "first")).await;
    assert_eq!(
        env.wait_for(
            "SELECT sum(total) AS n FROM sli_1m",
            40,
            Duration::from_secs(60)
        ),
        40
    );
    let first_rows = env.sql_i64(&format!(
        "SELECT count(*) AS n FROM sli_1m WHERE window_start = {minute_sql}"
    ));
    assert_eq!(first_rows, 1, "one rollup row after the first push");

    // Later, more events for the same minute arrive.
    push_ok(&mut client, &push(minute, 25, "late")).await;
    assert_eq!(
        env.wait_for(
            "SELECT sum(total) AS n FROM sli_1m",
            65,
            Duration::from_secs(60)
        ),
        65
    );
    let rows = env.sql(&format!(
        "SELECT count(*) AS rows, sum(total) AS total, sum(errors) AS errors \
         FROM sli_1m WHERE window_start = {minute_sql} AND service = 'ledger' \
           AND operation = 'POST /api/entries'"
    ));
    // 40 events with 4 errors (i = 0,10,20,30), then 25 with 3 (i = 0,10,20).
    assert_eq!(rows[0]["rows"], 2, "the late push added a row");
    assert_eq!(rows[0]["total"], 65);
    assert_eq!(rows[0]["errors"], 7);
    // Nothing landed in any other minute.
    assert_eq!(
        env.sql_i64(&format!(
            "SELECT count(*) AS n FROM sli_1m WHERE window_start <> {minute_sql}"
        )),
        0
    );
    assert_eq!(
        env.sql_i64(&format!(
            "SELECT count(*) AS n FROM requests \
             WHERE date_trunc('minute', time) = {minute_sql}"
        )),
        65
    );
}
