//! `nines dora --from --to`: the DORA metrics of a range (docs/dora.md), per service and
//! environment and overall, then the failed deployments with the signals that failed them.

use anyhow::bail;
use nines_dora::{Evidence, Metrics, PageAlert, analyse_with};
use nines_query::{QueryEngine, dora_source};
use nines_slo::eval::{self, Options};
use nines_slo::window::rfc3339;
use serde_json::{Map, Value};

use crate::config::Config;
use crate::rows::{self, num};

const MICROS: i64 = 1_000_000;

/// The columns of the metrics table.
const HEADER: [&str; 13] = [
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

/// The page alerts that started in `[from, to)` (seconds) for every SLO under `slo.dir`
/// (none when it does not exist). An SLO labelled `environment` judges that environment's
/// deploys only.
async fn page_alerts(
    cfg: &Config,
    engine: &QueryEngine,
    (from, to): (i64, i64),
) -> anyhow::Result<Vec<PageAlert>> {
    if !cfg.slo.dir.exists() {
        return Ok(Vec::new());
    }
    let (_, slos, errors) = crate::slo_cmd::load(std::slice::from_ref(&cfg.slo.dir))?;
    for e in &errors {
        eprintln!("error: {e}");
    }
    let mut out = Vec::new();
    for slo in &slos {
        for objective in &slo.objectives {
            let (data_from, _) = eval::data_range(slo, objective, from);
            let series = match nines_query::slo_source::series(
                engine,
                &slo.indicator,
                objective,
                data_from,
                to,
            )
            .await
            {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("{}: no page-alert signal: {e}", slo.name);
                    continue;
                }
            };
            let environment = slo
                .labels
                .get("environment")
                .and_then(|v| v.first())
                .cloned();
            for i in eval::alert_history(slo, objective, &series, from, to, &Options::default()) {
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
    Ok(out)
}

/// `nines dora`.
pub(crate) async fn run(
    cfg: &Config,
    (from, to): (i64, i64),
    (service, environment): (Option<String>, Option<String>),
    horizon: i64,
    format: crate::Format,
) -> anyhow::Result<()> {
    if to <= from {
        bail!("--to must be after --from");
    }
    let store = crate::roles::open_store(cfg).await?;
    let engine = QueryEngine::new(&store).await?;
    let to_us = to * MICROS;
    let mut deploys = dora_source::deploys(&engine, to_us).await?;
    let mut incidents = dora_source::incidents(&engine, to_us).await?;
    deploys.retain(|d| {
        service.as_ref().is_none_or(|s| *s == d.service)
            && environment.as_ref().is_none_or(|e| *e == d.environment)
    });
    if let Some(s) = &service {
        incidents.retain(|i| i.service == *s);
    }
    let alerts = page_alerts(cfg, &engine, (from - horizon, to)).await?;
    let evidence = Evidence {
        incidents: &incidents,
        alerts: &alerts,
        horizon: horizon * MICROS,
    };
    let a = analyse_with(&deploys, &evidence, from * MICROS, to_us);
    let mut table: Vec<Map<String, Value>> =
        a.scopes.iter().map(|((s, e), m)| row(s, e, m)).collect();
    table.push(row("(all)", "(all)", &a.overall));
    rows::print(&HEADER, &table, format);
    println!();
    let failed: Vec<Map<String, Value>> = a
        .deploys
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
        .collect();
    rows::print(
        &[
            "service",
            "environment",
            "version",
            "deployed_at",
            "signals",
            "recovery_s",
        ],
        &failed,
        format,
    );
    if matches!(format, crate::Format::Table) {
        println!("[{}, {})", rfc3339(from), rfc3339(to));
    }
    Ok(())
}
