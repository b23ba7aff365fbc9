//! The DataFusion session over the store's tables.

use std::sync::Arc;

use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::AggregateUDF;
use datafusion::prelude::{SessionConfig, SessionContext};
use nines_model::schema::{self, PARTITION_COLUMN, TABLES};
use nines_store::Store;

use crate::sketch_udaf::{SketchCountUnder, SketchQuantile};
use crate::{Error, Result};

/// A query engine over one store.
#[derive(Clone)]
pub struct QueryEngine {
    ctx: SessionContext,
}

impl std::fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryEngine").finish_non_exhaustive()
    }
}

impl QueryEngine {
    /// Registers every table of `store` and the sketch functions.
    pub fn new(store: &Store) -> Result<Self> {
        // No listing cache: files written by aggregators after the first query must be
        // visible to the next one.
        let runtime = RuntimeEnvBuilder::new()
            .with_object_list_cache_limit(0)
            .build_arc()?;
        let config = SessionConfig::new()
            .with_information_schema(true)
            .set_str("datafusion.execution.time_zone", "UTC");
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        for table in TABLES {
            let file_schema = schema::for_table(table).expect("known table");
            let dir = store.table_dir(table);
            let url = ListingTableUrl::parse(format!("{}/", dir.display()))?;
            let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
                .with_file_extension(".parquet")
                .with_table_partition_cols(vec![(PARTITION_COLUMN.to_owned(), DataType::Utf8)]);
            let config = ListingTableConfig::new(url)
                .with_listing_options(options)
                .with_schema(file_schema);
            ctx.register_table(table, Arc::new(ListingTable::try_new(config)?))?;
        }
        ctx.register_udaf(AggregateUDF::from(SketchQuantile::new()));
        ctx.register_udaf(AggregateUDF::from(SketchCountUnder::new()));
        Ok(Self { ctx })
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
