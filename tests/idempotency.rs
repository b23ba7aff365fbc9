//! A push retried with the same batch_id counts once, even across a restart.

use std::time::Duration;

use nines_proto::v1::{PushRequest, RequestEvent, Resource};

use crate::support::{Env, now_ns, push_ok};

fn push(batch_id: &str, n: usize) -> PushRequest {
    let now = now_ns();
    PushRequest {
        resource: Some(Resource {
            service: "billing".into(),
            ..Default::default()
        }),
        batch_id: batch_id.into(),
        requests: (0..n)
            .map(|i| RequestEvent {
                time_unix_nano: now - i as i64,
                operation: "POST /invoices".into(),
                status_code: 200,
                duration_nano: 3_000_000,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_batch_counts_once_even_after_a_restart() {
    let env = Env::new();
    let mut up = env.up();
    let mut client = env.client().await;
    let retried = push("invoice-batch-1", 30);
    push_ok(&mut client, &retried).await;
    // The client never saw the answer (say) and sends the same batch again.
    push_ok(&mut client, &retried).await;
    push_ok(&mut client, &push("invoice-batch-2", 10)).await;
    assert_eq!(
        env.wait_for(
            "SELECT count(*) AS n FROM requests",
            40,
            Duration::from_secs(60)
        ),
        40
    );
    assert!(
        up.metrics()
            .contains("nines_aggregate_duplicate_batches_total 1"),
        "{}",
        up.metrics()
    );

    // Crash and restart everything; the remembered batch ids are durable.
    up.kill();
    let _up = env.up();
    let mut client = env.client().await;
    push_ok(&mut client, &retried).await;
    push_ok(&mut client, &push("invoice-batch-3", 5)).await;
    assert_eq!(
        env.wait_for(
            "SELECT count(*) AS n FROM requests",
            45,
            Duration::from_secs(60)
        ),
        45
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(env.sql_i64("SELECT count(*) AS n FROM requests"), 45);
    assert_eq!(env.sql_i64("SELECT sum(total) AS n FROM sli_1m"), 45);
}
