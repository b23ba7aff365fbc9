//! Where files live, what they are called, and the checkpoints that say which are complete.

use std::fs;
use std::path::{Path, PathBuf};

use fail::fail_point;
use metrics::counter;
use nines_model::flush::{BatchKey, Flush, Seen};
use nines_model::schema::{PARTITION_COLUMN, TABLES};
use nines_model::time::day_string;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::error::IoContext;
use crate::faults::crash;
use crate::writer::{Provenance, create_dir_durable, rename_durable, write_durable};
use crate::{Error, Result};

const TMP_SUFFIX: &str = ".tmp";

/// The name of a data file: which records of which partition it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileName {
    pub topic: String,
    pub partition: i32,
    pub first_offset: i64,
    pub last_offset: i64,
}

impl FileName {
    /// `<topic>-p00003-o00000000000000000012-00000000000000000345.parquet`: deterministic, so
    /// a replay of the same range writes the same name instead of a duplicate.
    pub fn render(&self) -> String {
        format!(
            "{}-p{:05}-o{:020}-{:020}.parquet",
            self.topic, self.partition, self.first_offset, self.last_offset
        )
    }

    /// Parses a name made by [`FileName::render`].
    pub fn parse(name: &str) -> Option<Self> {
        let stem = name.strip_suffix(".parquet")?;
        let (rest, last) = stem.rsplit_once('-')?;
        let (rest, first) = rest.rsplit_once("-o")?;
        let (topic, partition) = rest.rsplit_once("-p")?;
        Some(Self {
            topic: topic.to_owned(),
            partition: partition.parse().ok()?,
            first_offset: first.parse().ok()?,
            last_offset: last.parse().ok()?,
        })
    }
}

/// The durable record of a partition's last complete flush.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Checkpoint {
    pub topic: String,
    pub partition: i32,
    /// Last Kafka offset whose events are all in durable files.
    pub last_offset: i64,
}

