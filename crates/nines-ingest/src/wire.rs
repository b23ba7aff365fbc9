//! Sizing a request on the wire before it is decoded.
//!
//! A protobuf body of 16 MiB can decode into gigabytes: `2a 00` is two bytes on the wire and
//! an `IncidentEvent` of over a hundred bytes in memory, and gzip shrinks 8 M of them to
//! 16 KB. So every door scans the (decompressed) bytes against the shape of its request
//! first, counting the events and estimating what decoding would allocate, and refuses a
//! request over `ingest.max_events_per_request` or `ingest.max_decoded_bytes` before a single
//! struct exists. The scan reads each byte once and allocates nothing; and where no body of
//! that length could pass `ingest.max_decoded_bytes`' bound, it only counts the events
//! ([`scan_within`]).
//!
//! A [`Shape`] lists the fields of a message that decode into allocations of their own
//! (sub-messages, with their size in memory); other length-delimited fields (strings, bytes,
//! packed scalars) are counted as the bytes they copy. The shapes below follow
//! `proto/nines/v1` and OTLP 1.x; a field they do not list is treated as bytes, which is what
//! prost does with an unknown field at most.

use std::mem::size_of;

pub use nines_record::wire::WireError;
use nines_record::wire::{MAX_DEPTH, advance, key, skip_group, varint};

use nines_proto::v1 as native;
use opentelemetry_proto::tonic::collector::{
    logs::v1 as logs, metrics::v1 as metrics, trace::v1 as trace,
};
use opentelemetry_proto::tonic::common::v1 as common;
use opentelemetry_proto::tonic::logs::v1 as log_model;
use opentelemetry_proto::tonic::metrics::v1 as metric_model;
use opentelemetry_proto::tonic::resource::v1 as resource;
use opentelemetry_proto::tonic::trace::v1 as trace_model;

/// What one scalar (varint, fixed32, fixed64) is counted as, whatever its width.
const SCALAR_BYTES: usize = size_of::<u64>();

/// What the decoding of a message allocates, as far as sizing goes.
#[derive(Debug)]
pub struct Shape {
    /// Bytes one decoded instance takes (its struct; strings and vectors are counted apart).
    pub size: usize,
    /// The fields that are messages (or packed varints), by field number.
    pub fields: &'static [(u32, Field)],
}

