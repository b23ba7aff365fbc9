//! One Delta table: open or create it, commit a flush's files with the partition's `txn`,
//! read a partition's committed version. Everything nines asks of delta-rs is here.

use std::collections::HashMap;

use arrow::datatypes::{DataType, Schema, TimeUnit};
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel as _;
use deltalake::kernel::transaction::{
    CommitBuilder, CommitData, CommitProperties, TransactionError,
};
use deltalake::kernel::{Action, Add, StructField, StructType, Transaction, Version};
use deltalake::logstore::{CommitOrBytes, LogStoreRef};
use deltalake::protocol::{DeltaOperation, OutputMode, SaveMode};
use deltalake::table::state::DeltaTableState;
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError, TableProperty};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::statistics::Statistics;
use serde_json::{Map, Value, json};
use url::Url;

use crate::{Error, Result};

/// Attempts at an append when other writers take the version it aimed at (delta-rs's
/// default number of retries, plus the first attempt).
const COMMIT_ATTEMPTS: usize = 16;

/// Longest string kept in file statistics. Delta readers compare a truncated max as if it
/// were the max, so longer values are left out of min/max rather than truncated.
const MAX_STAT_STRING: usize = 32;

/// A Delta table nines writes: its log store, the last state it read, and the version it
/// last read or committed.
pub(crate) struct Table {
    pub(crate) name: &'static str,
    pub(crate) log_store: LogStoreRef,
    /// The table as of the last [`Table::refresh`] (or exclusive commit): its file list
    /// included. Appends do not move it (see [`Table::commit`]): whoever reads files
    /// refreshes first.
    pub(crate) state: DeltaTableState,
    /// The newest version this writer knows: `state`'s, or a later one of its own appends.
    /// Every commit between the two is this writer's own, so `txns` holds their `txn`s.
    version: Version,
    /// `txn` versions as of `version`, by app id, as far as they were read or committed here.
    /// delta-rs finds one by replaying the log since the last checkpoint (up to 100 commit
    /// files, each parsed); a flush asks for its partition's in every table, so without this
    /// the aggregator spent its time re-reading its own commits. Cleared whenever a refresh
    /// takes in commits other than this table's own.
    txns: HashMap<String, Option<i64>>,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("name", &self.name)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// Why a commit did not happen.
#[derive(Debug)]
pub(crate) enum CommitFailure {
    /// Another writer moved the partition's `txn` since this one read it.
    Fenced {
        /// The partition's app id (`<topic>-<partition>`) whose version moved.
        app_id: String,
        stored: Option<i64>,
    },
    Other(Error),
}

impl From<Error> for CommitFailure {
    fn from(e: Error) -> Self {
        Self::Other(e)
    }
}

pub(crate) fn delta_error(table: &str, op: &'static str, source: DeltaTableError) -> Error {
    Error::Delta {
        table: table.to_owned(),
        op,
        source: Box::new(source),
    }
}

impl Table {
    /// Opens the table at `url`, creating it with `schema` (plus the `date` partition column,
    /// a string) if it does not exist yet. Concurrent creators agree: one wins version 0 and
    /// the others load it.
    pub(crate) async fn open_or_create(
        name: &'static str,
        url: Url,
        schema: &Schema,
        partition_columns: &[&str],
        storage_options: &HashMap<String, String>,
    ) -> Result<Self> {
        let err = |op| move |e| delta_error(name, op, e);
        let builder = || {
            DeltaTableBuilder::from_url(url.clone())
                .map(|b| b.with_storage_options(storage_options.clone()))
                .and_then(|b| b.build())
        };
        let mut table = builder().map_err(err("opening"))?;
        // Asked first: loading a table that does not exist yet logs an ERROR in delta-rs.
        let exists = table
            .log_store()
            .is_delta_table_location()
            .await
            .map_err(err("opening"))?;
        let loaded = if exists {
            table.load().await
        } else {
            Err(DeltaTableError::NotATable(name.to_owned()))
        };
        match loaded {
            Ok(()) => {}
            Err(DeltaTableError::NotATable(_)) => {
                let kernel: StructType = schema
                    .try_into_kernel()
                    .map_err(|e| err("converting the schema of")(DeltaTableError::from(e)))?;
                let created = table
                    .create()
                    .with_table_name(name)
                    .with_columns(kernel.fields().cloned())
                    .with_partition_columns(partition_columns.iter().copied())
                    .with_save_mode(SaveMode::Ignore)
                    // Cleanup lists the whole log after each commit; retention does it instead.
                    .with_configuration_property(
                        TableProperty::EnableExpiredLogCleanup,
                        Some("false"),
                    )
                    .with_configuration_property(TableProperty::CheckpointInterval, Some("100"))
                    .await;
                table = match created {
                    Ok(t) => t,
                    // Another role created it first.
                    Err(DeltaTableError::VersionAlreadyExists(_)) => {
                        let mut t = builder().map_err(err("opening"))?;
                        t.load().await.map_err(err("loading"))?;
                        t
                    }
                    Err(e) => return Err(err("creating")(e)),
                };
            }
            Err(e) => return Err(err("loading")(e)),
        }
        let table = add_missing_columns(name, table, schema, builder).await?;
        let state = table.snapshot().map_err(err("loading"))?.clone();
        Ok(Self {
            name,
            log_store: table.log_store(),
            version: state.version(),
            state,
            txns: HashMap::new(),
        })
    }

