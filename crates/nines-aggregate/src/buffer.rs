//! Per-partition accumulation of event batches until the caller flushes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use std::sync::LazyLock;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, DictionaryArray, Int32Array, Int32Builder, Int64Array,
    Int64Builder, ListBuilder, MapBuilder, MapFieldNames, StringArray, StringBuilder,
    StructBuilder, TimestampMicrosecondBuilder, UInt32Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt32Type};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use nines_model::schema::{self, DEPLOYS, GATE_DECISIONS, INCIDENTS, REQUESTS, SLI_1M};
use nines_model::time::{day_number, micros, minute_start};
use nines_proto::v1::{DeployOutcome, DeploySource, EventBatch, Resource};
use nines_record::Record;
use prost::Message;

use nines_model::flush::{Flush, TableBatch};

use nines_model::idempotency::Seen;

use crate::Rollup;

/// A timestamp column: fed nanoseconds (as events carry them), holds microseconds (as the
/// tables do), so no caller can forget the conversion.
struct UtcMicros(TimestampMicrosecondBuilder);

impl UtcMicros {
    fn append_value(&mut self, ns: i64) {
        self.0.append_value(micros(ns));
    }

    fn append_null(&mut self) {
        self.0.append_null();
    }

    fn finish(&mut self) -> arrow::array::TimestampMicrosecondArray {
        self.0.finish()
    }
}

fn utc_ts(cap: usize) -> UtcMicros {
    UtcMicros(TimestampMicrosecondBuilder::with_capacity(cap).with_timezone("UTC"))
}

/// A column of few distinct strings (a record's resource: tenant, service, environment,
/// version; and the operation, capped per service by ingest's guard), kept as 4-byte keys
/// into its distinct values instead of each event's copy of the string and its offset: the
/// builders were most of the aggregator's peak heap on a backlog (BENCHMARKS.md, nineteenth
/// part). The flushed column is a dictionary; the writer stores it as its values, so files
/// are unchanged.
#[derive(Default)]
struct Interned {
    keys: Vec<u32>,
    values: Vec<String>,
    index: HashMap<String, u32>,
    /// The key last answered: a value equal to the one before costs a comparison, not a
    /// lookup.
    last: Option<u32>,
}

impl Interned {
    /// The key of `value`, added to the values if new.
    fn key(&mut self, value: &str) -> u32 {
        if let Some(last) = self.last
            && self.values[last as usize] == value
        {
            return last;
        }
        let k = match self.index.get(value) {
            Some(&k) => k,
            None => {
                let k = u32::try_from(self.values.len()).expect("fewer than 2^32 distinct values");
                self.values.push(value.to_owned());
                self.index.insert(value.to_owned(), k);
                k
            }
        };
        self.last = Some(k);
        k
    }

    fn push(&mut self, key: u32) {
        self.keys.push(key);
    }

    fn finish(self) -> Result<DictionaryArray<UInt32Type>, ArrowError> {
        DictionaryArray::try_new(
            UInt32Array::from(self.keys),
            Arc::new(StringArray::from(self.values)),
        )
    }
}

