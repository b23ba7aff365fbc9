//! The embedded broker's log is bounded: records the aggregator has read and older than
//! `broker.log_retention` are deleted; records it has not read stay, however old.

use std::time::{Duration, Instant};

use nines_testkit::{Generator, Ledger, WorkloadSpec};

use crate::support::{Env, assert_tables_equal_ledger, metric, now_ns, push_ok, test_python};

/// Records of `topic` in the broker's database, and the topic's `retention.ms`, read with
/// Python's sqlite3 (independent of nines and tansu).
fn broker_log(env: &Env, topic: &str) -> (i64, Option<i64>) {
    let db = env.data_dir().join("broker/nines.db");
    let script = format!(
        "import sqlite3, json\n\
         c = sqlite3.connect('file:{}?mode=ro', uri=True, timeout=10)\n\
         n = c.execute(\"select count(*) from record r join topition tp on tp.id = r.topition \
         join topic t on t.id = tp.topic where t.name = ?\", ('{topic}',)).fetchone()[0]\n\
         r = c.execute(\"select tc.value from topic_configuration tc join topic t on t.id = tc.topic \
         where t.name = ? and tc.name = 'retention.ms'\", ('{topic}',)).fetchone()\n\
         print(json.dumps([n, int(r[0]) if r else None]))",
        db.display()
    );
    let out = std::process::Command::new(test_python())
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "reading the broker database: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: (i64, Option<i64>) = serde_json::from_slice(&out.stdout).unwrap();
    v
}

fn wait_log_empty(env: &Env, topic: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let (n, retention) = broker_log(env, topic);
        if n == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{n} records of {topic} still in the broker's log (retention.ms {retention:?})"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Read records go once older than the age; while the aggregator is away, nothing it has
/// not read goes, however long it stays away; when it is back, every event is counted once
/// and the log empties again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_log_drops_read_records_and_keeps_unread_ones() {
    const TOPIC: &str = "nines.events";
    const AGE_MS: i64 = 3000;
    let env = Env::new();
    let broker = env.spawn(
        "broker",
        &[
            ("NINES__BROKER__LOG_RETENTION", "3s"),
            ("NINES__BROKER__MAINTENANCE_INTERVAL", "1s"),
        ],
        &["broker"],
    );
    let _ingest = env.spawn("ingest", &[], &["ingest", "--kafka", &env.kafka()]);
    let mut aggregator = env.aggregator("aggregate-a", &[]);
    let mut client = env.client().await;
    let mut generator = Generator::new(WorkloadSpec {
        seed: 23,
        ..WorkloadSpec::default()
    });
    let mut ledger = Ledger::default();
    for i in 0..8 {
        let push = generator.push(i % 4, 100, now_ns());
        push_ok(&mut client, &push).await;
        ledger.record(&push);
    }
    assert_tables_equal_ledger(&env, &ledger, Duration::from_secs(60));
    wait_log_empty(&env, TOPIC, Duration::from_secs(60));
    assert_eq!(
        broker_log(&env, TOPIC).1,
        Some(AGE_MS),
        "retention.ms at the age"
    );

    // The aggregator goes away; what arrives now is unread.
    aggregator.kill();
    for i in 0..8 {
        let push = generator.push(i % 4, 100, now_ns());
        push_ok(&mut client, &push).await;
        ledger.record(&push);
    }
    let (unread, _) = broker_log(&env, TOPIC);
    assert!(unread > 0, "the new pushes are in the log");
    // Four times the age, with the broker's maintenance every second.
    std::thread::sleep(Duration::from_millis(4 * AGE_MS as u64));
    let (left, retention) = broker_log(&env, TOPIC);
    assert_eq!(left, unread, "no unread record was deleted");
    let retention = retention.unwrap();
    assert!(
        retention > 4 * AGE_MS,
        "retention.ms held above the records' age: {retention}"
    );
    let held = metric(
        &broker.metrics(),
        "nines_broker_log_retention_held",
        &format!("{{topic=\"{TOPIC}\"}}"),
    );
    assert_eq!(held, Some(1.0), "the hold shows in /metrics");

    // Back: everything is counted once, and the log empties again.
    let _aggregator = env.aggregator("aggregate-b", &[]);
    assert_tables_equal_ledger(&env, &ledger, Duration::from_secs(60));
    wait_log_empty(&env, TOPIC, Duration::from_secs(60));
    assert_eq!(
        broker_log(&env, TOPIC).1,
        Some(AGE_MS),
        "retention.ms back at the age"
    );
}
