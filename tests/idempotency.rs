//! A push retried with the same batch_id counts once, even across a restart.

use std::time::Duration;

use nines_proto::v1::{PushRequest, RequestEvent, Resource};

use crate::support::{Env, now_ns, push_ok, run_gen};

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
            .contains("nines_aggregate_duplicate_records_total 1"),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_batch_id_with_other_content_is_another_batch() {
    let env = Env::new();
    let up = env.up();
    // `nines gen` twice with the same seed: every push of the second run is stored too.
    let run = || run_gen(&env, &["--rate", "3000", "--duration", "1s", "--seed", "5"]).unwrap();
    let first = run();
    let second = run();
    assert_eq!((first, second), (3000, 3000));

    // A client that numbers its batches 1, 2, 3 and restarts: batch "1" again, other events.
    let mut client = env.client().await;
    let one = push("1", 30);
    push_ok(&mut client, &one).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let other_one = push("1", 20);
    assert_ne!(one, other_one);
    push_ok(&mut client, &other_one).await;
    // And a true retry of the second is still dropped.
    push_ok(&mut client, &other_one).await;

    let expected = 6000 + 30 + 20;
    assert_eq!(
        env.wait_for(
            "SELECT count(*) AS n FROM requests",
            expected,
            Duration::from_secs(60)
        ),
        expected
    );
    assert_eq!(
        env.wait_for(
            "SELECT sum(total) AS n FROM sli_1m",
            expected,
            Duration::from_secs(30)
        ),
        expected
    );
    // The retry is consumed after the rows it repeats are stored (seen in CI: a second
    // after the count matched it had not been read yet): wait for it to be counted (the
    // counter is on /metrics at 0 from the start). A /metrics answer without it (seen once
    // in CI at the deadline) does not hide the readings before it: the last one is kept,
    // and a failure says how many answers had the counter.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (mut duplicates, mut answers, mut failed) = (None, 0, 0);
    loop {
        let text = up.metrics();
        match crate::support::metric(&text, "nines_aggregate_duplicate_records_total", "") {
            Some(n) => (duplicates, answers) = (Some(n), answers + 1),
            None => failed += 1,
        }
        if duplicates.is_some_and(|n| n > 0.0) || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        duplicates,
        Some(1.0),
        "{answers} /metrics answers with the counter, {failed} without"
    );
    assert_eq!(env.sql_i64("SELECT count(*) AS n FROM requests"), expected);
}

/// A broker, an aggregator and two ingest replicas (`a` on the environment's port, `b` on
/// another), with `env_vars` for both ingests.
fn two_replicas(
    env: &Env,
    env_vars: &[(&str, &str)],
) -> (Vec<crate::support::Role>, String, String) {
    let broker = env.spawn("broker", &[], &["broker"]);
    let kafka = env.kafka();
    let a = env.spawn("ingest-a", env_vars, &["ingest", "--kafka", &kafka]);
    let b_listen = format!("127.0.0.1:{}", crate::support::free_port());
    let mut b_vars = env_vars.to_vec();
    b_vars.push(("NINES__INGEST__LISTEN", &b_listen));
    let b = env.spawn("ingest-b", &b_vars, &["ingest", "--kafka", &kafka]);
    let agg = env.aggregator("aggregate", &[]);
    (
        vec![broker, a, b, agg],
        env.endpoint(),
        format!("http://{b_listen}"),
    )
}

fn events(ops: &[&str], n: usize) -> Vec<RequestEvent> {
    let now = now_ns();
    (0..n)
        .map(|i| RequestEvent {
            time_unix_nano: now - i as i64,
            operation: ops[i % ops.len()].into(),
            status_code: 200,
            duration_nano: 1_000_000 + i as i64,
            ..Default::default()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_to_another_replica_is_cut_the_same_and_counts_once() {
    let env = Env::new();
    // A small operation cap and small records: the cut must not depend on what a replica's
    // guard renames.
    let (_roles, a_endpoint, b_endpoint) = two_replicas(
        &env,
        &[
            ("NINES__INGEST__MAX_OPERATIONS_PER_SERVICE", "5"),
            ("NINES__BUS__MAX_RECORD_BYTES", "2000"),
        ],
    );
    let mut a = nines_proto::v1::ingest_service_client::IngestServiceClient::connect(a_endpoint)
        .await
        .unwrap();
    let mut b = nines_proto::v1::ingest_service_client::IngestServiceClient::connect(b_endpoint)
        .await
        .unwrap();
    let resource = Some(Resource {
        service: "search".into(),
        ..Default::default()
    });
    // Replica a has seen 5 operations of the service: every new one overflows there.
    let warm = PushRequest {
        resource: resource.clone(),
        batch_id: "warm".into(),
        requests: events(&["w0", "w1", "w2", "w3", "w4"], 5),
        ..Default::default()
    };
    push_ok(&mut a, &warm).await;
    // 400 events over 5 one-letter operations: fresh replica b keeps their names; on a they
    // all become `__overflow__`, eleven bytes longer each (with the old cut, a cut the push
    // into more parts than b, and the parts past b's count were stored twice).
    let ops = ["a", "b", "c", "d", "e"];
    let batch = PushRequest {
        resource,
        batch_id: "cut-1".into(),
        requests: events(&ops, 400),
        ..Default::default()
    };
    let on_b = push_ok(&mut b, &batch).await;
    let on_a = push_ok(&mut a, &batch).await;
    assert!(on_b.records > 1, "{} records", on_b.records);
    assert_eq!(on_a.records, on_b.records, "the same cut on both replicas");

    assert_eq!(
        env.wait_for(
            "SELECT count(*) AS n FROM requests",
            405,
            Duration::from_secs(60)
        ),
        405
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(env.sql_i64("SELECT count(*) AS n FROM requests"), 405);
    // What b stored, its first copy: every name kept.
    assert_eq!(
        env.sql_i64("SELECT count(*) AS n FROM requests WHERE operation = '__overflow__'"),
        0
    );
    assert_eq!(
        env.sql_i64("SELECT count(*) AS n FROM requests WHERE operation IN ('a','b','c','d','e')"),
        400
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_reveals_a_deploy_once_whatever_the_number_of_replicas() {
    let env = Env::new();
    let (_roles, a_endpoint, b_endpoint) = two_replicas(&env, &[]);
    let mut clients = Vec::new();
    for e in [a_endpoint, b_endpoint] {
        clients.push(
            nines_proto::v1::ingest_service_client::IngestServiceClient::connect(e)
                .await
                .unwrap(),
        );
    }
    let push_version = |version: &str, id: String| PushRequest {
        resource: Some(Resource {
            service: "payments".into(),
            environment: "production".into(),
            version: version.into(),
            ..Default::default()
        }),
        batch_id: id,
        requests: events(&["POST /pay"], 10),
        ..Default::default()
    };
    // v1 through both (each replica's baseline), then v2 through both.
    for version in ["v1", "v2"] {
        for (i, c) in clients.iter_mut().enumerate() {
            push_ok(c, &push_version(version, format!("{version}-{i}"))).await;
        }
    }
    assert_eq!(
        env.wait_for(
            "SELECT count(*) AS n FROM requests",
            40,
            Duration::from_secs(60)
        ),
        40
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rows =
        env.sql("SELECT service, environment, version, source FROM deploys ORDER BY version");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["version"], "v2");
    assert_eq!(rows[0]["source"], "telemetry");
    assert_eq!(rows[0]["environment"], "production");
}
