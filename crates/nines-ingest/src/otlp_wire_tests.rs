//! The trace door's wire decoder (`otlp_wire::map_trace_export`) against the decoder it
//! replaced (prost's `ExportTraceServiceRequest`, then `otlp::map_traces`), over the same
//! bytes: the exports the hot-path bench and `nines bench` send, exports with every attribute
//! type, odd resources (empty, absent, repeated, merged), unknown fields of every wire type at
//! every level, every truncation of an export, and generated exports. Same events, same
//! refusals with the same messages, or both refuse the bytes. Every table-driven row of
//! `otlp_tests` goes through [`both_decoders`] too.
//!
//! The one difference, on purpose (module docs of `otlp_wire`): a field the mapping does not
//! read is skipped unread, so bad UTF-8 in, say, a span event's name no longer refuses the
//! whole export. `the_one_difference_is_text_nines_does_not_read` pins it.

use std::borrow::Cow;

use nines_record::{RequestLike, Text};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value::Value as V,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use proptest::prelude::*;
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint};

use crate::config::Limits;
use crate::otlp::{Mapped, map_traces};
use crate::otlp_wire::map_trace_export;
use crate::wire::WireError;
use crate::{Error, Result};

/// 2025-11-10T12:00:00Z plus a minute: the door's clock.
const START: u64 = 1_762_776_000_000_000_000;
const NOW: i64 = START as i64 + 60_000_000_000;

/// Maps `bytes` with both decoders and asserts they agree: equal `Mapped` (pushes, refusal
/// count, messages), or both refusing (the same text unless both found the bytes malformed).
/// Returns the wire decoder's answer, in prost's types.
fn agree(bytes: &[u8], limits: &Limits, now: i64) -> Result<Mapped> {
    let old = ExportTraceServiceRequest::decode(bytes)
        .map_err(|e| Error::Wire(WireError::Malformed(e.to_string())))
        .and_then(|req| map_traces(req, limits, now));
    let new = map_trace_export(bytes, limits, now);
    match (&old, &new) {
        (Ok(o), Ok(n)) => assert_eq!(o, n, "the decoders map {bytes:02x?} differently"),
        (Err(Error::Wire(_)), Err(Error::Wire(_))) => {}
        (Err(o), Err(n)) => assert_eq!(o.to_string(), n.to_string()),
        _ => panic!("the decoders disagree on {bytes:02x?}: prost {old:?}, wire {new:?}"),
    }
    new.map(|m| m.to_pushes())
}

/// [`agree`] on `req` as an exporter encodes it.
pub(crate) fn both_decoders(
    req: &ExportTraceServiceRequest,
    limits: &Limits,
    now: i64,
) -> Result<Mapped> {
    agree(&req.encode_to_vec(), limits, now)
}

