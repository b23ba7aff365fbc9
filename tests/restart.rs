//! The roles as separate processes: broker, ingest, aggregate. The aggregator is killed
//! (SIGKILL) while traffic flows and restarted; totals stay exact, nothing is counted twice.

use std::time::Duration;

use nines_testkit::{Generator, Ledger, WorkloadSpec};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::support::{Env, assert_tables_equal_ledger, delta_reader, now_ns, push_ok};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregator_killed_mid_stream_loses_and_duplicates_nothing() {
    let env = Env::new();
    let (mut broker, mut ingest) = env.broker_and_ingest();
    let mut aggregate = env.aggregator("aggregate-1", &[]);
    let mut client = env.client().await;
    let mut generator = Generator::new(WorkloadSpec {
        seed: 1234,
        ..WorkloadSpec::default()
    });
    let mut ledger = Ledger::default();

    for round in 0..3 {
        for i in 0..12 {
            let push = generator.push(i % 3, 150, now_ns());
            push_ok(&mut client, &push).await;
            ledger.record(&push);
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        // Kill while records are in flight and buffers are open, then restart.
        aggregate.kill();
        for i in 0..6 {
            let push = generator.push(i % 3, 100, now_ns());
            push_ok(&mut client, &push).await;
            ledger.record(&push);
        }
        aggregate = env.aggregator(&format!("aggregate-{}", round + 2), &[]);
    }

    let expected = ledger.events() as i64;
    assert_eq!(expected, 3 * (12 * 150 + 6 * 100));
    assert_tables_equal_ledger(&env, &ledger, Duration::from_secs(90));

    // Graceful stops: each role flushes what it holds and exits 0.
    assert!(aggregate.terminate().success(), "{}", aggregate.log_text());
    assert!(ingest.terminate().success(), "{}", ingest.log_text());
    assert!(broker.terminate().success(), "{}", broker.log_text());
}

/// An aggregator whose prefetch queue (`bus.consumer_queue_kbytes`, at its least) is a
/// fraction of the backlog waiting for it reads the whole backlog, once: librdkafka fetches
/// again as the queue drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_larger_than_the_consumer_queue_is_read_whole() {
    let env = Env::new();
    let (_broker, _ingest) = env.broker_and_ingest();
    let mut client = env.client().await;
    let mut generator = Generator::new(WorkloadSpec {
        seed: 4242,
        ..WorkloadSpec::default()
    });
    let mut ledger = Ledger::default();
    for i in 0..60 {
        let push = generator.push(i % 5, 1_000, now_ns());
        push_ok(&mut client, &push).await;
        ledger.record(&push);
    }
    assert_eq!(ledger.events(), 60_000);
    let drained =
        nines_bus::drain::drain(&env.kafka(), "nines.events", 4, Duration::from_secs(30)).unwrap();
    assert!(
        drained.bytes > 3 * 1024 * 1024,
        "the backlog is several times the 1 MiB queue: {} bytes",
        drained.bytes
    );

    let mut aggregate = env.aggregator(
        "aggregate-small-queue",
        &[("NINES__BUS__CONSUMER_QUEUE_KBYTES", "1024")],
    );
    assert_tables_equal_ledger(&env, &ledger, Duration::from_secs(90));
    assert!(aggregate.terminate().success(), "{}", aggregate.log_text());
}

/// The resume position comes from durable files, not from Kafka's committed offsets: an
/// aggregator in a fresh consumer group (no committed offsets, `auto.offset.reset=earliest`)
/// re-reading the same topic into the same store adds nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_comes_from_durable_files_not_committed_offsets() {
    let env = Env::new();
    let _roles = env.broker_and_ingest();
    let mut first = env.aggregator("aggregate-a", &[]);
    let mut client = env.client().await;
    let mut generator = Generator::new(WorkloadSpec {
        seed: 99,
        ..WorkloadSpec::default()
    });
    let mut ledger = Ledger::default();
    for i in 0..9 {
        let push = generator.push(i % 3, 80, now_ns());
        push_ok(&mut client, &push).await;
        ledger.record(&push);
    }
    assert_eq!(
        env.wait_for(
            "SELECT count(*) AS n FROM requests",
            720,
            Duration::from_secs(60)
        ),
        720
    );
    assert!(first.terminate().success());
    // The graceful stop flushed every partition together and committed their offsets in
    // one request: each partition with records is committed at its log end, as the broker
    // itself reports both.
    let committed = committed_and_log_end(&env, "nines-aggregate");
    assert!(
        committed.iter().filter(|(_, _, end)| *end > 0).count() >= 2,
        "the pushes of three services reach several partitions: {committed:?}"
    );
    for (partition, committed, end) in &committed {
        if *end > 0 {
            assert_eq!(
                *committed,
                Some(*end),
                "partition {partition}: {committed:?}"
            );
        }
    }

    // Same store, new group: Kafka would hand it every record from offset 0.
    let _second = env.aggregator(
        "aggregate-b",
        &[("NINES__BUS__CONSUMER_GROUP", "fresh-group")],
    );
    for i in 0..3 {
        let push = generator.push(i, 50, now_ns());
        push_ok(&mut client, &push).await;
        ledger.record(&push);
    }
    assert_eq!(
        env.wait_for(
            "SELECT count(*) AS n FROM requests",
            870,
            Duration::from_secs(60)
        ),
        870
    );
    // Give a wrongly replaying aggregator time to add duplicates before checking.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(env.sql_i64("SELECT count(*) AS n FROM requests"), 870);
    assert_eq!(env.sql_i64("SELECT sum(total) AS n FROM sli_1m"), 870);
    assert_eq!(ledger.events(), 870);
}

