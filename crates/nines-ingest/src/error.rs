use tonic::{Code, Status};

use crate::metrics::RejectReason;

/// Why a push was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller sent something invalid; `field` says where (e.g. `requests[3].operation`).
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    /// A single event is larger than a Kafka record may be.
    #[error(transparent)]
    TooLarge(#[from] nines_record::TooLarge),
    /// Kafka trouble; retryable or not as the bus says.
    #[cfg(feature = "server")]
    #[error(transparent)]
    Bus(#[from] nines_bus::Error),
    /// No API key, or one nines does not know.
    #[error("{0}")]
    Unauthenticated(String),
    /// The broker did not answer within the delivery timeout.
    #[error("broker did not acknowledge within {0:?}")]
    Timeout(std::time::Duration),
    /// The body is not protobuf (found by the wire scan, before decoding).
    #[error(transparent)]
    Wire(#[from] crate::wire::WireError),
    /// The body is not one acceptable gRPC message: too large, or compressed badly.
    #[cfg(feature = "server")]
    #[error(transparent)]
    Frame(#[from] crate::frame::FrameError),
    /// More events on the wire than one request may carry.
    #[error(
        "{field}: {count} {what} in one request, more than the limit of {limit} \
         (ingest.max_events_per_request)"
    )]
    TooManyEvents {
        field: &'static str,
        what: &'static str,
        count: usize,
        limit: usize,
    },
    /// The body would decode into more memory than one request may take.
    #[error(
        "request would take about {bytes} bytes once decoded, more than the limit of {limit} \
         (ingest.max_decoded_bytes): send fewer events, attributes or values per request"
    )]
    DecodedTooLarge { bytes: usize, limit: usize },
    /// The call did not finish within `ingest.request_timeout` (waiting for a slot included).
    #[error(
        "the request took longer than ingest.request_timeout ({0:?}); its outcome is unknown: \
         retry with the same batch_id"
    )]
    RequestTimeout(std::time::Duration),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Refuses a request of `count` items (`what`: events, spans, log records) in `field`
    /// when they are more than `limit`.
    pub(crate) fn check_count(
        field: &'static str,
        what: &str,
        count: usize,
        limit: usize,
    ) -> std::result::Result<(), Self> {
        if count > limit {
            return Err(Error::invalid(
                field,
                format!("{count} {what} in one request, more than the limit of {limit}"),
            ));
        }
        Ok(())
    }

    /// The field path and the reason of a refusal, for a door that names fields its own way
    /// (OTLP names attributes and log records). Errors about the whole request have the
    /// empty path.
    pub fn field_and_reason(&self) -> (&str, std::borrow::Cow<'_, str>) {
        match self {
            Error::Invalid { field, reason } => (field, reason.as_str().into()),
            Error::TooLarge(t) => (&t.field, t.reason().into()),
            other => ("", other.to_string().into()),
        }
    }

    /// Why this refuses a push, for `nines_ingest_pushes_rejected_total`.
    pub fn reject_reason(&self) -> RejectReason {
        match self {
            Error::Invalid { .. } => RejectReason::Invalid,
            Error::Unauthenticated(_) => RejectReason::Unauthenticated,
            Error::TooLarge(_) => RejectReason::TooLarge,
            #[cfg(feature = "server")]
            Error::Bus(nines_bus::Error::QueueFull(_)) => RejectReason::QueueFull,
            #[cfg(feature = "server")]
            Error::Bus(e) if e.is_retryable() => RejectReason::BrokerUnavailable,
            #[cfg(feature = "server")]
            Error::Bus(_) => RejectReason::BrokerRejected,
            Error::Timeout(_) => RejectReason::BrokerTimeout,
            Error::Wire(_) => RejectReason::Undecodable,
            #[cfg(feature = "server")]
            Error::Frame(
                crate::frame::FrameError::TooLarge { .. }
                | crate::frame::FrameError::InflatesTooLarge { .. },
            ) => RejectReason::RequestTooLarge,
            #[cfg(feature = "server")]
            Error::Frame(_) => RejectReason::Undecodable,
            Error::TooManyEvents { .. } => RejectReason::TooManyEvents,
            Error::DecodedTooLarge { .. } => RejectReason::DecodedTooLarge,
            Error::RequestTimeout(_) => RejectReason::RequestTimeout,
        }
    }
}

/// The one place internal errors become gRPC statuses.
impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match &e {
            Error::Invalid { .. }
            | Error::TooLarge(_)
            | Error::Wire(_)
            | Error::TooManyEvents { .. }
            | Error::DecodedTooLarge { .. } => Status::new(Code::InvalidArgument, e.to_string()),
            // The client went away mid-body: nothing was refused.
            #[cfg(feature = "server")]
            Error::Frame(crate::frame::FrameError::Body(_)) => {
                Status::new(Code::Cancelled, e.to_string())
            }
            // As gRPC says for a compression the server does not take (the door adds
            // `grpc-accept-encoding`).
            #[cfg(feature = "server")]
            Error::Frame(crate::frame::FrameError::Encoding(_)) => {
                Status::new(Code::Unimplemented, e.to_string())
            }
            // Not retryable, whatever the reason: the same body would be refused again.
            #[cfg(feature = "server")]
            Error::Frame(_) => Status::new(Code::InvalidArgument, e.to_string()),
            Error::RequestTimeout(_) => Status::new(Code::Unavailable, e.to_string()),
            Error::Unauthenticated(_) => Status::new(Code::Unauthenticated, e.to_string()),
            #[cfg(feature = "server")]
            Error::Bus(nines_bus::Error::QueueFull(_)) => Status::new(
                Code::ResourceExhausted,
                format!("ingest is overloaded, retry with backoff: {e}"),
            ),
            #[cfg(feature = "server")]
            Error::Bus(b) if b.is_retryable() => Status::new(
                Code::Unavailable,
                format!("broker unavailable, retry with the same batch_id: {e}"),
            ),
            Error::Timeout(_) => Status::new(
                Code::Unavailable,
                format!("retry with the same batch_id: {e}"),
            ),
            #[cfg(feature = "server")]
            Error::Bus(_) => {
                tracing::error!(error = %e, "broker refused a record");
                Status::new(Code::Internal, "broker refused the record; see ingest logs")
            }
        }
    }
}
