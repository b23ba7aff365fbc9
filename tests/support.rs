//! `TestServer`: runs `nines` roles as child processes on free ports.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nines_testkit::Ledger;
use nines_testkit::config::RoleConfig;
pub use nines_testkit::process::{Process as Role, free_port, metric};

pub use nines_model::clock::now_ns;
use nines_proto::v1::ingest_service_client::IngestServiceClient;
use nines_proto::v1::{PushRequest, PushResponse};
use tonic::transport::Channel;

pub const BIN: &str = env!("CARGO_BIN_EXE_nines");

/// Ports and files shared by the roles of one test.
#[derive(Debug)]
pub struct Env {
    pub dir: tempfile::TempDir,
    pub broker_port: u16,
    pub ingest_port: u16,
    /// The query server's (Flight SQL and HTTP) port.
    pub query_port: u16,
    /// TOML appended to every role's config (e.g. `[[ingest.api_keys]]` tables).
    pub extra_config: String,
    /// Where the tables are when not under the data directory (`storage.url`), and the
    /// storage options an independent reader needs there.
    pub tables_root: Option<(String, serde_json::Value)>,
}

/// A failing test shows what its roles said: the last lines of every role's log (CI keeps
/// nothing else of the temporary directory).
impl Drop for Env {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let Ok(entries) = std::fs::read_dir(self.dir.path()) else {
            return;
        };
        let mut logs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        logs.sort();
        for log in logs {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!("--- last {} lines of {} ---", tail.len(), log.display());
            for l in tail {
                eprintln!("{l}");
            }
        }
    }
}

