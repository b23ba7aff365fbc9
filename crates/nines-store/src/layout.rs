//! The store: where the Delta tables live, what their files are called, and the commit of a
//! flush with its Kafka offset.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use deltalake::kernel::Add;
use fail::fail_point;
use nines_model::flush::Flush;
use nines_model::idempotency::{self, Key, Kind, Remembered, Seen};
use nines_model::schema::{self, PARTITION_COLUMN, TABLES};
use nines_model::time::{day_number, day_string};
use parquet::file::metadata::ParquetMetaData;
use tokio::sync::Mutex;
use tracing::{info, warn};
use url::Url;

use crate::delta::{CommitFailure, Table, add_action};
use crate::faults::crash;
use crate::upload::upload;
use crate::writer::Provenance;
use crate::{Error, Result};
use nines_model::clock::now_ns;

/// The store's own table of idempotency keys and dead-letter notes (not queryable by SQL;
/// its rows are `nines_model::idempotency`'s durable form).
pub const IDEMPOTENCY: &str = idempotency::TABLE;

/// The name of a data file: which records of which partition it holds, and a unique suffix.
/// A name is never reused: once a commit's outcome is unknown, overwriting a file an earlier
/// commit may reference would corrupt the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileName {
    pub topic: String,
    pub partition: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub unique: String,
}

impl FileName {
    /// `<topic>-p00003-o00000000000000000012-00000000000000000345-<unique>.parquet`.
    pub fn render(&self) -> String {
        format!(
            "{}-p{:05}-o{:020}-{:020}-{}.parquet",
            self.topic, self.partition, self.first_offset, self.last_offset, self.unique
        )
    }

    /// Parses a name made by [`FileName::render`].
    pub fn parse(name: &str) -> Option<Self> {
        let stem = name.strip_suffix(".parquet")?;
        let (rest, unique) = stem.rsplit_once('-')?;
        let (rest, last) = rest.rsplit_once('-')?;
        let (rest, first) = rest.rsplit_once("-o")?;
        let (topic, partition) = rest.rsplit_once("-p")?;
        Some(Self {
            topic: topic.to_owned(),
            partition: partition.parse().ok()?,
            first_offset: first.parse().ok()?,
            last_offset: last.parse().ok()?,
            unique: unique.to_owned(),
        })
    }
}

/// Where a partition stands in every table: the last offset each table holds (its `txn`
/// version), `None` for a table that never committed the partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Positions {
    pub by_table: BTreeMap<&'static str, Option<i64>>,
}

impl Positions {
    /// The next offset to read: after the smallest version over the tables (a replayed record
    /// is skipped by the tables that hold it already).
    pub fn resume(&self) -> i64 {
        self.by_table
            .values()
            .map(|v| v.unwrap_or(-1))
            .min()
            .unwrap_or(-1)
            + 1
    }

    /// Whether `table` already holds the record at `offset`.
    pub fn holds(&self, table: &str, offset: i64) -> bool {
        self.by_table
            .get(table)
            .copied()
            .flatten()
            .is_some_and(|v| offset <= v)
    }

    /// The largest committed offset over the tables.
    pub fn high(&self) -> Option<i64> {
        self.by_table.values().flatten().max().copied()
    }
}

/// A commit refused because another writer moved the partition (see [`Store::commit`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fenced {
    pub table: &'static str,
    pub partition: i32,
    pub expected: Option<i64>,
    pub stored: Option<i64>,
}

/// What [`Store::commit`] (one partition's new positions) and [`Store::commit_group`] (each
/// partition's, in the group's order) answer.
#[derive(Debug)]
pub enum CommitOutcome<P = Positions> {
    /// Every table holds the flush.
    Committed(P),
    /// Another writer owns a partition now: drop its state and re-read its position.
    Fenced(Fenced),
}

/// One partition's flush in a [`Store::commit_group`].
pub struct Pending<'a> {
    pub flush: &'a Flush,
    /// Where this writer believes the partition stands.
    pub expected: &'a Positions,
    /// Whether a table's version of the partition should move even without rows in the flush.
    pub stale: &'a (dyn Fn(&str) -> bool + Sync),
}

impl std::fmt::Debug for Pending<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("partition", &self.flush.partition)
            .field("last_offset", &self.flush.last_offset)
            .field("expected", self.expected)
            .finish_non_exhaustive()
    }
}

/// Where the tables live: a local directory (the default) or an object store URL.
#[derive(Debug, Clone)]
pub struct Location {
    pub root: Url,
    /// Object store settings (endpoint, region, credentials) for delta-rs.
    pub options: HashMap<String, String>,
}

impl Location {
    /// A local directory (created if missing).
    pub fn local(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir: PathBuf = dir.into();
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            op: "creating",
            path: dir.clone(),
            source,
        })?;
        let dir = dir.canonicalize().map_err(|source| Error::Io {
            op: "resolving",
            path: dir.clone(),
            source,
        })?;
        let root = Url::from_directory_path(&dir).map_err(|()| Error::Location {
            location: dir.display().to_string(),
            reason: "not an absolute path".into(),
        })?;
        Ok(Self {
            root,
            options: HashMap::new(),
        })
    }

    /// The local directory, if the store is local.
    pub fn local_dir(&self) -> Option<PathBuf> {
        (self.root.scheme() == "file")
            .then(|| self.root.to_file_path().ok())
            .flatten()
    }

    fn table_url(&self, table: &str) -> Url {
        let rel = if table == IDEMPOTENCY {
            "state/idempotency/".to_owned()
        } else {
            format!("tables/{table}/")
        };
        let mut base = self.root.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        base.join(&rel).expect("a relative path joins")
    }
}

