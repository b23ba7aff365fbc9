//! An OTLP trace export read off the wire straight into request events.
//!
//! Prost would build the whole `ExportTraceServiceRequest` first: every span's ids as
//! vectors, its name, every attribute as a `KeyValue` with an `AnyValue`, its events and
//! links, only for the mapping to copy a few of them into a `RequestEvent` and drop the rest.
//! Here each span is read in place: the fields the mapping uses (trace id, name, kind, start,
//! end, attributes, status code) are borrowed from the message, text attribute values
//! included, and everything else is skipped. The rules (docs/otlp.md) stay in one place,
//! [`crate::otlp::map_span_fields`], which reads this span and prost's alike.
//!
//! What is decoded by prost still: a resource (one per `resource_spans`, checked like a native
//! resource) and attribute values that are not plain text (ints, doubles, bools, bytes,
//! arrays, key-value lists), each small, so their text is `otlp::value_string`'s.
//!
//! Equivalence with prost (`otlp_tests`, the comparison test over the same exports): the same
//! events, refusals and messages for every export prost decodes. On purpose it differs in one
//! way: fields the mapping does not read (span ids, trace state, events, links, the scope,
//! schema URLs, the status message) are skipped unread, so invalid UTF-8 in one of them no
//! longer refuses the whole export. The door's wire scan (`wire::scan_within`) has checked
//! the structure of the body down to the spans before either decoder runs (and inside them
//! too for a body long enough to need it); inside a span, what this decoder skips unread is
//! not checked, as its text is not.

use std::borrow::Cow;
use std::ops::Range;

use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use prost::Message;

use crate::Result;
use crate::config::Limits;
use crate::otlp::{AttrRef, Mapped, SpanFields, SpanPush, TraceMapping, value_text};
use nines_record::wire::{Payload, WireError, fixed64, int, len, next_field, text, within};
use nines_record::{MappedAttribute, Text};

/// An `ExportTraceServiceRequest` as the door received it (decompressed, scanned), mapped by
/// [`map_trace_export`] in the handler.
#[derive(Debug, Clone, Default)]
pub struct TraceExportBytes(pub Bytes);

/// Occurrences of a message field, merged as protobuf merges them (the concatenation of
/// their bytes decodes as their merge): borrowed while there is one.
#[derive(Debug, Default)]
struct Merged<'a>(Option<Cow<'a, [u8]>>);

impl<'a> Merged<'a> {
    fn push(&mut self, bytes: &'a [u8]) {
        self.0 = Some(match self.0.take() {
            None => Cow::Borrowed(bytes),
            Some(before) => {
                let mut all = before.into_owned();
                all.extend_from_slice(bytes);
                Cow::Owned(all)
            }
        });
    }
}

/// Maps and validates a trace export from its bytes: the door's decoder for
/// `TraceService/Export`, with the same answer as prost + [`crate::otlp::map_traces`].
/// The whole export is read before anything is mapped, so a malformed one is refused
/// before a single span is counted as taken or refused (as with prost).
pub fn map_trace_export<'a>(
    bytes: &'a [u8],
    limits: &Limits,
    now: i64,
) -> Result<Mapped<SpanPush<'a>>> {
    let mut attributes = Vec::new();
    let resources = read_export(bytes, &mut attributes)?;
    let total = resources.iter().map(|r| r.spans.len()).sum();
    let mut mapping = TraceMapping::new(limits, now, total)?;
    for (r, resource) in resources.into_iter().enumerate() {
        mapping.resource(r, &resource.attributes);
        for (s, k, span) in resource.spans {
            let attributes = &mut attributes[span.attributes.clone()];
            mapping.span(s, k, SpanRead { span, attributes });
        }
    }
    Ok(mapping.finish())
}

/// One `resource_spans` as read: its resource's attributes (decoded by prost) and its spans
/// with their scope and index.
#[derive(Debug)]
struct ResourceRead<'a> {
    attributes: Vec<KeyValue>,
    spans: Vec<(usize, usize, WireSpan<'a>)>,
}

