//! Parquet writing: one `writer_properties()` owns every knob; files are sorted by their
//! table's natural key and made durable before they get their final name.

use std::fs::File;
use std::path::Path;

use arrow::compute::{SortColumn, SortOptions, lexsort_to_indices, take_record_batch};
use arrow::record_batch::RecordBatch;
use fail::fail_point;
use nines_model::schema::{SCHEMA_VERSION, sort_key};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};

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
}

/// Every Parquet setting nines uses, in one place.
pub fn writer_properties(p: &Provenance<'_>) -> WriterProperties {
    let kv = |k: &str, v: String| KeyValue::new(format!("nines.{k}"), v);
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("valid level"),
        ))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_key_value_metadata(Some(vec![
            kv("schema_version", SCHEMA_VERSION.to_string()),
            kv("table", p.table.to_owned()),
            kv("topic", p.topic.to_owned()),
            kv("partition", p.partition.to_string()),
            kv("first_offset", p.first_offset.to_string()),
            kv("last_offset", p.last_offset.to_string()),
        ]))
        .build()
}

/// Sorts `batch` by the table's natural key.
pub fn sort_batch(table: &str, batch: &RecordBatch) -> Result<RecordBatch> {
    let key = sort_key(table);
    if key.is_empty() || batch.num_rows() < 2 {
        return Ok(batch.clone());
    }
    let columns = key
        .iter()
        .map(|name| {
            Ok(SortColumn {
                values: batch.column_by_name(name).cloned().ok_or_else(|| {
                    arrow::error::ArrowError::SchemaError(format!("no sort column {name}"))
                })?,
                options: Some(SortOptions::default()),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let indices = lexsort_to_indices(&columns, None)?;
    Ok(take_record_batch(batch, &indices)?)
}

/// Writes `batch` to `tmp`, fsyncs it, renames it to `dest` and fsyncs the directory.
pub fn write_durable(
    tmp: &Path,
    dest: &Path,
    batch: &RecordBatch,
    p: &Provenance<'_>,
) -> Result<()> {
    let sorted = sort_batch(p.table, batch)?;
    let mut file = File::create(tmp).io("creating", tmp)?;
    let mut writer = ArrowWriter::try_new(&mut file, sorted.schema(), Some(writer_properties(p)))
        .map_err(|source| Error::Parquet {
        path: tmp.to_owned(),
        source,
    })?;
    writer
        .write(&sorted)
        .and_then(|_| writer.flush())
        .map_err(|source| Error::Parquet {
            path: tmp.to_owned(),
            source,
        })?;
    fail_point!("store.mid_file", |_| crash("store.mid_file"));
    writer
        .close()
        .map(|_| ())
        .map_err(|source| Error::Parquet {
            path: tmp.to_owned(),
            source,
        })?;
    file.sync_all().io("fsyncing", tmp)?;
    drop(file);
    rename_durable(tmp, dest)
}

/// Renames `tmp` to `dest` and fsyncs the directory so the new name survives a crash.
pub fn rename_durable(tmp: &Path, dest: &Path) -> Result<()> {
    std::fs::rename(tmp, dest).io("renaming", tmp)?;
    let dir = dest.parent().unwrap_or(Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .io("fsyncing directory", dir)
}
