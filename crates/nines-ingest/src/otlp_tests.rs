//! The OTLP trace mapping of docs/otlp.md ("Traces → `requests`, `sli_1m`"), row by row:
//! a span in, the request event (or the refusal) out, through `otlp_wire::map_trace_export`
//! as the trace door calls it (mapping, then the checks every native event gets), each
//! export also through prost and `otlp::map_traces`, which must agree.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource as OtlpResource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

use crate::config::Limits;
use crate::otlp::Mapped;
use crate::otlp_wire_tests::both_decoders;
use V::{D, I, S};
use nines_record::Text;

/// 2025-11-10T12:00:00Z; the door's clock reads a minute later.
const START: u64 = 1_762_776_000_000_000_000;
const END: u64 = START + 250_000_000;
const NOW: i64 = START as i64 + 60_000_000_000;
const TRACE: &[u8] = &[
    0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36,
];
const TRACE_HEX: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// A scalar attribute value.
#[derive(Debug, Clone, Copy)]
enum V {
    S(&'static str),
    I(i64),
    D(f64),
}

/// What the door makes of the span.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// One request event with these fields; besides, every taken row checks time = start,
    /// duration = end − start, the trace id in hex and the attributes kept in order.
    Taken {
        operation: &'static str,
        status_code: i32,
        error: bool,
    },
    /// Refused alone, with this `partial_success` reason (path and why).
    Refused(&'static str),
}

#[derive(Debug, Clone, Copy)]
struct Row {
    name: &'static str,
    kind: SpanKind,
    /// Outside the enum when set (the wire carries any int32).
    raw_kind: Option<i32>,
    span_name: &'static str,
    attrs: &'static [(&'static str, V)],
    status: Option<StatusCode>,
    start: u64,
    end: u64,
    trace_id: &'static [u8],
    trace_hex: &'static str,
    expect: Expect,
}

const BASE: Row = Row {
    name: "",
    kind: SpanKind::Server,
    raw_kind: None,
    span_name: "handler",
    attrs: &[],
    status: None,
    start: START,
    end: END,
    trace_id: TRACE,
    trace_hex: TRACE_HEX,
    expect: Expect::Taken {
        operation: "handler",
        status_code: 0,
        error: false,
    },
};

const fn taken(operation: &'static str, status_code: i32, error: bool) -> Expect {
    Expect::Taken {
        operation,
        status_code,
        error,
    }
}