/// `requests` as a flush carries it: the [`INTERNED`] columns as dictionaries, the rest as
/// the table's schema has them.
static BUFFERED_REQUESTS: LazyLock<SchemaRef> = LazyLock::new(|| {
    let table = schema::requests();
    let fields: Vec<Field> = table
        .fields()
        .iter()
        .map(|f| {
            if INTERNED.contains(&f.name().as_str()) {
                f.as_ref().clone().with_data_type(DataType::Dictionary(
                    Box::new(DataType::UInt32),
                    Box::new(f.data_type().clone()),
                ))
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, table.metadata().clone()))
});

/// The columns of `requests` kept as [`Interned`] keys: a record's resource (in
/// [`RequestCols::resource`]'s order) and the operation.
const INTERNED: [&str; 5] = ["tenant", "service", "environment", "version", "operation"];

struct RequestCols {
    /// Tenant, service, environment, version.
    resource: [Interned; 4],
    operation: Interned,
    time: UtcMicros,
    status_code: Int32Builder,
    error: BooleanBuilder,
    duration_ns: Int64Builder,
    trace_id: StringBuilder,
    attributes: MapBuilder<StringBuilder, StringBuilder>,
    received_at: UtcMicros,
    kafka_partition: Int32Builder,
    kafka_offset: Int64Builder,
}

impl RequestCols {
    fn new() -> Self {
        let names = MapFieldNames {
            entry: "entries".into(),
            key: "keys".into(),
            value: "values".into(),
        };
        Self {
            resource: Default::default(),
            operation: Interned::default(),
            time: utc_ts(1024),
            status_code: Int32Builder::new(),
            error: BooleanBuilder::new(),
            duration_ns: Int64Builder::new(),
            trace_id: StringBuilder::new(),
            attributes: MapBuilder::new(Some(names), StringBuilder::new(), StringBuilder::new()),
            received_at: utc_ts(1024),
            kafka_partition: Int32Builder::new(),
            kafka_offset: Int64Builder::new(),
        }
    }

    /// The keys of a resource's four values, for [`Self::push_resource`].
    fn resource_keys(&mut self, r: &Resource) -> [u32; 4] {
        let [t, s, e, v] = &mut self.resource;
        [
            t.key(&r.tenant),
            s.key(&r.service),
            e.key(&r.environment),
            v.key(&r.version),
        ]
    }

    fn push_resource(&mut self, keys: [u32; 4]) {
        for (column, key) in self.resource.iter_mut().zip(keys) {
            column.push(key);
        }
    }

    fn finish(mut self) -> Result<RecordBatch, ArrowError> {
        let [t, s, e, v] = self.resource;
        let cols: Vec<ArrayRef> = vec![
            Arc::new(t.finish()?),
            Arc::new(s.finish()?),
            Arc::new(e.finish()?),
            Arc::new(v.finish()?),
            Arc::new(self.operation.finish()?),
            Arc::new(self.time.finish()),
            Arc::new(self.status_code.finish()),
            Arc::new(self.error.finish()),
            Arc::new(self.duration_ns.finish()),
            Arc::new(self.trace_id.finish()),
            Arc::new(self.attributes.finish()),
            Arc::new(self.received_at.finish()),
            Arc::new(self.kafka_partition.finish()),
            Arc::new(self.kafka_offset.finish()),
        ];
        RecordBatch::try_new(BUFFERED_REQUESTS.clone(), cols)
    }
}

struct DeployCols {
    tenant: StringBuilder,
    service: StringBuilder,
    environment: StringBuilder,
    version: StringBuilder,
    time: UtcMicros,
    outcome: StringBuilder,
    commits: ListBuilder<StructBuilder>,
    source: StringBuilder,
    received_at: UtcMicros,
    kafka_partition: Int32Builder,
    kafka_offset: Int64Builder,
}

impl DeployCols {
    fn new() -> Self {
        let item = Field::new("item", schema::commit_struct_type(), true);
        Self {
            tenant: StringBuilder::new(),
            service: StringBuilder::new(),
            environment: StringBuilder::new(),
            version: StringBuilder::new(),
            time: utc_ts(16),
            outcome: StringBuilder::new(),
            commits: ListBuilder::new(StructBuilder::from_fields(schema::commit_fields(), 16))
                .with_field(Arc::new(item)),
            source: StringBuilder::new(),
            received_at: utc_ts(16),
            kafka_partition: Int32Builder::new(),
            kafka_offset: Int64Builder::new(),
        }
    }

    fn finish(mut self) -> Result<RecordBatch, ArrowError> {
        let cols: Vec<ArrayRef> = vec![
            Arc::new(self.tenant.finish()),
            Arc::new(self.service.finish()),
            Arc::new(self.environment.finish()),
            Arc::new(self.version.finish()),
            Arc::new(self.time.finish()),
            Arc::new(self.outcome.finish()),
            Arc::new(self.commits.finish()),
            Arc::new(self.source.finish()),
            Arc::new(self.received_at.finish()),
            Arc::new(self.kafka_partition.finish()),
            Arc::new(self.kafka_offset.finish()),
        ];
        RecordBatch::try_new(schema::deploys(), cols)
    }
}

struct IncidentCols {
    tenant: StringBuilder,
    service: StringBuilder,
    id: StringBuilder,
    opened_at: UtcMicros,
    resolved_at: UtcMicros,
    severity: StringBuilder,
    cause_version: StringBuilder,
    received_at: UtcMicros,
    kafka_partition: Int32Builder,
    kafka_offset: Int64Builder,
}

impl IncidentCols {
    fn new() -> Self {
        Self {
            tenant: StringBuilder::new(),
            service: StringBuilder::new(),
            id: StringBuilder::new(),
            opened_at: utc_ts(16),
            resolved_at: utc_ts(16),
            severity: StringBuilder::new(),
            cause_version: StringBuilder::new(),
            received_at: utc_ts(16),
            kafka_partition: Int32Builder::new(),
            kafka_offset: Int64Builder::new(),
        }
    }

    fn finish(mut self) -> Result<RecordBatch, ArrowError> {
        let cols: Vec<ArrayRef> = vec![
            Arc::new(self.tenant.finish()),
            Arc::new(self.service.finish()),
            Arc::new(self.id.finish()),
            Arc::new(self.opened_at.finish()),
            Arc::new(self.resolved_at.finish()),
            Arc::new(self.severity.finish()),
            Arc::new(self.cause_version.finish()),
            Arc::new(self.received_at.finish()),
            Arc::new(self.kafka_partition.finish()),
            Arc::new(self.kafka_offset.finish()),
        ];
        RecordBatch::try_new(schema::incidents(), cols)
    }
}

struct GateDecisionCols {
    tenant: StringBuilder,
    service: StringBuilder,
    environment: StringBuilder,
    version: StringBuilder,
    time: UtcMicros,
    evaluated_at: UtcMicros,
    decision: StringBuilder,
    labels: ListBuilder<StringBuilder>,
    reasons: ListBuilder<StringBuilder>,
    override_label: StringBuilder,
    requester: StringBuilder,
    policy: StringBuilder,
    received_at: UtcMicros,
    kafka_partition: Int32Builder,
    kafka_offset: Int64Builder,
}

impl GateDecisionCols {
    fn new() -> Self {
        Self {
            tenant: StringBuilder::new(),
            service: StringBuilder::new(),
            environment: StringBuilder::new(),
            version: StringBuilder::new(),
            time: utc_ts(16),
            evaluated_at: utc_ts(16),
            decision: StringBuilder::new(),
            labels: ListBuilder::new(StringBuilder::new()),
            reasons: ListBuilder::new(StringBuilder::new()),
            override_label: StringBuilder::new(),
            requester: StringBuilder::new(),
            policy: StringBuilder::new(),
            received_at: utc_ts(16),
            kafka_partition: Int32Builder::new(),
            kafka_offset: Int64Builder::new(),
        }
    }

    fn finish(mut self) -> Result<RecordBatch, ArrowError> {
        let cols: Vec<ArrayRef> = vec![
            Arc::new(self.tenant.finish()),
            Arc::new(self.service.finish()),
            Arc::new(self.environment.finish()),
            Arc::new(self.version.finish()),
            Arc::new(self.time.finish()),
            Arc::new(self.evaluated_at.finish()),
            Arc::new(self.decision.finish()),
            Arc::new(self.labels.finish()),
            Arc::new(self.reasons.finish()),
            Arc::new(self.override_label.finish()),
            Arc::new(self.requester.finish()),
            Arc::new(self.policy.finish()),
            Arc::new(self.received_at.finish()),
            Arc::new(self.kafka_partition.finish()),
            Arc::new(self.kafka_offset.finish()),
        ];
        RecordBatch::try_new(schema::gate_decisions(), cols)
    }
}

/// Appends `v`, or null when it is empty.
fn append_or_null(b: &mut StringBuilder, v: &str) {
    if v.is_empty() {
        b.append_null();
    } else {
        b.append_value(v);
    }
}

/// An event's own value, or its resource's when the event leaves it empty.
fn or_resource<'v>(own: &'v str, resource: &'v str) -> &'v str {
    if own.is_empty() { resource } else { own }
}

/// Rollup cells of one resource: minute → operation → rollup. Keyed so that a lookup by
/// `&str` operation allocates nothing.
type Cells = BTreeMap<i64, HashMap<String, Rollup>>;

/// (tenant, service, environment, version) of a rollup row.
type ResourceKey = (String, String, String, String);

/// One output row of `sli_1m`: resource, minute, operation and the cell.
type RollupRow<'a> = (&'a ResourceKey, i64, &'a str, &'a Rollup);

