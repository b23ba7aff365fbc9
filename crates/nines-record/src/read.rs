//! A record read in place: the aggregator's decoder.
//!
//! Prost would build every request event of a record with a `String` for its operation, one
//! for its trace id and one per attribute key and value, only for the aggregator to copy each
//! into an Arrow column and drop it; decoding was about half of what the aggregator spent on
//! a record before Parquet (BENCHMARKS.md, "Hot paths"). Here the request events are
//! read off the record's bytes, their text borrowed; everything else in the record (the
//! resource, its key, deploys, incidents, gate decisions, fields this build does not know) is
//! small, and prost decodes it as before.
//!
//! Equivalence with [`crate::decode`] (the comparison tests below, and the `record` fuzz
//! target): the same record, field for field, and a refusal of every payload prost refuses,
//! whatever the message says.

use nines_proto::v1::{EventBatch, PushRequest, RequestEvent};
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint};

use crate::wire::{WireError, int, len, next_field, text, within};
use crate::{DecodeError, RequestLike};

/// A record on the events topic with its request events borrowed from the payload.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record<'a> {
    /// Every field of the record but `requests`, as prost decodes it (`requests` is empty).
    pub batch: EventBatch,
    /// The request events, in the record's order.
    pub requests: Vec<Request<'a>>,
}

impl Record<'_> {
    /// The record as prost decodes it ([`crate::decode`]).
    pub fn to_event_batch(&self) -> EventBatch {
        EventBatch {
            requests: self.requests.iter().map(Request::to_owned_event).collect(),
            ..self.batch.clone()
        }
    }
}

/// A request event (`nines.v1.RequestEvent`) borrowed from a record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Request<'a> {
    pub time_unix_nano: i64,
    pub operation: &'a str,
    pub status_code: i32,
    pub error: bool,
    pub duration_nano: i64,
    pub trace_id: &'a str,
    /// The `attributes` field's occurrences as (key, value), in order: read and checked once,
    /// with the event, into the list its reader's caller keeps ([`Attributes`]).
    attributes: &'a [(&'a str, &'a str)],
    /// The event's bytes as they came (its body: no key, no length).
    body: &'a [u8],
}

/// Where [`read`] and [`read_push`] put the attributes of every request event they read: one
/// list, each event a slice of it, so that an attribute's text is read and its UTF-8 checked
/// once however often ingest's checks and the aggregator look at it.
pub type Attributes<'a> = Vec<(&'a str, &'a str)>;

impl<'a> Request<'a> {
    /// The event's attributes as (key, value), in order.
    pub fn attributes(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.attributes.iter().copied()
    }

    /// How many attributes the event has.
    pub fn attribute_count(&self) -> usize {
        self.attributes.len()
    }

    /// The event's bytes as they came (its body: no key, no length).
    pub fn bytes(&self) -> &'a [u8] {
        self.body
    }

    /// The event as prost would have decoded it (tests, and callers that keep one).
    pub fn to_owned_event(&self) -> RequestEvent {
        RequestEvent {
            time_unix_nano: self.time_unix_nano,
            operation: self.operation.to_owned(),
            status_code: self.status_code,
            error: self.error,
            duration_nano: self.duration_nano,
            trace_id: self.trace_id.to_owned(),
            attributes: self
                .attributes()
                .map(|(key, value)| nines_proto::v1::Attribute {
                    key: key.to_owned(),
                    value: value.to_owned(),
                })
                .collect(),
        }
    }
}

