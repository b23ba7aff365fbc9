//! One query engine kept across commits, a compaction and a vacuum. The engine keeps each
//! table's state (its live files) between scans and advances it at the start of each
//! (`nines_query::session`), so these are the cases where a stale state would show: a
//! commit it has not read (a count too low), a compaction it has not read (rows counted
//! twice, or files gone after the vacuum).

use std::time::Duration;

use arrow::array::{Array, Int64Array};
use nines_aggregate::PartitionBuffer;
use nines_model::clock::now_ns;
use nines_proto::v1::{EventBatch, RequestEvent, Resource};
use nines_query::QueryEngine;
use nines_store::{CommitOutcome, Store};

const TOPIC: &str = "nines.events";

/// `n` requests of service `orders`, distinct trace ids from `first`, the last a moment ago
/// and each a millisecond before the next.
fn batch(first: usize, n: usize) -> EventBatch {
    batch_at(first, n, now_ns())
}

/// [`batch`], the last at `newest` (ns since the epoch).
fn batch_at(first: usize, n: usize, newest: i64) -> EventBatch {
    EventBatch {
        resource: Some(Resource {
            tenant: "t".into(),
            service: "orders".into(),
            environment: "production".into(),
            version: "1".into(),
        }),
        requests: (first..first + n)
            .map(|i| RequestEvent {
                time_unix_nano: newest - (i - first) as i64 * 1_000_000,
                operation: "GET /orders".into(),
                status_code: 200,
                duration_nano: 1_000_000,
                trace_id: format!("{i:032x}"),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// Commits `batch` as the record at `offset` of partition 0, as an aggregator would.
pub(crate) async fn commit(store: &Store, offset: i64, batch: &EventBatch) {
    let mut buffer = PartitionBuffer::new(0);
    buffer.add(batch, offset);
    let flush = buffer.take().expect("arrow").expect("events");
    let expected = store.positions(TOPIC, 0).await.expect("positions");
    let outcome = store
        .commit(TOPIC, &flush, &expected, |_| false)
        .await
        .expect("commit");
    assert!(
        matches!(outcome, CommitOutcome::Committed(_)),
        "{outcome:?}"
    );
}

/// The one integer of `sql`'s one-row answer.
async fn scalar(engine: &QueryEngine, sql: &str) -> i64 {
    let (_, batches) = engine.sql(sql).await.expect("query");
    let c = batches[0].column(0);
    c.as_any()
        .downcast_ref::<Int64Array>()
        .expect("int64")
        .value(0)
}

/// [`scalar`] through a caller's session of `scope`, as the doors run a statement.
async fn scoped_scalar(engine: &QueryEngine, scope: &nines_query::Scope, sql: &str) -> i64 {
    let ctx = engine.session(scope, 64 << 20).expect("session");
    let batches = ctx
        .sql(sql)
        .await
        .expect("plan")
        .collect()
        .await
        .expect("run");
    let c = batches[0].column(0);
    c.as_any()
        .downcast_ref::<Int64Array>()
        .expect("int64")
        .value(0)
}

/// `count(*)` and `count(DISTINCT trace_id)` of `requests`, through `engine`.
async fn counts(engine: &QueryEngine) -> (i64, i64) {
    let (_, batches) = engine
        .sql("SELECT count(*) AS n, count(DISTINCT trace_id) AS d FROM requests")
        .await
        .expect("query");
    let column = |i: usize| {
        let c = batches[0].column(i);
        let c = c.as_any().downcast_ref::<Int64Array>().expect("int64");
        assert_eq!(c.len(), 1);
        c.value(0)
    };
    (column(0), column(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_engine_sees_every_commit_a_compaction_and_a_vacuum() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_dir(dir.path()).await.expect("store");
    commit(&store, 0, &batch(0, 100)).await;
    let engine = QueryEngine::new(&store).await.expect("engine");
    assert_eq!(counts(&engine).await, (100, 100));
    // Each commit is seen by the next query of the same engine.
    for k in 1..=5 {
        commit(&store, k, &batch(100 + 50 * (k as usize - 1), 50)).await;
        let n = 100 + 50 * k;
        assert_eq!(counts(&engine).await, (n, n), "after commit {k}");
    }
    assert_eq!(store.data_files("requests").await.unwrap().len(), 6);
    // A compaction removes the six files and adds one: no row twice, none lost.
    let report = store.compact("requests", 128 << 20).await.expect("compact");
    assert_eq!(
        store.data_files("requests").await.unwrap().len(),
        1,
        "{report:?}"
    );
    assert_eq!(counts(&engine).await, (350, 350));
    // The vacuum deletes the six: the engine reads only the compacted file.
    assert_eq!(store.vacuum("requests", Duration::ZERO).await.unwrap(), 6);
    assert_eq!(counts(&engine).await, (350, 350));
    commit(&store, 6, &batch(350, 10)).await;
    assert_eq!(counts(&engine).await, (360, 360));
}

/// A caller's statement runs in a session of its own (`QueryEngine::session`, per statement
/// through Flight SQL and `POST /v1/sql`). Every session reads Parquet footers through the
/// engine's one metadata cache: the first reads each file's footer once, the next reads none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_session_reads_footers_through_the_engines_one_cache() {
    use nines_query::session::Scope;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_dir(dir.path()).await.expect("store");
    for k in 0..3 {
        commit(&store, k, &batch(10 * k as usize, 10)).await;
    }
    let engine = QueryEngine::new(&store).await.expect("engine");
    assert_eq!(engine.metadata_cache().len(), 0);
    for (i, scope) in [Scope::All, Scope::Tenant("t".into())].iter().enumerate() {
        let n = scoped_scalar(
            &engine,
            scope,
            "SELECT count(DISTINCT trace_id) AS n FROM requests",
        )
        .await;
        assert_eq!(n, 30, "session {i}");
        // One entry per data file of `requests`, whichever session read it first.
        assert_eq!(engine.metadata_cache().len(), 3, "after session {i}");
    }
}

/// The scan reads strings as string views (`nines_query::session`), yet every result, from
/// nines' own queries and from a door, comes in the types docs/tables.md gives: plain
/// `Utf8`, also inside a deploy's list of commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_keep_the_tables_types() {
    use arrow::array::{AsArray, ListArray, StringArray};
    use nines_model::schema::{TABLES, for_table};
    use nines_proto::v1::{Commit, DeployEvent};
    use nines_query::{Limits, Runner, Scope};

    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_dir(dir.path()).await.expect("store");
    let mut events = batch(0, 3);
    events.deploys.push(DeployEvent {
        time_unix_nano: now_ns(),
        commits: vec![Commit {
            sha: "abc123".into(),
            time_unix_nano: now_ns() - 3_600_000_000_000,
        }],
        ..Default::default()
    });
    commit(&store, 0, &events).await;
    let engine = QueryEngine::new(&store).await.expect("engine");
    let runner = Runner::new(
        QueryEngine::new(&store).await.expect("engine"),
        Limits::default(),
    );
    for name in TABLES {
        let sql = format!("SELECT * FROM {name}");
        let (schema, batches) = engine.sql(&sql).await.expect("query");
        let door = runner.run("test", &Scope::All, &sql).await.expect("door");
        for got in [&schema, &door[0].schema] {
            for want in for_table(name).expect("table").fields() {
                let field = got.field_with_name(want.name()).expect("column");
                // Nested fields keep the names Delta gives them (a map's `key_value`).
                assert!(
                    field.data_type().equals_datatype(want.data_type()),
                    "{name}.{}: {} where {} is due",
                    want.name(),
                    field.data_type(),
                    want.data_type()
                );
            }
        }
        for b in batches.iter().chain(&door[0].batches) {
            assert_eq!(b.schema(), schema, "{name}: batches in the result's schema");
        }
    }
    let (_, batches) = engine
        .sql("SELECT service, operation FROM requests ORDER BY trace_id")
        .await
        .expect("query");
    let text = |i: usize| batches[0].column(i).as_string::<i32>().clone();
    assert_eq!(text(0), StringArray::from(vec!["orders"; 3]));
    assert_eq!(text(1), StringArray::from(vec!["GET /orders"; 3]));
    let (_, batches) = engine
        .sql("SELECT commits FROM deploys")
        .await
        .expect("query");
    let commits: &ListArray = batches[0].column(0).as_list();
    let commit = commits.value(0);
    let sha = commit.as_struct().column_by_name("sha").expect("sha");
    assert_eq!(sha.as_string::<i32>().value(0), "abc123");
}

/// A time window is the scan's to apply (`nines_query::proven`): it is dropped, and its
/// column not read, when every live file lies inside it, and applied when one does not;
/// a file committed after the engine was made is judged by its own bounds. 100 requests of
/// the last 100 ms, then 40 of two days ago, then 30 of another tenant, each counted by the
/// test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_every_file_lies_inside_is_dropped_and_any_other_applied() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_dir(dir.path()).await.expect("store");
    commit(&store, 0, &batch(0, 100)).await;
    let engine = QueryEngine::new(&store).await.expect("engine");
    let month = "time >= now() - INTERVAL '30 days'";
    let day = "time >= now() - INTERVAL '1 day'";
    let count = |filter: &str| format!("SELECT count(*) FROM requests WHERE {filter}");
    assert_eq!(scalar(&engine, &count(month)).await, 100);
    assert_eq!(scalar(&engine, &count(day)).await, 100);
    // The plan reads no `time` and has no predicate left: the statistics proved it.
    let plan = |sql: String| {
        let engine = &engine;
        async move {
            let (schema, batches) = engine
                .sql(&format!("EXPLAIN {sql}"))
                .await
                .expect("explain");
            nines_query::format::render(schema, &batches, nines_query::OutputFormat::Csv)
                .expect("render")
        }
    };
    let proven = plan(format!("SELECT trace_id FROM requests WHERE {month}")).await;
    let physical = &proven[proven.find("physical_plan").expect("physical plan")..];
    assert!(!physical.contains("time"), "{proven}");

    // Late events: two days old, in a file of their own (another date partition).
    let two_days = 2 * 86_400 * 1_000_000_000;
    commit(&store, 1, &batch_at(100, 40, now_ns() - two_days)).await;
    assert_eq!(scalar(&engine, &count(month)).await, 140);
    assert_eq!(scalar(&engine, &count(day)).await, 100);
    assert_eq!(
        scalar(&engine, &count("time < now() - INTERVAL '1 day'")).await,
        40
    );
    assert_eq!(
        scalar(
            &engine,
            &count("time BETWEEN now() - INTERVAL '3 days' AND now() - INTERVAL '1 day'")
        )
        .await,
        40
    );
    // Applied above the scan: the Parquet reader skips by it and does not filter rows.
    let applied = plan(format!("SELECT trace_id FROM requests WHERE {day}")).await;
    assert!(applied.contains("FilterExec: time@"), "{applied}");
    assert!(applied.contains("predicate=time"), "{applied}");
    let listed =
        plan("SELECT trace_id FROM requests WHERE service IN ('orders', 'x')".into()).await;
    assert!(listed.contains("FilterExec: service@"), "{listed}");
    // The partition column asked for before the others, the filter's column after them.
    let (_, batches) = engine
        .sql(
            "SELECT date, count(*) AS n FROM requests WHERE time < now() - INTERVAL '1 day' \
             GROUP BY date",
        )
        .await
        .expect("query");
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 1, "the late events' one day");
    let n = batches[0].column(1).as_any().downcast_ref::<Int64Array>();
    assert_eq!(n.expect("int64").value(0), 40);
    // The filter's column read for it and not returned; a limit counted after the filter.
    let (schema, batches) = engine
        .sql("SELECT trace_id FROM requests WHERE time < now() - INTERVAL '1 day' LIMIT 7")
        .await
        .expect("query");
    assert_eq!(schema.fields().len(), 1);
    let late: Vec<String> = (100..140).map(|i| format!("{i:032x}")).collect();
    let mut seen = 0;
    for b in &batches {
        let ids = arrow::array::AsArray::as_string::<i32>(b.column(0));
        for id in ids.iter().flatten() {
            assert!(late.iter().any(|l| l == id), "{id} is not a late request");
            seen += 1;
        }
    }
    assert_eq!(seen, 7);

    // A tenant's session: the window dropped, the tenant's restriction kept.
    let mut other = batch_at(200, 30, now_ns());
    other.resource.as_mut().expect("resource").tenant = "u".into();
    commit(&store, 2, &other).await;
    assert_eq!(scalar(&engine, &count(month)).await, 170);
    for (tenant, n) in [("t", 140), ("u", 30)] {
        let scope = nines_query::Scope::Tenant(tenant.into());
        assert_eq!(
            scoped_scalar(&engine, &scope, &count(month)).await,
            n,
            "tenant {tenant}"
        );
    }
}

/// A file larger than a morsel (4 MiB at least) is read in byte ranges that the partitions
/// share as they run out of work (`nines_query::session`'s `in_morsels`): every row once,
/// whichever range its row group's first page falls in. One commit of 700,000 requests with
/// trace ids ZSTD cannot shrink much (one file of several row groups, over 12 MiB), counted
/// and summed by the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_file_is_read_in_morsels_every_row_once() {
    // splitmix64: distinct, evenly spread 64-bit values.
    fn mix(i: u64) -> u64 {
        let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_dir(dir.path()).await.expect("store");
    let n = 700_000_usize;
    let mut events = batch(0, n);
    let mut duration_sum = 0_i64;
    for (i, r) in events.requests.iter_mut().enumerate() {
        r.trace_id = format!("{:016x}{:016x}", mix(i as u64), mix(!(i as u64)));
        r.duration_nano = 1_000 + (mix(i as u64) % 1_000_000) as i64;
        duration_sum += r.duration_nano;
    }
    commit(&store, 0, &events).await;
    let files = store.data_files("requests").await.expect("files");
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].1 > 12 << 20, "a file of {} bytes", files[0].1);

    let engine = QueryEngine::new(&store).await.expect("engine");
    let (_, plan) = engine
        .sql("EXPLAIN SELECT sum(duration_ns) AS s FROM requests")
        .await
        .expect("explain");
    let plan = nines_query::format::render(plan[0].schema(), &plan, nines_query::OutputFormat::Csv)
        .expect("render");
    let ranges = plan.matches(".parquet:").count();
    assert!(ranges >= 3, "the file read in {ranges} ranges:\n{plan}");

    assert_eq!(counts(&engine).await, (n as i64, n as i64));
    let sum = scalar(&engine, "SELECT sum(duration_ns) AS s FROM requests").await;
    assert_eq!(sum, duration_sum);
}
