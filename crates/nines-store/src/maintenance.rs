//! Keeping the tables small and bounded while aggregators commit: compaction (many small
//! files of a day into few large ones, sorted by the table's key), retention (whole `date`
//! partitions removed by a Delta delete) and vacuum (files no commit references, after a
//! grace period). Each is a Delta commit or a cleanup of unreferenced files, so a query
//! running meanwhile reads one consistent snapshot and gets an exact answer.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use deltalake::kernel::{Action, Add, Remove};
use deltalake::operations::vacuum::VacuumMode;
use deltalake::protocol::DeltaOperation;
use deltalake::{DeltaTableBuilder, ObjectStore};
use nines_model::idempotency;
use nines_model::schema::PARTITION_COLUMN;
use nines_model::time::day_string;
use object_store::ObjectStoreExt as _;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::delta::{add_action, delta_error};
use crate::layout::Store;
use crate::merge::{COMPACTED_TOPIC, Input, MAX_RUNS_PER_MERGE, Merge, Run, runs_of};
use crate::writer::Provenance;
use crate::{Error, Result};

/// Where the store keeps its tables and how: `[storage]` in the configuration.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Where the tables live: empty for `<data_dir>` (the local default), or an object
    /// store URL such as `s3://bucket/prefix`.
    pub url: String,
    /// S3: endpoint of an S3-compatible server (MinIO, moto, …); empty for AWS.
    pub endpoint: String,
    /// S3: region; empty for the AWS environment's (`AWS_REGION`).
    pub region: String,
    /// S3: allow a plain-HTTP endpoint.
    pub allow_http: bool,
    /// S3 credentials; empty for the usual AWS environment (`AWS_ACCESS_KEY_ID`, profiles,
    /// instance roles).
    pub access_key_id: String,
    pub secret_access_key: String,
    /// How often the aggregator compacts, expires and vacuums (`0s`: never; `nines compact`
    /// does it on demand).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Size compaction aims for per file (bytes of Parquet).
    pub target_file_bytes: u64,
    /// Files no commit references are deleted by vacuum once this old: longer than any
    /// query and any flush (a flush writes its files before the commit that names them).
    #[serde(with = "humantime_serde")]
    pub vacuum_grace: Duration,
    /// Days of data each table keeps (by the `date` partition); a table not named keeps all.
    #[serde(with = "retention_days")]
    pub retention: BTreeMap<String, Duration>,
}

impl std::fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageConfig")
            .field("url", &self.url)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("allow_http", &self.allow_http)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("interval", &self.interval)
            .field("target_file_bytes", &self.target_file_bytes)
            .field("vacuum_grace", &self.vacuum_grace)
            .field("retention", &self.retention)
            .finish()
    }
}

impl StorageConfig {
    /// Where the tables live: `url`, or `data_dir` when it is empty.
    pub fn location(&self, data_dir: &std::path::Path) -> Result<crate::Location> {
        if self.url.is_empty() {
            return crate::Location::local(data_dir);
        }
        let root = url::Url::parse(&self.url).map_err(|e| Error::Location {
            location: self.url.clone(),
            reason: format!("storage.url: {e}"),
        })?;
        if !matches!(root.scheme(), "s3" | "s3a" | "file") {
            return Err(Error::Location {
                location: self.url.clone(),
                reason: "storage.url: only s3:// (and file://) are supported".into(),
            });
        }
        let mut options = std::collections::HashMap::new();
        let mut set = |k: &str, v: &str| {
            if !v.is_empty() {
                options.insert(k.to_owned(), v.to_owned());
            }
        };
        set("AWS_ENDPOINT_URL", &self.endpoint);
        set("AWS_REGION", &self.region);
        set("AWS_ACCESS_KEY_ID", &self.access_key_id);
        set("AWS_SECRET_ACCESS_KEY", &self.secret_access_key);
        if self.allow_http {
            set("AWS_ALLOW_HTTP", "true");
        }
        Ok(crate::Location { root, options })
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            endpoint: String::new(),
            region: String::new(),
            allow_http: false,
            access_key_id: String::new(),
            secret_access_key: String::new(),
            interval: Duration::from_secs(600),
            target_file_bytes: 128 * 1024 * 1024,
            vacuum_grace: Duration::from_secs(6 * 3600),
            retention: BTreeMap::from([
                ("requests".to_owned(), Duration::from_secs(30 * 86_400)),
                ("sli_1m".to_owned(), Duration::from_secs(400 * 86_400)),
                (
                    idempotency::TABLE.to_owned(),
                    idempotency::DEFAULT_RETENTION,
                ),
            ]),
        }
    }
}

