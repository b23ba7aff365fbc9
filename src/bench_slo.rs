//! `nines bench --slo`: `nines slo status` of 200 SLOs (50 services × 4 operations, 30-day
//! availability) over 30 days of `sli_1m` (50 services × 8 operations, one row per minute:
//! 17.3 M rows), beside its floor measured in the same run: one DataFusion GROUP BY that
//! computes the same 200 SLIs over the same table (BENCHMARKS.md, "SLO evaluation").
//!
//! The rows are written straight through the store (as the aggregator commits them), not
//! through ingest: the stage measures evaluation, and the pipeline stages measure the rest.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use arrow::array::{
    ArrayRef, BinaryArray, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use nines_model::flush::{Flush, TableBatch};
use nines_model::schema::{SLI_1M, sli_1m};
use nines_model::sketch::LatencySketch;
use nines_query::QueryEngine;
use nines_slo::openslo::Catalog;
use nines_store::{CommitOutcome, Store};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::slo_cmd;

const SERVICES: usize = 50;
const OPERATIONS: usize = 8;
/// Operations with an SLO each (of the `OPERATIONS` with data).
const SLO_OPERATIONS: usize = 4;
const DAYS: i64 = 30;
const RUNS: usize = 3;

pub(crate) fn service(s: usize) -> String {
    format!("svc-{s:02}")
}

fn operation(o: usize) -> String {
    format!("op-{o}")
}

/// Runs the stage and prints its table.
pub(crate) async fn run(keep: Option<&Path>) -> anyhow::Result<()> {
    let dir = match keep {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.to_owned()
        }
        None => std::env::temp_dir().join(format!("nines-bench-slo-{}", std::process::id())),
    };
    let store = Store::open_dir(dir.join("tables"))
        .await
        .context("opening the store")?;
    let now = crate::slo_cmd::now();
    let at = now / 60 * 60;
    let from = at - DAYS * 86_400;
    let started = Instant::now();
    let rows = write_month(&store, from, at).await?;
    eprintln!(
        "wrote {rows} sli_1m rows in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let engine = QueryEngine::new(&store).await?;

    // The floor: the same 200 SLIs by one GROUP BY.
    let ops: Vec<String> = (0..SLO_OPERATIONS)
        .map(|o| format!("'{}'", operation(o)))
        .collect();
    let floor_sql = format!(
        "SELECT service, operation, 1 - CAST(sum(errors) AS DOUBLE) / CAST(sum(total) AS DOUBLE) AS sli \
         FROM sli_1m WHERE window_start >= to_timestamp_seconds({from}) \
         AND window_start < to_timestamp_seconds({at}) AND operation IN ({}) \
         GROUP BY service, operation",
        ops.join(", ")
    );
    let mut floor_sli = std::collections::BTreeMap::new();
    let mut floor_times = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        let (_, batches) = engine.sql(&floor_sql).await?;
        floor_times.push(t.elapsed().as_secs_f64());
        floor_sli.clear();
        for b in &batches {
            let s = b.column(0).as_any().downcast_ref::<StringArray>();
            let o = b.column(1).as_any().downcast_ref::<StringArray>();
            let v = b
                .column(2)
                .as_any()
                .downcast_ref::<arrow::array::Float64Array>();
            let (Some(s), Some(o), Some(v)) = (s, o, v) else {
                bail!("unexpected floor result types: {:?}", b.schema());
            };
            for r in 0..b.num_rows() {
                floor_sli.insert((s.value(r).to_owned(), o.value(r).to_owned()), v.value(r));
            }
        }
    }
    if floor_sli.len() != SERVICES * SLO_OPERATIONS {
        bail!("the floor found {} SLIs", floor_sli.len());
    }

    let slos = slos()?;
    let mut eval_times = Vec::new();
    let mut evaluated = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        evaluated = slo_cmd::evaluate_all(&engine, &slos, at).await;
        eval_times.push(t.elapsed().as_secs_f64());
    }
    // The evaluation answers what the floor answers.
    for (slo, _, report) in &evaluated {
        let report = report
            .as_ref()
            .map_err(|e| anyhow::anyhow!("{}: {e}", slo.name))?;
        let key = slo
            .name
            .strip_prefix("avail-")
            .and_then(|k| k.rsplit_once('-'))
            .map(|(s, o)| (s.to_owned(), format!("op-{o}")))
            .context("SLO name")?;
        let want = floor_sli[&key];
        let got = report.standing.sli.unwrap_or(f64::NAN);
        if (got - want).abs() > 1e-9 {
            bail!("{}: SLI {got} but the floor says {want}", slo.name);
        }
    }
    let spread = |v: &[f64]| {
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = v.iter().copied().fold(0.0, f64::max);
        (min, max)
    };
    let (fmin, fmax) = spread(&floor_times);
    let (emin, emax) = spread(&eval_times);
    println!(
        "| stage | runs (s) | best (s) |\n|---|---|---|\n\
         | floor: one GROUP BY, 200 SLIs over 30 days | {} | {fmin:.3} |\n\
         | nines slo status: 200 SLOs (SLI, budget, 7 burn rates, 4 alert rows each) | {} | {emin:.3} |\n\
         \nrows {rows}; evaluation / floor: {:.2}× (best of {RUNS}), {:.2}× (worst)",
        fmt_runs(&floor_times),
        fmt_runs(&eval_times),
        emin / fmin,
        emax / fmax,
    );
    if keep.is_none() {
        std::fs::remove_dir_all(&dir).ok();
    }
    Ok(())
}