/// The table store rooted at a directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// A store under `root` (created if missing).
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        for t in TABLES {
            let dir = root.join("tables").join(t);
            fs::create_dir_all(&dir).io("creating", &dir)?;
        }
        let dir = root.join("checkpoints");
        fs::create_dir_all(&dir).io("creating", &dir)?;
        Ok(Self { root })
    }

    /// Directory of a table (register it as a listing table with a `date` partition column).
    pub fn table_dir(&self, table: &str) -> PathBuf {
        self.root.join("tables").join(table)
    }

    fn checkpoint_path(&self, topic: &str, partition: i32) -> PathBuf {
        self.root
            .join("checkpoints")
            .join(format!("{topic}-p{partition:05}.json"))
    }

    /// The partition's checkpoint, if any flush completed.
    pub fn checkpoint(&self, topic: &str, partition: i32) -> Result<Option<Checkpoint>> {
        let path = self.checkpoint_path(topic, partition);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::Checkpoint {
                    path,
                    reason: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).io("reading", &path),
        }
    }

    /// Writes every batch of `flush` durably, then the checkpoint. When this returns Ok, the
    /// flush's offsets may be committed to Kafka.
    pub fn commit(&self, topic: &str, flush: &Flush) -> Result<Vec<PathBuf>> {
        let name = FileName {
            topic: topic.to_owned(),
            partition: flush.partition,
            first_offset: flush.first_offset,
            last_offset: flush.last_offset,
        }
        .render();
        let mut written = Vec::with_capacity(flush.batches.len());
        fail_point!("store.before_write", |_| crash("store.before_write"));
        for tb in &flush.batches {
            let dir = self
                .table_dir(tb.table)
                .join(format!("{PARTITION_COLUMN}={}", day_string(tb.day)));
            create_dir_durable(&dir)?;
            let dest = dir.join(&name);
            let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
            let provenance = Provenance {
                table: tb.table,
                topic,
                partition: flush.partition,
                first_offset: flush.first_offset,
                last_offset: flush.last_offset,
            };
            write_durable(&tmp, &dest, &tb.batch, &provenance)?;
            counter!("nines_store_files_written_total", "table" => tb.table).increment(1);
            written.push(dest);
            fail_point!("store.after_rename", |_| crash("store.after_rename"));
        }
        fail_point!("store.before_checkpoint", |_| crash(
            "store.before_checkpoint"
        ));
        self.append_seen(topic, flush.partition, &flush.seen)?;
        self.write_checkpoint(&Checkpoint {
            topic: topic.to_owned(),
            partition: flush.partition,
            last_offset: flush.last_offset,
        })?;
        Ok(written)
    }

    fn dedup_path(&self, topic: &str, partition: i32) -> PathBuf {
        self.root
            .join("checkpoints")
            .join(format!("{topic}-p{partition:05}.batches"))
    }

    /// Appends idempotency keys to the partition's log, durably. One line per record:
    /// `offset \t seen_at \t part \t fingerprint \t tenant \t batch_id` (`seen_at`: when
    /// the aggregator saw the record; logs written before it held ingest's `received_at`
    /// there), the fingerprint in 32 hex digits (ingest refuses control characters in tenants and batch ids, so tabs
    /// and newlines cannot occur in them). Lines of five fields, written before
    /// fingerprints, read as fingerprint 0.
    fn append_seen(&self, topic: &str, partition: i32, seen: &[Seen]) -> Result<()> {
        if seen.is_empty() {
            return Ok(());
        }
        let text: String = seen.iter().map(seen_line).collect();
        append_durable(&self.dedup_path(topic, partition), &text)
    }

    fn dead_letter_path(&self, topic: &str, partition: i32) -> PathBuf {
        self.root
            .join("checkpoints")
            .join(format!("{topic}-p{partition:05}.dead"))
    }

    /// Records, durably, that the record at `offset` was acknowledged by the dead-letter
    /// topic, so a replay of it (after a crash before its flush) does not send it again.
    pub fn note_dead_letter(&self, topic: &str, partition: i32, offset: i64) -> Result<()> {
        append_durable(
            &self.dead_letter_path(topic, partition),
            &format!("{offset}\n"),
        )
    }

    /// Offsets beyond the partition's checkpoint already dead-lettered (what a replay must
    /// not send again). Offsets the checkpoint covers are never replayed, so the log is
    /// rewritten without them.
    pub fn dead_letters_beyond_checkpoint(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<std::collections::BTreeSet<i64>> {
        let last = self
            .checkpoint(topic, partition)?
            .map_or(-1, |c| c.last_offset);
        let path = self.dead_letter_path(topic, partition);
        let text = read_if_exists(&path)?;
        let all: Vec<i64> = text.lines().filter_map(|l| l.parse().ok()).collect();
        let keep: std::collections::BTreeSet<i64> =
            all.iter().copied().filter(|o| *o > last).collect();
        if keep.len() < all.len() {
            let body: String = keep.iter().map(|o| format!("{o}\n")).collect();
            replace_durable(&path, &body)?;
        }
        Ok(keep)
    }

    /// The idempotency keys of records covered by the partition's checkpoint, oldest first
    /// (lines of flushes that never completed are ignored).
    pub fn seen_batches(&self, topic: &str, partition: i32) -> Result<Vec<Seen>> {
        let last = self
            .checkpoint(topic, partition)?
            .map_or(-1, |c| c.last_offset);
        let path = self.dedup_path(topic, partition);
        let text = read_if_exists(&path)?;
        let mut out = Vec::new();
        for line in text.lines() {
            let f: Vec<&str> = line.split('\t').collect();
            let parsed = (|| {
                let (fingerprint, rest) = match f.len() {
                    6 => (u128::from_str_radix(f[3], 16).ok()?, &f[4..]),
                    5 => (0, &f[3..]),
                    _ => return None,
                };
                Some(Seen {
                    offset: f[0].parse().ok()?,
                    seen_at: f[1].parse().ok()?,
                    key: BatchKey {
                        part: f[2].parse().ok()?,
                        fingerprint,
                        tenant: rest[0].to_owned(),
                        batch_id: rest[1].to_owned(),
                    },
                })
            })();
            match parsed {
                Some(s) if s.offset <= last => out.push(s),
                Some(_) => {}
                // A torn last line of a crashed append: its flush never completed.
                None => warn!(path = %path.display(), "skipping unreadable idempotency line"),
            }
        }
        Ok(out)
    }

    /// Rewrites the partition's idempotency log with only `keep` (bounded growth).
    pub fn compact_seen<'a>(
        &self,
        topic: &str,
        partition: i32,
        keep: impl Iterator<Item = &'a Seen>,
    ) -> Result<()> {
        let text: String = keep.map(seen_line).collect();
        replace_durable(&self.dedup_path(topic, partition), &text)
    }

    fn write_checkpoint(&self, c: &Checkpoint) -> Result<()> {
        let text = serde_json::to_string(c).expect("checkpoint serializes");
        replace_durable(&self.checkpoint_path(&c.topic, c.partition), &text)
    }

    /// Makes a partition consistent before consuming it and returns the next offset to read:
    /// deletes temporary files and data files of this partition beyond its checkpoint (left
    /// by a flush that crashed before its checkpoint), then answers checkpoint + 1.
    pub fn recover(&self, topic: &str, partition: i32) -> Result<Option<i64>> {
        let checkpoint = self.checkpoint(topic, partition)?;
        let last = checkpoint.as_ref().map_or(-1, |c| c.last_offset);
        let mut removed = 0_u64;
        for table in TABLES {
            let dir = self.table_dir(table);
            for day in read_dir(&dir)? {
                for file in read_dir(&day)? {
                    let Some(name) = file.file_name().and_then(|n| n.to_str()) else {
                        continue;
                    };
                    let base = name.strip_suffix(TMP_SUFFIX).unwrap_or(name);
                    let Some(parsed) = FileName::parse(base) else {
                        continue;
                    };
                    if parsed.topic != topic || parsed.partition != partition {
                        continue;
                    }
                    if name.ends_with(TMP_SUFFIX) || parsed.first_offset > last {
                        warn!(file = %file.display(), last, "removing file of an incomplete flush");
                        fs::remove_file(&file).io("removing", &file)?;
                        removed += 1;
                    }
                }
            }
        }
        if removed > 0 {
            counter!("nines_store_orphans_removed_total").increment(removed);
        }
        info!(topic, partition, last, removed, "partition recovered");
        Ok(checkpoint.map(|c| c.last_offset + 1))
    }
}

