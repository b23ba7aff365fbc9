//! Idempotency: one home for the key, the window, the durable form and the retention rule
//! (docs/delivery.md, "Idempotent pushes").
//!
//! A push retried with the same `batch_id` (after an ambiguous error or timeout) must not
//! count twice. Each record is keyed by (tenant, batch_id, part, content fingerprint); a key
//! seen within the window is a duplicate. The same batch_id with other content is another
//! batch, stored: ingest answered it OK, and dropping it here would lose acknowledged events.
//!
//! What the [`Window`] guarantees, exactly (the property test checks it against a plain list):
//! - **Time is the aggregator's.** A key is stamped with the time the aggregator saw it
//!   (`seen_at`, never earlier than any key before it), so no ingest clock, fast or slow,
//!   shortens the window. A retry seen within `max_age` of the original is a duplicate.
//! - **Per tenant.** Each tenant keeps its newest `max_per_tenant` keys of the partition; one
//!   tenant's traffic never pushes out another's keys.
//! - **Bounded by bytes.** Past `max_bytes` (all tenants of the partition), the oldest keys go
//!   first, each counted in [`Window::evicted_early`]: a retry of one of those is stored
//!   again, and the counter says it could be.
//! - A key never seen (or forgotten by the rules above) is never a duplicate.
//!
//! **Durable form.** The keys of a flush are committed with it, in the store's own Delta
//! table [`TABLE`] ([`schema`]; one row per key, [`to_batches`] / [`read`]), in the same
//! commit sequence as the flush's `txn`, so a new owner of the partition reads back the keys
//! of the last window ([`Remembered`]). The same table holds dead-letter notes
//! ([`Kind::DeadLetter`]): offsets already sent to the dead-letter topic.
//!
//! **Retention.** The table keeps whole days ([`DEFAULT_RETENTION`], `storage.retention.
//! idempotency`); [`check_retention`] refuses a retention that would forget keys still in the
//! window. Compaction treats it as any table.
//!
//! Pure: persistence is the store's job, and the clock is the caller's.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    ArrayRef, AsArray, Int32Array, Int64Array, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{
    DataType, Field, Int32Type, Int64Type, Schema, SchemaRef, TimestampMicrosecondType,
};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use crate::schema::timestamp_type;
use crate::time::{day_number, micros};

/// The store's table of idempotency keys and dead-letter notes (not queryable by SQL).
pub const TABLE: &str = "idempotency";

/// How long the table keeps its days by default: the window (15 minutes by default) is read
/// back from it, so two days leave a whole day of margin.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(2 * 86_400);

/// How much longer than the window the table must keep its keys: whole UTC days are removed,
/// so a day's margin keeps every key the window may still ask for.
pub const RETENTION_MARGIN: Duration = Duration::from_secs(86_400);

/// Refuses a retention of the table that would forget keys still in `window`.
pub fn check_retention(keep: Duration, window: Duration) -> Result<(), String> {
    if keep < window + RETENTION_MARGIN {
        return Err(format!(
            "storage.retention.{TABLE} ({}s) must exceed aggregate.idempotency_window ({}s) by \
             a day: keys still in the window would be forgotten",
            keep.as_secs(),
            window.as_secs()
        ));
    }
    Ok(())
}

/// Identity of one record of one push.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub tenant: String,
    pub batch_id: String,
    pub part: u32,
    /// The push's content fingerprint (`EventBatch.content_fingerprint`); 0 for records
    /// written before fingerprints existed.
    pub fingerprint: u128,
}

impl Key {
    /// A fingerprint as it travels on the bus (16 bytes; empty in old records).
    pub fn fingerprint_of(bytes: &[u8]) -> u128 {
        let mut out = [0_u8; 16];
        let n = bytes.len().min(16);
        out[..n].copy_from_slice(&bytes[..n]);
        u128::from_be_bytes(out)
    }
}

/// A remembered key, with the offset of the record that carried it and when the aggregator
/// saw it (nanoseconds since the epoch, the aggregator's clock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub key: Key,
    pub offset: i64,
    pub seen_at: i64,
}

/// What a row of the table records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A key of a stored record.
    Batch,
    /// The record at the row's offset was acknowledged by the dead-letter topic (the key
    /// columns are empty).
    DeadLetter,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Batch => "batch",
            Kind::DeadLetter => "dead_letter",
        }
    }
}

