//! `nines dora --from --to`: the DORA metrics of a range (docs/dora.md), per service and
//! environment and overall, then the failed deployments with the signals that failed them.

use anyhow::{Context, bail};
use nines_dora::tiers::Tiers;
use nines_dora::{Evidence, Metrics, PageAlert, analyse_with};
use nines_query::{QueryEngine, dora_source};
use nines_slo::eval::{self, Options};
use nines_slo::window::rfc3339;
use serde_json::{Map, Value};

use crate::config::Config;
use crate::rows::{self, num};

pub(crate) const MICROS: i64 = 1_000_000;

/// Which deployments `nines dora` and `nines deploys` look at.
#[derive(Debug, clap::Args)]
pub(crate) struct Selection {
    /// RFC 3339 instant.
    #[arg(long)]
    from: String,
    /// RFC 3339 instant, or `now`.
    #[arg(long, default_value = "now")]
    to: String,
    /// Only this service.
    #[arg(long)]
    service: Option<String>,
    /// Only this environment.
    #[arg(long)]
    environment: Option<String>,
    /// A deploy's attribution window: until the next deploy of its service and
    /// environment, or this long after it, whichever comes first.
    #[arg(long, default_value = "24h")]
    horizon: humantime::Duration,
}

/// A selection read: the range (seconds), the horizon (seconds), the query engine, the
/// selected deploys known before the range's end, and the SLOs of the selected service
/// with their data.
pub(crate) struct Selected {
    pub(crate) from: i64,
    pub(crate) to: i64,
    pub(crate) horizon: i64,
    pub(crate) engine: QueryEngine,
    pub(crate) deploys: Vec<nines_dora::Deploy>,
    pub(crate) slos: Vec<SloData>,
}

/// An SLO under `slo.dir` and, per objective, its one-minute series from before the range
/// by what every figure of the range needs (the attribution baseline or the horizon, then
/// the evaluation's own reach back: [`eval::data_range`]) to its end; or why it cannot be
/// read (also said on stderr: the other SLOs still count).
pub(crate) struct SloData {
    pub(crate) slo: nines_slo::model::Slo,
    pub(crate) series: Vec<Result<nines_slo::budget::Series, String>>,
}

impl SloData {
    /// The SLOs under `slo.dir` (none when it does not exist) of `service` (or all), their
    /// data read once for `[from, to)`: one grouped query for the SLOs whose filters allow
    /// it (`slo_source::series_many`).
    async fn read(
        cfg: &Config,
        engine: &QueryEngine,
        service: Option<&str>,
        (from, to, horizon): (i64, i64, i64),
    ) -> anyhow::Result<Vec<Self>> {
        if !cfg.slo.dir.exists() {
            return Ok(Vec::new());
        }
        let mut slos = crate::slo_cmd::load_and_warn(std::slice::from_ref(&cfg.slo.dir))?;
        slos.retain(|s| service.is_none_or(|want| want == s.service));
        let earliest = from - horizon.max(nines_slo::attribution::BASELINE);
        let wants: Vec<nines_query::slo_source::Want<'_>> = slos
            .iter()
            .flat_map(|slo| {
                slo.objectives
                    .iter()
                    .map(move |objective| nines_query::slo_source::Want {
                        indicator: &slo.indicator,
                        objective,
                        from: eval::data_range(slo, objective, earliest).0,
                        to,
                    })
            })
            .collect();
        let mut series = nines_query::slo_source::series_many(engine, &wants)
            .await
            .into_iter();
        Ok(slos
            .into_iter()
            .map(|slo| {
                let series = (0..slo.objectives.len())
                    .map(|_| match series.next() {
                        Some(Ok(s)) => Ok(s),
                        Some(Err(e)) => {
                            eprintln!("{}: {e}", slo.name);
                            Err(e.to_string())
                        }
                        None => Err("not read".to_owned()),
                    })
                    .collect();
                Self { slo, series }
            })
            .collect())
    }
}