/// version → index in `by_resource`, the innermost level of [`RollupCols::index`].
type ByVersion = HashMap<String, usize>;

/// Rollups of one flush, carrying the provenance of the last record that touched them.
#[derive(Default)]
struct RollupCols {
    /// In order of first appearance (so output is deterministic).
    by_resource: Vec<(ResourceKey, Cells)>,
    /// tenant → service → environment → version → index in `by_resource`: a lookup by
    /// `&str`, without allocating, in constant time however many resources a partition carries.
    index: HashMap<String, HashMap<String, HashMap<String, ByVersion>>>,
}

impl RollupCols {
    fn cells(&mut self, r: &Resource) -> &mut Cells {
        let found = self
            .index
            .get(r.tenant.as_str())
            .and_then(|s| s.get(r.service.as_str()))
            .and_then(|e| e.get(r.environment.as_str()))
            .and_then(|v| v.get(r.version.as_str()))
            .copied();
        let idx = found.unwrap_or_else(|| {
            let idx = self.by_resource.len();
            self.by_resource.push((
                (
                    r.tenant.clone(),
                    r.service.clone(),
                    r.environment.clone(),
                    r.version.clone(),
                ),
                Cells::new(),
            ));
            self.index
                .entry(r.tenant.clone())
                .or_default()
                .entry(r.service.clone())
                .or_default()
                .entry(r.environment.clone())
                .or_default()
                .insert(r.version.clone(), idx);
            idx
        });
        &mut self.by_resource[idx].1
    }

