//! The bad-input corpus: malformed, hostile and unauthenticated requests to the native and
//! OTLP front doors, each with the exact status (or OTLP partial_success) it must get and a
//! message that names the problem. Afterwards a normal batch still goes through exactly, and
//! every rejection is in the metrics. Plus tenant isolation by API key.

use std::time::Duration;

use nines_proto::v1::{
    Attribute, DeployEvent, IncidentEvent, PushRequest, PushResponse, RequestEvent, Resource,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric,
};
use opentelemetry_proto::tonic::resource::v1::Resource as OtlpResource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use tonic::Code;

use crate::support::{
    Env, metric as metric_value, now_ns, raw_call, raw_call_with, raw_frame, run_gen,
};

const PUSH: &str = "/nines.v1.IngestService/Push";
const TRACES: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
const LOGS: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
const METRICS: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

const KEYS: &str = "[[ingest.api_keys]]\ntenant = \"acme\"\nkey = \"k-acme\"\n\
                    [[ingest.api_keys]]\ntenant = \"globex\"\n\
                    key_sha256 = \"7dea8dc5ad5dcf2924f78328aa4f01a3a776fda82ecde104d2125343524bc176\"\n";
/// `printf %s k-globex | sha256sum`, checked in [`globex_hash_is_sha256_of_its_key`].
const GLOBEX_KEY: &str = "k-globex";

const SECOND: i64 = 1_000_000_000;

fn request(op: &str) -> RequestEvent {
    RequestEvent {
        time_unix_nano: now_ns() - 30 * SECOND,
        operation: op.into(),
        status_code: 200,
        duration_nano: 12_000_000,
        ..Default::default()
    }
}