impl Selection {
    /// Every deployment of `[from, to)` (seconds), with the default horizon.
    pub(crate) fn range(from: i64, to: i64) -> Self {
        Self {
            from: rfc3339(from),
            to: rfc3339(to),
            service: None,
            environment: None,
            horizon: std::time::Duration::from_secs(86_400).into(),
        }
    }

    /// The one service asked for, if any.
    pub(crate) fn service(&self) -> Option<&str> {
        self.service.as_deref()
    }

    pub(crate) async fn read(&self, cfg: &Config) -> anyhow::Result<Selected> {
        let from = crate::slo_cmd::parse_instant(&self.from)?;
        let to = crate::slo_cmd::parse_instant(&self.to)?;
        if to <= from {
            bail!("--to must be after --from");
        }
        let store = crate::roles::open_store(cfg).await?;
        let engine = QueryEngine::new(&store).await?;
        let mut deploys = dora_source::deploys(&engine, to * MICROS).await?;
        deploys.retain(|d| {
            self.service.as_ref().is_none_or(|s| *s == d.service)
                && self
                    .environment
                    .as_ref()
                    .is_none_or(|e| *e == d.environment)
        });
        let horizon = i64::try_from(self.horizon.as_secs()).unwrap_or(86_400);
        let slos =
            SloData::read(cfg, &engine, self.service.as_deref(), (from, to, horizon)).await?;
        Ok(Selected {
            from,
            to,
            horizon,
            engine,
            deploys,
            slos,
        })
    }
}

/// The columns of the metrics table.
pub(crate) const HEADER: [&str; 13] = [
    "service",
    "environment",
    "deployments",
    "deploys_per_day",
    "lead_time_median_s",
    "lead_time_commits",
    "change_fail_rate",
    "failed",
    "recovery_median_s",
    "recovered",
    "unrecovered",
    "rework_rate",
    "rework",
];

fn row(service: &str, environment: &str, m: &Metrics) -> Map<String, Value> {
    let mut r = Map::new();
    r.insert("service".into(), service.into());
    r.insert("environment".into(), environment.into());
    r.insert("deployments".into(), m.deployments.into());
    r.insert("deploys_per_day".into(), num(Some(m.deploys_per_day)));
    r.insert("lead_time_median_s".into(), num(m.lead_time.median));
    r.insert("lead_time_commits".into(), m.lead_time.count.into());
    r.insert("change_fail_rate".into(), num(m.change_fail_rate));
    r.insert("failed".into(), m.failed.into());
    r.insert("recovery_median_s".into(), num(m.recovery_time.median));
    r.insert("recovered".into(), m.recovery_time.count.into());
    r.insert("unrecovered".into(), m.unrecovered.into());
    r.insert("rework_rate".into(), num(m.rework_rate));
    r.insert("rework".into(), m.rework.into());
    r
}

/// `nines deploys`: the error budget each deployment in `[from, to)` burned, per SLO of its
/// service, flagged deploys first (docs/slo.md, "Budget burned per deployment").
pub(crate) async fn deploys(
    cfg: &Config,
    selection: &Selection,
    flag_above: f64,
    format: crate::Format,
) -> anyhow::Result<()> {
    let selected = selection.read(cfg).await?;
    let rows = burn_rows(cfg, &selected, flag_above).await?;
    rows::print(&BURN_HEADER, &rows, format);
    Ok(())
}

/// The columns of `nines deploys`.
pub(crate) const BURN_HEADER: [&str; 14] = [
    "service",
    "environment",
    "version",
    "deployed_at",
    "window_end",
    "slo",
    "objective",
    "bad",
    "units",
    "budget_burned",
    "baseline_error_ratio",
    "excess_burn",
    "flagged",
    "alerts",
];

