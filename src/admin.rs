//! The admin HTTP server of every role: `/metrics` (Prometheus text), `/healthz`, `/readyz`,
//! and whatever routes the role adds (`nines up`: the release gate and verdicts).

use std::sync::{Arc, Mutex};

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

/// What `/readyz` answers: 200 only while the role is serving; 503 while it starts, while it
/// stops, and for good once one of its parts has failed (with the part and its error).
#[derive(Debug, Clone, Default)]
pub(crate) struct Ready(Arc<Mutex<State>>, Arc<Mutex<Option<String>>>);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum State {
    #[default]
    Starting,
    Ready,
    Stopping,
    Failed(String),
}

impl Ready {
    /// The role serves. Ignored once it is stopping or has failed.
    pub(crate) fn set(&self) {
        let mut state = self.lock();
        if *state == State::Starting {
            *state = State::Ready;
        }
    }

    /// A graceful stop began. Ignored once a failure is recorded.
    pub(crate) fn stopping(&self) {
        let mut state = self.lock();
        if !matches!(*state, State::Failed(_)) {
            *state = State::Stopping;
        }
    }

    /// A part of the role failed: not ready from now on, saying why. The first failure is
    /// kept (the others follow from it).
    pub(crate) fn fail(&self, reason: impl Into<String>) {
        let mut state = self.lock();
        if !matches!(*state, State::Failed(_)) {
            *state = State::Failed(reason.into());
        }
    }

    /// A condition that needs an operator while the role keeps running (a stalled
    /// partition): not ready while it lasts, saying why. `None` clears it.
    pub(crate) fn degraded(&self, reason: Option<String>) {
        *self
            .1
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = reason;
    }

    /// The status and body of `/readyz`.
    fn answer(&self) -> (StatusCode, String) {
        let degraded = self
            .1
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        match &*self.lock() {
            State::Ready => match degraded {
                Some(reason) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("degraded: {reason}"),
                ),
                None => (StatusCode::OK, "ready".into()),
            },
            State::Starting => (StatusCode::SERVICE_UNAVAILABLE, "starting".into()),
            State::Stopping => (StatusCode::SERVICE_UNAVAILABLE, "stopping".into()),
            State::Failed(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("failed: {reason}")),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a plain value: a panic elsewhere cannot leave it half-written.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Installs the Prometheus recorder and serves the admin endpoints and `extra` until
/// `shutdown`.
pub(crate) async fn serve(
    listen: &str,
    ready: Ready,
    shutdown: CancellationToken,
    extra: Router,
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
        .route("/readyz", get(move || std::future::ready(ready.answer())))
        .merge(extra);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn check(ready: &Ready, expected: (StatusCode, &str)) {
        let (code, body) = ready.answer();
        assert_eq!((code, body.as_str()), expected);
    }

    #[test]
    fn readyz_is_200_only_between_start_and_stop_or_failure() {
        let ready = Ready::default();
        check(&ready, (StatusCode::SERVICE_UNAVAILABLE, "starting"));
        ready.set();
        check(&ready, (StatusCode::OK, "ready"));
        ready.stopping();
        check(&ready, (StatusCode::SERVICE_UNAVAILABLE, "stopping"));
        ready.set();
        check(&ready, (StatusCode::SERVICE_UNAVAILABLE, "stopping"));
    }

    #[test]
    fn a_failure_sticks_and_names_the_first_cause() {
        let ready = Ready::default();
        ready.set();
        ready.fail("aggregate: writing files: disk full");
        ready.fail("ingest: stopped without being asked to");
        ready.stopping();
        ready.set();
        check(
            &ready,
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "failed: aggregate: writing files: disk full",
            ),
        );
    }
}
