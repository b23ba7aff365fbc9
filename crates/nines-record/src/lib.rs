//! The record on the events topic (`nines.v1.EventBatch`, `proto/nines/v1/bus.proto`): the
//! contract between ingest, which writes it, and the aggregator, which reads it, two roles
//! deployed apart. Everything about it lives here: its [`VERSION`], its Kafka [`key`], how a
//! push is cut into records ([`cut`]), how a record is read back ([`read`], in place, as the
//! aggregator does; [`decode`], prost's, the reference it is tested against), and a
//! compatibility test over a checked-in record of every version (`tests/compat.rs`).
//!
//! Cutting encodes a validated push as records below the byte limit, every record exactly
//! once: deploys, incidents and gate decisions are moved into it, request events are encoded
//! into it or, read in place from a push ([`read_push`]), copied into it as they came. The cut is a function of the push alone,
//! so a retry maps to the same parts on any ingest replica, whatever that replica's operation
//! guard renames: part boundaries are planned on the events as sent, with room for an
//! operation renamed to [`OVERFLOW_OPERATION`], and the content fingerprint every part carries
//! is taken over the events as sent too.

use std::borrow::Cow;
use std::ops::Range;

use arrayvec::ArrayString;

use nines_proto::v1::{Attribute, EventBatch, PushRequest, RequestEvent};
use prost::Message;
use prost::encoding::{WireType, encode_key, encoded_len_varint, key_len};
use sha2::{Digest, Sha256};

mod read;
pub mod wire;

pub use read::{Attributes, Push, Record, Request, read, read_push};

/// Version of the records this build writes and reads. Bump it on any change an older
/// aggregator would misread; aggregators send records of another version to the dead-letter
/// topic ([`decode`]), and `tests/compat.rs` keeps one checked-in record of every version.
pub const VERSION: u32 = 1;

/// The name an operation beyond a service's operation cap is renamed to (ingest's guard).
/// The cut plans room for it, so where a push is cut does not depend on the renaming.
pub const OVERFLOW_OPERATION: &str = "__overflow__";

/// The Kafka key of a tenant's service: one service's records land in one partition, in order.
pub fn key(tenant: &str, service: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(tenant.len() + 1 + service.len());
    k.extend_from_slice(tenant.as_bytes());
    k.push(0);
    k.extend_from_slice(service.as_bytes());
    k
}

/// Why a payload on the events topic is not a record this build reads.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are not a `nines.v1.EventBatch` at all.
    #[error("not a nines.v1.EventBatch: {0}")]
    NotARecord(#[from] prost::DecodeError),
    /// The bytes are not a `nines.v1.EventBatch`, as [`read`] found (it names the field).
    #[error("not a nines.v1.EventBatch: {0}")]
    Malformed(String),
    /// A record of a version this build does not know (a newer ingest, or a corrupt field).
    #[error("unknown schema_version {found} (this aggregator reads {VERSION})")]
    UnknownVersion { found: u32 },
}

/// Reads a record from the events topic with prost, refusing any version but [`VERSION`]: the
/// reference for [`read`].
pub fn decode(payload: &[u8]) -> Result<EventBatch, DecodeError> {
    let batch = EventBatch::decode(payload)?;
    if batch.schema_version != VERSION {
        return Err(DecodeError::UnknownVersion {
            found: batch.schema_version,
        });
    }
    Ok(batch)
}

/// A single event larger than a record may be: `field` names it (`requests[3]`).
#[derive(Debug, thiserror::Error)]
#[error("{field}: {}", self.reason())]
pub struct TooLarge {
    pub field: String,
    pub bytes: usize,
    pub limit: usize,
}

impl TooLarge {
    /// What is wrong with the event at `field`.
    pub fn reason(&self) -> String {
        format!(
            "event is {} bytes encoded, more than the {}-byte record limit",
            self.bytes, self.limit
        )
    }
}

/// Bytes a repeated message field adds around an event: tag plus length prefix (upper bound).
const FIELD_OVERHEAD: usize = 1 + 5;
/// Field number of `EventBatch.content_fingerprint`, appended after the events.
const FINGERPRINT_FIELD: u32 = 10;
/// Bytes of a fingerprint (SHA-256, truncated).
pub const FINGERPRINT_BYTES: usize = 16;
/// Encoded size of the fingerprint field: tag, length, bytes.
const FINGERPRINT_OVERHEAD: usize = 1 + 1 + FINGERPRINT_BYTES;

