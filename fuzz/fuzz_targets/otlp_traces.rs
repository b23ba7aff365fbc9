//! Any bytes as an OTLP trace export: decoding, mapping spans to request events, validation
//! and cutting must never panic; whatever the mapping keeps must pass validation; and the
//! door's wire decoder must map whatever prost decodes exactly as prost + `map_traces` do
//! (it may take more: text it does not read is not checked for UTF-8).
#![no_main]

use libfuzzer_sys::fuzz_target;
use nines_ingest::config::Limits;
use nines_ingest::otlp::map_traces;
use nines_ingest::otlp_wire::map_trace_export;
use nines_ingest::validate::validate_push;
use nines_record::cut_guarded;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

const NOW: i64 = 1_795_651_200_000_000_000;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let wire = map_trace_export(data, &limits, NOW);
    let Ok(request) = ExportTraceServiceRequest::decode(data) else {
        return;
    };
    let Ok(mapped) = map_traces(request, &limits, NOW) else {
        assert!(
            wire.is_err(),
            "prost + map_traces refused what the wire decoder took"
        );
        return;
    };
    assert_eq!(wire.as_ref().ok(), Some(&mapped), "the decoders disagree");
    for push in mapped.pushes {
        let mut head = push.head;
        head.resource.get_or_insert_with(Default::default).tenant = "fuzz".into();
        let events = push.events.joined();
        validate_push(&mut head, &events, &limits, NOW).expect("mapped spans are valid");
        let _ = cut_guarded(head, &events, NOW, 64 * 1024, &mut |_| Vec::new(), None);
    }
});