/// Schema of the table: one row per remembered key or dead-lettered record.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("kind", DataType::Utf8, false),
        Field::new("kafka_partition", DataType::Int32, false),
        Field::new("kafka_offset", DataType::Int64, false),
        Field::new("seen_at", timestamp_type(), false),
        Field::new("tenant", DataType::Utf8, false),
        Field::new("batch_id", DataType::Utf8, false),
        Field::new("part", DataType::Int64, false),
        Field::new("fingerprint", DataType::Utf8, false),
    ]))
}

/// Rows of the table for `seen`, one batch per UTC day of `seen_at` (the `date` partition).
pub fn to_batches(
    partition: i32,
    seen: &[Seen],
    kind: Kind,
) -> Result<Vec<(i64, RecordBatch)>, ArrowError> {
    let mut by_day: BTreeMap<i64, Vec<&Seen>> = BTreeMap::new();
    for s in seen {
        by_day.entry(day_number(s.seen_at)).or_default().push(s);
    }
    let mut out = Vec::with_capacity(by_day.len());
    for (day, rows) in by_day {
        let n = rows.len();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![kind.as_str(); n])),
            Arc::new(Int32Array::from(vec![partition; n])),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|s| s.offset))),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(rows.iter().map(|s| micros(s.seen_at)))
                    .with_timezone("UTC"),
            ),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|s| s.key.tenant.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|s| s.key.batch_id.as_str()),
            )),
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|s| i64::from(s.key.part)),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|s| format!("{:032x}", s.key.fingerprint)),
            )),
        ];
        out.push((day, RecordBatch::try_new(schema(), columns)?));
    }
    Ok(out)
}

/// What the table remembers of a partition (see [`read`]).
#[derive(Debug, Default)]
pub struct Remembered {
    /// Keys of stored records, oldest first once [`Remembered::finish`] ran.
    pub seen: Vec<Seen>,
    /// Offsets already sent to the dead-letter topic.
    pub dead_lettered: BTreeSet<i64>,
}

impl Remembered {
    /// Orders the keys as the window inserts them: oldest first.
    pub fn finish(mut self) -> Self {
        self.seen.sort_by_key(|s| (s.seen_at, s.offset));
        self
    }
}

/// Adds the rows of `partition` in `batch` (of [`schema`]) to `out`: keys seen at or after
/// `since_ns`, and dead-letter notes at or after `from_offset`. Anything else is not needed
/// any more. A batch may hold other partitions' rows (a compacted file holds them all).
pub fn read(
    batch: &RecordBatch,
    partition: i32,
    since_ns: i64,
    from_offset: i64,
    out: &mut Remembered,
) -> Result<(), ArrowError> {
    let col = |n: &str| {
        batch
            .column_by_name(n)
            .ok_or_else(|| ArrowError::SchemaError(format!("{TABLE}: no column {n}")))
    };
    let kind = col("kind")?.as_string::<i32>();
    let partitions = col("kafka_partition")?.as_primitive::<Int32Type>();
    let offset = col("kafka_offset")?.as_primitive::<Int64Type>();
    let seen_at = col("seen_at")?.as_primitive::<TimestampMicrosecondType>();
    let tenant = col("tenant")?.as_string::<i32>();
    let batch_id = col("batch_id")?.as_string::<i32>();
    let part = col("part")?.as_primitive::<Int64Type>();
    let fingerprint = col("fingerprint")?.as_string::<i32>();
    for i in 0..batch.num_rows() {
        if partitions.value(i) != partition {
            continue;
        }
        let at_ns = seen_at.value(i).saturating_mul(1000);
        let k = kind.value(i);
        if k == Kind::DeadLetter.as_str() {
            if offset.value(i) >= from_offset {
                out.dead_lettered.insert(offset.value(i));
            }
        } else if k == Kind::Batch.as_str() && at_ns >= since_ns {
            let fp = fingerprint.value(i);
            out.seen.push(Seen {
                key: Key {
                    tenant: tenant.value(i).to_owned(),
                    batch_id: batch_id.value(i).to_owned(),
                    part: u32::try_from(part.value(i)).map_err(|_| {
                        ArrowError::InvalidArgumentError(format!(
                            "{TABLE}: part {} out of range",
                            part.value(i)
                        ))
                    })?,
                    // Empty: a key of a record without a fingerprint.
                    fingerprint: if fp.is_empty() {
                        0
                    } else {
                        u128::from_str_radix(fp, 16).map_err(|_| {
                            ArrowError::InvalidArgumentError(format!(
                                "{TABLE}: fingerprint {fp:?} is not hexadecimal"
                            ))
                        })?
                    },
                },
                offset: offset.value(i),
                seen_at: at_ns,
            });
        }
    }
    Ok(())
}

