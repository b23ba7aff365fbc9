//! The record on the events topic (`nines.v1.EventBatch`, `proto/nines/v1/bus.proto`): the
//! contract between ingest, which writes it, and the aggregator, which reads it, two roles
//! deployed apart. Everything about it lives here: its [`VERSION`], its Kafka [`key`], how a
//! push is cut into records ([`cut`]), how a record is read back ([`read`], in place, as the
//! aggregator does; [`decode`], prost's, the reference it is tested against), and a
//! compatibility test over a checked-in record of every version (`tests/compat.rs`).
//!
//! Cutting encodes a validated push as records below the byte limit. Events are moved, not
//! copied, and every record is encoded exactly once. The cut is a function of the push alone,
//! so a retry maps to the same parts on any ingest replica, whatever that replica's operation
//! guard renames: part boundaries are planned on the events as sent, with room for an
//! operation renamed to [`OVERFLOW_OPERATION`], and the content fingerprint every part carries
//! is taken over the events as sent too.

use nines_proto::v1::{EventBatch, PushRequest, RequestEvent};
use prost::Message;
use sha2::{Digest, Sha256};

mod read;
pub mod wire;

pub use read::{Record, Request, read};

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

/// Renames request operations of one part in place (the operation guard) and returns the
/// original names of those it renamed, by index.
pub type Rename<'a> = dyn FnMut(&mut [RequestEvent]) -> Vec<(usize, String)> + 'a;

/// Encodes `req` as one or more `EventBatch` records of at most `max_bytes` each.
pub fn cut(req: PushRequest, received_at: i64, max_bytes: usize) -> Result<Vec<Vec<u8>>, TooLarge> {
    cut_guarded(req, received_at, max_bytes, &mut |_| Vec::new(), None)
}

/// [`cut`], with `rename` applied to each part's requests before it is encoded. The
/// fingerprint is of the content as sent, unless `identity` gives one (a derived record whose
/// content differs between replicas but whose identity does not, like a telemetry deploy).
pub fn cut_guarded(
    req: PushRequest,
    received_at: i64,
    max_bytes: usize,
    rename: &mut Rename<'_>,
    identity: Option<[u8; FINGERPRINT_BYTES]>,
) -> Result<Vec<Vec<u8>>, TooLarge> {
    let mut hasher = Sha256::new();
    hasher.update(b"nines.v1.EventBatch content\0");
    if let Some(r) = &req.resource {
        hasher.update(r.encode_to_vec());
    }
    hasher.update(req.batch_id.as_bytes());
    let header = EventBatch {
        schema_version: VERSION,
        resource: req.resource,
        batch_id: req.batch_id,
        part: u32::MAX,
        parts: u32::MAX,
        received_at_unix_nano: received_at,
        ..Default::default()
    };
    let budget = max_bytes.saturating_sub(header.encoded_len() + FINGERPRINT_OVERHEAD);

    let mut batches = vec![header.clone()];
    let mut used = 0_usize;
    // One closure per event kind would need four copies of this loop; a macro keeps it one.
    macro_rules! place {
        ($events:expr, $field:ident, $name:literal, $planned:expr) => {
            for (i, ev) in $events.into_iter().enumerate() {
                let len = $planned(&ev) + FIELD_OVERHEAD;
                if len > budget {
                    return Err(TooLarge {
                        field: format!("{}[{i}]", $name),
                        bytes: len,
                        limit: budget,
                    });
                }
                if used + len > budget {
                    batches.push(header.clone());
                    used = 0;
                }
                used += len;
                batches.last_mut().expect("one batch").$field.push(ev);
            }
        };
    }
    place!(req.requests, requests, "requests", planned_len);
    place!(
        req.deploys,
        deploys,
        "deploys",
        |e: &nines_proto::v1::DeployEvent| e.encoded_len()
    );
    place!(
        req.incidents,
        incidents,
        "incidents",
        |e: &nines_proto::v1::IncidentEvent| e.encoded_len()
    );
    place!(
        req.gate_decisions,
        gate_decisions,
        "gate_decisions",
        |e: &nines_proto::v1::GateDecisionEvent| e.encoded_len()
    );

    let parts = batches.len() as u32;
    let mut records = Vec::with_capacity(batches.len());
    let mut scratch = Vec::new();
    for (i, mut b) in batches.into_iter().enumerate() {
        b.part = i as u32;
        b.parts = parts;
        let mut renamed = rename(&mut b.requests);
        let record = b.encode_to_vec();
        // Where the events start: the encoded length of this part's header alone.
        let events = (
            std::mem::take(&mut b.requests),
            std::mem::take(&mut b.deploys),
            std::mem::take(&mut b.incidents),
            std::mem::take(&mut b.gate_decisions),
        );
        let events_at = b.encoded_len();
        (b.requests, b.deploys, b.incidents, b.gate_decisions) = events;
        if renamed.is_empty() {
            hasher.update(&record[events_at..]);
        } else {
            // Hash what was sent, not what this replica's guard made of it.
            for (at, name) in &mut renamed {
                std::mem::swap(&mut b.requests[*at].operation, name);
            }
            scratch.clear();
            b.encode(&mut scratch).expect("a Vec grows");
            hasher.update(&scratch[events_at..]);
        }
        records.push(record);
    }
    let fingerprint = identity.unwrap_or_else(|| {
        let digest = hasher.finalize();
        let mut out = [0_u8; FINGERPRINT_BYTES];
        out.copy_from_slice(&digest[..FINGERPRINT_BYTES]);
        out
    });
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
fn planned_len(e: &RequestEvent) -> usize {
    e.encoded_len() + OVERFLOW_OPERATION.len().saturating_sub(e.operation.len())
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
        let mut rename_all = |events: &mut [RequestEvent]| {
            events
                .iter_mut()
                .enumerate()
                .map(|(i, e)| {
                    let old = std::mem::replace(&mut e.operation, OVERFLOW_OPERATION.into());
                    (i, old)
                })
                .collect()
        };
        let renamed = cut_guarded(short_ops(500), 99, limit, &mut rename_all, None).unwrap();
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
        let with_id = cut_guarded(push(10), 7, 1 << 20, &mut |_| Vec::new(), Some(id)).unwrap();
        assert_eq!(layout(&with_id)[0].2, id.to_vec());
    }
}
