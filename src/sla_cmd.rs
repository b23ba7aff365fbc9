//! `nines sla check | statement`: SLAs per customer (docs/sla.md) — definitions under
//! `sla.dir`, each measured by an SLO's indicator restricted to one tenant, over a calendar
//! month in its time zone: attainment, downtime against the allowance, the credit tier, and
//! the evidence (worst hours, the service's incidents). One JSON model (`nines.sla/v1`),
//! rendered as JSON or Markdown; `nines report` carries the same statements.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use arrow::array::{Array, AsArray};
use nines_query::QueryEngine;
use nines_query::slo_source::{self, Want};
use nines_slo::model::Slo;
use nines_slo::openslo::LoadError;
use nines_slo::sla::{self, Sla, Statement};
use nines_slo::window::rfc3339;
use serde_json::{Map, Value, json};

use crate::config::Config;
use crate::rows::{self, num};
use crate::slo_cmd;

/// The statement's renderings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum SlaFormat {
    Md,
    Json,
}

/// Every SLA under `paths` and every refusal.
pub(crate) fn load(paths: &[PathBuf]) -> anyhow::Result<(Vec<Sla>, Vec<LoadError>)> {
    let mut slas = Vec::new();
    let mut errors = Vec::new();
    for f in slo_cmd::definition_files(paths)? {
        let text =
            std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
        let (s, e) = sla::parse(&f.display().to_string(), &text);
        slas.extend(s);
        errors.extend(e);
    }
    Ok((slas, errors))
}

/// The SLAs of `sla.dir` (none if it does not exist) and the SLOs they name, each refusal
/// on stderr; an SLA naming no known SLO is a refusal too.
pub(crate) fn load_with_slos(cfg: &Config) -> anyhow::Result<Vec<(Sla, Slo)>> {
    if !cfg.sla.dir.exists() {
        return Ok(Vec::new());
    }
    let (slas, errors) = load(std::slice::from_ref(&cfg.sla.dir))?;
    for e in &errors {
        eprintln!("error: {e}");
    }
    let slos = if cfg.slo.dir.exists() {
        slo_cmd::load_and_warn(std::slice::from_ref(&cfg.slo.dir))?
    } else {
        Vec::new()
    };
    let mut out = Vec::new();
    for s in slas {
        match slos.iter().find(|o| o.name == s.slo) {
            Some(slo) => out.push((s, slo.clone())),
            None => eprintln!(
                "error: SLA {}: spec.slo: no SLO named {:?} under {}",
                s.name,
                s.slo,
                cfg.slo.dir.display()
            ),
        }
    }
    Ok(out)
}

/// `nines sla check`: prints every refusal; false if there is any.
pub(crate) fn check(cfg: &Config, paths: &[PathBuf]) -> anyhow::Result<bool> {
    let (slas, errors) = load(paths)?;
    let slos = if cfg.slo.dir.exists() {
        slo_cmd::load(std::slice::from_ref(&cfg.slo.dir))?.1
    } else {
        Vec::new()
    };
    let mut bad: Vec<String> = errors.iter().map(ToString::to_string).collect();
    for s in &slas {
        if !slos.iter().any(|o| o.name == s.slo) {
            bad.push(format!(
                "SLA {}: spec.slo: no SLO named {:?} under {}",
                s.name,
                s.slo,
                cfg.slo.dir.display()
            ));
        }
    }
    for e in &bad {
        eprintln!("error: {e}");
    }
    if bad.is_empty() {
        println!("ok: {} SLA(s)", slas.len());
    } else {
        println!("{} error(s); loaded {} SLA(s)", bad.len(), slas.len());
    }
    Ok(bad.is_empty())
}

/// The tenants with traffic of `service` in `[from, to)`, in name order.
async fn tenants_of(
    engine: &QueryEngine,
    service: &str,
    (from, to): (i64, i64),
) -> anyhow::Result<Vec<String>> {
    let sql = format!(
        "SELECT DISTINCT tenant FROM sli_1m WHERE service = {} \
         AND window_start >= to_timestamp_seconds({from}) AND window_start < to_timestamp_seconds({to}) \
         ORDER BY tenant",
        nines_query::sql_string(service)
    );
    let (_, batches) = engine.sql(&sql).await?;
    let mut out = Vec::new();
    for b in &batches {
        let col = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8)?;
        let col = col.as_string::<i32>();
        out.extend(
            (0..col.len())
                .filter(|i| !col.is_null(*i))
                .map(|i| col.value(i).to_owned()),
        );
    }
    Ok(out)
}

/// Seconds as `YYYY-MM-DD HH:MM` in `tz`.
fn local(t: i64, tz: chrono_tz::Tz) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string())
        .unwrap_or_default()
}

