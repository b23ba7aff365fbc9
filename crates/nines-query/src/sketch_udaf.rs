//! SQL aggregate functions over `sli_1m.latency_sketch`:
//!
//! - `sketch_quantile(latency_sketch, q)`: the q-quantile (0..=1) in nanoseconds of all
//!   the sketches in the group, merged (never an average of per-row percentiles).
//! - `sketch_count_under(latency_sketch, threshold_ns)`: how many events in the group took at
//!   most `threshold_ns`, for latency SLIs ("good = faster than 300 ms").
//!
//! Both merge sketches exactly; the answer is within the sketch's relative accuracy (1%).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef};
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::cast::{as_binary_array, as_binary_view_array, as_large_binary_array};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, Signature, TypeSignature, Volatility,
};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Literal;
use nines_model::LatencySketch;

fn signature() -> Signature {
    let numeric = [DataType::Float64, DataType::Int64];
    let binary = [
        DataType::Binary,
        DataType::BinaryView,
        DataType::LargeBinary,
    ];
    let mut variants = Vec::new();
    for b in &binary {
        for n in &numeric {
            variants.push(TypeSignature::Exact(vec![b.clone(), n.clone()]));
        }
    }
    Signature::one_of(variants, Volatility::Immutable)
}

/// The constant second argument of a sketch function.
fn literal_arg(name: &str, exprs: &[Arc<dyn PhysicalExpr>]) -> Result<f64> {
    let Some(expr) = exprs.get(1) else {
        return plan_err!("{name} takes two arguments: (latency_sketch, number)");
    };
    let Some(lit) = expr.downcast_ref::<Literal>() else {
        return plan_err!("{name}: the second argument must be a constant number");
    };
    match lit.value() {
        ScalarValue::Float64(Some(v)) => Ok(*v),
        ScalarValue::Int64(Some(v)) => Ok(*v as f64),
        other => plan_err!("{name}: the second argument must be a number, got {other}"),
    }
}

fn state_fields(args: &StateFieldsArgs<'_>) -> Vec<FieldRef> {
    vec![Arc::new(Field::new(
        format_state_name(args.name, "sketch"),
        DataType::Binary,
        true,
    ))]
}

/// `sketch_quantile(latency_sketch, q)`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SketchQuantile {
    signature: Signature,
}

impl SketchQuantile {
    pub fn new() -> Self {
        Self {
            signature: signature(),
        }
    }
}

impl Default for SketchQuantile {
    fn default() -> Self {
        Self::new()
    }
}

impl AggregateUDFImpl for SketchQuantile {
    fn name(&self) -> &str {
        "sketch_quantile"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let q = literal_arg(self.name(), args.exprs)?;
        if !(0.0..=1.0).contains(&q) {
            return plan_err!("sketch_quantile: q must be between 0 and 1, got {q}");
        }
        Ok(Box::new(SketchAccumulator::new(Finish::Quantile(q))))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(state_fields(&args))
    }
}

/// `sketch_count_under(latency_sketch, threshold_ns)`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SketchCountUnder {
    signature: Signature,
}

impl SketchCountUnder {
    pub fn new() -> Self {
        Self {
            signature: signature(),
        }
    }
}

impl Default for SketchCountUnder {
    fn default() -> Self {
        Self::new()
    }
}

impl AggregateUDFImpl for SketchCountUnder {
    fn name(&self) -> &str {
        "sketch_count_under"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let t = literal_arg(self.name(), args.exprs)?;
        Ok(Box::new(SketchAccumulator::new(Finish::CountUnder(t))))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(state_fields(&args))
    }
}

#[derive(Debug, Clone, Copy)]
enum Finish {
    Quantile(f64),
    CountUnder(f64),
}

/// Merges serialized sketches; the finish decides what the group evaluates to.
#[derive(Debug)]
struct SketchAccumulator {
    merged: LatencySketch,
    finish: Finish,
}

impl SketchAccumulator {
    fn new(finish: Finish) -> Self {
        Self {
            merged: LatencySketch::new(),
            finish,
        }
    }

    fn merge_one(&mut self, bytes: &[u8]) -> Result<()> {
        let s = match LatencySketch::from_bytes(bytes) {
            Ok(s) => s,
            Err(e) => return exec_err!("{e}"),
        };
        if let Err(e) = self.merged.merge(&s) {
            return exec_err!("{e}");
        }
        Ok(())
    }