pub(crate) fn fmt_runs(v: &[f64]) -> String {
    v.iter()
        .map(|t| format!("{t:.3}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One OpenSLO document: 99.9 % availability of the `sli_1m` rows `filter` selects, over 30
/// rolling days.
pub(crate) fn slo_yaml(name: &str, svc: &str, filter: &str) -> String {
    format!(
        "apiVersion: openslo/v1\nkind: SLO\nmetadata:\n  name: {name}\nspec:\n  service: {svc}\n  \
         indicator:\n    metadata:\n      name: {name}-sli\n    spec:\n      ratioMetric:\n        \
         good:\n          metricSource:\n            type: nines\n            spec:\n              \
         filter: \"{filter}\"\n              value: \"sum(total - errors)\"\n        \
         total:\n          metricSource:\n            type: nines\n            spec:\n              \
         filter: \"{filter}\"\n              value: \"sum(total)\"\n  \
         timeWindow:\n    - duration: 30d\n      isRolling: true\n  budgetingMethod: Occurrences\n  \
         objectives:\n    - displayName: availability\n      target: 0.999\n---\n"
    )
}

/// The 200 SLOs: 99.9 % availability of each service's first operations over 30 days.
fn slos() -> anyhow::Result<Vec<nines_slo::model::Slo>> {
    let mut yaml = String::new();
    for s in 0..SERVICES {
        for o in 0..SLO_OPERATIONS {
            let filter = format!(
                "service = '{}' AND operation = '{}'",
                service(s),
                operation(o)
            );
            yaml += &slo_yaml(&format!("avail-{}-{o}", service(s)), &service(s), &filter);
        }
    }
    let mut catalog = Catalog::default();
    let errors = catalog.add_file("bench.yaml", &yaml);
    let (slos, unresolved) = catalog.resolve();
    if let Some(e) = errors.iter().chain(&unresolved).next() {
        bail!("{e}");
    }
    Ok(slos)
}

/// Writes one `sli_1m` row per minute, service and operation over `[from, to)`, one commit
/// per UTC day; returns the rows written.
pub(crate) async fn write_month(store: &Store, from: i64, to: i64) -> anyhow::Result<u64> {
    const TOPIC: &str = "bench-slo";
    let mut sketch = LatencySketch::new();
    for ms in [12, 18, 25, 40, 90] {
        sketch.add(ms * 1_000_000);
    }
    let sketch = sketch.to_bytes();
    let mut expected = store.positions(TOPIC, 0).await?;
    let mut offset = 0_i64;
    let mut rows = 0_u64;
    let mut rng = StdRng::seed_from_u64(20_261_203);
    let mut day_start = from.div_euclid(86_400) * 86_400;
    while day_start < to {
        let (a, b) = (from.max(day_start), to.min(day_start + 86_400));
        let minutes = usize::try_from((b - a) / 60).unwrap_or(0);
        let n = minutes * SERVICES * OPERATIONS;
        let mut svc = Vec::with_capacity(n);
        let mut op = Vec::with_capacity(n);
        let mut start = Vec::with_capacity(n);
        let mut errors = Vec::with_capacity(n);
        for m in 0..minutes {
            let t = a + m as i64 * 60;
            for s in 0..SERVICES {
                for o in 0..OPERATIONS {
                    svc.push(service(s));
                    op.push(operation(o));
                    start.push(t * 1_000_000);
                    // 0–2 errors a minute in 100 requests.
                    errors.push(rng.random_range(0..3_i64));
                }
            }
        }
        let schema = sli_1m();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec!["bench"; n])),
            Arc::new(StringArray::from(svc)),
            Arc::new(StringArray::from(vec!["prod"; n])),
            Arc::new(StringArray::from(op)),
            Arc::new(TimestampMicrosecondArray::from(start).with_timezone("UTC")),
            Arc::new(Int64Array::from(vec![100_i64; n])),
            Arc::new(Int64Array::from(errors)),
            Arc::new(Int64Array::from(vec![0_i64; n])),
            Arc::new(Int64Array::from(vec![3_600_000_000_i64; n])),
            Arc::new(Int64Array::from(vec![90_000_000_i64; n])),
            Arc::new(BinaryArray::from(vec![sketch.as_slice(); n])),
            Arc::new(Int32Array::from(vec![0_i32; n])),
            Arc::new(Int64Array::from(vec![offset; n])),
            Arc::new(StringArray::from(vec!["v1"; n])),
        ];
        let batch = RecordBatch::try_new(schema, columns)?;
        let flush = Flush {
            partition: 0,
            first_offset: offset,
            last_offset: offset,
            events: n as u64,
            batches: vec![TableBatch {
                table: SLI_1M,
                day: day_start / 86_400,
                batch,
            }],
            seen: Vec::new(),
        };
        match store.commit(TOPIC, &flush, &expected, |_| false).await? {
            CommitOutcome::Committed(p) => expected = p,
            CommitOutcome::Fenced(f) => bail!("fenced writing the bench data: {f:?}"),
        }
        offset += 1;
        rows += n as u64;
        day_start += 86_400;
    }
    Ok(rows)
}