/// Picks the request operations of one part to rename (ingest's operation guard): given the
/// part's operations as sent, the indices (within the part, ascending) that become
/// [`OVERFLOW_OPERATION`].
pub type Rename<'a> = dyn FnMut(&[&str]) -> Vec<usize> + 'a;

/// Field number of `EventBatch.requests`.
const REQUESTS_FIELD: u32 = 7;

/// A request event as the cut and ingest's checks take it: prost's [`RequestEvent`], a
/// [`MappedRequest`] (OTLP's mapping builds those) or a [`Request`] borrowed from the push's
/// bytes (the native door), which the cut copies into the record as it came instead of
/// encoding it again.
pub trait RequestLike {
    fn time_unix_nano(&self) -> i64;
    fn operation(&self) -> &str;
    fn status_code(&self) -> i32;
    fn duration_nano(&self) -> i64;
    fn trace_id(&self) -> &str;
    fn attribute_count(&self) -> usize;
    /// (key, value) of every attribute, in order.
    fn attributes(&self) -> impl Iterator<Item = (&str, &str)>;
    /// Bytes of the event's encoding as sent (its body, without key and length).
    fn body_len(&self) -> usize;
    /// Appends the event as field `number` (key, length, body) as sent, or with its
    /// operation replaced by `operation`.
    fn encode_field(&self, number: u32, operation: Option<&str>, out: &mut Vec<u8>);
}

/// The accessors of [`RequestLike`] for a type with [`RequestEvent`]'s fields.
/// (`request_fields!(field)`: those of the one in `self.field`.)
macro_rules! request_fields {
    ($($inner:ident)?) => {
        fn time_unix_nano(&self) -> i64 {
            self$(.$inner)?.time_unix_nano
        }
        fn operation(&self) -> &str {
            &self$(.$inner)?.operation
        }
        fn status_code(&self) -> i32 {
            self$(.$inner)?.status_code
        }
        fn duration_nano(&self) -> i64 {
            self$(.$inner)?.duration_nano
        }
        fn trace_id(&self) -> &str {
            &self$(.$inner)?.trace_id
        }
    };
}

impl RequestLike for RequestEvent {
    request_fields!();
    fn attribute_count(&self) -> usize {
        self.attributes.len()
    }
    fn attributes(&self) -> impl Iterator<Item = (&str, &str)> {
        self.attributes
            .iter()
            .map(|a| (a.key.as_str(), a.value.as_str()))
    }
    fn body_len(&self) -> usize {
        self.encoded_len()
    }
    fn encode_field(&self, number: u32, operation: Option<&str>, out: &mut Vec<u8>) {
        match operation {
            None => prost::encoding::message::encode(number, self, out),
            Some(operation) => {
                let renamed = RequestEvent {
                    operation: operation.to_owned(),
                    ..self.clone()
                };
                prost::encoding::message::encode(number, &renamed, out)
            }
        }
    }
}

/// Text of a mapped event: lent by what was mapped, made in place when short (a trace id's
/// hex, a number's digits: no allocation per event), or owned. Compared and used as the
/// `str` it holds, whichever way it is kept.
#[derive(Debug, Clone)]
pub enum Text<'a> {
    Lent(&'a str),
    Short(ArrayString<SHORT_TEXT>),
    Owned(String),
}

/// Bytes of text a [`Text`] holds in place: the hex of a 16-byte trace id.
pub const SHORT_TEXT: usize = 32;

