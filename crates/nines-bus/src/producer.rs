//! The acknowledged producer: a send resolves only when the broker has the record
//! (idempotent, `acks=all`), or fails with a classified, retryable-or-not error.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;

use crate::{BusConfig, Error, Result};

/// Where an acknowledged record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub partition: i32,
    pub offset: i64,
}

/// A Kafka producer configured for the delivery contract. Cheap to clone.
#[derive(Clone)]
pub struct AckProducer {
    inner: FutureProducer,
}

impl std::fmt::Debug for AckProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AckProducer").finish_non_exhaustive()
    }
}

impl AckProducer {
    /// Builds the producer. librdkafka connects lazily, so this succeeds without a broker.
    pub fn new(cfg: &BusConfig, brokers: &str) -> Result<Self> {
        let inner: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "zstd")
            .set("linger.ms", cfg.linger.as_millis().to_string())
            .set(
                "message.max.bytes",
                (cfg.max_record_bytes + 64 * 1024).to_string(),
            )
            .set(
                "message.timeout.ms",
                cfg.delivery_timeout.as_millis().to_string(),
            )
            .set(
                "request.timeout.ms",
                cfg.delivery_timeout.as_millis().min(30_000).to_string(),
            )
            // Bounded local queue: when it is full, sends fail fast with QueueFull, which
            // ingest answers as RESOURCE_EXHAUSTED. No unbounded buffering anywhere.
            .set(
                "queue.buffering.max.kbytes",
                cfg.producer_queue_kbytes.to_string(),
            )
            .set("queue.buffering.max.messages", "100000")
            .set("allow.auto.create.topics", "false")
            .create()
            .map_err(Error::from_kafka)?;
        Ok(Self { inner })
    }

    /// Sends one record and waits for the broker's acknowledgement (bounded by the
    /// producer's `message.timeout.ms`). A full local queue fails at once.
    pub async fn send(&self, topic: &str, key: &[u8], payload: &[u8]) -> Result<Delivered> {
        self.send_with_headers(topic, key, payload, &[]).await
    }

    /// Like [`AckProducer::send`], with record headers (the dead-letter topic uses them to say
    /// why and where a record came from).
    pub async fn send_with_headers(
        &self,
        topic: &str,
        key: &[u8],
        payload: &[u8],
        headers: &[(&str, &[u8])],
    ) -> Result<Delivered> {
        let mut h = OwnedHeaders::new_with_capacity(headers.len());
        for (k, v) in headers {
            h = h.insert(Header {
                key: k,
                value: Some(*v),
            });
        }
        let record = FutureRecord::to(topic).key(key).payload(payload).headers(h);
        match self
            .inner
            .send(record, Timeout::After(Duration::ZERO))
            .await
        {
            Ok(d) => Ok(Delivered {
                partition: d.partition,
                offset: d.offset,
            }),
            Err((e, _)) => Err(Error::from_kafka(e)),
        }
    }

    /// Waits up to `timeout` for every queued record to be acknowledged (shutdown).
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        self.inner.flush(timeout).map_err(Error::from_kafka)
    }
}