/// `retention = { requests = "30d" }`: humantime values in a map.
mod retention_days {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        v: &BTreeMap<String, Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_map(
            v.iter()
                .map(|(k, d)| (k, humantime::format_duration(*d).to_string())),
        )
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, Duration>, D::Error> {
        let raw = BTreeMap::<String, String>::deserialize(d)?;
        raw.into_iter()
            .map(|(k, v)| {
                humantime::parse_duration(&v)
                    .map(|d| (k.clone(), d))
                    .map_err(|e| serde::de::Error::custom(format!("retention.{k}: {e}")))
            })
            .collect()
    }
}

/// What one compaction of a table did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactionReport {
    pub partitions: usize,
    pub files_before: usize,
    pub files_removed: usize,
    pub files_added: usize,
    pub bytes_removed: u64,
    pub bytes_added: u64,
}

/// A data file of a table as the snapshot lists it.
#[derive(Debug, Clone)]
struct Listed {
    path: String,
    size: u64,
    date: String,
}

impl Store {
    /// The data files of `table` its latest snapshot lists: path relative to the table's
    /// root, and size in bytes.
    pub async fn data_files(&self, table: &'static str) -> Result<Vec<(String, u64)>> {
        Ok(self
            .listed(table)
            .await?
            .into_iter()
            .map(|f| (f.path, f.size))
            .collect())
    }

    async fn listed(&self, table: &'static str) -> Result<Vec<Listed>> {
        let mut t = self.table_handle(table).lock().await;
        t.refresh().await?;
        Ok(t.state
            .log_data()
            .into_iter()
            .map(|f| {
                let date = f
                    .partition_values_map()
                    .get(PARTITION_COLUMN)
                    .cloned()
                    .flatten()
                    .unwrap_or_default();
                Listed {
                    path: f.path().into_owned(),
                    size: f.size().max(0) as u64,
                    date,
                }
            })
            .collect())
    }

    /// Rewrites the small files of each `date` partition of `table` into files of about
    /// `target_bytes`, sorted by the table's natural key, in one Delta commit that removes
    /// the old files and adds the new ones (`dataChange = false`). Aggregators keep
    /// committing meanwhile: their commits are blind appends, which never conflict with it.
    /// Each new file is a merge of at most [`MAX_RUNS_PER_MERGE`] sorted runs, read a batch
    /// at a time (`crate::merge`); on object storage each input's footer is fetched as its
    /// bin fills, and each row group when the merge reaches it.
    pub async fn compact(
        &self,
        table: &'static str,
        target_bytes: u64,
    ) -> Result<CompactionReport> {
        let files = self.listed(table).await?;
        let mut report = CompactionReport {
            files_before: files.len(),
            ..Default::default()
        };
        let mut by_date: BTreeMap<&str, Vec<&Listed>> = BTreeMap::new();
        for f in &files {
            if f.size < target_bytes / 2 {
                by_date.entry(f.date.as_str()).or_default().push(f);
            }
        }
        let store = self.object_store(table).await;
        let local = self.table_dir(table);
        let mut actions = Vec::new();
        let mut inputs = BTreeSet::new();
        for (date, mut small) in by_date {
            small.sort_by(|a, b| a.path.cmp(&b.path));
            // Files in order into bins of at most `target_bytes` and `MAX_RUNS_PER_MERGE`
            // runs (a file's runs are known once its footer is read), each bin merged into
            // one file as it closes.
            let mut bin: Vec<&Listed> = Vec::new();
            let (mut runs, mut bin_bytes) = (Vec::new(), 0);
            let mut touched = false;
            for f in small.into_iter().map(Some).chain([None]) {
                let opened = match f {
                    Some(f) => {
                        let input = match &local {
                            Some(root) => Input::Local(root.join(&f.path)),
                            None => Input::Remote {
                                store: store.clone(),
                                path: object_store::path::Path::from(f.path.as_str()),
                                size: f.size,
                            },
                        };
                        tokio::task::block_in_place(|| runs_of(&f.path, input))?
                    }
                    None => Vec::new(),
                };
                let full = f.is_none_or(|f| {
                    bin_bytes + f.size > target_bytes
                        || runs.len() + opened.len() > MAX_RUNS_PER_MERGE
                });
                if full && !bin.is_empty() {
                    let merged = std::mem::take(&mut runs);
                    if bin.len() >= 2
                        && let Some(add) = self.merge_into_one(table, date, merged).await?
                    {
                        report.files_added += 1;
                        report.bytes_added += add.size as u64;
                        actions.push(Action::Add(add));
                        for f in &bin {
                            actions.push(Action::Remove(remove_action(f, false)));
                            inputs.insert(f.path.clone());
                            report.files_removed += 1;
                            report.bytes_removed += f.size;
                        }
                        touched = true;
                    }
                    bin.clear();
                    bin_bytes = 0;
                }
                if let Some(f) = f {
                    bin.push(f);
                    bin_bytes += f.size;
                    runs.extend(opened);
                }
            }
            report.partitions += usize::from(touched);
        }
        if actions.is_empty() {
            return Ok(report);
        }
        let operation = DeltaOperation::Optimize {
            predicate: None,
            target_size: target_bytes as i64,
        };
        self.commit_rewrite(table, actions, &inputs, operation)
            .await?;
        crate::metrics::count(
            crate::metrics::FILES_COMPACTED,
            table,
            report.files_removed as u64,
        );
        info!(table, ?report, "compacted");
        Ok(report)
    }

