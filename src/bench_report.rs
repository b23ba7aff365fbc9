//! `nines bench --report`: `nines report` over 30 days of 50 services, beside the SQL it
//! needs, measured in the same run (BENCHMARKS.md, "Report").
//!
//! The data: the SLO stage's month of `sli_1m` (50 services × 8 operations, a row a
//! minute), one 99.9 % availability SLO per service, and a deploy a day per service with two
//! commits (1,500 deploys, built by the aggregator's own buffer), written straight through
//! the store. Timed, three times each over the same tables:
//! - **the SQL:** what the report cannot do without — the deploys, every SLO's one-minute
//!   series over the range its figures need (one grouped query), and the incidents;
//! - **the report:** `nines report --format html` without the process start: reading the
//!   selection, building the model (SLOs with their history and alerts, the budget each
//!   deploy burned, DORA with tiers) and rendering the page.
//!
//! Every service's SLI in the report is checked against one GROUP BY first.

use std::time::Instant;

use anyhow::{Context, bail};
use nines_aggregate::PartitionBuffer;
use nines_proto::v1::{Commit, DeployEvent, DeployOutcome, EventBatch, Resource};

use crate::bench_slo::{fmt_runs, service, slo_yaml, write_month};
use crate::config::Config;
use crate::dora_cmd::Selection;

const SERVICES: usize = 50;
const DAYS: i64 = 30;
const RUNS: usize = 3;

pub(crate) async fn run(keep: Option<&std::path::Path>) -> anyhow::Result<()> {
    let dir = match keep {
        Some(d) => d.to_owned(),
        None => std::env::temp_dir().join(format!("nines-bench-report-{}", std::process::id())),
    };
    let mut cfg = Config {
        data_dir: dir.clone(),
        ..Config::default()
    };
    cfg.slo.dir = dir.join("slos");
    std::fs::create_dir_all(&cfg.slo.dir)?;
    std::fs::write(cfg.slo.dir.join("bench.yaml"), slos())?;
    let store = crate::roles::open_store(&cfg).await?;
    let to = crate::slo_cmd::now() / 86_400 * 86_400;
    let from = to - DAYS * 86_400;
    let started = Instant::now();
    let rows = write_month(&store, from, to).await?;
    let deploys = write_deploys(&store, from, to).await?;
    eprintln!(
        "wrote {rows} sli_1m rows and {deploys} deploys in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let selection = Selection::range(from, to);

    // The SQL the report needs: what reading the selection queries (the deploys, and every
    // SLO's one-minute series over its data range, grouped into one query), and the
    // incidents.
    let mut sql_times = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        let selected = selection.read(&cfg).await?;
        nines_query::dora_source::incidents(&selected.engine, to * 1_000_000).await?;
        sql_times.push(t.elapsed().as_secs_f64());
    }

    // The report.
    let mut report_times = Vec::new();
    let mut model = serde_json::Value::Null;
    let mut html_bytes = 0;
    for _ in 0..RUNS {
        let t = Instant::now();
        let selected = selection.read(&cfg).await?;
        model = crate::report_cmd::build(&cfg, &selection, &selected, 0.05).await?;
        html_bytes = crate::report_html::render(&model)?.len();
        report_times.push(t.elapsed().as_secs_f64());
    }
    check(&store, &model, (from, to)).await?;

    let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let worst = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    println!(
        "| stage | runs (s) | best (s) |\n|---|---|---|\n\
         | the SQL: deploys, {SERVICES} SLO series in one grouped query, incidents | {} | {:.3} |\n\
         | nines report --format html: model and page | {} | {:.3} |\n\
         \nrows {rows}, deploys {deploys}, page {html_bytes} bytes; report / SQL: {:.2}× (best \
         of {RUNS}), {:.2}× (worst)",
        fmt_runs(&sql_times),
        best(&sql_times),
        fmt_runs(&report_times),
        best(&report_times),
        best(&report_times) / best(&sql_times),
        worst(&report_times) / worst(&sql_times),
    );
    if keep.is_none() {
        std::fs::remove_dir_all(&dir).ok();
    }
    Ok(())
}