impl Text<'_> {
    /// `bytes` in lower-case hex: in place when they are at most 16 (a trace id).
    pub fn hex(bytes: &[u8]) -> Text<'static> {
        // The hex crate's table look-up into bytes, checked as UTF-8 once: not `format!` per
        // byte nor a `char` at a time (`hex::encode`'s way, a tenth of OTLP ingest's CPU once).
        let encode = |out: &mut [u8]| {
            hex::encode_to_slice(bytes, out).expect("room for two digits a byte");
        };
        if bytes.len() * 2 <= SHORT_TEXT {
            let mut buf = [0_u8; SHORT_TEXT];
            let digits = &mut buf[..bytes.len() * 2];
            encode(digits);
            let text = std::str::from_utf8(digits).expect("hex is ASCII");
            Text::Short(ArrayString::from(text).expect("the length was checked"))
        } else {
            let mut owned = vec![0; bytes.len() * 2];
            encode(&mut owned);
            Text::Owned(String::from_utf8(owned).expect("hex is ASCII"))
        }
    }

    /// `v` in decimal, as `v.to_string()` writes it, in place.
    pub fn int(v: i64) -> Text<'static> {
        let mut digits = itoa::Buffer::new();
        let short = ArrayString::from(digits.format(v)).expect("an i64 has at most 20 digits");
        Text::Short(short)
    }

    /// The text as a `String` (copied unless owned).
    pub fn into_owned(self) -> String {
        match self {
            Text::Owned(s) => s,
            other => other.as_ref().to_owned(),
        }
    }
}

impl Default for Text<'_> {
    fn default() -> Self {
        Text::Lent("")
    }
}

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            Text::Lent(s) => s,
            Text::Short(s) => s,
            Text::Owned(s) => s,
        }
    }
}

impl AsRef<str> for Text<'_> {
    fn as_ref(&self) -> &str {
        self
    }
}

impl PartialEq for Text<'_> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for Text<'_> {}

impl<'a> From<&'a str> for Text<'a> {
    fn from(s: &'a str) -> Self {
        Text::Lent(s)
    }
}

impl From<String> for Text<'_> {
    fn from(s: String) -> Self {
        Text::Owned(s)
    }
}

impl<'a> From<Cow<'a, str>> for Text<'a> {
    fn from(s: Cow<'a, str>) -> Self {
        match s {
            Cow::Borrowed(s) => Text::Lent(s),
            Cow::Owned(s) => Text::Owned(s),
        }
    }
}

/// An attribute of a mapped event: (key, value).
pub type MappedAttribute<'a> = (Cow<'a, str>, Text<'a>);

/// A request event a mapping made (OTLP's span → request event), its text borrowed from
/// what was mapped where it can be: [`RequestEvent`]'s fields without a `String` each. Its
/// attributes are a range of its [`MappedEvents`]' list; joined with them
/// ([`MappedEvent`]) the cut writes it as prost writes the same [`RequestEvent`]
/// ([`MappedEvent::to_event`]; the tests compare the bytes), so a record does not show which
/// door an event came through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MappedRequest<'a> {
    pub time_unix_nano: i64,
    pub operation: Cow<'a, str>,
    pub status_code: i32,
    pub error: bool,
    pub duration_nano: i64,
    pub trace_id: Text<'a>,
    /// Where its attributes are in the list they were mapped into.
    pub attributes: Range<usize>,
}

impl MappedRequest<'_> {
    /// The same event as prost's type, with `attributes` (its own, in order), its owned
    /// text moved, its borrowed text copied.
    pub fn into_event(self, attributes: Vec<MappedAttribute>) -> RequestEvent {
        RequestEvent {
            time_unix_nano: self.time_unix_nano,
            operation: self.operation.into_owned(),
            status_code: self.status_code,
            error: self.error,
            duration_nano: self.duration_nano,
            trace_id: self.trace_id.into_owned(),
            attributes: attributes
                .into_iter()
                .map(|(key, value)| Attribute {
                    key: key.into_owned(),
                    value: value.into_owned(),
                })
                .collect(),
        }
    }
}

/// The request events of one push a mapping made, the attributes of all of them in one list
/// (one allocation a push, not one an event).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MappedEvents<'a> {
    pub requests: Vec<MappedRequest<'a>>,
    pub attributes: Vec<MappedAttribute<'a>>,
}

impl<'a> MappedEvents<'a> {
    /// Adds `request` with `attributes` (its range is set here).
    pub fn push(
        &mut self,
        mut request: MappedRequest<'a>,
        attributes: impl IntoIterator<Item = MappedAttribute<'a>>,
    ) {
        let start = self.attributes.len();
        self.attributes.extend(attributes);
        request.attributes = start..self.attributes.len();
        self.requests.push(request);
    }