    /// One RecordBatch per UTC day.
    fn finish(self, partition: i32, offset: i64) -> Result<Vec<(i64, RecordBatch)>, ArrowError> {
        let mut by_day: BTreeMap<i64, Vec<RollupRow<'_>>> = BTreeMap::new();
        for (key, cells) in &self.by_resource {
            for (minute, ops) in cells {
                for (op, r) in ops {
                    by_day.entry(day_number(*minute)).or_default().push((
                        key,
                        *minute,
                        op.as_str(),
                        r,
                    ));
                }
            }
        }
        let mut out = Vec::with_capacity(by_day.len());
        for (day, rows) in by_day {
            let n = rows.len();
            let mut tenant = StringBuilder::with_capacity(n, n * 8);
            let mut service = StringBuilder::with_capacity(n, n * 8);
            let mut environment = StringBuilder::with_capacity(n, n * 8);
            let mut operation = StringBuilder::with_capacity(n, n * 16);
            let mut window = utc_ts(n);
            let mut total = Int64Builder::with_capacity(n);
            let mut errors = Int64Builder::with_capacity(n);
            let mut client_errors = Int64Builder::with_capacity(n);
            let mut sum = Int64Builder::with_capacity(n);
            let mut max = Int64Builder::with_capacity(n);
            let mut sketch = BinaryBuilder::with_capacity(n, n * 64);
            let mut version = StringBuilder::with_capacity(n, n * 8);
            for ((t, s, e, v), minute, op, r) in rows {
                version.append_value(v);
                tenant.append_value(t);
                service.append_value(s);
                environment.append_value(e);
                operation.append_value(op);
                window.append_value(minute);
                total.append_value(r.total);
                errors.append_value(r.errors);
                client_errors.append_value(r.client_errors);
                sum.append_value(r.duration_sum_ns);
                max.append_value(r.duration_max_ns);
                sketch.append_value(r.sketch.to_bytes());
            }
            let cols: Vec<ArrayRef> = vec![
                Arc::new(tenant.finish()),
                Arc::new(service.finish()),
                Arc::new(environment.finish()),
                Arc::new(operation.finish()),
                Arc::new(window.finish()),
                Arc::new(total.finish()),
                Arc::new(errors.finish()),
                Arc::new(client_errors.finish()),
                Arc::new(sum.finish()),
                Arc::new(max.finish()),
                Arc::new(sketch.finish()),
                Arc::new(Int32Array::from(vec![partition; n])),
                Arc::new(Int64Array::from(vec![offset; n])),
                Arc::new(version.finish()),
            ];
            out.push((day, RecordBatch::try_new(schema::sli_1m(), cols)?));
        }
        Ok(out)
    }
}

/// Bytes counted per buffered event beyond its strings: fixed-width columns, offsets,
/// validity, and its share of the rollup cell.
const FIXED_EVENT_BYTES: u64 = 96;

