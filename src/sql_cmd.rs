//! `nines sql`: one statement (argument) or a session reading `;`-terminated statements from
//! standard input; results as a table, CSV or JSON lines.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::Context;
use nines_query::{OutputFormat, QueryEngine};

use crate::config::Config;

pub(crate) async fn run(
    cfg: &Config,
    sql: Option<&str>,
    format: OutputFormat,
) -> anyhow::Result<()> {
    let store = crate::roles::open_store(cfg).await?;
    let engine = QueryEngine::new(&store).await?;
    if let Some(sql) = sql {
        return execute(&engine, sql, format).await;
    }
    interactive(&engine, format).await
}

async fn execute(engine: &QueryEngine, sql: &str, format: OutputFormat) -> anyhow::Result<()> {
    let (schema, batches) = engine.sql(sql).await?;
    let text = nines_query::format::render(schema, &batches, format)?;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    if format == OutputFormat::Table {
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// Reads statements until end of input; a failing statement prints its error and the session
/// goes on. Exits non-zero if any statement failed.
async fn interactive(engine: &QueryEngine, format: OutputFormat) -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    let tty = stdin.is_terminal();
    let prompt = |continuation: bool| {
        if tty {
            eprint!("{}", if continuation { "   ...> " } else { "nines> " });
        }
    };
    let (mut pending, mut failed) = (String::new(), 0_usize);
    prompt(false);
    for line in stdin.lock().lines() {
        let line = line.context("reading standard input")?;
        pending.push_str(&line);
        pending.push('\n');
        if line.trim_end().ends_with(';') {
            let sql = pending.trim().trim_end_matches(';').to_owned();
            pending.clear();
            if !sql.is_empty()
                && let Err(e) = execute(engine, &sql, format).await
            {
                eprintln!("error: {e:#}");
                failed += 1;
            }
        }
        prompt(!pending.trim().is_empty());
    }
    if !pending.trim().is_empty()
        && let Err(e) = execute(engine, pending.trim(), format).await
    {
        eprintln!("error: {e:#}");
        failed += 1;
    }
    anyhow::ensure!(failed == 0, "{failed} statement(s) failed");
    Ok(())
}