    fn merge_array(&mut self, arr: &ArrayRef) -> Result<()> {
        match arr.data_type() {
            DataType::BinaryView => {
                for b in as_binary_view_array(arr)?.iter().flatten() {
                    self.merge_one(b)?;
                }
            }
            DataType::LargeBinary => {
                for b in as_large_binary_array(arr)?.iter().flatten() {
                    self.merge_one(b)?;
                }
            }
            _ => {
                for b in as_binary_array(arr)?.iter().flatten() {
                    self.merge_one(b)?;
                }
            }
        }
        Ok(())
    }
}

impl Accumulator for SketchAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.merge_array(&values[0])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.merge_array(&states[0])
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::Binary(Some(self.merged.to_bytes()))])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(match self.finish {
            Finish::Quantile(q) => ScalarValue::Float64(self.merged.quantile(q)),
            Finish::CountUnder(t) => ScalarValue::Int64(Some(self.merged.count_at_most(t) as i64)),
        })
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.merged.count().min(4096) as usize
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{BinaryArray, Float64Array, Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};
    use arrow::record_batch::RecordBatch;
    use datafusion::datasource::MemTable;
    use datafusion::logical_expr::AggregateUDF;
    use datafusion::prelude::SessionContext;
    use nines_model::LatencySketch;

    use super::*;

    /// Rows of (group, sketch of values); the SQL result per group must equal the quantile of
    /// one sketch fed all that group's values.
    #[tokio::test]
    async fn merges_sketches_per_group() {
        let groups: [(&str, Vec<Vec<i64>>); 2] = [
            (
                "a",
                vec![
                    vec![1_000, 2_000, 3_000],
                    vec![10_000_000],
                    vec![4_000, 5_000],
                ],
            ),
            ("b", vec![vec![7_000_000; 50], vec![9_000_000; 50]]),
        ];
        let (mut names, mut sketches) = (Vec::new(), Vec::new());
        for (g, rows) in &groups {
            for values in rows {
                let mut s = LatencySketch::new();
                values.iter().for_each(|&v| s.add(v));
                names.push(*g);
                sketches.push(s.to_bytes());
            }
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("g", DataType::Utf8, false),
            Field::new("latency_sketch", DataType::Binary, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(names)),
                Arc::new(BinaryArray::from_iter_values(sketches.iter())),
            ],
        )
        .unwrap();
        let ctx = SessionContext::new();
        ctx.register_table(
            "t",
            Arc::new(MemTable::try_new(schema, vec![vec![batch]]).unwrap()),
        )
        .unwrap();
        ctx.register_udaf(AggregateUDF::from(SketchQuantile::new()));
        ctx.register_udaf(AggregateUDF::from(SketchCountUnder::new()));
        let out = ctx
            .sql(
                "SELECT g, sketch_quantile(latency_sketch, 0.5) AS p50, \
                 sketch_quantile(latency_sketch, 1) AS p100, \
                 sketch_count_under(latency_sketch, 8000000) AS fast \
                 FROM t GROUP BY g ORDER BY g",
            )
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let b = &out[0];
        let p50 = b.column(1).as_any().downcast_ref::<Float64Array>().unwrap();
        let p100 = b.column(2).as_any().downcast_ref::<Float64Array>().unwrap();
        let fast = b.column(3).as_any().downcast_ref::<Int64Array>().unwrap();
        // Group a: 6 values; rank floor(0.5 * 5) = 2 → 3_000. Group b: 100 values, rank 49 → 7 ms.
        for (i, (exact50, max, under)) in
            [(3_000.0, 10_000_000.0, 5), (7_000_000.0, 9_000_000.0, 50)]
                .into_iter()
                .enumerate()
        {
            assert!(
                (p50.value(i) - exact50).abs() <= exact50 * 0.01,
                "p50 {}",
                p50.value(i)
            );
            assert_eq!(p100.value(i), max);
            assert_eq!(fast.value(i), under);
        }
    }

    #[tokio::test]
    async fn the_second_argument_must_be_a_constant() {
        let ctx = SessionContext::new();
        ctx.register_udaf(AggregateUDF::from(SketchQuantile::new()));
        let err = ctx
            .sql("SELECT sketch_quantile(CAST(x AS BYTEA), y) FROM (VALUES ('a', 0.5)) AS v(x, y)")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("must be a constant number"), "{err}");
    }
}
