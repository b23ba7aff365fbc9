//! The DataFusion session over the store's tables.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::execution::cache::cache_manager::{CacheManagerConfig, FileMetadataCache};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{AggregateUDF, Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::filter::FilterExecBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use deltalake::delta_datafusion::{DeltaScanConfig, DeltaScanNext};
use deltalake::kernel::Snapshot;
use deltalake::{DeltaTable, DeltaTableBuilder};
use nines_model::schema::TABLES;
use nines_store::Store;

use crate::proven;
use crate::run::{conform, wire_schema};
use crate::sketch_udaf::{SketchCountUnder, SketchQuantile};
use crate::{Error, Result};

/// A Delta table read at its latest commit by every scan: a query sees every flush committed
/// before it started, whole, and nothing of one that is not committed.
///
/// The table's state (its snapshot with the list of live files and their statistics) is
/// kept between scans and brought up to date at the start of each: `update_incremental`
/// lists the log and reads only the commits since the last scan, so a scan no longer replays
/// the whole log (about 70 commits per table before a compaction). Between commits a scan
/// pays for one look-up of the next commit's name ([`has_newer_commit`]).
struct LiveTable {
    /// The table's log store, for the session's object store and for version look-ups.
    table: DeltaTable,
    /// The same table with its state loaded, advanced by each scan.
    latest: tokio::sync::Mutex<DeltaTable>,
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
        // Strings are read as string views, which DataFusion filters and groups without
        // copying them (BENCHMARKS.md: a quarter off the 30-day question in one process,
        // ~7 % over the bench's eight timed questions against DuckDB); every result
        // leaves as plain `Utf8`, the type docs/tables.md gives (`run::conform`). Partition
        // values are plain.
        let config = DeltaScanConfig {
            wrap_partition_values: false,
            schema_force_view_types: true,
            ..DeltaScanConfig::new()
        };
        let snapshot = Snapshot::try_new(table.log_store().as_ref(), None)
            .await
            .map_err(|e| Error::Table(name.to_owned(), e.to_string()))?;
        let schema = DeltaScanNext::new(Arc::new(snapshot), config.clone())?.schema();
        Ok(Self {
            latest: tokio::sync::Mutex::new(table.clone()),
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
        // A range filter is the scan's own (`proven`): dropped when the files' statistics
        // prove it true for every row, evaluated by the scan otherwise. Any other filter
        // skips partitions, files and row groups, and still runs above the scan.
        Ok(filters
            .iter()
            .map(|f| {
                if proven::is_range(f) {
                    TableProviderFilterPushDown::Exact
                } else {
                    TableProviderFilterPushDown::Inexact
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let external = |e| datafusion::error::DataFusionError::External(Box::new(e));
        let (snapshot, proven) = {
            let mut latest = self.latest.lock().await;
            if has_newer_commit(&latest).await {
                latest.update_incremental(None).await.map_err(external)?;
            }
            let files = latest.snapshot().map_err(external)?.snapshot();
            let proven: Vec<bool> = filters
                .iter()
                .map(|f| proven::proven_true(f, &self.schema, files))
                .collect();
            (files.clone(), proven)
        };
        self.table
            .update_datafusion_session(state)
            .map_err(external)?;
        // What is left to prune by, and the range filters this scan must still apply.
        let (mut left, mut own) = (Vec::new(), Vec::new());
        for (f, proven) in filters.iter().zip(proven) {
            if !proven {
                left.push(f.clone());
                if proven::is_range(f) {
                    own.push(f.clone());
                }
            }
        }
        let scan = DeltaScanNext::new(snapshot, self.config.clone())?;
        let Some(predicate) = datafusion::logical_expr::utils::conjunction(own) else {
            return parquet_reads(
                scan.scan(state, projection, &left, limit).await?,
                state.config().target_partitions(),
            );
        };
        // Read the predicate's columns too, filter, and give back only those asked for.
        let wanted: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        let mut read = wanted.clone();
        for c in predicate.column_refs() {
            let i = self.schema.index_of(&c.name)?;
            if !read.contains(&i) {
                read.push(i);
            }
        }
        let input = parquet_reads(
            scan.scan(state, Some(&read), &left, None).await?,
            state.config().target_partitions(),
        )?;
        let unqualified = predicate
            .transform(|e| {
                Ok(match e {
                    Expr::Column(c) => {
                        Transformed::yes(Expr::Column(Column::new_unqualified(c.name)))
                    }
                    e => Transformed::no(e),
                })
            })?
            .data;
        let predicate =
            state.create_physical_expr(unqualified, &DFSchema::try_from(input.schema())?)?;
        // The columns asked for, by name, wherever the scan put them.
        let out = wanted
            .iter()
            .map(|&i| input.schema().index_of(self.schema.field(i).name()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let filter = FilterExecBuilder::new(predicate, input)
            .apply_projection(Some(out))?
            .with_fetch(limit)
            .build()?;
        Ok(Arc::new(filter))
    }
}

/// Whether `table`'s log holds a commit after the state it has loaded (or it has none). Delta
/// numbers its commits without gaps and writes each whole, under its number, only if that
/// name is free; so when the next number's file is absent the loaded state is the latest.
/// One look-up by name, where `update_incremental` lists `_delta_log` and looks at every entry
/// (~220 on a table between compactions, each through delta-kernel's background executor:
/// ~5 ms of each statement's planning over the bench's tables, BENCHMARKS.md). A failed
/// look-up answers yes, and the listing decides.
async fn has_newer_commit(table: &DeltaTable) -> bool {
    use deltalake::logstore::commit_uri_from_version;
    use deltalake::logstore::object_store::{Error, ObjectStoreExt};
    let Some(version) = table.version() else {
        return true;
    };
    let next = commit_uri_from_version(Some(version + 1));
    !matches!(
        table.log_store().object_store(None).head(&next).await,
        Err(Error::NotFound { .. })
    )
}

/// `plan` with its Parquet reads skipping files, row groups and pages by the predicate but
/// not filtering rows while they decode, which is DataFusion's default and not delta-rs's
/// (its scan turns row filters on whenever there is a predicate). Filters then run once,
/// above the scan. A row filter reads the predicate's columns first and the others through
/// the selection it makes: a loss when the filter keeps many rows, as an SLO's `IN` lists
/// of the services and operations it reads do (half the rows, and a quarter of the
/// evaluation's time in `nines bench --slo`, BENCHMARKS.md). And its files cut into
/// byte ranges the partitions share ([`in_morsels`]).
fn parquet_reads(
    plan: Arc<dyn ExecutionPlan>,
    target_partitions: usize,
) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
    use datafusion::datasource::physical_plan::ParquetSource;
    use datafusion::datasource::source::DataSourceExec;
    Ok(plan
        .transform_down(|node| {
            let Some(exec) = node.downcast_ref::<DataSourceExec>() else {
                return Ok(Transformed::no(node));
            };
            let Some((config, parquet)) = exec.downcast_to_file_source::<ParquetSource>() else {
                return Ok(Transformed::no(node));
            };
            let mut config = config.clone();
            config.file_source = Arc::new(parquet.clone().with_pushdown_filters(false));
            in_morsels(&mut config, target_partitions);
            Ok(Transformed::yes(
                DataSourceExec::from_data_source(config) as Arc<dyn ExecutionPlan>
            ))
        })?
        .data)
}

/// The smallest byte range [`in_morsels`] cuts a file into.
const MIN_MORSEL: u64 = 4 << 20;

/// How many byte ranges [`in_morsels`] makes of each partition's share of the bytes.
const MORSELS_PER_PARTITION: u64 = 4;

/// `config`'s files cut into byte ranges ("morsels") of a quarter of a partition's share of
/// the bytes ([`MORSELS_PER_PARTITION`]), at least [`MIN_MORSEL`]. DataFusion splits the files
/// into one range per partition, and a partition that runs out of work takes the next range
/// left in any sibling's queue; with ranges that large the last one taken decides the wall
/// time. The bench's compacted `requests` (a 17 MB file and a 108 MB one) was read 3.16 M
/// rows against 1.84 M by the two partitions (`EXPLAIN ANALYZE`): the partition done with
/// the small file took the other half of the large one. Two to sixteen ranges per partition
/// were measured (BENCHMARKS.md): four read the four analyst questions fastest; more cost
/// more in opening ranges than they saved. A row group belongs to the range holding its
/// first page, so no row is read twice or missed however the ranges fall. Nothing is cut
/// when the order of the files matters.
fn in_morsels(
    config: &mut datafusion::datasource::physical_plan::FileScanConfig,
    target_partitions: usize,
) {
    use datafusion::datasource::physical_plan::FileGroup;
    if config.preserve_order || !config.output_ordering.is_empty() {
        return;
    }
    let total: u64 = config
        .file_groups
        .iter()
        .flat_map(FileGroup::iter)
        .map(|f| f.effective_size())
        .sum();
    let morsel =
        (total / (MORSELS_PER_PARTITION * target_partitions.max(1) as u64)).max(MIN_MORSEL);
    config.file_groups = config
        .file_groups
        .iter()
        .map(|group| {
            let mut files = Vec::new();
            for file in group.iter() {
                let (mut start, end) = file.range();
                while end - start > morsel + morsel / 2 {
                    files.push(
                        file.clone()
                            .with_range(start as i64, (start + morsel) as i64),
                    );
                    start += morsel;
                }
                files.push(file.clone().with_range(start as i64, end as i64));
            }
            let cut = FileGroup::new(files);
            match group.file_statistics(None) {
                Some(s) => cut.with_statistics(Arc::new(s.clone())),
                None => cut,
            }
        })
        .collect();
}

/// Whose rows a session sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every tenant's (an operator, nines itself, or a single-tenant install).
    All,
    /// One tenant's, in every table, through joins, subqueries and views.
    Tenant(String),
}

impl Scope {
    /// The scope of a query key's tenant (`*`: every tenant).
    pub fn of_key_tenant(tenant: &str) -> Self {
        if tenant == "*" {
            Self::All
        } else {
            Self::Tenant(tenant.to_owned())
        }
    }

    /// How it is written in a ticket: `*` or the tenant.
    pub fn as_str(&self) -> &str {
        match self {
            Self::All => "*",
            Self::Tenant(t) => t,
        }
    }
}

/// A query engine over one store.
#[derive(Clone)]
pub struct QueryEngine {
    /// Every tenant's tables, without limits: nines' own queries (SLOs, reports).
    ctx: SessionContext,
    tables: Vec<(&'static str, Arc<LiveTable>)>,
    /// Parquet footers and page indexes already read (keyed by path, checked against the
    /// file's size and time), shared by every session: a caller's session is new per
    /// statement, and with a cache of its own each statement read every footer again.
    metadata_cache: Arc<FileMetadataCache>,
}

impl std::fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryEngine").finish_non_exhaustive()
    }
}

fn session_config() -> SessionConfig {
    SessionConfig::new()
        .with_information_schema(true)
        .set_str("datafusion.execution.time_zone", "UTC")
}

impl QueryEngine {
    /// Registers every table of `store` and the sketch functions.
    pub async fn new(store: &Store) -> Result<Self> {
        let mut tables = Vec::new();
        for table in TABLES {
            tables.push((table, Arc::new(LiveTable::open(store, table).await?)));
        }
        let runtime = RuntimeEnvBuilder::new().build_arc()?;
        let metadata_cache = runtime.cache_manager.get_file_metadata_cache();
        let ctx = Self::build_context(&tables, &Scope::All, runtime)?;
        Ok(Self {
            ctx,
            tables,
            metadata_cache,
        })
    }

    /// The Parquet metadata cache every session of this engine reads through.
    pub fn metadata_cache(&self) -> &Arc<FileMetadataCache> {
        &self.metadata_cache
    }

    /// A session of its own for one caller: the tables as views restricted to `scope`
    /// (the restriction is part of each view's plan, so it reaches Delta's file and row-group
    /// pruning, and no name reaches the unrestricted table), the sketch functions, and a
    /// memory pool of `memory_limit` bytes.
    pub fn session(&self, scope: &Scope, memory_limit: usize) -> Result<SessionContext> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(memory_limit, 1.0)
            .with_cache_manager(
                CacheManagerConfig::default()
                    .with_file_metadata_cache(Some(self.metadata_cache.clone())),
            )
            .build_arc()?;
        let ctx = Self::build_context(&self.tables, scope, runtime)?;
        // A sort sets this much aside for merging what it spilled (10 MB by default): an
        // eighth of the pool, so a small limit still sorts.
        ctx.state_ref()
            .write()
            .config_mut()
            .options_mut()
            .execution
            .sort_spill_reservation_bytes = (memory_limit / 8).min(10 << 20);
        Ok(ctx)
    }

    fn build_context(
        tables: &[(&'static str, Arc<LiveTable>)],
        scope: &Scope,
        runtime: Arc<datafusion::execution::runtime_env::RuntimeEnv>,
    ) -> Result<SessionContext> {
        use datafusion::datasource::{ViewTable, provider_as_source};
        use datafusion::logical_expr::LogicalPlanBuilder;
        use datafusion::prelude::{col, lit};
        let ctx = SessionContext::new_with_config_rt(session_config(), runtime);
        for (name, live) in tables {
            let mut plan =
                LogicalPlanBuilder::scan(*name, provider_as_source(live.clone() as _), None)?;
            if let Scope::Tenant(t) = scope {
                plan = plan.filter(col("tenant").eq(lit(t.as_str())))?;
            }
            ctx.register_table(*name, Arc::new(ViewTable::new(plan.build()?, None)))?;
        }
        ctx.register_udaf(AggregateUDF::from(SketchQuantile::new()));
        ctx.register_udaf(AggregateUDF::from(SketchCountUnder::new()));
        Ok(ctx)
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

    /// The names of the tables, in the order a flush writes them.
    pub fn table_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.tables.iter().map(|(n, _)| *n)
    }

    /// Runs one statement of nines' own (every tenant, no limits) and collects its result,
    /// in the types every door gives ([`wire_schema`]).
    pub async fn sql(&self, sql: &str) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let df = self.ctx.sql(sql).await.map_err(plan_error)?;
        let schema = wire_schema(df.schema().as_arrow());
        let batches = df
            .collect()
            .await?
            .iter()
            .map(|b| conform(b, &schema))
            .collect::<Result<_>>()?;
        Ok((schema, batches))
    }

    /// [`QueryEngine::sql`] in the session's own types (strings as string views), for nines'
    /// own readers that go through every row and need no copy of its strings in the
    /// tables' types: an SLO's series over a month is millions of rows.
    pub(crate) async fn sql_as_scanned(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        let df = self.ctx.sql(sql).await.map_err(plan_error)?;
        Ok(df.collect().await?)
    }
}

/// A planning failure is the SQL's; anything else is the engine's.
pub(crate) fn plan_error(e: datafusion::error::DataFusionError) -> Error {
    use datafusion::error::DataFusionError as E;
    match e.find_root() {
        E::SQL(..) | E::Plan(_) | E::SchemaError(..) | E::NotImplemented(_) => {
            Error::Sql(e.find_root().to_string())
        }
        _ => Error::Execution(e),
    }
}
