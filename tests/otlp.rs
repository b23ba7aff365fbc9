//! OTLP as services send it: spans and log records exported by the OpenTelemetry Rust SDK's
//! OTLP/gRPC exporter (`opentelemetry-otlp`, with and without gzip) to the ingest port.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use opentelemetry::logs::{LogRecord as _, Logger as _, LoggerProvider as _};
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{Compression, WithExportConfig, WithTonicConfig};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue as PKeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource as PResource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span as PSpan};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::{LogBatch, LogExporter as _, SdkLoggerProvider};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter as _, SpanLinks};

use crate::support::Env;

/// One span as a service's SDK would record it.
struct Spec {
    kind: SpanKind,
    name: &'static str,
    attributes: Vec<KeyValue>,
    status: Status,
    duration_ms: u64,
}

fn http(method: &'static str, route: &'static str, code: i64, current: bool) -> Vec<KeyValue> {
    let key = if current {
        "http.response.status_code"
    } else {
        "http.status_code"
    };
    vec![
        KeyValue::new(
            if current {
                "http.request.method"
            } else {
                "http.method"
            },
            method,
        ),
        KeyValue::new("http.route", route),
        KeyValue::new(key, code),
    ]
}

fn rpc(code: i64) -> Vec<KeyValue> {
    vec![
        KeyValue::new("rpc.service", "Payments"),
        KeyValue::new("rpc.method", "Charge"),
        KeyValue::new("rpc.grpc.status_code", code),
    ]
}

/// The traffic of one export. Counted by hand: 64 request-shaped spans (SERVER and CONSUMER),
/// of which 13 are errors (10 HTTP 503, 2 gRPC UNKNOWN, 1 span status ERROR) and 5 client
/// errors (HTTP 404); plus 7 CLIENT and INTERNAL spans that are not requests.
fn traffic() -> Vec<Spec> {
    let mut v = Vec::new();
    let span = |kind, name, attributes, status, duration_ms| Spec {
        kind,
        name,
        attributes,
        status,
        duration_ms,
    };
    for i in 0..40 {
        v.push(span(
            SpanKind::Server,
            "GET",
            http("GET", "/cart/{id}", 200, true),
            Status::Unset,
            10 + i,
        ));
    }
    for i in 0..10 {
        v.push(span(
            SpanKind::Server,
            "GET",
            http("GET", "/cart/{id}", 503, true),
            Status::Unset,
            100 + i,
        ));
    }
    for i in 0..5 {
        // The older semantic conventions (http.method, http.status_code).
        v.push(span(
            SpanKind::Server,
            "POST",
            http("POST", "/checkout", 404, false),
            Status::Unset,
            5 + i,
        ));
    }
    for code in [0, 0, 0, 0, 2, 2] {
        v.push(span(
            SpanKind::Server,
            "Charge",
            rpc(code),
            Status::Unset,
            20,
        ));
    }
    v.push(span(
        SpanKind::Consumer,
        "process order",
        vec![],
        Status::error("poison"),
        30,
    ));
    v.push(span(
        SpanKind::Consumer,
        "process order",
        vec![],
        Status::Ok,
        30,
    ));
    v.push(span(
        SpanKind::Consumer,
        "process order",
        vec![],
        Status::Unset,
        30,
    ));
    for _ in 0..4 {
        v.push(span(
            SpanKind::Client,
            "GET",
            http("GET", "/inventory", 200, true),
            Status::Unset,
            3,
        ));
    }
    for _ in 0..3 {
        v.push(span(SpanKind::Internal, "render", vec![], Status::Unset, 1));
    }
    v
}

