//! Rendering query results for people (a table) and for programs (CSV, JSON, JSON lines,
//! Arrow IPC).

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow::util::pretty::pretty_format_batches_with_schema;

use crate::Result;

/// How results are written (`nines sql --format`, `POST /v1/sql`'s `format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    #[default]
    Table,
    Csv,
    /// One JSON array of objects, one per row (DuckDB's and datafusion-cli's `json`).
    Json,
    /// One JSON object per row, one per line.
    Jsonl,
    /// An Arrow IPC stream (schema first, so an empty result still carries it).
    Arrow,
}

impl OutputFormat {
    /// The format named `name` (`table`, `csv`, `json`, `jsonl`, `arrow`).
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "table" => Self::Table,
            "csv" => Self::Csv,
            "json" => Self::Json,
            "jsonl" => Self::Jsonl,
            "arrow" => Self::Arrow,
            _ => return None,
        })
    }

    /// The HTTP content type of the format.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Table => "text/plain; charset=utf-8",
            Self::Csv => "text/csv; charset=utf-8",
            Self::Json => "application/json",
            Self::Jsonl => "application/x-ndjson",
            Self::Arrow => "application/vnd.apache.arrow.stream",
        }
    }
}

/// Writes `batches` in `format`.
pub fn write(
    schema: SchemaRef,
    batches: &[RecordBatch],
    format: OutputFormat,
    out: &mut Vec<u8>,
) -> Result<()> {
    match format {
        OutputFormat::Table => {
            let table = pretty_format_batches_with_schema(schema, batches)?;
            out.extend_from_slice(table.to_string().as_bytes());
        }
        OutputFormat::Csv => {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(out);
            if batches.is_empty() {
                w.write(&RecordBatch::new_empty(schema))?;
            }
            for b in batches {
                w.write(b)?;
            }
        }
        OutputFormat::Json => {
            let mut w = arrow::json::ArrayWriter::new(out);
            w.write_batches(&batches.iter().collect::<Vec<_>>())?;
            // `[]` for an empty result.
            w.finish()?;
        }
        OutputFormat::Jsonl => {
            let mut w = arrow::json::LineDelimitedWriter::new(out);
            w.write_batches(&batches.iter().collect::<Vec<_>>())?;
            w.finish()?;
        }
        OutputFormat::Arrow => {
            let mut w = arrow::ipc::writer::StreamWriter::try_new(out, &schema)?;
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
        }
    }
    Ok(())
}

/// Renders `batches` in a text `format` (Arrow IPC comes out lossily: use [`write`]).
pub fn render(schema: SchemaRef, batches: &[RecordBatch], format: OutputFormat) -> Result<String> {
    let mut out = Vec::new();
    write(schema, batches, format, &mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}