/// A field of a [`Shape`].
#[derive(Debug, Clone, Copy)]
pub enum Field {
    /// A sub-message; each occurrence is one more instance.
    Message(&'static Shape),
    /// A sub-message each occurrence of which is one event (span, log record, data point…).
    Event(&'static Shape),
    /// Packed varints: one byte on the wire can be a `u64` in memory.
    PackedVarint,
    /// A repeated string: an empty one is 2 bytes on the wire and a `String` in memory.
    Strings,
}

/// What a scan found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sizing {
    /// Occurrences of [`Field::Event`] fields.
    pub events: usize,
    /// Estimated bytes decoding would allocate: structs, strings, vectors' elements.
    pub decoded_bytes: usize,
}

/// Scans `bytes` as a message of `shape`, every byte of it.
pub fn scan(shape: &'static Shape, bytes: &[u8]) -> Result<Sizing, WireError> {
    let mut sizing = Sizing {
        events: 0,
        decoded_bytes: shape.size,
    };
    scan_message(shape, bytes, 0, &mut sizing, true)?;
    Ok(sizing)
}

/// Scans `bytes` as a message of `shape` only as deep as a limit of `max_decoded_bytes`
/// needs.
///
/// No body of `n` bytes can be estimated at more than `shape.size + n ×`
/// [`expansion`]`(shape)`. When that bound is within `max_decoded_bytes` (every push of a
/// few hundred kilobytes at the defaults), the events are only counted: the scan goes down
/// to them but not into them, and `decoded_bytes` is the bound. Their insides are left to
/// the decoder, which refuses what is malformed in what it reads (prost reads everything;
/// `otlp_wire` what the mapping uses). Otherwise this is [`scan`]. The native door spent a
/// fifth of its samples in the full scan (22 %, BENCHMARKS.md), before prost read the same
/// bytes again.
pub fn scan_within(
    shape: &'static Shape,
    bytes: &[u8],
    max_decoded_bytes: usize,
) -> Result<Sizing, WireError> {
    let bound = shape
        .size
        .saturating_add(expansion(shape).saturating_mul(bytes.len()));
    if bound > max_decoded_bytes {
        return scan(shape, bytes);
    }
    let mut sizing = Sizing::default();
    scan_message(shape, bytes, 0, &mut sizing, false)?;
    sizing.decoded_bytes = bound;
    Ok(sizing)
}

/// The most one byte of a body can add to [`scan`]'s estimate for `shape`.
///
/// Every field takes at least two bytes (a key, then a value or a length), so: a
/// sub-message adds its struct per two bytes, a repeated string a `String` per two bytes
/// plus one per byte of text, packed varints eight per byte, a scalar eight per two bytes,
/// any other bytes one each. The largest of these over every shape reachable from `shape`.
pub fn expansion(shape: &'static Shape) -> usize {
    let mut seen: Vec<&'static Shape> = vec![shape];
    let mut most = size_of::<String>().div_ceil(2).max(SCALAR_BYTES);
    let mut i = 0;
    while let Some(s) = seen.get(i).copied() {
        i += 1;
        most = most.max(s.size.div_ceil(2));
        for (_, field) in s.fields {
            if let Field::Message(inner) | Field::Event(inner) = field
                && !seen.iter().any(|x| std::ptr::eq(*x, *inner))
            {
                seen.push(inner);
            }
        }
    }
    most
}

/// With `deep` false, events are counted but not entered (see [`scan_within`]).
fn scan_message(
    shape: &'static Shape,
    mut bytes: &[u8],
    depth: usize,
    sizing: &mut Sizing,
    deep: bool,
) -> Result<(), WireError> {
    if depth > MAX_DEPTH {
        return Err(WireError::Malformed(format!(
            "nested deeper than {MAX_DEPTH} messages"
        )));
    }
    while !bytes.is_empty() {
        let (number, wire_type) = key(&mut bytes)?;
        let field = shape
            .fields
            .iter()
            .find(|(n, _)| *n == number)
            .map(|(_, f)| *f);
        if matches!(field, Some(Field::Message(_) | Field::Event(_))) && wire_type != 2 {
            return Err(WireError::Malformed(format!(
                "field {number}: invalid wire type {wire_type} for a message field"
            )));
        }
        match wire_type {
            // Scalars: counted as 8 bytes each, which also covers unpacked repeated ones.
            0 | 1 | 5 => {
                match wire_type {
                    0 => drop(varint(&mut bytes)?),
                    1 => advance(&mut bytes, 8)?,
                    _ => advance(&mut bytes, 4)?,
                }
                sizing.decoded_bytes = sizing.decoded_bytes.saturating_add(SCALAR_BYTES);
            }
            2 => {
                let len = varint(&mut bytes)?;
                let len = usize::try_from(len)
                    .ok()
                    .filter(|l| *l <= bytes.len())
                    .ok_or_else(|| {
                        WireError::Malformed(format!(
                            "field {number}: length {len} runs past the end of its message"
                        ))
                    })?;
                let (inner, rest) = bytes.split_at(len);
                bytes = rest;
                match field {
                    Some(Field::Message(s)) | Some(Field::Event(s)) => {
                        let event = matches!(field, Some(Field::Event(_)));
                        if event {
                            sizing.events += 1;
                        }
                        sizing.decoded_bytes = sizing.decoded_bytes.saturating_add(s.size);
                        if deep || !event {
                            scan_message(s, inner, depth + 1, sizing, deep)?;
                        }
                    }
                    Some(Field::PackedVarint) => {
                        sizing.decoded_bytes = sizing
                            .decoded_bytes
                            .saturating_add(len.saturating_mul(SCALAR_BYTES));
                    }
                    Some(Field::Strings) => {
                        sizing.decoded_bytes = sizing
                            .decoded_bytes
                            .saturating_add(size_of::<String>() + len);
                    }
                    None => sizing.decoded_bytes = sizing.decoded_bytes.saturating_add(len),
                }
            }
            3 => skip_group(&mut bytes, number, depth)?,
            other => {
                return Err(WireError::Malformed(format!(
                    "field {number}: invalid wire type {other}"
                )));
            }
        }
    }
    Ok(())
}

// ---- nines.v1 -------------------------------------------------------------------------

/// `nines.v1.PushRequest`: requests (3), deploys (4), incidents (5) and gate decisions (6)
/// are the events.
pub static PUSH: Shape = Shape {
    size: size_of::<native::PushRequest>(),
    fields: &[
        (1, Field::Message(&NATIVE_RESOURCE)),
        (3, Field::Event(&REQUEST_EVENT)),
        (4, Field::Event(&DEPLOY_EVENT)),
        (5, Field::Event(&INCIDENT_EVENT)),
        (6, Field::Event(&GATE_DECISION_EVENT)),
    ],
};
static NATIVE_RESOURCE: Shape = Shape {
    size: size_of::<native::Resource>(),
    fields: &[],
};
static REQUEST_EVENT: Shape = Shape {
    size: size_of::<native::RequestEvent>(),
    fields: &[(7, Field::Message(&NATIVE_ATTRIBUTE))],
};
static NATIVE_ATTRIBUTE: Shape = Shape {
    size: size_of::<native::Attribute>(),
    fields: &[],
};
static DEPLOY_EVENT: Shape = Shape {
    size: size_of::<native::DeployEvent>(),
    fields: &[(5, Field::Message(&COMMIT))],
};
static COMMIT: Shape = Shape {
    size: size_of::<native::Commit>(),
    fields: &[],
};
static INCIDENT_EVENT: Shape = Shape {
    size: size_of::<native::IncidentEvent>(),
    fields: &[],
};
static GATE_DECISION_EVENT: Shape = Shape {
    size: size_of::<native::GateDecisionEvent>(),
    fields: &[(6, Field::Strings), (7, Field::Strings)],
};

// ---- OTLP common ----------------------------------------------------------------------

static ANY_VALUE: Shape = Shape {
    size: size_of::<common::AnyValue>(),
    fields: &[
        (5, Field::Message(&ARRAY_VALUE)),
        (6, Field::Message(&KEY_VALUE_LIST)),
    ],
};
static ARRAY_VALUE: Shape = Shape {
    size: size_of::<common::ArrayValue>(),
    fields: &[(1, Field::Message(&ANY_VALUE))],
};
static KEY_VALUE_LIST: Shape = Shape {
    size: size_of::<common::KeyValueList>(),
    fields: &[(1, Field::Message(&KEY_VALUE))],
};
static KEY_VALUE: Shape = Shape {
    size: size_of::<common::KeyValue>(),
    fields: &[(2, Field::Message(&ANY_VALUE))],
};
static SCOPE: Shape = Shape {
    size: size_of::<common::InstrumentationScope>(),
    fields: &[(3, Field::Message(&KEY_VALUE))],
};
static ENTITY_REF: Shape = Shape {
    size: size_of::<common::EntityRef>(),
    fields: &[(3, Field::Strings), (4, Field::Strings)],
};
static RESOURCE: Shape = Shape {
    size: size_of::<resource::Resource>(),
    fields: &[
        (1, Field::Message(&KEY_VALUE)),
        (3, Field::Message(&ENTITY_REF)),
    ],
};

// ---- OTLP traces ----------------------------------------------------------------------

/// `ExportTraceServiceRequest`: every span is an event.
pub static TRACES: Shape = Shape {
    size: size_of::<trace::ExportTraceServiceRequest>(),
    fields: &[(1, Field::Message(&RESOURCE_SPANS))],
};
static RESOURCE_SPANS: Shape = Shape {
    size: size_of::<trace_model::ResourceSpans>(),
    fields: &[
        (1, Field::Message(&RESOURCE)),
        (2, Field::Message(&SCOPE_SPANS)),
    ],
};
static SCOPE_SPANS: Shape = Shape {
    size: size_of::<trace_model::ScopeSpans>(),
    fields: &[(1, Field::Message(&SCOPE)), (2, Field::Event(&SPAN))],
};
static SPAN: Shape = Shape {
    size: size_of::<trace_model::Span>(),
    fields: &[
        (9, Field::Message(&KEY_VALUE)),
        (11, Field::Message(&SPAN_EVENT)),
        (13, Field::Message(&SPAN_LINK)),
        (15, Field::Message(&SPAN_STATUS)),
    ],
};
static SPAN_EVENT: Shape = Shape {
    size: size_of::<trace_model::span::Event>(),
    fields: &[(3, Field::Message(&KEY_VALUE))],
};
static SPAN_LINK: Shape = Shape {
    size: size_of::<trace_model::span::Link>(),
    fields: &[(4, Field::Message(&KEY_VALUE))],
};
static SPAN_STATUS: Shape = Shape {
    size: size_of::<trace_model::Status>(),
    fields: &[],
};

// ---- OTLP logs ------------------------------------------------------------------------

/// `ExportLogsServiceRequest`: every log record is an event.
pub static LOGS: Shape = Shape {
    size: size_of::<logs::ExportLogsServiceRequest>(),
    fields: &[(1, Field::Message(&RESOURCE_LOGS))],
};
static RESOURCE_LOGS: Shape = Shape {
    size: size_of::<log_model::ResourceLogs>(),
    fields: &[
        (1, Field::Message(&RESOURCE)),
        (2, Field::Message(&SCOPE_LOGS)),
    ],
};
static SCOPE_LOGS: Shape = Shape {
    size: size_of::<log_model::ScopeLogs>(),
    fields: &[(1, Field::Message(&SCOPE)), (2, Field::Event(&LOG_RECORD))],
};
static LOG_RECORD: Shape = Shape {
    size: size_of::<log_model::LogRecord>(),
    fields: &[
        (5, Field::Message(&ANY_VALUE)),
        (6, Field::Message(&KEY_VALUE)),
    ],
};

// ---- OTLP metrics ---------------------------------------------------------------------

/// `ExportMetricsServiceRequest`: every data point is an event (each is answered, refused).
pub static METRICS: Shape = Shape {
    size: size_of::<metrics::ExportMetricsServiceRequest>(),
    fields: &[(1, Field::Message(&RESOURCE_METRICS))],
};
static RESOURCE_METRICS: Shape = Shape {
    size: size_of::<metric_model::ResourceMetrics>(),
    fields: &[
        (1, Field::Message(&RESOURCE)),
        (2, Field::Message(&SCOPE_METRICS)),
    ],
};
static SCOPE_METRICS: Shape = Shape {
    size: size_of::<metric_model::ScopeMetrics>(),
    fields: &[(1, Field::Message(&SCOPE)), (2, Field::Message(&METRIC))],
};
static METRIC: Shape = Shape {
    size: size_of::<metric_model::Metric>(),
    fields: &[
        (5, Field::Message(&GAUGE)),
        (7, Field::Message(&SUM)),
        (9, Field::Message(&HISTOGRAM)),
        (10, Field::Message(&EXPONENTIAL_HISTOGRAM)),
        (11, Field::Message(&SUMMARY)),
        (12, Field::Message(&KEY_VALUE)),
    ],
};
static GAUGE: Shape = Shape {
    size: size_of::<metric_model::Gauge>(),
    fields: &[(1, Field::Event(&NUMBER_POINT))],
};
static SUM: Shape = Shape {
    size: size_of::<metric_model::Sum>(),
    fields: &[(1, Field::Event(&NUMBER_POINT))],
};
static HISTOGRAM: Shape = Shape {
    size: size_of::<metric_model::Histogram>(),
    fields: &[(1, Field::Event(&HISTOGRAM_POINT))],
};
static EXPONENTIAL_HISTOGRAM: Shape = Shape {
    size: size_of::<metric_model::ExponentialHistogram>(),
    fields: &[(1, Field::Event(&EXPONENTIAL_POINT))],
};
static SUMMARY: Shape = Shape {
    size: size_of::<metric_model::Summary>(),
    fields: &[(1, Field::Event(&SUMMARY_POINT))],
};
static NUMBER_POINT: Shape = Shape {
    size: size_of::<metric_model::NumberDataPoint>(),
    fields: &[
        (7, Field::Message(&KEY_VALUE)),
        (5, Field::Message(&EXEMPLAR)),
    ],
};
static HISTOGRAM_POINT: Shape = Shape {
    size: size_of::<metric_model::HistogramDataPoint>(),
    fields: &[
        (9, Field::Message(&KEY_VALUE)),
        (8, Field::Message(&EXEMPLAR)),
    ],
};
static EXPONENTIAL_POINT: Shape = Shape {
    size: size_of::<metric_model::ExponentialHistogramDataPoint>(),
    fields: &[
        (1, Field::Message(&KEY_VALUE)),
        (8, Field::Message(&BUCKETS)),
        (9, Field::Message(&BUCKETS)),
        (11, Field::Message(&EXEMPLAR)),
    ],
};
static BUCKETS: Shape = Shape {
    size: size_of::<metric_model::exponential_histogram_data_point::Buckets>(),
    fields: &[(2, Field::PackedVarint)],
};
static SUMMARY_POINT: Shape = Shape {
    size: size_of::<metric_model::SummaryDataPoint>(),
    fields: &[
        (7, Field::Message(&KEY_VALUE)),
        (6, Field::Message(&QUANTILE)),
    ],
};
static QUANTILE: Shape = Shape {
    size: size_of::<metric_model::summary_data_point::ValueAtQuantile>(),
    fields: &[],
};
static EXEMPLAR: Shape = Shape {
    size: size_of::<metric_model::Exemplar>(),
    fields: &[(7, Field::Message(&KEY_VALUE))],
};

#[cfg(test)]
mod tests {
    use super::*;
    use nines_proto::v1::{Attribute, IncidentEvent, PushRequest, RequestEvent};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message;