/// Reads an `ExportTraceServiceRequest`, every span's attributes into `attributes` (one
/// vector for the export, not one per span); a refusal names the path of what is
/// malformed, e.g. `resource_spans[0].scope_spans[1].spans[7].name: invalid UTF-8`.
fn read_export<'a>(
    mut bytes: &'a [u8],
    attributes: &mut Vec<WireAttr<'a>>,
) -> std::result::Result<Vec<ResourceRead<'a>>, WireError> {
    let mut resources = Vec::with_capacity(1);
    while let Some((number, payload)) = next_field(&mut bytes)? {
        if number == 1 {
            let r = resources.len();
            resources.push(resource_spans(
                len("resource_spans", payload)?,
                r,
                attributes,
            )?);
        }
    }
    Ok(resources)
}

/// Reads `resource_spans[r]`.
fn resource_spans<'a>(
    mut bytes: &'a [u8],
    r: usize,
    span_attributes: &mut Vec<WireAttr<'a>>,
) -> std::result::Result<ResourceRead<'a>, WireError> {
    let path = || format!("resource_spans[{r}]");
    let mut resource = Merged::default();
    let mut scopes: Vec<&[u8]> = Vec::with_capacity(1);
    while let Some((number, payload)) = next_field(&mut bytes).map_err(within(path))? {
        match number {
            1 => resource.push(len("resource", payload).map_err(within(path))?),
            2 => scopes.push(len("scope_spans", payload).map_err(within(path))?),
            _ => {}
        }
    }
    let attributes = match resource.0 {
        None => Vec::new(),
        Some(b) => {
            Resource::decode(b.as_ref())
                .map_err(|e| WireError::Malformed(format!("{}.resource: {e}", path())))?
                .attributes
        }
    };
    // Room for every span, and once the first is read for the attributes the rest of the
    // bytes would hold at its density, so neither vector is copied over as it grows: an
    // estimate, never more than the bytes could hold (two bytes at least an attribute),
    // whatever the first span claims.
    let count: usize = scopes.iter().map(|scope| spans_in(scope)).sum();
    let bytes: usize = scopes.iter().map(|scope| scope.len()).sum();
    let mut spans = Vec::with_capacity(count);
    for (s, mut scope) in scopes.into_iter().enumerate() {
        let path = || format!("resource_spans[{r}].scope_spans[{s}]");
        let mut k = 0;
        while let Some((number, payload)) = next_field(&mut scope).map_err(within(path))? {
            if number == 2 {
                let (span_bytes, span) = len("spans", payload)
                    .and_then(|b| Ok((b.len(), WireSpan::read(b, span_attributes)?)))
                    .map_err(within(|| format!("{}.spans[{k}]", path())))?;
                if spans.is_empty() {
                    let each = span.attributes.len();
                    let guess = each.saturating_mul(bytes) / span_bytes.max(1);
                    span_attributes.reserve(guess.min(bytes / 2).saturating_sub(each));
                }
                spans.push((s, k, span));
                k += 1;
            }
        }
    }
    Ok(ResourceRead { attributes, spans })
}

/// How many spans a `scope_spans` holds (as far as it can be read: the reading proper
/// refuses what is malformed).
fn spans_in(mut scope: &[u8]) -> usize {
    let mut n = 0;
    while let Ok(Some((number, _))) = next_field(&mut scope) {
        n += usize::from(number == 2);
    }
    n
}

/// An attribute value as read: absent, text borrowed from the message, or decoded by prost.
#[derive(Debug)]
enum WireValue<'a> {
    Absent,
    Str(&'a str),
    Decoded(any_value::Value),
}

#[derive(Debug)]
struct WireAttr<'a> {
    key: &'a str,
    value: WireValue<'a>,
}

/// The fields of a span the mapping reads, borrowed from the message; its attributes are
/// the range `attributes` of the export's.
#[derive(Debug, Default)]
struct WireSpan<'a> {
    trace_id: &'a [u8],
    name: &'a str,
    kind: i32,
    start: u64,
    end: u64,
    status_code: i32,
    attributes: Range<usize>,
}