/// Accumulates the records of one Kafka partition between flushes.
pub struct PartitionBuffer {
    partition: i32,
    first_offset: Option<i64>,
    last_offset: i64,
    events: u64,
    bytes: u64,
    requests: BTreeMap<i64, RequestCols>,
    deploys: BTreeMap<i64, DeployCols>,
    incidents: BTreeMap<i64, IncidentCols>,
    gate_decisions: BTreeMap<i64, GateDecisionCols>,
    rollups: RollupCols,
    seen: Vec<Seen>,
}

impl std::fmt::Debug for PartitionBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionBuffer")
            .field("partition", &self.partition)
            .field("first_offset", &self.first_offset)
            .field("last_offset", &self.last_offset)
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

impl PartitionBuffer {
    pub fn new(partition: i32) -> Self {
        Self {
            partition,
            first_offset: None,
            last_offset: -1,
            events: 0,
            bytes: 0,
            requests: BTreeMap::new(),
            deploys: BTreeMap::new(),
            incidents: BTreeMap::new(),
            gate_decisions: BTreeMap::new(),
            rollups: RollupCols::default(),
            seen: Vec::new(),
        }
    }

    /// Remembers the idempotency key of a record added to this buffer.
    pub fn note_seen(&mut self, seen: Seen) {
        self.seen.push(seen);
    }

    /// Events added since the last flush.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Estimated bytes the events added since the last flush take in the builders: their
    /// strings plus a fixed amount per event (the aggregator flushes past
    /// `aggregate.flush_bytes`, so wide events cannot outgrow memory before `flush_events`).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// True when no record was added since the last flush.
    pub fn is_empty(&self) -> bool {
        self.first_offset.is_none()
    }

    /// Marks `offset` as processed without adding events (a dead-lettered record).
    pub fn skip(&mut self, offset: i64) {
        self.first_offset.get_or_insert(offset);
        self.last_offset = offset;
    }

    /// Adds every event of one record at `offset`, given as prost's struct (tests, the
    /// bench's report stage): encoded as this build writes a record (its version set) and
    /// read as the aggregator reads one.
    pub fn add(&mut self, batch: &EventBatch, offset: i64) {
        let bytes = EventBatch {
            schema_version: nines_record::VERSION,
            ..batch.clone()
        }
        .encode_to_vec();
        let mut attributes = Vec::new();
        let record =
            nines_record::read(&bytes, &mut attributes).expect("an encoded record reads back");
        self.add_to(&record, offset, |_| true);
    }