/// One row per selected deployment and SLO objective of its service: what its window
/// burned; flagged rows first, then in time order.
pub(crate) async fn burn_rows(
    cfg: &Config,
    selected: &Selected,
    flag_above: f64,
) -> anyhow::Result<Vec<Map<String, Value>>> {
    use nines_slo::attribution::window_burn;
    let Selected {
        from,
        to,
        horizon,
        deploys: all,
        slos,
        ..
    } = selected;
    let (from, to, horizon) = (*from, *to, *horizon);
    // The deployments (as DORA counts them) and each one's window.
    let judged = analyse_with(
        all,
        &Evidence {
            incidents: &[],
            alerts: &[],
            horizon: 0,
        },
        from * MICROS,
        to * MICROS,
    )
    .deploys;
    if !cfg.slo.dir.exists() {
        bail!(
            "no SLO definitions in {} (slo.dir): a deploy's burn is against its service's SLOs",
            cfg.slo.dir.display()
        );
    }
    let mut out: Vec<(bool, i64, Map<String, Value>)> = Vec::new();
    for SloData { slo, series } in slos {
        let label_env = slo.labels.get("environment").and_then(|v| v.first());
        let mine: Vec<(usize, &nines_dora::Judged)> = judged
            .iter()
            .enumerate()
            .filter(|(_, j)| {
                j.deploy.service == slo.service
                    && label_env.is_none_or(|e| *e == j.deploy.environment)
            })
            .collect();
        for (objective, series) in slo.objectives.iter().zip(series) {
            let Ok(series) = series else {
                continue;
            };
            let prepared = eval::Prepared::new(slo, objective, series);
            for (k, j) in &mine {
                let d = &j.deploy;
                let start = d.time / MICROS;
                let next = judged[k + 1..]
                    .iter()
                    .find(|n| {
                        n.deploy.service == d.service && n.deploy.environment == d.environment
                    })
                    .map_or(to, |n| n.deploy.time / MICROS);
                let end = next.min(start + horizon).min(to);
                let w = window_burn(&prepared, (start, end));
                let flagged = w.excess > flag_above;
                let mut r = Map::new();
                r.insert("service".into(), d.service.clone().into());
                r.insert("environment".into(), d.environment.clone().into());
                r.insert("version".into(), d.version.clone().into());
                r.insert("deployed_at".into(), rfc3339(start).into());
                r.insert("window_end".into(), rfc3339(end).into());
                r.insert("slo".into(), slo.name.clone().into());
                r.insert("objective".into(), objective.name.clone().into());
                r.insert("bad".into(), num(Some(w.bad)));
                r.insert("units".into(), num(Some(w.units)));
                r.insert("budget_burned".into(), num(Some(w.burned)));
                r.insert("baseline_error_ratio".into(), num(Some(w.baseline_ratio)));
                r.insert("excess_burn".into(), num(Some(w.excess)));
                r.insert("flagged".into(), flagged.into());
                let alerts: Vec<Value> = w
                    .alerts
                    .iter()
                    .map(|i| {
                        format!("{} ({}) from {}", i.alert, i.severity, rfc3339(i.start)).into()
                    })
                    .collect();
                r.insert("alerts".into(), Value::Array(alerts));
                out.push((flagged, start, r));
            }
        }
    }
    // Flagged first, then in time order.
    out.sort_by_key(|(flagged, t, _)| (!flagged, *t));
    Ok(out.into_iter().map(|(_, _, r)| r).collect())
}

/// The page alerts that started in `[from, to)` (seconds) for every selected SLO. An SLO
/// labelled `environment` judges that environment's deploys only.
fn page_alerts(slos: &[SloData], (from, to): (i64, i64)) -> Vec<PageAlert> {
    let mut out = Vec::new();
    for SloData { slo, series } in slos {
        for (objective, series) in slo.objectives.iter().zip(series) {
            let Ok(series) = series else {
                continue;
            };
            let environment = slo
                .labels
                .get("environment")
                .and_then(|v| v.first())
                .cloned();
            for i in eval::alert_history(slo, objective, series, from, to, &Options::default()) {
                if i.severity == "page" && (from..to).contains(&i.start) {
                    out.push(PageAlert {
                        service: slo.service.clone(),
                        environment: environment.clone(),
                        name: format!("{}: {}", slo.name, i.alert),
                        start: i.start * MICROS,
                    });
                }
            }
        }
    }
    out
}

