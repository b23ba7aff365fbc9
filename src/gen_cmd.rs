//! `nines gen`: realistic traffic over the native API, with an exact account of what was sent.

use std::time::{Duration, Instant};

use nines_model::clock::now_ns;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use nines_proto::v1::ingest_service_client::IngestServiceClient;
use nines_testkit::retry::{self, Retry};
use nines_testkit::{Generator, Ledger, WorkloadSpec};

#[derive(Debug, clap::Args)]
pub(crate) struct GenArgs {
    /// Ingest endpoint.
    #[arg(long, default_value = "http://127.0.0.1:4317")]
    endpoint: String,
    /// Events per second (all services together).
    #[arg(long, default_value_t = 5_000)]
    rate: u64,
    /// How long to send, e.g. `10s`, `2m`.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Events per push.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    #[arg(long, default_value_t = 3)]
    services: usize,
    #[arg(long, default_value_t = 4)]
    operations: usize,
    /// Fraction of requests that fail (5xx).
    #[arg(long, default_value_t = 0.02)]
    error_ratio: f64,
    /// Median latency in milliseconds (log-normal).
    #[arg(long, default_value_t = 40.0)]
    latency_ms: f64,
    #[arg(long, default_value = "production")]
    environment: String,
    /// Random seed (same seed, same traffic).
    #[arg(long, default_value_t = 9)]
    seed: u64,
    /// API key to send as `authorization: Bearer <key>` (when ingest has `ingest.api_keys`).
    #[arg(long, env = "NINES_API_KEY")]
    api_key: Option<String>,
}

pub(crate) async fn run(args: GenArgs) -> anyhow::Result<()> {
    let mut client = IngestServiceClient::connect(args.endpoint.clone())
        .await
        .with_context(|| format!("connecting to {}", args.endpoint))?;
    let mut metadata = tonic::metadata::MetadataMap::new();
    if let Some(k) = args.api_key.as_deref() {
        let value = format!("Bearer {k}")
            .parse()
            .context("--api-key: not a valid header value")?;
        metadata.insert("authorization", value);
    }
    let mut generator = Generator::new(WorkloadSpec {
        environment: args.environment.clone(),
        services: args.services.max(1),
        operations_per_service: args.operations.max(1),
        error_ratio: args.error_ratio,
        latency_median_ms: args.latency_ms,
        seed: args.seed,
        ..WorkloadSpec::default()
    });
    let total = (args.rate as f64 * args.duration.as_secs_f64()) as u64;
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} events {per_sec} eta {eta}")
            .expect("valid template"),
    );
    let mut ledger = Ledger::default();
    let (mut sent, mut retries, mut service) = (0_u64, 0_u64, 0_usize);
    let start = Instant::now();
    while sent < total {
        let n = args.batch.min((total - sent) as usize);
        let push = generator.push(service % args.services.max(1), n, now_ns());
        service += 1;
        // Retry retryable answers with the same batch (same batch_id).
        let tried = retry::push(&mut client, &push, &metadata, Retry::default()).await;
        retries += u64::from(tried.attempts.saturating_sub(1));
        if let Err(s) = tried.answer {
            anyhow::bail!("push refused: {:?}: {}", s.code(), s.message());
        }
        ledger.record(&push);
        sent += n as u64;
        bar.set_position(sent);
        // Pace to the requested rate.
        let due = Duration::from_secs_f64(sent as f64 / args.rate.max(1) as f64);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }
    bar.finish_and_clear();
    println!(
        "sent {} events in {:.1}s ({} retries)",
        ledger.events(),
        start.elapsed().as_secs_f64(),
        retries
    );
    println!(
        "{:<12} {:>10} {:>8} {:>14} {:>12} {:>12}",
        "service", "events", "errors", "client_errors", "p50_ms", "p99_ms"
    );
    for (name, t) in &ledger.services {
        let ms = |q| {
            ledger
                .exact_quantile(name, q)
                .map_or(0.0, |v| v as f64 / 1e6)
        };
        println!(
            "{:<12} {:>10} {:>8} {:>14} {:>12.3} {:>12.3}",
            name,
            t.events,
            t.errors,
            t.client_errors,
            ms(0.5),
            ms(0.99)
        );
    }
    Ok(())
}
