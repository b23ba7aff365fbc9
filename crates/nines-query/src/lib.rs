//! SQL over the nines tables: a DataFusion session over the Delta tables, SQL functions that
//! merge latency sketches so percentiles re-aggregate correctly across any grouping, and the
//! doors callers come through (`run`: read-only, tenant-scoped, limited; `flight`: Flight
//! SQL; `http`: `POST /v1/sql`).
//!
//! Read-only: this crate never writes a table file.

pub mod auth;
pub mod config;
pub mod dora_source;
mod error;
pub mod flight;
pub mod format;
pub mod http;
pub mod metrics;
mod proven;
pub mod release_source;
pub mod run;
pub mod session;
pub mod sketch_udaf;
pub mod slo_source;

pub use config::{Limits, QueryConfig};
pub use error::{Error, Result};
pub use format::OutputFormat;
pub use run::{Answer, Runner};
pub use session::{QueryEngine, Scope};

/// A SQL string literal of `s` (single quotes doubled).
pub fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Serves Flight SQL (gRPC) and `POST /v1/sql` (HTTP/1.1) on `listener` until `stop`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    runner: Runner,
    callers: auth::Callers,
    stop: impl std::future::Future<Output = ()>,
) -> std::result::Result<(), tonic::transport::Error> {
    let callers = std::sync::Arc::new(callers);
    let flight = arrow_flight::flight_service_server::FlightServiceServer::new(
        flight::FlightSql::new(runner.clone(), callers.clone()),
    );
    let routes = tonic::service::Routes::from(http::router(runner, callers)).add_service(flight);
    let incoming = futures::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| {
            let _ = stream.set_nodelay(true);
            stream
        });
        Some((accepted, listener))
    });
    tonic::transport::Server::builder()
        .accept_http1(true)
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, stop)
        .await
}