    /// The newest version this writer has read or committed.
    pub(crate) fn version(&self) -> Version {
        self.version
    }

    /// Reads the commits made since the last read, this writer's own appends included.
    pub(crate) async fn refresh(&mut self) -> Result<()> {
        let updated = self
            .state
            .update(self.log_store.as_ref(), None)
            .await
            .map_err(|e| delta_error(self.name, "refreshing", e));
        if updated.is_err() || self.state.version() != self.version {
            // Commits by other writers (or none known): what was cached may be stale.
            self.txns.clear();
        }
        self.version = self.version.max(self.state.version());
        updated
    }

    /// The `txn` version of `app_id` in the state this table holds.
    pub(crate) async fn txn_version(&mut self, app_id: &str) -> Result<Option<i64>> {
        if let Some(v) = self.txns.get(app_id) {
            return Ok(*v);
        }
        let v = self
            .state
            .transaction_version(self.log_store.as_ref(), app_id)
            .await
            .map_err(|e| delta_error(self.name, "reading the txn of", e))?;
        self.txns.insert(app_id.to_owned(), v);
        Ok(v)
    }

    /// Commits `adds`, a blind append. Each `(app_id, expected, version)` of `txns` puts
    /// `txn(app_id, version)` in the commit, which happens only if every such partition's
    /// stored version is still its `expected` (fencing: a writer expelled from the group
    /// cannot commit over the owner). Several partitions in one commit are one atomic step of
    /// each: all of them move, or none.
    ///
    /// delta-rs's `CommitData` makes the log entry and its log store writes it (put if
    /// absent), at the version after the newest this writer knows. delta-rs's own commit
    /// path would then bring the table's whole file list up to the new version (a replay
    /// that grows with every file left until compaction: a third of a flush round, delta-rs
    /// issue 4584); an append needs none of it, so `state` stays where it was. If another
    /// writer took that version, this one refreshes and checks what delta-rs's conflict
    /// checker would for a blind append: a `txn` of one of these app ids fences it, a
    /// protocol or metadata change fails it, anything else (compaction, retention, other
    /// partitions) is committed past. Every `checkpointInterval` versions a checkpoint is
    /// written in the background, as delta-rs's post-commit hook would. Both of nines'
    /// stores (local, S3) use delta-rs's default log store, which puts the entry if absent.
    pub(crate) async fn commit(
        &mut self,
        adds: Vec<Add>,
        txns: &[(&str, Option<i64>, i64)],
    ) -> Result<(), CommitFailure> {
        self.check_expected(txns).await?;
        let now_ms = nines_model::clock::now_ms();
        let transactions = txns
            .iter()
            .map(|&(app_id, _, version)| {
                Transaction::new_with_last_update(app_id, version, Some(now_ms))
            })
            .collect();
        // The streaming operation names one query: the app ids, joined, and the highest
        // offset among them (commit info only; the `txn` actions are what fences).
        let query_id = match txns {
            [] => "nines".to_owned(),
            _ => txns.iter().map(|t| t.0).collect::<Vec<_>>().join(","),
        };
        let epoch = txns.iter().map(|t| t.2).max().unwrap_or(0);
        let actions = adds.into_iter().map(Action::Add).collect();
        let operation = DeltaOperation::StreamingUpdate {
            output_mode: OutputMode::Append,
            query_id,
            epoch_id: epoch,
        };
        // A blind append: compaction and retention, which read no file of it, never
        // conflict with it.
        let blind = HashMap::from([("isBlindAppend".to_owned(), json!(true))]);
        let data = CommitData::new(actions, operation, blind, transactions);
        let other =
            |e: DeltaTableError| CommitFailure::Other(delta_error(self.name, "committing to", e));
        let operation_id = uuid::Uuid::new_v4();
        let (protocol, metadata) = (self.state.protocol().clone(), self.state.metadata().clone());
        let bytes = data.get_bytes().map_err(|e| other(e.into()))?;
        for _ in 0..COMMIT_ATTEMPTS {
            let version = self.version + 1;
            let entry = CommitOrBytes::LogBytes(bytes.clone());
            match self
                .log_store
                .write_commit_entry(version, entry, operation_id)
                .await
            {
                Ok(()) => {
                    self.version = version;
                    for &(app_id, _, v) in txns {
                        self.txns.insert(app_id.to_owned(), Some(v));
                    }
                    self.checkpoint_if_due(version);
                    return Ok(());
                }
                Err(TransactionError::VersionAlreadyExists(_)) => {
                    self.refresh().await?;
                    self.check_expected(txns).await?;
                    if self.state.protocol() != &protocol || self.state.metadata() != &metadata {
                        return Err(other(DeltaTableError::Generic(
                            "another writer changed the table's protocol or metadata during \
                             this commit; the next one starts from the new table"
                                .into(),
                        )));
                    }
                }
                Err(e) => return Err(other(e.into())),
            }
        }
        Err(other(DeltaTableError::Generic(format!(
            "the table moved under {COMMIT_ATTEMPTS} attempts to commit"
        ))))
    }

