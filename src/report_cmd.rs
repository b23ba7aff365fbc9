//! `nines report --from --to [--service S] --format html|md|json [--out FILE]`: one model of
//! a range (docs/report.md) — the SLOs of every service at the end of the range with the
//! alerts that fired in it and their history, the budget each deployment burned, and the
//! DORA metrics with their tiers — and its renderings: JSON (`nines.report/v1`, schema
//! `docs/report.schema.json`), Markdown, and HTML (`report_html.rs`).

use std::path::PathBuf;

use anyhow::Context;
use nines_slo::alerts::seconds_text;
use nines_slo::eval::{self, Options};
use nines_slo::model::{BudgetingMethod, TimeWindow};
use nines_slo::window::rfc3339;
use serde_json::{Map, Value, json};
use sha2::Digest;

use crate::config::Config;
use crate::dora_cmd::{self, Selected, Selection};
use crate::rows::{self, num};

/// The report's renderings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ReportFormat {
    Md,
    Html,
    Json,
}

/// `nines report`.
pub(crate) async fn run(
    cfg: &Config,
    selection: &Selection,
    flag_above: f64,
    format: ReportFormat,
    out: Option<PathBuf>,
) -> anyhow::Result<()> {
    let selected = selection.read(cfg).await?;
    let model = build(cfg, selection, &selected, flag_above).await?;
    let text = match format {
        ReportFormat::Json => serde_json::to_string_pretty(&model)? + "\n",
        ReportFormat::Md => markdown(&model),
        ReportFormat::Html => crate::report_html::render(&model)?,
    };
    match out {
        Some(path) => {
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => print!("{text}"),
    }
    Ok(())
}

/// `nines up`'s scheduled reports: at every multiple of `every` (UTC), the report of the
/// period that just ended, as `report-<from>--<to>.md` and `.json` in `report.dir`
/// (written whole, then renamed). A failure is logged and counted, and the next period
/// is tried.
pub(crate) async fn schedule(
    cfg: Config,
    every: std::time::Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    let every = i64::try_from(every.as_secs()).unwrap_or(86_400).max(1);
    loop {
        let now = crate::slo_cmd::now();
        let next = (now / every + 1) * every;
        let wait = std::time::Duration::from_secs(u64::try_from(next - now).unwrap_or(1));
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        match write_scheduled(&cfg, next - every, next).await {
            Ok(path) => {
                tracing::info!(path = %path.display(), "report written");
                crate::metrics::report_run(true);
            }
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), "scheduled report not written");
                crate::metrics::report_run(false);
            }
        }
    }
}

async fn write_scheduled(cfg: &Config, from: i64, to: i64) -> anyhow::Result<PathBuf> {
    let selection = Selection::range(from, to);
    let selected = selection.read(cfg).await?;
    let model = build(cfg, &selection, &selected, 0.05).await?;
    std::fs::create_dir_all(&cfg.report.dir)
        .with_context(|| format!("creating {}", cfg.report.dir.display()))?;
    let stamp = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0)
            .map_or_else(|| t.to_string(), |d| d.format("%Y%m%dT%H%M%SZ").to_string())
    };
    let base = cfg
        .report
        .dir
        .join(format!("report-{}--{}", stamp(from), stamp(to)));
    let json_path = base.with_extension("json");
    for (path, text) in [
        (base.with_extension("md"), markdown(&model)),
        (
            base.with_extension("html"),
            crate::report_html::render(&model)?,
        ),
        (
            json_path.clone(),
            serde_json::to_string_pretty(&model)? + "\n",
        ),
    ] {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path)?;
    }
    Ok(json_path)
}

/// When the report was made: `SOURCE_DATE_EPOCH` when set (reproducible output), else now.
fn generated_at() -> i64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(crate::slo_cmd::now)
}

fn method(m: BudgetingMethod) -> &'static str {
    match m {
        BudgetingMethod::Occurrences => "Occurrences",
        BudgetingMethod::Timeslices => "Timeslices",
        BudgetingMethod::RatioTimeslices => "RatioTimeslices",
    }
}

fn window(w: &TimeWindow) -> String {
    match w {
        TimeWindow::Rolling { span } => format!("{span} rolling"),
        TimeWindow::Calendar {
            span, time_zone, ..
        } => format!("{span} calendar ({time_zone})"),
    }
}

/// The worst of two statuses: exhausted, warning, no_data, ok.
fn worse<'a>(a: &'a str, b: &'a str) -> &'a str {
    let rank = |s: &str| match s {
        "exhausted" => 3,
        "warning" => 2,
        "no_data" => 1,
        _ => 0,
    };
    if rank(b) > rank(a) { b } else { a }
}