impl RequestLike for Request<'_> {
    fn time_unix_nano(&self) -> i64 {
        self.time_unix_nano
    }
    fn operation(&self) -> &str {
        self.operation
    }
    fn status_code(&self) -> i32 {
        self.status_code
    }
    fn duration_nano(&self) -> i64 {
        self.duration_nano
    }
    fn trace_id(&self) -> &str {
        self.trace_id
    }
    fn attribute_count(&self) -> usize {
        self.attributes.len()
    }
    fn attributes(&self) -> impl Iterator<Item = (&str, &str)> {
        self.attributes.iter().copied()
    }
    fn body_len(&self) -> usize {
        self.bytes().len()
    }
    fn encode_field(&self, number: u32, operation: Option<&str>, out: &mut Vec<u8>) {
        match operation {
            None => {
                encode_key(number, WireType::LengthDelimited, out);
                encode_varint(self.bytes().len() as u64, out);
                out.extend_from_slice(self.bytes());
            }
            // Rare (an operation over the guard's cap): prost writes the renamed event.
            Some(operation) => {
                let renamed = RequestEvent {
                    operation: operation.to_owned(),
                    ..self.to_owned_event()
                };
                prost::encoding::message::encode(number, &renamed, out)
            }
        }
    }
}

fn malformed(WireError::Malformed(m): WireError) -> DecodeError {
    DecodeError::Malformed(m)
}

/// Reads a record from the events topic, refusing any version but [`crate::VERSION`] and
/// any payload prost refuses ([`crate::decode`] is the reference). The request events'
/// attributes are appended to `attributes`, which the record's events borrow.
pub fn read<'a: 'b, 'b>(
    payload: &'a [u8],
    attributes: &'b mut Attributes<'a>,
) -> Result<Record<'b>, DecodeError> {
    let (rest, requests) = split(payload, RECORD_REQUESTS, attributes).map_err(malformed)?;
    let batch = EventBatch::decode(rest.as_slice())?;
    if batch.schema_version != crate::VERSION {
        return Err(DecodeError::UnknownVersion {
            found: batch.schema_version,
        });
    }
    Ok(Record { batch, requests })
}

/// A push (`nines.v1.PushRequest`) with its request events borrowed from the bytes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Push<'a> {
    /// Every field of the push but `requests`, as prost decodes it (`requests` is empty).
    pub head: PushRequest,
    /// The request events, in the push's order.
    pub requests: Vec<Request<'a>>,
}

/// Reads a push as the native door takes it: what prost refuses is refused (naming the
/// field), and the request events are not decoded into strings but borrowed, for ingest's
/// checks and for the cut, which copies each into its record as it came. The request events'
/// attributes are appended to `attributes`, which the push's events borrow.
pub fn read_push<'a: 'b, 'b>(
    body: &'a [u8],
    attributes: &'b mut Attributes<'a>,
) -> Result<Push<'b>, WireError> {
    let (rest, requests) = split(body, PUSH_REQUESTS, attributes)?;
    let head =
        PushRequest::decode(rest.as_slice()).map_err(|e| WireError::Malformed(e.to_string()))?;
    Ok(Push { head, requests })
}

/// Field number of `requests` in `EventBatch` and in `PushRequest`.
const RECORD_REQUESTS: u32 = 7;
const PUSH_REQUESTS: u32 = 3;

/// Reads the request events (field `requests`) of a message in place, their attributes into
/// `attributes`; every other field is copied as it came, key and all, for prost.
fn split<'a: 'b, 'b>(
    message: &'a [u8],
    requests: u32,
    attributes: &'b mut Attributes<'a>,
) -> Result<(Vec<u8>, Vec<Request<'b>>), WireError> {
    let mut bytes = message;
    let mut rest = Vec::new();
    let mut events = Vec::new();
    // (event, where its attributes start and end in `attributes`), for events that have any.
    let mut ranges = Vec::new();
    loop {
        let before = bytes;
        let Some((number, payload)) = next_field(&mut bytes)? else {
            break;
        };
        if number == requests {
            let i = events.len();
            let event = len("requests", payload)?;
            let start = attributes.len();
            events.push(request(event, attributes).map_err(within(|| format!("requests[{i}]")))?);
            if attributes.len() > start {
                ranges.push((i, start, attributes.len()));
            }
        } else {
            rest.extend_from_slice(&before[..before.len() - bytes.len()]);
        }
    }
    // Every attribute is in the list: from here on the events borrow it.
    let attributes: &'b Attributes<'a> = attributes;
    for (i, start, end) in ranges {
        events[i].attributes = &attributes[start..end];
    }
    Ok((rest, events))
}