    /// The events joined with their attributes, in order: what the cut takes.
    pub fn joined(&self) -> Vec<MappedEvent<'_, 'a>> {
        self.requests
            .iter()
            .map(|r| {
                let mut event = self.event(r);
                event.body_len = Some(event.len_with(&r.operation));
                event
            })
            .collect()
    }

    /// `request` joined with its attributes: one of these events, or one being mapped whose
    /// attributes are already in the list.
    pub fn event<'r>(&'r self, request: &'r MappedRequest<'a>) -> MappedEvent<'r, 'a> {
        MappedEvent {
            request,
            attributes: &self.attributes[request.attributes.clone()],
            body_len: None,
        }
    }

    /// The events as prost's type.
    pub fn to_events(&self) -> Vec<RequestEvent> {
        self.joined().iter().map(MappedEvent::to_event).collect()
    }
}

/// A mapped request joined with its attributes.
#[derive(Debug, Clone, Copy)]
pub struct MappedEvent<'r, 'a> {
    pub request: &'r MappedRequest<'a>,
    pub attributes: &'r [MappedAttribute<'a>],
    /// Bytes of its body, summed once by [`MappedEvents::joined`] (the cut asks for it to plan
    /// the parts and to size each record, and writes it before the body); else summed when
    /// asked.
    body_len: Option<usize>,
}

impl MappedEvent<'_, '_> {
    /// The same event as prost's type.
    pub fn to_event(&self) -> RequestEvent {
        self.request.clone().into_event(self.attributes.to_vec())
    }

    /// Bytes of the event's body with `operation` as its operation.
    fn len_with(&self, operation: &str) -> usize {
        let r = self.request;
        // int32 is written as the int64 of the same value (ten bytes when negative).
        let int = |v: i64| if v == 0 { 0 } else { 1 + varint_len(v as u64) };
        let mut n = int(r.time_unix_nano)
            + text_len(operation)
            + int(i64::from(r.status_code))
            + 2 * usize::from(r.error)
            + int(r.duration_nano)
            + text_len(&r.trace_id);
        for (key, value) in self.attributes {
            let body = text_len(key) + text_len(value);
            n += 1 + varint_len(body as u64) + body;
        }
        n
    }

    /// Appends the body with `operation` as its operation, fields in prost's order, defaults
    /// left out as prost leaves them out. Every field number here is below 16, so each key
    /// is one byte: `number << 3 | wire type`.
    fn encode_with(&self, operation: &str, out: &mut Vec<u8>) {
        const VARINT: u8 = 0;
        const LEN: u8 = 2;
        let int = |number: u8, v: i64, out: &mut Vec<u8>| {
            if v != 0 {
                out.push(number << 3 | VARINT);
                put_varint(v as u64, out);
            }
        };
        let r = self.request;
        int(1, r.time_unix_nano, out);
        put_text(2 << 3 | LEN, operation, out);
        int(3, i64::from(r.status_code), out);
        if r.error {
            out.extend_from_slice(&[4 << 3 | VARINT, 1]);
        }
        int(5, r.duration_nano, out);
        put_text(6 << 3 | LEN, &r.trace_id, out);
        for (key, value) in self.attributes {
            out.push(7 << 3 | LEN);
            put_varint((text_len(key) + text_len(value)) as u64, out);
            put_text(1 << 3 | LEN, key, out);
            put_text(2 << 3 | LEN, value, out);
        }
    }
}

/// Bytes of `v` as a varint.
fn varint_len(v: u64) -> usize {
    encoded_len_varint(v)
}

/// Appends `v` as a varint (prost's `encode_varint` without its generic buffer's checks per
/// byte: the caller reserved the room).
fn put_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Encoded bytes of a proto3 `string` field (number below 16) holding `s`: none when empty.
fn text_len(s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        1 + varint_len(s.len() as u64) + s.len()
    }
}

/// Appends a proto3 `string` field with one-byte key `key` holding `s`, unless it is empty
/// (as prost leaves it out).
fn put_text(key: u8, s: &str, out: &mut Vec<u8>) {
    if !s.is_empty() {
        out.push(key);
        put_varint(s.len() as u64, out);
        out.extend_from_slice(s.as_bytes());
    }
}

