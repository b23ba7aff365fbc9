//! The one retrying native client: what the delivery contract (docs/delivery.md, clause 7)
//! asks of a service that pushes. An answer that may hide a stored push (the broker was
//! down, ingest was overloaded, the call timed out or the connection broke) is retried with
//! the very same push, so its `batch_id` and content fingerprint make the retry count once;
//! any other refusal is final and is returned at once. `nines gen`, the sender of the fault
//! tests and `nines bench`, and the end-to-end tests' `push_ok` all push through here.

use std::time::{Duration, Instant};

use nines_proto::v1::ingest_service_client::IngestServiceClient;
use nines_proto::v1::{PushRequest, PushResponse};
use tonic::metadata::MetadataMap;
use tonic::transport::Channel;
use tonic::{Code, Status};

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
        let attempt = Instant::now();
        let mut request = tonic::Request::new(push.clone());
        *request.metadata_mut() = metadata.clone();
        let status = match tokio::time::timeout(policy.attempt_timeout, client.push(request)).await
        {
            Ok(Ok(answer)) => {
                out.answer = Ok(answer.into_inner());
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
                out.errors.push((what, attempt.elapsed()));
                status
            }
            Err(_) => {
                out.errors.push(("timeout".to_owned(), attempt.elapsed()));
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
