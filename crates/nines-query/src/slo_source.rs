//! The `nines` data source of OpenSLO SLIs (docs/slo.md): per-minute values read from the
//! tables through the query session, turned into the good/total series `nines-slo`
//! evaluates.
//!
//! A `metricSource` of `type: nines` has one of two forms:
//! - **short:** `table` (`sli_1m`, the default, or `requests`), an optional `filter` (a SQL
//!   predicate) and `value`, an aggregate expression computed per minute (default
//!   `sum(total)` on `sli_1m`, `count(*)` on `requests`), e.g. `sum(total - errors)` or
//!   `sketch_count_under(latency_sketch, 300e6)`;
//! - **SQL:** `sql`, a query returning one row per slice with columns `slice` (timestamp)
//!   and `value`; nines keeps the rows of the range it evaluates.

use std::collections::BTreeMap;

use arrow::array::{Array, Float64Array};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use nines_slo::budget::Series;
use nines_slo::model::{
    Indicator, IndicatorMetric, MetricSource, Objective, RatioMetric, RawKind, SpecValue,
};

use crate::{Error, QueryEngine, Result};

/// Why an SLI cannot be read from nines' tables.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not evaluable by nines: {0}")]
pub struct NotEvaluable(pub String);

/// The per-minute values of one metric source over `[from, to)` (seconds since the epoch):
/// slice start → value.
pub async fn minute_values(
    engine: &QueryEngine,
    source: &MetricSource,
    from: i64,
    to: i64,
) -> Result<BTreeMap<i64, f64>> {
    let sql = source_sql(source, from, to).map_err(|e| Error::Sql(e.to_string()))?;
    let (_, batches) = engine.sql(&sql).await?;
    let mut out = BTreeMap::new();
    for b in batches {
        let s = cast(b.column(0), &DataType::Float64)?;
        let v = cast(b.column(1), &DataType::Float64)?;
        let s = s
            .as_any()
            .downcast_ref::<Float64Array>()
            .expect("cast to Float64");
        let v = v
            .as_any()
            .downcast_ref::<Float64Array>()
            .expect("cast to Float64");
        for i in 0..b.num_rows() {
            if s.is_null(i) || v.is_null(i) {
                continue;
            }
            *out.entry(s.value(i) as i64).or_insert(0.0) += v.value(i);
        }
    }
    Ok(out)
}

/// The query that reads `source` per minute over `[from, to)`.
pub fn source_sql(source: &MetricSource, from: i64, to: i64) -> Result<String, NotEvaluable> {
    if !source.kind.eq_ignore_ascii_case("nines") {
        return Err(NotEvaluable(format!(
            "data source type {:?} (only `nines` reads nines' tables)",
            source.kind
        )));
    }
    let text = |key: &str| source.spec.get(key).and_then(SpecValue::as_str);
    let range = |col: &str| {
        format!("{col} >= to_timestamp_seconds({from}) AND {col} < to_timestamp_seconds({to})")
    };
    if let Some(sql) = text("sql") {
        return Ok(format!(
            "SELECT date_part('epoch', slice) AS s, value AS v FROM ({sql}) AS q WHERE {}",
            range("slice")
        ));
    }
    let table = text("table").unwrap_or("sli_1m");
    let (time, default_value) = match table {
        "sli_1m" => ("window_start", "sum(total)"),
        "requests" => ("time", "count(*)"),
        other => {
            return Err(NotEvaluable(format!(
                "spec.table {other:?}: the short form reads sli_1m or requests (use spec.sql for anything else)"
            )));
        }
    };
    let value = text("value").unwrap_or(default_value);
    let filter = text("filter").map_or(String::new(), |f| format!(" AND ({f})"));
    Ok(format!(
        "SELECT date_part('epoch', date_bin(INTERVAL '1 minute', {time}, TIMESTAMP '1970-01-01T00:00:00')) AS s, \
         {value} AS v FROM {table} WHERE {}{filter} GROUP BY 1",
        range(time)
    ))
}

/// The one-minute good/total series of an objective over `[from, to)` (`from` aligned on
/// a minute).
pub async fn series(
    engine: &QueryEngine,
    indicator: &Indicator,
    objective: &Objective,
    from: i64,
    to: i64,
) -> Result<Series> {
    let len = usize::try_from((to - from).max(0) / 60).unwrap_or(0);
    let mut out = Series::zeros(from, 60, len);
    match &indicator.metric {
        IndicatorMetric::Ratio(RatioMetric::Good { good, total }) => {
            let g = minute_values(engine, good, from, to).await?;
            let t = minute_values(engine, total, from, to).await?;
            for (at, v) in t {
                out.add(at, g.get(&at).copied().unwrap_or(0.0), v);
            }
        }
        IndicatorMetric::Ratio(RatioMetric::Bad { bad, total }) => {
            let b = minute_values(engine, bad, from, to).await?;
            let t = minute_values(engine, total, from, to).await?;
            for (at, v) in t {
                out.add(at, v - b.get(&at).copied().unwrap_or(0.0), v);
            }
        }
        IndicatorMetric::Ratio(RatioMetric::Raw { raw, kind }) => {
            for (at, r) in minute_values(engine, raw, from, to).await? {
                let good = match kind {
                    RawKind::Success => r,
                    RawKind::Failure => 1.0 - r,
                };
                out.add(at, good, 1.0);
            }
        }
        IndicatorMetric::Threshold(source) => {
            let Some((op, threshold)) = objective.threshold else {
                return Err(Error::Sql(format!(
                    "objective {:?} of a thresholdMetric SLI has no op and value",
                    objective.name
                )));
            };
            for (at, v) in minute_values(engine, source, from, to).await? {
                out.add(at, if op.holds(v, threshold) { 1.0 } else { 0.0 }, 1.0);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(kind: &str, spec: &[(&str, &str)]) -> MetricSource {
        MetricSource {
            kind: kind.into(),
            reference: None,
            spec: spec
                .iter()
                .map(|(k, v)| ((*k).to_owned(), SpecValue::String((*v).to_owned())))
                .collect(),
        }
    }

    #[test]
    fn other_data_sources_are_not_evaluable() {
        let e = source_sql(&source("Prometheus", &[("query", "up")]), 0, 60).unwrap_err();
        assert_eq!(
            e.to_string(),
            "not evaluable by nines: data source type \"Prometheus\" (only `nines` reads nines' tables)"
        );
    }

    #[test]
    fn the_short_form_groups_by_minute_over_the_range() {
        let sql = source_sql(
            &source(
                "nines",
                &[
                    ("filter", "service = 'web'"),
                    ("value", "sum(total - errors)"),
                ],
            ),
            120,
            600,
        )
        .unwrap();
        assert!(
            sql.contains("sum(total - errors) AS v FROM sli_1m"),
            "{sql}"
        );
        assert!(
            sql.contains("window_start >= to_timestamp_seconds(120)"),
            "{sql}"
        );
        assert!(sql.contains("AND (service = 'web') GROUP BY 1"), "{sql}");
    }
}