impl RequestLike for MappedEvent<'_, '_> {
    request_fields!(request);
    fn attribute_count(&self) -> usize {
        self.attributes.len()
    }
    fn attributes(&self) -> impl Iterator<Item = (&str, &str)> {
        self.attributes
            .iter()
            .map(|(k, v)| (k.as_ref(), v.as_ref()))
    }
    fn body_len(&self) -> usize {
        self.body_len
            .unwrap_or_else(|| self.len_with(&self.request.operation))
    }
    fn encode_field(&self, number: u32, operation: Option<&str>, out: &mut Vec<u8>) {
        let (operation, len) = match operation {
            None => (&*self.request.operation, self.body_len()),
            Some(renamed) => (renamed, self.len_with(renamed)),
        };
        out.reserve(key_len(number) + varint_len(len as u64) + len);
        encode_key(number, WireType::LengthDelimited, out);
        put_varint(len as u64, out);
        self.encode_with(operation, out);
    }
}

/// Encodes `req` as one or more `EventBatch` records of at most `max_bytes` each.
pub fn cut(
    mut req: PushRequest,
    received_at: i64,
    max_bytes: usize,
) -> Result<Vec<Vec<u8>>, TooLarge> {
    let requests = std::mem::take(&mut req.requests);
    cut_guarded(
        req,
        &requests,
        received_at,
        max_bytes,
        &mut |_| Vec::new(),
        None,
    )
}

