//! Any bytes as a record on the events topic: the aggregator's reader (`nines_record::read`,
//! request events borrowed from the payload) must never panic, and must read exactly what
//! prost (`nines_record::decode`, the reference) reads and refuse what it refuses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nines_record::{decode, read};

fuzz_target!(|data: &[u8]| {
    match (decode(data), read(data, &mut Vec::new())) {
        (Ok(want), Ok(got)) => assert_eq!(got.to_event_batch(), want, "the readers disagree"),
        (Err(_), Err(_)) => {}
        (want, got) => panic!(
            "prost: {want:?}; read: {:?}",
            got.map(|r| r.to_event_batch())
        ),
    }
});
