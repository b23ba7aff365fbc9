//! Rewrites the statuses tonic produces before our codec runs, so a sender's mistake is never
//! INTERNAL: a gzip stream tonic cannot decompress becomes INVALID_ARGUMENT, and a request
//! over `ingest.max_request_bytes` becomes INVALID_ARGUMENT naming the limit (not a
//! retryable code: the same request would fail again). Both are counted in
//! `nines_ingest_pushes_rejected_total`. (Undecodable protobuf never reaches here: the doors'
//! codec maps prost's error itself, see `door.rs`.) Tonic gives these two only as message
//! text; `tests/corpus.rs` fails if a tonic upgrade changes it.

use std::task::{Context, Poll};

use futures::FutureExt;
use futures::future::Map;
use tonic::codegen::http;
use tonic::{Code, Status};

use crate::metrics::{RejectReason, push_rejected};

/// Wraps the gRPC router (see [`DecodeErrors::layer`]).
#[derive(Debug, Clone)]
pub struct DecodeErrors<S> {
    inner: S,
}

impl<S> DecodeErrors<S> {
    /// A `tower` layer for `tonic::transport::Server::builder().layer(..)`.
    pub fn layer() -> tower::layer::LayerFn<fn(S) -> DecodeErrors<S>> {
        tower::layer::layer_fn(|inner| DecodeErrors { inner })
    }
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for DecodeErrors<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = Map<
        S::Future,
        fn(Result<http::Response<ResBody>, S::Error>) -> Result<http::Response<ResBody>, S::Error>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        self.inner.call(req).map(|r| r.map(rewrite) as Result<_, _>)
    }
}

fn rewrite<B>(mut response: http::Response<B>) -> http::Response<B> {
    let Some(status) = Status::from_header_map(response.headers()) else {
        return response;
    };
    let (reason, message) = match status.code() {
        Code::Internal
            if status.message().contains("decompress") || status.message().contains("gzip") =>
        {
            (
                RejectReason::Undecodable,
                format!(
                    "request body could not be decompressed: {}",
                    status.message()
                ),
            )
        }
        // A gzip body that inflates past the limit: tonic says RESOURCE_EXHAUSTED, which
        // clients take as retryable and would resend forever.
        Code::ResourceExhausted if status.message().contains("size limit") => (
            RejectReason::RequestTooLarge,
            format!(
                "request too large once decompressed (ingest.max_request_bytes): {}",
                status.message()
            ),
        ),
        Code::OutOfRange if status.message().contains("message length too large") => (
            RejectReason::RequestTooLarge,
            format!(
                "request too large (ingest.max_request_bytes): {}",
                status.message()
            ),
        ),
        _ => return response,
    };
    push_rejected(reason);
    let replaced = Status::new(Code::InvalidArgument, message);
    let headers = response.headers_mut();
    headers.remove("grpc-status");
    headers.remove("grpc-message");
    headers.remove("grpc-status-details-bin");
    if replaced.add_header(headers).is_err() {
        tracing::warn!("could not rewrite a decode error status");
    }
    response
}
