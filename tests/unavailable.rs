//! With no reachable broker, a push gets a retryable status within a bounded time: never
//! OK, never a hang.

use std::time::{Duration, Instant};

use nines_testkit::{Generator, WorkloadSpec};

use crate::support::{Env, free_port, now_ns};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_without_broker_is_unavailable() {
    let env = Env::new();
    // Nothing listens on this port.
    let nowhere = format!("127.0.0.1:{}", free_port());
    let _ingest = env.spawn(
        "ingest",
        &[("NINES__BUS__DELIVERY_TIMEOUT", "2s")],
        &["ingest", "--kafka", &nowhere],
    );
    let mut client = env.client().await;
    let push = Generator::new(WorkloadSpec::default()).push(0, 50, now_ns());
    let started = Instant::now();
    // The outer timeout only catches a hang; it is not a performance assertion.
    let answer = tokio::time::timeout(Duration::from_secs(60), client.push(push))
        .await
        .expect("push hung instead of failing");
    let status = answer.expect_err("push must not be OK without a broker");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("batch_id"),
        "{}",
        status.message()
    );
    eprintln!("UNAVAILABLE after {:?}", started.elapsed());
}