    /// Adds the events of one record (as `nines_record::read` reads it) at `offset` to the
    /// tables `wanted` names: a replayed record is left out of the tables that hold it
    /// already.
    pub fn add_to(&mut self, record: &Record<'_>, offset: i64, wanted: impl Fn(&str) -> bool) {
        let batch = &record.batch;
        self.skip(offset);
        let (to_requests, to_rollups) = (wanted(REQUESTS), wanted(SLI_1M));
        let (to_deploys, to_incidents) = (wanted(DEPLOYS), wanted(INCIDENTS));
        let to_gate_decisions = wanted(GATE_DECISIONS);
        let default = Resource::default();
        let res = batch.resource.as_ref().unwrap_or(&default);
        let p = self.partition;
        let received = batch.received_at_unix_nano;
        let resource_bytes =
            (res.tenant.len() + res.service.len() + res.environment.len() + res.version.len())
                as u64;

        // The resource's keys in the day's columns where the last event went: a record's
        // events share one resource, and usually one day.
        let mut keys: Option<(i64, [u32; 4])> = None;
        for e in record.requests.iter().filter(|_| to_requests) {
            self.bytes += FIXED_EVENT_BYTES
                + resource_bytes
                + (e.operation.len() + e.trace_id.len()) as u64
                + e.attributes()
                    .map(|(key, value)| (key.len() + value.len() + 8) as u64)
                    .sum::<u64>();
            let day = day_number(e.time_unix_nano);
            let c = self.requests.entry(day).or_insert_with(RequestCols::new);
            let resource = match keys {
                Some((d, k)) if d == day => k,
                _ => {
                    let k = c.resource_keys(res);
                    keys = Some((day, k));
                    k
                }
            };
            c.push_resource(resource);
            let operation = c.operation.key(e.operation);
            c.operation.push(operation);
            c.time.append_value(e.time_unix_nano);
            c.status_code.append_value(e.status_code);
            c.error.append_value(e.error);
            c.duration_ns.append_value(e.duration_nano);
            if e.trace_id.is_empty() {
                c.trace_id.append_null();
            } else {
                c.trace_id.append_value(e.trace_id);
            }
            for (key, value) in e.attributes() {
                c.attributes.keys().append_value(key);
                c.attributes.values().append_value(value);
            }
            c.attributes
                .append(true)
                .expect("keys and values are appended in pairs");
            c.received_at.append_value(received);
            c.kafka_partition.append_value(p);
            c.kafka_offset.append_value(offset);
        }
        if to_rollups && !record.requests.is_empty() {
            let cells = self.rollups.cells(res);
            for e in &record.requests {
                let ops = cells.entry(minute_start(e.time_unix_nano)).or_default();
                let cell = match ops.get_mut(e.operation) {
                    Some(c) => c,
                    None => ops.entry(e.operation.to_owned()).or_default(),
                };
                cell.add(e.error, e.status_code, e.duration_nano);
            }
        }

        for d in batch.deploys.iter().filter(|_| to_deploys) {
            let c = self
                .deploys
                .entry(day_number(d.time_unix_nano))
                .or_insert_with(DeployCols::new);
            let or = |v: &str, dflt: &str| {
                if v.is_empty() {
                    dflt.to_owned()
                } else {
                    v.to_owned()
                }
            };
            c.tenant.append_value(&res.tenant);
            c.service.append_value(or(&d.service, &res.service));
            c.environment
                .append_value(or(&d.environment, &res.environment));
            c.version.append_value(or(&d.version, &res.version));
            c.time.append_value(d.time_unix_nano);
            c.outcome.append_value(outcome_name(d.outcome));
            let items = c.commits.values();
            for commit in &d.commits {
                items
                    .field_builder::<StringBuilder>(0)
                    .expect("sha")
                    .append_value(&commit.sha);
                items
                    .field_builder::<TimestampMicrosecondBuilder>(1)
                    .expect("time")
                    .append_value(micros(commit.time_unix_nano));
                items.append(true);
            }
            c.commits.append(true);
            c.source
                .append_value(if d.source == DeploySource::Telemetry as i32 {
                    "telemetry"
                } else {
                    "api"
                });
            c.received_at.append_value(received);
            c.kafka_partition.append_value(p);
            c.kafka_offset.append_value(offset);
        }

        for n in batch.incidents.iter().filter(|_| to_incidents) {
            let c = self
                .incidents
                .entry(day_number(n.opened_at_unix_nano))
                .or_insert_with(IncidentCols::new);
            c.tenant.append_value(&res.tenant);
            c.service.append_value(if n.service.is_empty() {
                &res.service
            } else {
                &n.service
            });
            c.id.append_value(&n.id);
            c.opened_at.append_value(n.opened_at_unix_nano);
            if n.resolved_at_unix_nano == 0 {
                c.resolved_at.append_null();
            } else {
                c.resolved_at.append_value(n.resolved_at_unix_nano);
            }
            c.severity.append_value(&n.severity);
            if n.cause_version.is_empty() {
                c.cause_version.append_null();
            } else {
                c.cause_version.append_value(&n.cause_version);
            }
            c.received_at.append_value(received);
            c.kafka_partition.append_value(p);
            c.kafka_offset.append_value(offset);
        }
        for g in batch.gate_decisions.iter().filter(|_| to_gate_decisions) {
            let c = self
                .gate_decisions
                .entry(day_number(g.time_unix_nano))
                .or_insert_with(GateDecisionCols::new);
            c.tenant.append_value(&res.tenant);
            c.service
                .append_value(or_resource(&g.service, &res.service));
            c.environment
                .append_value(or_resource(&g.environment, &res.environment));
            append_or_null(&mut c.version, or_resource(&g.version, &res.version));
            c.time.append_value(g.time_unix_nano);
            c.evaluated_at
                .append_value(if g.evaluated_at_unix_nano == 0 {
                    g.time_unix_nano
                } else {
                    g.evaluated_at_unix_nano
                });
            c.decision
                .append_value(if g.allowed { "allow" } else { "deny" });
            for (list, values) in [(&mut c.labels, &g.labels), (&mut c.reasons, &g.reasons)] {
                for v in values {
                    list.values().append_value(v);
                }
                list.append(true);
            }
            append_or_null(&mut c.override_label, &g.override_label);
            append_or_null(&mut c.requester, &g.requester);
            append_or_null(&mut c.policy, &g.policy);
            c.received_at.append_value(received);
            c.kafka_partition.append_value(p);
            c.kafka_offset.append_value(offset);
        }
        let rare = batch.deploys.len() + batch.incidents.len() + batch.gate_decisions.len();
        self.events += (record.requests.len() + rare) as u64;
        // Deploys, incidents and gate decisions are rare and small: counted at a generous
        // fixed size.
        self.bytes += (rare as u64) * (4 * FIXED_EVENT_BYTES + resource_bytes);
    }