    /// `Fenced` for the first of `txns` whose stored version is not the one expected.
    async fn check_expected(
        &mut self,
        txns: &[(&str, Option<i64>, i64)],
    ) -> Result<(), CommitFailure> {
        for &(app_id, expected, _) in txns {
            let stored = self.txn_version(app_id).await?;
            if stored != expected {
                return Err(CommitFailure::Fenced {
                    app_id: app_id.to_owned(),
                    stored,
                });
            }
        }
        Ok(())
    }

    /// After an append at `version`: every `checkpointInterval` versions (100 on nines'
    /// tables), a checkpoint of it, written by delta-rs in a task of its own so the flush
    /// round does not wait (the checkpoint loads the table's file list). A failed checkpoint
    /// loses nothing: readers replay more commit files until the next one.
    fn checkpoint_if_due(&self, version: Version) {
        let interval = self
            .state
            .table_config()
            .checkpoint_interval
            .map_or(100, |n| n.get());
        if !(version + 1).is_multiple_of(interval) {
            return;
        }
        let log_store = self.log_store.clone();
        let name = self.name;
        tokio::spawn(async move {
            let mut table = DeltaTable::new(log_store);
            let written = match table.load_version(version).await {
                Ok(()) => deltalake::checkpoints::create_checkpoint(&table, None).await,
                Err(e) => Err(e),
            };
            match written {
                Ok(()) => tracing::debug!(table = name, version, "checkpoint written"),
                Err(e) => {
                    tracing::warn!(table = name, version, error = %e, "checkpoint failed; the next one is due in another interval")
                }
            }
        });
    }

    /// Commits `actions` on the snapshot held, without delta-rs's conflict resolution: if
    /// any commit landed since, returns `Ok(false)` and commits nothing (the caller
    /// refreshes and decides again). For rewrites (compaction, retention): delta-rs lets
    /// two compactions that remove the same files (`dataChange = false`) both commit, which
    /// would count the rows twice.
    pub(crate) async fn commit_operation_exclusive(
        &mut self,
        actions: Vec<Action>,
        operation: DeltaOperation,
    ) -> Result<bool> {
        let properties = CommitProperties::default()
            .with_create_checkpoint(true)
            .with_cleanup_expired_logs(Some(false))
            .with_max_retries(0);
        match self
            .commit_with(actions, operation, properties, HashMap::new())
            .await
        {
            Ok(()) => Ok(true),
            Err(
                DeltaTableError::Transaction {
                    source: TransactionError::MaxCommitAttempts(_),
                }
                | DeltaTableError::VersionAlreadyExists(_),
            ) => Ok(false),
            Err(e) => Err(delta_error(self.name, "committing to", e)),
        }
    }

