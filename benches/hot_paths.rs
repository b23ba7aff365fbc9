//! Hot paths per push of 512 request events, each next to the floor it cannot beat:
//!
//! - ingest: validate + cut into records (encode), against encoding the same push alone; the
//!   native door from the push's bytes, prost's decode + validate + cut against reading the
//!   events in place + validate + cut (copying them into the records as they came); and
//!   the door's wire check of the push's bytes, the full scan against counting the events
//!   only (what `scan_within` does for a body this short), beside prost decoding the bytes;
//!   the cardinality guard's check of the push's operations, beside the door it is part of;
//! - OTLP: read an export of 512 SERVER spans off the wire, map to request events, validate
//!   and cut (the trace door), against prost decoding the same bytes alone, and beside the
//!   path it replaced (prost decode, then map); the same spans' events as a native push
//!   through the native door, and their record read and added to a partition buffer;
//! - aggregate: decode + add to a partition buffer, against decoding alone;
//! - flush: turning a buffer of 8 such records into Arrow batches (raw rows, rollups with
//!   sketches), against decoding them alone;
//! - Parquet: writing the flush's `requests` batch sorted + ZSTD, against arrow-rs's default
//!   writer on the same batch;
//! - sketches: merging 1,440 per-minute sketches into a p99, against deserializing them.
//!
//! Data is generated here with the testkit's seeded generator. Figures and ratios are recorded
//! in BENCHMARKS.md with the command that produced them.

use std::hint::black_box;

use criterion::{BatchSize, Bencher, Criterion, Throughput, criterion_group, criterion_main};
use nines_aggregate::PartitionBuffer;
use nines_ingest::config::Limits;
use nines_ingest::guard::OperationGuard;
use nines_ingest::service::own_batch_id;
use nines_ingest::validate::{validate, validate_push};
use nines_ingest::wire;
use nines_model::clock::now_ns;
use nines_proto::v1::{EventBatch, PushRequest};
use nines_record::{cut, cut_guarded};
use nines_testkit::{Generator, WorkloadSpec};
use prost::Message;

const EVENTS: usize = 512;