fn kv(key: &str, value: Option<V>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: value.map(|v| AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn s(v: &str) -> Option<V> {
    Some(V::StringValue(v.into()))
}

fn server_span(attributes: Vec<KeyValue>) -> Span {
    Span {
        trace_id: vec![0xab; 16],
        span_id: vec![1; 8],
        name: "handler".into(),
        kind: 2,
        start_time_unix_nano: START,
        end_time_unix_nano: START + 5_000_000,
        attributes,
        ..Default::default()
    }
}

fn resource(attributes: Vec<KeyValue>) -> Option<Resource> {
    Some(Resource {
        attributes,
        ..Default::default()
    })
}

fn export(resource_spans: Vec<(Option<Resource>, Vec<Vec<Span>>)>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: resource_spans
            .into_iter()
            .map(|(resource, scopes)| ResourceSpans {
                resource,
                scope_spans: scopes
                    .into_iter()
                    .map(|spans| ScopeSpans {
                        spans,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
            .collect(),
    }
}

/// Each push's service and number of request events.
fn services(mapped: &Mapped) -> Vec<(&str, usize)> {
    mapped
        .pushes
        .iter()
        .map(|p| {
            (
                p.resource.as_ref().unwrap().service.as_str(),
                p.requests.len(),
            )
        })
        .collect()
}

fn orders() -> Option<Resource> {
    resource(vec![kv("service.name", s("orders"))])
}

#[test]
fn the_bench_corpus_maps_alike() {
    use nines_testkit::otlp::trace_export;
    let limits = Limits::default();
    for n in [0, 1, 50, 512] {
        let req = trace_export("orders", n, START, 7);
        let mapped = both_decoders(&req, &limits, NOW).expect("valid");
        let events: Vec<_> = mapped.pushes.iter().flat_map(|p| &p.requests).collect();
        // The generator's contract: one event per span, every 50th a 503.
        assert_eq!(events.len(), n);
        assert_eq!(events.iter().filter(|e| e.error).count(), n.div_ceil(50));
        assert_eq!(mapped.rejected, 0);
        if n > 1 {
            assert_eq!(events[1].operation, "GET /api/orders/1");
            assert_eq!(events[1].trace_id, format!("{:032x}", 8_u128));
            assert_eq!(events[1].duration_nano, 20_000_001);
        }
    }
    // Two exports' bytes back to back are one export of both (protobuf concatenation).
    let mut bytes = trace_export("orders", 3, START, 0).encode_to_vec();
    bytes.extend(trace_export("billing", 2, START, 100).encode_to_vec());
    let mapped = agree(&bytes, &limits, NOW).expect("valid");
    let services = services(&mapped);
    assert_eq!(services, [("orders", 3), ("billing", 2)]);
}

#[test]
fn every_attribute_type_maps_alike() {
    let attributes = vec![
        kv("http.request.method", s("GET")),
        kv("http.route", s("/a")),
        kv("empty", s("")),
        kv("flag", Some(V::BoolValue(true))),
        kv("count", Some(V::IntValue(-42))),
        kv("whole", Some(V::DoubleValue(503.0))),
        kv("ratio", Some(V::DoubleValue(2.5))),
        kv("blob", Some(V::BytesValue(vec![0x0a, 0xff]))),
        kv(
            "list",
            Some(V::ArrayValue(ArrayValue {
                values: vec![
                    AnyValue { value: s("a") },
                    AnyValue {
                        value: Some(V::IntValue(1)),
                    },
                    AnyValue { value: None },
                    AnyValue {
                        value: Some(V::ArrayValue(ArrayValue {
                            values: vec![AnyValue {
                                value: Some(V::BoolValue(false)),
                            }],
                        })),
                    },
                ],
            })),
        ),
        kv(
            "map",
            Some(V::KvlistValue(KeyValueList {
                values: vec![
                    kv("k", s("v")),
                    kv("n", Some(V::DoubleValue(0.5))),
                    kv("z", None),
                ],
            })),
        ),
        kv("no_value", None),
        KeyValue {
            key: "empty_any".into(),
            value: Some(AnyValue { value: None }),
            ..Default::default()
        },
        // The status code as text; a second one of the same name is not read.
        kv("http.response.status_code", s(" 503 ")),
        kv("http.response.status_code", Some(V::IntValue(200))),
    ];
    let req = export(vec![(orders(), vec![vec![server_span(attributes)]])]);
    let mapped = both_decoders(&req, &Limits::default(), NOW).expect("valid");
    let event = &mapped.pushes[0].requests[0];
    assert_eq!(event.operation, "GET /a");
    assert_eq!((event.status_code, event.error), (503, true));
    let text: Vec<(&str, &str)> = event
        .attributes
        .iter()
        .map(|a| (a.key.as_str(), a.value.as_str()))
        .collect();
    assert_eq!(
        text,
        [
            ("http.request.method", "GET"),
            ("http.route", "/a"),
            ("empty", ""),
            ("flag", "true"),
            ("count", "-42"),
            ("whole", "503"),
            ("ratio", "2.5"),
            ("blob", "0aff"),
            ("list", "a,1,false"),
            ("map", "k=v,n=0.5,z="),
            ("no_value", ""),
            ("empty_any", ""),
            ("http.response.status_code", " 503 "),
            ("http.response.status_code", "200"),
        ]
    );
    // Whole doubles and ints count as status codes; a fraction does not.
    for (value, code) in [
        (V::DoubleValue(404.0), 404),
        (V::DoubleValue(404.5), 0),
        (V::BoolValue(true), 0),
    ] {
        let req = export(vec![(
            orders(),
            vec![vec![server_span(vec![kv("http.status_code", Some(value))])]],
        )]);
        let mapped = both_decoders(&req, &Limits::default(), NOW).expect("valid");
        assert_eq!(mapped.pushes[0].requests[0].status_code, code);
    }
}

#[test]
fn odd_resources_map_alike() {
    let limits = Limits::default();
    let span = || server_span(vec![]);
    // No resource_spans; one with nothing in it; one with a resource and no scopes; one with
    // empty scopes; a resource without service.name (refused span by span); no resource.
    let req = export(vec![
        (None, vec![]),
        (orders(), vec![]),
        (orders(), vec![vec![], vec![]]),
        (
            resource(vec![kv("service.version", s("1"))]),
            vec![vec![span()], vec![span()]],
        ),
        (None, vec![vec![span()]]),
        (
            resource(vec![kv("service.name", Some(V::IntValue(7)))]),
            vec![vec![span()]],
        ),
        (orders(), vec![vec![], vec![span(), span()]]),
    ]);
    let mapped = both_decoders(&req, &limits, NOW).expect("valid");
    assert_eq!(mapped.rejected, 3);
    assert_eq!(
        mapped.reasons,
        [
            "resource_spans[3].scope_spans[0].spans[0]: resource attribute service.name is required",
            "resource_spans[3].scope_spans[1].spans[0]: resource attribute service.name is required",
            "resource_spans[4].scope_spans[0].spans[0]: resource attribute service.name is required",
        ]
    );
    // An int service.name is taken as its text.
    let services = services(&mapped);
    assert_eq!(services, [("7", 1), ("orders", 2)]);
    assert!(
        both_decoders(&export(vec![]), &limits, NOW)
            .unwrap()
            .pushes
            .is_empty()
    );

    // A resource sent twice in one resource_spans is one resource, merged: the name from the
    // first, the version from the second.
    let first = resource(vec![kv("service.name", s("orders"))]).unwrap();
    let second = resource(vec![kv("service.version", s("2.0"))]).unwrap();
    let scope = ScopeSpans {
        spans: vec![span()],
        ..Default::default()
    };
    let mut rs = Vec::new();
    ld(&mut rs, 1, &first.encode_to_vec());
    ld(&mut rs, 2, &scope.encode_to_vec());
    ld(&mut rs, 1, &second.encode_to_vec());
    let mut bytes = Vec::new();
    ld(&mut bytes, 1, &rs);
    let mapped = agree(&bytes, &limits, NOW).expect("valid");
    let r = mapped.pushes[0].resource.as_ref().unwrap();
    assert_eq!((r.service.as_str(), r.version.as_str()), ("orders", "2.0"));
}

#[test]
fn fields_nines_does_not_read_change_nothing() {
    let limits = Limits::default();
    let plain = export(vec![(
        orders(),
        vec![vec![server_span(vec![kv("a", s("b"))])]],
    )]);
    let mut busy = plain.clone();
    busy.resource_spans[0].schema_url = "https://opentelemetry.io/schemas/1.30.0".into();
    busy.resource_spans[0].scope_spans[0].scope = Some(InstrumentationScope {
        name: "io.opentelemetry.tomcat".into(),
        version: "2.0".into(),
        attributes: vec![kv("x", Some(V::IntValue(1)))],
        dropped_attributes_count: 1,
    });
    busy.resource_spans[0].scope_spans[0].schema_url = "s".into();
    let span = &mut busy.resource_spans[0].scope_spans[0].spans[0];
    span.parent_span_id = vec![2; 8];
    span.trace_state = "vendor=1".into();
    span.flags = 0x301;
    span.dropped_attributes_count = 3;
    span.events = vec![Event {
        time_unix_nano: START,
        name: "exception".into(),
        attributes: vec![kv("exception.type", s("E"))],
        dropped_attributes_count: 0,
    }];
    span.links = vec![Link {
        trace_id: vec![9; 16],
        span_id: vec![9; 8],
        ..Default::default()
    }];
    span.dropped_events_count = 1;
    span.status = Some(Status {
        message: "it broke".into(),
        code: 1,
    });
    let expected = both_decoders(&plain, &limits, NOW).expect("valid");
    assert_eq!(both_decoders(&busy, &limits, NOW).expect("valid"), expected);
    assert_eq!(expected.pushes[0].requests.len(), 1);
}

// ---- hand-built protobuf -----------------------------------------------------------------

fn ld(out: &mut Vec<u8>, number: u32, payload: &[u8]) {
    encode_key(number, WireType::LengthDelimited, out);
    encode_varint(payload.len() as u64, out);
    out.extend_from_slice(payload);
}

/// One unknown field of every wire type (varint, 64-bit, length-delimited, 32-bit, group).
fn unknown_fields() -> Vec<u8> {
    let mut out = Vec::new();
    encode_key(100, WireType::Varint, &mut out);
    encode_varint(300, &mut out);
    encode_key(101, WireType::SixtyFourBit, &mut out);
    out.extend(7_u64.to_le_bytes());
    ld(&mut out, 102, b"not \xff utf-8 either");
    encode_key(103, WireType::ThirtyTwoBit, &mut out);
    out.extend(7_u32.to_le_bytes());
    encode_key(104, WireType::StartGroup, &mut out);
    encode_key(1, WireType::Varint, &mut out);
    encode_varint(1, &mut out);
    encode_key(104, WireType::EndGroup, &mut out);
    out
}

/// An export of one SERVER span with an error status and an int and a text attribute, built
/// field by field; with `extra` appended to every message at every level.
fn hand_built(extra: &[u8]) -> Vec<u8> {
    let with = |mut message: Vec<u8>| {
        message.extend_from_slice(extra);
        message
    };
    let any = |v: V| with(AnyValue { value: Some(v) }.encode_to_vec());
    let key_value = |key: &str, value: Vec<u8>| {
        let mut m = Vec::new();
        ld(&mut m, 1, key.as_bytes());
        ld(&mut m, 2, &value);
        with(m)
    };
    let mut span = server_span(vec![]).encode_to_vec();
    ld(
        &mut span,
        9,
        &key_value("http.response.status_code", any(V::IntValue(404))),
    );
    ld(
        &mut span,
        9,
        &key_value("http.route", any(V::StringValue("/x".into()))),
    );
    ld(
        &mut span,
        9,
        &key_value("http.method", any(V::StringValue("PUT".into()))),
    );
    ld(
        &mut span,
        15,
        &with(
            Status {
                message: String::new(),
                code: 2,
            }
            .encode_to_vec(),
        ),
    );
    let mut scope = Vec::new();
    ld(&mut scope, 2, &with(span));
    let mut rs = Vec::new();
    ld(&mut rs, 1, &with(orders().unwrap().encode_to_vec()));
    ld(&mut rs, 2, &with(scope));
    let mut export = Vec::new();
    ld(&mut export, 1, &with(rs));
    with(export)
}

#[test]
fn unknown_fields_are_skipped_alike() {
    let limits = Limits::default();
    let clean = agree(&hand_built(&[]), &limits, NOW).expect("valid");
    let event = &clean.pushes[0].requests[0];
    assert_eq!(event.operation, "PUT /x");
    assert_eq!((event.status_code, event.error), (404, true));
    // An unknown field in every message: the same events. (In an attribute's value it also
    // sends the wire decoder down prost's path for that value.)
    assert_eq!(
        agree(&hand_built(&unknown_fields()), &limits, NOW).expect("valid"),
        clean
    );
}

#[test]
fn every_truncation_fails_or_maps_alike() {
    let limits = Limits::default();
    let mut full = hand_built(&unknown_fields());
    full.extend(nines_testkit::otlp::trace_export("orders", 3, START, 0).encode_to_vec());
    let mut refused = 0;
    for cut in 0..full.len() {
        if agree(&full[..cut], &limits, NOW).is_err() {
            refused += 1;
        }
    }
    // Most cuts land inside a field; some land between whole resource_spans, and map.
    assert!(
        refused > full.len() / 2,
        "{refused} of {} cuts refused",
        full.len()
    );
    assert!(refused < full.len());
}

/// An export of one `orders` resource with `spans` (encoded) in one scope.
fn export_of(spans: &[&[u8]]) -> Vec<u8> {
    let mut scope = Vec::new();
    for span in spans {
        ld(&mut scope, 2, span);
    }
    let mut rs = Vec::new();
    ld(&mut rs, 1, &orders().unwrap().encode_to_vec());
    ld(&mut rs, 2, &scope);
    let mut bytes = Vec::new();
    ld(&mut bytes, 1, &rs);
    bytes
}

#[test]
fn text_nines_reads_must_be_utf8_and_well_typed_for_both() {
    let limits = Limits::default();
    let good = server_span(vec![]).encode_to_vec();
    let mut bad_name = server_span(vec![]);
    bad_name.name = String::new();
    let mut bad_name = bad_name.encode_to_vec();
    ld(&mut bad_name, 5, b"GET \xff");
    let mut kind_as_text = server_span(vec![]).encode_to_vec();
    ld(&mut kind_as_text, 6, b"2");
    let mut start_as_varint = server_span(vec![]).encode_to_vec();
    encode_key(7, WireType::Varint, &mut start_as_varint);
    encode_varint(START, &mut start_as_varint);
    let mut bad_key = server_span(vec![kv("ok", s("v"))]).encode_to_vec();
    let mut kv_bytes = Vec::new();
    ld(&mut kv_bytes, 1, b"k\xff");
    ld(&mut bad_key, 9, &kv_bytes);
    // The second span of the scope is the bad one: the wire decoder's refusal names its
    // path and field (prost's names the field alone).
    let at = "resource_spans[0].scope_spans[0].spans[1]";
    for (span, why) in [
        (bad_name, format!("{at}.name: invalid UTF-8")),
        (
            kind_as_text,
            format!("{at}.kind: length-delimited where varint is due"),
        ),
        (
            start_as_varint,
            format!("{at}.start_time_unix_nano: varint where 64-bit is due"),
        ),
        (bad_key, format!("{at}.attributes[1].key: invalid UTF-8")),
    ] {
        match agree(&export_of(&[&good, &span]), &limits, NOW) {
            Err(Error::Wire(WireError::Malformed(m))) => assert_eq!(m, why),
            other => panic!("{why}: {other:?}"),
        }
    }
}

#[test]
fn the_one_difference_is_text_nines_does_not_read() {
    let limits = Limits::default();
    let mut span = server_span(vec![]).encode_to_vec();
    let mut event = Vec::new();
    ld(&mut event, 2, b"exception \xff");
    ld(&mut span, 11, &event);
    let bytes = export_of(&[&span]);
    assert!(ExportTraceServiceRequest::decode(bytes.as_slice()).is_err());
    let mapped = map_trace_export(&bytes, &limits, NOW).expect("the span is taken");
    assert_eq!(mapped.pushes[0].events.requests.len(), 1);
    assert_eq!(mapped.pushes[0].events.requests[0].operation, "handler");
}

#[test]
fn too_many_spans_are_refused_alike_before_any_is_counted() {
    let limits = Limits {
        max_events_per_request: 2,
        ..Limits::default()
    };
    let req = export(vec![
        (orders(), vec![vec![server_span(vec![])]]),
        (None, vec![vec![server_span(vec![]), server_span(vec![])]]),
    ]);
    let e = both_decoders(&req, &limits, NOW).expect_err("3 spans > 2");
    assert_eq!(
        e.to_string(),
        Error::invalid(
            "resource_spans",
            "3 spans in one request, more than the limit of 2"
        )
        .to_string()
    );
}

// ---- generated exports ---------------------------------------------------------------------

fn scalar() -> impl Strategy<Value = Option<V>> {
    prop_oneof![
        prop::sample::select(vec!["", "GET", "POST", "/a", "503", " 200 ", "x y", "é"])
            .prop_map(|v| Some(V::StringValue(v.into()))),
        any::<bool>().prop_map(|b| Some(V::BoolValue(b))),
        prop::sample::select(vec![0_i64, 200, 404, 503, -1, 1 << 40, 14])
            .prop_map(|i| Some(V::IntValue(i))),
        prop::sample::select(vec![503.0_f64, 2.5, -0.0, 1e300])
            .prop_map(|d| Some(V::DoubleValue(d))),
        prop::collection::vec(any::<u8>(), 0..4).prop_map(|b| Some(V::BytesValue(b))),
        Just(None),
    ]
}

fn value() -> impl Strategy<Value = Option<V>> {
    scalar().prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(|vs| {
                Some(V::ArrayValue(ArrayValue {
                    values: vs.into_iter().map(|value| AnyValue { value }).collect(),
                }))
            }),
            prop::collection::vec(inner, 0..3).prop_map(|vs| {
                Some(V::KvlistValue(KeyValueList {
                    values: vs.into_iter().map(|v| kv("k", v)).collect(),
                }))
            }),
        ]
    })
}

fn attribute() -> impl Strategy<Value = KeyValue> {
    let keys = vec![
        "http.request.method",
        "http.method",
        "http.route",
        "http.response.status_code",
        "http.status_code",
        "rpc.service",
        "rpc.method",
        "rpc.grpc.status_code",
        "url.scheme",
        "",
    ];
    (prop::sample::select(keys), value(), any::<bool>()).prop_map(|(k, v, wrapped)| {
        if v.is_none() && wrapped {
            // A value that is there but empty.
            KeyValue {
                key: k.into(),
                value: Some(AnyValue { value: None }),
                ..Default::default()
            }
        } else {
            kv(k, v)
        }
    })
}

fn span() -> impl Strategy<Value = Span> {
    (
        prop_oneof![0..7_i32, Just(99), Just(-3)],
        prop::sample::select(vec!["", "handler", "GET /x"]),
        prop_oneof![
            (0..120_000_000_000_u64).prop_map(|ago| START + 60_000_000_000 - ago),
            Just(0_u64),
            Just(u64::MAX),
            Just(START - 400 * 86_400_000_000_000),
        ],
        prop_oneof![0..2_000_000_000_i64, Just(-1_i64)],
        prop::collection::vec(attribute(), 0..6),
        prop::option::of(0..4_i32),
        prop::sample::select(vec![0_usize, 8, 16]),
        any::<bool>(),
    )
        .prop_map(
            |(kind, name, start, dur, attributes, status, id_len, events)| Span {
                trace_id: vec![0x5a; id_len],
                span_id: vec![1; 8],
                name: name.into(),
                kind,
                start_time_unix_nano: start,
                end_time_unix_nano: start.saturating_add_signed(dur),
                attributes,
                status: status.map(|code| Status {
                    message: "m".into(),
                    code,
                }),
                events: if events {
                    vec![Event {
                        name: "e".into(),
                        ..Default::default()
                    }]
                } else {
                    vec![]
                },
                ..Default::default()
            },
        )
}

fn resource_attributes() -> impl Strategy<Value = Option<Resource>> {
    prop::option::of(
        (
            prop::sample::select(vec![None, s(""), s("orders"), Some(V::IntValue(3))]),
            prop::sample::select(vec![None, s("1.2.3"), s("")]),
            prop::sample::select(vec![None, s("production")]),
        )
            .prop_map(|(name, version, env)| {
                let mut attributes = Vec::new();
                if let Some(n) = name {
                    attributes.push(kv("service.name", Some(n)));
                }
                if let Some(v) = version {
                    attributes.push(kv("service.version", Some(v)));
                }
                if let Some(e) = env {
                    attributes.push(kv("deployment.environment.name", Some(e)));
                }
                Resource {
                    attributes,
                    ..Default::default()
                }
            }),
    )
}

fn generated_export() -> impl Strategy<Value = ExportTraceServiceRequest> {
    prop::collection::vec(
        (
            resource_attributes(),
            prop::collection::vec(prop::collection::vec(span(), 0..4), 0..3),
        ),
        0..4,
    )
    .prop_map(|rs| {
        let mut req = export(vec![]);
        for (resource, scopes) in rs {
            req.resource_spans
                .extend(export(vec![(resource, scopes)]).resource_spans);
        }
        req
    })
}

proptest! {
    #[test]
    fn generated_exports_map_alike(req in generated_export(), limit in prop_oneof![Just(1000_usize), Just(3)]) {
        let limits = Limits { max_events_per_request: limit, ..Limits::default() };
        let _ = both_decoders(&req, &limits, NOW);
    }
}

#[test]
fn the_wire_decoder_borrows_the_text_it_can() {
    let mut span = server_span(vec![
        kv("http.request.method", s("GET")),
        kv("http.route", s("/orders/{id}")),
        kv("url.scheme", s("https")),
        kv("http.response.status_code", Some(V::IntValue(200))),
    ]);
    span.name = "GET /orders/{id}".into();
    let bytes = export(vec![(orders(), vec![vec![span.clone()]])]).encode_to_vec();
    let mapped = map_trace_export(&bytes, &Limits::default(), NOW).expect("taken");
    let events = &mapped.pushes[0].events;
    let event = events.event(&events.requests[0]);
    assert_eq!(event.request.operation, "GET /orders/{id}");
    assert!(
        matches!(event.request.operation, Cow::Borrowed(_)),
        "the span's name"
    );
    let kept: Vec<(bool, &str)> = event
        .attributes
        .iter()
        .map(|(k, v)| (matches!(k, Cow::Borrowed(_)), kept_as(v)))
        .collect();
    // Keys and text values are the export's; an int's digits are made in place.
    let lent = (true, "lent");
    assert_eq!(kept, [lent, lent, lent, (true, "short")]);
    assert_eq!(&*event.attributes[3].1, "200");
    // So is the trace id's hex (16 bytes: 32 digits).
    assert_eq!(kept_as(&event.request.trace_id), "short");
    assert_eq!(&*event.request.trace_id, "abababababababababababababababab");
    // Named otherwise, the operation is made from method and route.
    span.name = "handler".into();
    let bytes = export(vec![(orders(), vec![vec![span]])]).encode_to_vec();
    let mapped = map_trace_export(&bytes, &Limits::default(), NOW).expect("taken");
    let event = &mapped.pushes[0].events.requests[0];
    assert_eq!(event.operation, "GET /orders/{id}");
    assert!(matches!(event.operation, Cow::Owned(_)));
}

/// How a mapped event keeps a text.
fn kept_as(text: &Text) -> &'static str {
    match text {
        Text::Lent(_) => "lent",
        Text::Short(_) => "short",
        Text::Owned(_) => "owned",
    }
}

/// The room made for attributes before reading is bounded by the bytes that could hold
/// them: a first span of many attributes followed by many empty spans must not make the
/// decoder ask for room for their product (tens of GB: the process would abort).
#[test]
fn room_for_attributes_is_bounded_by_the_bytes() {
    let first = server_span(vec![KeyValue::default(); 10_000]);
    let mut spans = vec![first];
    spans.extend(std::iter::repeat_n(Span::default(), 100_000));
    let bytes = export(vec![(orders(), vec![spans])]).encode_to_vec();
    let limits = Limits::default();
    let err = map_trace_export(&bytes, &limits, NOW).expect_err("more spans than allowed");
    assert!(
        err.to_string().contains("100001 spans in one request"),
        "refused for its count: {err}"
    );
}

/// A push's events keep their attributes in one list, each a range of it; a span refused
/// after its attributes were mapped (here: more than `max_attributes`) leaves none behind.
#[test]
fn a_refused_span_leaves_no_attributes_in_the_push() {
    let limits = Limits {
        max_attributes: 2,
        ..Limits::default()
    };
    let attrs = |keys: &[&str]| keys.iter().map(|k| kv(k, s("v"))).collect();
    let spans = vec![
        server_span(attrs(&["a1", "a2"])),
        server_span(attrs(&["b1", "b2", "b3"])),
        server_span(attrs(&["c1"])),
    ];
    let req = export(vec![(orders(), vec![spans])]);
    let bytes = req.encode_to_vec();
    let wire = map_trace_export(&bytes, &limits, NOW).expect("valid");
    let prost = map_traces(req, &limits, NOW).expect("valid");
    for mapped in [&wire, &prost] {
        assert_eq!(mapped.rejected, 1);
        let events = &mapped.pushes[0].events;
        let keys: Vec<&str> = events.attributes.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(keys, ["a1", "a2", "c1"]);
        let ranges: Vec<_> = events
            .requests
            .iter()
            .map(|r| r.attributes.clone())
            .collect();
        assert_eq!(ranges, [0..2, 2..3]);
        let joined = events.joined();
        let c: Vec<_> = joined[1].attributes().collect();
        assert_eq!(c, [("c1", "v")]);
    }
}