/// The DORA analysis of a selection, with every signal (incidents of the selected service,
/// page alerts of the SLOs under `slo.dir`).
pub(crate) async fn analysis(
    selection: &Selection,
    selected: &Selected,
) -> anyhow::Result<nines_dora::Analysis> {
    let Selected {
        from,
        to,
        horizon,
        engine,
        deploys,
        slos,
    } = selected;
    let to_us = to * MICROS;
    let mut incidents = dora_source::incidents(engine, to_us).await?;
    if let Some(s) = &selection.service {
        incidents.retain(|i| i.service == *s);
    }
    let alerts = page_alerts(slos, (from - horizon, *to));
    let evidence = Evidence {
        incidents: &incidents,
        alerts: &alerts,
        horizon: horizon * MICROS,
    };
    Ok(analyse_with(deploys, &evidence, from * MICROS, to_us))
}

/// The metrics rows of an analysis: per scope, then overall.
pub(crate) fn metric_rows(a: &nines_dora::Analysis) -> Vec<Map<String, Value>> {
    let mut table: Vec<Map<String, Value>> =
        a.scopes.iter().map(|((s, e), m)| row(s, e, m)).collect();
    table.push(row("(all)", "(all)", &a.overall));
    table
}

/// The columns of the failed deployments.
pub(crate) const FAILED_HEADER: [&str; 6] = [
    "service",
    "environment",
    "version",
    "deployed_at",
    "signals",
    "recovery_s",
];

/// The columns of the weekly trend.
pub(crate) const WEEK_HEADER: [&str; 7] = [
    "week",
    "deployments",
    "deploys_per_day",
    "lead_time_median_s",
    "change_fail_rate",
    "recovery_median_s",
    "rework_rate",
];

/// The failed deployments of an analysis with their signals and recovery.
pub(crate) fn failed_rows(a: &nines_dora::Analysis) -> Vec<Map<String, Value>> {
    a.deploys
        .iter()
        .filter(|j| j.failed())
        .map(|j| {
            let mut r = Map::new();
            r.insert("service".into(), j.deploy.service.clone().into());
            r.insert("environment".into(), j.deploy.environment.clone().into());
            r.insert("version".into(), j.deploy.version.clone().into());
            r.insert("deployed_at".into(), rfc3339(j.deploy.time / MICROS).into());
            let signals: Vec<Value> = j.signals.iter().map(|s| s.to_string().into()).collect();
            r.insert("signals".into(), Value::Array(signals));
            r.insert(
                "recovery_s".into(),
                num(j
                    .recovered_at
                    .map(|t| (t - j.deploy.time) as f64 / MICROS as f64)),
            );
            r
        })
        .collect()
}

/// The trend: the overall metrics of every ISO week the range touches, clipped to it.
pub(crate) fn week_rows(a: &nines_dora::Analysis) -> Vec<Map<String, Value>> {
    a.weeks
        .iter()
        .map(|(start, m)| {
            let mut r = row("(all)", "(all)", m);
            r.insert("week".into(), rfc3339(start / MICROS).into());
            r
        })
        .collect()
}

/// The built-in tiers (`config/dora-tiers.toml`).
const BUILT_IN_TIERS: &str = include_str!("../config/dora-tiers.toml");