/// One 99.9 % availability SLO per service over 30 days.
fn slos() -> String {
    (0..SERVICES)
        .map(|s| {
            let svc = service(s);
            slo_yaml(&format!("avail-{svc}"), &svc, &format!("service = '{svc}'"))
        })
        .collect()
}

/// A deploy a day per service (at minute `s` past 10:00), version `v<day>`, with commits 3 h
/// and 20 h before, through the aggregator's buffer; returns how many.
async fn write_deploys(store: &nines_store::Store, from: i64, to: i64) -> anyhow::Result<u64> {
    let per_service = (0..SERVICES).map(|s| {
        let deploys: Vec<DeployEvent> = (0..)
            .map(|d| from + d * 86_400 + 36_000 + s as i64 * 60)
            .take_while(|t| *t < to)
            .enumerate()
            .map(|(d, t)| DeployEvent {
                time_unix_nano: t * 1_000_000_000,
                version: format!("v{d}"),
                commits: [3, 20]
                    .iter()
                    .map(|h| Commit {
                        sha: format!("{s}-{d}-{h}"),
                        time_unix_nano: (t - h * 3_600) * 1_000_000_000,
                    })
                    .collect(),
                outcome: DeployOutcome::Succeeded.into(),
                ..Default::default()
            })
            .collect();
        (
            Resource {
                tenant: "bench".into(),
                service: service(s),
                environment: "prod".into(),
                version: String::new(),
            },
            deploys,
        )
    });
    commit_deploys(store, "bench-report", per_service).await
}

/// Commits each service's deploys to the `deploys` table through the aggregator's buffer,
/// as records of partition 0 of `topic`; returns how many.
pub(crate) async fn commit_deploys(
    store: &nines_store::Store,
    topic: &str,
    per_service: impl IntoIterator<Item = (Resource, Vec<DeployEvent>)>,
) -> anyhow::Result<u64> {
    let mut buffer = PartitionBuffer::new(0);
    let mut n = 0;
    for (offset, (resource, deploys)) in per_service.into_iter().enumerate() {
        n += deploys.len() as u64;
        let batch = EventBatch {
            resource: Some(resource),
            deploys,
            ..Default::default()
        };
        buffer.add(&batch, offset as i64);
    }
    let flush = buffer.take()?.context("deploys buffered")?;
    let expected = store.positions(topic, 0).await?;
    match store.commit(topic, &flush, &expected, |_| false).await? {
        nines_store::CommitOutcome::Committed(_) => Ok(n),
        nines_store::CommitOutcome::Fenced(f) => bail!("fenced writing the deploys: {f:?}"),
    }
}

/// Every service's SLI at the end of the range in the report equals one GROUP BY's.
async fn check(
    store: &nines_store::Store,
    model: &serde_json::Value,
    (from, to): (i64, i64),
) -> anyhow::Result<()> {
    let engine = nines_query::QueryEngine::new(store).await?;
    let sql = format!(
        "SELECT service, 1 - CAST(sum(errors) AS DOUBLE) / CAST(sum(total) AS DOUBLE) AS sli \
         FROM sli_1m WHERE window_start >= to_timestamp_seconds({from}) \
         AND window_start < to_timestamp_seconds({to}) GROUP BY service"
    );
    let (_, batches) = engine.sql(&sql).await?;
    let mut want = std::collections::BTreeMap::new();
    for b in &batches {
        let s = b
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::StringArray>();
        let v = b
            .column(1)
            .as_any()
            .downcast_ref::<arrow::array::Float64Array>();
        let (Some(s), Some(v)) = (s, v) else {
            bail!("unexpected result types: {:?}", b.schema());
        };
        for r in 0..b.num_rows() {
            want.insert(s.value(r).to_owned(), v.value(r));
        }
    }
    let services = model["services"].as_array().context("services")?;
    if services.len() != SERVICES || want.len() != SERVICES {
        bail!(
            "{} services in the report, {} in SQL",
            services.len(),
            want.len()
        );
    }
    for svc in services {
        let name = svc["service"].as_str().unwrap_or_default();
        let got = svc["slos"][0]["sli"].as_f64().unwrap_or(f64::NAN);
        if (got - want[name]).abs() > 1e-9 {
            bail!("{name}: SLI {got} in the report but {} by SQL", want[name]);
        }
    }
    Ok(())
}
