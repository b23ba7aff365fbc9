//! Callers' SQL, through every door (`nines sql`, Flight SQL, HTTP): read-only statements,
//! in a session of the caller's own scoped to its tenant, within the query limits, counted
//! in `/metrics` by door and outcome.

use std::sync::Arc;
use std::time::Instant;

use arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SQLOptions;
use datafusion::sql::parser::{DFParser, Statement};
use datafusion::sql::sqlparser::ast::Statement as Sql;
use futures::StreamExt;
use tokio::sync::Semaphore;

use crate::config::Limits;
use crate::session::{QueryEngine, Scope, plan_error};
use crate::{Error, Result};

/// One statement's result, in the schema every door declares for it ([`wire_schema`]).
#[derive(Debug, Clone)]
pub struct Answer {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

/// Runs callers' SQL. Cheap to clone: every clone shares the concurrency limit.
#[derive(Debug, Clone)]
pub struct Runner {
    engine: QueryEngine,
    limits: Limits,
    running: Arc<Semaphore>,
}

/// The statements of `sql` (`;`-separated, so `SELECT 1; SELECT 2;` is two), each refused
/// unless it only reads.
pub fn read_only_statements(sql: &str) -> Result<Vec<Statement>> {
    let statements = DFParser::parse_sql(sql).map_err(|e| Error::Sql(e.to_string()))?;
    if statements.is_empty() {
        return Err(Error::Sql("no SQL statement".into()));
    }
    statements
        .into_iter()
        .map(|s| check_read_only(&s).map(|()| s))
        .collect()
}

fn check_read_only(s: &Statement) -> Result<()> {
    match s {
        Statement::Statement(inner) => match inner.as_ref() {
            Sql::Query(_)
            | Sql::ShowTables { .. }
            | Sql::ShowColumns { .. }
            | Sql::ExplainTable { .. } => Ok(()),
            Sql::Explain { statement, .. } => {
                check_read_only(&Statement::Statement(statement.clone()))
            }
            other => Err(Error::ReadOnly(keyword(&other.to_string()))),
        },
        Statement::Explain(e) => check_read_only(&e.statement),
        Statement::CreateExternalTable(_) => Err(Error::ReadOnly("CREATE EXTERNAL TABLE".into())),
        Statement::CopyTo(_) => Err(Error::ReadOnly("COPY".into())),
        Statement::Reset(_) => Err(Error::ReadOnly("RESET".into())),
    }
}

/// The statement's kind as its first words say it: `INSERT`, `DROP TABLE`, `SET`.
fn keyword(sql: &str) -> String {
    let mut words = sql.split_whitespace().map(str::to_uppercase);
    let first = words.next().unwrap_or_default();
    match first.as_str() {
        "CREATE" | "DROP" | "ALTER" => {
            let mut kind = vec![first];
            for w in words.by_ref() {
                let stop = !matches!(
                    w.as_str(),
                    "OR" | "REPLACE"
                        | "TEMPORARY"
                        | "TEMP"
                        | "EXTERNAL"
                        | "UNIQUE"
                        | "IF"
                        | "NOT"
                        | "EXISTS"
                );
                kind.push(w);
                if stop {
                    break;
                }
            }
            kind.join(" ")
        }
        _ => first,
    }
}

/// The schema every door declares for a result and sends it in: dictionaries and views
/// unpacked to their plain types, every column nullable. Planning cannot promise more
/// (MIN over an empty file is null whatever the column), and a Flight SQL client (ADBC)
/// refuses data whose schema differs from the one announced.
pub fn wire_schema(schema: &Schema) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| Field::new(f.name(), plain(f.data_type()), true))
        .collect();
    Arc::new(Schema::new(fields))
}

/// `t` with dictionaries and views unpacked, inside lists, structs and maps too.
fn plain(t: &DataType) -> DataType {
    let field = |f: &FieldRef| Arc::new(f.as_ref().clone().with_data_type(plain(f.data_type())));
    match t {
        DataType::Dictionary(_, value) => plain(value),
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView => DataType::Binary,
        DataType::List(f) => DataType::List(field(f)),
        DataType::LargeList(f) => DataType::LargeList(field(f)),
        DataType::Struct(fields) => DataType::Struct(fields.iter().map(field).collect()),
        DataType::Map(f, sorted) => DataType::Map(field(f), *sorted),
        other => other.clone(),
    }
}

/// `batch` in `schema` (a [`wire_schema`]): columns cast to its types.
pub fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    Ok(nines_model::schema::conform(batch, schema)?)
}

