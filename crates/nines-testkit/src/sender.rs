//! A sender that keeps an exact ledger of what ingest acknowledged.
//!
//! Pushes go out with several in flight; a retryable failure is retried with the very same
//! push (same `batch_id`) until it is acknowledged, as the delivery contract asks of clients.
//! Only acknowledged pushes enter the [`Ledger`], so after any fault the tables must equal it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use nines_proto::v1::PushRequest;
use prost::Message;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tonic::metadata::MetadataMap;
use tonic::transport::{Channel, Endpoint};

use crate::retry::{self, Retry};
use crate::{Generator, Ledger};
use nines_model::clock::now_ns;

/// How much to send and how.
#[derive(Debug, Clone)]
pub struct SendPlan {
    /// Events in all.
    pub events: u64,
    /// Events per push.
    pub batch: usize,
    /// Services the pushes rotate over (each is one Kafka key).
    pub services: usize,
    /// Pushes in flight at once.
    pub concurrency: usize,
    /// Events per second, or as fast as acknowledgements allow.
    pub rate: Option<u64>,
    /// A push still unacknowledged after this long is abandoned (and reported).
    pub give_up_after: Duration,
    /// Event times spread over this much past, oldest first (zero: all "now").
    pub history: Duration,
    /// Generate (and encode) every push before the clock starts (as a baseline's records
    /// are), so the sender's own generating is not in what is timed. With a `rate`, pushes
    /// are generated as they go whatever this says (their times follow the clock). Either
    /// way a push is encoded once, and every attempt sends the same bytes.
    pub pregenerate: bool,
}

impl Default for SendPlan {
    fn default() -> Self {
        Self {
            events: 10_000,
            batch: 500,
            services: 3,
            concurrency: 4,
            rate: None,
            give_up_after: Duration::from_secs(120),
            history: Duration::ZERO,
            pregenerate: false,
        }
    }
}

/// What happened to every push.
#[derive(Debug, Default)]
pub struct SendReport {
    /// Every acknowledged push.
    pub ledger: Ledger,
    pub pushes: u64,
    /// Attempts beyond the first.
    pub retries: u64,
    /// Retryable failures seen, by gRPC code (`Unavailable`, `ResourceExhausted`, `timeout`).
    pub errors: BTreeMap<String, u64>,
    /// How long each failed attempt waited for its answer.
    pub error_waits: Vec<Duration>,
    /// Time from first attempt to acknowledgement, one per acknowledged push.
    pub ack_latencies: Vec<Duration>,
    /// Pushes never acknowledged within `give_up_after` (the contract then says nothing).
    pub abandoned: u64,
    pub elapsed: Duration,
}

impl SendReport {
    /// The q-quantile of acknowledgement latency.
    pub fn ack_latency(&self, q: f64) -> Duration {
        quantile(&self.ack_latencies, q)
    }

    /// The q-quantile of the wait for an error answer.
    pub fn error_wait(&self, q: f64) -> Duration {
        quantile(&self.error_waits, q)
    }
}

/// Live progress of a running [`send`], for tests that inject faults meanwhile.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    acked: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
}

impl Progress {
    /// Events acknowledged so far.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Acquire)
    }

    /// Whether every push has been acknowledged or abandoned.
    pub fn done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }
}

struct Outcome {
    push: PushRequest,
    acked: Option<Duration>,
    attempts: u64,
    errors: Vec<(String, Duration)>,
}

/// Sends `plan` to the native API at `endpoint` (reconnecting as needed) and reports.
pub async fn send(
    endpoint: String,
    mut generator: Generator,
    plan: SendPlan,
    progress: Progress,
) -> SendReport {
    let channel = Endpoint::from_shared(endpoint)
        .expect("valid endpoint")
        .connect_timeout(Duration::from_secs(2))
        .connect_lazy();
    let limit = Arc::new(Semaphore::new(plan.concurrency.max(1)));
    let mut tasks = JoinSet::new();
    let mut report = SendReport::default();
    // The pushes of the plan, oldest first; each is made when asked for.
    let (mut sent, mut service) = (0_u64, 0_usize);
    let (events, batch, services, history) =
        (plan.events, plan.batch, plan.services.max(1), plan.history);
    let mut next_push = move || {
        if sent >= events {
            return None;
        }
        let n = batch.min((events - sent) as usize);
        let back = history.mul_f64(1.0 - sent as f64 / events.max(1) as f64);
        let push = generator.push(service % services, n, now_ns() - back.as_nanos() as i64);
        let body = Bytes::from(push.encode_to_vec());
        service += 1;
        sent += n as u64;
        Some((push, body, sent))
    };
    let mut ready: std::collections::VecDeque<_> = if plan.pregenerate && plan.rate.is_none() {
        std::iter::from_fn(&mut next_push).collect()
    } else {
        Default::default()
    };
    let start = Instant::now();
    while let Some((push, body, sent)) = ready.pop_front().or_else(&mut next_push) {
        let permit = limit.clone().acquire_owned().await.expect("semaphore open");
        let channel = channel.clone();
        let give_up = plan.give_up_after;
        tasks.spawn(async move {
            let outcome = push_until_acked(&channel, push, body, give_up).await;
            drop(permit);
            outcome
        });
        while let Some(done) = tasks.try_join_next() {
            absorb(&mut report, done.expect("push task"), &progress);
        }
        if let Some(rate) = plan.rate {
            let due = Duration::from_secs_f64(sent as f64 / rate.max(1) as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
    }
    while let Some(done) = tasks.join_next().await {
        absorb(&mut report, done.expect("push task"), &progress);
    }
    report.elapsed = start.elapsed();
    progress.done.store(true, Ordering::Release);
    report
}

fn absorb(report: &mut SendReport, o: Outcome, progress: &Progress) {
    report.pushes += 1;
    report.retries += o.attempts.saturating_sub(1);
    for (code, waited) in o.errors {
        *report.errors.entry(code).or_default() += 1;
        report.error_waits.push(waited);
    }
    match o.acked {
        Some(latency) => {
            report.ledger.record(&o.push);
            report.ack_latencies.push(latency);
            progress
                .acked
                .fetch_add(o.push.requests.len() as u64, Ordering::AcqRel);
        }
        None => report.abandoned += 1,
    }
}

/// Retries one push (unchanged, so ingest and the aggregator can recognise it) until it is
/// acknowledged or `give_up` passes. A non-retryable answer is a bug in the test or in nines.
async fn push_until_acked(
    channel: &Channel,
    push: PushRequest,
    body: Bytes,
    give_up: Duration,
) -> Outcome {
    let policy = Retry {
        give_up_after: give_up,
        ..Retry::default()
    };
    let tried = retry::push_encoded(channel, &body, &MetadataMap::new(), policy).await;
    let acked = match tried.answer {
        Ok(_) => Some(tried.elapsed),
        Err(status) if retry::is_retryable(&status) => None,
        Err(status) => panic!(
            "push refused with {:?}: {}",
            status.code(),
            status.message()
        ),
    };
    Outcome {
        push,
        acked,
        attempts: tried.attempts as u64,
        errors: tried.errors,
    }
}

/// The q-quantile of `values` (nearest rank below).
pub fn quantile(values: &[Duration], q: f64) -> Duration {
    let mut v = values.to_vec();
    v.sort_unstable();
    v.get(((v.len().max(1) - 1) as f64 * q) as usize)
        .copied()
        .unwrap_or_default()
}
