//! Any bytes as a native push: decoding, validation and cutting into records must never
//! panic, and every record cut from a valid push must fit the record limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nines_ingest::config::Limits;
use nines_record::cut;
use nines_ingest::validate::validate;
use nines_proto::v1::PushRequest;
use prost::Message;

/// A fixed "now" (2026-11-26T00:00:00Z) so runs are reproducible.
const NOW: i64 = 1_795_651_200_000_000_000;
const MAX_RECORD: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let Ok(mut push) = PushRequest::decode(data) else {
        return;
    };
    if validate(&mut push, &Limits::default(), NOW).is_err() {
        return;
    }
    if let Ok(records) = cut(push, NOW, MAX_RECORD) {
        assert!(records.iter().all(|r| r.len() <= MAX_RECORD));
    }
});
