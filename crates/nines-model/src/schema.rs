//! Arrow schemas of the tables nines writes. Column names are a public API: analysts write
//! SQL against them. Add columns freely; rename or drop only with a [`SCHEMA_VERSION`] bump
//! and a note in `docs/tables.md`.

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

/// Version of the table schemas, written into every Parquet file's key/value metadata.
/// 2: timestamp columns are microseconds (were nanoseconds), so Delta readers read them.
/// 3: `sli_1m` has `version` (a column added; tables of version 2 gain it when opened).
pub const SCHEMA_VERSION: u32 = 3;

/// Raw request events, one row per event.
pub const REQUESTS: &str = "requests";
/// Additive per-minute rollups of request events.
pub const SLI_1M: &str = "sli_1m";
/// Deploy events.
pub const DEPLOYS: &str = "deploys";
/// Incident events (every version of an incident; the latest `received_at` wins).
pub const INCIDENTS: &str = "incidents";
/// Release gate decisions (docs/release.md): who was allowed or denied, when, and why.
pub const GATE_DECISIONS: &str = "gate_decisions";
/// Every table, in the order a flush writes them.
pub const TABLES: [&str; 5] = [REQUESTS, SLI_1M, DEPLOYS, INCIDENTS, GATE_DECISIONS];

/// Hive-style partition column every table is split by (UTC day of the event time).
pub const PARTITION_COLUMN: &str = "date";

/// Timestamps are microseconds, UTC: Delta Lake's `timestamp` type, which every Delta reader
/// (Spark, delta-rs, DuckDB) reads. Durations keep nanoseconds (`duration_ns`, sketches).
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn utf8(name: &str) -> Field {
    Field::new(name, DataType::Utf8, false)
}

fn ts(name: &str, nullable: bool) -> Field {
    Field::new(name, timestamp_type(), nullable)
}

/// The Kafka provenance columns every table carries: which record a row came from.
fn provenance() -> [Field; 2] {
    [
        Field::new("kafka_partition", DataType::Int32, false),
        Field::new("kafka_offset", DataType::Int64, false),
    ]
}

/// Type of the `attributes` column: map of string to string.
pub fn attributes_type() -> DataType {
    let entries = Field::new(
        "entries",
        DataType::Struct(Fields::from(vec![
            Field::new("keys", DataType::Utf8, false),
            Field::new("values", DataType::Utf8, true),
        ])),
        false,
    );
    DataType::Map(Arc::new(entries), false)
}

/// Type of the `commits` column of `deploys`: list of (sha, time).
pub fn commits_type() -> DataType {
    DataType::List(Arc::new(Field::new("item", commit_struct_type(), true)))
}

/// Type of a list of strings (`gate_decisions.labels`, `.reasons`).
pub fn strings_type() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

/// One commit: its sha and commit time.
pub fn commit_struct_type() -> DataType {
    DataType::Struct(commit_fields())
}

/// Fields of one commit.
pub fn commit_fields() -> Fields {
    Fields::from(vec![utf8("sha"), ts("time", false)])
}

static REQUESTS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![
        utf8("tenant"),
        utf8("service"),
        utf8("environment"),
        utf8("version"),
        utf8("operation"),
        ts("time", false),
        Field::new("status_code", DataType::Int32, false),
        Field::new("error", DataType::Boolean, false),
        Field::new("duration_ns", DataType::Int64, false),
        Field::new("trace_id", DataType::Utf8, true),
        Field::new("attributes", attributes_type(), false),
        ts("received_at", false),
    ];
    fields.extend(provenance());
    Arc::new(Schema::new(fields))
});

static SLI_1M_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![
        utf8("tenant"),
        utf8("service"),
        utf8("environment"),
        utf8("operation"),
        ts("window_start", false),
        Field::new("total", DataType::Int64, false),
        Field::new("errors", DataType::Int64, false),
        Field::new("client_errors", DataType::Int64, false),
        Field::new("duration_sum_ns", DataType::Int64, false),
        Field::new("duration_max_ns", DataType::Int64, false),
        Field::new("latency_sketch", DataType::Binary, false),
    ];
    fields.extend(provenance());
    // Schema 3: the resource's version, so canaries can be compared minute by minute. Last
    // and nullable because a table written before it gains it by a Delta schema change (its
    // older files read as null: version unknown).
    fields.push(Field::new("version", DataType::Utf8, true));
    Arc::new(Schema::new(fields))
});

