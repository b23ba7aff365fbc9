//! The Delta tables' contract with Kafka: a writer expelled from the group cannot commit over
//! the owner (fencing), and a broker whose log went backwards stalls its partitions instead
//! of having its records taken for stored ones.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use nines_testkit::process::http_status;
use nines_testkit::{Generator, Ledger, WorkloadSpec};

use crate::support::{Env, assert_tables_equal_ledger, delta_reader, metric, now_ns, push_ok};

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

/// `nines compact` runs again and again in its own process while an aggregator commits and a
/// query loops. Every answer is exact (no row counted twice: a query sees either a day's
/// small files or the compacted one, never both), and afterwards each table has at most two
/// files per day.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_under_load_keeps_every_answer_exact() {
    let env = Env::new();
    let _roles = env.broker_and_ingest();
    let _aggregate = env.aggregator("aggregate", &[("NINES__STORAGE__INTERVAL", "0s")]);
    let mut client = env.client().await;
    let mut generator = Generator::new(WorkloadSpec {
        seed: 41,
        ..WorkloadSpec::default()
    });
    let mut ledger = Ledger::default();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (answers, compactions) = std::thread::scope(|scope| {
        let queries = scope.spawn(|| {
            let mut answers = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let rows = env.sql(
                    "SELECT count(*) AS n, count(DISTINCT trace_id) AS d, \
                     sum(CASE WHEN error THEN 1 ELSE 0 END) AS e FROM requests",
                );
                let (n, d) = (
                    rows[0]["n"].as_i64().unwrap(),
                    rows[0]["d"].as_i64().unwrap(),
                );
                assert_eq!(n, d, "a query counted a row twice");
                answers += 1;
            }
            answers
        });
        let compact = scope.spawn(|| {
            let mut runs = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                runs.push(env.run(&["compact"]).expect("nines compact"));
                std::thread::sleep(Duration::from_millis(500));
            }
            runs
        });
        let runtime = tokio::runtime::Handle::current();
        tokio::task::block_in_place(|| {
            runtime.block_on(async {
                for i in 0..60 {
                    let push = generator.push(i % 6, 100, now_ns());
                    push_ok(&mut client, &push).await;
                    ledger.record(&push);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        });
        assert_eq!(
            env.wait_for(
                "SELECT count(*) AS n FROM requests",
                ledger.events() as i64,
                Duration::from_secs(60)
            ),
            ledger.events() as i64
        );
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (queries.join().unwrap(), compact.join().unwrap())
    });
    // `requests: N files; M small files (…) rewritten as K …`: runs with M > 0.
    let rewrote = compactions
        .iter()
        .filter(|r| {
            r.lines()
                .find_map(|l| l.strip_prefix("requests: "))
                .and_then(|l| l.split("; ").nth(1))
                .and_then(|l| l.split(' ').next())
                .is_some_and(|m| m.parse::<u64>().unwrap() > 0)
        })
        .count();
    println!(
        "[compaction] {answers} exact answers during {} compactions ({rewrote} rewrote files)",
        compactions.len()
    );
    assert!(answers >= 3, "{answers}");
    assert!(rewrote >= 1, "{compactions:?}");

    // Once more with the tables quiet: at most two files per table and day.
    let before = delta_reader(&env, &[]);
    env.run(&["compact"]).unwrap();
    let after = delta_reader(&env, &[]);
    for table in ["requests", "sli_1m"] {
        for (day, n) in after["files"][table].as_object().unwrap() {
            assert!(
                n.as_u64().unwrap() <= 2,
                "{table} {day}: {n} files ({after})"
            );
        }
    }
    println!(
        "[compaction] files per day before the last compaction: {}; after: {}",
        before["files"], after["files"]
    );
    assert_tables_equal_ledger(&env, &ledger, Duration::from_secs(30));
}