/// Bytes counted per remembered key beyond its strings: the map slot and the queue slot.
const ENTRY_OVERHEAD: usize = 2 * std::mem::size_of::<Seen>();

fn entry_bytes(s: &Seen) -> usize {
    ENTRY_OVERHEAD + 2 * (s.key.tenant.len() + s.key.batch_id.len())
}

/// Keys seen recently, per tenant, oldest first.
#[derive(Debug, Default)]
pub struct Window {
    max_age_ns: i64,
    max_per_tenant: usize,
    max_bytes: usize,
    keys: HashMap<Key, i64>,
    tenants: HashMap<String, VecDeque<Seen>>,
    bytes: usize,
    newest: i64,
    next_sweep: i64,
    evicted_early: u64,
}

impl Window {
    pub fn new(max_age_ns: i64, max_per_tenant: usize, max_bytes: usize) -> Self {
        Self {
            max_age_ns,
            max_per_tenant: max_per_tenant.max(1),
            max_bytes,
            next_sweep: i64::MIN,
            ..Default::default()
        }
    }

    /// Records `seen` and answers true if it is new, false if its key is in the window.
    /// `seen.seen_at` is raised to the newest time already seen, if earlier.
    pub fn insert(&mut self, mut seen: Seen) -> bool {
        seen.seen_at = seen.seen_at.max(self.newest);
        self.newest = seen.seen_at;
        let horizon = self.horizon();
        if let Some(queue) = self.tenants.get_mut(&seen.key.tenant) {
            self.bytes -= expire(queue, &mut self.keys, horizon);
        }
        if self.newest >= self.next_sweep {
            self.sweep(horizon);
        }
        if self.keys.contains_key(&seen.key) {
            return false;
        }
        self.bytes += entry_bytes(&seen);
        self.keys.insert(seen.key.clone(), seen.seen_at);
        let queue = self.tenants.entry(seen.key.tenant.clone()).or_default();
        queue.push_back(seen);
        while queue.len() > self.max_per_tenant {
            let old = queue.pop_front().expect("longer than the bound");
            self.keys.remove(&old.key);
            self.bytes -= entry_bytes(&old);
        }
        while self.bytes > self.max_bytes && self.keys.len() > 1 {
            self.evict_oldest();
        }
        true
    }

    fn horizon(&self) -> i64 {
        self.newest.saturating_sub(self.max_age_ns)
    }

    /// Expires old keys of every tenant (those of the tenant being inserted expire at once;
    /// the others every eighth of the window, so idle tenants do not hold memory).
    fn sweep(&mut self, horizon: i64) {
        for queue in self.tenants.values_mut() {
            self.bytes -= expire(queue, &mut self.keys, horizon);
        }
        self.tenants.retain(|_, q| !q.is_empty());
        self.next_sweep = self.newest.saturating_add((self.max_age_ns / 8).max(1));
    }

    /// Drops the oldest key of all tenants (the byte bound).
    fn evict_oldest(&mut self) {
        let Some(tenant) = self
            .tenants
            .iter()
            .filter_map(|(t, q)| q.front().map(|s| (s.seen_at, t)))
            .min()
            .map(|(_, t)| t.clone())
        else {
            return;
        };
        let queue = self.tenants.get_mut(&tenant).expect("found above");
        let old = queue.pop_front().expect("has a front");
        self.keys.remove(&old.key);
        self.bytes -= entry_bytes(&old);
        self.evicted_early += 1;
    }

    /// Number of remembered keys (expired ones not yet swept included).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Keys forgotten before their time because of the byte bound, since creation.
    pub fn evicted_early(&self) -> u64 {
        self.evicted_early
    }

    /// The keys in the window, oldest first (what a compacted log keeps).
    pub fn entries(&self) -> Vec<&Seen> {
        let horizon = self.horizon();
        let mut all: Vec<&Seen> = self
            .tenants
            .values()
            .flatten()
            .filter(|s| s.seen_at >= horizon)
            .collect();
        all.sort_by_key(|s| (s.seen_at, s.offset));
        all
    }
}