/// Encodes the push `head` (whose own `requests` are ignored) with `requests` as records of
/// at most `max_bytes` each, `rename` applied to each part's operations. The fingerprint is
/// of the content as sent, unless `identity` gives one (a derived record whose content
/// differs between replicas but whose identity does not, like a telemetry deploy, or a push
/// whose batch id no other push can carry): then the content is not hashed at all.
///
/// The records are the bytes prost would write for the same `EventBatch`: the header, the
/// requests, the other events, the fingerprint, each field in prost's order; a request
/// event borrowed from the push is copied as it came (with whatever fields this build does
/// not know, which the aggregator skips).
pub fn cut_guarded<E: RequestLike>(
    head: PushRequest,
    requests: &[E],
    received_at: i64,
    max_bytes: usize,
    rename: &mut Rename<'_>,
    identity: Option<[u8; FINGERPRINT_BYTES]>,
) -> Result<Vec<Vec<u8>>, TooLarge> {
    let mut hasher = identity.is_none().then(|| {
        let mut hasher = Sha256::new();
        hasher.update(b"nines.v1.EventBatch content\0");
        if let Some(r) = &head.resource {
            hasher.update(r.encode_to_vec());
        }
        hasher.update(head.batch_id.as_bytes());
        hasher
    });
    let header = EventBatch {
        schema_version: VERSION,
        resource: head.resource,
        batch_id: head.batch_id,
        part: u32::MAX,
        parts: u32::MAX,
        received_at_unix_nano: received_at,
        ..Default::default()
    };
    let budget = max_bytes.saturating_sub(header.encoded_len() + FINGERPRINT_OVERHEAD);

    // A part: a range of `requests`, and the other events moved into an otherwise empty
    // batch (which encodes as those fields alone).
    let mut parts = vec![(0..0, EventBatch::default())];
    let mut used = 0_usize;
    let mut room = |len: usize, field: &dyn Fn() -> String| {
        if len > budget {
            return Err(TooLarge {
                field: field(),
                bytes: len,
                limit: budget,
            });
        }
        let new_part = used + len > budget;
        if new_part {
            used = 0;
        }
        used += len;
        Ok(new_part)
    };
    for (i, ev) in requests.iter().enumerate() {
        if room(planned_len(ev) + FIELD_OVERHEAD, &|| {
            format!("requests[{i}]")
        })? {
            parts.push((i..i, EventBatch::default()));
        }
        parts.last_mut().expect("one part").0.end = i + 1;
    }
    // One closure per event kind would need three copies of this loop; a macro keeps it one.
    macro_rules! place {
        ($events:expr, $field:ident, $name:literal) => {
            for (i, ev) in $events.into_iter().enumerate() {
                if room(ev.encoded_len() + FIELD_OVERHEAD, &|| {
                    format!("{}[{i}]", $name)
                })? {
                    parts.push((requests.len()..requests.len(), EventBatch::default()));
                }
                parts.last_mut().expect("one part").1.$field.push(ev);
            }
        };
    }
    place!(head.deploys, deploys, "deploys");
    place!(head.incidents, incidents, "incidents");
    place!(head.gate_decisions, gate_decisions, "gate_decisions");

    let count = parts.len() as u32;
    let mut records = Vec::with_capacity(parts.len());
    let mut scratch = Vec::new();
    for (i, (range, others)) in parts.into_iter().enumerate() {
        let header = EventBatch {
            part: i as u32,
            parts: count,
            ..header.clone()
        };
        let part = &requests[range];
        let operations: Vec<&str> = part.iter().map(RequestLike::operation).collect();
        let renamed = rename(&operations);
        let body: usize = part.iter().map(|e| e.body_len() + FIELD_OVERHEAD).sum();
        let mut record = Vec::with_capacity(
            header.encoded_len() + body + others.encoded_len() + FINGERPRINT_OVERHEAD,
        );
        header.encode(&mut record).expect("a Vec grows");
        let events_at = record.len();
        let mut next = renamed.iter().copied().peekable();
        for (k, ev) in part.iter().enumerate() {
            let overflow = next.next_if_eq(&k).map(|_| OVERFLOW_OPERATION);
            ev.encode_field(REQUESTS_FIELD, overflow, &mut record);
        }
        others.encode(&mut record).expect("a Vec grows");
        if let Some(hasher) = hasher.as_mut() {
            if renamed.is_empty() {
                hasher.update(&record[events_at..]);
            } else {
                // Hash what was sent, not what this replica's guard made of it.
                scratch.clear();
                for ev in part {
                    ev.encode_field(REQUESTS_FIELD, None, &mut scratch);
                }
                others.encode(&mut scratch).expect("a Vec grows");
                hasher.update(&scratch);
            }
        }
        records.push(record);
    }
    let fingerprint = hasher.map_or_else(
        || identity.expect("no hasher without an identity"),
        |hasher| {
            let mut out = [0_u8; FINGERPRINT_BYTES];
            out.copy_from_slice(&hasher.finalize()[..FINGERPRINT_BYTES]);
            out
        },
    );
    for r in &mut records {
        prost::encoding::bytes::encode(FINGERPRINT_FIELD, &fingerprint.to_vec(), r);
    }
    Ok(records)
}

/// The fingerprint of an identity (e.g. a telemetry deploy's tenant, service, environment
/// and version), for [`cut_guarded`]: each part length-prefixed, so no two lists collide.
pub fn identity_fingerprint(parts: &[&str]) -> [u8; FINGERPRINT_BYTES] {
    let mut hasher = Sha256::new();
    hasher.update(b"nines identity\0");
    for p in parts {
        hasher.update((p.len() as u64).to_le_bytes());
        hasher.update(p.as_bytes());
    }
    let mut out = [0_u8; FINGERPRINT_BYTES];
    out.copy_from_slice(&hasher.finalize()[..FINGERPRINT_BYTES]);
    out
}