fn span_data(specs: Vec<Spec>, seed: u128) -> Vec<SpanData> {
    let start = SystemTime::now() - Duration::from_secs(60);
    specs
        .into_iter()
        .enumerate()
        .map(|(i, s)| SpanData {
            span_context: SpanContext::new(
                TraceId::from(seed * 1_000_000 + i as u128 + 1),
                SpanId::from_bytes(((i + 1) as u64).to_be_bytes()),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: s.kind,
            name: Cow::Borrowed(s.name),
            start_time: start,
            end_time: start + Duration::from_millis(s.duration_ms),
            attributes: s.attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: s.status,
            instrumentation_scope: InstrumentationScope::builder("shop").build(),
        })
        .collect()
}

fn resource(version: &str) -> Resource {
    Resource::builder_empty()
        .with_service_name("cart")
        .with_attributes([
            KeyValue::new("service.version", version.to_owned()),
            KeyValue::new("deployment.environment.name", "production"),
        ])
        .build()
}

async fn export_spans(env: &Env, version: &str, gzip: bool, spans: Vec<SpanData>) {
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(env.endpoint())
        .with_timeout(Duration::from_secs(15));
    if gzip {
        builder = builder.with_compression(Compression::Gzip);
    }
    let mut exporter = builder.build().unwrap();
    exporter.set_resource(&resource(version));
    exporter.export(spans).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_and_logs_from_the_opentelemetry_exporter_become_exact_tables() {
    let env = Env::new();
    let _up = env.up();

    // Same traffic twice: plain and gzip-compressed.
    export_spans(&env, "1.0.0", false, span_data(traffic(), 1)).await;
    export_spans(&env, "1.0.0", true, span_data(traffic(), 2)).await;
    let (total, errors, client_errors) = (2 * 64, 2 * 13, 2 * 5);
    assert_eq!(
        env.wait_for(
            "SELECT count(*) AS n FROM requests",
            total,
            Duration::from_secs(60)
        ),
        total
    );
    assert_eq!(
        env.wait_for(
            "SELECT sum(total) AS n FROM sli_1m",
            total,
            Duration::from_secs(30)
        ),
        total
    );
    assert_eq!(env.sql_i64("SELECT sum(errors) AS n FROM sli_1m"), errors);
    assert_eq!(
        env.sql_i64("SELECT sum(client_errors) AS n FROM sli_1m"),
        client_errors
    );
    assert_eq!(
        env.sql_raw(
            "SELECT operation, sum(total) AS total, sum(errors) AS errors FROM sli_1m \
             GROUP BY operation ORDER BY operation",
            "csv"
        ),
        "operation,total,errors\n\
         GET /cart/{id},100,20\n\
         POST /checkout,10,0\n\
         Payments/Charge,12,4\n\
         process order,6,2\n"
    );
    assert_eq!(
        env.sql_raw(
            "SELECT DISTINCT tenant, service, environment, version FROM requests",
            "csv"
        ),
        "tenant,service,environment,version\ndefault,cart,production,1.0.0\n"
    );
    // Durations from timestamps: the 40 fast GETs took 10..=49 ms, so 1,180 ms in all, twice.
    assert_eq!(
        env.sql_i64(
            "SELECT sum(duration_ns) / 1000000 AS n FROM requests \
             WHERE operation = 'GET /cart/{id}' AND status_code = 200"
        ),
        2 * (10..50).sum::<i64>()
    );

    // A new service.version in the spans' resource is one telemetry deploy, however often
    // either version is seen afterwards.
    export_spans(&env, "1.1.0", false, span_data(traffic(), 3)).await;
    export_spans(&env, "1.0.0", true, span_data(traffic(), 4)).await;
    export_spans(&env, "1.1.0", false, span_data(traffic(), 5)).await;
    assert_eq!(
        env.wait_for(
            "SELECT count(*) AS n FROM requests",
            5 * 64,
            Duration::from_secs(60)
        ),
        5 * 64
    );

    // A deployment and an incident as OTLP log records.
    let provider = SdkLoggerProvider::builder().build();
    let logger = provider.logger("release-bot");
    let now = SystemTime::now();
    let mut deploy = logger.create_log_record();
    deploy.set_event_name("deployment");
    deploy.set_timestamp(now - Duration::from_secs(30));
    // What the SDK's `emit` would set (the exporter requires it).
    deploy.set_observed_timestamp(now);
    deploy.add_attribute("event.name", "deployment");
    deploy.add_attribute("service.version", "2.0.0");
    deploy.add_attribute(
        "deployment.commits",
        "a1b2c3@2026-11-26T06:00:00Z,d4e5f6@2026-11-26T06:30:00Z",
    );
    let mut incident = logger.create_log_record();
    incident.set_timestamp(now - Duration::from_secs(20));
    incident.set_observed_timestamp(now);
    incident.add_attribute("event.name", "incident");
    incident.add_attribute("incident.id", "INC-7");
    incident.add_attribute("incident.severity", "sev2");
    incident.add_attribute("incident.cause_version", "2.0.0");
    let scope = InstrumentationScope::builder("release-bot").build();
    let mut log_exporter = opentelemetry_otlp::LogExporter::builder()
        .with_tonic()
        .with_endpoint(env.endpoint())
        .with_compression(Compression::Gzip)
        .build()
        .unwrap();
    log_exporter.set_resource(&resource("2.0.0"));
    log_exporter
        .export(LogBatch::new(&[(&deploy, &scope), (&incident, &scope)]))
        .await
        .unwrap();

    assert_eq!(
        env.wait_for(
            "SELECT count(*) AS n FROM incidents",
            1,
            Duration::from_secs(30)
        ),
        1
    );
    assert_eq!(
        env.wait_for(
            "SELECT count(*) AS n FROM deploys",
            2,
            Duration::from_secs(30)
        ),
        2
    );
    assert_eq!(
        env.sql_raw(
            "SELECT version, source, outcome, array_length(commits) AS commits FROM deploys \
             ORDER BY version",
            "csv"
        ),
        "version,source,outcome,commits\n1.1.0,telemetry,succeeded,0\n2.0.0,api,succeeded,2\n"
    );
    assert_eq!(
        env.sql_raw(
            "SELECT id, service, severity, cause_version FROM incidents",
            "csv"
        ),
        "id,service,severity,cause_version\nINC-7,cart,sev2,2.0.0\n"
    );
}

fn kv(key: &str, value: &str) -> PKeyValue {
    PKeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

/// Spans that are not requests are answered through `partial_success`, not dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_that_are_not_requests_are_reported_in_partial_success() {
    let env = Env::new();
    let up = env.up();
    let now = crate::support::now_ns() as u64;
    let span = |kind: i32, name: &str| PSpan {
        trace_id: vec![7; 16],
        span_id: vec![1; 8],
        name: name.into(),
        kind,
        start_time_unix_nano: now - 5_000_000,
        end_time_unix_nano: now,
        ..Default::default()
    };
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(PResource {
                attributes: vec![kv("service.name", "search")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![
                    span(2, "GET /q"),
                    span(3, "GET /backend"),
                    span(2, "GET /q"),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let mut client = TraceServiceClient::connect(env.endpoint()).await.unwrap();
    let answer = client.export(request).await.unwrap().into_inner();
    let partial = answer.partial_success.expect("partial_success");
    assert_eq!(partial.rejected_spans, 1);
    assert_eq!(
        partial.error_message,
        "1 spans rejected: resource_spans[0].scope_spans[0].spans[1].kind: CLIENT spans are not \
         requests (nines takes SERVER and CONSUMER spans)"
    );
    assert_eq!(
        env.wait_for(
            "SELECT count(*) AS n FROM requests",
            2,
            Duration::from_secs(30)
        ),
        2
    );
    let m = up.metrics();
    assert_eq!(
        crate::support::metric(
            &m,
            "nines_ingest_otlp_items_rejected_total",
            "{signal=\"traces\",reason=\"span_kind\"}"
        ),
        Some(1.0)
    );
}