struct Inner {
    location: Location,
    tables: BTreeMap<&'static str, Mutex<Table>>,
}

/// The table store: every table nines writes, as Delta tables.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("root", &self.inner.location.root.as_str())
            .finish_non_exhaustive()
    }
}

/// Every table of the store, data tables first (the order a flush commits in).
pub fn all_tables() -> impl Iterator<Item = &'static str> {
    TABLES.into_iter().chain([IDEMPOTENCY])
}

/// The app id of a partition's `txn`.
pub fn app_id(topic: &str, partition: i32) -> String {
    format!("{topic}-{partition}")
}

impl Store {
    /// A store at `location`: opens every table, creating the ones that do not exist.
    pub async fn open(location: Location) -> Result<Self> {
        if location.local_dir().is_some() {
            for t in all_tables() {
                let p = location.table_url(t).to_file_path().expect("a local URL");
                std::fs::create_dir_all(&p).map_err(|source| Error::Io {
                    op: "creating",
                    path: p.clone(),
                    source,
                })?;
            }
        }
        let mut tables = BTreeMap::new();
        for t in all_tables() {
            let mut fields: Vec<Field> = if t == IDEMPOTENCY {
                idempotency::schema()
                    .fields()
                    .iter()
                    .map(|f| f.as_ref().clone())
                    .collect()
            } else {
                schema::for_table(t)
                    .expect("known table")
                    .fields()
                    .iter()
                    .map(|f| f.as_ref().clone())
                    .collect()
            };
            fields.push(Field::new(PARTITION_COLUMN, DataType::Utf8, false));
            let table = Table::open_or_create(
                t,
                location.table_url(t),
                &Schema::new(fields),
                &[PARTITION_COLUMN],
                &location.options,
            )
            .await?;
            tables.insert(t, Mutex::new(table));
        }
        Ok(Self {
            inner: Arc::new(Inner { location, tables }),
        })
    }

    /// A store in a local directory.
    pub async fn open_dir(dir: impl Into<PathBuf>) -> Result<Self> {
        Self::open(Location::local(dir)?).await
    }

    /// Where the store lives.
    pub fn location(&self) -> &Location {
        &self.inner.location
    }

    /// The URL of a table's root (its `_delta_log` is under it).
    pub fn table_url(&self, table: &str) -> Url {
        self.inner.location.table_url(table)
    }

    pub(crate) fn table_handle(&self, name: &str) -> &Mutex<Table> {
        self.inner.tables.get(name).expect("a table of the store")
    }

    /// The object store of `table`, rooted at the table's location.
    pub(crate) async fn object_store(&self, table: &str) -> deltalake::logstore::ObjectStoreRef {
        self.table_handle(table)
            .lock()
            .await
            .log_store
            .object_store(None)
    }

    /// Where a partition stands in every table, read from the latest commits.
    pub async fn positions(&self, topic: &str, partition: i32) -> Result<Positions> {
        let app = app_id(topic, partition);
        let mut out = Positions::default();
        for t in all_tables() {
            let mut table = self.table_handle(t).lock().await;
            table.refresh().await?;
            out.by_table.insert(t, table.txn_version(&app).await?);
        }
        Ok(out)
    }

    /// Commits `flush` to every table, one commit per table carrying `txn(<topic>-<partition>,
    /// last offset)`, data tables first and the idempotency keys last. A table gets a commit
    /// when it has rows in the flush or when `stale` says its version should move (a commit of
    /// the `txn` alone, so a restart does not replay far for a table that rarely has data).
    ///
    /// `expected` is where this writer believes the partition stands; a table whose stored
    /// version differs (another writer committed it) fences the whole flush: nothing more is
    /// committed and the caller must re-read the partition's position.
    pub async fn commit(
        &self,
        topic: &str,
        flush: &Flush,
        expected: &Positions,
        stale: impl Fn(&str) -> bool + Sync,
    ) -> Result<CommitOutcome> {
        let group = [Pending {
            flush,
            expected,
            stale: &stale,
        }];
        Ok(match self.commit_group(topic, &group).await? {
            CommitOutcome::Committed(mut each) => {
                CommitOutcome::Committed(each.pop().expect("one position per flush"))
            }
            CommitOutcome::Fenced(f) => CommitOutcome::Fenced(f),
        })
    }

