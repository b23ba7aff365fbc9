//! The DataFusion session over the store's tables.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{AggregateUDF, Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use deltalake::delta_datafusion::{DeltaScanConfig, DeltaScanNext};
use deltalake::kernel::Snapshot;
use deltalake::{DeltaTable, DeltaTableBuilder};
use nines_model::schema::TABLES;
use nines_store::Store;

use crate::sketch_udaf::{SketchCountUnder, SketchQuantile};
use crate::{Error, Result};

/// A Delta table read at its latest commit by every scan: a query sees every flush committed
/// before it started, whole, and nothing of one that is not committed.
struct LiveTable {
    /// Holds the table's log store (never loaded: each scan reads its own snapshot).
    table: DeltaTable,
    schema: SchemaRef,
    config: DeltaScanConfig,
}

impl std::fmt::Debug for LiveTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveTable")
            .field("url", &self.table.table_url().as_str())
            .finish_non_exhaustive()
    }
}

impl LiveTable {
    async fn open(store: &Store, name: &str) -> Result<Self> {
        let url = store.table_url(name);
        let table = DeltaTableBuilder::from_url(url)
            .and_then(|b| {
                b.with_storage_options(store.location().options.clone())
                    .build()
            })
            .map_err(|e| Error::Table(name.to_owned(), e.to_string()))?;
        // Plain strings and partition values: results keep the types docs/tables.md gives.
        let config = DeltaScanConfig {
            wrap_partition_values: false,
            schema_force_view_types: false,
            ..DeltaScanConfig::new()
        };
        let snapshot = Snapshot::try_new(table.log_store().as_ref(), None)
            .await
            .map_err(|e| Error::Table(name.to_owned(), e.to_string()))?;
        let schema = DeltaScanNext::new(Arc::new(snapshot), config.clone())?.schema();
        Ok(Self {
            table,
            schema,
            config,
        })
    }
}

#[async_trait]
impl TableProvider for LiveTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        // Used to skip partitions, files and row groups; the filter itself still runs.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let snapshot = Snapshot::try_new(self.table.log_store().as_ref(), None)
            .await
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        self.table
            .update_datafusion_session(state)
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        DeltaScanNext::new(Arc::new(snapshot), self.config.clone())?
            .scan(state, projection, filters, limit)
            .await
    }
}

/// A query engine over one store.
#[derive(Clone)]
pub struct QueryEngine {
    ctx: SessionContext,
    tables: Vec<(&'static str, Arc<LiveTable>)>,
}

impl std::fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryEngine").finish_non_exhaustive()
    }
}

impl QueryEngine {
    /// Registers every table of `store` and the sketch functions.
    pub async fn new(store: &Store) -> Result<Self> {
        let runtime = RuntimeEnvBuilder::new().build_arc()?;
        let config = SessionConfig::new()
            .with_information_schema(true)
            .set_str("datafusion.execution.time_zone", "UTC");
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        let mut tables = Vec::new();
        for table in TABLES {
            let live = Arc::new(LiveTable::open(store, table).await?);
            ctx.register_table(table, live.clone())?;
            tables.push((table, live));
        }
        ctx.register_udaf(AggregateUDF::from(SketchQuantile::new()));
        ctx.register_udaf(AggregateUDF::from(SketchCountUnder::new()));
        Ok(Self { ctx, tables })
    }

    /// Each table's latest committed version (what a query started now reads): a report's
    /// provenance.
    pub async fn table_versions(&self) -> Result<Vec<(&'static str, u64)>> {
        let mut out = Vec::new();
        for (name, live) in &self.tables {
            let snapshot = Snapshot::try_new(live.table.log_store().as_ref(), None)
                .await
                .map_err(|e| Error::Table((*name).to_owned(), e.to_string()))?;
            out.push((*name, snapshot.version()));
        }
        Ok(out)
    }

    /// The underlying session (for servers that need more than [`QueryEngine::sql`]).
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Runs one statement and collects its result.
    pub async fn sql(&self, sql: &str) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let df = self.ctx.sql(sql).await.map_err(|e| match e {
            datafusion::error::DataFusionError::SQL(..)
            | datafusion::error::DataFusionError::Plan(_)
            | datafusion::error::DataFusionError::SchemaError(..) => Error::Sql(e.to_string()),
            other => Error::Execution(other),
        })?;
        let schema: SchemaRef = df.schema().inner().clone();
        let batches = df.collect().await?;
        Ok((schema, batches))
    }
}