    #[test]
    fn counts_native_events_and_sizes_them() {
        let req = PushRequest {
            requests: vec![
                RequestEvent {
                    operation: "GET /".into(),
                    attributes: vec![Attribute {
                        key: "k".into(),
                        value: "vv".into(),
                    }],
                    ..Default::default()
                };
                3
            ],
            incidents: vec![IncidentEvent::default(); 2],
            ..Default::default()
        };
        let s = scan(&PUSH, &req.encode_to_vec()).unwrap();
        assert_eq!(s.events, 5);
        // Structs: the push, 3 requests, 3 attributes, 2 incidents; strings: 3 × (5 + 1 + 2);
        // no scalar is set (proto3 leaves zeros out).
        let structs = size_of::<PushRequest>()
            + 3 * size_of::<RequestEvent>()
            + 3 * size_of::<Attribute>()
            + 2 * size_of::<IncidentEvent>();
        assert_eq!(s.decoded_bytes, structs + 3 * 8);
        let timed = PushRequest {
            incidents: vec![IncidentEvent {
                opened_at_unix_nano: 5,
                ..Default::default()
            }],
            ..Default::default()
        };
        let s = scan(&PUSH, &timed.encode_to_vec()).unwrap();
        assert_eq!(
            s.decoded_bytes,
            size_of::<PushRequest>() + size_of::<IncidentEvent>() + SCALAR_BYTES
        );
    }

