//! `nines sql`: statements from the argument or from standard input (`;`-terminated, several
//! on a line if need be), read-only and within `query.limits` like every other door; results
//! as a table, CSV, a JSON array, JSON lines or an Arrow IPC stream.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::Context;
use nines_query::{OutputFormat, Runner, Scope};

use crate::config::Config;

pub(crate) async fn run(
    cfg: &Config,
    sql: Option<&str>,
    format: OutputFormat,
) -> anyhow::Result<()> {
    let store = crate::roles::open_store(cfg).await?;
    let engine = nines_query::QueryEngine::new(&store).await?;
    let runner = Runner::new(engine, cfg.query.limits.clone());
    if let Some(sql) = sql {
        return match execute(&runner, sql, format).await {
            Ok(()) => Ok(()),
            Err(e) => {
                // One line a person can read, and nothing else.
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        };
    }
    interactive(&runner, format).await
}

/// Runs the statements of `sql` (the operator's CLI sees every tenant) and prints each
/// result.
async fn execute(
    runner: &Runner,
    sql: &str,
    format: OutputFormat,
) -> Result<(), nines_query::Error> {
    let answers = runner.run("cli", &Scope::All, sql).await?;
    let mut out = std::io::stdout().lock();
    for a in answers {
        let mut bytes = Vec::new();
        nines_query::format::write(a.schema, &a.batches, format, &mut bytes)?;
        if matches!(format, OutputFormat::Table | OutputFormat::Json) {
            bytes.push(b'\n');
        }
        // A closed pipe (`| head`) ends the output, not with a panic.
        if out.write_all(&bytes).and_then(|()| out.flush()).is_err() {
            break;
        }
    }
    Ok(())
}

/// Reads statements until end of input; a failing statement prints its error and the session
/// goes on. Exits non-zero if any statement failed.
async fn interactive(runner: &Runner, format: OutputFormat) -> anyhow::Result<()> {
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
            let sql = std::mem::take(&mut pending);
            if !sql.trim().trim_end_matches(';').trim().is_empty()
                && let Err(e) = execute(runner, &sql, format).await
            {
                eprintln!("error: {e}");
                failed += 1;
            }
        }
        prompt(!pending.trim().is_empty());
    }
    if !pending.trim().is_empty()
        && let Err(e) = execute(runner, &pending, format).await
    {
        eprintln!("error: {e}");
        failed += 1;
    }
    if failed > 0 {
        eprintln!("error: {failed} statement(s) failed");
        std::process::exit(1);
    }
    Ok(())
}