fn statement_json(
    month: &str,
    sla: &Sla,
    slo: &Slo,
    st: &Statement,
    incidents: &[&nines_dora::Incident],
) -> Value {
    let tz = sla.time_zone;
    json!({
        "month": month,
        "sla": sla.name,
        "slo": slo.name,
        "service": slo.service,
        "tenant": st.tenant,
        "target": sla.target,
        "time_zone": tz.name(),
        "measure": sla.measure,
        "from": rfc3339(st.period.0),
        "to": rfc3339(st.period.1),
        "requests": {
            "total": st.total,
            "bad": st.bad,
            "allowed_bad": st.allowed_bad_requests,
            "attainment": num(Some(st.request_attainment)),
        },
        "minutes": {
            "in_month": st.minutes,
            "downtime": st.downtime_minutes,
            "allowed_downtime": st.allowed_downtime_minutes,
            "downtime_error_rate": sla.downtime_error_rate,
            "attainment": num(Some(st.minute_attainment)),
        },
        "attainment": num(Some(st.attainment)),
        "margin": num(Some(st.attainment - sla.target)),
        "met": st.met,
        "credit_tier": st.tier,
        "credit": st.credit,
        "worst_hours": st.worst.iter().map(|w| json!({
            "start": rfc3339(w.start),
            "local_start": local(w.start, tz),
            "total": w.total,
            "bad": w.bad,
            "error_ratio": num(Some(w.bad / w.total)),
        })).collect::<Vec<_>>(),
        "incidents": incidents.iter().map(|i| json!({
            "id": i.id,
            "opened_at": rfc3339(i.opened_at / 1_000_000),
            "resolved_at": i.resolved_at.map(|r| rfc3339(r / 1_000_000)),
        })).collect::<Vec<_>>(),
    })
}

