//! `nines up` does not hide a dead role: when the aggregator's loop fails, `/readyz` stops
//! answering 200, ingest stops (flushing its producer) instead of acknowledging pushes nobody
//! will aggregate, and the process exits non-zero naming the role and its error.

use std::time::{Duration, Instant};

use nines_testkit::process::http_status;
use nines_testkit::{Generator, WorkloadSpec};

use crate::support::{Env, now_ns, push_ok};

/// `GET /readyz` of the role: its status code and body, or `None` if nothing answers.
fn readyz(port: u16) -> Option<(u16, String)> {
    http_status(port, "/readyz")
}

/// The admin port written into the config of role `name` (`Env::spawn` picks a free one).
fn admin_port(env: &Env, name: &str) -> u16 {
    crate::support::admin_port(&env.dir.path().join(format!("{name}.toml")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_exits_non_zero_and_stops_being_ready_when_the_aggregator_fails() {
    let env = Env::new();
    // The aggregator's loop returns an error at the first record it consumes.
    let mut up = env.spawn("up", &[("FAILPOINTS", "aggregate.record=return")], &["up"]);
    let admin = admin_port(&env, "up");
    assert_eq!(
        readyz(admin).map(|r| r.0),
        Some(200),
        "ready before the push"
    );

    // Ingest works: a push is acknowledged (every record in Kafka) before anything failed.
    let mut client = env.client().await;
    let mut generator = Generator::new(WorkloadSpec {
        seed: 7,
        ..WorkloadSpec::default()
    });
    let push = generator.push(0, 50, now_ns());
    let answer = push_ok(&mut client, &push).await;
    assert_eq!(answer.accepted_requests, 50);
    drop(client);

    // The aggregator consumes that record and fails. Until the process is gone, poll
    // `/readyz`: every answer after a non-200 one must stay non-200.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut not_ready: Option<(u16, String)> = None;
    let status = tokio::task::block_in_place(|| {
        loop {
            if let Some(status) = up.wait_exit(Duration::from_millis(20)) {
                break status;
            }
            match readyz(admin) {
                Some((200, _)) => assert!(
                    not_ready.is_none(),
                    "/readyz went back to 200 after {not_ready:?}"
                ),
                Some(answer) => not_ready = Some(answer),
                None => {}
            }
            assert!(
                Instant::now() < deadline,
                "`nines up` still running 60 s after its aggregator failed; /readyz: {:?}\n{}",
                readyz(admin),
                up.log_text()
            );
        }
    });
    let log = up.log_text();
    assert!(!status.success(), "exit status {status}\n{log}");
    assert_eq!(status.code(), Some(1), "{log}");
    // The failed role and its error are named; the others were stopped cleanly.
    assert!(log.contains("Error: the aggregate role failed"), "{log}");
    assert!(
        log.contains("injected failure (fail point aggregate.record)"),
        "{log}"
    );
    assert!(log.contains("ingest stopped"), "{log}");
    // When `/readyz` answered during the shutdown, it said 503 with the reason.
    if let Some((code, body)) = &not_ready {
        assert_eq!(*code, 503, "{body}");
        assert!(
            body.contains("aggregate") && body.contains("injected failure"),
            "{body}"
        );
    }
    println!("[dead role] exit {status}; /readyz during shutdown: {not_ready:?}");
    // Ingest does not stay up.
    assert!(
        nines_proto::v1::ingest_service_client::IngestServiceClient::connect(env.endpoint())
            .await
            .is_err(),
        "ingest still accepts connections"
    );
}
