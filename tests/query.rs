//! The query server (docs/query.md) with real clients: arrow-flight's `FlightSqlServiceClient`,
//! ADBC's Flight SQL driver and raw `pyarrow.flight` (tests/tools/flight_clients.py), and
//! reqwest over `POST /v1/sql` in every format. Two tenants see only their own rows through
//! joins and subqueries; an operator key sees both; hostile statements are refused with their
//! exact errors while the server keeps answering.

use std::process::Command;
use std::time::Duration;

use arrow::array::{Array, AsArray};
use arrow::record_batch::RecordBatch;
use arrow_flight::sql::CommandGetTables;
use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::TryStreamExt;
use nines_proto::v1::{DeployEvent, DeployOutcome, PushRequest, RequestEvent, Resource};
use serde_json::{Value, json};
use tonic::transport::Channel;

use crate::support::{Env, now_ns, push_ok_with_key, test_python};

/// Requests each tenant sends: (tenant, requests, an error every `n`th).
const TENANTS: [(&str, usize, usize); 2] = [("acme", 3_000, 7), ("globex", 1_000, 10)];

const COUNT: &str = "SELECT count(*) AS n, sum(CAST(error AS BIGINT)) AS errors, count(DISTINCT tenant) AS tenants FROM requests";
/// A join across tables: both tenants call their service `checkout`, so a join on the
/// service alone would pair one tenant's requests with the other's deploys if a side leaked.
const JOIN: &str = "SELECT r.tenant, d.tenant AS deploy_tenant, count(*) AS n \
     FROM requests r JOIN deploys d ON r.service = d.service \
     GROUP BY r.tenant, d.tenant ORDER BY r.tenant, d.tenant";
const SUBQUERY: &str = "SELECT count(*) AS n FROM requests \
     WHERE service IN (SELECT service FROM sli_1m WHERE total > 0) \
     AND (SELECT count(*) FROM sli_1m) > 0";
/// The p99 from merged sketches, beside plain sums.
const SKETCH: &str = "SELECT service, sum(total) AS total, sum(errors) AS errors, \
     sketch_quantile(latency_sketch, 0.99) AS p99 FROM sli_1m GROUP BY service";

fn key(tenant: &str) -> String {
    format!("{tenant}-query-key")
}

/// The errors each tenant's requests carry (every `n`th, from the first).
fn errors(count: usize, every: usize) -> usize {
    count.div_ceil(every)
}

async fn flight(env: &Env, key: Option<&str>) -> FlightSqlServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://127.0.0.1:{}", env.query_port))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = FlightSqlServiceClient::new(channel);
    if let Some(k) = key {
        client.handshake("analyst", k).await.unwrap();
    }
    client
}

/// Runs `sql` through Flight SQL's statement path: the announced schema, the batches.
async fn flight_sql(
    client: &mut FlightSqlServiceClient<Channel>,
    sql: &str,
) -> Result<(arrow::datatypes::Schema, Vec<RecordBatch>), tonic::Status> {
    let info = client
        .execute(sql.to_owned(), None)
        .await
        .map_err(status_of)?;
    let announced = info.clone().try_decode_schema().unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let stream = client.do_get(ticket).await.map_err(status_of)?;
    let batches: Vec<RecordBatch> = stream.try_collect().await.map_err(status_of)?;
    Ok((announced, batches))
}

fn status_of(e: arrow_flight::error::FlightError) -> tonic::Status {
    match e {
        arrow_flight::error::FlightError::Tonic(s) => *s,
        other => tonic::Status::unknown(other.to_string()),
    }
}

