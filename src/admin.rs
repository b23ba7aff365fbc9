//! The admin HTTP server of every role: `/metrics` (Prometheus text), `/healthz`, `/readyz`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;
use tracing::info;

/// Bucket bounds (seconds) of every `*_seconds` histogram: 1 ms to 30 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Set once the role is ready to serve.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ready(Arc<AtomicBool>);

impl Ready {
    pub(crate) fn set(&self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Installs the Prometheus recorder and serves the admin endpoints until `shutdown`.
pub(crate) async fn serve(
    listen: &str,
    ready: Ready,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // Latencies as real histograms (aggregatable across processes), not summaries.
    let handle: PrometheusHandle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
        .context("histogram buckets")?
        .install_recorder()
        .context("installing the metrics recorder")?;
    // process_resident_memory_bytes, process_cpu_seconds_total, … of this process, refreshed
    // on every scrape.
    let process = metrics_process::Collector::default();
    process.describe();
    if listen.is_empty() {
        return Ok(());
    }
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                process.collect();
                std::future::ready(handle.render())
            }),
        )
        .route("/healthz", get(|| std::future::ready("ok")))
        .route(
            "/readyz",
            get(move || {
                let ok = ready.0.load(Ordering::Acquire);
                std::future::ready(if ok {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "starting")
                })
            }),
        );
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding admin listener {listen}"))?;
    info!(%listen, "admin server up");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
    });
    Ok(())
}