/// Encoded size of a request event with room for its operation to become
/// [`OVERFLOW_OPERATION`], so the plan does not depend on what a guard renames.
fn planned_len(e: &impl RequestLike) -> usize {
    e.body_len() + OVERFLOW_OPERATION.len().saturating_sub(e.operation().len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nines_proto::v1::{RequestEvent, Resource};

    fn push(n: usize) -> PushRequest {
        PushRequest {
            resource: Some(Resource {
                tenant: "t".into(),
                service: "s".into(),
                ..Default::default()
            }),
            batch_id: "b-1".into(),
            requests: (0..n)
                .map(|i| RequestEvent {
                    time_unix_nano: 1,
                    operation: format!("GET /item/{i}"),
                    duration_nano: i as i64,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn small_push_is_one_record() {
        let records = cut(push(10), 7, 1 << 20).unwrap();
        assert_eq!(records.len(), 1);
        let b = EventBatch::decode(records[0].as_slice()).unwrap();
        assert_eq!((b.part, b.parts, b.requests.len()), (0, 1, 10));
        assert_eq!(b.received_at_unix_nano, 7);
        assert_eq!(b.schema_version, VERSION);
    }

    #[test]
    fn large_push_is_cut_below_the_limit_and_keeps_every_event() {
        let limit = 2_000;
        let records = cut(push(1_000), 7, limit).unwrap();
        assert!(records.len() > 10, "{} records", records.len());
        let mut seen = Vec::new();
        for (i, r) in records.iter().enumerate() {
            assert!(r.len() <= limit, "record {i} is {} bytes", r.len());
            let b = EventBatch::decode(r.as_slice()).unwrap();
            assert_eq!((b.part as usize, b.parts as usize), (i, records.len()));
            assert_eq!(b.batch_id, "b-1");
            seen.extend(b.requests.iter().map(|e| e.duration_nano));
        }
        assert_eq!(seen, (0..1_000).collect::<Vec<i64>>());
    }

    #[test]
    fn an_event_larger_than_a_record_is_refused() {
        let mut p = push(1);
        p.requests[0].operation = "x".repeat(5_000);
        let err = cut(p, 7, 1_000).unwrap_err().to_string();
        assert!(err.starts_with("requests[0]: event is "), "{err}");
    }

    fn layout(records: &[Vec<u8>]) -> Vec<(u32, usize, Vec<u8>)> {
        records
            .iter()
            .map(|r| {
                let b = EventBatch::decode(r.as_slice()).unwrap();
                (b.part, b.requests.len(), b.content_fingerprint.to_vec())
            })
            .collect()
    }

    /// Short operation names, which grow the most when renamed to `__overflow__`.
    fn short_ops(n: usize) -> PushRequest {
        let mut p = push(n);
        for (i, e) in p.requests.iter_mut().enumerate() {
            e.operation = format!("{}", i % 7);
        }
        p
    }

    #[test]
    fn a_retry_is_cut_the_same_whatever_the_guard_renames() {
        let limit = 1_500;
        let plain = cut(short_ops(500), 7, limit).unwrap();
        // Another replica, at another time, whose guard renames every operation.
        let mut rename_all = |ops: &[&str]| (0..ops.len()).collect();
        let mut p = short_ops(500);
        let requests = std::mem::take(&mut p.requests);
        let renamed = cut_guarded(p, &requests, 99, limit, &mut rename_all, None).unwrap();
        assert!(plain.len() > 5, "{} parts", plain.len());
        assert_eq!(layout(&plain), layout(&renamed));
        for r in plain.iter().chain(&renamed) {
            assert!(r.len() <= limit, "a record of {} bytes", r.len());
        }
        let b = EventBatch::decode(renamed[0].as_slice()).unwrap();
        assert_eq!(b.requests[0].operation, OVERFLOW_OPERATION);
        let fp = &layout(&plain)[0].2;
        assert_eq!(fp.len(), FINGERPRINT_BYTES);
        assert!(
            layout(&plain).iter().all(|(_, _, f)| f == fp),
            "same in every part"
        );
    }

    #[test]
    fn other_content_under_the_same_batch_id_has_another_fingerprint() {
        let fp = |p: PushRequest| layout(&cut(p, 7, 1 << 20).unwrap())[0].2.clone();
        let base = fp(push(10));
        assert_eq!(fp(push(10)), base);
        let mut other = push(10);
        other.requests[9].duration_nano += 1;
        assert_ne!(fp(other), base);
        let mut other_service = push(10);
        other_service.resource.as_mut().unwrap().service = "s2".into();
        assert_ne!(fp(other_service), base);
        // A fingerprint given as identity wins over the content.
        let id = identity_fingerprint(&["t", "s", "prod", "v2"]);
        assert_ne!(id, identity_fingerprint(&["t", "s", "prodv2", ""]));
        let mut p = push(10);
        let requests = std::mem::take(&mut p.requests);
        let with_id = cut_guarded(p, &requests, 7, 1 << 20, &mut |_| Vec::new(), Some(id)).unwrap();
        assert_eq!(layout(&with_id)[0].2, id.to_vec());
    }

    /// Mapped events at the edges of prost's encoding: every field at its default (left
    /// out), negative numbers (ten-byte varints), text of 127 and 128 bytes (one- and two-byte
    /// lengths), an attribute with an empty key or value (an empty message still written).
    fn mapped_events() -> MappedEvents<'static> {
        let long = "é".repeat(64);
        let mut events = MappedEvents::default();
        events.push(MappedRequest::default(), []);
        events.push(
            MappedRequest {
                time_unix_nano: 1_764_900_000_000_000_000,
                operation: "GET /api/orders/{id}".into(),
                status_code: 503,
                error: true,
                duration_nano: 20_000_000,
                trace_id: "0123456789abcdef0123456789abcdef".into(),
                ..Default::default()
            },
            [
                ("http.request.method".into(), "GET".into()),
                ("http.response.status_code".into(), "503".to_owned().into()),
                ("http.request.body.size".into(), Text::int(-1_048_576)),
                ("trace.parent".into(), Text::hex(&[0xfe; 16])),
                ("".into(), "".into()),
                ("url.scheme".into(), "".into()),
                ("".into(), "v".into()),
            ],
        );
        events.push(
            MappedRequest {
                time_unix_nano: -1,
                operation: "x".repeat(127).into(),
                status_code: -1,
                error: false,
                duration_nano: i64::MIN,
                trace_id: long[..128].to_owned().into(),
                ..Default::default()
            },
            [(long.clone().into(), "y".repeat(300).into())],
        );
        events
    }

    /// Text made in place is what the standard library writes, held in place only when it
    /// fits: an i64 at its edges, and hex of 16 bytes (a trace id) against 17.
    #[test]
    fn short_text_is_written_as_the_standard_library_writes_it() {
        for v in [0, -1, 9, 10, 200, -503, i64::MAX, i64::MIN] {
            let t = Text::int(v);
            assert!(matches!(t, Text::Short(_)), "{v}");
            assert_eq!(&*t, v.to_string());
        }
        for bytes in [&[][..], &[0x00, 0x0f, 0xa0, 0xff], &[0x9c; 16], &[0x7e; 17]] {
            let want: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            let t = Text::hex(bytes);
            assert_eq!(matches!(t, Text::Short(_)), bytes.len() <= 16, "{want}");
            assert_eq!(t.clone().into_owned(), want);
            assert_eq!(t, Text::Owned(want));
        }
    }

    #[test]
    fn a_mapped_event_is_written_as_prost_writes_the_same_event() {
        let events = mapped_events();
        let joined = events.joined();
        let ranges: Vec<_> = events
            .requests
            .iter()
            .map(|r| r.attributes.clone())
            .collect();
        assert_eq!(ranges, [0..0, 0..7, 7..8]);
        for (i, e) in joined.iter().enumerate() {
            let prost = e.to_event();
            // Joined (its length summed once, kept) or alone (summed when asked): the same.
            for e in [*e, events.event(e.request)] {
                assert_eq!(e.body_len(), prost.encoded_len(), "event {i}");
                for operation in [None, Some(OVERFLOW_OPERATION), Some("")] {
                    let mut ours = Vec::new();
                    e.encode_field(REQUESTS_FIELD, operation, &mut ours);
                    let mut theirs = Vec::new();
                    prost.encode_field(REQUESTS_FIELD, operation, &mut theirs);
                    assert_eq!(ours, theirs, "event {i}, operation {operation:?}");
                }
            }
        }
        // And whole records: a push of them cut both ways, renames included.
        let p = push(0);
        let prost = events.to_events();
        assert_eq!(prost[1].attributes[6].value, "v");
        assert_eq!(prost[2].attributes.len(), 1);
        let mut rename = |ops: &[&str]| (0..ops.len()).step_by(2).collect();
        let theirs = cut_guarded(p.clone(), &prost, 7, 900, &mut rename, None).unwrap();
        let ours = cut_guarded(p, &joined, 7, 900, &mut rename, None).unwrap();
        assert!(theirs.len() > 1, "{} records", theirs.len());
        assert_eq!(ours, theirs);
    }
}