    /// Turns everything added since the last flush into batches and resets the buffer.
    /// `None` when nothing was added.
    pub fn take(&mut self) -> Result<Option<Flush>, ArrowError> {
        let Some(first_offset) = self.first_offset else {
            return Ok(None);
        };
        let old = std::mem::replace(self, PartitionBuffer::new(self.partition));
        let mut batches = Vec::new();
        for (day, c) in old.requests {
            batches.push(TableBatch {
                table: REQUESTS,
                day,
                batch: c.finish()?,
            });
        }
        for (day, batch) in old.rollups.finish(old.partition, old.last_offset)? {
            batches.push(TableBatch {
                table: SLI_1M,
                day,
                batch,
            });
        }
        for (day, c) in old.deploys {
            batches.push(TableBatch {
                table: DEPLOYS,
                day,
                batch: c.finish()?,
            });
        }
        for (day, c) in old.incidents {
            batches.push(TableBatch {
                table: INCIDENTS,
                day,
                batch: c.finish()?,
            });
        }
        for (day, c) in old.gate_decisions {
            batches.push(TableBatch {
                table: GATE_DECISIONS,
                day,
                batch: c.finish()?,
            });
        }
        Ok(Some(Flush {
            partition: old.partition,
            first_offset,
            last_offset: old.last_offset,
            events: old.events,
            batches,
            seen: old.seen,
        }))
    }
}