/// One `nines.v1.RequestEvent`, its attributes appended to `attributes` (the caller gives it
/// its slice of them). As prost: a later occurrence of a field replaces an earlier one,
/// `attributes` accumulate, unknown fields are skipped.
fn request<'a>(event: &'a [u8], attributes: &mut Attributes<'a>) -> Result<Request<'a>, WireError> {
    let mut r = Request {
        body: event,
        ..Request::default()
    };
    let mut bytes = event;
    let mut count = 0;
    while let Some((number, payload)) = next_field(&mut bytes)? {
        match number {
            1 => r.time_unix_nano = int("time_unix_nano", payload)? as i64,
            2 => r.operation = text("operation", payload)?,
            3 => r.status_code = int("status_code", payload)? as i32,
            4 => r.error = int("error", payload)? != 0,
            5 => r.duration_nano = int("duration_nano", payload)? as i64,
            6 => r.trace_id = text("trace_id", payload)?,
            7 => {
                let bytes = len("attributes", payload)?;
                attributes
                    .push(attribute(bytes).map_err(within(|| format!("attributes[{count}]")))?);
                count += 1;
            }
            _ => {}
        }
    }
    Ok(r)
}

/// One `nines.v1.Attribute`: its key and value.
fn attribute(mut bytes: &[u8]) -> Result<(&str, &str), WireError> {
    let (mut key, mut value) = ("", "");
    while let Some((number, payload)) = next_field(&mut bytes)? {
        match number {
            1 => key = text("key", payload)?,
            2 => value = text("value", payload)?,
            _ => {}
        }
    }
    Ok((key, value))
}

#[cfg(test)]
mod tests {
    use nines_proto::v1::{
        Attribute, Commit, DeployEvent, EventBatch, IncidentEvent, PushRequest, RequestEvent,
        Resource,
    };
    use prost::Message;
    use prost::encoding::{WireType, encode_key, encode_varint};

    use super::{read, read_push};
    use crate::{DecodeError, decode};

    /// Reads `payload` with both decoders and checks they agree: the same record, or both
    /// refuse. True when it was read.
    fn agree(payload: &[u8]) -> bool {
        match (decode(payload), read(payload, &mut Vec::new())) {
            (Ok(want), Ok(got)) => {
                assert_eq!(got.to_event_batch(), want, "payload {payload:02x?}");
                true
            }
            (Err(_), Err(_)) => false,
            (want, got) => panic!(
                "prost: {want:?}\nread: {:?}\npayload {payload:02x?}",
                got.map(|r| r.to_event_batch())
            ),
        }
    }

    fn request(i: i64, attributes: &[(&str, &str)]) -> RequestEvent {
        RequestEvent {
            time_unix_nano: 1_793_613_600_000_000_000 + i,
            operation: format!("GET /items/{i}"),
            status_code: if i % 2 == 0 { 200 } else { -1 },
            error: i % 2 == 1,
            duration_nano: i * 1_000,
            trace_id: if i == 0 {
                String::new()
            } else {
                format!("{i:032x}")
            },
            attributes: attributes
                .iter()
                .map(|(k, v)| Attribute {
                    key: (*k).into(),
                    value: (*v).into(),
                })
                .collect(),
        }
    }

    fn record() -> EventBatch {
        EventBatch {
            schema_version: crate::VERSION,
            resource: Some(Resource {
                tenant: "acme".into(),
                service: "checkout".into(),
                environment: "prod".into(),
                version: "v1".into(),
            }),
            batch_id: "b-1".into(),
            part: 1,
            parts: 2,
            received_at_unix_nano: 7,
            requests: vec![
                request(0, &[]),
                request(1, &[("region", "eu-west-1")]),
                request(2, &[("", ""), ("région", "é🚀"), ("k", "v")]),
            ],
            deploys: vec![DeployEvent {
                time_unix_nano: 5,
                version: "v2".into(),
                commits: vec![Commit {
                    sha: "abc".into(),
                    time_unix_nano: 4,
                }],
                ..Default::default()
            }],
            incidents: vec![IncidentEvent {
                id: "INC-1".into(),
                ..Default::default()
            }],
            content_fingerprint: vec![9; 16],
            gate_decisions: Vec::new(),
        }
    }

