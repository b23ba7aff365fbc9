//! The acknowledged producer: a send resolves only when the broker has the record
//! (`acks=all`), or fails with a classified, retryable-or-not error. A record librdkafka
//! retried may be in the topic twice; the aggregator removes such copies by the record's
//! idempotency key (see `BusConfig::idempotent_producer`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ::metrics::gauge;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, ClientContext};

use crate::metrics;
use crate::{BusConfig, Error, Result};

/// Where an acknowledged record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub partition: i32,
    pub offset: i64,
}

/// While librdkafka reports every broker down, sends fail at once instead of queueing until
/// `message.timeout.ms`: clients hear UNAVAILABLE promptly and nothing piles up in memory.
/// One probe send per interval still goes through; its acknowledgement closes the breaker.
const PROBE_INTERVAL_MS: u64 = 1000;

/// Broker reachability as librdkafka reports it (milliseconds since the epoch; 0 = up).
#[derive(Default)]
struct Breaker {
    down_since_ms: AtomicU64,
    last_probe_ms: AtomicU64,
}

impl Breaker {
    /// `Some(ms down)` when this send should fail fast; otherwise it may go (maybe as probe).
    fn refuse(&self) -> Option<u64> {
        self.refuse_with(now_ms)
    }

    /// [`Breaker::refuse`] with the clock as an argument (read only while open; tests pass
    /// their own).
    fn refuse_with(&self, clock_ms: impl FnOnce() -> u64) -> Option<u64> {
        let down = self.down_since_ms.load(Ordering::Acquire);
        if down == 0 {
            return None;
        }
        let now = clock_ms();
        let last = self.last_probe_ms.load(Ordering::Acquire);
        if now.saturating_sub(last) >= PROBE_INTERVAL_MS
            && self
                .last_probe_ms
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            return None;
        }
        Some(now.saturating_sub(down))
    }

    fn up(&self) {
        self.down_since_ms.store(0, Ordering::Release);
    }

    /// Every broker is down as of `at_ms`; an outage already open keeps its start.
    fn down(&self, at_ms: u64) {
        let _ = self
            .down_since_ms
            .compare_exchange(0, at_ms, Ordering::AcqRel, Ordering::Acquire);
    }
}

struct BreakerContext(Arc<Breaker>);

impl ClientContext for BreakerContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.0.down(now_ms());
        }
        tracing::warn!(%error, reason, "kafka producer error");
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_millis() as u64)
}

/// A Kafka producer configured for the delivery contract. Cheap to clone.
#[derive(Clone)]
pub struct AckProducer {
    inner: FutureProducer<BreakerContext>,
    breaker: Arc<Breaker>,
}

impl std::fmt::Debug for AckProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AckProducer").finish_non_exhaustive()
    }
}

impl AckProducer {
    /// Builds the producer. librdkafka connects lazily, so this succeeds without a broker.
    pub fn new(cfg: &BusConfig, brokers: &str) -> Result<Self> {
        let breaker = Arc::new(Breaker::default());
        let inner: FutureProducer<BreakerContext> = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", cfg.idempotent_producer.to_string())
            .set("acks", "all")
            .set("compression.type", cfg.compression_type())
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
            .create_with_context(BreakerContext(breaker.clone()))
            .map_err(Error::from_kafka)?;
        Ok(Self { inner, breaker })
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
        if let Some(down_ms) = self.breaker.refuse() {
            metrics::send_refused();
            return Err(Error::Unavailable(format!(
                "every broker has been unreachable for {:.1}s",
                down_ms as f64 / 1000.0
            )));
        }
        let record = FutureRecord::to(topic).key(key).payload(payload).headers(h);
        let started = Instant::now();
        let _in_flight = InFlight::enter();
        let result = self
            .inner
            .send(record, Timeout::After(Duration::ZERO))
            .await;
        metrics::produced(result.is_ok(), started.elapsed().as_secs_f64());
        match result {
            Ok(d) => {
                self.breaker.up();
                Ok(Delivered {
                    partition: d.partition,
                    offset: d.offset,
                })
            }
            Err((e, _)) => Err(Error::from_kafka(e)),
        }
    }

    /// Waits up to `timeout` for every queued record to be acknowledged (shutdown).
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        self.inner.flush(timeout).map_err(Error::from_kafka)
    }
}