/// The model: what every rendering shows.
pub(crate) async fn build(
    cfg: &Config,
    selection: &Selection,
    selected: &Selected,
    flag_above: f64,
) -> anyhow::Result<Value> {
    let (from, to) = (selected.from, selected.to);
    let mut slo_files = Vec::new();
    if cfg.slo.dir.exists() {
        for f in crate::slo_cmd::definition_files(std::slice::from_ref(&cfg.slo.dir))? {
            let bytes = std::fs::read(&f)?;
            slo_files.push(json!({
                "path": f.display().to_string(),
                "sha256": hex::encode(sha2::Sha256::digest(&bytes)),
            }));
        }
    }

    // Per service, its SLOs at the end of the range and the alerts that fired in it.
    let mut services: std::collections::BTreeMap<String, (String, Vec<Value>)> =
        std::collections::BTreeMap::new();
    // Long ranges take a while: a bar on a terminal (hidden otherwise).
    let objectives: usize = selected.slos.iter().map(|s| s.series.len()).sum();
    let bar = indicatif::ProgressBar::new(objectives as u64).with_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} objectives, eta {eta}")
            .expect("valid template"),
    );
    for dora_cmd::SloData { slo, series } in &selected.slos {
        for (objective, series) in slo.objectives.iter().zip(series) {
            bar.inc(1);
            let entry = services
                .entry(slo.service.clone())
                .or_insert_with(|| ("ok".to_owned(), Vec::new()));
            let mut row = Map::new();
            row.insert("slo".into(), slo.name.clone().into());
            row.insert("objective".into(), objective.name.clone().into());
            row.insert("target".into(), num(Some(objective.target)));
            row.insert("method".into(), method(slo.budgeting).into());
            row.insert("window".into(), window(&slo.window).into());
            match series {
                Ok(series) => {
                    let prepared = eval::Prepared::new(slo, objective, series);
                    let r = prepared.at(to, &Options::default());
                    let st = &r.standing;
                    row.insert("sli".into(), num(st.sli));
                    row.insert("budget_total".into(), num(Some(st.budget_total)));
                    row.insert("consumed".into(), num(Some(st.consumed)));
                    row.insert("remaining".into(), num(Some(st.remaining)));
                    row.insert("status".into(), st.status.as_str().into());
                    entry.0 = worse(&entry.0, st.status.as_str()).to_owned();
                    let alerts: Vec<Value> = prepared
                        .alert_history(from, to, &Options::default())
                        .into_iter()
                        .map(|i| {
                            json!({
                                "alert": i.alert,
                                "severity": i.severity,
                                "start": rfc3339(i.start),
                                "end": i.end.map(rfc3339),
                            })
                        })
                        .collect();
                    row.insert("alerts".into(), Value::Array(alerts));
                    let (history, thresholds) = history(&prepared, from, to);
                    row.insert("history".into(), history);
                    row.insert("burn_thresholds".into(), thresholds);
                }
                Err(e) => {
                    row.insert("status".into(), e.clone().into());
                    row.insert("alerts".into(), Value::Array(Vec::new()));
                    row.insert("history".into(), Value::Array(Vec::new()));
                    row.insert("burn_thresholds".into(), Value::Array(Vec::new()));
                }
            }
            entry.1.push(Value::Object(row));
        }
    }
    bar.finish_and_clear();
    // Deploy markers of each service's charts: its deploys in the range, oldest first.
    let markers = |service: &str| -> Vec<Value> {
        selected
            .deploys
            .iter()
            .filter(|d| d.service == service && (from..to).contains(&(d.time / 1_000_000)))
            .map(|d| {
                json!({
                    "environment": d.environment,
                    "version": d.version,
                    "deployed_at": rfc3339(d.time / 1_000_000),
                })
            })
            .collect()
    };
    let services: Vec<Value> = services
        .into_iter()
        .map(|(name, (status, slos))| {
            json!({"service": name, "status": status, "slos": slos, "deploys": markers(&name)})
        })
        .collect();

    let deploys = if cfg.slo.dir.exists() {
        dora_cmd::burn_rows(cfg, selected, flag_above).await?
    } else {
        Vec::new()
    };
    let analysis = dora_cmd::analysis(selection, selected).await?;
    let tiers = dora_cmd::tiers(cfg)?;
    let versions: Map<String, Value> = selected
        .engine
        .table_versions()
        .await?
        .into_iter()
        .map(|(t, v)| (t.to_owned(), v.into()))
        .collect();
    let slas = sla_statements(cfg, selection, selected).await?;
    let gate =
        crate::release_cmd::gate_history(&selected.engine, selection.service(), (from, to)).await?;
    Ok(json!({
        "schema": "nines.report/v1",
        "provenance": {
            "nines_version": env!("CARGO_PKG_VERSION"),
            "generated_at": rfc3339(generated_at()),
            "from": rfc3339(from),
            "to": rfc3339(to),
            "service": selection.service(),
            "slo_files": slo_files,
            "table_versions": versions,
        },
        "services": services,
        "deploys": deploys,
        "dora": {
            "metrics": dora_cmd::metric_rows(&analysis),
            "failed_deployments": dora_cmd::failed_rows(&analysis),
            "weeks": dora_cmd::week_rows(&analysis),
            "tiers": {
                "source": tiers.source,
                "rows": dora_cmd::tier_rows(&analysis, &tiers),
            },
        },
        "slas": slas,
        "gate": gate,
    }))
}