    /// Commits the flushes of several partitions (at most one each) as [`Store::commit`]
    /// does one, but with one commit per table for all of them: its files, and a `txn` per
    /// partition not yet holding its flush there. Each table's commit moves every partition in
    /// it or none, so a crash between tables leaves each partition where [`Store::commit`]
    /// could have left it. A table with rows, or stale, for any partition gets a commit, which
    /// then moves every partition's version in that table (the flush holds no rows of the
    /// others for it). A fenced partition fences the whole group: the caller re-reads all.
    pub async fn commit_group(
        &self,
        topic: &str,
        group: &[Pending<'_>],
    ) -> Result<CommitOutcome<Vec<Positions>>> {
        let apps: Vec<String> = group
            .iter()
            .map(|p| app_id(topic, p.flush.partition))
            .collect();
        let seen = group
            .iter()
            .map(|p| idempotency::to_batches(p.flush.partition, &p.flush.seen, Kind::Batch))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let mut now: Vec<Positions> = group.iter().map(|p| p.expected.clone()).collect();
        fail_point!("store.before_write", |_| crash("store.before_write"));
        for (i, t) in all_tables().enumerate() {
            let rows = |k: usize| -> Vec<(i64, &RecordBatch)> {
                if t == IDEMPOTENCY {
                    seen[k].iter().map(|(day, b)| (*day, b)).collect()
                } else {
                    group[k]
                        .flush
                        .batches
                        .iter()
                        .filter(|tb| tb.table == t)
                        .map(|tb| (tb.day, &tb.batch))
                        .collect()
                }
            };
            let current = |k: usize| group[k].expected.by_table.get(t).copied().flatten();
            // Replayed records a table already holds were skipped when added.
            let behind: Vec<usize> = (0..group.len())
                .filter(|&k| current(k).is_none_or(|v| v < group[k].flush.last_offset))
                .collect();
            let wanted = behind
                .iter()
                .any(|&k| current(k).is_none() || (group[k].stale)(t) || !rows(k).is_empty());
            if !wanted {
                continue;
            }
            // One file per day for all the partitions: flushing together does not multiply
            // files.
            let mut by_day: BTreeMap<i64, Vec<(&Flush, &RecordBatch)>> = BTreeMap::new();
            let mut txns = Vec::with_capacity(behind.len());
            for &k in &behind {
                for (day, batch) in rows(k) {
                    by_day.entry(day).or_default().push((group[k].flush, batch));
                }
                txns.push((apps[k].as_str(), current(k), group[k].flush.last_offset));
            }
            let mut adds = Vec::with_capacity(by_day.len());
            for (day, parts) in by_day {
                adds.push(self.put_file(t, topic, day, &parts).await?);
                fail_point!("store.after_file", |_| crash("store.after_file"));
            }
            let mut table = self.table_handle(t).lock().await;
            match table.commit(adds, &txns).await {
                Ok(()) => {}
                Err(CommitFailure::Fenced { app_id, stored }) => {
                    let k = behind
                        .iter()
                        .copied()
                        .find(|&k| apps[k] == app_id)
                        .unwrap_or(behind[0]);
                    let partition = group[k].flush.partition;
                    warn!(
                        table = t,
                        partition,
                        expected = ?current(k),
                        ?stored,
                        "another writer committed this partition: fenced"
                    );
                    crate::metrics::count(crate::metrics::COMMITS_FENCED, t, 1);
                    return Ok(CommitOutcome::Fenced(Fenced {
                        table: t,
                        partition,
                        expected: current(k),
                        stored,
                    }));
                }
                Err(CommitFailure::Other(e)) => return Err(e),
            }
            drop(table);
            self.sync_log(t).await?;
            crate::metrics::count(crate::metrics::COMMITS, t, 1);
            for &k in &behind {
                now[k].by_table.insert(t, Some(group[k].flush.last_offset));
            }
            if i == 0 {
                fail_point!("store.between_tables", |_| crash("store.between_tables"));
            }
        }
        Ok(CommitOutcome::Committed(now))
    }

    /// Sets the partition's position in every table to `next` - 1, by commits carrying only
    /// the `txn`: the operator's answer to a log that went backwards (`nines reset-offsets`).
    /// No row is removed; records from `next` on will be written. Answers the positions
    /// before and after.
    pub async fn reset_partition(
        &self,
        topic: &str,
        partition: i32,
        next: i64,
    ) -> Result<(Positions, Positions)> {
        let app = app_id(topic, partition);
        let before = self.positions(topic, partition).await?;
        for t in all_tables() {
            let current = before.by_table.get(t).copied().flatten();
            let mut table = self.table_handle(t).lock().await;
            table
                .commit(Vec::new(), &[(&app, current, next - 1)])
                .await
                .map_err(|e| match e {
                    CommitFailure::Other(e) => e,
                    CommitFailure::Fenced { stored, .. } => Error::Conflict {
                        table: t.to_owned(),
                        reason: format!(
                            "partition {partition} moved to {stored:?} during the reset: stop \
                             the aggregators first"
                        ),
                    },
                })?;
            drop(table);
            self.sync_log(t).await?;
        }
        let after = self.positions(topic, partition).await?;
        Ok((before, after))
    }

    /// Writes one data file of `day` holding `parts` (rows of the flushes named) and answers
    /// its `add` action. Rows of one partition are named by it and its offsets
    /// ([`FileName`]); rows of several, flushed together, make one `group-<unique>.parquet`
    /// whose metadata lists each partition's range (`nines.partitions`).
    async fn put_file(
        &self,
        table: &'static str,
        topic: &str,
        day: i64,
        parts: &[(&Flush, &RecordBatch)],
    ) -> Result<Add> {
        let (first, _) = parts.first().expect("a file of at least one batch");
        let unique = uuid::Uuid::now_v7().simple().to_string();
        let single = parts.iter().all(|(f, _)| f.partition == first.partition);
        let mut ranges = String::new();
        let (name, provenance_of) = if single {
            let name = FileName {
                topic: topic.to_owned(),
                partition: first.partition,
                first_offset: first.first_offset,
                last_offset: first.last_offset,
                unique,
            }
            .render();
            (
                name,
                (first.partition, first.first_offset, first.last_offset),
            )
        } else {
            let mut seen = BTreeSet::new();
            for (f, _) in parts {
                if seen.insert(f.partition) {
                    if !ranges.is_empty() {
                        ranges.push(',');
                    }
                    ranges.push_str(&format!(
                        "{}:{}-{}",
                        f.partition, f.first_offset, f.last_offset
                    ));
                }
            }
            let lowest = parts.iter().map(|(f, _)| f.first_offset).min().unwrap_or(0);
            let highest = parts.iter().map(|(f, _)| f.last_offset).max().unwrap_or(0);
            (format!("group-{unique}.parquet"), (-1, lowest, highest))
        };
        let date = day_string(day);
        let rel = format!("{PARTITION_COLUMN}={date}/{name}");
        let provenance = Provenance {
            table,
            topic,
            partition: provenance_of.0,
            first_offset: provenance_of.1,
            last_offset: provenance_of.2,
            partitions: &ranges,
        };
        let batches: Vec<&RecordBatch> = parts.iter().map(|(_, b)| *b).collect();
        let (metadata, size) = self.put_parquet(table, &rel, &batches, &provenance).await?;
        crate::metrics::count(crate::metrics::FILES_WRITTEN, table, 1);
        Ok(add_action(
            &rel,
            &[(PARTITION_COLUMN, date)],
            size,
            &crate::writer::stored_schema(&batches[0].schema()),
            &metadata,
        ))
    }

    /// Encodes `parts` as one Parquet file at `rel` under the table's root and stores it
    /// durably ([`Store::put_encoded`]); answers its footer and size.
    pub(crate) async fn put_parquet(
        &self,
        table: &str,
        rel: &str,
        parts: &[&RecordBatch],
        provenance: &Provenance<'_>,
    ) -> Result<(ParquetMetaData, usize)> {
        self.put_encoded(table, rel, |sink| {
            crate::writer::encode_parts_into(parts, provenance, sink)
        })
        .await
    }

    /// Stores the Parquet file `encode` writes at `rel` under the table's root, durably
    /// before it returns (no commit names it yet); answers its footer and size. On a local
    /// disk the file is encoded straight into place and fsynced
    /// ([`crate::writer::write_file`]); on object storage it is put whole when it fits one
    /// upload part, else uploaded a part at a time as it is encoded
    /// ([`upload`]).
    pub(crate) async fn put_encoded(
        &self,
        table: &str,
        rel: &str,
        encode: impl FnOnce(crate::writer::Sink<'_>) -> Result<(ParquetMetaData, usize)>,
    ) -> Result<(ParquetMetaData, usize)> {
        let destination = self.destination(table, rel).await;
        tokio::task::block_in_place(|| destination.put(encode))
    }

    /// Where a new file at `rel` under `table`'s root goes.
    pub(crate) async fn destination(&self, table: &str, rel: &str) -> Destination {
        match self.table_dir(table) {
            Some(root) => Destination::Local(root.join(rel)),
            None => Destination::Remote(
                self.object_store(table).await,
                object_store::path::Path::from(rel),
            ),
        }
    }

    /// Local directory of a table, when the store is local.
    pub fn table_dir(&self, table: &str) -> Option<PathBuf> {
        self.table_url(table)
            .to_file_path()
            .ok()
            .filter(|_| self.inner.location.local_dir().is_some())
    }

    /// Makes a local table's newest commit durable (delta-rs's local store does not fsync).
    pub(crate) async fn sync_log(&self, table: &str) -> Result<()> {
        let Some(dir) = self.table_dir(table) else {
            return Ok(());
        };
        let version = self.table_handle(table).lock().await.version();
        let log = dir.join("_delta_log");
        let commit = log.join(format!("{version:020}.json"));
        tokio::task::block_in_place(|| crate::writer::sync_file_and_dir(&commit))
    }

    /// Records, durably, that the record at `offset` was acknowledged by the dead-letter
    /// topic, so a replay of it (after a crash before its flush) does not send it again. A
    /// commit of its own, without a `txn`: the record's flush has not happened yet.
    pub async fn note_dead_letter(&self, topic: &str, partition: i32, offset: i64) -> Result<()> {
        let note = Seen {
            key: Key {
                tenant: String::new(),
                batch_id: String::new(),
                part: 0,
                fingerprint: 0,
            },
            offset,
            seen_at: now_ns(),
        };
        let batches =
            idempotency::to_batches(partition, std::slice::from_ref(&note), Kind::DeadLetter)?;
        let flush = Flush {
            partition,
            first_offset: offset,
            last_offset: offset,
            events: 0,
            batches: Vec::new(),
            seen: Vec::new(),
        };
        let mut adds = Vec::new();
        for (day, batch) in &batches {
            adds.push(
                self.put_file(IDEMPOTENCY, topic, *day, &[(&flush, batch)])
                    .await?,
            );
        }
        let mut table = self.table_handle(IDEMPOTENCY).lock().await;
        table.commit(adds, &[]).await.map_err(|e| match e {
            CommitFailure::Other(e) => e,
            CommitFailure::Fenced { .. } => unreachable!("a commit without txn is never fenced"),
        })?;
        drop(table);
        self.sync_log(IDEMPOTENCY).await
    }

    /// What the idempotency table remembers of a partition: keys of batches seen at or after
    /// `since_ns` (aggregator clock), oldest first, and the offsets at or after `from_offset`
    /// already dead-lettered.
    pub async fn remembered(
        &self,
        topic: &str,
        partition: i32,
        since_ns: i64,
        from_offset: i64,
    ) -> Result<Remembered> {
        let since_day = day_string(day_number(since_ns));
        let (files, store) = {
            let mut table = self.table_handle(IDEMPOTENCY).lock().await;
            table.refresh().await?;
            let files: Vec<String> = table
                .state
                .log_data()
                .into_iter()
                .map(|f| f.path().into_owned())
                .filter(|p| {
                    let (dir, name) = p.rsplit_once('/').unwrap_or(("", p));
                    let date = dir.strip_prefix("date=").unwrap_or("");
                    // A flush's file names its partition; a compacted file holds every
                    // partition's rows, filtered when read.
                    date >= since_day.as_str()
                        && FileName::parse(name)
                            .is_none_or(|n| n.topic == topic && n.partition == partition)
                })
                .collect();
            (files, table.log_store.object_store(None))
        };
        let mut out = Remembered::default();
        for path in files {
            for batch in crate::maintenance::read_file(store.as_ref(), &path).await? {
                idempotency::read(&batch, partition, since_ns, from_offset, &mut out)?;
            }
        }
        let out = out.finish();
        info!(
            partition,
            keys = out.seen.len(),
            dead_letters = out.dead_lettered.len(),
            "idempotency keys read"
        );
        Ok(out)
    }
}

/// A new Parquet file's place: a path on the local disk, or an object in object storage.
pub(crate) enum Destination {
    Local(PathBuf),
    Remote(
        deltalake::logstore::ObjectStoreRef,
        object_store::path::Path,
    ),
}

impl Destination {
    /// Stores the file `encode` writes, durably before it returns; answers its footer and
    /// size. Blocking: on a runtime's thread, inside `tokio::task::block_in_place` (or on a
    /// thread of its own that has entered the runtime).
    pub(crate) fn put(
        self,
        encode: impl FnOnce(crate::writer::Sink<'_>) -> Result<(ParquetMetaData, usize)>,
    ) -> Result<(ParquetMetaData, usize)> {
        match self {
            Self::Local(path) => crate::writer::write_file(&path, encode),
            Self::Remote(store, path) => upload(store, path, encode),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::AsArray;
    use nines_aggregate::PartitionBuffer;
    use nines_model::schema::REQUESTS;
    use nines_proto::v1::{EventBatch, RequestEvent, Resource};

    const TOPIC: &str = "nines.events";
    /// 2026-11-26T00:00:10Z.
    const T: i64 = 1_795_651_210_000_000_000;

    fn flush_of(partition: i32, offset: i64, events: usize, batch_id: &str) -> Flush {
        flush_at(
            partition,
            offset,
            "s",
            (0..events as i64).map(|i| T + i),
            batch_id,
        )
    }

    /// A flush of one record at `offset`: a request of `service` at each of `times`.
    fn flush_at(
        partition: i32,
        offset: i64,
        service: &str,
        times: impl Iterator<Item = i64>,
        batch_id: &str,
    ) -> Flush {
        let mut buffer = PartitionBuffer::new(partition);
        let batch = EventBatch {
            schema_version: 1,
            batch_id: batch_id.into(),
            resource: Some(Resource {
                tenant: "t".into(),
                service: service.into(),
                environment: "e".into(),
                version: "v".into(),
            }),
            requests: times
                .map(|time_unix_nano| RequestEvent {
                    time_unix_nano,
                    operation: "GET /".into(),
                    duration_nano: 1_000,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        buffer.add(&batch, offset);
        buffer.note_seen(Seen {
            key: Key {
                tenant: "t".into(),
                batch_id: batch_id.into(),
                part: 0,
                fingerprint: 0xabc,
            },
            offset,
            seen_at: T,
        });
        buffer.take().unwrap().unwrap()
    }

    fn all(v: Option<i64>) -> Positions {
        Positions {
            by_table: all_tables().map(|t| (t, v)).collect(),
        }
    }

    #[test]
    fn a_partition_resumes_after_the_table_furthest_behind() {
        let mut p = all(Some(41));
        p.by_table.insert("deploys", Some(7));
        assert_eq!(p.resume(), 8);
        assert!(p.holds("requests", 41) && !p.holds("requests", 42));
        assert!(p.holds("deploys", 7) && !p.holds("deploys", 8));
        assert_eq!(p.high(), Some(41));
        // A table that never committed the partition holds nothing: replay from the start.
        p.by_table.insert("incidents", None);
        assert_eq!(p.resume(), 0);
        assert!(!p.holds("incidents", 0));
        assert_eq!(Positions::default().resume(), 0);
    }

    #[test]
    fn file_names_round_trip() {
        let n = FileName {
            topic: "nines.events".into(),
            partition: 3,
            first_offset: 12,
            last_offset: 345,
            unique: "0193aa".into(),
        };
        assert_eq!(
            n.render(),
            "nines.events-p00003-o00000000000000000012-00000000000000000345-0193aa.parquet"
        );
        assert_eq!(FileName::parse(&n.render()), Some(n));
        assert_eq!(FileName::parse("other.parquet"), None);
    }

    /// A file that creates its `date=` directory makes that directory's entry durable too:
    /// the table root is fsynced, not only the new directory. On a local disk a data file is
    /// encoded straight into place (`put_parquet`) and must read back whole.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_new_partition_directory_is_fsynced_in_its_parent() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_dir(dir.path()).await.unwrap();
        let root = store.table_dir("requests").unwrap();
        let synced = |d: &std::path::Path| {
            crate::writer::SYNCED_DIRS
                .lock()
                .unwrap()
                .iter()
                .filter(|p| p.as_path() == d)
                .count()
        };
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(arrow::array::Int64Array::from_iter_values(
                0..1000,
            ))],
        )
        .unwrap();
        let provenance = Provenance::of_test("t");
        let before = synced(&root);
        let (metadata, size) = store
            .put_parquet(
                "requests",
                "date=2026-01-02/a.parquet",
                &[&batch],
                &provenance,
            )
            .await
            .unwrap();
        let path = root.join("date=2026-01-02/a.parquet");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), size as u64);
        assert_eq!(metadata.file_metadata().num_rows(), 1000);
        let file = std::fs::File::open(&path).unwrap();
        let back: Vec<RecordBatch> =
            parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(file, 4096)
                .unwrap()
                .collect::<std::result::Result<_, _>>()
                .unwrap();
        assert_eq!(back, vec![batch.clone()]);
        assert_eq!(synced(&root.join("date=2026-01-02")), 1);
        assert_eq!(
            synced(&root),
            before + 1,
            "the table root holds the new directory"
        );
        // A second file in the same directory creates no entry in the root; a name already
        // taken is refused, and the file under it left as it was.
        store
            .put_parquet(
                "requests",
                "date=2026-01-02/b.parquet",
                &[&batch],
                &provenance,
            )
            .await
            .unwrap();
        assert_eq!(synced(&root), before + 1);
        assert_eq!(synced(&root.join("date=2026-01-02")), 2);
        let taken = store
            .put_parquet(
                "requests",
                "date=2026-01-02/a.parquet",
                &[&batch],
                &provenance,
            )
            .await;
        assert!(taken.is_err(), "an existing file is not overwritten");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), size as u64);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_commit_carries_the_offset_and_fences_a_stale_writer() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_dir(dir.path()).await.unwrap();
        assert_eq!(store.positions(TOPIC, 0).await.unwrap(), all(None));

        let first = flush_of(0, 0, 3, "b-0");
        let CommitOutcome::Committed(after) = store
            .commit(TOPIC, &first, &all(None), |_| false)
            .await
            .unwrap()
        else {
            panic!("first commit fenced");
        };
        // A first commit reaches every table, rows or not, so each has a version to resume by.
        assert_eq!(after, all(Some(0)));
        assert_eq!(store.positions(TOPIC, 0).await.unwrap(), all(Some(0)));
        // Partition 1 is untouched.
        assert_eq!(store.positions(TOPIC, 1).await.unwrap(), all(None));

        // A second store (another aggregator) commits offsets 1..=1 of the partition.
        let other = Store::open_dir(dir.path()).await.unwrap();
        let second = flush_of(0, 1, 2, "b-1");
        assert!(matches!(
            other
                .commit(TOPIC, &second, &after, |_| false)
                .await
                .unwrap(),
            CommitOutcome::Committed(_)
        ));
        // The first store, still believing the partition is at 0, is refused.
        let stale = flush_of(0, 1, 5, "b-1-again");
        match store
            .commit(TOPIC, &stale, &after, |_| false)
            .await
            .unwrap()
        {
            CommitOutcome::Fenced(f) => {
                assert_eq!(f.table, "requests");
                assert_eq!(f.expected, Some(0));
                assert_eq!(f.stored, Some(1));
            }
            CommitOutcome::Committed(_) => panic!("a stale writer committed"),
        }

        // The idempotency keys of both flushes, and a dead letter after the resume point.
        store.note_dead_letter(TOPIC, 0, 2).await.unwrap();
        store.note_dead_letter(TOPIC, 0, 1).await.unwrap();
        let Remembered {
            seen,
            dead_lettered: dead,
        } = store.remembered(TOPIC, 0, T - 1, 2).await.unwrap();
        let ids: Vec<&str> = seen.iter().map(|s| s.key.batch_id.as_str()).collect();
        assert_eq!(ids, ["b-0", "b-1"]);
        assert_eq!(seen[0].key.fingerprint, 0xabc);
        assert_eq!(dead, BTreeSet::from([2]));
        // Keys older than the window are not read.
        let seen = store.remembered(TOPIC, 0, T + 1, 2).await.unwrap().seen;
        assert!(seen.is_empty(), "{seen:?}");
    }

    /// The actions of a table's newest Delta log entry, read as plain JSON (not by
    /// delta-rs): `(kind, app id or path, txn version)`.
    fn last_log_entry(store: &Store, table: &str) -> (usize, Vec<(String, String, i64)>) {
        let log = store
            .table_url(table)
            .to_file_path()
            .unwrap()
            .join("_delta_log");
        let mut entries: Vec<_> = std::fs::read_dir(&log)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        entries.sort();
        let text = std::fs::read_to_string(entries.last().unwrap()).unwrap();
        let mut actions = Vec::new();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            if let Some(t) = v.get("txn") {
                let app = t["appId"].as_str().unwrap().to_owned();
                actions.push(("txn".to_owned(), app, t["version"].as_i64().unwrap()));
            } else if let Some(a) = v.get("add") {
                let path = a["path"].as_str().unwrap().to_owned();
                actions.push(("add".to_owned(), path, -1));
            }
        }
        actions.sort();
        (entries.len(), actions)
    }