    async fn commit_with(
        &mut self,
        actions: Vec<Action>,
        operation: DeltaOperation,
        properties: CommitProperties,
        app_metadata: HashMap<String, Value>,
    ) -> std::result::Result<(), DeltaTableError> {
        let before = self.version;
        let done = CommitBuilder::from(properties)
            .with_actions(actions)
            .with_app_metadata(app_metadata)
            .build(Some(&self.state), self.log_store.clone(), operation)
            .await?;
        self.state = done.snapshot();
        if self.state.version() != before + 1 {
            // Other writers' commits came in with ours (delta-rs rebased it past them).
            self.txns.clear();
        }
        self.version = self.state.version();
        Ok(())
    }
}

/// A table created by an older nines lacks the columns added since (the schema only ever
/// adds, nullable): one Delta schema change adds them, and its older files read them as
/// null. Roles opening the store together may race: the loser reloads and finds them.
async fn add_missing_columns(
    name: &'static str,
    table: DeltaTable,
    schema: &Schema,
    reload: impl Fn() -> std::result::Result<DeltaTable, DeltaTableError>,
) -> Result<DeltaTable> {
    let err = |op| move |e| delta_error(name, op, e);
    let wanted: StructType = schema
        .try_into_kernel()
        .map_err(|e| err("converting the schema of")(DeltaTableError::from(e)))?;
    let missing = |t: &DeltaTable| -> Result<Vec<StructField>> {
        let have = t.snapshot().map_err(err("loading"))?.schema();
        Ok(wanted
            .fields()
            .filter(|f| have.field(f.name()).is_none())
            .cloned()
            .collect())
    };
    let fields = missing(&table)?;
    if fields.is_empty() {
        return Ok(table);
    }
    if let Some(f) = fields.iter().find(|f| !f.is_nullable()) {
        return Err(err("opening")(DeltaTableError::Generic(format!(
            "column {} is missing and cannot be added to existing data (not nullable)",
            f.name()
        ))));
    }
    let names: Vec<String> = fields.iter().map(|f| f.name().clone()).collect();
    match table.add_columns().with_fields(fields).await {
        Ok(t) => {
            tracing::info!(table = name, columns = ?names, "added columns to an older table");
            Ok(t)
        }
        Err(e) => {
            let mut t = reload().map_err(err("opening"))?;
            t.load().await.map_err(err("loading"))?;
            if missing(&t)?.is_empty() {
                Ok(t)
            } else {
                Err(err("adding columns to")(e))
            }
        }
    }
}

/// The Delta `add` action of a data file: its path relative to the table root (not
/// percent-encoded), partition values, size and statistics (of its columns in `schema`,
/// from its footer).
pub(crate) fn add_action(
    path: &str,
    partition_values: &[(&str, String)],
    size: usize,
    schema: &Schema,
    metadata: &ParquetMetaData,
) -> Add {
    let now_ms = nines_model::clock::now_ms();
    Add {
        path: path.to_owned(),
        partition_values: partition_values
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Some(v.clone())))
            .collect(),
        size: size as i64,
        modification_time: now_ms,
        data_change: true,
        stats: Some(stats_of(schema, metadata).to_string()),
        ..Default::default()
    }
}

/// Delta file statistics of a Parquet file nines wrote, read from the footer its writer
/// wrote (the column chunks' statistics, which the writer computes as it encodes; working
/// them out again from the batches was ~8 % of the aggregator's profile): `numRecords`, and
/// for every top-level column of a type readers skip files by (integers, strings,
/// timestamps) its min, max and null count. Timestamps are written in milliseconds, as the
/// protocol says, the max rounded up so it still bounds the microsecond values. A column
/// keeps bounds only when every row group gives exact ones (or holds only nulls), and a
/// string only when both bounds are at most [`MAX_STAT_STRING`] characters.
pub(crate) fn stats_of(schema: &Schema, metadata: &ParquetMetaData) -> Value {
    let leaves = metadata.file_metadata().schema_descr();
    let mut min = Map::new();
    let mut max = Map::new();
    let mut nulls = Map::new();
    for field in schema.fields() {
        let name = field.name();
        // Bounds for these, timestamps among them written in milliseconds; null counts only
        // for booleans and bytes.
        let millis = match field.data_type() {
            DataType::Int32 | DataType::Int64 | DataType::Utf8 => Some(false),
            DataType::Timestamp(TimeUnit::Microsecond, _) => Some(true),
            DataType::Boolean | DataType::Binary => None,
            // Nested columns: no statistics at all (readers do not skip by them).
            _ => continue,
        };
        let Some(leaf) = (0..leaves.num_columns())
            .find(|&i| leaves.column(i).path().parts() == std::slice::from_ref(name))
        else {
            continue;
        };
        let mut null_count = Some(0u64);
        let mut trusted = millis.is_some();
        let mut bounds: Option<(Bound, Bound)> = None;
        for rg in metadata.row_groups() {
            let stats = rg.column(leaf).statistics();
            null_count = null_count
                .zip(stats.and_then(Statistics::null_count_opt))
                .map(|(a, b)| a + b);
            if !trusted {
                continue;
            }
            match chunk_bounds(stats, rg.num_rows()) {
                None => trusted = false,
                Some(None) => {}
                Some(Some((lo, hi))) => {
                    bounds = Some(match bounds {
                        None => (lo, hi),
                        Some((a, b)) => (a.min(lo), b.max(hi)),
                    })
                }
            }
        }
        if let (true, Some(millis), Some((lo, hi))) = (trusted, millis, bounds) {
            let json_of = |b: Bound, up: bool| match b {
                Bound::Int(us) if millis && up => json!(millis_text(ceil_div(us, 1000))),
                Bound::Int(us) if millis => json!(millis_text(us.div_euclid(1000))),
                Bound::Int(v) => json!(v),
                Bound::Text(t) => json!(t),
            };
            min.insert(name.clone(), json_of(lo, false));
            max.insert(name.clone(), json_of(hi, true));
        }
        if let Some(n) = null_count {
            nulls.insert(name.clone(), json!(n));
        }
    }
    json!({
        "numRecords": metadata.file_metadata().num_rows(),
        "minValues": min,
        "maxValues": max,
        "nullCount": nulls,
    })
}