/// Removes the keys of `queue` older than `horizon`; returns the bytes they took.
fn expire(queue: &mut VecDeque<Seen>, keys: &mut HashMap<Key, i64>, horizon: i64) -> usize {
    let mut freed = 0;
    while queue.front().is_some_and(|s| s.seen_at < horizon) {
        let old = queue.pop_front().expect("has a front");
        keys.remove(&old.key);
        freed += entry_bytes(&old);
    }
    freed
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn seen(tenant: &str, id: &str, part: u32, at: i64) -> Seen {
        Seen {
            key: Key {
                tenant: tenant.into(),
                batch_id: id.into(),
                part,
                fingerprint: 7,
            },
            offset: at,
            seen_at: at,
        }
    }

    #[test]
    fn repeats_within_the_window_are_duplicates() {
        let mut w = Window::new(100, 10, usize::MAX);
        assert!(w.insert(seen("t", "a", 0, 1)));
        assert!(
            w.insert(seen("t", "a", 1, 2)),
            "another part of the same push is new"
        );
        assert!(!w.insert(seen("t", "a", 0, 50)), "a retry is a duplicate");
        assert!(w.insert(seen("u", "a", 0, 3)), "keys are per tenant");
        let mut other_content = seen("t", "a", 0, 4);
        other_content.key.fingerprint = 8;
        assert!(
            w.insert(other_content),
            "the same id with other content is new"
        );
    }

    #[test]
    fn window_is_bounded_by_age_and_count_per_tenant() {
        let mut w = Window::new(100, 3, usize::MAX);
        assert!(w.insert(seen("t", "a", 0, 0)));
        assert!(w.insert(seen("t", "b", 0, 150)));
        // "a" (seen at 0) is older than 150 - 100: forgotten.
        assert!(w.insert(seen("t", "a", 0, 151)));
        assert!(w.insert(seen("t", "c", 0, 152)));
        assert!(w.insert(seen("t", "d", 0, 153)));
        assert!(
            w.insert(seen("t", "b", 0, 154)),
            "evicted by the tenant's count, so new again"
        );
        // Another tenant's traffic does not push out t's keys.
        for i in 0..50 {
            assert!(w.insert(seen("noisy", &format!("n{i}"), 0, 155)));
        }
        assert!(!w.insert(seen("t", "d", 0, 156)), "still remembered");
        assert_eq!(w.evicted_early(), 0);
    }

    #[test]
    fn an_earlier_clock_does_not_shorten_the_window() {
        let mut w = Window::new(100, 10, usize::MAX);
        assert!(w.insert(seen("t", "a", 0, 1_000)));
        // The aggregator's clock steps back: the key is stamped at 1,000, not 10.
        assert!(w.insert(seen("t", "b", 0, 10)));
        assert!(!w.insert(seen("t", "b", 0, 1_099)), "b counts from 1,000");
        assert!(w.insert(seen("t", "b", 0, 1_101)), "and expires 100 later");
    }

    #[test]
    fn the_byte_bound_evicts_oldest_first_and_counts_it() {
        let per_key = entry_bytes(&seen("t", "k00", 0, 0));
        let mut w = Window::new(1_000_000, 1_000, 10 * per_key);
        for i in 0..15 {
            assert!(w.insert(seen(
                if i % 2 == 0 { "t" } else { "u" },
                &format!("k{i:02}"),
                0,
                i
            )));
        }
        assert_eq!(w.len(), 10);
        assert_eq!(w.evicted_early(), 5);
        // k00..k04 are gone (new again), k05..k14 remain.
        assert!(!w.insert(seen("u", "k05", 0, 20)));
        assert!(w.insert(seen("t", "k00", 0, 21)));
    }

    /// The specification as a plain list: the live keys, in the order they were seen.
    #[derive(Default)]
    struct Model {
        live: Vec<(Key, i64)>,
        newest: i64,
    }

    impl Model {
        fn insert(&mut self, key: Key, at: i64, max_age: i64, per_tenant: usize) -> bool {
            self.newest = self.newest.max(at);
            let horizon = self.newest - max_age;
            self.live.retain(|(_, t)| *t >= horizon);
            if self.live.iter().any(|(k, _)| *k == key) {
                return false;
            }
            let tenant = key.tenant.clone();
            self.live.push((key, self.newest));
            while self.live.iter().filter(|(k, _)| k.tenant == tenant).count() > per_tenant {
                let first = self
                    .live
                    .iter()
                    .position(|(k, _)| k.tenant == tenant)
                    .expect("over the bound");
                self.live.remove(first);
            }
            true
        }
    }

    proptest! {
        #[test]
        fn the_window_answers_as_the_model(
            ops in prop::collection::vec((0..3_u8, 0..12_u8, 0..2_u8, 0..3_u32, -30..60_i64), 1..300),
            max_age in 1..200_i64,
            per_tenant in 1..8_usize,
        ) {
            let mut w = Window::new(max_age, per_tenant, usize::MAX);
            let mut m = Model::default();
            let mut clock = 0_i64;
            for (i, (tenant, id, fp, part, step)) in ops.into_iter().enumerate() {
                // The clock mostly advances and sometimes steps back.
                clock += step;
                let key = Key {
                    tenant: format!("t{tenant}"),
                    batch_id: format!("b{id}"),
                    part,
                    fingerprint: u128::from(fp),
                };
                let expected = m.insert(key.clone(), clock, max_age, per_tenant);
                let got = w.insert(Seen { key, offset: i as i64, seen_at: clock });
                prop_assert_eq!(got, expected, "insert {}", i);
            }
            // The same keys are live, with the same times.
            let flat = |k: &Key, t: i64| (t, k.tenant.clone(), k.batch_id.clone(), k.part, k.fingerprint);
            let mut expected: Vec<_> = m.live.iter().map(|(k, t)| flat(k, *t)).collect();
            let mut got: Vec<_> = w.entries().into_iter().map(|s| flat(&s.key, s.seen_at)).collect();
            expected.sort();
            got.sort();
            prop_assert_eq!(got, expected);
        }
    }

    #[test]
    fn the_durable_form_reads_back_what_was_written() {
        // 2026-11-26T23:59:59.999999Z and a key a microsecond later, the next UTC day.
        let day = 20_418_i64;
        let late = (day + 1) * 86_400_000_000_000 - 1_000;
        let mut a = seen("acme", "push-1", 2, late);
        a.key.fingerprint = u128::MAX - 5;
        a.offset = 41;
        let mut b = seen("globex", "push-2", 0, late + 1_000);
        b.offset = 42;
        let batches = to_batches(3, &[b.clone(), a.clone()], Kind::Batch).unwrap();
        assert_eq!(
            batches
                .iter()
                .map(|(d, b)| (*d, b.num_rows()))
                .collect::<Vec<_>>(),
            vec![(day, 1), (day + 1, 1)],
            "one batch per UTC day of seen_at"
        );
        assert_eq!(batches[0].1.schema(), schema());
        let notes = to_batches(3, &[seen("", "", 0, late)], Kind::DeadLetter).unwrap();
        let mut got = Remembered::default();
        for (_, batch) in batches.iter().chain(&notes) {
            read(batch, 3, 0, 0, &mut got).unwrap();
            // Another partition's reader finds none of them.
            let mut other = Remembered::default();
            read(batch, 4, 0, 0, &mut other).unwrap();
            assert!(other.seen.is_empty() && other.dead_lettered.is_empty());
        }
        let got = got.finish();
        assert_eq!(
            got.seen,
            vec![a.clone(), b.clone()],
            "oldest first, every field kept"
        );
        assert_eq!(got.dead_lettered, BTreeSet::from([late]));
        // Keys before `since` and notes before `from_offset` are not needed any more.
        let mut later = Remembered::default();
        for (_, batch) in batches.iter().chain(&notes) {
            read(batch, 3, late + 1, late + 1, &mut later).unwrap();
        }
        let later = later.finish();
        assert_eq!(later.seen, vec![b]);
        assert!(later.dead_lettered.is_empty());
    }

    #[test]
    fn a_damaged_fingerprint_is_an_error_not_a_new_key() {
        let (_, batch) = to_batches(0, &[seen("t", "a", 0, 1)], Kind::Batch)
            .unwrap()
            .remove(0);
        let mut columns = batch.columns().to_vec();
        columns[7] = Arc::new(StringArray::from(vec!["not hex"]));
        let damaged = RecordBatch::try_new(schema(), columns).unwrap();
        let err = read(&damaged, 0, 0, 0, &mut Remembered::default()).unwrap_err();
        assert!(err.to_string().contains("fingerprint \"not hex\""), "{err}");
    }

    #[test]
    fn retention_must_outlast_the_window_by_a_day() {
        let window = Duration::from_secs(15 * 60);
        assert!(check_retention(DEFAULT_RETENTION, window).is_ok());
        assert!(check_retention(window + RETENTION_MARGIN, window).is_ok());
        let err = check_retention(Duration::from_secs(86_400), window).unwrap_err();
        assert_eq!(
            err,
            "storage.retention.idempotency (86400s) must exceed aggregate.idempotency_window \
             (900s) by a day: keys still in the window would be forgotten"
        );
    }
}