/// The months (`YYYY-MM`, UTC) that overlap `[from, to)`.
fn months_between(from: i64, to: i64) -> Vec<String> {
    use chrono::Datelike;
    let mut out = Vec::new();
    let Some(start) = chrono::DateTime::from_timestamp(from, 0) else {
        return out;
    };
    let (mut y, mut m) = (start.year(), start.month());
    loop {
        let first = chrono::NaiveDate::from_ymd_opt(y, m, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|d| d.and_utc().timestamp());
        match first {
            Some(t) if t < to => out.push(format!("{y:04}-{m:02}")),
            _ => break,
        }
        (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    }
    out
}

/// The SLA statements of every month the range overlaps (each in its SLA's zone), for the
/// SLAs of the selected service: the report's `slas`.
async fn sla_statements(
    cfg: &Config,
    selection: &Selection,
    selected: &Selected,
) -> anyhow::Result<Vec<Value>> {
    let slas: Vec<_> = crate::sla_cmd::load_with_slos(cfg)?
        .into_iter()
        .filter(|(_, slo)| selection.service().is_none_or(|s| slo.service == s))
        .collect();
    let mut out = Vec::new();
    if slas.is_empty() {
        return Ok(out);
    }
    for month in months_between(selected.from, selected.to) {
        out.extend(crate::sla_cmd::statements(&selected.engine, &slas, &month, None).await?);
    }
    Ok(out)
}

/// Points of each objective's history (the charts): about this many at most.
const HISTORY_POINTS: i64 = 60;

/// The step and instants of a history over `[from, to]`: a round step (a minute up to a
/// week) that gives at most about [`HISTORY_POINTS`], from `from`, and `to`.
fn history_instants(from: i64, to: i64) -> (i64, Vec<i64>) {
    const STEPS: [i64; 11] = [
        60, 300, 900, 1_800, 3_600, 10_800, 21_600, 43_200, 86_400, 172_800, 604_800,
    ];
    let want = (to - from) / HISTORY_POINTS;
    let step = STEPS
        .into_iter()
        .find(|s| *s >= want)
        .unwrap_or(STEPS[STEPS.len() - 1]);
    let mut out: Vec<i64> = (0..)
        .map(|k| from + k * step)
        .take_while(|t| *t < to)
        .collect();
    out.push(to);
    (step, out)
}

/// An objective's history over the range: at each instant of [`history_instants`], its
/// SLI and the share of budget remaining; and, per long window of its multiwindow rows,
/// the peak burn rate since the previous instant (every budgeting slice's end is looked
/// at, so a spike between two points is not lost); with those rows' thresholds
/// (docs/report.md).
fn history(prepared: &eval::Prepared<'_>, from: i64, to: i64) -> (Value, Value) {
    let (slo, objective) = (prepared.slo, prepared.objective);
    let (rule, ledger) = (&prepared.rule, &prepared.ledger);
    let (step, instants) = history_instants(from, to);
    let (rules, _) = eval::burn_rules(slo, objective);
    let slice = eval::slice_seconds(slo, objective);
    let mut windows: Vec<i64> = rules.iter().map(|r| r.long).collect();
    windows.sort_unstable();
    windows.dedup();
    let peak = |w: i64, at: i64| {
        let first = (at - step).max(from - slice).div_euclid(slice) * slice + slice;
        (0..)
            .map(|k| first + k * slice)
            .take_while(|end| *end <= at)
            .filter_map(|end| nines_slo::budget::burn(ledger, rule, end - w, end))
            .reduce(f64::max)
    };
    let points: Vec<Value> = instants
        .into_iter()
        .map(|at| prepared.at(at, &Options::default()))
        .map(|r| {
            let burn: Map<String, Value> = windows
                .iter()
                .map(|w| (seconds_text(*w), num(peak(*w, r.at))))
                .collect();
            json!({
                "time": rfc3339(r.at),
                "sli": num(r.standing.sli),
                "remaining": num(Some(r.standing.remaining)),
                "burn": burn,
            })
        })
        .collect();
    let thresholds: Vec<Value> = rules
        .iter()
        .map(|r| {
            json!({
                "window": seconds_text(r.long),
                "short_window": seconds_text(r.short),
                "factor": r.factor,
                "severity": r.severity,
            })
        })
        .collect();
    (Value::Array(points), Value::Array(thresholds))
}

/// The columns of the services' summary.
pub(crate) const SUMMARY_HEADER: [&str; 4] = ["service", "status", "slos", "deploys"];

/// One row per service of a report model: its status, SLOs and deploys in the range.
pub(crate) fn summary_rows(m: &Value) -> Vec<Map<String, Value>> {
    objects(&m["services"])
        .iter()
        .map(|svc| {
            let count = |k: &str| svc[k].as_array().map_or(0, Vec::len);
            let mut r = Map::new();
            r.insert("service".into(), svc["service"].clone());
            r.insert("status".into(), svc["status"].clone());
            r.insert("slos".into(), count("slos").into());
            r.insert("deploys".into(), count("deploys").into());
            r
        })
        .collect()
}

/// The objects of a JSON array (none when `v` is not one).
pub(crate) fn objects(v: &Value) -> Vec<Map<String, Value>> {
    v.as_array()
        .map(|a| a.iter().filter_map(|x| x.as_object().cloned()).collect())
        .unwrap_or_default()
}

/// The Markdown rendering.
fn markdown(m: &Value) -> String {
    let p = &m["provenance"];
    let s = |v: &Value| v.as_str().unwrap_or("-").to_owned();
    let mut out = format!(
        "# nines report: {} to {}\n\nGenerated {} by nines {}.",
        s(&p["from"]),
        s(&p["to"]),
        s(&p["generated_at"]),
        s(&p["nines_version"])
    );
    if let Some(t) = p["table_versions"].as_object() {
        let v: Vec<String> = t.iter().map(|(k, v)| format!("`{k}` v{v}")).collect();
        out += &format!(" Tables read at: {}.", v.join(", "));
    }
    for f in p["slo_files"].as_array().into_iter().flatten() {
        out += &format!(
            "\nSLO file `{}` (sha256 `{}`).",
            s(&f["path"]),
            &s(&f["sha256"])[..12.min(s(&f["sha256"]).len())]
        );
    }
    out += "\n\n## Services\n\n";
    let services = objects(&m["services"]);
    out += &rows::markdown(&SUMMARY_HEADER, &summary_rows(m));
    out += "\n";
    for svc in &services {
        out += &format!("\n### {} — {}\n\n", s(&svc["service"]), s(&svc["status"]));
        let slos = objects(&svc["slos"]);
        out += &rows::markdown(
            &[
                "slo",
                "objective",
                "target",
                "method",
                "window",
                "sli",
                "budget_total",
                "consumed",
                "remaining",
                "status",
            ],
            &slos,
        );
        out += "\n";
        for slo in &slos {
            for a in slo["alerts"].as_array().into_iter().flatten() {
                out += &format!(
                    "\n- `{}` {} ({}): {} to {}",
                    s(&slo["slo"]),
                    s(&a["alert"]),
                    s(&a["severity"]),
                    s(&a["start"]),
                    a["end"].as_str().unwrap_or("still firing")
                );
            }
        }
        out += "\n";
    }
    out += "\n## Deploys (flagged first)\n\n";
    out += &rows::markdown(&dora_cmd::BURN_HEADER, &objects(&m["deploys"]));
    out += "\n\n## DORA\n\n";
    out += &rows::markdown(&dora_cmd::HEADER, &objects(&m["dora"]["metrics"]));
    out += "\n\nFailed deployments:\n\n";
    out += &rows::markdown(
        &dora_cmd::FAILED_HEADER,
        &objects(&m["dora"]["failed_deployments"]),
    );
    out += &format!("\n\nTiers ({}):\n\n", s(&m["dora"]["tiers"]["source"]));
    out += &rows::markdown(
        &dora_cmd::TIER_HEADER,
        &objects(&m["dora"]["tiers"]["rows"]),
    );
    out += "\n\nWeekly trend:\n\n";
    out += &rows::markdown(&dora_cmd::WEEK_HEADER, &objects(&m["dora"]["weeks"]));
    if let Some(slas) = m["slas"].as_array().filter(|a| !a.is_empty()) {
        out += "\n\n## SLAs\n\n";
        out += &crate::sla_cmd::markdown_body(slas);
    }
    let counts = objects(&m["gate"]["counts"]);
    if !counts.is_empty() {
        use crate::release_cmd::{GATE_COUNT_HEADER, GATE_HELD_HEADER};
        out.truncate(out.trim_end().len());
        out += "\n\n## Release gate\n\n";
        out += &rows::markdown(&GATE_COUNT_HEADER, &counts);
        let held = objects(&m["gate"]["held"]);
        if !held.is_empty() {
            out += "\n\nDenied, or allowed only by a label:\n\n";
            out += &rows::markdown(&GATE_HELD_HEADER, &held);
        }
    }
    out + "\n"
}
