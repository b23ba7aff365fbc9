//! Range filters that a table's file statistics prove true for every row, dropped before
//! the scan reads anything for them.
//!
//! An analyst's window (`time >= now() - INTERVAL '30 days'`) usually keeps every row of a
//! table. DataFusion would still read the `time` column and compare each of its values (in
//! the Parquet reader, where delta-rs pushes the predicate), which doubled the 30-day
//! question's time (BENCHMARKS.md). DuckDB skips a filter its zone maps show to be always
//! true; this does the same per table. A comparison of a column with a constant is answered
//! `Exact` to DataFusion ([`is_range`]), so the scan owns it: it drops it when every live
//! file's bounds prove it true for every row ([`proven_true`]), and evaluates it itself
//! otherwise.
//!
//! Sound only with statistics that bound the values: a file's `minValues` at most its least
//! value and `maxValues` at least its greatest, which is what nines writes (timestamps in
//! milliseconds, the min rounded down and the max up; strings too long for exact bounds get
//! none). A file without bounds for the column, or with nulls in it, proves nothing.

use std::cmp::Ordering;

use arrow::array::{Array, ArrayRef, UInt64Array};
use arrow::datatypes::Schema;
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::{Column, ScalarValue};
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator};

/// One side of a range: `column op value`, the column on the left.
struct Bound<'a> {
    column: &'a Column,
    op: Operator,
    value: &'a ScalarValue,
}

/// The bounds `expr` sets, if it is a range filter: `column op constant` or `constant op
/// column` with `op` one of `<`, `<=`, `>`, `>=`, or `column BETWEEN constant AND constant`,
/// the constants not null.
fn bounds(expr: &Expr) -> Option<Vec<Bound<'_>>> {
    fn constant(e: &Expr) -> Option<&ScalarValue> {
        match e {
            Expr::Literal(v, _) if !v.is_null() => Some(v),
            _ => None,
        }
    }
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right })
            if matches!(
                op,
                Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq
            ) =>
        {
            match (left.as_ref(), right.as_ref()) {
                (Expr::Column(column), other) => Some(vec![Bound {
                    column,
                    op: *op,
                    value: constant(other)?,
                }]),
                (other, Expr::Column(column)) => Some(vec![Bound {
                    column,
                    op: op.swap()?,
                    value: constant(other)?,
                }]),
                _ => None,
            }
        }
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) => {
            let Expr::Column(column) = expr.as_ref() else {
                return None;
            };
            Some(vec![
                Bound {
                    column,
                    op: Operator::GtEq,
                    value: constant(low)?,
                },
                Bound {
                    column,
                    op: Operator::LtEq,
                    value: constant(high)?,
                },
            ])
        }
        _ => None,
    }
}

/// Whether `expr` is a range filter the scan takes on itself (pushed down `Exact`).
pub(crate) fn is_range(expr: &Expr) -> bool {
    bounds(expr).is_some()
}

/// Whether every live file's statistics prove the range filter `expr` true for each of its
/// rows. `false` whenever that cannot be shown: not a range filter, a column unknown to
/// `schema`, a file without bounds or with nulls in the column, bounds of another type.
pub(crate) fn proven_true(expr: &Expr, schema: &Schema, files: &dyn PruningStatistics) -> bool {
    let Some(bounds) = bounds(expr) else {
        return false;
    };
    bounds.iter().all(|b| bound_holds(b, schema, files))
}