static DEPLOYS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![
        utf8("tenant"),
        utf8("service"),
        utf8("environment"),
        utf8("version"),
        ts("time", false),
        utf8("outcome"),
        Field::new("commits", commits_type(), false),
        utf8("source"),
        ts("received_at", false),
    ];
    fields.extend(provenance());
    Arc::new(Schema::new(fields))
});

static INCIDENTS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![
        utf8("tenant"),
        utf8("service"),
        utf8("id"),
        ts("opened_at", false),
        ts("resolved_at", true),
        utf8("severity"),
        Field::new("cause_version", DataType::Utf8, true),
        ts("received_at", false),
    ];
    fields.extend(provenance());
    Arc::new(Schema::new(fields))
});

static GATE_DECISIONS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![
        utf8("tenant"),
        utf8("service"),
        utf8("environment"),
        Field::new("version", DataType::Utf8, true),
        ts("time", false),
        ts("evaluated_at", false),
        utf8("decision"),
        Field::new("labels", strings_type(), false),
        Field::new("reasons", strings_type(), false),
        Field::new("override_label", DataType::Utf8, true),
        Field::new("requester", DataType::Utf8, true),
        Field::new("policy", DataType::Utf8, true),
        ts("received_at", false),
    ];
    fields.extend(provenance());
    Arc::new(Schema::new(fields))
});

/// Schema of `requests`.
pub fn requests() -> SchemaRef {
    REQUESTS_SCHEMA.clone()
}

/// Schema of `sli_1m`.
pub fn sli_1m() -> SchemaRef {
    SLI_1M_SCHEMA.clone()
}

/// Schema of `deploys`.
pub fn deploys() -> SchemaRef {
    DEPLOYS_SCHEMA.clone()
}

/// Schema of `incidents`.
pub fn incidents() -> SchemaRef {
    INCIDENTS_SCHEMA.clone()
}

/// Schema of `gate_decisions`.
pub fn gate_decisions() -> SchemaRef {
    GATE_DECISIONS_SCHEMA.clone()
}

/// Everything nines decides about one table, in one place: its schema, the sort key its
/// files are written in, and how its columns are encoded and compressed. The writer,
/// the query session and docs/tables.md (checked by a test) all follow it.
#[derive(Debug)]
pub struct TableDef {
    pub name: &'static str,
    pub schema: fn() -> SchemaRef,
    /// Natural sort key: files are sorted by it so pruning works.
    pub sort_key: &'static [&'static str],
    /// Columns whose values rarely repeat within a file (times, durations, trace ids,
    /// sketches) or repeat only in runs that ZSTD takes as well (a record's `received_at` and
    /// offset): a dictionary would be as large as the values and cost a hash per value, so
    /// they are written plain. The profile of the aggregator had the dictionary interner of
    /// these columns at a tenth of its time (BENCHMARKS.md).
    pub without_dictionary: &'static [&'static str],
    /// Integer and timestamp columns that grow within the sort key's runs (a run's times, a
    /// record's arrival time and offsets): written `DELTA_BINARY_PACKED`, a few bits per
    /// value where plain takes eight for ZSTD to search, and read back with less to
    /// decompress (BENCHMARKS.md, issue 16). Also without a dictionary.
    pub delta_encoded: &'static [&'static str],
    /// Columns written without compression: the low-cardinality strings a file is sorted by
    /// (and the partition), a dictionary and a few run lengths per row group, which ZSTD
    /// makes larger, not smaller (tenant: 258 bytes compressed against 186 raw in a 128 Ki-row
    /// row group). Each compressed column chunk costs every reader a ZSTD context (~100 KB
    /// and a `cpuid`): compaction's merge holds one per column of each input it merges
    /// (BENCHMARKS.md, twentieth part).
    pub uncompressed: &'static [&'static str],
    /// ZSTD level of its Parquet files. `requests` takes 1: over the bench's 2 M events it
    /// wrote smaller files than 3 (61.7–62.0 against 64.4–64.8 bytes per event: its random
    /// trace ids and times gain nothing from level 3's longer search) at no measurable CPU
    /// cost or gain within the runs' noise (BENCHMARKS.md, issue 16). `sli_1m` keeps 3: its
    /// sketches compress better there (0.5 against 0.6 bytes per event).
    pub zstd_level: i32,
}