fn ingest(c: &mut Criterion) {
    let push = Generator::new(WorkloadSpec::default()).push(0, EVENTS, now_ns());
    let limits = Limits::default();
    let mut g = c.benchmark_group("ingest_push_512");
    g.throughput(Throughput::Elements(EVENTS as u64));
    g.bench_function("baseline_encode_only", |b| {
        b.iter_batched(
            || push.clone(),
            |p| black_box(p.encode_to_vec()),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("validate_and_cut", |b| {
        b.iter_batched(
            || push.clone(),
            |mut p| {
                validate(&mut p, &limits, now_ns()).expect("valid");
                black_box(cut(p, 0, 900 * 1024).expect("fits"))
            },
            BatchSize::SmallInput,
        )
    });
    let bytes = push.encode_to_vec();
    // The native door from the push's bytes: prost's decode, then validate and cut, against
    // reading the request events in place and copying them into the records as they came.
    g.bench_function("door_prost_decode_validate_cut", |b| {
        b.iter(|| {
            let mut p = PushRequest::decode(bytes.as_slice()).expect("valid");
            validate(&mut p, &limits, now_ns()).expect("valid");
            black_box(cut(p, 0, 900 * 1024).expect("fits"))
        })
    });
    g.bench_function("door_read_validate_cut", |b| {
        b.iter(|| black_box(native_door(&bytes, &limits)))
    });
    // The cardinality guard the door asks before it cuts (`cut_guarded`'s `rename`), with
    // every operation of the service already admitted, as at steady state.
    let guard = OperationGuard::new(limits.max_operations_per_service, limits.max_tracked_bytes);
    let resource = push.resource.clone().unwrap_or_default();
    let operations: Vec<&str> = push.requests.iter().map(|e| e.operation.as_str()).collect();
    assert!(
        guard
            .apply(&resource.tenant, &resource.service, &operations)
            .is_empty()
    );
    g.bench_function("operation_guard", |b| {
        b.iter(|| black_box(guard.apply(&resource.tenant, &resource.service, &operations)))
    });
    let max_decoded = nines_ingest::IngestConfig::default().max_decoded_bytes;
    g.bench_function("baseline_prost_decode", |b| {
        b.iter(|| black_box(PushRequest::decode(bytes.as_slice()).expect("valid")))
    });
    g.bench_function("door_check_full_scan", |b| {
        b.iter(|| black_box(wire::scan(&wire::PUSH, &bytes).expect("valid")))
    });
    g.bench_function("door_check_scan_within", |b| {
        b.iter(|| black_box(wire::scan_within(&wire::PUSH, &bytes, max_decoded).expect("valid")))
    });
    g.finish();
}

/// What the native door does with a push's bytes: read the request events in place,
/// validate, cut into records (copying each event as it came), keyed as ingest keys them
/// (a push without a batch id gets one of ingest's).
fn native_door(bytes: &[u8], limits: &Limits) -> Vec<Vec<u8>> {
    let mut attributes = Vec::new();
    let p = nines_record::read_push(bytes, &mut attributes).expect("valid");
    let mut head = p.head;
    validate_push(&mut head, &p.requests, limits, now_ns()).expect("valid");
    let identity = own_batch_id(&mut head);
    cut_guarded(
        head,
        &p.requests,
        0,
        900 * 1024,
        &mut |_| Vec::new(),
        identity,
    )
    .expect("fits")
}

/// What the aggregator does with a record at `offset`: read it in place, add it to `buffer`.
fn add_record(buffer: &mut PartitionBuffer, record: &[u8], offset: i64) {
    let mut attributes = Vec::new();
    let record = nines_record::read(record, &mut attributes).expect("reads");
    buffer.add_to(&record, offset, |_| true);
}

/// Times [`add_record`] of `record` into a new partition buffer.
fn read_and_add(b: &mut Bencher<'_>, record: &[u8]) {
    b.iter_batched(
        || PartitionBuffer::new(0),
        |mut buffer| {
            add_record(&mut buffer, record, 1);
            black_box(buffer)
        },
        BatchSize::SmallInput,
    )
}

fn records(n: usize) -> Vec<Vec<u8>> {
    let mut generator = Generator::new(WorkloadSpec::default());
    (0..n)
        .map(|i| {
            let mut p = generator.push(i % 3, EVENTS, now_ns());
            validate(&mut p, &Limits::default(), now_ns()).expect("valid");
            cut(p, now_ns(), 900 * 1024).expect("fits").remove(0)
        })
        .collect()
}

fn aggregate(c: &mut Criterion) {
    let record = records(1).remove(0);
    let mut g = c.benchmark_group("aggregate_record_512");
    g.throughput(Throughput::Elements(EVENTS as u64));
    g.bench_function("baseline_decode_only", |b| {
        b.iter(|| black_box(EventBatch::decode(record.as_slice()).expect("decodes")))
    });
    g.bench_function("read_only", |b| {
        b.iter(|| {
            let mut attributes = Vec::new();
            black_box(nines_record::read(record.as_slice(), &mut attributes).expect("reads"));
        })
    });
    g.bench_function("decode_and_add", |b| read_and_add(b, &record));
    g.finish();

    let many = records(8);
    let mut g = c.benchmark_group("flush_8_records_of_512");
    g.throughput(Throughput::Elements(8 * EVENTS as u64));
    g.bench_function("baseline_decode_only", |b| {
        b.iter(|| {
            for r in &many {
                black_box(EventBatch::decode(r.as_slice()).expect("decodes"));
            }
        })
    });
    g.bench_function("decode_add_and_take", |b| {
        b.iter(|| {
            let mut buffer = PartitionBuffer::new(0);
            for (offset, r) in many.iter().enumerate() {
                add_record(&mut buffer, r, offset as i64);
            }
            black_box(buffer.take().expect("arrow batches"))
        })
    });
    g.finish();
}

/// An OTLP export of `n` SERVER spans as an HTTP server's SDK would send them.
fn otlp_export(n: usize) -> Vec<u8> {
    nines_testkit::otlp::trace_export("orders", n, now_ns() as u64 - 1_000_000_000, 0)
        .encode_to_vec()
}

/// What the trace door does with a mapped push: validate it, cut it into records.
fn validate_and_cut_spans(push: nines_ingest::otlp::SpanPush<'_>, limits: &Limits) -> Vec<Vec<u8>> {
    let mut head = push.head;
    let events = push.events.joined();
    validate_push(&mut head, &events, limits, now_ns()).expect("valid");
    let identity = own_batch_id(&mut head);
    cut_guarded(head, &events, 0, 900 * 1024, &mut |_| Vec::new(), identity).expect("fits")
}

fn otlp(c: &mut Criterion) {
    use nines_ingest::otlp::map_traces;
    use nines_ingest::otlp_wire::map_trace_export;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    let bytes = otlp_export(EVENTS);
    let limits = Limits::default();
    let mut g = c.benchmark_group("ingest_otlp_512_spans");
    g.throughput(Throughput::Elements(EVENTS as u64));
    g.bench_function("baseline_decode_only", |b| {
        b.iter(|| black_box(ExportTraceServiceRequest::decode(bytes.as_slice()).expect("valid")))
    });
    g.bench_function("prost_decode_map_validate_cut", |b| {
        b.iter(|| {
            let req = ExportTraceServiceRequest::decode(bytes.as_slice()).expect("valid");
            let mapped = map_traces(req, &limits, now_ns()).expect("mapped");
            for push in mapped.pushes {
                black_box(validate_and_cut_spans(push, &limits));
            }
        })
    });
    g.bench_function("wire_map_validate_cut", |b| {
        b.iter(|| {
            let mapped = map_trace_export(&bytes, &limits, now_ns()).expect("mapped");
            for push in mapped.pushes {
                black_box(validate_and_cut_spans(push, &limits));
            }
        })
    });
    g.bench_function("wire_map_only", |b| {
        b.iter(|| black_box(map_trace_export(&bytes, &limits, now_ns()).expect("mapped")))
    });
    // The same spans' events (attributes and all) as one native push, mapped once here: the
    // native door's work on them, and the aggregator's on the record ingest cuts from them.
    let native = {
        let mapped = map_trace_export(&bytes, &limits, now_ns()).expect("mapped");
        let [push] = mapped
            .to_pushes()
            .pushes
            .try_into()
            .expect("one resource, one push");
        push.encode_to_vec()
    };
    g.bench_function("native_same_read_validate_cut", |b| {
        b.iter(|| black_box(native_door(&native, &limits)))
    });
    let [record]: [Vec<u8>; 1] = native_door(&native, &limits)
        .try_into()
        .expect("one record");
    g.bench_function("record_of_spans_read_and_add", |b| read_and_add(b, &record));
    g.finish();
}

/// Parquet: the `requests` batch of a flush of 8 × 512 events written as nines writes it
/// (sorted by the natural key, ZSTD, page statistics), against arrow-rs's default writer
/// (no compression, no sort) on the same batch. In memory: no fsync in either.
fn parquet_write(c: &mut Criterion) {
    use nines_store::writer::{Provenance, encode};
    use parquet::arrow::ArrowWriter;
    let mut buffer = PartitionBuffer::new(0);
    for (offset, r) in records(8).iter().enumerate() {
        buffer.add(
            &EventBatch::decode(r.as_slice()).expect("decodes"),
            offset as i64,
        );
    }
    let flush = buffer.take().expect("arrow").expect("events");
    let batch = flush
        .batches
        .iter()
        .find(|b| b.table == "requests")
        .expect("a requests batch")
        .batch
        .clone();
    let rows = batch.num_rows() as u64;
    let provenance = Provenance {
        table: "requests",
        topic: "nines.events",
        partition: 0,
        first_offset: 0,
        last_offset: 7,
        partitions: "",
    };
    let mut g = c.benchmark_group("parquet_requests_4096_rows");
    g.throughput(Throughput::Elements(rows));
    g.bench_function("baseline_default_writer", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(1 << 20);
            let mut w = ArrowWriter::try_new(&mut out, batch.schema(), None).expect("writer");
            w.write(&batch).expect("write");
            w.close().expect("close");
            black_box(out)
        })
    });
    g.bench_function("sorted_zstd_as_nines_writes", |b| {
        b.iter(|| black_box(encode(&batch, &provenance).expect("encoded")))
    });
    g.finish();
}

