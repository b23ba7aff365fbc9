//! `nines slo check | status | history`: OpenSLO definitions (files, or every `.yaml` /
//! `.yml` under `slo.dir`) evaluated over the tables (docs/slo.md).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use nines_query::QueryEngine;
use nines_query::slo_source;
use nines_slo::eval::{self, Options, Report};
use nines_slo::model::Slo;
use nines_slo::openslo::{Catalog, LoadError};
use nines_slo::window::rfc3339;
use serde_json::{Map, Value};

use crate::config::Config;
use crate::rows::{self, num};

/// Every definition file under `paths` (files as given; directories walked for `.yaml` and
/// `.yml`), in name order.
pub(crate) fn definition_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut stack = vec![p.clone()];
            while let Some(dir) = stack.pop() {
                let entries = std::fs::read_dir(&dir)
                    .with_context(|| format!("reading {}", dir.display()))?;
                for e in entries {
                    let path = e?.path();
                    if path.is_dir() {
                        stack.push(path);
                    } else if path.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                        out.push(path);
                    }
                }
            }
        } else {
            out.push(p.clone());
        }
    }
    out.sort();
    Ok(out)
}

/// Loads and resolves every definition: the catalog, the SLOs, and every refusal.
pub(crate) fn load(paths: &[PathBuf]) -> anyhow::Result<(Catalog, Vec<Slo>, Vec<LoadError>)> {
    let mut catalog = Catalog::default();
    let mut errors = Vec::new();
    for f in definition_files(paths)? {
        let text =
            std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
        errors.extend(catalog.add_file(&f.display().to_string(), &text));
    }
    let (slos, unresolved) = catalog.resolve();
    errors.extend(unresolved);
    Ok((catalog, slos, errors))
}

/// The SLOs under `paths`, each refused definition printed on stderr (the rest are used).
pub(crate) fn load_and_warn(paths: &[PathBuf]) -> anyhow::Result<Vec<Slo>> {
    let (_, slos, errors) = load(paths)?;
    for e in &errors {
        eprintln!("error: {e}");
    }
    Ok(slos)
}

/// `nines slo check`: prints every refusal and exits 1 if there is any.
pub(crate) fn check(paths: &[PathBuf]) -> anyhow::Result<bool> {
    let (catalog, slos, errors) = load(paths)?;
    for e in &errors {
        eprintln!("error: {e}");
    }
    let counts: Vec<String> = catalog
        .counts()
        .into_iter()
        .map(|(kind, n)| format!("{n} {kind}"))
        .collect();
    if errors.is_empty() {
        println!(
            "ok: {} ({} SLO(s) to evaluate)",
            counts.join(", "),
            slos.len()
        );
    } else {
        println!("{} error(s); loaded {}", errors.len(), counts.join(", "));
    }
    Ok(errors.is_empty())
}

/// An instant given on the command line: RFC 3339, or `now`.
pub(crate) fn parse_instant(text: &str) -> anyhow::Result<i64> {
    if text == "now" {
        return Ok(now());
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp())
        .with_context(|| {
            format!("{text:?} is not an RFC 3339 time (e.g. 2026-12-01T00:00:00Z) or `now`")
        })
}

/// Seconds since the epoch, now (the CLI's and reports' clock).
pub(crate) fn now() -> i64 {
    nines_model::clock::now_s()
}

/// One objective's evaluation, or why it could not be evaluated.
pub(crate) type Evaluated = (Slo, String, Result<Report, String>);

/// Evaluates every objective of every SLO at `at`, reading their data together
/// (`slo_source::series_many`).
pub(crate) async fn evaluate_all(engine: &QueryEngine, slos: &[Slo], at: i64) -> Vec<Evaluated> {
    let mut wants = Vec::new();
    for slo in slos {
        for objective in &slo.objectives {
            let (from, to) = eval::data_range(slo, objective, at);
            wants.push((
                slo,
                objective,
                slo_source::Want {
                    indicator: &slo.indicator,
                    objective,
                    from,
                    to,
                },
            ));
        }
    }
    let read: Vec<slo_source::Want<'_>> = wants.iter().map(|w| w.2).collect();
    let series = slo_source::series_many(engine, &read).await;
    wants
        .into_iter()
        .zip(series)
        .map(|((slo, objective, _), series)| {
            let report = series
                .map(|s| eval::evaluate(slo, objective, &s, at, &Options::default()))
                .map_err(|e| e.to_string());
            (slo.clone(), objective.name.clone(), report)
        })
        .collect()
}

/// The burn rate of a report over `lookback` seconds.
fn burn(r: &Report, lookback: i64) -> Option<f64> {
    r.burn_rates
        .iter()
        .find(|(s, _)| *s == lookback)
        .and_then(|(_, b)| *b)
}

