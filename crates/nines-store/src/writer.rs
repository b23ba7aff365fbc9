//! Parquet writing: one `writer_properties()` owns every knob; files are sorted by their
//! table's natural key and made durable before they get their final name.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, StringArray, UInt32Array};
use arrow::compute::{SortColumn, SortOptions, lexsort_to_indices, take_record_batch};
use arrow::datatypes::{
    DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit, TimestampMicrosecondType,
    TimestampNanosecondType,
};
use arrow::record_batch::RecordBatch;
use fail::fail_point;
use nines_model::schema::{SCHEMA_VERSION, sort_key};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::{KeyValue, ParquetMetaData};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::error::IoContext;
use crate::faults::crash;
use crate::{Error, Result};

/// Rows per row group: big enough for good compression, small enough for pruning.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

/// Provenance written into every file's key/value metadata.
#[derive(Debug, Clone)]
pub struct Provenance<'a> {
    pub table: &'a str,
    pub topic: &'a str,
    pub partition: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    /// A file of several partitions flushed together: each `partition:first-last`,
    /// comma-separated (`partition` is then -1 and the offsets their extremes); else empty.
    pub partitions: &'a str,
}

#[cfg(test)]
impl Provenance<'static> {
    /// The provenance of a test's file of `table`: a group of partitions 0 and 1.
    pub(crate) fn of_test(table: &'static str) -> Self {
        Provenance {
            table,
            topic: "t",
            partition: -1,
            first_offset: 0,
            last_offset: 0,
            partitions: "0:0-0,1:0-0",
        }
    }
}

/// The tests' batches: `requests`' sort key (nanosecond times), then an `Int64` column
/// `last` that tells the rows apart.
#[cfg(test)]
pub(crate) fn sort_key_schema(last: &str) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("tenant", DataType::Utf8, false),
        Field::new("service", DataType::Utf8, false),
        Field::new("environment", DataType::Utf8, false),
        Field::new("operation", DataType::Utf8, false),
        Field::new(
            "time",
            DataType::Timestamp(TimeUnit::Nanosecond, Some("+00:00".into())),
            false,
        ),
        Field::new(last, DataType::Int64, false),
    ]))
}

/// The tests' seeded LCG: each call answers the next value below its argument.
#[cfg(test)]
pub(crate) fn lcg(seed: u64) -> impl FnMut(u64) -> u64 {
    let mut x = seed;
    move |m| {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 33) % m
    }
}

/// Every Parquet setting nines uses, in one place.
pub fn writer_properties(p: &Provenance<'_>) -> WriterProperties {
    let kv = |k: &str, v: String| KeyValue::new(format!("nines.{k}"), v);
    let mut builder = WriterProperties::builder();
    let def = nines_model::schema::table(p.table);
    let plain = def.map_or(&[][..], |t| t.without_dictionary);
    let delta = def.map_or(&[][..], |t| t.delta_encoded);
    let level = def.map_or(nines_model::schema::DEFAULT_ZSTD_LEVEL, |t| t.zstd_level);
    for column in plain.iter().chain(delta) {
        builder = builder.set_column_dictionary_enabled(ColumnPath::from(*column), false);
    }
    for column in delta {
        builder =
            builder.set_column_encoding(ColumnPath::from(*column), Encoding::DELTA_BINARY_PACKED);
    }
    for column in def.map_or(&[][..], |t| t.uncompressed) {
        builder =
            builder.set_column_compression(ColumnPath::from(*column), Compression::UNCOMPRESSED);
    }
    builder
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(level).expect("a valid ZSTD level in the table's definition"),
        ))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_key_value_metadata(Some(
            vec![
                kv("schema_version", SCHEMA_VERSION.to_string()),
                kv("table", p.table.to_owned()),
                kv("topic", p.topic.to_owned()),
                kv("partition", p.partition.to_string()),
                kv("first_offset", p.first_offset.to_string()),
                kv("last_offset", p.last_offset.to_string()),
            ]
            .into_iter()
            .chain((!p.partitions.is_empty()).then(|| kv("partitions", p.partitions.to_owned())))
            .collect(),
        ))
        .build()
}