/// The statements of every SLA for `month` (`YYYY-MM`, in each SLA's zone), for `tenant`
/// or every tenant each SLA covers, as the `statements` array of the model.
pub(crate) async fn statements(
    engine: &QueryEngine,
    slas: &[(Sla, Slo)],
    month: &str,
    tenant: Option<&str>,
) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    for (sla, slo) in slas {
        let period = sla::month(month, sla.time_zone).map_err(anyhow::Error::msg)?;
        let Some(objective) = slo.objectives.first() else {
            bail!("SLA {}: SLO {} has no objective", sla.name, slo.name);
        };
        let tenants = match &sla.tenants {
            Some(t) => t.clone(),
            None => tenants_of(engine, &slo.service, (period.start, period.end)).await?,
        };
        let tenants: Vec<String> = tenants
            .into_iter()
            .filter(|t| tenant.is_none_or(|x| x == t))
            .collect();
        let indicators = tenants
            .iter()
            .map(|t| {
                slo.indicator
                    .restricted(&format!("tenant = {}", nines_query::sql_string(t)))
                    .map_err(|e| anyhow::anyhow!("SLA {}: {e}", sla.name))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let wants: Vec<Want<'_>> = indicators
            .iter()
            .map(|indicator| Want {
                indicator,
                objective,
                from: period.start.div_euclid(60) * 60,
                to: period.end,
            })
            .collect();
        // Incident times are microseconds.
        let (start_us, end_us) = (period.start * 1_000_000, period.end * 1_000_000);
        let incidents = nines_query::dora_source::incidents(engine, end_us).await?;
        let service_incidents: Vec<&nines_dora::Incident> = incidents
            .iter()
            .filter(|i| i.service == slo.service && i.resolved_at.is_none_or(|r| r > start_us))
            .collect();
        for (t, series) in tenants
            .iter()
            .zip(slo_source::series_many(engine, &wants).await)
        {
            let series = series.map_err(|e| anyhow::anyhow!("SLA {} for {t}: {e}", sla.name))?;
            let st = sla::statement(sla, t, &series, period);
            out.push(statement_json(month, sla, slo, &st, &service_incidents));
        }
    }
    Ok(out)
}

/// `nines sla statement`'s model: `nines.sla/v1`.
pub(crate) async fn model(
    cfg: &Config,
    month: &str,
    tenant: Option<&str>,
) -> anyhow::Result<Value> {
    let slas = load_with_slos(cfg)?;
    if slas.is_empty() {
        bail!(
            "no SLA to state: none under {} names a known SLO",
            cfg.sla.dir.display()
        );
    }
    let store = crate::roles::open_store(cfg).await?;
    let engine = QueryEngine::new(&store).await?;
    Ok(json!({
        "schema": "nines.sla/v1",
        "month": month,
        "tenant": tenant,
        "statements": statements(&engine, &slas, month, tenant).await?,
    }))
}

fn pct(v: &Value) -> String {
    v.as_f64()
        .map_or("-".into(), |x| format!("{:.3} %", x * 100.0))
}

/// The columns of [`summary_rows`].
pub(crate) const SUMMARY_HEADER: [&str; 9] = [
    "month",
    "sla",
    "tenant",
    "target",
    "attainment",
    "bad requests / allowed",
    "downtime minutes / allowed",
    "met",
    "credit",
];

/// One summary row per statement (the Markdown's table and the report page's).
pub(crate) fn summary_rows(statements: &[Value]) -> Vec<Map<String, Value>> {
    statements
        .iter()
        .map(|s| {
            let mut r = Map::new();
            r.insert("month".into(), s["month"].clone());
            r.insert("sla".into(), s["sla"].clone());
            r.insert("tenant".into(), s["tenant"].clone());
            r.insert("target".into(), pct(&s["target"]).into());
            r.insert(
                "attainment".into(),
                format!(
                    "{} ({})",
                    pct(&s["attainment"]),
                    s["measure"].as_str().unwrap_or("")
                )
                .into(),
            );
            r.insert(
                "bad requests / allowed".into(),
                format!(
                    "{:.0} / {:.1}",
                    s["requests"]["bad"].as_f64().unwrap_or(0.0),
                    s["requests"]["allowed_bad"].as_f64().unwrap_or(0.0)
                )
                .into(),
            );
            r.insert(
                "downtime minutes / allowed".into(),
                format!(
                    "{} / {:.1}",
                    s["minutes"]["downtime"],
                    s["minutes"]["allowed_downtime"].as_f64().unwrap_or(0.0)
                )
                .into(),
            );
            r.insert(
                "met".into(),
                (if s["met"] == true { "yes" } else { "no" }).into(),
            );
            r.insert(
                "credit".into(),
                match s["credit"].as_f64() {
                    Some(c) if c > 0.0 => format!(
                        "{:.0} % (below {})",
                        c * 100.0,
                        pct(&s["credit_tier"]["below"])
                    ),
                    _ => "none".into(),
                }
                .into(),
            );
            r
        })
        .collect()
}

/// The summary rows and each statement's evidence, in Markdown (a section of its own, or
/// of the report).
pub(crate) fn markdown_body(statements: &[Value]) -> String {
    let rows = summary_rows(statements);
    let mut out = rows::markdown(&SUMMARY_HEADER, &rows);
    out.push('\n');
    for s in statements {
        out.push_str(&format!(
            "\n### {} — {}, {}\n\nMeasured by SLO `{}` (service `{}`) from {} to {} ({}), by {}; margin over the target {:+.3} points.\n",
            s["sla"].as_str().unwrap_or(""),
            s["tenant"].as_str().unwrap_or(""),
            s["month"].as_str().unwrap_or(""),
            s["slo"].as_str().unwrap_or(""),
            s["service"].as_str().unwrap_or(""),
            s["from"].as_str().unwrap_or(""),
            s["to"].as_str().unwrap_or(""),
            s["time_zone"].as_str().unwrap_or(""),
            s["measure"].as_str().unwrap_or(""),
            s["margin"].as_f64().unwrap_or(0.0) * 100.0,
        ));
        let worst = s["worst_hours"].as_array().cloned().unwrap_or_default();
        if worst.is_empty() {
            out.push_str("\nNo hour with a failed request.\n");
        } else {
            out.push_str("\nWorst hours:\n");
            for w in worst {
                out.push_str(&format!(
                    "- {}: {:.0} of {:.0} requests failed ({})\n",
                    w["local_start"].as_str().unwrap_or(""),
                    w["bad"].as_f64().unwrap_or(0.0),
                    w["total"].as_f64().unwrap_or(0.0),
                    pct(&w["error_ratio"])
                ));
            }
        }
        let incidents = s["incidents"].as_array().cloned().unwrap_or_default();
        if !incidents.is_empty() {
            out.push_str("\nIncidents of the service in the month:\n");
            for i in incidents {
                out.push_str(&format!(
                    "- {}: opened {}, {}\n",
                    i["id"].as_str().unwrap_or(""),
                    i["opened_at"].as_str().unwrap_or(""),
                    i["resolved_at"]
                        .as_str()
                        .map_or("unresolved".into(), |r| format!("resolved {r}"))
                ));
            }
        }
    }
    out
}

/// The whole statement in Markdown.
pub(crate) fn markdown(model: &Value) -> String {
    let statements = model["statements"].as_array().cloned().unwrap_or_default();
    format!(
        "# SLA statement, {}\n\n{}",
        model["month"].as_str().unwrap_or(""),
        markdown_body(&statements)
    )
}

/// `nines sla statement`.
pub(crate) async fn run(
    cfg: &Config,
    month: &str,
    tenant: Option<&str>,
    format: SlaFormat,
    out: Option<&Path>,
) -> anyhow::Result<()> {
    let model = model(cfg, month, tenant).await?;
    let text = match format {
        SlaFormat::Json => serde_json::to_string_pretty(&model)? + "\n",
        SlaFormat::Md => markdown(&model),
    };
    match out {
        Some(p) => std::fs::write(p, text).with_context(|| format!("writing {}", p.display()))?,
        None => print!("{text}"),
    }
    Ok(())
}
