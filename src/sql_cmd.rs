//! `nines sql`: one statement, printed as a table, CSV or JSON lines.

use std::io::Write;

use anyhow::Context;
use nines_query::{OutputFormat, QueryEngine};
use nines_store::Store;

use crate::config::Config;

pub(crate) async fn run(cfg: &Config, sql: &str, format: OutputFormat) -> anyhow::Result<()> {
    let store = Store::open(&cfg.data_dir).context("opening the data directory")?;
    let engine = QueryEngine::new(&store)?;
    let (schema, batches) = engine.sql(sql).await?;
    let text = nines_query::format::render(schema, &batches, format)?;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    if format == OutputFormat::Table {
        out.write_all(b"\n")?;
    }
    Ok(())
}
