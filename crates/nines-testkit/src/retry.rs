//! The one retrying native client: what the delivery contract (docs/delivery.md, clause 7)
//! asks of a service that pushes. An answer that may hide a stored push (the broker was
//! down, ingest was overloaded, the call timed out or the connection broke) is retried with
//! the very same push, so its `batch_id` and content fingerprint make the retry count once;
//! any other refusal is final and is returned at once. `nines gen`, the sender of the fault
//! tests and `nines bench`, and the end-to-end tests' `push_ok` all push through here.

use std::future::Future;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes};
use nines_proto::v1::ingest_service_client::IngestServiceClient;
use nines_proto::v1::{PushRequest, PushResponse};
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::MetadataMap;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// The native API's push method.
pub const PUSH_PATH: &str = "/nines.v1.IngestService/Push";

/// How long and how often to retry.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// No new attempt starts after this long since the first.
    pub give_up_after: Duration,
    /// The wait after the first failure; it doubles after each, up to `max_backoff`.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// One attempt that takes longer than this counts as a timed-out attempt.
    pub attempt_timeout: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            give_up_after: Duration::from_secs(120),
            first_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
            attempt_timeout: Duration::from_secs(30),
        }
    }
}

/// Whether an answer leaves the push's fate open, so the same push must be sent again. The
/// codes of the delivery contract (UNAVAILABLE, RESOURCE_EXHAUSTED), a timeout or
/// cancellation, and a connection that broke mid-call (tonic reports a reset stream as
/// UNKNOWN or as INTERNAL "h2 protocol error").
pub fn is_retryable(status: &Status) -> bool {
    match status.code() {
        Code::Unavailable
        | Code::ResourceExhausted
        | Code::DeadlineExceeded
        | Code::Cancelled
        | Code::Unknown => true,
        Code::Internal => status.message().starts_with("h2 protocol error"),
        _ => false,
    }
}

/// Every attempt of one push.
#[derive(Debug)]
pub struct Attempts {
    /// The acknowledgement, or the final refusal (a non-retryable status, or the last
    /// retryable one when `give_up_after` passed; DEADLINE_EXCEEDED if the last attempt
    /// timed out).
    pub answer: Result<PushResponse, Status>,
    /// Attempts made, the successful one included.
    pub attempts: u32,
    /// Each failed attempt: what it got (the status code, `h2 protocol error` or `timeout`)
    /// and how long it took.
    pub errors: Vec<(String, Duration)>,
    /// From the first attempt to the acknowledgement.
    pub elapsed: Duration,
}

/// Pushes `push` (with `metadata`, e.g. the API key) until it is acknowledged, refused for
/// good, or `policy.give_up_after` passes.
pub async fn push(
    client: &mut IngestServiceClient<Channel>,
    push: &PushRequest,
    metadata: &MetadataMap,
    policy: Retry,
) -> Attempts {
    settle(policy, || {
        let mut client = client.clone();
        let mut request = tonic::Request::new(push.clone());
        *request.metadata_mut() = metadata.clone();
        async move { client.push(request).await.map(tonic::Response::into_inner) }
    })
    .await
}

/// [`push`] for a push already encoded (`body`, the bytes of a `PushRequest`): every attempt
/// sends these very bytes, and nothing is cloned or encoded again on the way. The load
/// sender uses it, so that what `nines bench` measures is ingest's work, not its client's.
pub async fn push_encoded(
    channel: &Channel,
    body: &Bytes,
    metadata: &MetadataMap,
    policy: Retry,
) -> Attempts {
    let grpc = tonic::client::Grpc::new(channel.clone());
    settle(policy, || {
        let mut grpc = grpc.clone();
        let mut request = tonic::Request::new(body.clone());
        *request.metadata_mut() = metadata.clone();
        async move {
            // As tonic's generated clients do.
            grpc.ready()
                .await
                .map_err(|e| Status::unknown(format!("Service was not ready: {e}")))?;
            let answer = grpc
                .unary(request, PathAndQuery::from_static(PUSH_PATH), RawCodec)
                .await?;
            PushResponse::decode(answer.into_inner())
                .map_err(|e| Status::internal(format!("an undecodable PushResponse: {e}")))
        }
    })
    .await
}

/// Makes attempts until one settles the push's fate (see [`push`]).
async fn settle<F, A>(policy: Retry, mut attempt: A) -> Attempts
where
    A: FnMut() -> F,
    F: Future<Output = Result<PushResponse, Status>>,
{
    let first = Instant::now();
    let mut backoff = policy.first_backoff;
    let mut out = Attempts {
        answer: Err(Status::deadline_exceeded("no attempt was made")),
        attempts: 0,
        errors: Vec::new(),
        elapsed: Duration::ZERO,
    };
    loop {
        out.attempts += 1;
        let started = Instant::now();
        let status = match tokio::time::timeout(policy.attempt_timeout, attempt()).await {
            Ok(Ok(answer)) => {
                out.answer = Ok(answer);
                break;
            }
            Ok(Err(status)) if !is_retryable(&status) => {
                out.answer = Err(status);
                break;
            }
            Ok(Err(status)) => {
                let what = if status.code() == Code::Internal {
                    "h2 protocol error".to_owned()
                } else {
                    format!("{:?}", status.code())
                };
                out.errors.push((what, started.elapsed()));
                status
            }
            Err(_) => {
                out.errors.push(("timeout".to_owned(), started.elapsed()));
                Status::deadline_exceeded(format!("no answer within {:?}", policy.attempt_timeout))
            }
        };
        out.answer = Err(status);
        if first.elapsed() + backoff >= policy.give_up_after {
            break;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(policy.max_backoff);
    }
    out.elapsed = first.elapsed();
    out
}

/// A gRPC codec that sends a message's bytes as they are and returns the answer's
/// undecoded: for pushes encoded ahead of time, and for tests that send malformed input.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_answers_that_leave_the_push_open_are_retried() {
        for code in [
            Code::Unavailable,
            Code::ResourceExhausted,
            Code::DeadlineExceeded,
            Code::Cancelled,
            Code::Unknown,
        ] {
            assert!(is_retryable(&Status::new(code, "x")), "{code:?}");
        }
        for code in [
            Code::InvalidArgument,
            Code::Unauthenticated,
            Code::PermissionDenied,
            Code::Unimplemented,
            Code::FailedPrecondition,
        ] {
            assert!(!is_retryable(&Status::new(code, "x")), "{code:?}");
        }
        assert!(is_retryable(&Status::internal(
            "h2 protocol error: stream reset"
        )));
        assert!(!is_retryable(&Status::internal(
            "broker refused the record; see ingest logs"
        )));
    }
}
