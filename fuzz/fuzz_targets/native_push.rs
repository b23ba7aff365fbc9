//! Any bytes as a native push, down the door's path: reading it in place
//! (`nines_record::read_push`) must read exactly what prost reads and refuse what it refuses;
//! validation must give the same answer for the borrowed events as for prost's; cutting
//! either must never panic, must keep every record within the limit, and must carry the same
//! events.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nines_ingest::config::Limits;
use nines_ingest::validate::validate_push;
use nines_proto::v1::{EventBatch, PushRequest};
use nines_record::{RequestLike, cut_guarded, decode, read_push};
use prost::Message;

/// A fixed "now" (2026-11-26T00:00:00Z) so runs are reproducible.
const NOW: i64 = 1_795_651_200_000_000_000;
const MAX_RECORD: usize = 64 * 1024;

/// Every event of `records`, in order, whatever part each was cut into.
fn events(records: &[Vec<u8>]) -> EventBatch {
    let mut all = EventBatch::default();
    for r in records {
        assert!(r.len() <= MAX_RECORD, "a record of {} bytes", r.len());
        let b = decode(r).expect("a record this build wrote");
        all.requests.extend(b.requests);
        all.deploys.extend(b.deploys);
        all.incidents.extend(b.incidents);
        all.gate_decisions.extend(b.gate_decisions);
    }
    all
}

/// Validates and cuts `requests` with `head`, as the pipeline does.
fn door(
    mut head: PushRequest,
    requests: &[impl RequestLike],
) -> Result<Option<EventBatch>, String> {
    head.resource.get_or_insert_with(Default::default).tenant = "fuzz".into();
    validate_push(&mut head, requests, &Limits::default(), NOW).map_err(|e| e.to_string())?;
    let records = cut_guarded(head, requests, NOW, MAX_RECORD, &mut |_| Vec::new(), None);
    Ok(records.ok().map(|r| events(&r)))
}

fuzz_target!(|data: &[u8]| {
    let mut attributes = Vec::new();
    let (mut prost_push, read) = match (PushRequest::decode(data), read_push(data, &mut attributes))
    {
        (Ok(want), Ok(got)) => (want, got),
        (Err(_), Err(_)) => return,
        (want, got) => panic!("prost: {want:?}; read_push: {got:?}"),
    };
    let requests = std::mem::take(&mut prost_push.requests);
    assert_eq!(read.head, prost_push, "the rest of the push");
    let borrowed: Vec<_> = read.requests.iter().map(|r| r.to_owned_event()).collect();
    assert_eq!(borrowed, requests, "the request events");
    let owned = door(prost_push, &requests);
    let in_place = door(read.head, &read.requests);
    match (owned, in_place) {
        (Ok(Some(a)), Ok(Some(b))) => assert_eq!(a, b, "the records' events"),
        // An event that fits as prost re-encodes it may not as it came (fields this build
        // does not know); validation's answer never differs.
        (Ok(_), Ok(_)) => {}
        (a, b) => assert_eq!(a.err(), b.err(), "validation disagrees"),
    }
});