impl Env {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            broker_port: free_port(),
            ingest_port: free_port(),
            query_port: free_port(),
            extra_config: String::new(),
            tables_root: None,
        }
    }

    /// An environment whose roles all get `extra` (TOML) merged into their config.
    pub fn with_config(extra: &str) -> Self {
        let mut env = Self::new();
        env.extra_config = extra.to_owned();
        env
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Writes a config for this environment (fast flushes, small session timeout) and
    /// returns its path.
    pub fn config(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.toml"));
        RoleConfig::new(
            &self.data_dir(),
            self.broker_port,
            self.ingest_port,
            free_port(),
        )
        .set("bus.session_timeout", "2s")
        .set("aggregate.flush_interval", "300ms")
        .set("query.listen", format!("127.0.0.1:{}", self.query_port))
        .merge(&self.extra_config)
        .expect("the test's extra configuration is TOML")
        .write(&path)
        .unwrap();
        path
    }

    pub fn kafka(&self) -> String {
        format!("127.0.0.1:{}", self.broker_port)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ingest_port)
    }

    /// Starts `nines <args>` with config `name`, overridden by `env` (`NINES__…` variables),
    /// and waits until its admin `/readyz` says ready.
    pub fn spawn(&self, name: &str, env: &[(&str, &str)], args: &[&str]) -> Role {
        let config = self.config(name);
        let admin = admin_port(&config);
        let log_path = self.dir.path().join(format!("{name}.log"));
        // Appends: a restarted role keeps its predecessor's log above its own.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        let mut command = Command::new(BIN);
        command
            .arg("--config")
            .arg(&config)
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log);
        Role::start(name, command, admin, log_path, Duration::from_secs(90))
    }

    /// `nines broker` and `nines ingest` as two processes (for tests that restart aggregators).
    pub fn broker_and_ingest(&self) -> (Role, Role) {
        let broker = self.spawn("broker", &[], &["broker"]);
        let kafka = self.kafka();
        let ingest = self.spawn("ingest", &[], &["ingest", "--kafka", &kafka]);
        (broker, ingest)
    }

    /// A `nines aggregate` process on this environment's broker.
    pub fn aggregator(&self, name: &str, env: &[(&str, &str)]) -> Role {
        self.spawn(name, env, &["aggregate", "--kafka", &self.kafka()])
    }

    /// `nines up`: every role in one process.
    pub fn up(&self) -> Role {
        self.spawn("up", &[], &["up"])
    }

    /// A connected native-API client.
    pub async fn client(&self) -> IngestServiceClient<Channel> {
        IngestServiceClient::connect(self.endpoint()).await.unwrap()
    }

    /// Runs `nines sql --format <format>` over this environment's data and returns stdout.
    pub fn sql_raw(&self, query: &str, format: &str) -> String {
        self.try_sql_raw(query, format)
            .unwrap_or_else(|e| panic!("nines sql failed: {e}"))
    }

    /// [`Env::sql_raw`], with the error text instead of a panic.
    pub fn try_sql_raw(&self, query: &str, format: &str) -> Result<String, String> {
        self.run(&["sql", "--format", format, query])
    }

    /// Runs a one-shot `nines <args>` with this environment's config: its stdout, or its
    /// stderr if it failed.
    pub fn run(&self, args: &[&str]) -> Result<String, String> {
        self.run_with(&[], args)
    }

    /// [`Env::run`] with `NINES__…` overrides.
    pub fn run_with(&self, env: &[(&str, &str)], args: &[&str]) -> Result<String, String> {
        let out = Command::new(BIN)
            .envs(env.iter().copied())
            .arg("--config")
            .arg(self.config("one-shot"))
            .args(["--log", "warn"])
            .args(args)
            .output()
            .unwrap();
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(String::from_utf8(out.stdout).unwrap())
    }

    /// Runs a query and returns its rows as JSON objects.
    pub fn sql(&self, query: &str) -> Vec<serde_json::Value> {
        self.sql_raw(query, "jsonl")
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The single integer a query returns (`SELECT count(*) AS n ...`); 0 for no rows/NULL.
    pub fn sql_i64(&self, query: &str) -> i64 {
        first_i64(&self.sql_raw(query, "jsonl"))
    }

    /// Polls `query` until it returns `expected` or `timeout` passes; returns the last value.
    /// Queries read Delta snapshots, so a failing query is a failure.
    pub fn wait_for(&self, query: &str, expected: i64, timeout: Duration) -> i64 {
        let deadline = Instant::now() + timeout;
        loop {
            let got = match self.try_sql_raw(query, "jsonl") {
                Ok(text) => first_i64(&text),
                Err(e) => panic!("nines sql failed: {e}"),
            };
            if got == expected || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

/// The first value of the first row of `nines sql --format json` output; 0 for none or NULL.
fn first_i64(json_lines: &str) -> i64 {
    json_lines
        .lines()
        .next()
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .and_then(|r| r.as_object().and_then(|o| o.values().next().cloned()))
        .and_then(|v| v.as_i64())
        .unwrap_or(0)
}

/// The JSON objects among a command's output lines (`--format json` prints one per line).
pub fn json_rows(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// The admin port a role's config file names.
pub fn admin_port(config: &Path) -> u16 {
    let text = std::fs::read_to_string(config).unwrap();
    let v: toml::Value = toml::from_str(&text).unwrap();
    let listen = v["admin"]["listen"].as_str().unwrap();
    listen.rsplit(':').next().unwrap().parse().unwrap()
}

/// Waits until the tables hold exactly the ledger, then checks every invariant: row count,
/// rollup totals and errors equal the ledger, and no event is stored twice (each generated
/// trace id is unique, and so is each event's (partition, offset, trace id)).
pub fn assert_tables_equal_ledger(env: &Env, ledger: &Ledger, timeout: Duration) {
    let expected = ledger.events() as i64;
    assert_eq!(
        env.wait_for("SELECT count(*) AS n FROM requests", expected, timeout),
        expected,
        "rows in requests"
    );
    assert_eq!(
        env.wait_for(
            "SELECT sum(total) AS n FROM sli_1m",
            expected,
            Duration::from_secs(30)
        ),
        expected,
        "sum(total) in sli_1m"
    );
    assert_eq!(
        env.sql_i64("SELECT count(DISTINCT trace_id) AS n FROM requests"),
        expected,
        "distinct trace ids"
    );
    assert_eq!(
        env.sql_i64(
            "SELECT count(*) AS n FROM (SELECT kafka_partition, kafka_offset, trace_id \
             FROM requests GROUP BY 1, 2, 3 HAVING count(*) > 1)"
        ),
        0,
        "an event stored twice from one (partition, offset)"
    );
    assert_eq!(
        env.sql_i64("SELECT sum(CASE WHEN error THEN 1 ELSE 0 END) AS n FROM requests"),
        ledger.errors() as i64,
        "errors in requests"
    );
    assert_eq!(
        env.sql_i64("SELECT sum(errors) AS n FROM sli_1m"),
        ledger.errors() as i64,
        "errors in sli_1m"
    );
    // The same totals through an independent Delta reader (delta-rs's Python package).
    let read = delta_reader(env, &[]);
    assert_eq!(
        read["requests_rows"], expected,
        "rows read by deltalake (Python)"
    );
    assert_eq!(
        read["requests_errors"],
        ledger.errors(),
        "errors read by deltalake"
    );
    assert_eq!(
        read["requests_distinct_trace_ids"], expected,
        "trace ids read by deltalake"
    );
    assert_eq!(
        read["sli_total"], expected,
        "sum(total) of sli_1m read by deltalake"
    );
    assert_eq!(
        read["sli_errors"],
        ledger.errors(),
        "sum(errors) of sli_1m read by deltalake"
    );
}

/// The Python interpreter of the virtualenv `scripts/test` prepares (outside the clone), with
/// the `deltalake` package: `NINES_TEST_PYTHON`, else `~/.cache/nines/venv/bin/python`.
pub fn test_python() -> PathBuf {
    if let Some(p) = std::env::var_os("NINES_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").expect("HOME is set");
    PathBuf::from(home).join(".cache/nines/venv/bin/python")
}

/// What `tests/tools/delta_reader.py` reads of the env's tables with the `deltalake` Python
/// package, and the `txn` versions of `apps` (e.g. `nines.events-0`) in each table.
pub fn delta_reader(env: &Env, apps: &[&str]) -> serde_json::Value {
    let python = test_python();
    let script = repo_root().join("tests/tools/delta_reader.py");
    let (root, options) = env
        .tables_root
        .clone()
        .unwrap_or_else(|| (env.data_dir().display().to_string(), serde_json::json!({})));
    let out = std::process::Command::new(&python)
        .arg(&script)
        .arg(root)
        .args(apps)
        .env("NINES_DELTA_OPTIONS", options.to_string())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "running {} (the virtualenv scripts/test prepares): {e}",
                python.display()
            )
        });
    assert!(
        out.status.success(),
        "delta_reader.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("delta_reader.py prints JSON")
}

/// Pushes, retrying retryable answers (same batch) a bounded number of times.
pub async fn push_ok(
    client: &mut IngestServiceClient<Channel>,
    push: &PushRequest,
) -> PushResponse {
    push_ok_with_key(client, push, None).await
}

/// [`push_ok`] with an API key (`x-nines-api-key`), when given: the delivery contract's
/// retries (`nines_testkit::retry`), for up to a minute.
pub async fn push_ok_with_key(
    client: &mut IngestServiceClient<Channel>,
    push: &PushRequest,
    key: Option<&str>,
) -> PushResponse {
    let mut metadata = tonic::metadata::MetadataMap::new();
    if let Some(k) = key {
        metadata.insert("x-nines-api-key", k.parse().expect("an ASCII key"));
    }
    let policy = nines_testkit::retry::Retry {
        give_up_after: Duration::from_secs(60),
        ..Default::default()
    };
    let tried = nines_testkit::retry::push(client, push, &metadata, policy).await;
    match tried.answer {
        Ok(answer) => answer,
        Err(s) => panic!("push refused after {} attempts: {s:?}", tried.attempts),
    }
}

/// Calls gRPC method `path` (e.g. `/nines.v1.IngestService/Push`) with `body` as the
/// message bytes, exactly as given, and `headers` as metadata.
pub async fn raw_call(
    endpoint: &str,
    path: &'static str,
    body: Vec<u8>,
    headers: &[(&'static str, &str)],
) -> Result<Vec<u8>, tonic::Status> {
    raw_call_with(endpoint, path, body, headers, false).await
}

/// [`raw_call`], gzip-compressing the message when `gzip` is set (as a real client does).
pub async fn raw_call_with(
    endpoint: &str,
    path: &'static str,
    body: Vec<u8>,
    headers: &[(&'static str, &str)],
    gzip: bool,
) -> Result<Vec<u8>, tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    if gzip {
        grpc = grpc.send_compressed(tonic::codec::CompressionEncoding::Gzip);
    }
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(bytes::Bytes::from(body));
    for (k, v) in headers {
        request.metadata_mut().insert(*k, v.parse().unwrap());
    }
    grpc.unary(
        request,
        tonic::codegen::http::uri::PathAndQuery::from_static(path),
        nines_testkit::retry::RawCodec,
    )
    .await
    .map(|answer| answer.into_inner().to_vec())
}

/// Sends one gRPC frame exactly as given (compressed flag, length, `payload`) over HTTP/2,
/// declaring `grpc-encoding: gzip`, and returns the answer's status: for bytes no gRPC
/// client would send, such as a corrupt gzip stream.
pub async fn raw_frame(
    endpoint: &str,
    path: &'static str,
    payload: &[u8],
    headers: &[(&'static str, &str)],
) -> tonic::Status {
    use http_body_util::BodyExt;
    use tonic::codegen::Service;
    let mut channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut frame = vec![1_u8];
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(payload);
    let mut request = tonic::codegen::http::Request::builder()
        .method("POST")
        .uri(format!("{endpoint}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-encoding", "gzip");
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let request = request
        .body(tonic::body::Body::new(http_body_util::Full::new(
            bytes::Bytes::from(frame),
        )))
        .unwrap();
    std::future::poll_fn(|cx| channel.poll_ready(cx))
        .await
        .unwrap();
    let response = channel.call(request).await.unwrap();
    if let Some(status) = tonic::Status::from_header_map(response.headers()) {
        return status;
    }
    let trailers = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .trailers()
        .cloned()
        .unwrap_or_default();
    tonic::Status::from_header_map(&trailers).expect("a grpc-status in the trailers")
}

/// Runs `nines gen --batch 100 <args>` against `env`: how many events it says it sent, or
/// its stderr if it failed.
pub fn run_gen(env: &Env, args: &[&str]) -> Result<i64, String> {
    let out = Command::new(BIN)
        .args([
            "--log",
            "warn",
            "gen",
            "--endpoint",
            &env.endpoint(),
            "--batch",
            "100",
        ])
        .args(args)
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let stdout = String::from_utf8(out.stdout).unwrap();
    Ok(stdout
        .lines()
        .find_map(|l| l.strip_prefix("sent "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no `sent N events` line in:\n{stdout}")))
}

/// The checkout these tests run in. Read when the test runs (cargo sets it), not with
/// `env!` when it was built: cargo reuses a test binary built in another checkout of the
/// same commit (its fingerprints are relative to the workspace), which would then read
/// that checkout's files, or fail if it is gone.
pub fn repo_root() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("tests run by cargo"))
}

/// A golden file under `tests/golden/`, reviewed by a person.
pub fn golden(name: &str) -> PathBuf {
    repo_root().join("tests/golden").join(name)
}

pub fn blessing() -> bool {
    std::env::var_os("NINES_BLESS").is_some()
}

/// `got` equals the golden file `name` (or, with `NINES_BLESS=1`, becomes it).
pub fn compare_golden(name: &str, got: &str) {
    let path = golden(name);
    if blessing() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (NINES_BLESS=1 writes it)", path.display()));
    if want != got {
        let diff: Vec<String> = want
            .lines()
            .zip(got.lines())
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .take(10)
            .map(|(i, (a, b))| format!("line {}:\n- {a}\n+ {b}", i + 1))
            .collect();
        panic!(
            "{name} differs from the golden file ({} vs {} lines):\n{}",
            want.lines().count(),
            got.lines().count(),
            diff.join("\n")
        );
    }
}