/// The text of the file at `path`; empty if there is none.
fn read_if_exists(path: &Path) -> Result<String> {
    match fs::read_to_string(path) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e).io("reading", path),
    }
}

/// Appends `text` to the file at `path` (created if absent) and fsyncs it.
fn append_durable(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .io("opening", path)?;
    f.write_all(text.as_bytes()).io("appending", path)?;
    f.sync_all().io("fsyncing", path)
}

/// Replaces the file at `path` with `text` atomically: a temporary file, fsync, rename, fsync
/// of the directory.
fn replace_durable(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(TMP_SUFFIX);
    let tmp = path.with_file_name(name);
    let _ = fs::remove_file(&tmp);
    {
        let mut f = fs::File::create(&tmp).io("creating", &tmp)?;
        f.write_all(text.as_bytes()).io("writing", &tmp)?;
        f.sync_all().io("fsyncing", &tmp)?;
    }
    rename_durable(&tmp, path)
}

/// One line of the idempotency log.
fn seen_line(s: &Seen) -> String {
    format!(
        "{}\t{}\t{}\t{:032x}\t{}\t{}\n",
        s.offset, s.seen_at, s.key.part, s.key.fingerprint, s.key.tenant, s.key.batch_id
    )
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    match fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.map(|e| e.path()).io("listing", dir))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).io("listing", dir),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nines_aggregate::PartitionBuffer;
    use nines_proto::v1::{EventBatch, RequestEvent, Resource};

    const TOPIC: &str = "nines.events";
    /// 2026-11-26T00:00:10Z.
    const T: i64 = 1_795_651_210_000_000_000;

    fn flush_of(partition: i32, offset: i64, events: usize) -> Flush {
        let mut buffer = PartitionBuffer::new(partition);
        let batch = EventBatch {
            schema_version: 1,
            resource: Some(Resource {
                tenant: "t".into(),
                service: "s".into(),
                environment: "e".into(),
                version: "v".into(),
            }),
            requests: (0..events)
                .map(|i| RequestEvent {
                    time_unix_nano: T + i as i64,
                    operation: "GET /".into(),
                    duration_nano: 1_000,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        buffer.add(&batch, offset);
        buffer.take().unwrap().unwrap()
    }

    fn files(store: &Store) -> Vec<String> {
        let mut out = Vec::new();
        for t in TABLES {
            for day in read_dir(&store.table_dir(t)).unwrap() {
                for f in read_dir(&day).unwrap() {
                    out.push(format!(
                        "{t}/{}/{}",
                        day.file_name().unwrap().to_str().unwrap(),
                        f.file_name().unwrap().to_str().unwrap()
                    ));
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn recover_removes_what_a_crashed_flush_left_and_resumes_after_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.recover(TOPIC, 0).unwrap(),
            None,
            "nothing durable yet"
        );

        store.commit(TOPIC, &flush_of(0, 0, 3)).unwrap();
        store.commit(TOPIC, &flush_of(1, 0, 2)).unwrap();
        // A flush of partition 0 that crashed after its data files but before its checkpoint,
        // and one that crashed mid-write (a temporary file).
        let crashed = flush_of(0, 1, 4);
        let name = FileName {
            topic: TOPIC.into(),
            partition: 0,
            first_offset: 1,
            last_offset: 1,
        };
        let day_dir = store.table_dir("requests").join("date=2026-11-26");
        let tb = &crashed.batches[0];
        let provenance = Provenance {
            table: tb.table,
            topic: TOPIC,
            partition: 0,
            first_offset: 1,
            last_offset: 1,
        };
        write_durable(
            &day_dir.join("x.tmp"),
            &day_dir.join(name.render()),
            &tb.batch,
            &provenance,
        )
        .unwrap();
        fs::write(day_dir.join(format!("{}.tmp", name.render())), b"half").unwrap();
        assert_eq!(files(&store).len(), 6);

        assert_eq!(store.recover(TOPIC, 0).unwrap(), Some(1));
        let p0 = "nines.events-p00000-o00000000000000000000-00000000000000000000.parquet";
        let p1 = "nines.events-p00001-o00000000000000000000-00000000000000000000.parquet";
        assert_eq!(
            files(&store),
            vec![
                format!("requests/date=2026-11-26/{p0}"),
                format!("requests/date=2026-11-26/{p1}"),
                format!("sli_1m/date=2026-11-26/{p0}"),
                format!("sli_1m/date=2026-11-26/{p1}"),
            ]
        );
        // Partition 1 is untouched by partition 0's recovery and resumes after its own.
        assert_eq!(store.recover(TOPIC, 1).unwrap(), Some(1));
        assert_eq!(files(&store).len(), 4);
    }

    #[test]
    fn file_names_round_trip() {
        let n = FileName {
            topic: "nines.events".into(),
            partition: 3,
            first_offset: 12,
            last_offset: 345,
        };
        assert_eq!(
            n.render(),
            "nines.events-p00003-o00000000000000000012-00000000000000000345.parquet"
        );
        assert_eq!(FileName::parse(&n.render()), Some(n));
        assert_eq!(FileName::parse("other.parquet"), None);
    }
}