    #[test]
    fn a_record_reads_as_prost_decodes_it_with_its_text_borrowed() {
        let bytes = record().encode_to_vec();
        assert!(agree(&bytes));
        // The reader appends to the list it is given: its events' slices start after what
        // the list held.
        let mut attributes = vec![("kept", "before")];
        let r = read(&bytes, &mut attributes).unwrap();
        assert!(r.batch.requests.is_empty());
        assert_eq!(r.requests.len(), 3);
        let attrs: Vec<_> = r.requests[1].attributes().collect();
        assert_eq!(attrs, [("region", "eu-west-1")]);
        let attrs: Vec<_> = r.requests[2].attributes().collect();
        assert_eq!(attrs, [("", ""), ("région", "é🚀"), ("k", "v")]);
        assert_eq!(r.requests[2].attribute_count(), 3);
        assert_eq!(r.requests[1].operation, "GET /items/1");
        assert_eq!(r.requests[1].status_code, -1);
        assert!(r.requests[1].error);
        assert_eq!(r.requests[0].trace_id, "");
        assert_eq!(r.requests[0].attributes().count(), 0);
        // Borrowed: the operation lies inside the payload.
        let range = bytes.as_ptr_range();
        assert!(range.contains(&r.requests[1].operation.as_ptr()));
        assert!(range.contains(&r.requests[2].attributes().nth(1).unwrap().1.as_ptr()));
        assert_eq!(r.batch.deploys[0].commits[0].sha, "abc");
        assert_eq!(r.batch.batch_id, "b-1");
        // Every attribute was read once, into the one list, in the record's order.
        drop(r);
        assert_eq!(
            attributes,
            [
                ("kept", "before"),
                ("region", "eu-west-1"),
                ("", ""),
                ("région", "é🚀"),
                ("k", "v")
            ]
        );
    }

    /// A field's key.
    fn key(number: u32, wire: WireType, out: &mut Vec<u8>) {
        encode_key(number, wire, out);
    }

    fn text(number: u32, value: &str, out: &mut Vec<u8>) {
        key(number, WireType::LengthDelimited, out);
        encode_varint(value.len() as u64, out);
        out.extend_from_slice(value.as_bytes());
    }

    fn message(number: u32, body: &[u8], out: &mut Vec<u8>) {
        key(number, WireType::LengthDelimited, out);
        encode_varint(body.len() as u64, out);
        out.extend_from_slice(body);
    }

    fn int(number: u32, value: u64, out: &mut Vec<u8>) {
        key(number, WireType::Varint, out);
        encode_varint(value, out);
    }

    /// Unknown fields of every wire type, a group with a group inside included.
    fn unknown(out: &mut Vec<u8>) {
        int(90, 300, out);
        key(91, WireType::SixtyFourBit, out);
        out.extend_from_slice(&[1; 8]);
        key(92, WireType::ThirtyTwoBit, out);
        out.extend_from_slice(&[2; 4]);
        text(93, "not read", out);
        key(94, WireType::StartGroup, out);
        int(1, 5, out);
        key(95, WireType::StartGroup, out);
        text(2, "deep", out);
        key(95, WireType::EndGroup, out);
        key(94, WireType::EndGroup, out);
    }

