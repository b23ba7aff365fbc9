use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// What went wrong talking to Kafka, classified for the caller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The local producer queue is full: back off and retry (backpressure, not a failure).
    #[error("producer queue is full ({0})")]
    QueueFull(String),
    /// The broker did not acknowledge in time or is unreachable; the records may or may not
    /// be stored, so a retry must carry the same idempotency key.
    #[error("broker did not acknowledge: {0}")]
    Unavailable(String),
    /// The broker refused the record for good (e.g. too large).
    #[error("broker rejected the record: {0}")]
    Rejected(String),
    /// Misconfiguration or a client error that retrying will not fix.
    #[error("kafka client error: {0}")]
    Client(String),
    #[cfg(feature = "embedded-broker")]
    #[error("embedded broker: {0}")]
    Broker(String),
}

impl Error {
    /// True when the same request may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::QueueFull(_) | Error::Unavailable(_))
    }

    pub(crate) fn from_kafka(e: KafkaError) -> Self {
        use RDKafkaErrorCode as C;
        match e.rdkafka_error_code() {
            Some(C::QueueFull) => Error::QueueFull(e.to_string()),
            Some(C::MessageSizeTooLarge | C::InvalidMessage | C::InvalidRecord) => {
                Error::Rejected(e.to_string())
            }
            Some(_) | None => match e {
                KafkaError::ClientCreation(_) | KafkaError::ClientConfig(..) => {
                    Error::Client(e.to_string())
                }
                _ => Error::Unavailable(e.to_string()),
            },
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