static SPANS: &[Row] = &[
    // Span kinds: SERVER and CONSUMER are requests; the rest are refused.
    Row {
        name: "SERVER span without attributes: operation is the span name",
        ..BASE
    },
    Row {
        name: "CONSUMER span is taken",
        kind: SpanKind::Consumer,
        span_name: "orders process",
        expect: taken("orders process", 0, false),
        ..BASE
    },
    Row {
        name: "INTERNAL span is refused",
        kind: SpanKind::Internal,
        expect: Expect::Refused(
            "resource_spans[0].scope_spans[0].spans[0].kind: INTERNAL spans are not requests (nines takes SERVER and CONSUMER spans)",
        ),
        ..BASE
    },
    Row {
        name: "CLIENT span is refused",
        kind: SpanKind::Client,
        expect: Expect::Refused(
            "resource_spans[0].scope_spans[0].spans[0].kind: CLIENT spans are not requests (nines takes SERVER and CONSUMER spans)",
        ),
        ..BASE
    },
    Row {
        name: "PRODUCER span is refused",
        kind: SpanKind::Producer,
        expect: Expect::Refused(
            "resource_spans[0].scope_spans[0].spans[0].kind: PRODUCER spans are not requests (nines takes SERVER and CONSUMER spans)",
        ),
        ..BASE
    },
    Row {
        name: "UNSPECIFIED span is refused",
        kind: SpanKind::Unspecified,
        expect: Expect::Refused(
            "resource_spans[0].scope_spans[0].spans[0].kind: UNSPECIFIED spans are not requests (nines takes SERVER and CONSUMER spans)",
        ),
        ..BASE
    },
    Row {
        name: "a kind outside the enum (9) counts as UNSPECIFIED",
        raw_kind: Some(9),
        expect: Expect::Refused(
            "resource_spans[0].scope_spans[0].spans[0].kind: UNSPECIFIED spans are not requests (nines takes SERVER and CONSUMER spans)",
        ),
        ..BASE
    },
    // HTTP, current semantic conventions.
    Row {
        name: "new HTTP: method + route, 200",
        attrs: &[
            ("http.request.method", S("GET")),
            ("http.route", S("/orders/{id}")),
            ("http.response.status_code", I(200)),
        ],
        expect: taken("GET /orders/{id}", 200, false),
        ..BASE
    },
    Row {
        name: "new HTTP: 503 is an error",
        attrs: &[
            ("http.request.method", S("POST")),
            ("http.route", S("/pay")),
            ("http.response.status_code", I(503)),
        ],
        expect: taken("POST /pay", 503, true),
        ..BASE
    },
    Row {
        name: "new HTTP: 500 is an error (the boundary)",
        attrs: &[("http.response.status_code", I(500))],
        expect: taken("handler", 500, true),
        ..BASE
    },
    Row {
        name: "new HTTP: 499 is not an error",
        attrs: &[("http.response.status_code", I(499))],
        expect: taken("handler", 499, false),
        ..BASE
    },
    Row {
        name: "new HTTP: 999 is taken, an error",
        attrs: &[("http.response.status_code", I(999))],
        expect: taken("handler", 999, true),
        ..BASE
    },
    Row {
        name: "new HTTP: status as a string",
        attrs: &[("http.response.status_code", S("502"))],
        expect: taken("handler", 502, true),
        ..BASE
    },
    Row {
        name: "new HTTP: status as a whole double",
        attrs: &[("http.response.status_code", D(201.0))],
        expect: taken("handler", 201, false),
        ..BASE
    },
    Row {
        name: "new HTTP: status text that is no number is unknown (0)",
        attrs: &[("http.response.status_code", S("OK"))],
        expect: taken("handler", 0, false),
        ..BASE
    },
    // HTTP, older semantic conventions.
    Row {
        name: "old HTTP: http.method + http.route + http.status_code",
        attrs: &[
            ("http.method", S("GET")),
            ("http.route", S("/v1/items")),
            ("http.status_code", I(200)),
        ],
        expect: taken("GET /v1/items", 200, false),
        ..BASE
    },
    Row {
        name: "old HTTP: 504 as a string is an error",
        attrs: &[
            ("http.method", S("GET")),
            ("http.route", S("/v1/items")),
            ("http.status_code", S("504")),
        ],
        expect: taken("GET /v1/items", 504, true),
        ..BASE
    },
    Row {
        name: "old HTTP: http.target is not used; without a route the span name is the operation",
        span_name: "GET",
        attrs: &[
            ("http.method", S("GET")),
            ("http.target", S("/items/42?x=1")),
            ("http.status_code", I(200)),
        ],
        expect: taken("GET", 200, false),
        ..BASE
    },
    // Mixed and partial HTTP attributes.
    Row {
        name: "both conventions: the new method and status win",
        attrs: &[
            ("http.request.method", S("POST")),
            ("http.method", S("GET")),
            ("http.route", S("/x")),
            ("http.response.status_code", I(201)),
            ("http.status_code", I(500)),
        ],
        expect: taken("POST /x", 201, false),
        ..BASE
    },
    Row {
        name: "a new status that is no number falls back to the old one",
        attrs: &[
            ("http.response.status_code", S("n/a")),
            ("http.status_code", I(503)),
        ],
        expect: taken("handler", 503, true),
        ..BASE
    },
    Row {
        name: "an empty new method counts as absent: the old one is used",
        attrs: &[
            ("http.request.method", S("")),
            ("http.method", S("DELETE")),
            ("http.route", S("/x")),
        ],
        expect: taken("DELETE /x", 0, false),
        ..BASE
    },
    Row {
        name: "method without route: the span name",
        span_name: "GET /health",
        attrs: &[("http.request.method", S("GET"))],
        expect: taken("GET /health", 0, false),
        ..BASE
    },
    Row {
        name: "route without method: the span name",
        span_name: "health",
        attrs: &[("http.route", S("/health"))],
        expect: taken("health", 0, false),
        ..BASE
    },
    // gRPC.
    Row {
        name: "gRPC OK (0): service/method, not an error",
        attrs: &[
            ("rpc.service", S("shop.Cart")),
            ("rpc.method", S("Add")),
            ("rpc.grpc.status_code", I(0)),
        ],
        expect: taken("shop.Cart/Add", 0, false),
        ..BASE
    },
    Row {
        name: "gRPC UNAVAILABLE (14) is an error; status_code stays 0",
        attrs: &[
            ("rpc.service", S("shop.Cart")),
            ("rpc.method", S("Add")),
            ("rpc.grpc.status_code", I(14)),
        ],
        expect: taken("shop.Cart/Add", 0, true),
        ..BASE
    },
    Row {
        name: "gRPC status as a string: \"5\" is an error",
        attrs: &[("rpc.grpc.status_code", S("5"))],
        expect: taken("handler", 0, true),
        ..BASE
    },
    Row {
        name: "gRPC status as a string: \"0\" is not",
        attrs: &[("rpc.grpc.status_code", S("0"))],
        expect: taken("handler", 0, false),
        ..BASE
    },
    Row {
        name: "gRPC failure with HTTP 200: an error",
        attrs: &[
            ("http.response.status_code", I(200)),
            ("rpc.grpc.status_code", I(2)),
        ],
        expect: taken("handler", 200, true),
        ..BASE
    },
    Row {
        name: "rpc.service without rpc.method: the span name",
        span_name: "Cart.Add",
        attrs: &[("rpc.service", S("shop.Cart"))],
        expect: taken("Cart.Add", 0, false),
        ..BASE
    },
    Row {
        name: "HTTP method + route win over rpc.service/method",
        attrs: &[
            ("http.request.method", S("POST")),
            ("http.route", S("/shop.Cart/Add")),
            ("rpc.service", S("shop.Cart")),
            ("rpc.method", S("Add")),
        ],
        expect: taken("POST /shop.Cart/Add", 0, false),
        ..BASE
    },
    // A span named as the semantic conventions name it lends its name to the operation (no
    // copy); one that only looks like it does not.
    Row {
        name: "a span named \"{method} {route}\": that name",
        span_name: "GET /orders/{id}",
        attrs: &[
            ("http.request.method", S("GET")),
            ("http.route", S("/orders/{id}")),
        ],
        expect: taken("GET /orders/{id}", 0, false),
        ..BASE
    },
    Row {
        name: "a name of the same length with another joiner: method and route",
        span_name: "GET_/orders/{id}",
        attrs: &[
            ("http.request.method", S("GET")),
            ("http.route", S("/orders/{id}")),
        ],
        expect: taken("GET /orders/{id}", 0, false),
        ..BASE
    },
    Row {
        name: "a name of the route's length but another route: method and route",
        span_name: "GET /orders/{ID}",
        attrs: &[
            ("http.request.method", S("GET")),
            ("http.route", S("/orders/{id}")),
        ],
        expect: taken("GET /orders/{id}", 0, false),
        ..BASE
    },
    Row {
        name: "a span named \"{rpc.service}/{rpc.method}\": that name",
        span_name: "shop.Cart/Add",
        attrs: &[("rpc.service", S("shop.Cart")), ("rpc.method", S("Add"))],
        expect: taken("shop.Cart/Add", 0, false),
        ..BASE
    },
    Row {
        name: "HTTP method without route, with rpc: service/method",
        attrs: &[
            ("http.request.method", S("POST")),
            ("rpc.service", S("shop.Cart")),
            ("rpc.method", S("Add")),
        ],
        expect: taken("shop.Cart/Add", 0, false),
        ..BASE
    },
    // Span status.
    Row {
        name: "status UNSET: not an error",
        status: Some(StatusCode::Unset),
        ..BASE
    },
    Row {
        name: "status OK: not an error",
        status: Some(StatusCode::Ok),
        ..BASE
    },
    Row {
        name: "status ERROR alone: an error",
        status: Some(StatusCode::Error),
        expect: taken("handler", 0, true),
        ..BASE
    },
    Row {
        name: "status ERROR with HTTP 200: an error",
        status: Some(StatusCode::Error),
        attrs: &[("http.response.status_code", I(200))],
        expect: taken("handler", 200, true),
        ..BASE
    },
    Row {
        name: "status OK does not clear a 5xx",
        status: Some(StatusCode::Ok),
        attrs: &[("http.response.status_code", I(503))],
        expect: taken("handler", 503, true),
        ..BASE
    },
    Row {
        name: "status OK does not clear a gRPC failure",
        status: Some(StatusCode::Ok),
        attrs: &[("rpc.grpc.status_code", I(13))],
        expect: taken("handler", 0, true),
        ..BASE
    },
    // Status codes the native checks refuse (0 or 1..=999 only), named by the new attribute.
    Row {
        name: "status beyond int32 is refused (as -1)",
        attrs: &[("http.response.status_code", I(1 << 40))],
        expect: Expect::Refused(
            "resource_spans[0].scope_spans[0].spans[0].attributes[http.response.status_code]: must be 0 (unknown) or an HTTP-style code 1..=999, got -1",
        ),
        ..BASE
    },
    Row {
        name: "old status 1000 is refused, named as http.response.status_code",
        attrs: &[("http.status_code", I(1000))],
        expect: Expect::Refused(
            "resource_spans[0].scope_spans[0].spans[0].attributes[http.response.status_code]: must be 0 (unknown) or an HTTP-style code 1..=999, got 1000",
        ),
        ..BASE
    },
    Row {
        name: "negative status is refused",
        attrs: &[("http.response.status_code", I(-5))],
        expect: Expect::Refused(
            "resource_spans[0].scope_spans[0].spans[0].attributes[http.response.status_code]: must be 0 (unknown) or an HTTP-style code 1..=999, got -5",
        ),
        ..BASE
    },
    // Times and trace id.
    Row {
        name: "end = start: duration 0",
        end: START,
        ..BASE
    },
    Row {
        name: "no trace id: empty",
        trace_id: &[],
        trace_hex: "",
        ..BASE
    },
    Row {
        name: "end before start is refused",
        end: START - 1,
        expect: Expect::Refused(
            "resource_spans[0].scope_spans[0].spans[0].end_time_unix_nano: 1762775999999999999 is before start_time_unix_nano 1762776000000000000",
        ),
        ..BASE
    },
    Row {
        name: "start beyond i64 is refused",
        start: u64::MAX,
        end: u64::MAX,
        expect: Expect::Refused(
            "resource_spans[0].scope_spans[0].spans[0].start_time_unix_nano: 18446744073709551615 is beyond the year 2262",
        ),
        ..BASE
    },
    Row {
        name: "unset start is refused",
        start: 0,
        end: 250_000_000,
        expect: Expect::Refused(
            "resource_spans[0].scope_spans[0].spans[0].start_time_unix_nano: must be set (nanoseconds since the Unix epoch)",
        ),
        ..BASE
    },
    Row {
        name: "a duration beyond ingest.max_duration (24 h) is refused",
        end: START + 86_400_000_000_001,
        expect: Expect::Refused(
            "resource_spans[0].scope_spans[0].spans[0].end_time_unix_nano: 86400000000001 ns is longer than the limit of 86400s",
        ),
        ..BASE
    },
    Row {
        name: "no operation at all (empty span name) is refused",
        span_name: "",
        expect: Expect::Refused(
            "resource_spans[0].scope_spans[0].spans[0].name: is required and must not be empty",
        ),
        ..BASE
    },
];