    /// A record written by hand the way no encoder of ours writes one: unknown fields at every
    /// level, fields repeated (the last of a scalar or string wins, messages merge, repeated
    /// fields accumulate), requests between the other fields.
    fn odd_record() -> Vec<u8> {
        let mut attribute = Vec::new();
        text(1, "first key", &mut attribute);
        unknown(&mut attribute);
        text(1, "key", &mut attribute);
        text(2, "value", &mut attribute);
        let mut event = Vec::new();
        unknown(&mut event);
        text(2, "first operation", &mut event);
        int(1, 11, &mut event);
        message(7, &attribute, &mut event);
        int(3, u64::MAX, &mut event); // -1 as an int32, ten bytes
        int(4, 2, &mut event); // any non-zero is true
        text(2, "POST /orders", &mut event);
        message(7, &[], &mut event); // an attribute with nothing set
        int(5, (-5_i64) as u64, &mut event);
        text(6, "trace", &mut event);
        int(1, 12, &mut event);
        let mut resource_a = Vec::new();
        text(1, "acme", &mut resource_a);
        text(2, "cart", &mut resource_a);
        let mut resource_b = Vec::new();
        text(2, "checkout", &mut resource_b);
        unknown(&mut resource_b);
        let mut out = Vec::new();
        unknown(&mut out);
        message(7, &event, &mut out);
        int(1, 7, &mut out);
        message(2, &resource_a, &mut out);
        message(7, &[], &mut out); // a request with nothing set
        text(3, "batch", &mut out);
        int(1, u64::from(crate::VERSION), &mut out);
        message(2, &resource_b, &mut out);
        message(7, &event, &mut out);
        unknown(&mut out);
        out
    }

    #[test]
    fn unknown_repeated_and_interleaved_fields_read_as_prost_decodes_them() {
        let bytes = odd_record();
        assert!(agree(&bytes));
        let mut attributes = Vec::new();
        let r = read(&bytes, &mut attributes).unwrap();
        let e = r.requests[0];
        assert_eq!(
            (
                e.time_unix_nano,
                e.operation,
                e.status_code,
                e.error,
                e.duration_nano,
                e.trace_id
            ),
            (12, "POST /orders", -1, true, -5, "trace")
        );
        assert_eq!(
            e.attributes().collect::<Vec<_>>(),
            [("key", "value"), ("", "")]
        );
        assert_eq!(r.requests[1], super::Request::default());
        let resource = r.batch.resource.as_ref().unwrap();
        assert_eq!(
            (resource.tenant.as_str(), resource.service.as_str()),
            ("acme", "checkout")
        );
        assert_eq!(r.requests.len(), 3);
    }

    /// Every prefix of a record, and every byte of it replaced by values that change a wire
    /// type, a length, a varint's continuation or a character: prost and [`read`] agree on
    /// each, record or refusal.
    #[test]
    fn every_cut_and_every_corrupted_byte_is_read_or_refused_as_prost_does() {
        for bytes in [record().encode_to_vec(), odd_record()] {
            every_cut_and_corruption(&bytes, agree);
        }
    }

    /// Checks every prefix of `bytes`, and `bytes` with each byte replaced by values that
    /// change a wire type, a length, a varint's continuation or a character, with `agree`
    /// (true: read, false: refused by both); both outcomes must occur many times over.
    fn every_cut_and_corruption(bytes: &[u8], agree: fn(&[u8]) -> bool) {
        let (mut read_, mut refused) = (0, 0);
        let mut tally = |ok: bool| if ok { read_ += 1 } else { refused += 1 };
        for n in 0..=bytes.len() {
            tally(agree(&bytes[..n]));
        }
        for i in 0..bytes.len() {
            let b = bytes[i];
            for v in [
                0x00,
                0x01,
                0x02,
                0x05,
                0x07,
                0x0a,
                0x7f,
                0x80,
                0xc3,
                0xff,
                b ^ 1,
                b ^ 0x80,
                b.wrapping_add(1),
            ] {
                let mut changed = bytes.to_vec();
                changed[i] = v;
                tally(agree(&changed));
            }
        }
        assert!(
            read_ > 100 && refused > 100,
            "read {read_}, refused {refused}"
        );
    }