/// The tiers the metrics are rated against: `dora.tiers`, else the built-in file.
pub(crate) fn tiers(cfg: &Config) -> anyhow::Result<Tiers> {
    let (name, text) = match &cfg.dora.tiers {
        Some(path) => (
            path.display().to_string(),
            std::fs::read_to_string(path)
                .with_context(|| format!("reading dora.tiers {}", path.display()))?,
        ),
        None => (
            "config/dora-tiers.toml (built in)".to_owned(),
            BUILT_IN_TIERS.to_owned(),
        ),
    };
    let tiers: Tiers = toml::from_str(&text).with_context(|| format!("dora tiers {name}"))?;
    if tiers.tiers.is_empty() {
        bail!("dora tiers {name}: no [[tier]]");
    }
    Ok(tiers)
}

/// The columns of the tier table.
pub(crate) const TIER_HEADER: [&str; 6] = [
    "service",
    "environment",
    "deployment_frequency",
    "lead_time",
    "change_fail_rate",
    "recovery_time",
];

/// The tier of each metric, per scope then overall (as [`metric_rows`]).
pub(crate) fn tier_rows(a: &nines_dora::Analysis, tiers: &Tiers) -> Vec<Map<String, Value>> {
    let row = |s: &str, e: &str, m: &Metrics| {
        let r = tiers.rate(m);
        let mut out = Map::new();
        out.insert("service".into(), s.into());
        out.insert("environment".into(), e.into());
        for (k, v) in [
            ("deployment_frequency", r.deployment_frequency),
            ("lead_time", r.lead_time),
            ("change_fail_rate", r.change_fail_rate),
            ("recovery_time", r.recovery_time),
        ] {
            out.insert(k.into(), v.map_or(Value::Null, Value::from));
        }
        out
    };
    let mut table: Vec<Map<String, Value>> =
        a.scopes.iter().map(|((s, e), m)| row(s, e, m)).collect();
    table.push(row("(all)", "(all)", &a.overall));
    table
}

/// `nines dora`.
pub(crate) async fn run(
    cfg: &Config,
    selection: &Selection,
    format: crate::Format,
) -> anyhow::Result<()> {
    let tiers = tiers(cfg)?;
    let selected = selection.read(cfg).await?;
    let a = analysis(selection, &selected).await?;
    let (from, to) = (selected.from, selected.to);
    rows::print(&HEADER, &metric_rows(&a), format);
    println!();
    rows::print(&TIER_HEADER, &tier_rows(&a, &tiers), format);
    if matches!(format, crate::Format::Table) {
        println!("tiers: {}", tiers.source);
    }
    println!();
    let failed = failed_rows(&a);
    rows::print(&FAILED_HEADER, &failed, format);
    println!();
    let weeks = week_rows(&a);
    rows::print(&WEEK_HEADER, &weeks, format);
    if matches!(format, crate::Format::Table) {
        println!("[{}, {})", rfc3339(from), rfc3339(to));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_tiers_are_the_2023_clusters_best_first() {
        let t = tiers(&Config::default()).unwrap();
        assert_eq!(t.source, "Accelerate State of DevOps Report 2023");
        let names: Vec<&str> = t.tiers.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["elite", "high", "medium", "low"]);
        let cfr: Vec<Option<f64>> = t.tiers.iter().map(|t| t.change_fail_rate_at_most).collect();
        assert_eq!(cfr, [Some(0.05), Some(0.10), Some(0.15), None]);
        assert_eq!(t.tiers[0].recovery_time_at_most_s, Some(3_600.0));
    }

    #[test]
    fn a_bad_tier_file_is_named_with_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiers.toml");
        std::fs::write(
            &path,
            "source = \"x\"\n[[tier]]\nname = \"a\"\nlead_time_s = 1\n",
        )
        .unwrap();
        let mut cfg = Config::default();
        cfg.dora.tiers = Some(path.clone());
        let e = format!("{:#}", tiers(&cfg).unwrap_err());
        assert!(e.contains(&path.display().to_string()), "{e}");
        assert!(e.contains("lead_time_s"), "{e}");
        std::fs::write(&path, "source = \"x\"\n").unwrap();
        let e = format!("{:#}", tiers(&cfg).unwrap_err());
        assert!(e.contains("tier"), "{e}");
    }
}
