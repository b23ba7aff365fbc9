//! OTLP trace exports as an HTTP server's OpenTelemetry SDK sends them, for the hot-path
//! benches and the OTLP stage of `nines bench`.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn text(v: &str) -> Value {
    Value::StringValue(v.into())
}

/// An export of `n` SERVER spans of `service`, all ending at `end_ns`: four routes, 20 ms,
/// five HTTP attributes each, every 50th span a 503. Trace ids are `first_trace + i`, so
/// exports built with disjoint ranges carry distinct traces. Every span maps to exactly one
/// request event (`docs/otlp.md`); errors are `n.div_ceil(50)`.
pub fn trace_export(
    service: &str,
    n: usize,
    end_ns: u64,
    first_trace: u128,
) -> ExportTraceServiceRequest {
    let spans = (0..n)
        .map(|i| Span {
            trace_id: (first_trace + i as u128).to_be_bytes().to_vec(),
            span_id: (i as u64 + 1).to_be_bytes().to_vec(),
            name: "GET /api/orders/{id}".into(),
            kind: 2,
            start_time_unix_nano: end_ns - 20_000_000 - i as u64,
            end_time_unix_nano: end_ns,
            attributes: vec![
                kv("http.request.method", text("GET")),
                kv(
                    "http.route",
                    Value::StringValue(format!("/api/orders/{}", i % 4)),
                ),
                kv(
                    "http.response.status_code",
                    Value::IntValue(if i % 50 == 0 { 503 } else { 200 }),
                ),
                kv("url.scheme", text("https")),
                kv("server.address", text("orders.internal")),
            ],
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", text(service)),
                    kv("service.version", text("1.4.2")),
                    kv("deployment.environment.name", text("production")),
                ],
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_has_the_spans_asked_for() {
        let e = trace_export("orders", 101, 5_000_000_000, 7);
        let spans = &e.resource_spans[0].scope_spans[0].spans;
        assert_eq!(spans.len(), 101);
        assert_eq!(spans[100].trace_id, 107_u128.to_be_bytes().to_vec());
        // i = 0, 50, 100 are the 503s.
        let errors = spans
            .iter()
            .filter(|s| {
                s.attributes.iter().any(|a| {
                    a.key == "http.response.status_code"
                        && a.value.as_ref().and_then(|v| v.value.clone())
                            == Some(Value::IntValue(503))
                })
            })
            .count();
        assert_eq!(errors, 3);
        assert_eq!(101_usize.div_ceil(50), 3);
    }
}