/// A bound of a column in file statistics: an integer (timestamps in microseconds) or a
/// string (ordered as bytes, as Parquet orders them).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Bound {
    Int(i64),
    Text(String),
}

/// One column chunk's bounds: `Some(Some((min, max)))`, `Some(None)` when it holds only
/// nulls, `None` when it gives none to trust (no statistics, a string the writer truncated
/// or longer than [`MAX_STAT_STRING`] characters).
fn chunk_bounds(stats: Option<&Statistics>, rows: i64) -> Option<Option<(Bound, Bound)>> {
    let stats = stats?;
    let pair = match stats {
        Statistics::Int32(s) => s
            .min_opt()
            .zip(s.max_opt())
            .map(|(lo, hi)| (Bound::Int(i64::from(*lo)), Bound::Int(i64::from(*hi)))),
        Statistics::Int64(s) => s
            .min_opt()
            .zip(s.max_opt())
            .map(|(lo, hi)| (Bound::Int(*lo), Bound::Int(*hi))),
        Statistics::ByteArray(s) => {
            let text = |b: &parquet::data_type::ByteArray| {
                b.as_utf8()
                    .ok()
                    .filter(|t| t.chars().count() <= MAX_STAT_STRING)
                    .map(|t| Bound::Text(t.to_owned()))
            };
            match s.min_opt().zip(s.max_opt()) {
                Some((lo, hi)) if s.min_is_exact() && s.max_is_exact() => {
                    Some((text(lo)?, text(hi)?))
                }
                Some(_) => return None,
                None => None,
            }
        }
        _ => return None,
    };
    match pair {
        Some(pair) => Some(Some(pair)),
        None if stats.null_count_opt() == u64::try_from(rows).ok() => Some(None),
        None => None,
    }
}

fn ceil_div(v: i64, d: i64) -> i64 {
    -((-v).div_euclid(d))
}