impl Runner {
    pub fn new(engine: QueryEngine, limits: Limits) -> Self {
        let running = Arc::new(Semaphore::new(limits.max_concurrent_queries));
        Self {
            engine,
            limits,
            running,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn engine(&self) -> &QueryEngine {
        &self.engine
    }

    /// The schema one statement's result will have, planned without running it (a Flight
    /// SQL `FlightInfo`, a prepared statement).
    pub async fn schema_of(&self, scope: &Scope, sql: &str) -> Result<SchemaRef> {
        let mut statements = read_only_statements(sql)?;
        if statements.len() != 1 {
            return Err(Error::Sql(format!(
                "{} statements: send one at a time",
                statements.len()
            )));
        }
        let ctx = self.engine.session(scope, self.limits.max_memory_bytes)?;
        let plan = plan(&ctx, statements.remove(0)).await?;
        Ok(wire_schema(plan.schema().as_arrow()))
    }

    /// Runs every statement of `sql` in one session of `scope`, one after the other: an
    /// answer per statement. Counted as one query of `door`.
    pub async fn run(&self, door: &'static str, scope: &Scope, sql: &str) -> Result<Vec<Answer>> {
        let started = Instant::now();
        let result = self.run_uncounted(scope, sql).await;
        account(door, started, result.as_ref().map(|_| ()));
        result
    }

    async fn run_uncounted(&self, scope: &Scope, sql: &str) -> Result<Vec<Answer>> {
        let statements = read_only_statements(sql)?;
        let Ok(_permit) = self.running.clone().try_acquire_owned() else {
            return Err(Error::Busy(self.limits.max_concurrent_queries));
        };
        let ctx = self.engine.session(scope, self.limits.max_memory_bytes)?;
        let work = async {
            let mut answers = Vec::new();
            for s in statements {
                answers.push(self.collect(&ctx, s).await?);
            }
            Ok(answers)
        };
        // Dropping the work on timeout drops its streams, which cancels their tasks.
        tokio::time::timeout(self.limits.timeout, work)
            .await
            .unwrap_or(Err(Error::Timeout(self.limits.timeout)))
    }

    async fn collect(
        &self,
        ctx: &datafusion::prelude::SessionContext,
        statement: Statement,
    ) -> Result<Answer> {
        let plan = plan(ctx, statement).await?;
        let schema = wire_schema(plan.schema().as_arrow());
        let df = ctx.execute_logical_plan(plan).await.map_err(plan_error)?;
        let mut stream = df.execute_stream().await.map_err(|e| self.execution(e))?;
        let (mut rows, mut bytes, mut batches) = (0_usize, 0_usize, Vec::new());
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(|e| self.execution(e))?;
            rows += batch.num_rows();
            bytes += batch.get_array_memory_size();
            if rows > self.limits.max_result_rows {
                return Err(Error::TooManyRows(self.limits.max_result_rows));
            }
            if bytes > self.limits.max_result_bytes {
                return Err(Error::TooManyBytes(self.limits.max_result_bytes));
            }
            batches.push(conform(&batch, &schema)?);
        }
        Ok(Answer { schema, batches })
    }

    /// A failure while running: the memory limit, or the engine's.
    fn execution(&self, e: DataFusionError) -> Error {
        match e.find_root() {
            DataFusionError::ResourcesExhausted(detail) => Error::Memory {
                limit: self.limits.max_memory_bytes,
                detail: detail.clone(),
            },
            _ => Error::Execution(e),
        }
    }
}

/// Plans one read-only statement, checked again on the plan (defence in depth: no DDL, DML
/// or `SET` whatever the parser let through).
async fn plan(
    ctx: &datafusion::prelude::SessionContext,
    statement: Statement,
) -> Result<datafusion::logical_expr::LogicalPlan> {
    let plan = ctx
        .state()
        .statement_to_plan(statement)
        .await
        .map_err(plan_error)?;
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(&plan)
        .map_err(|e| Error::ReadOnly(e.strip_backtrace()))?;
    Ok(plan)
}

/// Counts one query of `door` and its outcome (`ok`, `refused`: the caller's query or
/// credential was turned away, or `failed`), with its duration.
pub fn account(door: &'static str, started: Instant, result: Result<(), &Error>) {
    let outcome = match result {
        Ok(()) => "ok",
        Err(e) if is_failure(e) => {
            crate::metrics::failed(door, e.code());
            "failed"
        }
        Err(e) => {
            crate::metrics::refused(door, e.code());
            "refused"
        }
    };
    crate::metrics::answered(door, outcome, started.elapsed().as_secs_f64());
}

/// Whether `e` is a failure (the SQL, the engine or nines), not a refusal of the caller's
/// query or credential.
pub(crate) fn is_failure(e: &Error) -> bool {
    matches!(
        e,
        Error::Sql(_) | Error::Execution(_) | Error::Table(..) | Error::Format(_)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Views inside lists, structs and maps leave as plain strings and bytes, and a batch
    /// of them is cast to that schema with its values intact (the expected types written
    /// here, the values read back through the plain arrays).
    #[test]
    fn nested_views_leave_as_plain_types() {
        use arrow::array::{
            Array, ArrayRef, AsArray, BinaryViewArray, ListArray, MapArray, StringViewArray,
            StructArray,
        };
        use arrow::buffer::{OffsetBuffer, ScalarBuffer};
        let view = |t: DataType| Arc::new(Field::new("item", t, true));
        let texts: ArrayRef = Arc::new(StringViewArray::from(vec!["a", "bc", "def"]));
        let list = ListArray::new(
            view(DataType::Utf8View),
            OffsetBuffer::new(ScalarBuffer::from(vec![0, 1, 3])),
            texts.clone(),
            None,
        );
        let inner = StructArray::from(vec![(
            Arc::new(Field::new("sha", DataType::Utf8View, true)),
            Arc::new(StringViewArray::from(vec!["x", "y"])) as ArrayRef,
        )]);
        let entries = StructArray::from(vec![
            (
                Arc::new(Field::new("key", DataType::Utf8View, false)),
                Arc::new(StringViewArray::from(vec!["k1", "k2"])) as ArrayRef,
            ),
            (
                Arc::new(Field::new("value", DataType::BinaryView, true)),
                Arc::new(BinaryViewArray::from(vec![&b"v1"[..], b"v2"])) as ArrayRef,
            ),
        ]);
        let map = MapArray::new(
            Arc::new(Field::new("key_value", entries.data_type().clone(), false)),
            OffsetBuffer::new(ScalarBuffer::from(vec![0, 2, 2])),
            entries,
            None,
            false,
        );
        let batch = RecordBatch::try_from_iter([
            ("list", Arc::new(list) as ArrayRef),
            ("commit", Arc::new(inner) as ArrayRef),
            ("attributes", Arc::new(map) as ArrayRef),
        ])
        .unwrap();
        let schema = wire_schema(&batch.schema());
        let want = [
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            DataType::Struct(vec![Field::new("sha", DataType::Utf8, true)].into()),
            DataType::Map(
                Arc::new(Field::new(
                    "key_value",
                    DataType::Struct(
                        vec![
                            Field::new("key", DataType::Utf8, false),
                            Field::new("value", DataType::Binary, true),
                        ]
                        .into(),
                    ),
                    false,
                )),
                false,
            ),
        ];
        for (field, want) in schema.fields().iter().zip(&want) {
            assert_eq!(field.data_type(), want, "{}", field.name());
        }
        let plain = conform(&batch, &schema).unwrap();
        let list = plain.column(0).as_list::<i32>();
        assert_eq!(list.value(1).as_string::<i32>().value(1), "def");
        let commit = plain.column(1).as_struct();
        assert_eq!(commit.column(0).as_string::<i32>().value(1), "y");
        let map = plain.column(2).as_map();
        assert_eq!(map.keys().as_string::<i32>().value(1), "k2");
        assert_eq!(map.values().as_binary::<i32>().value(0), b"v1");
        assert_eq!(map.value_length(1), 0);
    }

    #[test]
    fn only_reading_statements_pass() {
        for ok in [
            "SELECT 1",
            "WITH a AS (SELECT 1 AS x) SELECT x FROM a",
            "EXPLAIN SELECT 1",
            "SHOW TABLES",
            "SELECT 1; SELECT 2;",
        ] {
            assert!(read_only_statements(ok).is_ok(), "{ok}");
        }
        assert_eq!(
            read_only_statements("SELECT 1; SELECT 2;").unwrap().len(),
            2
        );
        for (sql, kind) in [
            ("INSERT INTO requests VALUES (1)", "INSERT"),
            ("DROP TABLE requests", "DROP TABLE"),
            (
                "CREATE OR REPLACE VIEW v AS SELECT 1",
                "CREATE OR REPLACE VIEW",
            ),
            ("SET datafusion.execution.batch_size = 1", "SET"),
            ("COPY (SELECT 1) TO '/tmp/x.parquet'", "COPY"),
            (
                "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'",
                "CREATE EXTERNAL TABLE",
            ),
            ("EXPLAIN INSERT INTO requests VALUES (1)", "INSERT"),
            ("SELECT 1; DELETE FROM requests", "DELETE"),
        ] {
            let e = read_only_statements(sql).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "{kind} is refused: nines SQL is read-only (SELECT, WITH, EXPLAIN, SHOW and DESCRIBE)"
                ),
                "{sql}"
            );
        }
    }

    #[test]
    fn the_wire_schema_unpacks_dictionaries_and_is_nullable() {
        let s = Schema::new(vec![
            Field::new(
                "d",
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                false,
            ),
            Field::new("v", DataType::Utf8View, false),
            Field::new("n", DataType::Int64, false),
        ]);
        let w = wire_schema(&s);
        let types: Vec<(&DataType, bool)> = w
            .fields()
            .iter()
            .map(|f| (f.data_type(), f.is_nullable()))
            .collect();
        assert_eq!(
            types,
            [
                (&DataType::Utf8, true),
                (&DataType::Utf8, true),
                (&DataType::Int64, true)
            ]
        );
    }
}
