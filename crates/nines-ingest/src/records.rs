//! Cutting a validated push into Kafka record values (`nines.v1.EventBatch`), each below the
//! byte limit. Events are moved, not copied, and every record is encoded exactly once.

use nines_model::schema::BUS_RECORD_VERSION;
use nines_proto::v1::{EventBatch, PushRequest};
use prost::Message;

use crate::{Error, Result};

/// Bytes a repeated message field adds around an event: tag plus length prefix (upper bound).
const FIELD_OVERHEAD: usize = 1 + 5;

/// Encodes `req` as one or more `EventBatch` records of at most `max_bytes` each.
pub fn cut(req: PushRequest, received_at: i64, max_bytes: usize) -> Result<Vec<Vec<u8>>> {
    let header = EventBatch {
        schema_version: BUS_RECORD_VERSION,
        resource: req.resource,
        batch_id: req.batch_id,
        part: u32::MAX,
        parts: u32::MAX,
        received_at_unix_nano: received_at,
        ..Default::default()
    };
    let header_len = header.encoded_len();
    let budget = max_bytes.saturating_sub(header_len);

    let mut batches = vec![header.clone()];
    let mut used = 0_usize;
    // One closure per event kind would need three copies of this loop; a macro keeps it one.
    macro_rules! place {
        ($events:expr, $field:ident, $name:literal) => {
            for (i, ev) in $events.into_iter().enumerate() {
                let len = ev.encoded_len() + FIELD_OVERHEAD;
                if len > budget {
                    return Err(Error::TooLarge {
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
    place!(req.requests, requests, "requests");
    place!(req.deploys, deploys, "deploys");
    place!(req.incidents, incidents, "incidents");

    let parts = batches.len() as u32;
    Ok(batches
        .into_iter()
        .enumerate()
        .map(|(i, mut b)| {
            b.part = i as u32;
            b.parts = parts;
            b.encode_to_vec()
        })
        .collect())
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
        assert_eq!(b.schema_version, BUS_RECORD_VERSION);
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
}