/// ZSTD level of a table's files unless its definition says otherwise (and of the store's
/// own `idempotency` table).
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// The tables, in the order a flush writes them.
pub static TABLE_DEFS: [TableDef; 5] = [
    TableDef {
        name: REQUESTS,
        schema: requests,
        sort_key: &["tenant", "service", "environment", "operation", "time"],
        without_dictionary: &["duration_ns", "trace_id"],
        delta_encoded: &["time", "received_at", "kafka_offset"],
        uncompressed: &[
            "tenant",
            "service",
            "environment",
            "version",
            "operation",
            "kafka_partition",
        ],
        zstd_level: 1,
    },
    TableDef {
        name: SLI_1M,
        schema: sli_1m,
        sort_key: &[
            "tenant",
            "service",
            "environment",
            "operation",
            "window_start",
        ],
        without_dictionary: &["duration_sum_ns", "duration_max_ns", "latency_sketch"],
        delta_encoded: &[],
        uncompressed: &[],
        zstd_level: DEFAULT_ZSTD_LEVEL,
    },
    TableDef {
        name: DEPLOYS,
        schema: deploys,
        sort_key: &["tenant", "service", "environment", "time"],
        without_dictionary: &[],
        delta_encoded: &[],
        uncompressed: &[],
        zstd_level: DEFAULT_ZSTD_LEVEL,
    },
    TableDef {
        name: INCIDENTS,
        schema: incidents,
        sort_key: &["tenant", "service", "id", "received_at"],
        without_dictionary: &[],
        delta_encoded: &[],
        uncompressed: &[],
        zstd_level: DEFAULT_ZSTD_LEVEL,
    },
    TableDef {
        name: GATE_DECISIONS,
        schema: gate_decisions,
        sort_key: &["tenant", "service", "environment", "time"],
        without_dictionary: &[],
        delta_encoded: &[],
        uncompressed: &[],
        zstd_level: DEFAULT_ZSTD_LEVEL,
    },
];

/// The definition of a table by name.
pub fn table(name: &str) -> Option<&'static TableDef> {
    TABLE_DEFS.iter().find(|t| t.name == name)
}

/// Schema of a table by name.
pub fn for_table(name: &str) -> Option<SchemaRef> {
    table(name).map(|t| (t.schema)())
}

/// Natural sort key of a table (files are sorted by it so pruning works).
pub fn sort_key(name: &str) -> &'static [&'static str] {
    table(name).map_or(&[], |t| t.sort_key)
}

/// `batch` in `schema`: each column cast to its field's type (kept as it is when it has it
/// already). The store writes a flush's dictionary columns as their values through it, and
/// the query doors send results in their wire schema.
pub fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(c.clone())
            } else {
                arrow::compute::cast(c, f.data_type())
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_columns_exist() {
        let check = |schema: SchemaRef, cols: &[&str]| {
            for c in cols {
                assert!(schema.field_with_name(c).is_ok(), "missing column {c}");
            }
        };
        check(
            requests(),
            &[
                "tenant",
                "service",
                "environment",
                "version",
                "operation",
                "time",
                "status_code",
                "error",
                "duration_ns",
                "trace_id",
                "attributes",
            ],
        );
        check(
            sli_1m(),
            &[
                "tenant",
                "service",
                "environment",
                "operation",
                "window_start",
                "total",
                "errors",
                "client_errors",
                "duration_sum_ns",
                "duration_max_ns",
                "latency_sketch",
                "version",
            ],
        );
        check(
            deploys(),
            &[
                "tenant",
                "service",
                "environment",
                "version",
                "time",
                "outcome",
                "commits",
                "source",
            ],
        );
        check(
            incidents(),
            &[
                "tenant",
                "service",
                "id",
                "opened_at",
                "resolved_at",
                "severity",
                "cause_version",
            ],
        );
        check(
            gate_decisions(),
            &[
                "tenant",
                "service",
                "environment",
                "version",
                "time",
                "evaluated_at",
                "decision",
                "labels",
                "reasons",
                "override_label",
                "requester",
                "policy",
            ],
        );
        let names: Vec<&str> = TABLE_DEFS.iter().map(|t| t.name).collect();
        assert_eq!(names, TABLES);
    }

    #[test]
    fn every_column_a_definition_names_exists() {
        for t in &TABLE_DEFS {
            let schema = (t.schema)();
            let listed = t.without_dictionary.iter().chain(t.delta_encoded);
            for c in t.sort_key.iter().chain(listed) {
                assert!(schema.field_with_name(c).is_ok(), "{}.{c}", t.name);
            }
        }
    }
}
