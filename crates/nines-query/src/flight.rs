//! Arrow Flight SQL over [`Runner`]: statements (`CommandStatementQuery`), the prepared
//! statements every ADBC query goes through, `GetSqlInfo`, and enough catalog metadata
//! (catalogs, schemas, tables with their schemas, table types) to list the tables.
//!
//! Stateless: a ticket or prepared-statement handle is the statement and the caller's scope,
//! signed ([`Callers`]), so any query node sharing `query.ticket_secret` can answer it and a
//! caller cannot run another tenant's ticket. The schema a `FlightInfo` announces is the
//! schema `DoGet` sends ([`crate::run::wire_schema`]), an empty result included.

use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use arrow::datatypes::{DataType, Field, Schema};
use arrow::ipc::writer::IpcWriteOptions;
use arrow::record_batch::RecordBatch;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::FlightSqlService;
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery,
    CommandStatementQuery, ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse,
    IpcMessage, SchemaAsIpc, Ticket,
};
use futures::{Stream, TryStreamExt};
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::Callers;
use crate::run::{Runner, account};
use crate::session::Scope;
use crate::{Error, Result};

/// The catalog and schema the tables are listed under (DataFusion's defaults, so a query
/// may also name them: `datafusion.public.sli_1m`).
const CATALOG: &str = "datafusion";
const SCHEMA: &str = "public";
const TABLE_TYPE: &str = "TABLE";

static SQL_INFO: LazyLock<SqlInfoData> = LazyLock::new(|| {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "nines");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, "1.3");
    b.append(SqlInfo::FlightSqlServerReadOnly, true);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(SqlInfo::FlightSqlServerTransaction, 0_i32);
    b.append(SqlInfo::FlightSqlServerCancel, false);
    b.build().expect("a fixed, valid set")
});

/// The one place query errors become gRPC statuses.
fn status(e: &Error) -> Status {
    let message = e.to_string();
    match e {
        Error::Sql(_) | Error::ReadOnly(_) => Status::invalid_argument(message),
        Error::Unauthenticated(_) => Status::unauthenticated(message),
        Error::Busy(_) | Error::Memory { .. } | Error::TooManyRows(_) | Error::TooManyBytes(_) => {
            Status::resource_exhausted(message)
        }
        Error::Timeout(_) => Status::deadline_exceeded(message),
        Error::Execution(_) => Status::invalid_argument(message),
        Error::Table(..) | Error::Format(_) => {
            tracing::error!(error = %message, "query failed");
            Status::internal(message)
        }
    }
}

/// The Flight SQL service.
#[derive(Debug, Clone)]
pub struct FlightSql {
    runner: Runner,
    callers: Arc<Callers>,
}

type DoGetStream = <FlightSql as FlightService>::DoGetStream;

impl FlightSql {
    pub fn new(runner: Runner, callers: Arc<Callers>) -> Self {
        Self { runner, callers }
    }

    /// The caller's scope, counting a refusal as one refused query.
    fn scope<T>(&self, request: &Request<T>) -> Result<Scope, Status> {
        let headers = request.metadata().clone().into_headers();
        self.callers.scope(&headers).map_err(|e| {
            account("flight", Instant::now(), Err(&e));
            status(&e)
        })
    }

    /// A `FlightInfo` for `sql` run as `scope`: its planned schema and a signed ticket.
    async fn info(
        &self,
        scope: &Scope,
        sql: &str,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = self.runner.schema_of(scope, sql).await.map_err(|e| {
            account("flight", Instant::now(), Err(&e));
            status(&e)
        })?;
        let handle = self.callers.sign("statement", scope, sql);
        let ticket = TicketStatementQuery {
            statement_handle: handle.into_bytes().into(),
        };
        let endpoint =
            FlightEndpoint::new().with_ticket(Ticket::new(ticket.as_any().encode_to_vec()));
        let info = FlightInfo::new()
            .try_with_schema(&schema)
            .map_err(|e| Status::internal(e.to_string()))?
            .with_endpoint(endpoint)
            .with_descriptor(descriptor)
            .with_ordered(true);
        Ok(Response::new(info))
    }

    /// A `FlightInfo` of a metadata command: its fixed schema, the command as ticket.
    fn metadata_info(
        schema: &Schema,
        command: impl ProstMessageExt,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let ticket = Ticket::new(command.as_any().encode_to_vec());
        let info = FlightInfo::new()
            .try_with_schema(schema)
            .map_err(|e| Status::internal(e.to_string()))?
            .with_endpoint(FlightEndpoint::new().with_ticket(ticket))
            .with_descriptor(descriptor);
        Ok(Response::new(info))
    }
}

/// `batches` as a Flight data stream in `schema` (sent even when there is no batch).
fn flight_stream(schema: Arc<Schema>, batches: Vec<RecordBatch>) -> DoGetStream {
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(futures::stream::iter(batches.into_iter().map(Ok)))
        .map_err(Status::from);
    Box::pin(stream)
}

/// `CloseSessionResult` of Flight's `CloseSession` action (not in arrow-flight 59).
#[derive(Clone, PartialEq, prost::Message)]
struct CloseSessionResult {
    /// 1: CLOSED.
    #[prost(int32, tag = "1")]
    status: i32,
}

