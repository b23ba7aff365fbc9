//! The Delta tables' contract with Kafka: a writer expelled from the group cannot commit over
//! the owner (fencing), and a broker whose log went backwards stalls its partitions instead
//! of having its records taken for stored ones.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use nines_testkit::process::http_status;
use nines_testkit::{Generator, Ledger, WorkloadSpec};

use crate::support::{Env, assert_tables_equal_ledger, metric, now_ns, push_ok};

/// Sends `signal` (e.g. `-STOP`) to a process.
fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} {pid}");
}

/// Two aggregators: the first is SIGSTOPped while it holds open buffers, stays stopped past
/// the session timeout (the group gives its partitions to the second), and is then
/// SIGCONTed with its stale buffers. Whatever it tries, no (partition, offset) is written
/// twice and the tables equal what was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expelled_aggregator_that_wakes_up_writes_nothing_twice() {
    let env = Env::new();
    let _roles = env.broker_and_ingest();
    // Long flushes: the first aggregator holds records when it is stopped.
    let slow = [("NINES__AGGREGATE__FLUSH_INTERVAL", "4s")];
    let mut first = env.aggregator("aggregate-first", &slow);
    let mut client = env.client().await;
    let mut generator = Generator::new(WorkloadSpec {
        seed: 17,
        ..WorkloadSpec::default()
    });
    let mut ledger = Ledger::default();
    let mut send = async |ledger: &mut Ledger, rounds: usize| {
        for i in 0..rounds {
            let push = generator.push(i % 6, 50, now_ns());
            push_ok(&mut client, &push).await;
            ledger.record(&push);
        }
    };
    send(&mut ledger, 12).await;
    // Let it flush once, then receive more it will hold.
    assert_eq!(
        env.wait_for(
            "SELECT count(*) AS n FROM requests",
            600,
            Duration::from_secs(60)
        ),
        600
    );
    send(&mut ledger, 12).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    signal(first.pid(), "-STOP");

    // The second takes every partition once the first's session (2 s) expires.
    let second = env.aggregator("aggregate-second", &[]);
    send(&mut ledger, 12).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(&second.metrics(), "nines_aggregate_partitions_owned", "") != Some(4.0) {
        assert!(
            Instant::now() < deadline,
            "the second aggregator never owned every partition"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        env.wait_for(
            "SELECT count(*) AS n FROM requests",
            1800,
            Duration::from_secs(60)
        ),
        1800
    );

    // The first wakes up with buffers of partitions it no longer owns.
    let flushed_before = first.log_text().matches("flushed").count();
    let revoked_before = first.log_text().matches("revoked").count();
    signal(first.pid(), "-CONT");
    send(&mut ledger, 6).await;
    // It notices, by a fenced commit or by the group revoking its partitions.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let log = first.log_text();
        if log.contains("fenced by another writer")
            || log.matches("revoked").count() > revoked_before
        {
            break;
        }
        assert!(Instant::now() < deadline, "the first never noticed: {log}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log = first.log_text();
    let fenced = log.matches("fenced by another writer").count();
    let flushed_after = log.matches("flushed").count() - flushed_before;
    println!(
        "[fencing] first aggregator after SIGCONT: {fenced} fenced commits, {flushed_after} \
         flushes, {} failed Kafka commits",
        log.matches("Kafka offset commit failed").count(),
    );
    // A woken writer whose commits were not fenced wrote nothing at all.
    assert!(fenced > 0 || flushed_after == 0, "{log}");
    // The first leaves (a revived member can take a while to rejoin the embedded broker's
    // group); the second owns every partition again and the tables are exact.
    assert!(first.terminate().success(), "{}", first.log_text());
    assert_tables_equal_ledger(&env, &ledger, Duration::from_secs(90));
    assert!(second.log_text().contains("flushed"));
}

/// The broker's database is wiped under an existing data directory (a power loss that rolled
/// it back, or another broker swapped in). The partitions the tables hold offsets of stall:
/// nothing is deleted, nothing new is written over them, and `/readyz`, the log and a metric
/// say so. `nines reset-offsets` moves them, and new data flows with every old row kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_broker_stalls_until_reset_offsets_and_loses_no_row() {
    let env = Env::new();
    let mut up = env.up();
    let mut client = env.client().await;
    let mut generator = Generator::new(WorkloadSpec::default());
    let mut sent = 0_i64;
    for i in 0..8 {
        let push = generator.push(i % 4, 100, now_ns());
        push_ok(&mut client, &push).await;
        sent += push.requests.len() as i64;
    }
    assert_eq!(
        env.wait_for(
            "SELECT count(*) AS n FROM requests",
            sent,
            Duration::from_secs(60)
        ),
        sent
    );
    let used: BTreeSet<i64> = env
        .sql("SELECT DISTINCT kafka_partition AS p FROM requests")
        .iter()
        .map(|r| r["p"].as_i64().unwrap())
        .collect();
    assert!(up.terminate().success());
    drop(client);

    std::fs::remove_dir_all(env.data_dir().join("broker")).unwrap();
    let up = env.up();
    let admin = up.admin_port();
    let mut client = env.client().await;
    // New records on the new broker, to the same services (so the same partitions).
    let mut after = 0_i64;
    for i in 0..4 {
        let push = generator.push(i, 25, now_ns());
        push_ok(&mut client, &push).await;
        after += push.requests.len() as i64;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let readyz = loop {
        let (status, body) = http_status(admin, "/readyz").unwrap_or((0, String::new()));
        if status == 503 && body.contains("stalled") {
            break body;
        }
        assert!(Instant::now() < deadline, "never stalled: {status} {body}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    for p in &used {
        assert!(
            readyz.contains(&format!("partition {p} stalled")),
            "{readyz}"
        );
    }
    assert_eq!(
        metric(&up.metrics(), "nines_aggregate_partitions_stalled", ""),
        Some(used.len() as f64)
    );
    assert!(
        up.log_text().contains("partition stalled"),
        "{}",
        up.log_text()
    );
    // Nothing deleted, nothing written from the new broker's low offsets.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(env.sql_i64("SELECT count(*) AS n FROM requests"), sent);

    // The operator stops nines and resets each stalled partition to the new log's start.
    let mut up = up;
    assert!(up.terminate().success());
    for p in &used {
        let out = env
            .run(&["reset-offsets", "--partition", &p.to_string(), "--to", "0"])
            .unwrap();
        assert!(
            out.contains(&format!("requests: partition {p} held up to ")),
            "{out}"
        );
        assert!(out.contains("now up to -1"), "{out}");
    }
    let _up = env.up();
    assert_eq!(
        env.wait_for(
            "SELECT count(*) AS n FROM requests",
            sent + after,
            Duration::from_secs(60)
        ),
        sent + after,
        "every old row and every new one"
    );
}