    /// Merges `runs` (of small files of `date`) into one new file of `table`, sorted by its
    /// key, and answers its `add` (`dataChange = false`); `None` when they hold no row.
    async fn merge_into_one(
        &self,
        table: &'static str,
        date: &str,
        runs: Vec<Run>,
    ) -> Result<Option<Add>> {
        let key = nines_model::schema::sort_key(table);
        let provenance = Provenance {
            table,
            topic: COMPACTED_TOPIC,
            partition: -1,
            first_offset: 0,
            last_offset: 0,
            partitions: "",
        };
        let rel = format!(
            "{PARTITION_COLUMN}={date}/compacted-{}.parquet",
            uuid::Uuid::now_v7().simple()
        );
        let destination = self.destination(table, &rel).await;
        let merged = crate::merge::on_merge_thread(move || {
            let Some(merge) = Merge::open(runs, key)? else {
                return Ok(None);
            };
            let schema = merge.schema().clone();
            let (metadata, size) = destination
                .put(|sink| crate::writer::encode_sorted_into(&schema, merge, &provenance, sink))?;
            Ok::<_, Error>(Some((schema, metadata, size)))
        })
        .await?;
        let Some((schema, metadata, size)) = merged else {
            return Ok(None);
        };
        let mut add = add_action(
            &rel,
            &[(PARTITION_COLUMN, date.to_owned())],
            size,
            &schema,
            &metadata,
        );
        add.data_change = false;
        Ok(Some(add))
    }

    /// Keeps the `keep` (in whole days) most recent days of `table`, today (UTC, from
    /// `now_ns`) included, and removes every older `date` partition in one Delta delete.
    /// Answers the days removed. The files stay until vacuum, so queries already running
    /// finish exactly.
    pub async fn expire(
        &self,
        table: &'static str,
        keep: Duration,
        now_ns: i64,
    ) -> Result<Vec<String>> {
        let today = now_ns.div_euclid(86_400_000_000_000);
        let days_kept = (keep.as_secs() / 86_400).max(1) as i64;
        let cutoff = day_string(today - days_kept + 1);
        let files = self.listed(table).await?;
        let old: Vec<&Listed> = files
            .iter()
            .filter(|f| f.date.as_str() < cutoff.as_str())
            .collect();
        if old.is_empty() {
            return Ok(Vec::new());
        }
        let days: BTreeSet<String> = old.iter().map(|f| f.date.clone()).collect();
        let inputs: BTreeSet<String> = old.iter().map(|f| f.path.clone()).collect();
        let actions = old
            .into_iter()
            .map(|f| Action::Remove(remove_action(f, true)))
            .collect();
        let operation = DeltaOperation::Delete {
            predicate: Some(format!("{PARTITION_COLUMN} < '{cutoff}'")),
        };
        self.commit_rewrite(table, actions, &inputs, operation)
            .await?;
        crate::metrics::count(crate::metrics::PARTITIONS_EXPIRED, table, days.len() as u64);
        info!(table, %cutoff, days = days.len(), "expired partitions");
        Ok(days.into_iter().collect())
    }