/// The batches of a `FlightInfo`'s one endpoint.
async fn fetch(
    c: &mut FlightSqlServiceClient<Channel>,
    info: &arrow_flight::FlightInfo,
) -> Vec<RecordBatch> {
    c.do_get(info.endpoint[0].ticket.clone().unwrap())
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

/// The rows of batches as JSON objects (the CLI's `jsonl`, parsed).
fn json_of(batches: &[RecordBatch]) -> Vec<Value> {
    let mut out = Vec::new();
    let mut w = arrow::json::LineDelimitedWriter::new(&mut out);
    w.write_batches(&batches.iter().collect::<Vec<_>>())
        .unwrap();
    w.finish().unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `POST /v1/sql` with `key`: status, content type, body.
async fn http(env: &Env, key: Option<&str>, sql: &str, format: &str) -> (u16, String, Vec<u8>) {
    let mut request = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/v1/sql", env.query_port))
        .header("content-type", "application/json")
        .body(json!({"sql": sql, "format": format}).to_string());
    if let Some(k) = key {
        request = request.header("authorization", format!("Bearer {k}"));
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (
        status,
        content_type,
        response.bytes().await.unwrap().to_vec(),
    )
}

async fn http_json(env: &Env, key: &str, sql: &str) -> Value {
    let (status, _, body) = http(env, Some(key), sql, "json").await;
    let text = String::from_utf8(body).unwrap();
    assert_eq!(status, 200, "{sql}: {text}");
    serde_json::from_str(&text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_query_over_flight_sql_and_http_and_see_only_their_rows() {
    let mut extra = String::new();
    for (tenant, _, _) in TENANTS {
        extra += &format!(
            "[[ingest.api_keys]]\ntenant = {tenant:?}\nkey = \"{tenant}-ingest-key\"\n\
             [[query.api_keys]]\ntenant = {tenant:?}\nkey = {:?}\n",
            key(tenant)
        );
    }
    extra += "[[query.api_keys]]\ntenant = \"*\"\nkey = \"ops-query-key\"\n\
              [query.limits]\nmax_memory_bytes = 16777216\ntimeout = \"3s\"\n\
              max_result_rows = 100000\nmax_concurrent_queries = 2\n";
    let env = Env::with_config(&extra);
    let _up = env.up();

    // Each tenant's `checkout`: requests a minute apart, 20 to 40 minutes ago.
    let mut client = env.client().await;
    let start = now_ns() - 40 * 60 * 1_000_000_000;
    for (tenant, count, every) in TENANTS {
        let requests: Vec<RequestEvent> = (0..count)
            .map(|i| RequestEvent {
                time_unix_nano: start + (i as i64 % 20) * 60_000_000_000 + i as i64,
                operation: "GET /cart".into(),
                status_code: if i % every == 0 { 500 } else { 200 },
                error: i % every == 0,
                duration_nano: 1_000_000 + (i as i64 % 100) * 100_000,
                ..Default::default()
            })
            .collect();
        let push = PushRequest {
            resource: Some(Resource {
                tenant: String::new(),
                service: "checkout".into(),
                environment: "prod".into(),
                version: "v1".into(),
            }),
            batch_id: format!("query-{tenant}"),
            requests,
            deploys: vec![DeployEvent {
                time_unix_nano: start - 60_000_000_000,
                outcome: DeployOutcome::Succeeded as i32,
                ..Default::default()
            }],
            ..Default::default()
        };
        push_ok_with_key(&mut client, &push, Some(&format!("{tenant}-ingest-key"))).await;
    }
    let total: usize = TENANTS.iter().map(|t| t.1).sum();
    let timeout = Duration::from_secs(120);
    assert_eq!(
        env.wait_for("SELECT sum(total) FROM sli_1m", total as i64, timeout),
        total as i64
    );
    assert_eq!(
        env.wait_for("SELECT count(*) FROM requests", total as i64, timeout),
        total as i64
    );
    assert_eq!(env.wait_for("SELECT count(*) FROM deploys", 2, timeout), 2);

    let t = std::time::Instant::now();
    check_tenants(&env).await;
    check_flight_metadata_and_prepared(&env).await;
    eprintln!("rust flight client and http done at {:?}", t.elapsed());
    check_third_party_clients(&env);
    eprintln!("third-party clients done at {:?}", t.elapsed());
    check_http_formats(&env).await;
    check_refusals(&env).await;
    eprintln!("refusals done at {:?}", t.elapsed());
    check_cli(&env);
}

async fn check_tenants(env: &Env) {
    for (tenant, count, every) in TENANTS {
        let want = json!([{"n": count, "errors": errors(count, every), "tenants": 1}]);
        // HTTP.
        assert_eq!(http_json(env, &key(tenant), COUNT).await, want, "{tenant}");
        assert_eq!(
            http_json(env, &key(tenant), JOIN).await,
            json!([{"tenant": tenant, "deploy_tenant": tenant, "n": count}]),
            "{tenant}"
        );
        assert_eq!(
            http_json(env, &key(tenant), SUBQUERY).await,
            json!([{"n": count}]),
            "{tenant}"
        );
        // The unrestricted tables have no name: the session's only tables are the restricted
        // views (its fully qualified names included) and information_schema's.
        assert_eq!(
            http_json(
                env,
                &key(tenant),
                "SELECT count(*) AS n FROM datafusion.public.requests"
            )
            .await,
            json!([{"n": count}])
        );
        let mut names: Vec<&str> = nines_model::schema::TABLES.to_vec();
        names.sort_unstable();
        let views: Vec<Value> = names
            .iter()
            .map(|t| json!({"table_catalog": "datafusion", "table_schema": "public", "table_name": t, "table_type": "VIEW"}))
            .collect();
        assert_eq!(
            http_json(
                env,
                &key(tenant),
                "SELECT table_catalog, table_schema, table_name, table_type \
                 FROM information_schema.tables WHERE table_schema <> 'information_schema' \
                 ORDER BY table_name"
            )
            .await,
            Value::Array(views)
        );
        // Flight SQL, after the Basic handshake.
        let mut c = flight(env, Some(&key(tenant))).await;
        let (announced, batches) = flight_sql(&mut c, COUNT).await.unwrap();
        assert_eq!(&announced, batches[0].schema().as_ref(), "schema agreement");
        assert_eq!(Value::Array(json_of(&batches)), want, "{tenant}");
        let (_, batches) = flight_sql(&mut c, JOIN).await.unwrap();
        assert_eq!(
            Value::Array(json_of(&batches)),
            json!([{"tenant": tenant, "deploy_tenant": tenant, "n": count}])
        );
        let (_, batches) = flight_sql(&mut c, SUBQUERY).await.unwrap();
        assert_eq!(Value::Array(json_of(&batches)), json!([{"n": count}]));
    }
    // The tenant's filter reaches the Parquet scan's pruning (files and row groups of other
    // tenants are skipped by their statistics), not only a filter above the scan.
    let plan = http_json(env, &key("acme"), "EXPLAIN SELECT count(*) FROM requests").await;
    let physical = plan
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["plan_type"] == "physical_plan")
        .map(|r| r["plan"].as_str().unwrap().to_owned())
        .unwrap();
    let scan = physical
        .lines()
        .find(|l| l.contains("DataSourceExec"))
        .unwrap_or_else(|| panic!("{physical}"));
    assert!(
        scan.contains("predicate=tenant@")
            && scan.contains("= acme")
            && scan.contains("pruning_predicate="),
        "{physical}"
    );
    // The operator sees both, and the join pairs across tenants.
    let (a, g) = (TENANTS[0].1, TENANTS[1].1);
    assert_eq!(
        http_json(env, "ops-query-key", JOIN).await,
        json!([
            {"tenant": "acme", "deploy_tenant": "acme", "n": a},
            {"tenant": "acme", "deploy_tenant": "globex", "n": a},
            {"tenant": "globex", "deploy_tenant": "acme", "n": g},
            {"tenant": "globex", "deploy_tenant": "globex", "n": g},
        ])
    );
    // A key is needed, and it must be one of ours.
    let (status, _, body) = http(env, None, COUNT, "json").await;
    assert_eq!(
        (status, serde_json::from_slice::<Value>(&body).unwrap()),
        (
            401,
            json!({"error": {"code": "unauthenticated", "message": "missing query key: send `authorization: Bearer <key>`"}})
        )
    );
    let (status, _, body) = http(env, Some("nope"), COUNT, "json").await;
    assert_eq!(
        (status, serde_json::from_slice::<Value>(&body).unwrap()),
        (
            401,
            json!({"error": {"code": "unauthenticated", "message": "unknown query key"}})
        )
    );
    let mut anonymous = flight(env, None).await;
    let e = flight_sql(&mut anonymous, COUNT).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    let mut wrong = flight(env, None).await;
    let e = wrong.handshake("analyst", "nope").await.unwrap_err();
    assert!(e.to_string().contains("unknown query key"), "{e}");

    // A ticket is the caller's: another tenant cannot run it, nor can anyone forge one.
    let mut acme = flight(env, Some(&key("acme"))).await;
    let info = acme.execute(COUNT.to_owned(), None).await.unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let mut globex = flight(env, Some(&key("globex"))).await;
    let stolen = globex.do_get(ticket.clone()).await;
    let e = match stolen {
        Ok(s) => s.try_collect::<Vec<_>>().await.unwrap_err().to_string(),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("the statement ticket was issued to another caller"),
        "{e}"
    );
    let mut forged = ticket.ticket.to_vec();
    let at = forged.len() - 20;
    forged[at] ^= 1;
    let e = match acme.do_get(arrow_flight::Ticket::new(forged)).await {
        Ok(s) => s.try_collect::<Vec<_>>().await.unwrap_err().to_string(),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("not a valid statement ticket") || e.contains("decod"),
        "{e}"
    );
}

async fn check_flight_metadata_and_prepared(env: &Env) {
    let mut c = flight(env, Some(&key("acme"))).await;
    // The tables and their schemas, as a client lists them.
    let info = c
        .get_tables(CommandGetTables {
            include_schema: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let batches = fetch(&mut c, &info).await;
    let names: Vec<String> = batches
        .iter()
        .flat_map(|b| {
            let col = b.column_by_name("table_name").unwrap().as_string::<i32>();
            (0..col.len())
                .map(|i| col.value(i).to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    let mut want: Vec<String> = nines_model::schema::TABLES
        .iter()
        .map(|t| t.to_string())
        .collect();
    want.sort();
    let mut got = names.clone();
    got.sort();
    assert_eq!(got, want);
    // A prepared statement, as ADBC runs every query; an empty result still has its schema.
    let mut prepared = c
        .prepare(
            "SELECT service, count(*) AS n FROM requests WHERE error GROUP BY service".into(),
            None,
        )
        .await
        .unwrap();
    let announced = prepared.dataset_schema().unwrap().clone();
    let info = prepared.execute().await.unwrap();
    let batches = fetch(&mut c, &info).await;
    assert_eq!(batches[0].schema().as_ref(), &announced);
    assert_eq!(
        Value::Array(json_of(&batches)),
        json!([{"service": "checkout", "n": errors(TENANTS[0].1, TENANTS[0].2)}])
    );
    prepared.close().await.unwrap();
    let (announced, batches) = flight_sql(
        &mut c,
        "SELECT max(duration_ns) AS m FROM requests WHERE false",
    )
    .await
    .unwrap();
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(rows, 1);
    assert_eq!(&announced, batches[0].schema().as_ref());
}

/// ADBC and raw pyarrow.flight get what `nines sql` (every tenant) filtered to the tenant
/// gets.
fn check_third_party_clients(env: &Env) {
    let script = crate::support::repo_root().join("tests/tools/flight_clients.py");
    for (tenant, count, every) in TENANTS {
        let sketch_cli = env.sql(&SKETCH.replace(
            "FROM sli_1m",
            &format!("FROM sli_1m WHERE tenant = '{tenant}'"),
        ));
        let out = Command::new(test_python())
            .arg(&script)
            .arg(format!("grpc://127.0.0.1:{}", env.query_port))
            .arg("analyst")
            .arg(key(tenant))
            .arg(COUNT)
            .arg(SKETCH)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<Value> = stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let want = json!([{"n": count, "errors": errors(count, every), "tenants": 1}]);
        assert_eq!(lines[0]["adbc"], want, "{tenant}");
        assert_eq!(lines[0]["raw"], want, "{tenant}");
        assert_eq!(
            lines[1]["adbc"],
            Value::Array(sketch_cli.clone()),
            "{tenant}"
        );
        assert_eq!(lines[1]["raw"], Value::Array(sketch_cli), "{tenant}");
        for l in &lines {
            assert_eq!(l["schemas_agree"], true, "{l}");
        }
    }
}

async fn check_http_formats(env: &Env) {
    let k = key("acme");
    let sql = "SELECT error, count(*) AS n FROM requests GROUP BY error ORDER BY error";
    let (n, e) = (TENANTS[0].1, errors(TENANTS[0].1, TENANTS[0].2));
    let (status, ct, body) = http(env, Some(&k), sql, "json").await;
    assert_eq!((status, ct.as_str()), (200, "application/json"));
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!([{"error": false, "n": n - e}, {"error": true, "n": e}])
    );
    let (status, ct, body) = http(env, Some(&k), sql, "jsonl").await;
    assert_eq!((status, ct.as_str()), (200, "application/x-ndjson"));
    assert_eq!(
        String::from_utf8(body).unwrap(),
        format!(
            "{{\"error\":false,\"n\":{}}}\n{{\"error\":true,\"n\":{e}}}\n",
            n - e
        )
    );
    let (status, ct, body) = http(env, Some(&k), sql, "csv").await;
    assert_eq!((status, ct.as_str()), (200, "text/csv; charset=utf-8"));
    assert_eq!(
        String::from_utf8(body).unwrap(),
        format!("error,n\nfalse,{}\ntrue,{e}\n", n - e)
    );
    let (status, ct, body) = http(env, Some(&k), sql, "arrow").await;
    assert_eq!(
        (status, ct.as_str()),
        (200, "application/vnd.apache.arrow.stream")
    );
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None).unwrap();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    assert_eq!(
        Value::Array(json_of(&batches)),
        json!([{"error": false, "n": n - e}, {"error": true, "n": e}])
    );
    // An empty result: `[]`, and an Arrow stream that still carries the schema.
    let empty = "SELECT tenant FROM requests WHERE false";
    let (_, _, body) = http(env, Some(&k), empty, "json").await;
    assert_eq!(body, b"[]");
    let (_, _, body) = http(env, Some(&k), empty, "arrow").await;
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None).unwrap();
    assert_eq!(reader.schema().field(0).name(), "tenant");
    // One statement per request, refused before either runs.
    let (status, _, body) = http(env, Some(&k), "SELECT 1; SELECT 2", "json").await;
    assert_eq!(
        (status, serde_json::from_slice::<Value>(&body).unwrap()),
        (
            400,
            json!({"error": {"code": "sql_error", "message": "2 statements: send one at a time"}})
        )
    );
    let (status, _, body) = http(env, Some(&k), empty, "xml").await;
    assert_eq!(
        (status, serde_json::from_slice::<Value>(&body).unwrap()),
        (
            400,
            json!({"error": {"code": "bad_request", "message": "format: \"xml\" is none of json, jsonl, csv, arrow"}})
        )
    );
}

/// What a read-only, limited server refuses, each with its exact error: (statement, code,
/// message).
fn hostile(config: &str) -> Vec<(String, &'static str, String)> {
    let ro = |kind: &str| {
        format!(
            "{kind} is refused: nines SQL is read-only (SELECT, WITH, EXPLAIN, SHOW and DESCRIBE)"
        )
    };
    vec![
        ("COPY (SELECT 1) TO '/tmp/nines-copy.parquet'".into(), "read_only", ro("COPY")),
        ("COPY requests TO '/tmp/nines-copy.csv'".into(), "read_only", ro("COPY")),
        (
            format!("CREATE EXTERNAL TABLE cfg STORED AS CSV LOCATION '{config}'"),
            "read_only",
            ro("CREATE EXTERNAL TABLE"),
        ),
        ("INSERT INTO requests SELECT * FROM requests".into(), "read_only", ro("INSERT")),
        ("DROP TABLE requests".into(), "read_only", ro("DROP TABLE")),
        ("DROP VIEW sli_1m".into(), "read_only", ro("DROP VIEW")),
        ("SET datafusion.execution.batch_size = 1".into(), "read_only", ro("SET")),
        ("CREATE VIEW v AS SELECT 1".into(), "read_only", ro("CREATE VIEW")),
        ("CREATE TABLE t AS SELECT * FROM requests".into(), "read_only", ro("CREATE TABLE")),
        ("CREATE SCHEMA s".into(), "read_only", ro("CREATE SCHEMA")),
        ("DELETE FROM requests".into(), "read_only", ro("DELETE")),
        ("UPDATE requests SET error = true".into(), "read_only", ro("UPDATE")),
        ("TRUNCATE requests".into(), "read_only", ro("TRUNCATE")),
        ("PREPARE p AS SELECT 1".into(), "read_only", ro("PREPARE")),
        ("EXPLAIN COPY (SELECT 1) TO '/tmp/nines-x.csv'".into(), "read_only", ro("COPY")),
        ("SELECT 1; DROP TABLE sli_1m".into(), "read_only", ro("DROP TABLE")),
        (
            format!("SELECT * FROM '{config}'"),
            "sql_error",
            format!("Error during planning: table 'datafusion.public.{config}' not found"),
        ),
        (
            "SELECT * FROM 'file:///etc/passwd'".into(),
            "sql_error",
            "Error during planning: table 'datafusion.public.file:///etc/passwd' not found".into(),
        ),
        (
            "SELECT * FROM range(1000000000000)".into(),
            "row_limit",
            "the result has more than 100000 rows (query.limits.max_result_rows): add a LIMIT or aggregate".into(),
        ),
        (
            "SELECT count(*) FROM range(1000000000000)".into(),
            "timeout",
            "the query ran longer than 3s (query.limits.timeout) and was cancelled".into(),
        ),
    ]
}

async fn check_refusals(env: &Env) {
    let config = env.config("one-shot").display().to_string();
    let k = key("acme");
    let corpus = hostile(&config);
    assert!(corpus.len() >= 20);
    for (sql, code, message) in &corpus {
        let (status, _, body) = http(env, Some(&k), sql, "json").await;
        let got: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            got,
            json!({"error": {"code": code, "message": message}}),
            "{sql} ({status})"
        );
        // The server goes on answering.
        assert_eq!(
            http_json(env, &k, "SELECT count(*) AS n FROM requests").await,
            json!([{"n": TENANTS[0].1}])
        );
    }
    // A cartesian product whose build side outgrows the query's 16 MiB.
    let (status, _, body) = http(
        env,
        Some(&k),
        "SELECT max(a.value + b.value) FROM range(5000000) a CROSS JOIN range(5000000) b",
        "json",
    )
    .await;
    let got: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (status, &got["error"]["code"]),
        (422, &json!("memory_limit")),
        "{got}"
    );
    let message = got["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("the query needs more memory than the 16777216 bytes a query may use (query.limits.max_memory_bytes): "),
        "{message}"
    );
    // The same refusals over Flight SQL, as gRPC statuses.
    let mut c = flight(env, Some(&k)).await;
    for (sql, code, message) in corpus.iter().filter(|(_, c, _)| *c != "timeout") {
        let e = flight_sql(&mut c, sql).await.unwrap_err();
        let want = match *code {
            "read_only" | "sql_error" => tonic::Code::InvalidArgument,
            _ => tonic::Code::ResourceExhausted,
        };
        assert_eq!(e.code(), want, "{sql}: {e}");
        assert!(e.message().contains(message.as_str()), "{sql}: {e}");
    }
    // Two slow queries hold both slots: a third is turned away at once, and the slots come
    // back when they end.
    let slow = "SELECT count(*) FROM range(1000000000000)";
    let (a, b) = (
        http(env, Some(&k), slow, "json"),
        http(env, Some(&k), slow, "json"),
    );
    let third = async {
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        http(env, Some(&k), "SELECT 1 AS one", "json").await
    };
    let (a, b, third) = tokio::join!(a, b, third);
    assert_eq!((a.0, b.0), (504, 504));
    let got: Value = serde_json::from_slice(&third.2).unwrap();
    assert_eq!(
        (third.0, got),
        (
            429,
            json!({"error": {"code": "too_many_queries", "message": "2 queries are running, the most this node runs at once (query.limits.max_concurrent_queries): retry shortly"}})
        )
    );
    assert_eq!(
        http_json(env, &k, "SELECT 1 AS one").await,
        json!([{"one": 1}])
    );
    // Every refusal is counted by door and reason.
    let metrics = env_metrics(env);
    for line in [
        "nines_query_queries_refused_total{door=\"http\",reason=\"read_only\"}",
        "nines_query_queries_refused_total{door=\"http\",reason=\"too_many_queries\"} 1",
        "nines_query_queries_refused_total{door=\"http\",reason=\"unauthenticated\"} 2",
        "nines_query_queries_refused_total{door=\"flight\",reason=\"read_only\"}",
        "nines_query_queries_refused_total{door=\"http\",reason=\"memory_limit\"} 1",
        "nines_query_queries_refused_total{door=\"http\",reason=\"bad_request\"} 1",
        "nines_query_queries_total{door=\"flight\",outcome=\"ok\"}",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
}

fn env_metrics(env: &Env) -> String {
    let port = crate::support::admin_port(&env.dir.path().join("up.toml"));
    nines_testkit::process::http_get(port, "/metrics").unwrap_or_default()
}

/// `nines sql` follows the analysts' conventions: `json` is one array, statements may
/// share a line, an error is one line.
fn check_cli(env: &Env) {
    let out = env.sql_raw("SELECT 1 AS a; SELECT 2 AS b;", "json");
    assert_eq!(out, "[{\"a\":1}]\n[{\"b\":2}]\n");
    let out = env.sql_raw("SELECT 1 AS a", "jsonl");
    assert_eq!(out, "{\"a\":1}\n");
    let e = env.try_sql_raw("DROP TABLE requests", "json").unwrap_err();
    assert_eq!(
        e.trim_end(),
        "error: DROP TABLE is refused: nines SQL is read-only (SELECT, WITH, EXPLAIN, SHOW and DESCRIBE)"
    );
}
