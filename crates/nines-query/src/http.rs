//! `POST /v1/sql` on the query server's port: `{"sql": "...", "format":
//! "json|jsonl|csv|arrow"}` runs through [`Runner`] like every door; an error is JSON
//! `{"error": {"code": "...", "message": "..."}}` with a stable `code` ([`Error::code`]).

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;

use crate::Error;
use crate::auth::Callers;
use crate::format::OutputFormat;
use crate::run::{Runner, account};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Ask {
    sql: String,
    #[serde(default)]
    format: Option<String>,
}

/// The HTTP status of a query error.
fn http_status(e: &Error) -> StatusCode {
    match e {
        Error::Sql(_) | Error::Execution(_) => StatusCode::BAD_REQUEST,
        Error::ReadOnly(_) => StatusCode::FORBIDDEN,
        Error::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
        Error::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
        Error::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        Error::Memory { .. } | Error::TooManyRows(_) | Error::TooManyBytes(_) => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        Error::Table(..) | Error::Format(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn error(status: StatusCode, code: &str, message: impl std::fmt::Display) -> Response {
    let body = serde_json::json!({"error": {"code": code, "message": message.to_string()}});
    (status, axum::Json(body)).into_response()
}

fn query_error(e: &Error) -> Response {
    error(http_status(e), e.code(), e)
}

/// A request that is not a question at all (its body or format), counted like a refusal.
fn bad_request(message: String) -> Response {
    crate::metrics::refused("http", crate::metrics::BAD_REQUEST);
    crate::metrics::counted("http", "refused");
    error(StatusCode::BAD_REQUEST, "bad_request", message)
}

#[derive(Clone)]
struct Served {
    runner: Runner,
    callers: Arc<Callers>,
}

async fn sql(State(s): State<Served>, headers: HeaderMap, body: Bytes) -> Response {
    let scope = match s.callers.scope(&headers) {
        Ok(scope) => scope,
        Err(e) => {
            account("http", Instant::now(), Err(&e));
            return query_error(&e);
        }
    };
    let ask: Ask = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => {
            return bad_request(format!(
                "the body must be {{\"sql\": \"...\", \"format\": \"json\"}}: {e}"
            ));
        }
    };
    let name = ask.format.as_deref().unwrap_or("json");
    let Some(format) = OutputFormat::parse(name).filter(|f| *f != OutputFormat::Table) else {
        return bad_request(format!(
            "format: {name:?} is none of json, jsonl, csv, arrow"
        ));
    };
    // One statement per request, refused before anything runs.
    if let Ok(statements) = crate::run::read_only_statements(&ask.sql)
        && statements.len() > 1
    {
        let e = Error::Sql(format!(
            "{} statements: send one at a time",
            statements.len()
        ));
        account("http", Instant::now(), Err(&e));
        return query_error(&e);
    }
    let answer = match s.runner.run("http", &scope, &ask.sql).await {
        Ok(mut a) if a.len() == 1 => a.remove(0),
        Ok(_) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "no single answer",
            );
        }
        Err(e) => return query_error(&e),
    };
    let mut out = Vec::new();
    if let Err(e) = crate::format::write(answer.schema, &answer.batches, format, &mut out) {
        return query_error(&e);
    }
    ([(header::CONTENT_TYPE, format.content_type())], out).into_response()
}

/// The `POST /v1/sql` route.
pub fn router(runner: Runner, callers: Arc<Callers>) -> Router {
    Router::new()
        .route("/v1/sql", post(sql))
        .with_state(Served { runner, callers })
}
