//! Bad events get INVALID_ARGUMENT naming the field, are counted, and hurt nothing else.

use std::time::Duration;

use nines_proto::v1::{PushRequest, RequestEvent, Resource};

use crate::support::{Env, now_ns, push_ok};

fn valid(n: usize) -> PushRequest {
    let now = now_ns();
    PushRequest {
        resource: Some(Resource {
            service: "orders".into(),
            environment: "production".into(),
            version: "v7".into(),
            ..Default::default()
        }),
        batch_id: format!("valid-{n}"),
        requests: (0..n)
            .map(|i| RequestEvent {
                time_unix_nano: now - i as i64 * 1_000_000,
                operation: "GET /orders".into(),
                status_code: 200,
                duration_nano: 2_000_000,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// Sends `push` and checks the status is INVALID_ARGUMENT with exactly `message`.
async fn check(
    client: &mut nines_proto::v1::ingest_service_client::IngestServiceClient<
        tonic::transport::Channel,
    >,
    push: PushRequest,
    message: &str,
) {
    let status = client.push(push).await.expect_err("must be refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert_eq!(status.message(), message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_events_are_refused_by_field_and_the_rest_flows() {
    let env = Env::new();
    let up = env.up();
    let mut client = env.client().await;

    let mut p = valid(3);
    p.resource.as_mut().unwrap().service.clear();
    check(
        &mut client,
        p,
        "resource.service: is required and must not be empty",
    )
    .await;

    let mut p = valid(3);
    p.requests[2].duration_nano = -1;
    check(
        &mut client,
        p,
        "requests[2].duration_nano: must be >= 0, got -1",
    )
    .await;

    let mut p = valid(3);
    let future = now_ns() + 3 * 3600 * 1_000_000_000;
    p.requests[1].time_unix_nano = future;
    let msg = format!(
        "requests[1].time_unix_nano: {future} is further in the future than the accepted \
         window (max_event_ahead)"
    );
    check(&mut client, p, &msg).await;

    let mut p = valid(3);
    p.requests[0].operation.clear();
    check(
        &mut client,
        p,
        "requests[0].operation: is required and must not be empty",
    )
    .await;

    // A valid push alongside still goes through, and only it is stored.
    push_ok(&mut client, &valid(25)).await;
    assert_eq!(
        env.wait_for(
            "SELECT count(*) AS n FROM requests",
            25,
            Duration::from_secs(60)
        ),
        25
    );
    assert_eq!(env.sql_i64("SELECT sum(total) AS n FROM sli_1m"), 25);

    // Every refusal is counted.
    let metrics = up.metrics();
    assert!(
        metrics.contains("nines_ingest_pushes_rejected_total{reason=\"invalid\"} 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("nines_ingest_events_accepted_total{kind=\"request\"} 25"),
        "{metrics}"
    );
}