fn push(edit: impl FnOnce(&mut PushRequest)) -> Vec<u8> {
    let mut p = PushRequest {
        resource: Some(Resource {
            service: "checkout".into(),
            ..Default::default()
        }),
        requests: vec![request("GET /cart")],
        ..Default::default()
    };
    edit(&mut p);
    p.encode_to_vec()
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

fn span(edit: impl FnOnce(&mut Span)) -> Span {
    let end = (now_ns() - 10 * SECOND) as u64;
    let mut sp = Span {
        trace_id: vec![9; 16],
        span_id: vec![3; 8],
        name: "GET /search".into(),
        kind: 2,
        start_time_unix_nano: end - 20_000_000,
        end_time_unix_nano: end,
        ..Default::default()
    };
    edit(&mut sp);
    sp
}

fn traces(resource: Vec<KeyValue>, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(OtlpResource {
                attributes: resource,
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn one_span(edit: impl FnOnce(&mut Span)) -> Vec<u8> {
    traces(vec![kv("service.name", s("search"))], vec![span(edit)]).encode_to_vec()
}

fn logs(records: Vec<LogRecord>) -> Vec<u8> {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(OtlpResource {
                attributes: vec![kv("service.name", s("checkout"))],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

fn log(attrs: Vec<KeyValue>) -> LogRecord {
    LogRecord {
        time_unix_nano: (now_ns() - 5 * SECOND) as u64,
        attributes: attrs,
        ..Default::default()
    }
}

/// Replaces the first occurrence of `marker` in `bytes` by `with` (same length), to put bytes
/// into a message that no encoder would write (e.g. invalid UTF-8 in a string field).
fn patch(mut bytes: Vec<u8>, marker: &[u8], with: &[u8]) -> Vec<u8> {
    assert_eq!(marker.len(), with.len());
    let at = bytes
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("marker in message");
    bytes[at..at + with.len()].copy_from_slice(with);
    bytes
}

#[derive(Debug)]
enum Expect {
    /// The call fails with this code and a message containing the text.
    Status(Code, &'static str),
    /// The call succeeds with partial_success: this many rejected, message containing the text.
    Partial(i64, &'static str),
}

struct Case {
    name: &'static str,
    path: &'static str,
    body: Vec<u8>,
    key: Option<&'static str>,
    expect: Expect,
}

fn case(name: &'static str, path: &'static str, body: Vec<u8>, expect: Expect) -> Case {
    Case {
        name,
        path,
        body,
        key: Some("k-acme"),
        expect,
    }
}

fn corpus() -> Vec<Case> {
    use Code::{InvalidArgument as Invalid, Unauthenticated};
    use Expect::{Partial, Status};
    let t = now_ns();
    let hour = 3600 * SECOND;
    let good = push(|_| {});
    // Resource { service: "\xC3\x28" } inside a PushRequest, byte by byte.
    let bad_utf8 = vec![0x0A, 0x04, 0x12, 0x02, 0xC3, 0x28];
    let many_attrs: Vec<Attribute> = (0..33)
        .map(|i| Attribute {
            key: format!("k{i}"),
            value: "v".into(),
        })
        .collect();
    let many_span_attrs: Vec<KeyValue> = (0..33).map(|i| kv(&format!("k{i}"), s("v"))).collect();
    vec![
        case(
            "garbage bytes (native)",
            PUSH,
            vec![0xFF; 64],
            Status(Invalid, "request body is not valid protobuf"),
        ),
        case(
            "truncated push",
            PUSH,
            good[..good.len() - 3].to_vec(),
            Status(Invalid, "request body is not valid protobuf"),
        ),
        case(
            "wrong wire type (resource as varint)",
            PUSH,
            vec![0x08, 0x01],
            Status(Invalid, "invalid wire type"),
        ),
        case(
            "invalid UTF-8 in resource.service",
            PUSH,
            bad_utf8,
            Status(Invalid, "UTF-8"),
        ),
        case(
            "garbage bytes (OTLP)",
            TRACES,
            vec![0xFF; 64],
            Status(Invalid, "request body is not valid protobuf"),
        ),
        case(
            "truncated OTLP export",
            TRACES,
            {
                let b = one_span(|_| {});
                b[..b.len() - 5].to_vec()
            },
            Status(Invalid, "request body is not valid protobuf"),
        ),
        case(
            "invalid UTF-8 in a span name",
            TRACES,
            patch(one_span(|sp| sp.name = "QQ".into()), b"QQ", &[0xC3, 0x28]),
            Status(Invalid, "UTF-8"),
        ),
        case(
            "oversize request",
            PUSH,
            push(|p| p.batch_id = "x".repeat(1_100_000)),
            Status(Invalid, "request too large (ingest.max_request_bytes)"),
        ),
        case(
            "too many events",
            PUSH,
            push(|p| p.requests = (0..101).map(|_| request("GET /")).collect()),
            Status(
                Invalid,
                "requests: 101 events in one request, more than the limit of 100 \
                 (ingest.max_events_per_request)",
            ),
        ),
        case(
            "too many spans",
            TRACES,
            traces(
                vec![kv("service.name", s("search"))],
                (0..101).map(|_| span(|_| {})).collect(),
            )
            .encode_to_vec(),
            Status(
                Invalid,
                "resource_spans: 101 spans in one request, more than the limit of 100",
            ),
        ),
        case(
            "too many attributes",
            PUSH,
            push(|p| p.requests[0].attributes = many_attrs),
            Status(
                Invalid,
                "requests[0].attributes: 33 attributes, more than the limit of 32",
            ),
        ),
        case(
            "too many span attributes",
            TRACES,
            one_span(|sp| sp.attributes = many_span_attrs),
            Partial(
                1,
                "spans[0].attributes: 33 attributes, more than the limit of 32",
            ),
        ),
        case(
            "attribute value too long",
            PUSH,
            push(|p| {
                p.requests[0].attributes = vec![Attribute {
                    key: "k".into(),
                    value: "v".repeat(2000),
                }]
            }),
            Status(
                Invalid,
                "requests[0].attributes[0].value: 2000 bytes, more than the limit of 1024",
            ),
        ),
        case(
            "1970 timestamp",
            PUSH,
            push(|p| p.requests[0].time_unix_nano = 1),
            Status(
                Invalid,
                "requests[0].time_unix_nano: 1 is older than the accepted window",
            ),
        ),
        case(
            "2100 timestamp",
            PUSH,
            push(|p| p.requests[0].time_unix_nano = 4_102_444_800 * SECOND),
            Status(
                Invalid,
                "requests[0].time_unix_nano: 4102444800000000000 is further in the future",
            ),
        ),
        case(
            "1970 span",
            TRACES,
            one_span(|sp| {
                sp.start_time_unix_nano = 1_000;
                sp.end_time_unix_nano = 2_000
            }),
            Partial(
                1,
                "spans[0].start_time_unix_nano: 1000 is older than the accepted window",
            ),
        ),
        case(
            "2100 span",
            TRACES,
            one_span(|sp| {
                sp.start_time_unix_nano = 4_102_444_800_000_000_000;
                sp.end_time_unix_nano = 4_102_444_800_000_000_001
            }),
            Partial(
                1,
                "spans[0].start_time_unix_nano: 4102444800000000000 is further in the future",
            ),
        ),
        case(
            "span beyond 2262",
            TRACES,
            one_span(|sp| {
                sp.start_time_unix_nano = u64::MAX - 1;
                sp.end_time_unix_nano = u64::MAX
            }),
            Partial(
                1,
                "spans[0].start_time_unix_nano: 18446744073709551614 is beyond the year 2262",
            ),
        ),
        case(
            "negative duration",
            PUSH,
            push(|p| p.requests[0].duration_nano = -1),
            Status(Invalid, "requests[0].duration_nano: must be >= 0, got -1"),
        ),
        case(
            "huge duration",
            PUSH,
            push(|p| p.requests[0].duration_nano = 2 * 24 * hour),
            Status(
                Invalid,
                "requests[0].duration_nano: 172800000000000 ns is longer than the limit of 86400s",
            ),
        ),
        case(
            "span ending before it starts",
            TRACES,
            one_span(|sp| sp.end_time_unix_nano = sp.start_time_unix_nano - 1),
            Partial(1, "spans[0].end_time_unix_nano:"),
        ),
        case(
            "span of two days",
            TRACES,
            one_span(|sp| sp.start_time_unix_nano = sp.end_time_unix_nano - 2 * 24 * hour as u64),
            Partial(
                1,
                "spans[0].end_time_unix_nano: 172800000000000 ns is longer than the limit",
            ),
        ),
        case(
            "missing service",
            PUSH,
            push(|p| p.resource = None),
            Status(
                Invalid,
                "resource.service: is required and must not be empty",
            ),
        ),
        case(
            "missing service.name",
            TRACES,
            traces(vec![kv("service.version", s("1"))], vec![span(|_| {})]).encode_to_vec(),
            Partial(1, "spans[0]: resource attribute service.name is required"),
        ),
        case(
            "control character in service.name",
            TRACES,
            traces(
                vec![kv("service.name", s("se\u{1b}arch"))],
                vec![span(|_| {})],
            )
            .encode_to_vec(),
            Partial(
                1,
                "spans[0]: resource attribute service.name: must not contain control characters",
            ),
        ),
        case(
            "empty operation",
            PUSH,
            push(|p| p.requests[0].operation = String::new()),
            Status(
                Invalid,
                "requests[0].operation: is required and must not be empty",
            ),
        ),
        case(
            "control character in service",
            PUSH,
            push(|p| p.resource.as_mut().unwrap().service = "check\u{7}out".into()),
            Status(
                Invalid,
                "resource.service: must not contain control characters",
            ),
        ),
        case(
            "status code 1000",
            PUSH,
            push(|p| p.requests[0].status_code = 1000),
            Status(
                Invalid,
                "requests[0].status_code: must be 0 (unknown) or an HTTP-style code 1..=999, got 1000",
            ),
        ),
        case(
            "empty push",
            PUSH,
            push(|p| p.requests.clear()),
            Status(Invalid, "requests: the push carries no events"),
        ),
        case(
            "deploy without a version",
            PUSH,
            push(|p| {
                p.requests.clear();
                p.deploys = vec![DeployEvent {
                    time_unix_nano: t - SECOND,
                    ..Default::default()
                }]
            }),
            Status(Invalid, "deploys[0].version: a deploy needs a version"),
        ),
        case(
            "incident resolved before opened",
            PUSH,
            push(|p| {
                p.requests.clear();
                p.incidents = vec![IncidentEvent {
                    id: "INC-1".into(),
                    opened_at_unix_nano: t - SECOND,
                    resolved_at_unix_nano: t - 2 * SECOND,
                    ..Default::default()
                }]
            }),
            Status(
                Invalid,
                "incidents[0].resolved_at_unix_nano: an incident cannot be resolved before it was opened",
            ),
        ),
        case(
            "CLIENT span",
            TRACES,
            one_span(|sp| sp.kind = 3),
            Partial(1, "spans[0].kind: CLIENT spans are not requests"),
        ),
        case(
            "log record that is no nines event",
            LOGS,
            logs(vec![log(vec![kv("message", s("hello"))])]),
            Partial(1, "log_records[0]: not a nines event"),
        ),
        case(
            "deployment with an unknown outcome",
            LOGS,
            logs(vec![log(vec![
                kv("event.name", s("deployment")),
                kv("service.version", s("3")),
                kv("deployment.outcome", s("meh")),
            ])]),
            Partial(
                1,
                "attributes[deployment.outcome]: \"meh\" is not succeeded, failed or rolled_back",
            ),
        ),
        case(
            "incident without an id",
            LOGS,
            logs(vec![log(vec![kv("event.name", s("incident"))])]),
            Partial(1, "log_records[0].id: is required"),
        ),
        case(
            "metrics",
            METRICS,
            ExportMetricsServiceRequest {
                resource_metrics: vec![ResourceMetrics {
                    scope_metrics: vec![ScopeMetrics {
                        metrics: vec![Metric {
                            name: "queue.depth".into(),
                            data: Some(metric::Data::Gauge(Gauge {
                                data_points: vec![
                                    NumberDataPoint::default(),
                                    NumberDataPoint::default(),
                                ],
                            })),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            }
            .encode_to_vec(),
            Partial(
                2,
                "metric \"queue.depth\": nines derives request SLIs from SERVER/CONSUMER spans",
            ),
        ),
        Case {
            key: Some("k-wrong"),
            ..case(
                "wrong API key (native)",
                PUSH,
                push(|_| {}),
                Status(Unauthenticated, "unknown API key"),
            )
        },
        Case {
            key: None,
            ..case(
                "missing API key (native)",
                PUSH,
                push(|_| {}),
                Status(Unauthenticated, "missing API key"),
            )
        },
        Case {
            key: Some("k-wrong"),
            ..case(
                "wrong API key (OTLP)",
                TRACES,
                one_span(|_| {}),
                Status(Unauthenticated, "unknown API key"),
            )
        },
        Case {
            key: None,
            ..case(
                "missing API key (OTLP)",
                TRACES,
                one_span(|_| {}),
                Status(Unauthenticated, "missing API key"),
            )
        },
    ]
}

fn partial_of(path: &str, bytes: &[u8]) -> Option<(i64, String)> {
    match path {
        TRACES => ExportTraceServiceResponse::decode(bytes)
            .unwrap()
            .partial_success
            .map(|p| (p.rejected_spans, p.error_message)),
        LOGS => ExportLogsServiceResponse::decode(bytes)
            .unwrap()
            .partial_success
            .map(|p| (p.rejected_log_records, p.error_message)),
        METRICS => ExportMetricsServiceResponse::decode(bytes)
            .unwrap()
            .partial_success
            .map(|p| (p.rejected_data_points, p.error_message)),
        _ => None,
    }
}

async fn call(
    env: &Env,
    path: &'static str,
    body: Vec<u8>,
    key: Option<&str>,
) -> Result<Vec<u8>, tonic::Status> {
    let headers: Vec<(&'static str, String)> = key
        .map(|k| vec![("authorization", format!("Bearer {k}"))])
        .unwrap_or_default();
    let headers: Vec<(&'static str, &str)> =
        headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    raw_call(&env.endpoint(), path, body, &headers).await
}

fn limits() -> [(&'static str, &'static str); 3] {
    [
        ("NINES__INGEST__MAX_EVENTS_PER_REQUEST", "100"),
        ("NINES__INGEST__MAX_REQUEST_BYTES", "1048576"),
        ("NINES__INGEST__MAX_OPERATIONS_PER_SERVICE", "100"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bad_input_corpus_gets_exact_answers_and_hurts_nothing() {
    let env = Env::with_config(KEYS);
    let up = env.spawn("up", &limits(), &["up"]);
    let cases = corpus();
    assert!(cases.len() >= 30, "{} cases", cases.len());
    let mut failures = Vec::new();
    for c in cases {
        let got = call(&env, c.path, c.body, c.key).await;
        let ok = match (&c.expect, &got) {
            (Expect::Status(code, text), Err(s)) => s.code() == *code && s.message().contains(text),
            (Expect::Partial(n, text), Ok(bytes)) => {
                partial_of(c.path, bytes).is_some_and(|(r, m)| r == *n && m.contains(text))
            }
            _ => false,
        };
        if !ok {
            let got = match got {
                Ok(bytes) => format!("OK {:?}", partial_of(c.path, &bytes)),
                Err(s) => format!("{:?}: {}", s.code(), s.message()),
            };
            failures.push(format!("{}: expected {:?}, got {got}", c.name, c.expect));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));

    // A gzip bomb: 2 MiB of zeros, a few KB on the wire, past the 1 MiB limit once
    // inflated. Not retryable: the same request would fail again.
    let inflated = raw_call_with(
        &env.endpoint(),
        PUSH,
        vec![0_u8; 2 * 1024 * 1024],
        &[("authorization", "Bearer k-acme")],
        true,
    )
    .await
    .unwrap_err();
    assert_eq!(inflated.code(), Code::InvalidArgument, "{inflated:?}");
    assert!(
        inflated
            .message()
            .starts_with("request too large once decompressed (ingest.max_request_bytes)"),
        "{inflated:?}"
    );

    // A corrupt gzip stream (a gzip header, then garbage), on both doors.
    let corrupt = [
        0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff, 0xde, 0xad, 0xbe, 0xef,
    ];
    for path in [PUSH, TRACES] {
        let status = raw_frame(
            &env.endpoint(),
            path,
            &corrupt,
            &[("authorization", "Bearer k-acme")],
        )
        .await;
        assert_eq!(status.code(), Code::InvalidArgument, "{path}: {status:?}");
        assert!(
            status
                .message()
                .starts_with("request body could not be decompressed"),
            "{path}: {status:?}"
        );
    }

    // 10,000 distinct routes from one service: the first 100 are kept, the rest overflow.
    for chunk in 0..100 {
        let body = push(|p| {
            p.resource.as_mut().unwrap().service = "users".into();
            p.requests = (0..100)
                .map(|i| request(&format!("GET /users/{}", chunk * 100 + i)))
                .collect();
        });
        call(&env, PUSH, body, Some("k-acme")).await.unwrap();
    }
    // After everything, normal traffic is exact: 50 native events and 10 spans.
    let normal = push(|p| p.requests = (0..50).map(|_| request("GET /cart")).collect());
    let answer = PushResponse::decode(
        call(&env, PUSH, normal, Some("k-acme"))
            .await
            .unwrap()
            .as_slice(),
    )
    .unwrap();
    assert_eq!(answer.accepted_requests, 50);
    let spans = traces(
        vec![kv("service.name", s("search"))],
        (0..10).map(|_| span(|_| {})).collect(),
    );
    let answer = call(&env, TRACES, spans.encode_to_vec(), Some("k-acme"))
        .await
        .unwrap();
    assert_eq!(partial_of(TRACES, &answer), None);

    assert_eq!(
        env.wait_for(
            "SELECT count(*) AS n FROM requests",
            10_060,
            Duration::from_secs(60)
        ),
        10_060
    );
    assert_eq!(
        env.wait_for(
            "SELECT sum(total) AS n FROM sli_1m",
            10_060,
            Duration::from_secs(30)
        ),
        10_060
    );
    assert_eq!(
        env.sql_i64("SELECT count(DISTINCT operation) AS n FROM sli_1m WHERE service = 'users'"),
        101
    );
    assert_eq!(
        env.sql_i64("SELECT sum(total) AS n FROM sli_1m WHERE operation = '__overflow__'"),
        9_900
    );
    assert_eq!(
        env.sql_i64("SELECT count(*) AS n FROM requests WHERE service = 'checkout'"),
        50
    );
    assert_eq!(
        env.sql_i64("SELECT count(*) AS n FROM requests WHERE service = 'search'"),
        10
    );

    let m = up.metrics();
    let rejected = |reason: &str| {
        metric_value(
            &m,
            "nines_ingest_pushes_rejected_total",
            &format!("{{reason=\"{reason}\"}}"),
        )
    };
    // 7 cases of the corpus and the 2 corrupt gzip streams.
    assert_eq!(rejected("undecodable"), Some(9.0), "{m}");
    // The oversize request and the gzip bomb.
    assert_eq!(rejected("request_too_large"), Some(2.0));
    // Too many events or spans are refused on the wire, before decoding.
    assert_eq!(rejected("too_many_events"), Some(2.0), "{m}");
    assert_eq!(rejected("invalid"), Some(13.0));
    assert_eq!(rejected("unauthenticated"), Some(4.0));
    assert_eq!(
        metric_value(&m, "nines_ingest_operations_overflowed_total", ""),
        Some(9_900.0)
    );
    let otlp = |signal: &str, reason: &str| {
        metric_value(
            &m,
            "nines_ingest_otlp_items_rejected_total",
            &format!("{{signal=\"{signal}\",reason=\"{reason}\"}}"),
        )
    };
    assert_eq!(otlp("traces", "invalid"), Some(7.0));
    assert_eq!(otlp("traces", "no_service"), Some(1.0));
    assert_eq!(otlp("traces", "span_kind"), Some(1.0));
    assert_eq!(otlp("logs", "not_an_event"), Some(1.0));
    assert_eq!(otlp("logs", "invalid"), Some(2.0));
    assert_eq!(otlp("metrics", "not_stored"), Some(2.0));
}

#[test]
fn globex_hash_is_sha256_of_its_key() {
    let out = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(GLOBEX_KEY.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    let hex = String::from_utf8(out.stdout).unwrap();
    assert!(
        KEYS.contains(hex.split_whitespace().next().unwrap()),
        "{hex}"
    );
}

/// Two tenants with their own keys: events land under the key's tenant, whatever the
/// payload claims.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_land_under_the_tenant_of_their_key() {
    let env = Env::with_config(KEYS);
    let _up = env.spawn("up", &limits(), &["up"]);
    // acme claims to be globex in the payload.
    let forged = push(|p| {
        p.resource.as_mut().unwrap().tenant = "globex".into();
        p.requests = (0..30).map(|_| request("GET /cart")).collect();
    });
    call(&env, PUSH, forged, Some("k-acme")).await.unwrap();
    let spans = traces(
        vec![kv("service.name", s("search")), kv("tenant", s("acme"))],
        (0..12).map(|_| span(|_| {})).collect(),
    );
    let headers = [("x-nines-api-key", GLOBEX_KEY)];
    raw_call(&env.endpoint(), TRACES, spans.encode_to_vec(), &headers)
        .await
        .unwrap();
    assert_eq!(
        env.wait_for(
            "SELECT count(*) AS n FROM requests",
            42,
            Duration::from_secs(60)
        ),
        42
    );
    assert_eq!(
        env.sql_raw(
            "SELECT tenant, service, count(*) AS n FROM requests GROUP BY tenant, service ORDER BY tenant",
            "csv"
        ),
        "tenant,service,n\nacme,checkout,30\nglobex,search,12\n"
    );

    // `nines gen` sends with --api-key; without one it is refused and says so.
    let refused = run_gen(&env, &["--rate", "500", "--duration", "1s"]).unwrap_err();
    assert!(refused.contains("Unauthenticated"), "{refused}");
    let sent = run_gen(
        &env,
        &["--rate", "500", "--duration", "1s", "--api-key", GLOBEX_KEY],
    )
    .unwrap();
    assert_eq!(sent, 500);
    assert_eq!(
        env.wait_for(
            "SELECT count(*) AS n FROM requests WHERE tenant = 'globex'",
            512,
            Duration::from_secs(60)
        ),
        512
    );
}

/// Without API keys, ingest will not open a non-loopback port unless told it may.
#[test]
fn an_open_door_beyond_loopback_is_refused_at_start() {
    let env = Env::new();
    let config = env.config("open");
    // Refused before anything is bound.
    let out = std::process::Command::new(crate::support::BIN)
        .arg("--config")
        .arg(&config)
        .args(["ingest", "--kafka", "127.0.0.1:1"])
        .env("NINES__INGEST__LISTEN", "0.0.0.0:0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "ingest.listen 0.0.0.0:0 is not a loopback address and no ingest.api_keys are configured"
        ),
        "{stderr}"
    );
    // (Allowed explicitly, it would bind 0.0.0.0: tests listen on 127.0.0.1 only, so that
    // side is the unit test in nines-ingest's auth.rs.)
}
