//! Any bytes as an OTLP trace export: decoding, mapping spans to request events, validation
//! and cutting must never panic; whatever the mapping keeps must pass validation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nines_ingest::config::Limits;
use nines_ingest::otlp::map_traces;
use nines_record::cut;
use nines_ingest::validate::validate;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

const NOW: i64 = 1_795_651_200_000_000_000;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = ExportTraceServiceRequest::decode(data) else {
        return;
    };
    let limits = Limits::default();
    let Ok(mapped) = map_traces(request, &limits, NOW) else {
        return;
    };
    for mut push in mapped.pushes {
        push.resource.get_or_insert_with(Default::default).tenant = "fuzz".into();
        validate(&mut push, &limits, NOW).expect("mapped spans are valid");
        let _ = cut(push, NOW, 64 * 1024);
    }
});
