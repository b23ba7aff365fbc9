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

use arrow::array::{
    Array, AsArray, BooleanBufferBuilder, Float64Array, Int64Array, StringViewArray,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, TimeUnit, TimestampMicrosecondType};
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

/// One objective's data to read: the one-minute series over `[from, to)` (`from` aligned on
/// a minute).
#[derive(Debug, Clone, Copy)]
pub struct Want<'a> {
    pub indicator: &'a Indicator,
    pub objective: &'a Objective,
    pub from: i64,
    pub to: i64,
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
    let want = Want {
        indicator,
        objective,
        from,
        to,
    };
    series_many(engine, &[want])
        .await
        .pop()
        .expect("one answer per want")
}

/// Per-minute sums of one source over its want's range, and which minutes had rows: a
/// minute without rows is not a minute whose sum is 0 (a ratio's total decides whether a
/// minute has data at all). Zeroed storage, allocated without a fill: a month of minutes
/// for each of hundreds of sources costs nothing before rows land.
#[derive(Debug)]
struct Minutes {
    sums: Vec<f64>,
    /// Bit `k`: minute `k` had a row.
    seen: BooleanBufferBuilder,
}

impl Minutes {
    /// `[from, to)` by the minute, no minute with rows yet.
    fn new(from: i64, to: i64) -> Self {
        let len = usize::try_from((to - from).max(0) / 60).unwrap_or(0);
        let mut seen = BooleanBufferBuilder::new(len);
        seen.append_n(len, false);
        Self {
            sums: vec![0.0; len],
            seen,
        }
    }

    fn len(&self) -> usize {
        self.sums.len()
    }

    /// Adds a row's value to minute `k` (`k < len`).
    fn add(&mut self, k: usize, value: f64) {
        self.sums[k] += value;
        self.seen.set_bit(k, true);
    }

    /// Minute `k`'s sum, `None` without rows (or past the end).
    fn get(&self, k: usize) -> Option<f64> {
        (k < self.len() && self.seen.get_bit(k)).then(|| self.sums[k])
    }
}