/// Milliseconds since the epoch as Delta writes timestamps in statistics.
fn millis_text(ms: i64) -> String {
    arrow::temporal_conversions::timestamp_ms_to_datetime(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::Field;
    use arrow::record_batch::RecordBatch;

    use super::*;

    fn fields(schema: &Schema) -> Vec<Field> {
        schema.fields().iter().map(|f| f.as_ref().clone()).collect()
    }

    /// A table of one string column and the `date` partition column.
    fn a_and_date() -> Schema {
        Schema::new(vec![
            Field::new("a", DataType::Utf8, false),
            Field::new("date", DataType::Utf8, false),
        ])
    }

    async fn open(dir: &std::path::Path, schema: &Schema) -> Result<Table> {
        let url = Url::from_directory_path(dir).expect("an absolute path");
        Table::open_or_create("t", url, schema, &["date"], &HashMap::new()).await
    }

    #[tokio::test]
    async fn a_table_of_an_older_schema_gains_the_new_nullable_columns() {
        let dir = tempfile::tempdir().unwrap();
        let old = a_and_date();
        let t = open(dir.path(), &old).await.unwrap();
        assert_eq!(t.state.schema().fields().count(), 2);
        let mut new = fields(&old);
        new.push(Field::new("version", DataType::Utf8, true));
        let t = open(dir.path(), &Schema::new(new.clone())).await.unwrap();
        let names: Vec<String> = t
            .state
            .schema()
            .fields()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names, ["a", "date", "version"]);
        // Opening again changes nothing (no second schema commit).
        let version = t.state.version();
        let t = open(dir.path(), &Schema::new(new.clone())).await.unwrap();
        assert_eq!(t.state.version(), version);
        // A column that older files cannot have a value for is refused by name.
        new.push(Field::new("required", DataType::Int64, false));
        let e = open(dir.path(), &Schema::new(new)).await.err().unwrap();
        assert!(e.to_string().contains("column required is missing"), "{e}");
    }

    /// The `txn` cache never answers for a state it was not read from: a writer that
    /// missed another's commit is still fenced, and learns the new version.
    #[tokio::test]
    async fn txn_versions_follow_the_commits_of_every_writer() {
        let dir = tempfile::tempdir().unwrap();
        let schema = a_and_date();
        let mut a = open(dir.path(), &schema).await.unwrap();
        a.commit(vec![], &[("events-0", None, 5)]).await.unwrap();
        assert_eq!(a.txn_version("events-0").await.unwrap(), Some(5));
        assert_eq!(a.txn_version("events-1").await.unwrap(), None);

        // Another writer takes the partition over and commits twice.
        let mut b = open(dir.path(), &schema).await.unwrap();
        assert_eq!(b.txn_version("events-0").await.unwrap(), Some(5));
        b.commit(vec![], &[("events-0", Some(5), 9)]).await.unwrap();
        b.commit(vec![], &[("events-1", None, 3)]).await.unwrap();

        // `a` still holds its old state (and its cached 5): its commit is refused, and
        // the refusal carries what `b` wrote.
        match a.commit(vec![], &[("events-0", Some(5), 7)]).await {
            Err(CommitFailure::Fenced { app_id, stored }) => {
                assert_eq!((app_id.as_str(), stored), ("events-0", Some(9)));
            }
            other => panic!("expected a fenced commit, got {other:?}"),
        }
        assert_eq!(a.txn_version("events-1").await.unwrap(), Some(3));

        // A refresh that brings in other writers' commits forgets what was cached.
        b.commit(vec![], &[("events-0", Some(9), 12)])
            .await
            .unwrap();
        assert_eq!(a.txn_version("events-0").await.unwrap(), Some(9));
        a.refresh().await.unwrap();
        assert_eq!(a.txn_version("events-0").await.unwrap(), Some(12));
        a.commit(vec![], &[("events-0", Some(12), 15)])
            .await
            .unwrap();
        assert_eq!(a.txn_version("events-0").await.unwrap(), Some(15));
        b.refresh().await.unwrap();
        assert_eq!(b.txn_version("events-0").await.unwrap(), Some(15));
    }

    /// Appends go past other writers' commits that do not touch their partitions, and stop
    /// at a change of the table's metadata; each is read back by a fresh delta-rs load.
    #[tokio::test]
    async fn appends_commit_past_other_writers_and_stop_at_a_metadata_change() {
        let dir = tempfile::tempdir().unwrap();
        let schema = a_and_date();
        let mut a = open(dir.path(), &schema).await.unwrap();
        let mut b = open(dir.path(), &schema).await.unwrap();
        a.commit(vec![], &[("events-0", None, 4)]).await.unwrap();
        b.commit(vec![], &[("events-1", None, 8)]).await.unwrap();
        // `a` aims at version 2, which `b` took: it commits at 3.
        a.commit(vec![], &[("events-0", Some(4), 6)]).await.unwrap();
        assert_eq!((a.version(), b.version()), (3, 2));

        // A third writer opening with a new column changes the metadata (version 4).
        let mut wider = fields(&schema);
        wider.push(Field::new("version", DataType::Utf8, true));
        let c = open(dir.path(), &Schema::new(wider)).await.unwrap();
        assert_eq!(c.version(), 4);
        match a.commit(vec![], &[("events-0", Some(6), 9)]).await {
            Err(CommitFailure::Other(e)) => {
                assert!(e.to_string().contains("protocol or metadata"), "{e}");
            }
            other => panic!("expected a refused commit, got {other:?}"),
        }
        // The refusal read the new table: the next append goes through.
        a.commit(vec![], &[("events-0", Some(6), 9)]).await.unwrap();
        assert_eq!(a.version(), 5);

        let mut fresh = DeltaTable::new(a.log_store.clone());
        fresh.load().await.unwrap();
        let state = fresh.snapshot().unwrap();
        assert_eq!(state.version(), 5);
        let store = a.log_store.as_ref();
        assert_eq!(
            state.transaction_version(store, "events-0").await.unwrap(),
            Some(9)
        );
        assert_eq!(
            state.transaction_version(store, "events-1").await.unwrap(),
            Some(8)
        );
    }

    /// Appends leave the file list alone (no replay per commit), and a checkpoint is written
    /// every 100 versions all the same, which a fresh load of the table starts from.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn appends_write_a_checkpoint_every_hundred_versions() {
        let dir = tempfile::tempdir().unwrap();
        let schema = a_and_date();
        let mut t = open(dir.path(), &schema).await.unwrap();
        let mut expected = None;
        for v in 1..=120 {
            let add = Add {
                path: format!("date=2026-12-05/f-{v}.parquet"),
                partition_values: [("date".to_owned(), Some("2026-12-05".to_owned()))].into(),
                size: 100,
                modification_time: 0,
                data_change: true,
                ..Default::default()
            };
            t.commit(vec![add], &[("events-0", expected, v * 10)])
                .await
                .unwrap();
            expected = Some(v * 10);
        }
        assert_eq!(t.version(), 120);
        assert_eq!(t.state.version(), 0, "appends do not move the file list");

        let log = dir.path().join("_delta_log");
        let checkpoint = log.join(format!("{:020}.checkpoint.parquet", 99));
        // delta-rs writes the checkpoint, then `_last_checkpoint`, each whole (object_store
        // renames a staged file into place); the test waits for the second.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !(checkpoint.exists() && log.join("_last_checkpoint").exists()) {
            assert!(
                std::time::Instant::now() < deadline,
                "no checkpoint at version 99"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let last: Value =
            serde_json::from_slice(&std::fs::read(log.join("_last_checkpoint")).unwrap()).unwrap();
        assert_eq!(last["version"], 99);
        // Only the one: 199 is not reached.
        let checkpoints = std::fs::read_dir(&log)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains(".checkpoint.")
            })
            .count();
        assert_eq!(checkpoints, 1);

        // A fresh load (from the checkpoint, then 21 commit files) sees every file and txn.
        let mut fresh = DeltaTable::new(t.log_store.clone());
        fresh.load().await.unwrap();
        let state = fresh.snapshot().unwrap();
        assert_eq!(state.version(), 120);
        assert_eq!(state.log_data().into_iter().count(), 120);
        assert_eq!(
            state
                .transaction_version(t.log_store.as_ref(), "events-0")
                .await
                .unwrap(),
            Some(1200)
        );
        // A refresh brings the writer's own file list up to date in one step.
        t.refresh().await.unwrap();
        assert_eq!(t.state.version(), 120);
        assert_eq!(t.state.log_data().into_iter().count(), 120);
        assert_eq!(t.txn_version("events-0").await.unwrap(), Some(1200));
    }

    /// The statistics of `parts` written as one file by the store's Parquet writer (a table
    /// without a sort key: the rows stay in their order), read from its footer.
    fn file_stats(parts: &[&RecordBatch]) -> Value {
        stats_of(&parts[0].schema(), &encode_file(parts).metadata)
    }

    /// `parts` written as one file of table `t` by the store's Parquet writer.
    fn encode_file(parts: &[&RecordBatch]) -> crate::writer::Encoded {
        crate::writer::encode_parts(parts, &crate::writer::Provenance::of_test("t")).unwrap()
    }

    #[test]
    fn statistics_bound_every_value() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("service", DataType::Utf8, false),
            Field::new("note", DataType::Utf8, true),
            Field::new("n", DataType::Int64, false),
            Field::new(
                "time",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
        ]));
        let long = "x".repeat(40);
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["cart", "auth", "checkout"])),
                Arc::new(StringArray::from(vec![
                    Some(long.as_str()),
                    None,
                    Some("a"),
                ])),
                Arc::new(Int64Array::from(vec![5, -3, 9])),
                // 2026-11-26T00:00:10.000001Z, .000999Z and 10.001000Z.
                Arc::new(
                    TimestampMicrosecondArray::from(vec![
                        1_795_651_210_000_001,
                        1_795_651_210_000_999,
                        1_795_651_210_001_000,
                    ])
                    .with_timezone("UTC"),
                ),
            ],
        )
        .unwrap();
        let s = file_stats(&[&batch]);
        assert_eq!(s["numRecords"], 3);
        assert_eq!(s["minValues"]["service"], "auth");
        assert_eq!(s["maxValues"]["service"], "checkout");
        assert_eq!(s["minValues"]["n"], -3);
        assert_eq!(s["maxValues"]["n"], 9);
        // Floored and rounded up to whole milliseconds.
        assert_eq!(s["minValues"]["time"], "2026-11-26T00:00:10.000Z");
        assert_eq!(s["maxValues"]["time"], "2026-11-26T00:00:10.001Z");
        // A value too long to keep whole: no min/max, but its null count.
        assert!(s["minValues"].get("note").is_none());
        assert_eq!(s["nullCount"]["note"], 1);

        // A file of two batches (partitions flushed together): bounds over both.
        let other = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["api", "billing"])),
                Arc::new(StringArray::from(vec![None, Some("b")])),
                Arc::new(Int64Array::from(vec![12, 0])),
                // 2026-11-26T00:00:09.5Z and 00:00:10.0005Z.
                Arc::new(
                    TimestampMicrosecondArray::from(vec![
                        1_795_651_209_500_000,
                        1_795_651_210_000_500,
                    ])
                    .with_timezone("UTC"),
                ),
            ],
        )
        .unwrap();
        let both = file_stats(&[&batch, &other]);
        assert_eq!(both["numRecords"], 5);
        assert_eq!(both["minValues"]["service"], "api");
        assert_eq!(both["maxValues"]["service"], "checkout");
        assert_eq!(both["minValues"]["n"], -3);
        assert_eq!(both["maxValues"]["n"], 12);
        assert_eq!(both["minValues"]["time"], "2026-11-26T00:00:09.500Z");
        assert_eq!(both["maxValues"]["time"], "2026-11-26T00:00:10.001Z");
        // The long value is still the file's max: no bounds; null counts add up.
        assert!(both["minValues"].get("note").is_none());
        assert!(both["maxValues"].get("note").is_none());
        assert_eq!(both["nullCount"]["note"], 2);
        assert_eq!(both["nullCount"]["service"], 0);
        // In the other order, the same.
        assert_eq!(file_stats(&[&other, &batch]), both);
    }

    #[test]
    fn statistics_over_row_groups_skip_only_what_cannot_be_trusted() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("note", DataType::Utf8, true),
            Field::new("wide", DataType::Utf8, true),
            Field::new("n", DataType::Int64, false),
        ]));
        let part = |note: Vec<Option<String>>, wide: Vec<Option<&str>>, n: Vec<i64>| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from(note)),
                    Arc::new(StringArray::from(wide)),
                    Arc::new(Int64Array::from(n)),
                ],
            )
            .unwrap()
        };
        // A full row group whose `note` is all null and whose `n` counts up from 0, and a
        // small one (its own row group) with a long `note` between two short ones and a
        // `wide` of 22 characters in 66 bytes, which the writer truncates to 64.
        let rows = crate::writer::ROW_GROUP_ROWS;
        let first = part(
            vec![None; rows],
            vec![Some("a"); rows],
            (0..rows as i64).collect(),
        );
        let wide = "€".repeat(22);
        let second = part(
            vec![
                Some("b".into()),
                Some("m".repeat(40)),
                Some("z".into()),
                None,
            ],
            vec![Some("a"), Some(&wide), None, None],
            vec![-5, 7, 3, 1],
        );
        let encoded = encode_file(&[&first, &second]);
        assert_eq!(encoded.metadata.num_row_groups(), 2, "a row group per part");
        let s = stats_of(&schema, &encoded.metadata);
        assert_eq!(s["numRecords"], rows + 4);
        // Bounds over both row groups.
        assert_eq!(s["minValues"]["n"], -5);
        assert_eq!(s["maxValues"]["n"], rows - 1);
        // A row group of nulls bounds nothing; a long value inside the bounds is bounded.
        assert_eq!(s["minValues"]["note"], "b");
        assert_eq!(s["maxValues"]["note"], "z");
        assert_eq!(s["nullCount"]["note"], rows + 1);
        // A bound the writer truncated is no bound.
        assert!(s["minValues"].get("wide").is_none());
        assert!(s["maxValues"].get("wide").is_none());
        assert_eq!(s["nullCount"]["wide"], 2);
    }
}