fn kv(key: &str, value: Option<any_value::Value>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: value.map(|v| AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn scalar(v: V) -> any_value::Value {
    match v {
        V::S(s) => any_value::Value::StringValue(s.into()),
        V::I(i) => any_value::Value::IntValue(i),
        V::D(d) => any_value::Value::DoubleValue(d),
    }
}

/// One export: one resource of `resource` attributes with `span` in it.
fn export(resource: Vec<KeyValue>, span: Span) -> Mapped {
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(OtlpResource {
                attributes: resource,
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![span],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    both_decoders(&req, &Limits::default(), NOW).expect("one span is within every limit")
}

fn checkout() -> Vec<KeyValue> {
    vec![kv("service.name", Some(scalar(S("checkout"))))]
}

#[test]
fn spans_map_as_docs_otlp_md_says() {
    for row in SPANS {
        let n = row.name;
        let span = Span {
            trace_id: row.trace_id.to_vec(),
            name: row.span_name.into(),
            kind: row.raw_kind.unwrap_or(row.kind as i32),
            start_time_unix_nano: row.start,
            end_time_unix_nano: row.end,
            attributes: row
                .attrs
                .iter()
                .map(|(k, v)| kv(k, Some(scalar(*v))))
                .collect(),
            status: row.status.map(|code| Status {
                code: code as i32,
                ..Default::default()
            }),
            ..Default::default()
        };
        let out = export(checkout(), span);
        match row.expect {
            Expect::Taken {
                operation,
                status_code,
                error,
            } => {
                assert_eq!(out.rejected, 0, "{n}: refused: {:?}", out.reasons);
                let [push] = out.pushes.as_slice() else {
                    panic!("{n}: one push, got {}", out.pushes.len());
                };
                let [e] = push.requests.as_slice() else {
                    panic!("{n}: one request, got {}", push.requests.len());
                };
                assert_eq!(e.operation, operation, "{n}: operation");
                assert_eq!(e.status_code, status_code, "{n}: status_code");
                assert_eq!(e.error, error, "{n}: error");
                assert_eq!(e.time_unix_nano as u64, row.start, "{n}: time");
                assert_eq!(e.duration_nano as u64, row.end - row.start, "{n}: duration");
                assert_eq!(e.trace_id, row.trace_hex, "{n}: trace_id");
                let keys: Vec<&str> = e.attributes.iter().map(|a| a.key.as_str()).collect();
                let sent: Vec<&str> = row.attrs.iter().map(|(k, _)| *k).collect();
                assert_eq!(keys, sent, "{n}: attributes, in order");
            }
            Expect::Refused(why) => {
                assert!(out.pushes.is_empty(), "{n}: taken: {:?}", out.pushes);
                assert_eq!(out.rejected, 1, "{n}: rejected");
                assert_eq!(out.reasons, [why], "{n}: reason");
            }
        }
    }
}

/// A resource's attributes → (service, environment, version) of the push, or the reason
/// every span of it is refused.
struct ResourceRow {
    name: &'static str,
    attrs: &'static [(&'static str, &'static str)],
    expect: Result<(&'static str, &'static str, &'static str), &'static str>,
}

static RESOURCES: &[ResourceRow] = &[
    ResourceRow {
        name: "service.name, service.version, deployment.environment.name",
        attrs: &[
            ("service.name", "checkout"),
            ("service.version", "v1.2"),
            ("deployment.environment.name", "prod"),
        ],
        expect: Ok(("checkout", "prod", "v1.2")),
    },
    ResourceRow {
        name: "the older deployment.environment",
        attrs: &[
            ("service.name", "checkout"),
            ("deployment.environment", "staging"),
        ],
        expect: Ok(("checkout", "staging", "")),
    },
    ResourceRow {
        name: "deployment.environment.name wins over deployment.environment",
        attrs: &[
            ("service.name", "checkout"),
            ("deployment.environment", "staging"),
            ("deployment.environment.name", "prod"),
        ],
        expect: Ok(("checkout", "prod", "")),
    },
    ResourceRow {
        name: "no environment: default; no version: empty",
        attrs: &[("service.name", "checkout")],
        expect: Ok(("checkout", "default", "")),
    },
    ResourceRow {
        name: "no service.name: every span refused",
        attrs: &[("service.version", "v1.2")],
        expect: Err(
            "resource_spans[0].scope_spans[0].spans[0]: resource attribute service.name is required",
        ),
    },
    ResourceRow {
        name: "an empty service.name is none",
        attrs: &[("service.name", "")],
        expect: Err(
            "resource_spans[0].scope_spans[0].spans[0]: resource attribute service.name is required",
        ),
    },
];

#[test]
fn resources_map_as_docs_otlp_md_says() {
    for row in RESOURCES {
        let n = row.name;
        let attrs = row
            .attrs
            .iter()
            .map(|(k, v)| kv(k, Some(scalar(S(v)))))
            .collect();
        let span = Span {
            name: "handler".into(),
            kind: SpanKind::Server as i32,
            start_time_unix_nano: START,
            end_time_unix_nano: END,
            ..Default::default()
        };
        let out = export(attrs, span);
        match row.expect {
            Ok((service, environment, version)) => {
                assert_eq!(out.rejected, 0, "{n}: refused: {:?}", out.reasons);
                let [push] = out.pushes.as_slice() else {
                    panic!("{n}: one push, got {}", out.pushes.len());
                };
                let r = push.resource.as_ref().expect("a resource");
                assert_eq!(
                    (
                        r.service.as_str(),
                        r.environment.as_str(),
                        r.version.as_str()
                    ),
                    (service, environment, version),
                    "{n}: (service, environment, version)"
                );
                assert_eq!(push.requests.len(), 1, "{n}: the span is taken");
            }
            Err(why) => {
                assert!(out.pushes.is_empty(), "{n}: taken: {:?}", out.pushes);
                assert_eq!(out.rejected, 1, "{n}: rejected");
                assert_eq!(out.reasons, [why], "{n}: reason");
            }
        }
    }
}

// `attributes`: every span attribute, in order, as text: arrays comma-separated, bytes hex,
// key/value lists `k=v` comma-separated, a missing value empty.
#[test]
fn span_attributes_are_kept_as_text() {
    use any_value::Value as Av;
    let attributes = vec![
        kv("http.route", Some(Av::StringValue("/x".into()))),
        kv("n", Some(Av::IntValue(42))),
        kv("ratio", Some(Av::DoubleValue(0.25))),
        kv("cached", Some(Av::BoolValue(true))),
        kv("raw", Some(Av::BytesValue(vec![0x0a, 0xff]))),
        kv(
            "list",
            Some(Av::ArrayValue(ArrayValue {
                values: vec![
                    AnyValue {
                        value: Some(Av::StringValue("a".into())),
                    },
                    AnyValue {
                        value: Some(Av::IntValue(1)),
                    },
                    AnyValue {
                        value: Some(Av::BoolValue(false)),
                    },
                ],
            })),
        ),
        kv(
            "kv",
            Some(Av::KvlistValue(KeyValueList {
                values: vec![
                    kv("k", Some(Av::StringValue("v".into()))),
                    kv("n", Some(Av::IntValue(2))),
                ],
            })),
        ),
        kv("none", None),
    ];
    let span = Span {
        name: "handler".into(),
        kind: SpanKind::Server as i32,
        start_time_unix_nano: START,
        end_time_unix_nano: END,
        attributes,
        ..Default::default()
    };
    let out = export(checkout(), span);
    assert_eq!(out.rejected, 0, "refused: {:?}", out.reasons);
    let got: Vec<(&str, &str)> = out.pushes[0].requests[0]
        .attributes
        .iter()
        .map(|a| (a.key.as_str(), a.value.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("http.route", "/x"),
            ("n", "42"),
            ("ratio", "0.25"),
            ("cached", "true"),
            ("raw", "0aff"),
            ("list", "a,1,false"),
            ("kv", "k=v,n=2"),
            ("none", ""),
        ]
    );
}

/// Trace ids are the lowercase hex of every byte, two digits each (the digits here by
/// `format!`, not by the mapping's table).
#[test]
fn trace_ids_are_lowercase_hex_of_every_byte() {
    let every: Vec<u8> = (0..=255).collect();
    let want: String = every.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(Text::hex(&every).as_ref(), want);
    assert_eq!(Text::hex(TRACE).as_ref(), TRACE_HEX);
    assert_eq!(Text::hex(&[]).as_ref(), "");
}