    #[test]
    fn empty_incidents_are_counted_without_decoding() {
        // `2a 00` (field 5, length 0) a million times: 2 MB on the wire.
        let body: Vec<u8> = [0x2a, 0x00].repeat(1_000_000);
        let s = scan(&PUSH, &body).unwrap();
        assert_eq!(s.events, 1_000_000);
        assert!(s.decoded_bytes >= 1_000_000 * size_of::<IncidentEvent>());
    }

    #[test]
    fn spans_are_counted_through_their_containers() {
        let req = trace::ExportTraceServiceRequest {
            resource_spans: vec![
                ResourceSpans {
                    scope_spans: vec![
                        ScopeSpans {
                            spans: vec![Span::default(); 4],
                            ..Default::default()
                        };
                        2
                    ],
                    ..Default::default()
                };
                3
            ],
        };
        assert_eq!(scan(&TRACES, &req.encode_to_vec()).unwrap().events, 24);
    }

    #[test]
    fn nested_attribute_values_are_sized() {
        // One span attribute whose value is an array of 1000 empty values.
        let array = common::AnyValue {
            value: Some(common::any_value::Value::ArrayValue(common::ArrayValue {
                values: vec![common::AnyValue::default(); 1000],
            })),
        };
        let req = trace::ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        attributes: vec![common::KeyValue {
                            key: "k".into(),
                            value: Some(array),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let s = scan(&TRACES, &req.encode_to_vec()).unwrap();
        assert_eq!(s.events, 1);
        assert!(s.decoded_bytes >= 1001 * size_of::<common::AnyValue>());
    }

    #[test]
    fn malformed_bodies_are_refused_like_prost_would() {
        for (body, why) in [
            (vec![0x2a, 0x05, 0x00], "runs past the end"),
            (vec![0x2a], "runs past the end"),
            (vec![0x28, 0x01], "invalid wire type 0 for a message field"),
            (vec![0x0f], "invalid wire type 7"),
            (vec![0x00, 0x01], "field 0: invalid number"),
            // A key beyond 32 bits, and field 0 inside an unknown group.
            (vec![0x80, 0x80, 0x80, 0x80, 0x10, 0x01], "invalid number"),
            (vec![0x7b, 0x00, 0x01, 0x7c], "field 0: invalid number"),
        ] {
            let err = scan(&PUSH, &body).unwrap_err().to_string();
            assert!(err.contains(why), "{body:02x?}: {err}");
            assert!(PushRequest::decode(body.as_slice()).is_err(), "{body:02x?}");
        }
        // An unknown group (field 15) is skipped, as prost skips it.
        let group = [0x7b, 0x08, 0x01, 0x7c];
        assert_eq!(scan(&PUSH, &group).unwrap().events, 0);
        assert!(PushRequest::decode(group.as_slice()).is_ok());
    }

    /// The bound `scan_within` trusts, computed here from the native types themselves, and
    /// held against full scans of bodies that press it hardest: empty events, empty
    /// attributes, empty strings in repeated fields, packed varints, nested values.
    #[test]
    fn no_scan_exceeds_the_bound() {
        let native = [
            size_of::<PushRequest>(),
            size_of::<nines_proto::v1::Resource>(),
            size_of::<RequestEvent>(),
            size_of::<Attribute>(),
            size_of::<nines_proto::v1::DeployEvent>(),
            size_of::<nines_proto::v1::Commit>(),
            size_of::<IncidentEvent>(),
            size_of::<nines_proto::v1::GateDecisionEvent>(),
        ];
        let most = native.iter().max().unwrap().div_ceil(2).max(12);
        assert_eq!(expansion(&PUSH), most);
        let bound = |shape: &'static Shape, body: &[u8]| shape.size + expansion(shape) * body.len();
        let mut bodies: Vec<(&'static Shape, Vec<u8>)> = vec![
            (&PUSH, [0x1a, 0x00].repeat(1000)),
            (&PUSH, [0x22, 0x00].repeat(1000)),
            (&PUSH, [0x2a, 0x00].repeat(1000)),
            (&PUSH, [0x32, 0x00].repeat(1000)),
            // A gate decision of 500 empty strings in a repeated field.
            (
                &PUSH,
                [[0x32, 0xe8, 0x07].as_slice(), &[0x32, 0x00].repeat(500)].concat(),
            ),
            // A request of 500 empty attributes.
            (
                &PUSH,
                [[0x1a, 0xe8, 0x07].as_slice(), &[0x3a, 0x00].repeat(500)].concat(),
            ),
            // Buckets of 1000 one-byte varints, packed.
            (
                &BUCKETS,
                [[0x12, 0xe8, 0x07].as_slice(), &[0x01; 1000]].concat(),
            ),
            // Scalars only.
            (&PUSH, [0x10, 0x01].repeat(1000)),
        ];
        let span = Span {
            attributes: vec![common::KeyValue::default(); 100],
            ..Default::default()
        };
        let spans = trace::ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![span; 10],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        bodies.push((&TRACES, spans.encode_to_vec()));
        for (shape, body) in bodies {
            let s = scan(shape, &body).unwrap();
            assert!(s.decoded_bytes <= bound(shape, &body), "{s:?} {body:02x?}");
        }
    }

    /// A body within the bound has its events counted, not entered; past the bound, or with
    /// a limit below it, the full scan answers.
    #[test]
    fn short_bodies_have_their_events_counted() {
        let req = PushRequest {
            requests: vec![RequestEvent::default(); 3],
            incidents: vec![IncidentEvent::default(); 2],
            ..Default::default()
        };
        let body = req.encode_to_vec();
        let full = scan(&PUSH, &body).unwrap();
        let bound = PUSH.size + expansion(&PUSH) * body.len();
        let short = scan_within(&PUSH, &body, bound).unwrap();
        assert_eq!((short.events, short.decoded_bytes), (5, bound));
        assert_eq!(scan_within(&PUSH, &body, bound - 1).unwrap(), full);
        // Inside an event is the decoder's to check: prost refuses what the count passes.
        let broken = [0x1a, 0x02, 0xff, 0xff];
        assert!(scan(&PUSH, &broken).is_err());
        assert_eq!(scan_within(&PUSH, &broken, usize::MAX).unwrap().events, 1);
        assert!(PushRequest::decode(broken.as_slice()).is_err());
        // What the count walks through is still checked.
        for cut in [&body[..body.len() - 1], &[0x28, 0x01][..], &[0x0f][..]] {
            assert!(scan_within(&PUSH, cut, usize::MAX).is_err(), "{cut:02x?}");
        }
        // Spans are counted through their containers without being entered.
        let spans = trace::ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span::default(); 4],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        assert_eq!(
            scan_within(&TRACES, &spans.encode_to_vec(), usize::MAX)
                .unwrap()
                .events,
            4
        );
    }

    #[test]
    fn depth_is_bounded() {
        // AnyValue → ArrayValue → AnyValue … 200 levels deep.
        let mut body = Vec::new();
        for _ in 0..200 {
            let mut outer = vec![0x0a];
            prost::encoding::encode_varint(body.len() as u64, &mut outer);
            outer.extend_from_slice(&body);
            let mut any = vec![0x2a];
            prost::encoding::encode_varint(outer.len() as u64, &mut any);
            any.extend_from_slice(&outer);
            body = any;
        }
        let err = scan(&ANY_VALUE, &body).unwrap_err().to_string();
        assert!(err.contains("nested deeper than 100"), "{err}");
    }
}