/// Events over 40 days; `storage.retention.requests = 30days`: `requests` keeps exactly the
/// 30 most recent days (today included), `sli_1m` (400 days) keeps all 40, and vacuum deletes
/// the expired files from the disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_exactly_the_days_the_policy_keeps() {
    let env = Env::new();
    let mut up = env.spawn(
        "up",
        &[
            ("NINES__INGEST__MAX_EVENT_AGE", "60days"),
            ("NINES__STORAGE__INTERVAL", "0s"),
        ],
        &["up"],
    );
    let mut client = env.client().await;
    let mut generator = Generator::new(WorkloadSpec::default());
    let today = chrono::Utc::now().date_naive();
    let day_ns = 86_400_000_000_000_i64;
    // Noon of each past day (UTC), so no event crosses midnight; today, now (noon may still
    // be ahead, beyond what ingest accepts), but at least 2 s after midnight (the generator
    // spreads events over the second before the time it is given).
    let now = now_ns();
    let midnight = now - now.rem_euclid(day_ns);
    for d in 0..40_i64 {
        let at = if d == 0 {
            now.max(midnight + 2_000_000_000)
        } else {
            midnight - d * day_ns + day_ns / 2
        };
        let push = generator.push(d as usize % 4, 10, at);
        push_ok(&mut client, &push).await;
    }
    assert_eq!(
        env.wait_for(
            "SELECT count(*) AS n FROM requests",
            400,
            Duration::from_secs(60)
        ),
        400
    );
    assert!(up.terminate().success());
    let out = env
        .run_with(
            &[
                ("NINES__STORAGE__RETENTION__REQUESTS", "30days"),
                ("NINES__STORAGE__VACUUM_GRACE", "0s"),
            ],
            &["compact"],
        )
        .unwrap();
    println!("[retention] {out}");

    let day = |d: u64| {
        (today - chrono::Days::new(d))
            .format("%Y-%m-%d")
            .to_string()
    };
    let kept: Vec<String> = (0..30).rev().map(day).collect();
    let all: Vec<String> = (0..40).rev().map(day).collect();
    let read = delta_reader(&env, &[]);
    assert_eq!(read["dates"], serde_json::json!(kept), "requests' days");
    assert_eq!(read["sli_dates"], serde_json::json!(all), "sli_1m's days");
    assert_eq!(env.sql_i64("SELECT count(*) AS n FROM requests"), 300);
    assert_eq!(env.sql_i64("SELECT sum(total) AS n FROM sli_1m"), 400);
    // Vacuum (grace 0, nothing running) deleted the expired days' files from the disk.
    let on_disk: Vec<String> = std::fs::read_dir(env.data_dir().join("tables/requests"))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let has_files = std::fs::read_dir(e.path()).ok()?.next().is_some();
            (has_files && name.starts_with("date=")).then(|| name[5..].to_owned())
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(on_disk, kept, "days with files on disk");
}

/// A local S3-compatible server (moto, from the virtualenv `scripts/test` prepares) on a
/// free port of 127.0.0.1, with one bucket; killed on drop.
struct S3Server {
    child: std::process::Child,
    endpoint: String,
}

impl S3Server {
    fn start(bucket: &str) -> Self {
        let python = crate::support::test_python();
        let port = crate::support::free_port();
        let moto = python.with_file_name("moto_server");
        let child = std::process::Command::new(&moto)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "starting {} (scripts/test installs it): {e}",
                    moto.display()
                )
            });
        let endpoint = format!("http://127.0.0.1:{port}");
        // moto imports a lot of Python: seconds on a loaded 2-core machine.
        let deadline = Instant::now() + Duration::from_secs(120);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not listen");
            std::thread::sleep(Duration::from_millis(100));
        }
        let made = std::process::Command::new(&python)
            .args([
                "-c",
                &format!(
                    "import boto3; boto3.client('s3', endpoint_url='{endpoint}', \
                     region_name='us-east-1', aws_access_key_id='test', \
                     aws_secret_access_key='test').create_bucket(Bucket='{bucket}')"
                ),
            ])
            .status()
            .unwrap();
        assert!(made.success(), "creating the bucket");
        Self { child, endpoint }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// With `storage.url` on an S3-compatible server, every table lives there: the totals are
/// exact through `nines sql` and through the independent Delta reader, and nothing of the
/// tables is on the local disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_on_s3_are_exact() {
    let s3 = S3Server::start("nines-tables");
    let mut env = Env::with_config(&format!(
        "[storage]\nurl = \"s3://nines-tables/prod\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\n\
         allow_http = true\naccess_key_id = \"test\"\nsecret_access_key = \"test\"\n",
        s3.endpoint
    ));
    env.tables_root = Some((
        "s3://nines-tables/prod".into(),
        serde_json::json!({
            "AWS_ENDPOINT_URL": s3.endpoint,
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_ALLOW_HTTP": "true",
        }),
    ));
    let _up = env.up();
    let mut client = env.client().await;
    let mut generator = Generator::new(WorkloadSpec {
        seed: 3,
        ..WorkloadSpec::default()
    });
    let mut ledger = Ledger::default();
    for i in 0..12 {
        let push = generator.push(i % 4, 100, now_ns());
        push_ok(&mut client, &push).await;
        ledger.record(&push);
    }
    assert_tables_equal_ledger(&env, &ledger, Duration::from_secs(60));
    assert!(
        !env.data_dir().join("tables").exists(),
        "no table is written locally"
    );
    // Two compactions race on the same files. Commits are put-if-absent on S3: one wins
    // each version, the other retries or gives up, and the totals do not move.
    let files_before = delta_reader(&env, &[])["files"]["requests"].clone();
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| env.run(&["compact"]));
        let b = scope.spawn(|| env.run(&["compact"]));
        (a.join().unwrap(), b.join().unwrap())
    });
    println!("[s3] racing compactions: {a:?} / {b:?}");
    assert!(a.is_ok() || b.is_ok(), "{a:?} {b:?}");
    assert_tables_equal_ledger(&env, &ledger, Duration::from_secs(10));
    let files_after = delta_reader(&env, &[])["files"]["requests"].clone();
    println!("[s3] requests files per day: {files_before} before, {files_after} after");
    for n in files_after.as_object().unwrap().values() {
        assert_eq!(n, 1, "{files_after}");
    }
}