impl<'a> WireSpan<'a> {
    /// Reads a `Span` (opentelemetry/proto/trace/v1/trace.proto), skipping what the mapping
    /// does not use; appends its attributes to `attributes`.
    fn read(
        mut bytes: &'a [u8],
        attributes: &mut Vec<WireAttr<'a>>,
    ) -> std::result::Result<Self, WireError> {
        let start = attributes.len();
        let mut span = WireSpan {
            attributes: start..start,
            ..WireSpan::default()
        };
        while let Some((number, payload)) = next_field(&mut bytes)? {
            match number {
                1 => span.trace_id = len("trace_id", payload)?,
                5 => span.name = text("name", payload)?,
                // An int32 enum: prost keeps the low 32 bits of the varint.
                6 => span.kind = int("kind", payload)? as i32,
                7 => span.start = fixed64("start_time_unix_nano", payload)?,
                8 => span.end = fixed64("end_time_unix_nano", payload)?,
                9 => {
                    let i = attributes.len() - start;
                    let attribute = len("attributes", payload)
                        .and_then(attribute)
                        .map_err(within(|| format!("attributes[{i}]")))?;
                    attributes.push(attribute);
                }
                15 => {
                    let mut status = len("status", payload)?;
                    while let Some((number, payload)) =
                        next_field(&mut status).map_err(within(|| "status".into()))?
                    {
                        if number == 3 {
                            span.status_code = int("status.code", payload)? as i32;
                        }
                    }
                }
                _ => {}
            }
        }
        span.attributes.end = attributes.len();
        Ok(span)
    }
}

/// A span as the mapping takes it: its fields and its attributes.
struct SpanRead<'x, 'a> {
    span: WireSpan<'a>,
    attributes: &'x mut [WireAttr<'a>],
}

/// A `KeyValue`: its key, and its value borrowed when it is text alone.
fn attribute(mut bytes: &[u8]) -> std::result::Result<WireAttr<'_>, WireError> {
    let mut key = "";
    let mut value = Merged::default();
    while let Some((number, payload)) = next_field(&mut bytes)? {
        match number {
            1 => key = text("key", payload)?,
            2 => value.push(len("value", payload)?),
            _ => {}
        }
    }
    let value = match value.0 {
        None => WireValue::Absent,
        Some(Cow::Borrowed(b)) => match lone_string(b)? {
            Some(s) => WireValue::Str(s),
            None => decoded(b)?,
        },
        Some(Cow::Owned(b)) => decoded(&b)?,
    };
    Ok(WireAttr { key, value })
}

/// The text of an `AnyValue` that is one `string_value` field and nothing else.
fn lone_string(bytes: &[u8]) -> std::result::Result<Option<&str>, WireError> {
    let mut rest = bytes;
    match next_field(&mut rest)? {
        Some((1, payload @ Payload::Len(_))) if rest.is_empty() => {
            text("value.string_value", payload).map(Some)
        }
        _ => Ok(None),
    }
}

fn decoded(bytes: &[u8]) -> std::result::Result<WireValue<'static>, WireError> {
    let value = AnyValue::decode(bytes).map_err(|e| WireError::Malformed(format!("value: {e}")))?;
    Ok(value.value.map_or(WireValue::Absent, WireValue::Decoded))
}

impl<'a> SpanFields<'a> for SpanRead<'_, 'a> {
    fn kind(&self) -> i32 {
        self.span.kind
    }
    fn start_time_unix_nano(&self) -> u64 {
        self.span.start
    }
    fn end_time_unix_nano(&self) -> u64 {
        self.span.end
    }
    fn status_is_error(&self) -> bool {
        self.span.status_code == StatusCode::Error as i32
    }
    fn attr(&self, key: &str) -> Option<AttrRef<'_>> {
        match &self.attributes.iter().find(|a| a.key == key)?.value {
            WireValue::Absent => None,
            WireValue::Str(s) => Some(AttrRef::Str(s)),
            WireValue::Decoded(v) => Some(AttrRef::Value(v)),
        }
    }
    fn trace_id(&self) -> &[u8] {
        self.span.trace_id
    }
    fn name(&self) -> &str {
        self.span.name
    }
    fn into_name_and_attributes(self, into: &mut Vec<MappedAttribute<'a>>) -> Cow<'a, str> {
        into.extend(self.attributes.iter_mut().map(|a| {
            let value = match std::mem::replace(&mut a.value, WireValue::Absent) {
                WireValue::Absent => Text::default(),
                WireValue::Str(s) => Text::Lent(s),
                WireValue::Decoded(v) => value_text(v),
            };
            (Cow::Borrowed(a.key), value)
        }));
        Cow::Borrowed(self.span.name)
    }
}