    /// Deletes the files of `table` no commit references (removed by compaction or
    /// retention, or orphans of a crashed flush) once older than `grace`, then the log
    /// entries older than the table's log retention (checkpoints keep the state). Answers
    /// how many files went.
    pub async fn vacuum(&self, table: &'static str, grace: Duration) -> Result<usize> {
        let err = |op| move |e| delta_error(table, op, e);
        let mut t = DeltaTableBuilder::from_url(self.table_url(table))
            .and_then(|b| {
                b.with_storage_options(self.location().options.clone())
                    .build()
            })
            .map_err(err("opening"))?;
        t.load().await.map_err(err("loading"))?;
        let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
        let (t, metrics) = t
            .vacuum()
            .with_retention_period(grace)
            .with_enforce_retention_duration(false)
            .with_mode(VacuumMode::Full)
            .await
            .map_err(err("vacuuming"))?;
        let logs = deltalake::checkpoints::cleanup_metadata(&t, None)
            .await
            .map_err(err("cleaning the log of"))?;
        crate::metrics::count(
            crate::metrics::FILES_VACUUMED,
            table,
            metrics.files_deleted.len() as u64,
        );
        info!(table, files = metrics.files_deleted.len(), logs, "vacuumed");
        Ok(metrics.files_deleted.len())
    }

    /// Commits a rewrite (compaction, retention) if every file it removes is still in the
    /// table: a concurrent rewrite that removed one first wins, and this one is dropped (its
    /// new files become orphans for vacuum).
    async fn commit_rewrite(
        &self,
        table: &'static str,
        actions: Vec<Action>,
        inputs: &BTreeSet<String>,
        operation: DeltaOperation,
    ) -> Result<()> {
        let mut t = self.table_handle(table).lock().await;
        // Our own conflict check, then a commit that fails if anything landed meanwhile;
        // aggregators' appends land often, so try again while the inputs are still live.
        let mut attempts = 0;
        loop {
            t.refresh().await?;
            let live: BTreeSet<String> = t
                .state
                .log_data()
                .into_iter()
                .map(|f| f.path().into_owned())
                .collect();
            if let Some(gone) = inputs.iter().find(|p| !live.contains(*p)) {
                return Err(Error::Conflict {
                    table: table.to_owned(),
                    reason: format!("{gone} was removed by another writer meanwhile; try again"),
                });
            }
            if t.commit_operation_exclusive(actions.clone(), operation.clone())
                .await?
            {
                break;
            }
            attempts += 1;
            if attempts >= 50 {
                return Err(Error::Conflict {
                    table: table.to_owned(),
                    reason: "the table kept moving during 50 attempts to commit; try again".into(),
                });
            }
        }
        drop(t);
        self.sync_log(table).await
    }
}

fn remove_action(f: &Listed, data_change: bool) -> Remove {
    let now_ms = nines_model::clock::now_ms();
    Remove {
        path: f.path.clone(),
        data_change,
        deletion_timestamp: Some(now_ms),
        extended_file_metadata: Some(true),
        partition_values: Some(
            [(PARTITION_COLUMN.to_owned(), Some(f.date.clone()))]
                .into_iter()
                .collect(),
        ),
        size: Some(f.size as i64),
        ..Default::default()
    }
}

/// The bytes of one file of a table on object storage.
async fn fetch(store: &dyn ObjectStore, path: &str) -> Result<bytes::Bytes> {
    let object_err = |source| Error::ObjectStore {
        path: path.to_owned(),
        source,
    };
    let got = store
        .get(&object_store::path::Path::from(path))
        .await
        .map_err(object_err)?;
    got.bytes().await.map_err(object_err)
}

/// Every row of one Parquet file of a table.
pub(crate) async fn read_file(store: &dyn ObjectStore, path: &str) -> Result<Vec<RecordBatch>> {
    let bytes = fetch(store, path).await?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .and_then(|b| b.build())
        .map_err(|source| Error::Parquet {
            path: path.into(),
            source,
        })?;
    Ok(reader.collect::<std::result::Result<Vec<_>, _>>()?)
}