    #[test]
    fn refusals_name_the_field() {
        let mut event = Vec::new();
        text(2, "ok", &mut event);
        key(6, WireType::LengthDelimited, &mut event);
        event.extend_from_slice(&[2, 0xff, 0xfe]);
        let mut out = Vec::new();
        message(7, &record().requests[0].encode_to_vec(), &mut out);
        message(7, &event, &mut out);
        assert!(!agree(&out));
        let err = read(&out, &mut Vec::new()).unwrap_err();
        assert!(matches!(err, DecodeError::Malformed(_)));
        assert_eq!(
            err.to_string(),
            "not a nines.v1.EventBatch: requests[1].trace_id: invalid UTF-8"
        );
        // A varint of ten bytes whose last carries more than the 64th bit.
        let mut big = Vec::new();
        key(1, WireType::Varint, &mut big);
        big.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]);
        assert!(!agree(&big));
        // Another version.
        let mut other = record();
        other.schema_version = crate::VERSION + 1;
        let err = read(&other.encode_to_vec(), &mut Vec::new()).unwrap_err();
        assert!(
            matches!(err, DecodeError::UnknownVersion { found } if found == crate::VERSION + 1)
        );
    }

    // ---- the push, as the native door reads it ----------------------------------------

    fn to_push_request(p: &super::Push<'_>) -> PushRequest {
        PushRequest {
            requests: p.requests.iter().map(|r| r.to_owned_event()).collect(),
            ..p.head.clone()
        }
    }

    /// Reads `body` with prost and with [`read_push`]: the same push, or both refuse.
    fn agree_push(body: &[u8]) -> bool {
        match (PushRequest::decode(body), read_push(body, &mut Vec::new())) {
            (Ok(want), Ok(got)) => {
                assert_eq!(to_push_request(&got), want, "body {body:02x?}");
                assert!(got.head.requests.is_empty());
                true
            }
            (Err(_), Err(_)) => false,
            (want, got) => panic!(
                "prost: {want:?}\nread_push: {:?}\nbody {body:02x?}",
                got.map(|p| to_push_request(&p))
            ),
        }
    }

    /// A push with every kind of event, as a client's protobuf library writes it.
    fn push() -> PushRequest {
        let r = record();
        PushRequest {
            resource: r.resource,
            batch_id: r.batch_id,
            requests: r.requests,
            deploys: r.deploys,
            incidents: r.incidents,
            gate_decisions: vec![nines_proto::v1::GateDecisionEvent {
                time_unix_nano: 3,
                labels: vec!["hotfix".into()],
                ..Default::default()
            }],
        }
    }

    /// A push no encoder of ours writes: unknown fields everywhere, requests (3) interleaved
    /// with the resource (1, twice: prost merges them), the batch id (2) and a deploy (4).
    fn odd_push() -> Vec<u8> {
        let mut event = Vec::new();
        int(1, 12, &mut event);
        unknown(&mut event);
        text(2, "GET /a", &mut event);
        let mut attribute = Vec::new();
        text(1, "key", &mut attribute);
        unknown(&mut attribute);
        text(2, "value", &mut attribute);
        message(7, &attribute, &mut event);
        text(2, "GET /b", &mut event);
        let mut resource_a = Vec::new();
        text(3, "prod", &mut resource_a);
        let mut resource_b = Vec::new();
        text(2, "checkout", &mut resource_b);
        unknown(&mut resource_b);
        let mut deploy = Vec::new();
        text(3, "v9", &mut deploy);
        let mut out = Vec::new();
        unknown(&mut out);
        message(3, &event, &mut out);
        message(1, &resource_a, &mut out);
        message(3, &[], &mut out);
        text(2, "batch", &mut out);
        message(4, &deploy, &mut out);
        message(1, &resource_b, &mut out);
        message(3, &event, &mut out);
        unknown(&mut out);
        out
    }

    #[test]
    fn a_push_reads_as_prost_decodes_it_odd_or_plain() {
        assert!(agree_push(&push().encode_to_vec()));
        assert!(agree_push(&odd_push()));
        let odd = odd_push();
        let mut attributes = Vec::new();
        let p = read_push(&odd, &mut attributes).unwrap();
        assert_eq!(p.requests.len(), 3);
        assert_eq!(p.requests[0].operation, "GET /b");
        let resource = p.head.resource.as_ref().unwrap();
        assert_eq!(
            (resource.environment.as_str(), resource.service.as_str()),
            ("prod", "checkout")
        );
        // The event's bytes are the body as it came, unknown fields and all.
        assert_eq!(p.requests[0].bytes(), p.requests[2].bytes());
        assert!(p.requests[0].bytes().len() > p.requests[0].to_owned_event().encoded_len());
    }

    #[test]
    fn every_cut_and_every_corrupted_byte_of_a_push_is_read_or_refused_as_prost_does() {
        for bytes in [push().encode_to_vec(), odd_push()] {
            every_cut_and_corruption(&bytes, agree_push);
        }
    }

    /// Cuts `body` twice: decoded by prost (OTLP's path: events encoded again) and read in
    /// place (the native door's: events copied as they came).
    fn cut_both(
        body: &[u8],
        max_bytes: usize,
        rename: &mut dyn FnMut(&[&str]) -> Vec<usize>,
    ) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let mut decoded = PushRequest::decode(body).unwrap();
        let requests = std::mem::take(&mut decoded.requests);
        let owned = crate::cut_guarded(decoded, &requests, 7, max_bytes, rename, None).unwrap();
        let mut attributes = Vec::new();
        let read = read_push(body, &mut attributes).unwrap();
        let borrowed =
            crate::cut_guarded(read.head, &read.requests, 7, max_bytes, rename, None).unwrap();
        (owned, borrowed)
    }

    #[test]
    fn a_push_read_in_place_is_cut_into_the_same_records_byte_for_byte() {
        let mut big = push();
        for i in 3..300 {
            big.requests
                .push(request(i, &[("region", "eu-west-1"), ("i", "x")]));
        }
        let body = big.encode_to_vec();
        for max_bytes in [1 << 20, 4_000, 1_000] {
            let (owned, borrowed) = cut_both(&body, max_bytes, &mut |_| Vec::new());
            assert_eq!(owned, borrowed, "max_bytes {max_bytes}");
            let want = if max_bytes == 1 << 20 { 1 } else { 2 };
            assert!(owned.len() >= want, "{} records", owned.len());
            // Every operation whose name ends in 7 renamed by the guard: the same records,
            // the renamed ones written as `__overflow__`, the fingerprint of what was sent.
            let mut sevens = |ops: &[&str]| {
                (0..ops.len())
                    .filter(|&k| ops[k].ends_with('7'))
                    .collect::<Vec<_>>()
            };
            let (owned_renamed, borrowed_renamed) = cut_both(&body, max_bytes, &mut sevens);
            assert_eq!(owned_renamed, borrowed_renamed, "max_bytes {max_bytes}");
            let batches: Vec<EventBatch> =
                owned_renamed.iter().map(|r| decode(r).unwrap()).collect();
            let plain: Vec<EventBatch> = owned.iter().map(|r| decode(r).unwrap()).collect();
            let overflowed = batches
                .iter()
                .flat_map(|b| &b.requests)
                .filter(|e| e.operation == crate::OVERFLOW_OPERATION)
                .count();
            assert_eq!(overflowed, (3..300).filter(|i| i % 10 == 7).count());
            for (b, p) in batches.iter().zip(&plain) {
                assert_eq!(b.content_fingerprint, p.content_fingerprint);
                assert_eq!(b.requests.len(), p.requests.len());
            }
        }
    }

    #[test]
    fn an_odd_push_read_in_place_is_cut_into_records_that_decode_to_the_same_events() {
        let body = odd_push();
        let (owned, borrowed) = cut_both(&body, 1 << 20, &mut |_| Vec::new());
        assert_eq!(owned.len(), 1);
        assert_ne!(owned, borrowed, "the events' unknown fields are kept");
        let (mut want, mut got) = (decode(&owned[0]).unwrap(), decode(&borrowed[0]).unwrap());
        assert_eq!(
            read(&borrowed[0], &mut Vec::new())
                .unwrap()
                .to_event_batch(),
            got
        );
        // The fingerprint is of the push as sent, and that includes its unknown fields.
        assert_ne!(want.content_fingerprint, got.content_fingerprint);
        want.content_fingerprint.clear();
        got.content_fingerprint.clear();
        assert_eq!(got, want);
    }
}
