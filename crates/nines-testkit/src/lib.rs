//! Test and load tooling: a seeded generator of realistic request traffic and a ledger that
//! records exactly what was generated (counts, errors, every duration), so tests and
//! `nines gen` can check the tables against numbers computed independently of the pipeline;
//! roles as OS processes ([`process`]) and a retrying sender with an exact ledger ([`sender`])
//! for the fault tests; OTLP trace exports ([`otlp`]) for the benches; a role's config file
//! ([`config`]) for tests and the bench alike.

use std::collections::BTreeMap;

pub mod config;
pub mod otlp;
pub mod process;
pub mod retry;
pub mod sender;

use nines_proto::v1::{PushRequest, RequestEvent, Resource};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal};

/// The shape of generated traffic.
#[derive(Debug, Clone)]
pub struct WorkloadSpec {
    pub tenant: String,
    pub environment: String,
    pub services: usize,
    pub operations_per_service: usize,
    /// Fraction of requests that fail (5xx, `error = true`).
    pub error_ratio: f64,
    /// Fraction of requests rejected as the caller's fault (4xx, not errors).
    pub client_error_ratio: f64,
    /// Median latency in milliseconds (log-normal distribution).
    pub latency_median_ms: f64,
    /// Spread of the log-normal latency (sigma of ln).
    pub latency_sigma: f64,
    pub seed: u64,
}

impl Default for WorkloadSpec {
    fn default() -> Self {
        Self {
            tenant: String::new(),
            environment: "production".into(),
            services: 3,
            operations_per_service: 4,
            error_ratio: 0.02,
            client_error_ratio: 0.05,
            latency_median_ms: 40.0,
            latency_sigma: 0.8,
            seed: 9,
        }
    }
}

const SERVICE_NAMES: &[&str] = &[
    "checkout", "payments", "search", "catalog", "auth", "cart", "shipping", "reviews",
];
const ROUTES: &[&str] = &[
    "GET /api/items/{id}",
    "POST /api/orders",
    "GET /api/search",
    "PUT /api/cart/{id}",
    "DELETE /api/cart/{id}",
    "GET /healthz",
    "POST /api/login",
    "GET /api/recommendations",
];

/// Generates push requests; deterministic for a given spec and seed.
#[derive(Debug)]
pub struct Generator {
    spec: WorkloadSpec,
    rng: StdRng,
    latency: LogNormal<f64>,
    batches: u64,
    /// Random per generator, so two runs with the same seed never share a batch id.
    run: u64,
}

impl Generator {
    pub fn new(spec: WorkloadSpec) -> Self {
        let latency = LogNormal::new((spec.latency_median_ms * 1e6).ln(), spec.latency_sigma)
            .expect("valid log-normal parameters");
        Self {
            rng: StdRng::seed_from_u64(spec.seed),
            latency,
            spec,
            batches: 0,
            run: rand::random(),
        }
    }

    /// Name of service `i`.
    pub fn service_name(i: usize) -> String {
        let base = SERVICE_NAMES[i % SERVICE_NAMES.len()];
        if i < SERVICE_NAMES.len() {
            base.to_owned()
        } else {
            format!("{base}-{}", i / SERVICE_NAMES.len())
        }
    }

    /// A push of `n` request events for service `service`, with event times spread over the
    /// second before `now_ns`. The batch id is unique per generator and per run: seed, a
    /// random run id, and the push's number.
    pub fn push(&mut self, service: usize, n: usize, now_ns: i64) -> PushRequest {
        self.batches += 1;
        let requests = (0..n)
            .map(|_| {
                let op = self
                    .rng
                    .random_range(0..self.spec.operations_per_service.max(1));
                let roll: f64 = self.rng.random();
                let (status_code, error) = if roll < self.spec.error_ratio {
                    (if self.rng.random_bool(0.5) { 500 } else { 503 }, true)
                } else if roll < self.spec.error_ratio + self.spec.client_error_ratio {
                    (if self.rng.random_bool(0.5) { 404 } else { 429 }, false)
                } else {
                    (200, false)
                };
                let duration_nano = (self.latency.sample(&mut self.rng) as i64).max(1);
                RequestEvent {
                    time_unix_nano: now_ns - self.rng.random_range(0..1_000_000_000),
                    operation: ROUTES[op % ROUTES.len()].to_owned(),
                    status_code,
                    error,
                    duration_nano,
                    trace_id: format!("{:032x}", self.rng.random::<u128>()),
                    attributes: Vec::new(),
                }
            })
            .collect();
        PushRequest {
            resource: Some(Resource {
                tenant: self.spec.tenant.clone(),
                service: Self::service_name(service),
                environment: self.spec.environment.clone(),
                version: "v1.0.0".into(),
            }),
            batch_id: format!("gen-{}-{:016x}-{}", self.spec.seed, self.run, self.batches),
            requests,
            ..Default::default()
        }
    }
}

/// What one service was sent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    pub events: u64,
    pub errors: u64,
    pub client_errors: u64,
    pub durations: Vec<i64>,
}

/// Exactly what was acknowledged, per service.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    pub services: BTreeMap<String, Tally>,
}

impl Ledger {
    /// Records an acknowledged push.
    pub fn record(&mut self, push: &PushRequest) {
        let service = push
            .resource
            .as_ref()
            .map(|r| r.service.clone())
            .unwrap_or_default();
        let t = self.services.entry(service).or_default();
        for e in &push.requests {
            t.events += 1;
            if e.error {
                t.errors += 1;
            } else if (400..500).contains(&e.status_code) {
                t.client_errors += 1;
            }
            t.durations.push(e.duration_nano);
        }
    }

    pub fn events(&self) -> u64 {
        self.services.values().map(|t| t.events).sum()
    }

    pub fn errors(&self) -> u64 {
        self.services.values().map(|t| t.errors).sum()
    }

    /// The exact q-quantile of one service's durations, at the rank a DDSketch uses
    /// (`floor(q * (n - 1))`).
    pub fn exact_quantile(&self, service: &str, q: f64) -> Option<i64> {
        let mut d = self.services.get(service)?.durations.clone();
        if d.is_empty() {
            return None;
        }
        d.sort_unstable();
        Some(d[(q * (d.len() - 1) as f64) as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_is_deterministic_and_ledger_counts() {
        let mut a = Generator::new(WorkloadSpec::default());
        let mut b = Generator::new(WorkloadSpec::default());
        let (pa, mut pb) = (
            a.push(0, 100, 1_000_000_000_000),
            b.push(0, 100, 1_000_000_000_000),
        );
        // The same events; batch ids unique per generator (seed, run id, number).
        assert!(pa.batch_id.starts_with("gen-9-") && pa.batch_id.ends_with("-1"));
        assert_ne!(pa.batch_id, pb.batch_id);
        pb.batch_id.clone_from(&pa.batch_id);
        assert_eq!(pa, pb);
        let mut ledger = Ledger::default();
        ledger.record(&pa);
        let errors = pa.requests.iter().filter(|e| e.error).count() as u64;
        assert_eq!(ledger.events(), 100);
        assert_eq!(ledger.errors(), errors);
        assert_eq!(
            ledger.exact_quantile("checkout", 1.0),
            pa.requests.iter().map(|e| e.duration_nano).max()
        );
    }
}
