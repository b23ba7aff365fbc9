//! Files written by nines, read by the `parquet` crate directly (not through our query
//! layer): the documented schema, the offset range in name and metadata, every row. And the
//! Delta tables read by delta-rs's Python package: the timestamp type every reader sees.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::time::Duration;

use arrow::array::AsArray;
use arrow::datatypes::{DataType, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, Encoding};

use nines_testkit::{Generator, WorkloadSpec};

use crate::support::{Env, delta_reader, now_ns, push_ok};

fn parquet_files(dir: PathBuf) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for day in std::fs::read_dir(dir).unwrap() {
        let day = day.unwrap().path();
        if day.ends_with("_delta_log") {
            continue;
        }
        assert!(
            day.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("date="),
            "{}",
            day.display()
        );
        for f in std::fs::read_dir(&day).unwrap() {
            let f = f.unwrap().path();
            assert_eq!(
                f.extension().unwrap(),
                "parquet",
                "no temporary file is left visible"
            );
            out.push(f);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_independent_reader_sees_the_documented_schema() {
    let env = Env::new();
    let _up = env.up();
    let mut client = env.client().await;
    let mut generator = Generator::new(WorkloadSpec::default());
    let mut sent = 0;
    // Every event time as the tables must hold it: microseconds, floored (computed here).
    let mut expected_micros = Vec::new();
    for i in 0..6 {
        let push = generator.push(i % 3, 100, now_ns());
        push_ok(&mut client, &push).await;
        sent += push.requests.len();
        expected_micros.extend(push.requests.iter().map(|e| e.time_unix_nano / 1_000));
    }
    assert_eq!(
        env.wait_for(
            "SELECT count(*) AS n FROM requests",
            sent as i64,
            Duration::from_secs(60)
        ),
        sent as i64
    );

    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    // The documented columns of `requests` (docs/tables.md), in order.
    let documented: Vec<(&str, DataType)> = vec![
        ("tenant", DataType::Utf8),
        ("service", DataType::Utf8),
        ("environment", DataType::Utf8),
        ("version", DataType::Utf8),
        ("operation", DataType::Utf8),
        ("time", ts.clone()),
        ("status_code", DataType::Int32),
        ("error", DataType::Boolean),
        ("duration_ns", DataType::Int64),
        ("trace_id", DataType::Utf8),
    ];
    let mut rows = 0;
    let mut stored_micros = Vec::new();
    for path in parquet_files(env.data_dir().join("tables/requests")) {
        let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap();
        let schema = builder.schema().clone();
        for (i, (name, ty)) in documented.iter().enumerate() {
            assert_eq!(schema.field(i).name(), name);
            assert_eq!(schema.field(i).data_type(), ty, "{name}");
        }
        assert!(matches!(
            schema.field_with_name("attributes").unwrap().data_type(),
            DataType::Map(..)
        ));
        // The offset range is in both the name and the key/value metadata.
        let kv: BTreeMap<String, String> = builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .unwrap()
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default()))
            .collect();
        // Name: the offset range, then a unique suffix (a name is never reused); or, for
        // partitions flushed together, `group-<unique>` with each partition's range in
        // `nines.partitions`.
        let name = path.file_name().unwrap().to_str().unwrap();
        let ranges: BTreeMap<i32, (i64, i64)> = if let Some(unique) = name.strip_prefix("group-") {
            assert_eq!(kv["nines.partition"], "-1", "{name}");
            assert_eq!(
                unique.len(),
                "0123456789abcdef0123456789abcdef.parquet".len()
            );
            kv["nines.partitions"]
                .split(',')
                .map(|r| {
                    let (p, range) = r.split_once(':').unwrap();
                    let (first, last) = range.split_once('-').unwrap();
                    (
                        p.parse().unwrap(),
                        (first.parse().unwrap(), last.parse().unwrap()),
                    )
                })
                .collect()
        } else {
            let (partition, first, last) = (
                kv["nines.partition"].parse::<i32>().unwrap(),
                kv["nines.first_offset"].parse::<i64>().unwrap(),
                kv["nines.last_offset"].parse::<i64>().unwrap(),
            );
            let expected_prefix = format!(
                "{}-p{partition:05}-o{first:020}-{last:020}-",
                kv["nines.topic"]
            );
            assert!(name.starts_with(&expected_prefix), "{name}");
            BTreeMap::from([(partition, (first, last))])
        };
        assert!(name.ends_with(".parquet"), "{name}");
        // The encodings docs/tables.md gives: the columns that grow within a run of the sort
        // key delta-packed; these, the durations and trace ids without a dictionary; the
        // other strings and integers with one (booleans never have one).
        for rg in builder.metadata().row_groups() {
            for c in rg.columns() {
                let column = c.column_path().string();
                let encodings: Vec<Encoding> = c.encodings().collect();
                let delta = encodings.contains(&Encoding::DELTA_BINARY_PACKED);
                let grows = ["time", "received_at", "kafka_offset"].contains(&column.as_str());
                assert_eq!(delta, grows, "{name}: {column} {encodings:?}");
                let plain = grows || ["duration_ns", "trace_id"].contains(&column.as_str());
                if column != "error" {
                    assert_eq!(
                        c.dictionary_page_offset().is_none(),
                        plain,
                        "{name}: {column} {encodings:?}"
                    );
                }
                // The sorted low-cardinality strings and the partition uncompressed, the
                // rest ZSTD (a file does not record the level).
                let raw = [
                    "tenant",
                    "service",
                    "environment",
                    "version",
                    "operation",
                    "kafka_partition",
                ]
                .contains(&column.as_str());
                match c.compression() {
                    Compression::UNCOMPRESSED => assert!(raw, "{name}: {column} uncompressed"),
                    Compression::ZSTD(_) => assert!(!raw, "{name}: {column} compressed"),
                    other => panic!("{name}: {column} {other:?}"),
                }
            }
        }
        assert_eq!(kv["nines.schema_version"], "3");
        assert_eq!(kv["nines.table"], "requests");
        for batch in builder.build().unwrap() {
            let batch = batch.unwrap();
            rows += batch.num_rows();
            // Every row is from a partition and offset range the file names.
            let partitions = batch
                .column_by_name("kafka_partition")
                .unwrap()
                .as_primitive::<arrow::datatypes::Int32Type>();
            let offsets = batch
                .column_by_name("kafka_offset")
                .unwrap()
                .as_primitive::<arrow::datatypes::Int64Type>();
            for (p, o) in partitions.values().iter().zip(offsets.values()) {
                let (first, last) = ranges[p];
                assert!(
                    (first..=last).contains(o),
                    "{name}: partition {p} offset {o}"
                );
            }
            let time = batch
                .column_by_name("time")
                .unwrap()
                .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
            stored_micros.extend(time.values().iter().copied());
        }
    }
    assert_eq!(rows, sent);
    expected_micros.sort_unstable();
    stored_micros.sort_unstable();
    assert_eq!(
        stored_micros, expected_micros,
        "event times, in microseconds"
    );

    // sli_1m carries the sketch as binary and the counts as int64.
    let files = parquet_files(env.data_dir().join("tables/sli_1m"));
    assert!(!files.is_empty());
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(&files[0]).unwrap()).unwrap();
    let schema = builder.schema();
    for (name, ty) in [
        ("window_start", ts),
        ("total", DataType::Int64),
        ("errors", DataType::Int64),
        ("client_errors", DataType::Int64),
        ("duration_sum_ns", DataType::Int64),
        ("duration_max_ns", DataType::Int64),
        ("latency_sketch", DataType::Binary),
    ] {
        assert_eq!(
            schema.field_with_name(name).unwrap().data_type(),
            &ty,
            "{name}"
        );
    }

    // Through the Delta log, as any Delta reader sees the table: every row, the event day
    // as the `date` partition, and microsecond UTC timestamps.
    let read = delta_reader(&env, &[]);
    assert_eq!(read["requests_rows"], sent);
    assert_eq!(read["requests_time_type"], "timestamp[us, tz=UTC]");
    let mut days: Vec<String> = expected_micros
        .iter()
        .map(|us| nines_model::time::day_string(us.div_euclid(86_400_000_000)))
        .collect();
    days.sort();
    days.dedup();
    assert_eq!(read["dates"], serde_json::json!(days));
}