/// Merging a day of per-minute latency sketches (what `sketch_quantile` does per group),
/// against only deserializing them.
fn sketch_merge(c: &mut Criterion) {
    use nines_model::sketch::LatencySketch;
    let sketches: Vec<Vec<u8>> = (0..1440)
        .map(|m| {
            let mut s = LatencySketch::new();
            for i in 0..50 {
                s.add(1_000_000 + (m * 50 + i) * 997);
            }
            s.to_bytes()
        })
        .collect();
    let mut g = c.benchmark_group("sketch_merge_1440_minutes");
    g.throughput(Throughput::Elements(1440));
    g.bench_function("baseline_deserialize_only", |b| {
        b.iter(|| {
            for bytes in &sketches {
                black_box(LatencySketch::from_bytes(bytes).expect("sketch"));
            }
        })
    });
    g.bench_function("deserialize_merge_quantile", |b| {
        b.iter(|| {
            let mut merged = LatencySketch::new();
            for bytes in &sketches {
                merged
                    .merge(&LatencySketch::from_bytes(bytes).expect("sketch"))
                    .expect("same accuracy");
            }
            black_box(merged.quantile(0.99))
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    ingest,
    otlp,
    aggregate,
    parquet_write,
    sketch_merge
);
criterion_main!(benches);