fn bound_holds(b: &Bound<'_>, schema: &Schema, files: &dyn PruningStatistics) -> bool {
    let Ok(field) = schema.field_with_name(&b.column.name) else {
        return false;
    };
    let n = files.num_containers();
    // A null compares to nothing: the filter drops its row.
    if field.is_nullable() {
        let no_nulls = files.null_counts(b.column).is_some_and(|counts| {
            counts.len() == n
                && counts
                    .as_any()
                    .downcast_ref::<UInt64Array>()
                    .is_some_and(|c| c.null_count() == 0 && c.values().iter().all(|&v| v == 0))
        });
        if !no_nulls {
            return false;
        }
    }
    // The file's least value must satisfy a lower bound, its greatest an upper one.
    let (stats, holds): (Option<ArrayRef>, fn(Ordering) -> bool) = match b.op {
        Operator::Gt => (files.min_values(b.column), |o| o == Ordering::Greater),
        Operator::GtEq => (files.min_values(b.column), |o| o != Ordering::Less),
        Operator::Lt => (files.max_values(b.column), |o| o == Ordering::Less),
        Operator::LtEq => (files.max_values(b.column), |o| o != Ordering::Greater),
        _ => return false,
    };
    let Some(stats) = stats else {
        return false;
    };
    if stats.len() != n || stats.null_count() > 0 {
        return false;
    }
    // In the constant's type (a string view, a timestamp with its zone); a value the cast
    // cannot carry becomes null and proves nothing.
    let Ok(stats) = arrow::compute::cast(&stats, &b.value.data_type()) else {
        return false;
    };
    (0..n).all(|i| match ScalarValue::try_from_array(&stats, i) {
        Ok(v) if !v.is_null() => v.partial_cmp(b.value).is_some_and(holds),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;

    use arrow::array::{BooleanArray, Int64Array, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{DataType, Field, TimeUnit};
    use datafusion::prelude::{col, lit};

    use super::*;

    /// Bounds of three files, as Delta statistics give them (`None`: no bound written).
    struct Files {
        min: ArrayRef,
        max: ArrayRef,
        nulls: Option<ArrayRef>,
    }

    impl PruningStatistics for Files {
        fn min_values(&self, _: &Column) -> Option<ArrayRef> {
            Some(self.min.clone())
        }
        fn max_values(&self, _: &Column) -> Option<ArrayRef> {
            Some(self.max.clone())
        }
        fn num_containers(&self) -> usize {
            self.min.len()
        }
        fn null_counts(&self, _: &Column) -> Option<ArrayRef> {
            self.nulls.clone()
        }
        fn row_counts(&self) -> Option<ArrayRef> {
            None
        }
        fn contained(&self, _: &Column, _: &HashSet<ScalarValue>) -> Option<BooleanArray> {
            None
        }
    }

    const UTC: Option<&str> = Some("UTC");

    fn ts(v: i64) -> Expr {
        lit(ScalarValue::TimestampMicrosecond(
            Some(v),
            UTC.map(Into::into),
        ))
    }

    /// Three files of `time`, together between 1,000 and 9,000 µs.
    fn times() -> (Schema, Files) {
        let schema = Schema::new(vec![Field::new(
            "time",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        )]);
        let files = Files {
            min: Arc::new(TimestampMicrosecondArray::from(vec![1_000, 4_000, 2_000])),
            max: Arc::new(TimestampMicrosecondArray::from(vec![3_000, 9_000, 5_000])),
            nulls: None,
        };
        (schema, files)
    }

    #[test]
    fn a_window_every_file_lies_inside_is_proven() {
        let (schema, files) = times();
        let time = || col("time");
        for (filter, proven) in [
            (time().gt_eq(ts(1_000)), true),
            (time().gt(ts(999)), true),
            (time().gt(ts(1_000)), false),
            (time().gt_eq(ts(1_001)), false),
            (time().lt_eq(ts(9_000)), true),
            (time().lt(ts(9_001)), true),
            (time().lt(ts(9_000)), false),
            (time().between(ts(1_000), ts(9_000)), true),
            (time().between(ts(1_000), ts(8_999)), false),
            (time().not_between(ts(0), ts(1)), false),
            // The constant on the left.
            (ts(500).lt(time()), true),
            (ts(1_500).lt(time()), false),
            (ts(9_000).gt_eq(time()), true),
            // Not a range: equality, or no constant.
            (time().eq(ts(1_000)), false),
            (time().gt_eq(time()), false),
        ] {
            assert_eq!(
                proven_true(&filter, &schema, &files),
                proven,
                "{filter} over files of 1000..9000"
            );
        }
    }

    #[test]
    fn a_file_without_bounds_or_with_nulls_proves_nothing() {
        let (schema, mut files) = times();
        let filter = col("time").gt_eq(ts(0));
        assert!(proven_true(&filter, &schema, &files));
        files.min = Arc::new(TimestampMicrosecondArray::from(vec![
            Some(1_000),
            None,
            Some(2_000),
        ]));
        assert!(
            !proven_true(&filter, &schema, &files),
            "a file without a min"
        );

        let nullable = Schema::new(vec![Field::new("n", DataType::Int64, true)]);
        let n = |nulls: Option<Vec<u64>>| Files {
            min: Arc::new(Int64Array::from(vec![5, 7])),
            max: Arc::new(Int64Array::from(vec![6, 9])),
            nulls: nulls.map(|v| Arc::new(UInt64Array::from(v)) as ArrayRef),
        };
        let filter = col("n").gt(lit(4i64));
        assert!(proven_true(&filter, &nullable, &n(Some(vec![0, 0]))));
        assert!(
            !proven_true(&filter, &nullable, &n(Some(vec![0, 3]))),
            "nulls in a file"
        );
        assert!(
            !proven_true(&filter, &nullable, &n(None)),
            "null counts unknown"
        );
    }

    #[test]
    fn strings_compare_in_the_constants_type() {
        let schema = Schema::new(vec![Field::new("service", DataType::Utf8View, false)]);
        let files = Files {
            min: Arc::new(StringArray::from(vec!["api", "checkout"])),
            max: Arc::new(StringArray::from(vec!["auth", "search"])),
            nulls: None,
        };
        let view = |s: &str| lit(ScalarValue::Utf8View(Some(s.into())));
        assert!(proven_true(
            &col("service").gt_eq(view("api")),
            &schema,
            &files
        ));
        assert!(!proven_true(
            &col("service").gt(view("api")),
            &schema,
            &files
        ));
        assert!(proven_true(&col("service").lt(view("t")), &schema, &files));
    }

    #[test]
    fn no_files_prove_any_range() {
        let (schema, _) = times();
        let none = Files {
            min: Arc::new(TimestampMicrosecondArray::from(Vec::<i64>::new())),
            max: Arc::new(TimestampMicrosecondArray::from(Vec::<i64>::new())),
            nulls: None,
        };
        // An empty table has no row a filter could keep or drop.
        assert!(proven_true(&col("time").gt(ts(0)), &schema, &none));
        assert!(!proven_true(&col("nope").gt(ts(0)), &schema, &none));
    }
}