fn outcome_name(outcome: i32) -> &'static str {
    match DeployOutcome::try_from(outcome) {
        Ok(DeployOutcome::Succeeded) => "succeeded",
        Ok(DeployOutcome::Failed) => "failed",
        Ok(DeployOutcome::RolledBack) => "rolled_back",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nines_proto::v1::{Attribute, IncidentEvent, RequestEvent};

    #[test]
    fn bytes_count_each_event_with_its_strings() {
        let batch = EventBatch {
            resource: Some(Resource {
                tenant: "t".into(),         // 1
                service: "search".into(),   // 6
                environment: "prod".into(), // 4
                version: "v1".into(),       // 2
            }),
            requests: vec![
                RequestEvent {
                    time_unix_nano: 1_700_000_000_000_000_000,
                    operation: "GET /".into(), // 5
                    trace_id: "abc".into(),    // 3
                    attributes: vec![Attribute {
                        key: "k".into(),    // 1
                        value: "vv".into(), // 2
                    }],
                    ..Default::default()
                };
                10
            ],
            incidents: vec![IncidentEvent {
                id: "i-1".into(),
                opened_at_unix_nano: 1_700_000_000_000_000_000,
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut b = PartitionBuffer::new(0);
        b.add(&batch, 5);
        // Per request: 96 fixed + 13 resource + 5 + 3 + (1 + 2 + 8) attribute = 128.
        // The incident: 4 × 96 + 13 = 397.
        assert_eq!(b.bytes(), 10 * 128 + 397);
        assert_eq!(b.events(), 11);
        b.take().unwrap();
        assert_eq!(b.bytes(), 0, "a flush starts again");
    }

    #[test]
    fn a_gate_decision_is_one_row_with_its_resource_filled_in() {
        use arrow::array::{AsArray, ListArray};
        use nines_proto::v1::GateDecisionEvent;
        let day = 20_402_i64; // 2025-11-10
        let t = day * 86_400 * 1_000_000_000 + 3_600_000_000_000;
        let batch = EventBatch {
            resource: Some(Resource {
                tenant: "t".into(),
                service: "checkout".into(),
                environment: "prod".into(),
                version: String::new(),
            }),
            gate_decisions: vec![
                GateDecisionEvent {
                    time_unix_nano: t,
                    evaluated_at_unix_nano: t - 86_400_000_000_000,
                    allowed: true,
                    labels: vec!["hotfix".into()],
                    reasons: vec!["budget exhausted".into(), "page alert".into()],
                    override_label: "hotfix".into(),
                    requester: "ci".into(),
                    version: "v3".into(),
                    ..Default::default()
                },
                GateDecisionEvent {
                    time_unix_nano: t + 1_000,
                    service: "search".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let mut b = PartitionBuffer::new(2);
        b.add(&batch, 9);
        assert_eq!(b.events(), 2);
        let flush = b.take().unwrap().unwrap();
        let [g] = flush.batches.as_slice() else {
            panic!("one batch: {:?}", flush.batches.len());
        };
        assert_eq!((g.table, g.day), (GATE_DECISIONS, day));
        let r = &g.batch;
        assert_eq!(r.schema(), schema::gate_decisions());
        let strings = |c: &str| -> Vec<Option<String>> {
            r.column_by_name(c)
                .unwrap()
                .as_string::<i32>()
                .iter()
                .map(|v| v.map(str::to_owned))
                .collect()
        };
        let some = |a: &str, b: &str| vec![Some(a.to_owned()), Some(b.to_owned())];
        assert_eq!(strings("service"), some("checkout", "search"));
        assert_eq!(strings("environment"), some("prod", "prod"));
        assert_eq!(strings("version"), vec![Some("v3".into()), None]);
        assert_eq!(strings("decision"), some("allow", "deny"));
        assert_eq!(strings("override_label"), vec![Some("hotfix".into()), None]);
        let times = |c: &str| -> Vec<i64> {
            r.column_by_name(c)
                .unwrap()
                .as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
                .values()
                .to_vec()
        };
        assert_eq!(times("time"), [t / 1_000, t / 1_000 + 1]);
        // Unset, the instant evaluated is the decision's own.
        assert_eq!(
            times("evaluated_at"),
            [(t - 86_400_000_000_000) / 1_000, t / 1_000 + 1]
        );
        let reasons = r
            .column_by_name("reasons")
            .unwrap()
            .as_any()
            .downcast_ref::<ListArray>()
            .unwrap();
        assert_eq!(reasons.value_length(0), 2);
        assert_eq!(reasons.value_length(1), 0);
        assert_eq!(reasons.value(0).as_string::<i32>().value(1), "page alert");
    }

    #[test]
    fn rollups_of_many_resources_each_get_their_own_rows() {
        // 3,000 services, each in 2 environments: 6,000 resources, each pushed twice.
        let minute = 1_700_000_040_000_000_000_i64;
        let mut b = PartitionBuffer::new(0);
        let mut offset = 0;
        for round in 0..2 {
            for s in 0..3_000 {
                for env in ["prod", "staging"] {
                    let batch = EventBatch {
                        resource: Some(Resource {
                            tenant: "t".into(),
                            service: format!("svc-{s}"),
                            environment: env.into(),
                            version: String::new(),
                        }),
                        requests: vec![
                            RequestEvent {
                                time_unix_nano: minute + 1,
                                operation: "GET /".into(),
                                error: round == 1,
                                ..Default::default()
                            };
                            s % 3 + 1
                        ],
                        ..Default::default()
                    };
                    b.add(&batch, offset);
                    offset += 1;
                }
            }
        }
        let flush = b.take().unwrap().unwrap();
        let sli = flush
            .batches
            .iter()
            .find(|t| t.table == nines_model::schema::SLI_1M)
            .expect("an sli_1m batch");
        assert_eq!(
            sli.batch.num_rows(),
            6_000,
            "one row per resource and minute"
        );
        let service = sli.batch.column_by_name("service").unwrap();
        let service = arrow::array::AsArray::as_string::<i32>(service);
        let total = sli.batch.column_by_name("total").unwrap();
        let total = arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(total);
        let errors = sli.batch.column_by_name("errors").unwrap();
        let errors = arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(errors);
        for row in 0..sli.batch.num_rows() {
            let s: usize = service.value(row)["svc-".len()..].parse().unwrap();
            // Two pushes of s % 3 + 1 events each; the second all errors.
            assert_eq!(total.value(row) as usize, 2 * (s % 3 + 1), "svc-{s}");
            assert_eq!(errors.value(row) as usize, s % 3 + 1, "svc-{s}");
        }
    }
}