/// `nines slo status`.
pub(crate) async fn status(
    cfg: &Config,
    paths: &[PathBuf],
    at: i64,
    format: crate::Format,
) -> anyhow::Result<()> {
    let slos = load_and_warn(paths)?;
    if slos.is_empty() {
        bail!("no SLO to evaluate in {}", show(paths));
    }
    let store = crate::roles::open_store(cfg).await?;
    let engine = QueryEngine::new(&store).await?;
    let header = [
        "slo",
        "objective",
        "target",
        "sli",
        "budget_remaining",
        "status",
        "burn_1h",
        "burn_6h",
        "burn_1d",
        "burn_3d",
        "time_to_exhaustion_s",
        "coverage",
        "firing",
        "sla",
        "sla_margin",
    ];
    let promised = sla_targets(cfg);
    let mut rows = Vec::new();
    for (slo, objective, result) in evaluate_all(&engine, &slos, at).await {
        let mut row = Map::new();
        row.insert("slo".into(), slo.name.clone().into());
        row.insert("objective".into(), objective.into());
        match result {
            Ok(r) => {
                row.insert("target".into(), num(Some(r.target)));
                row.insert("sli".into(), num(r.standing.sli));
                row.insert("budget_remaining".into(), num(Some(r.standing.remaining)));
                row.insert("status".into(), r.standing.status.as_str().into());
                for (key, l) in [
                    ("burn_1h", 3_600),
                    ("burn_6h", 21_600),
                    ("burn_1d", 86_400),
                    ("burn_3d", 259_200),
                ] {
                    row.insert(key.into(), num(burn(&r, l)));
                }
                row.insert(
                    "time_to_exhaustion_s".into(),
                    num(r.standing.time_to_exhaustion),
                );
                row.insert("coverage".into(), num(Some(r.standing.coverage)));
                let firing: Vec<Value> = r
                    .firing
                    .iter()
                    .map(|i| format!("{} ({})", i.alert, i.severity).into())
                    .collect();
                row.insert("firing".into(), Value::Array(firing));
                if let Some((sla, target)) = promised.get(&slo.name) {
                    row.insert("sla".into(), format!("{sla} ({target})").into());
                    row.insert(
                        "sla_margin".into(),
                        num(r.standing.sli.map(|sli| sli - target)),
                    );
                }
            }
            Err(e) => {
                row.insert("status".into(), e.into());
            }
        }
        rows.push(row);
    }
    rows::print(&header, &rows, format);
    if matches!(format, crate::Format::Table) {
        println!("at {}", rfc3339(at));
    }
    Ok(())
}

/// The strictest SLA promised on each SLO (by SLO name): its name and target. The margin
/// `sli − target` is what is left before customers are owed credits (docs/sla.md).
fn sla_targets(cfg: &Config) -> std::collections::HashMap<String, (String, f64)> {
    let mut out: std::collections::HashMap<String, (String, f64)> = Default::default();
    if !cfg.sla.dir.exists() {
        return out;
    }
    let Ok((slas, _)) = crate::sla_cmd::load(std::slice::from_ref(&cfg.sla.dir)) else {
        return out;
    };
    for s in slas {
        let e = out
            .entry(s.slo.clone())
            .or_insert((s.name.clone(), s.target));
        if s.target > e.1 {
            *e = (s.name, s.target);
        }
    }
    out
}

/// `nines slo history NAME --from --to --step`.
pub(crate) async fn history(
    cfg: &Config,
    paths: &[PathBuf],
    name: &str,
    (from, to, step): (i64, i64, i64),
    format: crate::Format,
) -> anyhow::Result<()> {
    if to <= from || step <= 0 {
        bail!("--to must be after --from, and --step positive");
    }
    let slos = load_and_warn(paths)?;
    let Some(slo) = slos.iter().find(|s| s.name == name) else {
        bail!("no SLO named {name:?} in {}", show(paths));
    };
    let store = crate::roles::open_store(cfg).await?;
    let engine = QueryEngine::new(&store).await?;
    let header = [
        "time",
        "objective",
        "sli",
        "budget_remaining",
        "status",
        "burn_1h",
        "burn_6h",
    ];
    let mut rows = Vec::new();
    let mut alerts = Vec::new();
    for objective in &slo.objectives {
        // One read covering every instant's needs.
        let (data_from, _) = eval::data_range(slo, objective, from);
        let series = slo_source::series(&engine, &slo.indicator, objective, data_from, to)
            .await
            .map_err(|e| anyhow::anyhow!("{}: {e}", slo.name))?;
        let instants: Vec<i64> = (0..)
            .map(|k| from + k * step)
            .take_while(|t| *t <= to)
            .collect();
        // Long ranges take a while: a bar on a terminal (hidden otherwise).
        let bar = indicatif::ProgressBar::new(instants.len() as u64).with_style(
            indicatif::ProgressStyle::with_template(&format!(
                "{} {{bar:40}} {{pos}}/{{len}} instants, eta {{eta}}",
                objective.name
            ))
            .expect("valid template"),
        );
        for chunk in instants.chunks(1_000) {
            let reports = eval::evaluate_many(
                slo,
                objective,
                &series,
                chunk.iter().copied(),
                &Options::default(),
            );
            for r in reports {
                let mut row = Map::new();
                row.insert("time".into(), rfc3339(r.at).into());
                row.insert("objective".into(), objective.name.clone().into());
                row.insert("sli".into(), num(r.standing.sli));
                row.insert("budget_remaining".into(), num(Some(r.standing.remaining)));
                row.insert("status".into(), r.standing.status.as_str().into());
                row.insert("burn_1h".into(), num(burn(&r, 3_600)));
                row.insert("burn_6h".into(), num(burn(&r, 21_600)));
                rows.push(row);
            }
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
        for i in eval::alert_history(slo, objective, &series, from, to, &Options::default()) {
            let mut row = Map::new();
            row.insert("objective".into(), objective.name.clone().into());
            row.insert("alert".into(), i.alert.into());
            row.insert("severity".into(), i.severity.into());
            row.insert("start".into(), rfc3339(i.start).into());
            row.insert(
                "end".into(),
                i.end.map_or(Value::Null, |e| rfc3339(e).into()),
            );
            alerts.push(row);
        }
    }
    rows::print(&header, &rows, format);
    println!();
    rows::print(
        &["objective", "alert", "severity", "start", "end"],
        &alerts,
        format,
    );
    Ok(())
}

fn show(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The definitions to read: the paths given, else `slo.dir`.
pub(crate) fn paths_or_dir(paths: Vec<PathBuf>, dir: &Path) -> Vec<PathBuf> {
    if paths.is_empty() {
        vec![dir.to_owned()]
    } else {
        paths
    }
}