/// Counts a record in `nines_bus_records_in_flight` until it is acknowledged, fails, or its
/// waiter gives up (a push that timed out drops the future).
struct InFlight;

impl InFlight {
    fn enter() -> Self {
        gauge!(metrics::RECORDS_IN_FLIGHT).increment(1.0);
        Self
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        gauge!(metrics::RECORDS_IN_FLIGHT).decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An instant while brokers are down, in milliseconds since the epoch.
    const T: u64 = 1_762_776_000_000;

    fn no_clock() -> u64 {
        panic!("a closed breaker reads no clock")
    }

    // Closed (no outage reported): every send goes, and the hot path reads no clock.
    #[test]
    fn a_closed_breaker_lets_every_send_through() {
        let b = Breaker::default();
        for _ in 0..3 {
            assert_eq!(b.refuse_with(no_clock), None);
        }
    }

    // Open: the first send after the outage starts is the probe (no probe yet); every other
    // send fails at once, saying how long brokers have been down.
    #[test]
    fn an_open_breaker_fails_sends_at_once_but_the_first_probe() {
        let b = Breaker::default();
        b.down(T);
        assert_eq!(b.refuse_with(|| T), None, "the probe goes");
        assert_eq!(b.refuse_with(|| T), Some(0));
        assert_eq!(b.refuse_with(|| T + 400), Some(400));
        assert_eq!(b.refuse_with(|| T + 999), Some(999));
    }

    // One probe per interval (1 s), counted from the last probe; down time keeps counting
    // from the outage's start, which a second report does not move.
    #[test]
    fn one_probe_goes_per_interval() {
        let b = Breaker::default();
        b.down(T);
        assert_eq!(b.refuse_with(|| T + 100), None, "probe at +100");
        b.down(T + 500);
        assert_eq!(b.refuse_with(|| T + 1_099), Some(1_099));
        assert_eq!(b.refuse_with(|| T + 1_100), None, "probe at +1,100");
        assert_eq!(b.refuse_with(|| T + 1_100), Some(1_100));
        assert_eq!(b.refuse_with(|| T + 2_099), Some(2_099));
        // No send for a while: the next one is a probe, and the interval starts again there.
        assert_eq!(b.refuse_with(|| T + 5_000), None, "probe at +5,000");
        assert_eq!(b.refuse_with(|| T + 5_999), Some(5_999));
        assert_eq!(b.refuse_with(|| T + 6_000), None, "probe at +6,000");
    }

    // An acknowledgement (the probe's) closes it: every send goes again, reading no clock.
    #[test]
    fn an_acknowledgement_closes_it() {
        let b = Breaker::default();
        b.down(T);
        assert_eq!(b.refuse_with(|| T), None, "the probe goes");
        assert_eq!(b.refuse_with(|| T + 10), Some(10));
        b.up();
        for _ in 0..3 {
            assert_eq!(b.refuse_with(no_clock), None);
        }
    }

    // A new outage right after a probe closed the last one still waits out the interval from
    // that probe: probes stay one per interval across flapping.
    #[test]
    fn a_new_outage_keeps_the_probe_interval() {
        let b = Breaker::default();
        b.down(T);
        assert_eq!(b.refuse_with(|| T), None, "probe at T");
        b.up();
        b.down(T + 200);
        assert_eq!(b.refuse_with(|| T + 300), Some(100));
        assert_eq!(b.refuse_with(|| T + 1_000), None, "probe at T + 1,000");
    }

    // librdkafka's error callback opens it on "all brokers down", and on nothing else.
    #[test]
    fn only_all_brokers_down_opens_it() {
        let b = Arc::new(Breaker::default());
        let context = BreakerContext(b.clone());
        for code in [
            RDKafkaErrorCode::BrokerTransportFailure,
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::QueueFull,
        ] {
            context.error(KafkaError::Global(code), "test");
            assert_eq!(b.refuse_with(no_clock), None, "{code:?} leaves it closed");
        }
        context.error(KafkaError::Global(RDKafkaErrorCode::AllBrokersDown), "test");
        // Opened at the wall clock's instant: read it back instead of guessing it.
        let down = b.down_since_ms.load(Ordering::Acquire);
        assert_ne!(down, 0, "open");
        assert_eq!(b.refuse_with(|| down), None, "the probe goes");
        assert_eq!(b.refuse_with(|| down + 10), Some(10));
    }
}
