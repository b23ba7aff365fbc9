//! What a canary verdict compares (docs/release.md): two versions of one service over the
//! minutes both served, from `sli_1m` (counts summed, latency sketches merged).

use arrow::array::{Array, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use nines_slo::verdict::Sample;

use crate::{QueryEngine, Result, sql_string};

/// Which rows to compare: a service (and environment), two versions, `[from, to)` in
/// seconds since the epoch.
#[derive(Debug, Clone)]
pub struct Comparison<'a> {
    pub service: &'a str,
    pub environment: Option<&'a str>,
    pub candidate: &'a str,
    pub baseline: &'a str,
    pub from: i64,
    pub to: i64,
}

/// The candidate's and baseline's samples over the minutes of `[from, to)` in which both
/// served requests, the `quantiles` read from their merged sketches, and how many minutes
/// that was.
pub async fn samples(
    engine: &QueryEngine,
    c: &Comparison<'_>,
    quantiles: &[f64],
) -> Result<(Sample, Sample, u64)> {
    let mut filter = format!(
        "service = {} AND version IN ({}, {}) \
         AND window_start >= to_timestamp_seconds({}) AND window_start < to_timestamp_seconds({})",
        sql_string(c.service),
        sql_string(c.candidate),
        sql_string(c.baseline),
        c.from,
        c.to
    );
    if let Some(e) = c.environment {
        filter.push_str(&format!(" AND environment = {}", sql_string(e)));
    }
    let qs: Vec<String> = quantiles
        .iter()
        .enumerate()
        .map(|(i, q)| format!(", sketch_quantile(latency_sketch, {q}) AS q{i}"))
        .collect();
    let sql = format!(
        "WITH shared AS (SELECT window_start FROM sli_1m WHERE {filter} \
           GROUP BY window_start HAVING count(DISTINCT version) = 2 AND min(total) > 0) \
         SELECT version, CAST(sum(total) AS BIGINT), CAST(sum(errors) AS BIGINT), \
           CAST(count(DISTINCT window_start) AS BIGINT){} \
         FROM sli_1m WHERE {filter} AND window_start IN (SELECT window_start FROM shared) \
         GROUP BY version",
        qs.concat()
    );
    let (_, batches) = engine.sql(&sql).await?;
    let empty = || Sample {
        total: 0,
        errors: 0,
        quantiles: Vec::new(),
    };
    let (mut cand, mut base, mut minutes) = (empty(), empty(), 0_u64);
    for b in &batches {
        let version = cast(b.column(0), &DataType::Utf8)?;
        let version = version.as_string::<i32>();
        let ints: Vec<_> = (1..4)
            .map(|i| cast(b.column(i), &DataType::Int64))
            .collect::<std::result::Result<_, _>>()?;
        let floats: Vec<_> = (0..quantiles.len())
            .map(|i| cast(b.column(4 + i), &DataType::Float64))
            .collect::<std::result::Result<_, _>>()?;
        for r in 0..b.num_rows() {
            let int =
                |i: usize| u64::try_from(ints[i].as_primitive::<Int64Type>().value(r)).unwrap_or(0);
            let sample = Sample {
                total: int(0),
                errors: int(1),
                quantiles: quantiles
                    .iter()
                    .zip(&floats)
                    .filter(|(_, f)| !f.is_null(r))
                    .map(|(q, f)| (*q, f.as_primitive::<Float64Type>().value(r)))
                    .collect(),
            };
            minutes = minutes.max(int(2));
            if version.value(r) == c.candidate {
                cand = sample;
            } else {
                base = sample;
            }
        }
    }
    Ok((cand, base, minutes))
}
