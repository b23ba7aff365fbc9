//! Rendering query results for people (a table) and for programs (CSV, JSON lines).

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow::util::pretty::pretty_format_batches_with_schema;

use crate::Result;

/// How `nines sql` prints results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    #[default]
    Table,
    Csv,
    /// One JSON object per row.
    Json,
}

/// Renders `batches` in `format`.
pub fn render(schema: SchemaRef, batches: &[RecordBatch], format: OutputFormat) -> Result<String> {
    match format {
        OutputFormat::Table => Ok(pretty_format_batches_with_schema(schema, batches)?.to_string()),
        OutputFormat::Csv => {
            let mut out = Vec::new();
            {
                let mut w = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut out);
                if batches.is_empty() {
                    w.write(&RecordBatch::new_empty(schema))?;
                }
                for b in batches {
                    w.write(b)?;
                }
            }
            Ok(String::from_utf8_lossy(&out).into_owned())
        }
        OutputFormat::Json => {
            let mut out = Vec::new();
            {
                let mut w = arrow::json::LineDelimitedWriter::new(&mut out);
                w.write_batches(&batches.iter().collect::<Vec<_>>())?;
                w.finish()?;
            }
            Ok(String::from_utf8_lossy(&out).into_owned())
        }
    }
}