/// Rows of a sorted part taken and written at a time: the sorted copy the writer holds is
/// this many rows, not the whole part. A full buffer's sorted copy (200,000 rows of
/// `requests`) was ~28 MB of the aggregator's peak heap on a backlog (BENCHMARKS.md).
const SORTED_SLICE_ROWS: usize = 16 * 1024;

/// The schema a file of batches in `schema` is written with: a dictionary-encoded column
/// (the aggregator keeps a record's resource so, [`nines_model::flush::TableBatch`]) as
/// its values' type, so every file of a table has the table's own schema.
pub fn stored_schema(schema: &SchemaRef) -> SchemaRef {
    if !schema
        .fields()
        .iter()
        .any(|f| matches!(f.data_type(), DataType::Dictionary(..)))
    {
        return schema.clone();
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Dictionary(_, values) => f.as_ref().clone().with_data_type(*values.clone()),
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// `batch` in `schema` (its [`stored_schema`]): dictionary columns cast to their values.
fn stored(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    if batch.schema_ref() == schema {
        return Ok(batch.clone());
    }
    Ok(nines_model::schema::conform(batch, schema)?)
}

/// The row order that sorts `batch` by the table's natural key (ties in input order), or
/// `None` when it is already in that order (no key, fewer than two rows).
fn sort_order(table: &str, batch: &RecordBatch) -> Result<Option<UInt32Array>> {
    let key = sort_key(table);
    if key.is_empty() || batch.num_rows() < 2 {
        return Ok(None);
    }
    let columns = key
        .iter()
        .map(|name| {
            batch.column_by_name(name).cloned().ok_or_else(|| {
                arrow::error::ArrowError::SchemaError(format!("no sort column {name}")).into()
            })
        })
        .collect::<Result<Vec<ArrayRef>>>()?;
    let indices = match ranked_order(&columns) {
        Some(order) => UInt32Array::from(order),
        None => {
            let columns = columns
                .into_iter()
                .map(|values| SortColumn {
                    values,
                    options: Some(SortOptions::default()),
                })
                .collect::<Vec<_>>();
            lexsort_to_indices(&columns, None)?
        }
    };
    Ok(Some(indices))
}

/// The row order that sorts `columns` lexicographically (ascending, ties in input order),
/// without comparing strings row by row: each string column becomes its values' dense ranks
/// (a handful of distinct tenants, services, operations per file), the ranks are packed
/// into one `u64`, and the rows are sorted by `(packed ranks, integer column)`, a sort of
/// plain integers. `None` for anything else (nulls, other types, more than one integer
/// column, ranks that do not fit 64 bits): the caller falls back to arrow's `lexsort`.
/// The profile of the aggregator put three quarters of its Parquet time in `lexsort`'s
/// string comparisons (BENCHMARKS.md).
fn ranked_order(columns: &[ArrayRef]) -> Option<Vec<u32>> {
    let (last, strings) = columns.split_last()?;
    let n = last.len();
    if n > u32::MAX as usize || columns.iter().any(|c| c.null_count() > 0) {
        return None;
    }
    let mut packed = vec![0_u64; n];
    let mut bits = 0_u32;
    for c in strings {
        let (ranks, distinct) = string_ranks(c)?;
        let width = u32::BITS - (distinct.max(1) - 1).leading_zeros();
        bits += width;
        if bits > u64::BITS {
            return None;
        }
        for (p, r) in packed.iter_mut().zip(ranks) {
            *p = (*p << width) | u64::from(r);
        }
    }
    // Order-preserving map of a signed integer onto u64.
    let flip = |v: i64| (v as u64) ^ (1 << 63);
    let tail: Vec<u64> = match last.data_type() {
        DataType::Int64 => last
            .as_primitive_opt::<Int64Type>()?
            .values()
            .iter()
            .map(|&v| flip(v))
            .collect(),
        DataType::Timestamp(TimeUnit::Microsecond, _) => last
            .as_primitive_opt::<TimestampMicrosecondType>()?
            .values()
            .iter()
            .map(|&v| flip(v))
            .collect(),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => last
            .as_primitive_opt::<TimestampNanosecondType>()?
            .values()
            .iter()
            .map(|&v| flip(v))
            .collect(),
        DataType::Utf8 | DataType::Dictionary(..) => {
            let (ranks, _) = string_ranks(last)?;
            ranks.into_iter().map(u64::from).collect()
        }
        _ => return None,
    };
    if bits <= 32 {
        // The usual case: (ranks, integer, row) as one u128, compared in one step and 16
        // bytes a row instead of 24 (the sort's share of the aggregator: BENCHMARKS.md).
        let mut keys: Vec<u128> = (0..n)
            .map(|i| u128::from(packed[i]) << 96 | u128::from(tail[i]) << 32 | i as u128)
            .collect();
        keys.sort_unstable();
        return Some(keys.into_iter().map(|k| k as u32).collect());
    }
    let mut rows: Vec<(u64, u64, u32)> = (0..n).map(|i| (packed[i], tail[i], i as u32)).collect();
    rows.sort_unstable();
    Some(rows.into_iter().map(|(_, _, i)| i).collect())
}

/// [`dense_ranks`] of a string column, or of a dictionary of strings (ranked by its
/// values: a handful, whatever the rows), with how many ranks there are; `None` for
/// anything else.
fn string_ranks(c: &ArrayRef) -> Option<(Vec<u32>, u32)> {
    if let Some(strings) = c.as_string_opt::<i32>() {
        return Some(dense_ranks(strings));
    }
    let dictionary = c.as_any_dictionary_opt()?;
    let (by_value, distinct) = dense_ranks(dictionary.values().as_string_opt::<i32>()?);
    let ranks = dictionary
        .normalized_keys()
        .into_iter()
        .map(|k| by_value[k])
        .collect();
    Some((ranks, distinct))
}

/// Each value's rank among the distinct values of `a` (byte order, as arrow compares
/// strings), and how many distinct values there are. Runs of equal values, the usual shape
/// of a flush (one resource per record), cost one comparison per row instead of a hash.
fn dense_ranks(a: &StringArray) -> (Vec<u32>, u32) {
    let mut ids: HashMap<&str, u32> = HashMap::new();
    let mut distinct: Vec<&str> = Vec::new();
    let mut out = Vec::with_capacity(a.len());
    let mut last: Option<(&str, u32)> = None;
    for v in a.iter() {
        let v = v.unwrap_or_default();
        let id = match last {
            Some((prev, id)) if prev == v => id,
            _ => {
                let id = *ids.entry(v).or_insert_with(|| {
                    distinct.push(v);
                    (distinct.len() - 1) as u32
                });
                last = Some((v, id));
                id
            }
        };
        out.push(id);
    }
    let mut order: Vec<u32> = (0..distinct.len() as u32).collect();
    order.sort_unstable_by_key(|&i| distinct[i as usize]);
    let mut rank = vec![0_u32; distinct.len()];
    for (r, &i) in order.iter().enumerate() {
        rank[i as usize] = r as u32;
    }
    for id in &mut out {
        *id = rank[*id as usize];
    }
    (out, distinct.len() as u32)
}

/// A Parquet file encoded in memory, and the footer its writer wrote: the row groups and
/// each column chunk's statistics (the Delta `add` action's statistics are read from it).
#[derive(Debug)]
pub struct Encoded {
    pub bytes: Vec<u8>,
    pub metadata: ParquetMetaData,
}

/// Encodes `batch`, sorted by its table's natural key, as one Parquet file in memory (the
/// hot-path bench's measure of the writer; the store encodes into place,
/// `Store::put_encoded`).
pub fn encode(batch: &RecordBatch, p: &Provenance<'_>) -> Result<Encoded> {
    encode_parts(&[batch], p)
}

/// Encodes `parts` (one schema) as one Parquet file in memory: [`encode_parts_into`] a
/// `Vec`.
pub fn encode_parts(parts: &[&RecordBatch], p: &Provenance<'_>) -> Result<Encoded> {
    let bytes: usize = parts.iter().map(|b| b.get_array_memory_size()).sum();
    let mut out = Vec::with_capacity(bytes / 4);
    let (metadata, _) = encode_parts_into(parts, p, &mut out)?;
    Ok(Encoded {
        bytes: out,
        metadata,
    })
}

/// Where a file is encoded: a file on the local disk, or a `Vec` put to object storage.
pub type Sink<'a> = &'a mut (dyn Write + Send);

/// Writes one Parquet file at `path` on a local disk with `encode` and makes it durable: the
/// file, its directory, and that directory's parent when this created it (a new `date=`
/// partition). The row groups go to the file as they are encoded, so no copy of the file is
/// held in memory (encoded into a `Vec` first, it was 13–21 MB of the aggregator's peak heap
/// on a backlog, BENCHMARKS.md, nineteenth part). The file must not exist; if encoding fails, what was written
/// is removed. Answers the footer and the file's size. No commit names the file yet.
pub fn write_file(
    path: &Path,
    encode: impl FnOnce(Sink<'_>) -> Result<(ParquetMetaData, usize)>,
) -> Result<(ParquetMetaData, usize)> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let new_dir = !dir.exists();
    if new_dir {
        std::fs::create_dir_all(dir).io("creating directory", dir)?;
    }
    let mut file = File::create_new(path).io("creating", path)?;
    let encoded = encode(&mut file).and_then(|done| {
        file.sync_all().io("fsyncing", path)?;
        Ok(done)
    });
    if encoded.is_err() {
        let _ = std::fs::remove_file(path);
    }
    let encoded = encoded?;
    sync_dir(dir)?;
    if new_dir {
        sync_dir(dir.parent().unwrap_or(Path::new(".")))?;
    }
    Ok(encoded)
}

/// Writes `slices`, already in the table's order (compaction's merge), as one Parquet file
/// of `schema` into `sink`, flushed (not synced); answers its footer and the bytes written.
pub fn encode_sorted_into(
    schema: &SchemaRef,
    slices: impl Iterator<Item = Result<RecordBatch>>,
    p: &Provenance<'_>,
    sink: Sink<'_>,
) -> Result<(ParquetMetaData, usize)> {
    encode_with(schema, p, sink, |writer| {
        for slice in slices {
            writer.write(&slice?).map_err(parquet_err(p))?;
        }
        Ok(())
    })
}

/// Encodes `parts` (one schema) as one Parquet file into `sink`, flushed (not synced), and
/// answers its footer and the bytes written. Parts that fit one row group together
/// are sorted together into it (readers pay per row group: four small ones cost a query more
/// than one); larger parts are each sorted apart, in row groups of their own, so a file of
/// several partitions' rows never holds a sorted copy of more than one part (a backlog's
/// group of full buffers, concatenated, took the aggregator's peak RSS from ~210 to ~300+ MiB).
pub fn encode_parts_into(
    parts: &[&RecordBatch],
    p: &Provenance<'_>,
    sink: Sink<'_>,
) -> Result<(ParquetMetaData, usize)> {
    let first = parts.first().expect("a file of at least one batch");
    let rows: usize = parts.iter().map(|b| b.num_rows()).sum();
    let together;
    let parts: Vec<&RecordBatch> = if parts.len() > 1 && rows <= ROW_GROUP_ROWS {
        together = arrow::compute::concat_batches(&first.schema(), parts.iter().copied())?;
        vec![&together]
    } else {
        parts.to_vec()
    };
    let schema = stored_schema(&first.schema());
    encode_with(&schema, p, sink, |writer| {
        for part in parts {
            match sort_order(p.table, part)? {
                None => writer
                    .write(&stored(part, &schema)?)
                    .map_err(parquet_err(p))?,
                // In slices of the sorted order, each taken (and its dictionaries cast to
                // their values) as it is written.
                Some(order) => {
                    for start in (0..order.len()).step_by(SORTED_SLICE_ROWS) {
                        let slice = order.slice(start, SORTED_SLICE_ROWS.min(order.len() - start));
                        let taken = take_record_batch(part, &slice)?;
                        writer
                            .write(&stored(&taken, &schema)?)
                            .map_err(parquet_err(p))?;
                    }
                }
            }
            writer.flush().map_err(parquet_err(p))?;
        }
        Ok(())
    })
}

/// One Parquet file of `schema` into `sink` with [`writer_properties`]: `body` writes its
/// rows; answers the footer and the bytes written.
fn encode_with(
    schema: &SchemaRef,
    p: &Provenance<'_>,
    sink: Sink<'_>,
    body: impl FnOnce(&mut ArrowWriter<Sink<'_>>) -> Result<()>,
) -> Result<(ParquetMetaData, usize)> {
    let mut writer = ArrowWriter::try_new(sink, schema.clone(), Some(writer_properties(p)))
        .map_err(parquet_err(p))?;
    body(&mut writer)?;
    fail_point!("store.mid_file", |_| crash("store.mid_file"));
    let metadata = writer.finish().map_err(parquet_err(p))?;
    Ok((metadata, writer.bytes_written()))
}

/// A file of `groups`, each its own row group, written as given (not sorted) with `p`'s
/// properties: the merge tests' inputs.
#[cfg(test)]
pub(crate) fn encode_row_groups(groups: &[RecordBatch], p: &Provenance<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    encode_with(&groups[0].schema(), p, &mut out, |writer| {
        for g in groups {
            writer.write(g).map_err(parquet_err(p))?;
            writer.flush().map_err(parquet_err(p))?;
        }
        Ok(())
    })
    .expect("a test file");
    out
}

/// A Parquet error writing a file of `p`'s table.
fn parquet_err(p: &Provenance<'_>) -> impl Fn(parquet::errors::ParquetError) -> Error {
    let table = PathBuf::from(p.table);
    move |source| Error::Parquet {
        path: table.clone(),
        source,
    }
}

/// Fsyncs the file at `path` and its directory, so a file written through the local object
/// store (which does not fsync) survives a power loss before the commit that names it.
pub fn sync_file_and_dir(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .io("fsyncing", path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Fsyncs a directory, so the entries created in it survive a power loss.
pub fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(test)]
    SYNCED_DIRS
        .lock()
        .expect("not poisoned")
        .push(dir.to_owned());
    File::open(dir)
        .and_then(|d| d.sync_all())
        .io("fsyncing directory", dir)
}

/// Every directory [`sync_dir`] synced (what a power cut cannot be made to show in a test).
#[cfg(test)]
pub(crate) static SYNCED_DIRS: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

#[cfg(test)]
mod tests {
    use arrow::compute::cast;
    use std::sync::Arc;

    use arrow::array::{Int64Array, TimestampNanosecondArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;
    use nines_model::schema::REQUESTS;

    /// A batch in the shape of `requests`' sort key, from a seeded LCG: few distinct strings
    /// in runs (as records arrive) and many equal times, so ties are common.
    fn batch(n: usize, seed: u64) -> RecordBatch {
        shaped(n, seed, false)
    }

    /// [`batch`], or with `wide` thousands of distinct tenants, services and operations: more
    /// than 32 bits of packed ranks.
    fn shaped(n: usize, seed: u64, wide: bool) -> RecordBatch {
        let mut next = lcg(seed);
        let (mut tenant, mut service) = (Vec::new(), Vec::new());
        let (mut operation, mut time) = (Vec::new(), Vec::new());
        for i in 0..n {
            if wide {
                tenant.push(format!("t{}", next(4096)));
                service.push(format!("s{}", next(4096)));
            } else if i % 50 == 0 || tenant.is_empty() {
                tenant.push(format!("t{}", next(3)));
                service.push(["checkout", "cart", "", "auth-é"][next(4) as usize].to_owned());
            } else {
                tenant.push(tenant[i - 1].clone());
                service.push(service[i - 1].clone());
            }
            operation.push(format!("GET /{}", next(if wide { 4096 } else { 7 })));
            time.push(next(20) as i64 - 10);
        }
        RecordBatch::try_new(
            sort_key_schema("row"),
            vec![
                Arc::new(StringArray::from(tenant)),
                Arc::new(StringArray::from(service)),
                Arc::new(StringArray::from(vec!["prod"; n])),
                Arc::new(StringArray::from(operation)),
                Arc::new(TimestampNanosecondArray::from(time).with_timezone("+00:00")),
                Arc::new(Int64Array::from_iter_values(0..n as i64)),
            ],
        )
        .unwrap()
    }

    /// The key columns of every row, in order, as text.
    fn keys(b: &RecordBatch) -> Vec<String> {
        (0..b.num_rows())
            .map(|i| {
                sort_key(REQUESTS)
                    .iter()
                    .map(|c| {
                        arrow::util::display::array_value_to_string(b.column_by_name(c).unwrap(), i)
                            .unwrap()
                    })
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect()
    }

    /// Sorts `batch` by the table's natural key, as a file's writer does.
    fn sort_batch(table: &str, batch: &RecordBatch) -> Result<RecordBatch> {
        Ok(match sort_order(table, batch)? {
            Some(order) => take_record_batch(batch, &order)?,
            None => batch.clone(),
        })
    }

    /// `b` sorted by the table's key with Arrow's own lexsort: the oracle of our sort.
    fn lexsorted(b: &RecordBatch) -> RecordBatch {
        let columns: Vec<SortColumn> = sort_key(REQUESTS)
            .iter()
            .map(|c| SortColumn {
                values: b.column_by_name(c).unwrap().clone(),
                options: Some(SortOptions::default()),
            })
            .collect();
        take_record_batch(b, &lexsort_to_indices(&columns, None).unwrap()).unwrap()
    }

    #[test]
    fn ranked_sort_orders_like_lexsort_and_keeps_ties_in_input_order() {
        // The wide shape needs more than 32 bits of ranks: the tuple sort, not the u128 one.
        let wide = shaped(3_000, 1, true);
        let bits: u32 = ["tenant", "service", "operation"]
            .iter()
            .map(|c| dense_ranks(wide.column_by_name(c).unwrap().as_string::<i32>()).1)
            .map(|distinct| u32::BITS - (distinct - 1).leading_zeros())
            .sum();
        assert!(bits > 32, "{bits} bits");
        for (seed, wide) in (1..20).flat_map(|seed| [(seed, false), (seed, true)]) {
            let b = shaped(3_000, seed, wide);
            let fast = sort_batch(REQUESTS, &b).unwrap();
            let slow = lexsorted(&b);
            assert_eq!(keys(&fast), keys(&slow), "seed {seed}, wide {wide}");
            // Equal keys keep their input order (the `row` column rises within a tie).
            let rows = fast
                .column_by_name("row")
                .unwrap()
                .as_primitive::<Int64Type>();
            let k = keys(&fast);
            for i in 1..k.len() {
                if k[i] == k[i - 1] {
                    assert!(rows.value(i) > rows.value(i - 1), "seed {seed} row {i}");
                }
            }
        }
    }

    /// A batch whose string columns are dictionaries (as a flush carries a record's
    /// resource) is written as the same file, byte for byte, as the batch with plain
    /// strings: the table's schema, the same sort, the same encoding. Also across parts
    /// with different dictionaries, concatenated into one row group or not.
    #[test]
    fn dictionary_columns_are_written_as_their_values() {
        let p = Provenance::of_test(REQUESTS);
        let as_dictionaries = |b: &RecordBatch, columns: &[&str]| {
            let key = DataType::UInt32;
            let fields: Vec<Field> = b
                .schema()
                .fields()
                .iter()
                .map(|f| {
                    let mut f = f.as_ref().clone();
                    if columns.contains(&f.name().as_str()) {
                        f = f.with_data_type(DataType::Dictionary(
                            Box::new(key.clone()),
                            Box::new(DataType::Utf8),
                        ));
                    }
                    f
                })
                .collect();
            let schema = Arc::new(Schema::new(fields));
            let cols = b
                .columns()
                .iter()
                .zip(schema.fields())
                .map(|(c, f)| cast(c, f.data_type()).unwrap())
                .collect();
            RecordBatch::try_new(schema, cols).unwrap()
        };
        for (a, b) in [
            (3_000, 2_000),
            (ROW_GROUP_ROWS - 10, 20),
            (ROW_GROUP_ROWS + 7, 1),
        ] {
            let (a, b) = (batch(a, 1), batch(b, 2));
            let plain = encode_parts(&[&a, &b], &p).unwrap();
            // tenant and service sort, environment does not; the wide shape's 4096 values
            // too.
            for columns in [&["tenant", "service", "environment"][..], &["operation"]] {
                let (da, db) = (as_dictionaries(&a, columns), as_dictionaries(&b, columns));
                assert!(matches!(
                    da.schema().field_with_name(columns[0]).unwrap().data_type(),
                    DataType::Dictionary(..)
                ));
                let dictionary = encode_parts(&[&da, &db], &p).unwrap();
                assert!(
                    dictionary.bytes == plain.bytes,
                    "{columns:?}, {} + {} rows",
                    a.num_rows(),
                    b.num_rows()
                );
                assert_eq!(stored_schema(&da.schema()), a.schema());
                // The ranked sort took the dictionaries, not arrow's lexsort fallback.
                let key: Vec<ArrayRef> = sort_key(REQUESTS)
                    .iter()
                    .map(|c| da.column_by_name(c).unwrap().clone())
                    .collect();
                assert!(ranked_order(&key).is_some(), "{columns:?}");
            }
        }
        let wide = shaped(3_000, 3, true);
        let dictionary = as_dictionaries(&wide, &["tenant", "service", "operation"]);
        assert!(
            encode(&dictionary, &p).unwrap().bytes == encode(&wide, &p).unwrap().bytes,
            "more than 32 bits of ranks"
        );
    }

    /// A file that fails to encode (here a part of another schema) is not left behind under
    /// its name, and the error says so.
    #[test]
    fn a_file_that_fails_to_encode_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("date=2026-01-02/x.parquet");
        let good = batch(100, 1);
        let other = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)])),
            vec![Arc::new(Int64Array::from(vec![1, 2]))],
        )
        .unwrap();
        let failed = write_file(&path, |sink| {
            encode_parts_into(&[&good, &other], &Provenance::of_test(REQUESTS), sink)
        });
        assert!(failed.is_err());
        assert!(!path.exists(), "the partial file is removed");
        let (metadata, size) = write_file(&path, |sink| {
            encode_parts_into(&[&good], &Provenance::of_test(REQUESTS), sink)
        })
        .unwrap();
        assert_eq!(metadata.file_metadata().num_rows(), 100);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), size as u64);
    }

    /// Each table's files get the ZSTD level its definition names (a level ZSTD accepts),
    /// on every column but those it leaves uncompressed; the store's own table gets the
    /// default.
    #[test]
    fn each_table_is_compressed_at_its_defined_level() {
        let props = |table: &str| {
            writer_properties(&Provenance {
                table,
                topic: "t",
                partition: 0,
                first_offset: 0,
                last_offset: 0,
                partitions: "",
            })
        };
        let level_of =
            |table: &str, column: &str| match props(table).compression(&ColumnPath::from(column)) {
                Compression::ZSTD(l) => l.compression_level(),
                other => panic!("{table}.{column}: {other:?}"),
            };
        for def in &nines_model::schema::TABLE_DEFS {
            for field in (def.schema)().fields() {
                if def.uncompressed.contains(&field.name().as_str()) {
                    let got = props(def.name).compression(&ColumnPath::from(field.name().as_str()));
                    assert_eq!(
                        got,
                        Compression::UNCOMPRESSED,
                        "{}.{}",
                        def.name,
                        field.name()
                    );
                } else {
                    assert_eq!(level_of(def.name, field.name()), def.zstd_level);
                }
            }
        }
        assert_eq!(
            props("requests").compression(&ColumnPath::from("service")),
            Compression::UNCOMPRESSED
        );
        // The decision of issue 16 (BENCHMARKS.md): raw requests at 1, the rest at 3.
        assert_eq!(level_of("requests", "trace_id"), 1);
        assert_eq!(level_of("sli_1m", "latency_sketch"), 3);
        assert_eq!(level_of("idempotency", "batch_id"), 3);
    }

    /// Parts that fit one row group together are sorted together into it; larger ones get
    /// row groups of their own, each sorted apart.
    #[test]
    fn parts_share_a_row_group_only_when_they_fit_one() {
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let p = Provenance::of_test(REQUESTS);
        // Each row group's sort keys, read back by the parquet crate's reader.
        let row_groups = |encoded: Encoded| -> Vec<Vec<String>> {
            let bytes = encoded.bytes;
            let mut file = tempfile::tempfile().unwrap();
            std::io::Write::write_all(&mut file, &bytes).unwrap();
            let n = ParquetRecordBatchReaderBuilder::try_new(file.try_clone().unwrap())
                .unwrap()
                .metadata()
                .num_row_groups();
            (0..n)
                .map(|i| {
                    let reader =
                        ParquetRecordBatchReaderBuilder::try_new(file.try_clone().unwrap())
                            .unwrap()
                            .with_row_groups(vec![i])
                            .build()
                            .unwrap();
                    reader.flat_map(|b| keys(&b.unwrap())).collect()
                })
                .collect()
        };
        let (a, b) = (batch(3_000, 1), batch(2_000, 2));
        let both = arrow::compute::concat_batches(&a.schema(), [&a, &b]).unwrap();
        let got = row_groups(encode_parts(&[&a, &b], &p).unwrap());
        assert_eq!(got, vec![keys(&lexsorted(&both))]);

        let (a, b) = (batch(ROW_GROUP_ROWS - 10, 3), batch(20, 4));
        let got = row_groups(encode_parts(&[&a, &b], &p).unwrap());
        let want = vec![keys(&lexsorted(&a)), keys(&lexsorted(&b))];
        assert_eq!(got.len(), 2);
        assert!(got == want, "each part sorted in a row group of its own");

        // A part of more rows than a row group, taken and written in slices of its sorted
        // order: one sorted run over both row groups.
        let c = batch(ROW_GROUP_ROWS + 5_000, 5);
        let got = row_groups(encode_parts(&[&c], &p).unwrap());
        let lengths: Vec<usize> = got.iter().map(Vec::len).collect();
        assert_eq!(lengths, [ROW_GROUP_ROWS, 5_000]);
        assert!(
            got.concat() == keys(&lexsorted(&c)),
            "sorted across slices and row groups"
        );
    }

    #[test]
    fn a_hand_sorted_example() {
        let tenant: ArrayRef = Arc::new(StringArray::from(vec!["t1", "t0", "t1", "t1"]));
        let op: ArrayRef = Arc::new(StringArray::from(vec!["b", "z", "a", "b"]));
        let time: ArrayRef = Arc::new(Int64Array::from(vec![5, 9, 7, -3]));
        // (t0,z,9) < (t1,a,7) < (t1,b,-3) < (t1,b,5)
        assert_eq!(ranked_order(&[tenant, op, time]), Some(vec![1, 2, 3, 0]));
    }

    #[test]
    fn nulls_fall_back_to_lexsort() {
        let a: ArrayRef = Arc::new(StringArray::from(vec![Some("b"), None, Some("a")]));
        let t: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 3]));
        assert_eq!(ranked_order(&[a, t]), None);
    }

    #[test]
    fn dense_ranks_follow_byte_order() {
        let a = StringArray::from(vec!["b", "b", "a", "é", "B", "a"]);
        let (ranks, distinct) = dense_ranks(&a);
        assert_eq!(distinct, 4);
        // Byte order: "B" < "a" < "b" < "é".
        assert_eq!(ranks, vec![2, 2, 1, 3, 0, 1]);
    }
}