    /// A data file read with the parquet crate's own reader: its rows' `kafka_partition`,
    /// sorted, its `nines.partitions` metadata and its number of row groups.
    fn read_back(store: &Store, table: &str, rel: &str) -> (Vec<i32>, Option<String>, usize) {
        use arrow::array::AsArray;
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let path = store.table_url(table).to_file_path().unwrap().join(rel);
        let file = std::fs::File::open(path).unwrap();
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
        let ranges = builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|e| e.key == "nines.partitions"))
            .and_then(|e| e.value.clone());
        let row_groups = builder.metadata().num_row_groups();
        let mut partitions = Vec::new();
        for batch in builder.build().unwrap() {
            let batch = batch.unwrap();
            let column = batch.column_by_name("kafka_partition").unwrap();
            let values = column.as_primitive::<arrow::datatypes::Int32Type>();
            partitions.extend(values.values().iter().copied());
        }
        partitions.sort_unstable();
        (partitions, ranges, row_groups)
    }

    /// Partitions flushed together share one commit per table, each with its own `txn`, and
    /// one file per table holding the rows of all; a partition another writer moved fences the group, and the table that fenced
    /// it moved none of the group.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_group_commit_moves_every_partition_in_one_commit_per_table() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_dir(dir.path()).await.unwrap();
        let before: BTreeMap<&str, usize> = all_tables()
            .map(|t| (t, last_log_entry(&store, t).0))
            .collect();
        let (f0, f1) = (flush_of(0, 10, 3, "g-0"), flush_of(1, 20, 2, "g-1"));
        let none = all(None);
        let never = |_: &str| false;
        let group = [
            Pending {
                flush: &f0,
                expected: &none,
                stale: &never,
            },
            Pending {
                flush: &f1,
                expected: &none,
                stale: &never,
            },
        ];
        let CommitOutcome::Committed(after) = store.commit_group(TOPIC, &group).await.unwrap()
        else {
            panic!("first group commit fenced");
        };
        assert_eq!(after, vec![all(Some(10)), all(Some(20))]);
        assert_eq!(store.positions(TOPIC, 0).await.unwrap(), all(Some(10)));
        assert_eq!(store.positions(TOPIC, 1).await.unwrap(), all(Some(20)));
        let (p0, p1) = (app_id(TOPIC, 0), app_id(TOPIC, 1));
        for t in all_tables() {
            let (entries, actions) = last_log_entry(&store, t);
            assert_eq!(
                entries,
                before[t] + 1,
                "{t}: one new log entry for both partitions"
            );
            let txns: Vec<(&str, i64)> = actions
                .iter()
                .filter(|a| a.0 == "txn")
                .map(|a| (a.1.as_str(), a.2))
                .collect();
            assert_eq!(txns, [(p0.as_str(), 10), (p1.as_str(), 20)], "{t}");
            // `requests` and the idempotency keys have rows of both partitions: one file
            // for both; the others carry the `txn`s alone (a first commit).
            let files: Vec<&str> = actions
                .iter()
                .filter(|a| a.0 == "add")
                .map(|a| a.1.as_str())
                .collect();
            match t {
                "requests" | IDEMPOTENCY => {
                    assert_eq!(files.len(), 1, "{t}: {files:?}");
                    let name = files[0].rsplit('/').next().unwrap();
                    assert!(name.starts_with("group-"), "{name}");
                    assert_eq!(FileName::parse(name), None);
                    let (partitions, ranges, row_groups) = read_back(&store, t, files[0]);
                    let want = if t == "requests" {
                        vec![0, 0, 0, 1, 1]
                    } else {
                        vec![0, 1]
                    };
                    assert_eq!(partitions, want, "{t}: rows of each partition");
                    // Few rows: sorted together, in one row group.
                    assert_eq!(row_groups, 1, "{t}");
                    assert_eq!(ranges.as_deref(), Some("0:10-10,1:20-20"), "{t}");
                }
                "deploys" | "incidents" | "gate_decisions" => assert!(files.is_empty(), "{t}"),
                _ => {}
            }
        }

        // Each partition's new owner finds its own idempotency keys in the shared file.
        for (partition, id) in [(0, "g-0"), (1, "g-1")] {
            let r = store.remembered(TOPIC, partition, T - 1, 0).await.unwrap();
            let ids: Vec<&str> = r.seen.iter().map(|s| s.key.batch_id.as_str()).collect();
            assert_eq!(ids, [id], "partition {partition}");
        }

        // Another writer takes partition 1 over and commits offset 21.
        let other = Store::open_dir(dir.path()).await.unwrap();
        let theirs = flush_of(1, 21, 1, "o-1");
        assert!(matches!(
            other
                .commit(TOPIC, &theirs, &after[1], |_| false)
                .await
                .unwrap(),
            CommitOutcome::Committed(_)
        ));
        let (g0, g1) = (flush_of(0, 11, 1, "g-0b"), flush_of(1, 21, 1, "g-1b"));
        let group = [
            Pending {
                flush: &g0,
                expected: &after[0],
                stale: &never,
            },
            Pending {
                flush: &g1,
                expected: &after[1],
                stale: &never,
            },
        ];
        match store.commit_group(TOPIC, &group).await.unwrap() {
            CommitOutcome::Fenced(f) => assert_eq!(
                f,
                Fenced {
                    table: "requests",
                    partition: 1,
                    expected: Some(20),
                    stored: Some(21),
                }
            ),
            CommitOutcome::Committed(_) => panic!("a group with a stale partition committed"),
        }
        // Partition 0 did not move with the refused commit.
        assert_eq!(store.positions(TOPIC, 0).await.unwrap(), all(Some(10)));
    }

    /// Compaction merges the idempotency keys of every partition into one file: a
    /// partition's new owner must still find its own keys there, and only its own.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idempotency_keys_are_remembered_after_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_dir(dir.path()).await.unwrap();
        for (partition, offset, id) in [(0, 0, "p0-a"), (1, 0, "p1-a"), (0, 1, "p0-b")] {
            let flush = flush_of(partition, offset, 1, id);
            let expected = store.positions(TOPIC, partition).await.unwrap();
            let outcome = store
                .commit(TOPIC, &flush, &expected, |_| false)
                .await
                .unwrap();
            assert!(matches!(outcome, CommitOutcome::Committed(_)));
        }
        store.note_dead_letter(TOPIC, 1, 3).await.unwrap();
        let ids = |r: &Remembered| -> Vec<String> {
            r.seen.iter().map(|s| s.key.batch_id.clone()).collect()
        };
        let before = (
            store.remembered(TOPIC, 0, T - 1, 0).await.unwrap(),
            store.remembered(TOPIC, 1, T - 1, 0).await.unwrap(),
        );
        assert_eq!(ids(&before.0), ["p0-a", "p0-b"]);
        assert_eq!(ids(&before.1), ["p1-a"]);
        assert_eq!(before.1.dead_lettered, BTreeSet::from([3]));

        let report = store.compact(IDEMPOTENCY, 1 << 30).await.unwrap();
        assert_eq!(report.files_added, 1, "{report:?}");
        let after = (
            store.remembered(TOPIC, 0, T - 1, 0).await.unwrap(),
            store.remembered(TOPIC, 1, T - 1, 0).await.unwrap(),
        );
        assert_eq!(ids(&after.0), ["p0-a", "p0-b"]);
        assert_eq!(ids(&after.1), ["p1-a"]);
        assert!(after.0.dead_lettered.is_empty());
        assert_eq!(after.1.dead_lettered, BTreeSet::from([3]));
    }

    /// Six small files of a day more than a merge takes: one compaction merges them into
    /// two, each sorted by `requests`' key, with every row; the next compaction merges those
    /// two into one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn compaction_merges_a_bounded_number_of_files_into_one_and_keeps_rows_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_dir(dir.path()).await.unwrap();
        let services = ["cart", "auth", "checkout"];
        let mut sent = Vec::new();
        let files = crate::merge::MAX_RUNS_PER_MERGE as i64 + 6;
        for offset in 0..files {
            // Each record's times run backwards, and each service recurs in many files.
            let service = services[offset as usize % 3];
            let times: Vec<i64> = (0..50)
                .map(|i| T + (offset * 7 + 500 - i) * 1_000)
                .collect();
            sent.extend(times.iter().map(|&t| (service.to_owned(), t / 1_000)));
            let flush = flush_at(0, offset, service, times.into_iter(), &format!("b{offset}"));
            let expected = store.positions(TOPIC, 0).await.unwrap();
            let outcome = store
                .commit(TOPIC, &flush, &expected, |_| false)
                .await
                .unwrap();
            assert!(matches!(outcome, CommitOutcome::Committed(_)));
        }
        sent.sort();
        let rows = |store: &Store| {
            let store = store.clone();
            async move {
                let mut files = Vec::new();
                let object_store = store.object_store(REQUESTS).await;
                for (path, _) in store.data_files(REQUESTS).await.unwrap() {
                    let mut rows = Vec::new();
                    for b in crate::maintenance::read_file(object_store.as_ref(), &path)
                        .await
                        .unwrap()
                    {
                        let service = b.column_by_name("service").unwrap().as_string::<i32>();
                        let time = b
                            .column_by_name("time")
                            .unwrap()
                            .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
                        rows.extend(
                            (0..b.num_rows()).map(|i| (service.value(i).to_owned(), time.value(i))),
                        );
                    }
                    files.push(rows);
                }
                files
            }
        };
        assert_eq!(rows(&store).await.len(), files as usize);

        let report = store.compact(REQUESTS, 1 << 30).await.unwrap();
        assert_eq!(
            (report.files_removed, report.files_added),
            (files as usize, 2),
            "{report:?}"
        );
        let files = rows(&store).await;
        assert_eq!(files.len(), 2);
        for file in &files {
            assert!(file.is_sorted(), "a compacted file out of order");
        }
        let mut all: Vec<_> = files.concat();
        all.sort();
        assert_eq!(all, sent, "every row, once");

        let report = store.compact(REQUESTS, 1 << 30).await.unwrap();
        assert_eq!(
            (report.files_removed, report.files_added),
            (2, 1),
            "{report:?}"
        );
        let files = rows(&store).await;
        assert_eq!(files.len(), 1);
        assert_eq!(files[0], sent, "every row, once, in key order");
    }
}