#[tonic::async_trait]
impl FlightSqlService for FlightSql {
    type FlightService = FlightSql;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let (_, token) = self.callers.basic(header).map_err(|e| {
            account("flight", Instant::now(), Err(&e));
            status(&e)
        })?;
        let answer = HandshakeResponse {
            protocol_version: 0,
            payload: token.clone().into(),
        };
        let mut response: Response<Pin<Box<dyn Stream<Item = _> + Send>>> =
            Response::new(Box::pin(futures::stream::iter([Ok(answer)])));
        let bearer = format!("Bearer {token}")
            .parse()
            .map_err(|_| Status::internal("a token is ASCII"))?;
        response.metadata_mut().insert("authorization", bearer);
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let scope = self.scope(&request)?;
        self.info(&scope, &query.query, request.into_inner()).await
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let scope = self.scope(&request)?;
        let sql = self
            .callers
            .statement(&cmd.prepared_statement_handle, "prepared", &scope)
            .map_err(|e| {
                account("flight", Instant::now(), Err(&e));
                status(&e)
            })?;
        self.info(&scope, &sql, request.into_inner()).await
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let scope = self.scope(&request)?;
        let sql = self
            .callers
            .statement(&ticket.statement_handle, "statement", &scope)
            .map_err(|e| {
                account("flight", Instant::now(), Err(&e));
                status(&e)
            })?;
        let mut answers = self
            .runner
            .run("flight", &scope, &sql)
            .await
            .map_err(|e| status(&e))?;
        let answer = answers.pop().ok_or_else(|| Status::internal("no answer"))?;
        Ok(Response::new(flight_stream(answer.schema, answer.batches)))
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let scope = self.scope(&request)?;
        let schema = self
            .runner
            .schema_of(&scope, &query.query)
            .await
            .map_err(|e| {
                account("flight", Instant::now(), Err(&e));
                status(&e)
            })?;
        let IpcMessage(dataset_schema) = SchemaAsIpc::new(&schema, &IpcWriteOptions::default())
            .try_into()
            .map_err(|e: arrow::error::ArrowError| Status::internal(e.to_string()))?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: self
                .callers
                .sign("prepared", &scope, &query.query)
                .into_bytes()
                .into(),
            dataset_schema,
            parameter_schema: Default::default(),
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        // Nothing is held: the handle carries the statement.
        Ok(())
    }

    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        if request.get_ref().r#type == "CloseSession" {
            // Sessions hold nothing here: closing one always succeeds.
            let body = CloseSessionResult { status: 1 }.encode_to_vec();
            let result = arrow_flight::Result { body: body.into() };
            return Ok(Response::new(Box::pin(futures::stream::iter([Ok(result)]))));
        }
        Err(Status::unimplemented(format!(
            "action {:?} is not supported: nines is read-only",
            request.get_ref().r#type
        )))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.scope(&request)?;
        let schema = query.clone().into_builder(&SQL_INFO).schema();
        Self::metadata_info(&schema, query, request.into_inner())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.scope(&request)?;
        let builder = query.into_builder(&SQL_INFO);
        let schema = builder.schema();
        let batch = builder
            .build()
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(flight_stream(schema, vec![batch])))
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.scope(&request)?;
        let schema = query.into_builder().schema();
        Self::metadata_info(&schema, query, request.into_inner())
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.scope(&request)?;
        let mut builder = query.into_builder();
        builder.append(CATALOG);
        let schema = builder.schema();
        let batch = builder
            .build()
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(flight_stream(schema, vec![batch])))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.scope(&request)?;
        let schema = query.clone().into_builder().schema();
        Self::metadata_info(&schema, query, request.into_inner())
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.scope(&request)?;
        let mut builder = query.into_builder();
        builder.append(CATALOG, SCHEMA);
        let schema = builder.schema();
        let batch = builder
            .build()
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(flight_stream(schema, vec![batch])))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.scope(&request)?;
        let schema = query.clone().into_builder().schema();
        Self::metadata_info(&schema, query, request.into_inner())
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let scope = self.scope(&request)?;
        let ctx = self
            .runner
            .engine()
            .session(&scope, self.runner.limits().max_memory_bytes)
            .map_err(|e| status(&e))?;
        let mut builder = query.into_builder();
        for name in self.runner.engine().table_names() {
            let provider = ctx
                .table_provider(name)
                .await
                .map_err(|e| Status::internal(e.to_string()))?;
            let schema = crate::run::wire_schema(&provider.schema());
            builder
                .append(CATALOG, SCHEMA, name, TABLE_TYPE, &schema)
                .map_err(|e| Status::internal(e.to_string()))?;
        }
        let schema = builder.schema();
        let batch = builder
            .build()
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(flight_stream(schema, vec![batch])))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.scope(&request)?;
        Self::metadata_info(&table_types_schema(), query, request.into_inner())
    }

    async fn do_get_table_types(
        &self,
        _query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.scope(&request)?;
        let schema = Arc::new(table_types_schema());
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(arrow::array::StringArray::from(vec![TABLE_TYPE]))],
        )
        .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(flight_stream(schema, vec![batch])))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

/// The schema of `GetTableTypes` (Flight SQL: one non-null `table_type` string).
fn table_types_schema() -> Schema {
    Schema::new(vec![Field::new("table_type", DataType::Utf8, false)])
}