/// The series of many objectives, in order. Short-form sources of the same table whose
/// filters are conjunctions of `column = 'literal'` over the same columns (the common case:
/// one SLO per service or operation) are read together, by one query grouped by minute
/// and those columns; every other source by a query of its own.
pub async fn series_many(engine: &QueryEngine, wants: &[Want<'_>]) -> Vec<Result<Series>> {
    // Every source of every want, and where its values go.
    let sources: Vec<Vec<&MetricSource>> = wants.iter().map(|w| sources_of(w.indicator)).collect();
    let mut dense: Vec<Vec<Option<Result<Minutes>>>> = sources
        .iter()
        .map(|s| s.iter().map(|_| None).collect())
        .collect();
    let mut groups: BTreeMap<(String, Vec<String>), Vec<Member>> = BTreeMap::new();
    for (i, list) in sources.iter().enumerate() {
        for (j, source) in list.iter().enumerate() {
            if let Some((table, columns, literals, value)) = shared_form(source) {
                groups.entry((table, columns)).or_default().push(Member {
                    want: i,
                    source: j,
                    literals,
                    value,
                });
            }
        }
    }
    for ((table, columns), members) in groups {
        // A group of one gains nothing: read on its own below.
        if members.len() < 2 {
            continue;
        }
        match read_group(engine, wants, &table, &columns, &members).await {
            Ok(values) => {
                for (m, d) in members.iter().zip(values) {
                    dense[m.want][m.source] = Some(Ok(d));
                }
            }
            Err(e) => {
                for m in &members {
                    dense[m.want][m.source] = Some(Err(Error::Sql(e.to_string())));
                }
            }
        }
    }
    let mut out = Vec::with_capacity(wants.len());
    for (i, want) in wants.iter().enumerate() {
        let mut values = Vec::new();
        let mut failed = None;
        for (j, source) in sources[i].iter().enumerate() {
            let d = match dense[i][j].take() {
                Some(d) => d,
                None => read_one(engine, source, want.from, want.to).await,
            };
            match d {
                Ok(d) => values.push(d),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        out.push(match failed {
            Some(e) => Err(e),
            None => combine(want, &values),
        });
    }
    out
}

/// The metric sources an indicator reads, in the order [`combine`] takes them.
fn sources_of(indicator: &Indicator) -> Vec<&MetricSource> {
    match &indicator.metric {
        IndicatorMetric::Ratio(RatioMetric::Good { good, total }) => vec![good, total],
        IndicatorMetric::Ratio(RatioMetric::Bad { bad, total }) => vec![bad, total],
        IndicatorMetric::Ratio(RatioMetric::Raw { raw, .. }) => vec![raw],
        IndicatorMetric::Threshold(source) => vec![source],
    }
}

/// The want's good/total series from its sources' per-minute values.
fn combine(want: &Want<'_>, values: &[Minutes]) -> Result<Series> {
    let len = usize::try_from((want.to - want.from).max(0) / 60).unwrap_or(0);
    let mut out = Series::zeros(want.from, 60, len);
    // Minute `k` of the want is slice `k` of the series (same origin, one-minute steps).
    let mut put = |k: usize, good: f64, total: f64| {
        out.good[k] += good;
        out.total[k] += total;
    };
    match &want.indicator.metric {
        IndicatorMetric::Ratio(RatioMetric::Good { .. }) => {
            for k in 0..len {
                if let Some(t) = values[1].get(k) {
                    put(k, values[0].get(k).unwrap_or(0.0), t);
                }
            }
        }
        IndicatorMetric::Ratio(RatioMetric::Bad { .. }) => {
            for k in 0..len {
                if let Some(t) = values[1].get(k) {
                    put(k, t - values[0].get(k).unwrap_or(0.0), t);
                }
            }
        }
        IndicatorMetric::Ratio(RatioMetric::Raw { kind, .. }) => {
            for k in 0..len {
                if let Some(r) = values[0].get(k) {
                    let good = match kind {
                        RawKind::Success => r,
                        RawKind::Failure => 1.0 - r,
                    };
                    put(k, good, 1.0);
                }
            }
        }
        IndicatorMetric::Threshold(_) => {
            let Some((op, threshold)) = want.objective.threshold else {
                return Err(Error::Sql(format!(
                    "objective {:?} of a thresholdMetric SLI has no op and value",
                    want.objective.name
                )));
            };
            for k in 0..len {
                if let Some(v) = values[0].get(k) {
                    put(k, if op.holds(v, threshold) { 1.0 } else { 0.0 }, 1.0);
                }
            }
        }
    }
    Ok(out)
}

/// One source read by a query of its own, as per-minute values over `[from, to)`.
async fn read_one(
    engine: &QueryEngine,
    source: &MetricSource,
    from: i64,
    to: i64,
) -> Result<Minutes> {
    let mut d = Minutes::new(from, to);
    for (at, v) in minute_values(engine, source, from, to).await? {
        if let Some(slot) = minute_index(at, from, d.len()) {
            d.add(slot, v);
        }
    }
    Ok(d)
}

fn minute_index(at: i64, from: i64, len: usize) -> Option<usize> {
    let k = usize::try_from((at - from).div_euclid(60)).ok()?;
    (at >= from && k < len).then_some(k)
}

/// A source read as part of a group: whose, which, its literals (in the group's column
/// order) and its value expression.
#[derive(Debug)]
struct Member {
    want: usize,
    source: usize,
    literals: Vec<String>,
    value: String,
}

/// `(table, columns, literals, value)` of a short-form `nines` source whose filter is a
/// conjunction of `column = 'literal'` (or absent), columns sorted; `None` otherwise.
fn shared_form(source: &MetricSource) -> Option<(String, Vec<String>, Vec<String>, String)> {
    if !source.kind.eq_ignore_ascii_case("nines") {
        return None;
    }
    let text = |key: &str| source.spec.get(key).and_then(SpecValue::as_str);
    if text("sql").is_some() {
        return None;
    }
    let table = text("table").unwrap_or("sli_1m");
    let default_value = match table {
        "sli_1m" => "sum(total)",
        "requests" => "count(*)",
        _ => return None,
    };
    let pairs = match text("filter") {
        Some(f) => equalities(f)?,
        None => Vec::new(),
    };
    let (columns, literals) = pairs.into_iter().unzip();
    Some((
        table.to_owned(),
        columns,
        literals,
        text("value").unwrap_or(default_value).to_owned(),
    ))
}

/// `service = 'a' AND operation = 'b'` → `[(operation, b), (service, a)]`; `None` for any
/// other shape, or a column named twice.
fn equalities(filter: &str) -> Option<Vec<(String, String)>> {
    use datafusion::sql::sqlparser::ast::{BinaryOperator, Expr, Value};
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn walk(e: &Expr, out: &mut Vec<(String, String)>) -> Option<()> {
        match e {
            Expr::Nested(inner) => walk(inner, out),
            Expr::BinaryOp {
                left,
                op: BinaryOperator::And,
                right,
            } => {
                walk(left, out)?;
                walk(right, out)
            }
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Eq,
                right,
            } => {
                let (Expr::Identifier(column), Expr::Value(v)) = (&**left, &**right) else {
                    return None;
                };
                let Value::SingleQuotedString(literal) = &v.value else {
                    return None;
                };
                // As DataFusion reads it: unquoted identifiers in lower case.
                let name = if column.quote_style.is_some() {
                    column.value.clone()
                } else {
                    column.value.to_lowercase()
                };
                out.push((name, literal.clone()));
                Some(())
            }
            _ => None,
        }
    }
    let dialect = GenericDialect {};
    let expr = Parser::new(&dialect)
        .try_with_sql(filter)
        .ok()?
        .parse_expr()
        .ok()?;
    let mut out = Vec::new();
    walk(&expr, &mut out)?;
    out.sort();
    let mut names: Vec<&String> = out.iter().map(|(c, _)| c).collect();
    names.dedup();
    (names.len() == out.len()).then_some(out)
}

/// `sum(x)` → `x`: a value the group can read row by row and sum itself; `None` for any
/// other aggregate.
fn summed(value: &str) -> Option<String> {
    use datafusion::sql::sqlparser::ast::{Expr, FunctionArg, FunctionArgExpr, FunctionArguments};
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    let dialect = GenericDialect {};
    let expr = Parser::new(&dialect)
        .try_with_sql(value)
        .ok()?
        .parse_expr()
        .ok()?;
    let Expr::Function(f) = expr else {
        return None;
    };
    if !f.name.to_string().eq_ignore_ascii_case("sum")
        || f.filter.is_some()
        || f.over.is_some()
        || !f.within_group.is_empty()
    {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    match list.args.as_slice() {
        [FunctionArg::Unnamed(FunctionArgExpr::Expr(inner))]
            if list.duplicate_treatment.is_none() && list.clauses.is_empty() =>
        {
            Some(inner.to_string())
        }
        _ => None,
    }
}

/// Reads a group of members by one query: per minute, per combination of the group's
/// columns, every distinct value expression; returns each member's values in order.
async fn read_group(
    engine: &QueryEngine,
    wants: &[Want<'_>],
    table: &str,
    columns: &[String],
    members: &[Member],
) -> Result<Vec<Minutes>> {
    let from = members
        .iter()
        .map(|m| wants[m.want].from)
        .min()
        .unwrap_or(0);
    let to = members.iter().map(|m| wants[m.want].to).max().unwrap_or(0);
    let mut value_exprs: Vec<&str> = members.iter().map(|m| m.value.as_str()).collect();
    value_exprs.sort_unstable();
    value_exprs.dedup();
    let time = if table == "sli_1m" {
        "window_start"
    } else {
        "time"
    };
    let quote = crate::sql_string;
    let ident = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    // Plain sums are read row by row and summed here (no hash aggregation over every
    // minute and combination; each row's minute is worked out here too); any other
    // aggregate makes the query group by the minute.
    let inner: Option<Vec<String>> = value_exprs.iter().map(|v| summed(v)).collect();
    let mut select = vec![match inner {
        Some(_) => format!("{time} AS s"),
        None => format!(
            "date_part('epoch', date_bin(INTERVAL '1 minute', {time}, TIMESTAMP '1970-01-01T00:00:00')) AS s"
        ),
    }];
    select.extend(columns.iter().map(|c| ident(c)));
    match &inner {
        Some(inner) => select.extend(
            inner
                .iter()
                .enumerate()
                .map(|(i, v)| format!("CAST({v} AS DOUBLE) AS v{i}")),
        ),
        None => select.extend(
            value_exprs
                .iter()
                .enumerate()
                .map(|(i, v)| format!("{v} AS v{i}")),
        ),
    }
    let mut filter = vec![format!(
        "{time} >= to_timestamp_seconds({from}) AND {time} < to_timestamp_seconds({to})"
    )];
    for (c, column) in columns.iter().enumerate() {
        let mut literals: Vec<&str> = members.iter().map(|m| m.literals[c].as_str()).collect();
        literals.sort_unstable();
        literals.dedup();
        let list: Vec<String> = literals.iter().map(|l| quote(l)).collect();
        filter.push(format!("{} IN ({})", ident(column), list.join(", ")));
    }
    let group_by: Vec<String> = (1..=columns.len() + 1).map(|i| i.to_string()).collect();
    let mut sql = format!(
        "SELECT {} FROM {table} WHERE {}",
        select.join(", "),
        filter.join(" AND ")
    );
    if inner.is_none() {
        sql += &format!(" GROUP BY {}", group_by.join(", "));
    }
    // Members by their combination of literals: (member index, value column).
    let mut by_key: std::collections::HashMap<String, Vec<(usize, usize)>> =
        std::collections::HashMap::new();
    for (i, m) in members.iter().enumerate() {
        let v = value_exprs.binary_search(&m.value.as_str()).unwrap_or(0);
        by_key
            .entry(m.literals.join("\u{1f}"))
            .or_default()
            .push((i, v));
    }
    let mut out: Vec<Minutes> = members
        .iter()
        .map(|m| Minutes::new(wants[m.want].from, wants[m.want].to))
        .collect();
    let batches = engine.sql_as_scanned(&sql).await?;
    let mut key = String::new();
    // Rows come in runs of one combination (files are sorted by it): look a key up once
    // per run, when a row's strings differ from the row's before.
    let mut last_key = String::from("\u{0}none");
    let mut last: Option<&Vec<(usize, usize)>> = None;
    for b in batches {
        // Each row's minute, in seconds since the epoch: from the row's time (the tables'
        // microseconds), or as the grouping query gave it.
        let s: Int64Array = match b.column(0).data_type() {
            DataType::Timestamp(TimeUnit::Microsecond, _) => b
                .column(0)
                .as_primitive::<TimestampMicrosecondType>()
                .unary(|us| us.div_euclid(60_000_000) * 60),
            _ => cast(b.column(0), &DataType::Float64)?
                .as_primitive::<Float64Type>()
                .unary(|secs| secs as i64),
        };
        let keys = (0..columns.len())
            .map(|c| cast(b.column(1 + c), &DataType::Utf8View))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let keys: Vec<&StringViewArray> = keys.iter().map(|k| k.as_string_view()).collect();
        let values = (0..value_exprs.len())
            .map(|v| cast(b.column(1 + columns.len() + v), &DataType::Float64))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let values: Vec<&Float64Array> = values
            .iter()
            .map(|v| {
                v.as_any()
                    .downcast_ref::<Float64Array>()
                    .expect("cast to Float64")
            })
            .collect();
        // Whether rows `r` and `p` of this batch have the same strings (nulls included): the
        // same view (length, bytes or prefix and place) is the same string, and in a run of
        // short strings that is all it takes.
        let same = |r: usize, p: usize| {
            keys.iter().all(|k| match (k.is_null(r), k.is_null(p)) {
                (false, false) => k.views()[r] == k.views()[p] || k.value(r) == k.value(p),
                (nr, np) => nr == np,
            })
        };
        // Run by run: rows `r..e` have row `r`'s strings, looked up once.
        let n = b.num_rows();
        let mut r = 0;
        while r < n {
            let mut e = r + 1;
            while e < n && same(e, r) {
                e += 1;
            }
            if keys.iter().any(|k| k.is_null(r)) {
                last = None;
                last_key.clear();
                last_key.push_str("\u{0}null");
            } else {
                key.clear();
                for (c, k) in keys.iter().enumerate() {
                    if c > 0 {
                        key.push('\u{1f}');
                    }
                    key.push_str(k.value(r));
                }
                if key != last_key {
                    last = by_key.get(key.as_str());
                    std::mem::swap(&mut key, &mut last_key);
                }
            }
            for &(m, v) in last.into_iter().flatten() {
                let from = wants[members[m].want].from;
                let (dst, x) = (&mut out[m], values[v]);
                if s.null_count() == 0 && x.null_count() == 0 {
                    let (secs, x) = (&s.values()[r..e], &x.values()[r..e]);
                    for (&at, &x) in secs.iter().zip(x) {
                        if let Some(slot) = minute_index(at, from, dst.len()) {
                            dst.add(slot, x);
                        }
                    }
                } else {
                    for i in (r..e).filter(|&i| s.is_valid(i) && x.is_valid(i)) {
                        if let Some(slot) = minute_index(s.value(i), from, dst.len()) {
                            dst.add(slot, x.value(i));
                        }
                    }
                }
            }
            r = e;
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
    fn filters_of_equalities_are_read_together_and_others_alone() {
        let pairs = |f: &str| equalities(f);
        assert_eq!(
            pairs("service = 'web' AND (Operation = 'GET /a')"),
            Some(vec![
                ("operation".into(), "GET /a".into()),
                ("service".into(), "web".into())
            ])
        );
        assert_eq!(
            pairs("service = 'it''s'"),
            Some(vec![("service".into(), "it's".into())])
        );
        for other in [
            "service = 'a' OR service = 'b'",
            "service IN ('a')",
            "total > 5",
            "service = 'a' AND service = 'b'",
            "service = operation",
            "not sql at all (",
        ] {
            assert_eq!(pairs(other), None, "{other}");
        }
        let sql = source("nines", &[("table", "sli_1m"), ("sql", "SELECT 1")]);
        assert!(shared_form(&sql).is_none());
        let short = source("nines", &[("filter", "service = 'web'")]);
        assert_eq!(
            shared_form(&short),
            Some((
                "sli_1m".into(),
                vec!["service".into()],
                vec!["web".into()],
                "sum(total)".into()
            ))
        );
    }

    #[test]
    fn plain_sums_are_summed_row_by_row_and_other_aggregates_grouped() {
        assert_eq!(
            summed("sum(total - errors)").as_deref(),
            Some("total - errors")
        );
        assert_eq!(summed("SUM(total)").as_deref(), Some("total"));
        for other in [
            "sketch_count_under(latency_sketch, 300e6)",
            "sum(DISTINCT total)",
            "count(*)",
            "sum(total) / 2",
            "max(total)",
        ] {
            assert_eq!(summed(other), None, "{other}");
        }
    }

    /// Per-minute sums of `len` minutes from `(minute, value)` rows.
    fn minutes(len: i64, rows: &[(usize, f64)]) -> Minutes {
        let mut m = Minutes::new(600, 600 + len * 60);
        for &(k, v) in rows {
            m.add(k, v);
        }
        m
    }

    /// A minute is data when the total (or the one source) had rows: good rows without total
    /// rows add nothing; a good source without rows in a minute of data counts as 0; a
    /// threshold's or a raw ratio's minute with rows summing to 0 is still a slice.
    #[test]
    fn minutes_with_rows_make_the_series_and_minutes_without_none() {
        let nines = || source("nines", &[]);
        let objective = Objective {
            name: "o".into(),
            target: 0.99,
            threshold: Some((nines_slo::model::Op::Lte, 0.5)),
            time_slice_target: None,
            time_slice_window: None,
        };
        let want = |metric| {
            let indicator = Indicator {
                name: "i".into(),
                metric,
            };
            let values = match &indicator.metric {
                IndicatorMetric::Ratio(RatioMetric::Raw { .. }) | IndicatorMetric::Threshold(_) => {
                    vec![minutes(70, &[(0, 0.25), (0, 0.5), (69, 0.0)])]
                }
                // Minute 0: 3 good of 5 + 4 (two rows); 1: good rows only; 2: total rows of 0;
                // 69, the last: no good rows, a total of 2.
                _ => vec![
                    minutes(70, &[(0, 3.0), (1, 7.0)]),
                    minutes(70, &[(0, 5.0), (0, 4.0), (2, 0.0), (69, 2.0)]),
                ],
            };
            let w = Want {
                indicator: &indicator,
                objective: &objective,
                from: 600,
                to: 600 + 70 * 60,
            };
            combine(&w, &values).unwrap()
        };
        let at = |s: &Series, k: usize| (s.good[k], s.total[k]);
        let good = want(IndicatorMetric::Ratio(RatioMetric::Good {
            good: nines(),
            total: nines(),
        }));
        assert_eq!((good.origin, good.step, good.len()), (600, 60, 70));
        assert_eq!(at(&good, 0), (3.0, 9.0));
        assert_eq!(at(&good, 1), (0.0, 0.0), "good rows without a total");
        assert_eq!(at(&good, 2), (0.0, 0.0));
        assert_eq!(at(&good, 69), (0.0, 2.0));
        assert_eq!(good.total.iter().sum::<f64>(), 11.0);

        let bad = want(IndicatorMetric::Ratio(RatioMetric::Bad {
            bad: nines(),
            total: nines(),
        }));
        assert_eq!(at(&bad, 0), (6.0, 9.0));
        assert_eq!(at(&bad, 1), (0.0, 0.0));
        assert_eq!(at(&bad, 69), (2.0, 2.0));

        let failure = want(IndicatorMetric::Ratio(RatioMetric::Raw {
            raw: nines(),
            kind: RawKind::Failure,
        }));
        assert_eq!(at(&failure, 0), (0.25, 1.0), "1 - (0.25 + 0.5)");
        assert_eq!(at(&failure, 1), (0.0, 0.0));
        assert_eq!(at(&failure, 69), (1.0, 1.0));

        let threshold = want(IndicatorMetric::Threshold(nines()));
        assert_eq!(at(&threshold, 0), (0.0, 1.0), "0.75 is over 0.5");
        assert_eq!(at(&threshold, 69), (1.0, 1.0));
        assert_eq!(threshold.total.iter().sum::<f64>(), 2.0);
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