/// A graceful stop leaves every table of every partition at the partition's newest offset,
/// so the next reader resumes where the stop left off. The second round of pushes has no
/// deploys or incidents: without the stop's `txn`-only commits those two tables would stay
/// at the first round's offsets (for up to a minute of rounds), and a restart would read the
/// second round again only to drop it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_moves_every_table_to_where_its_partition_stands() {
    let env = Env::new();
    let _roles = env.broker_and_ingest();
    let mut aggregate = env.aggregator("aggregate", &[]);
    let mut client = env.client().await;
    let mut generator = Generator::new(WorkloadSpec {
        seed: 31,
        ..WorkloadSpec::default()
    });
    for round in 1..=2 {
        for i in 0..3 {
            push_ok(&mut client, &generator.push(i, 50, now_ns())).await;
        }
        assert_eq!(
            env.wait_for(
                "SELECT count(*) AS n FROM requests",
                round * 150,
                Duration::from_secs(60)
            ),
            round * 150
        );
    }
    assert!(aggregate.terminate().success(), "{}", aggregate.log_text());

    let ends: Vec<(i32, i64)> = committed_and_log_end(&env, "nines-aggregate")
        .into_iter()
        .filter(|(_, _, end)| *end > 0)
        .map(|(p, _, end)| (p, end))
        .collect();
    assert!(
        ends.len() >= 2,
        "three services reach several partitions: {ends:?}"
    );
    let apps: Vec<String> = ends
        .iter()
        .map(|(p, _)| format!("nines.events-{p}"))
        .collect();
    let read = delta_reader(&env, &apps.iter().map(String::as_str).collect::<Vec<_>>());
    for ((_, end), app) in ends.iter().zip(&apps) {
        for table in ["requests", "sli_1m", "deploys", "incidents"] {
            assert_eq!(
                read["txn"][app][table],
                serde_json::json!(end - 1),
                "{table}, {app}: {}",
                read["txn"]
            );
        }
    }
}

/// A second aggregator joins the group while the first holds unflushed buffers; partitions
/// move, and every event is still counted exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebalance_with_open_buffers_loses_and_duplicates_nothing() {
    let env = Env::new();
    // Long enough that buffers are open when the group rebalances.
    let slow = [
        ("NINES__AGGREGATE__FLUSH_INTERVAL", "5s"),
        ("NINES__BUS__SESSION_TIMEOUT", "6s"),
    ];
    let _roles = env.broker_and_ingest();
    let mut a = env.aggregator("aggregate-a", &slow);
    let mut client = env.client().await;
    let mut generator = Generator::new(WorkloadSpec {
        services: 6,
        seed: 77,
        ..WorkloadSpec::default()
    });
    let mut ledger = Ledger::default();
    for i in 0..12 {
        let push = generator.push(i % 6, 120, now_ns());
        push_ok(&mut client, &push).await;
        ledger.record(&push);
    }
    let mut b = env.aggregator("aggregate-b", &slow);
    for i in 0..12 {
        let push = generator.push(i % 6, 60, now_ns());
        push_ok(&mut client, &push).await;
        ledger.record(&push);
    }
    let expected = ledger.events() as i64;
    assert_eq!(expected, 12 * 120 + 12 * 60);
    assert_eq!(
        env.wait_for(
            "SELECT count(*) AS n FROM requests",
            expected,
            Duration::from_secs(90)
        ),
        expected,
        "rows in requests\n--- a ---\n{}\n--- b ---\n{}",
        a.log_text(),
        b.log_text()
    );
    assert_eq!(
        env.sql_i64("SELECT count(DISTINCT trace_id) AS n FROM requests"),
        expected
    );
    assert_eq!(env.sql_i64("SELECT sum(total) AS n FROM sli_1m"), expected);
    assert!(a.terminate().success());
    assert!(b.terminate().success());
}

/// Per partition of the events topic: the offset `group` committed (asked of the broker by
/// a client outside the group) and the partition's log end.
fn committed_and_log_end(env: &Env, group: &str) -> Vec<(i32, Option<i64>, i64)> {
    const TOPIC: &str = "nines.events";
    let timeout = Duration::from_secs(10);
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", env.kafka())
        .set("group.id", group)
        .create()
        .unwrap();
    let metadata = client.fetch_metadata(Some(TOPIC), timeout).unwrap();
    let partitions: Vec<i32> = metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect();
    let mut tpl = TopicPartitionList::new();
    for &p in &partitions {
        tpl.add_partition(TOPIC, p);
    }
    let committed = client.committed_offsets(tpl, timeout).unwrap();
    partitions
        .into_iter()
        .map(|p| {
            let offset = match committed.find_partition(TOPIC, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => Some(o),
                _ => None,
            };
            let (_, end) = client.fetch_watermarks(TOPIC, p, timeout).unwrap();
            (p, offset, end)
        })
        .collect()
}
