//! The `[query]` section of the configuration: the query server (Flight SQL and HTTP), who
//! may call it, and what one query may take.

use std::time::Duration;

use nines_model::keys::ApiKey;
use serde::Deserialize;

/// Query server settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryConfig {
    /// Listen address of Flight SQL (gRPC) and `POST /v1/sql` (HTTP/1.1) on one port.
    /// Empty: `nines up` runs no query server.
    pub listen: String,
    /// Query keys, one tenant each, or `*` for an operator who sees every tenant. With none,
    /// every caller sees every tenant and the server listens on loopback only.
    pub api_keys: Vec<ApiKey>,
    /// How long a Flight SQL ticket or session token stays valid.
    #[serde(with = "humantime_serde")]
    pub ticket_ttl: Duration,
    /// Secret that signs tickets and session tokens; query nodes behind one load balancer
    /// share it so a ticket from one is honoured by another. Unset: a random one per process.
    pub ticket_secret: Option<String>,
    /// What one query may take.
    pub limits: Limits,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:50051".into(),
            api_keys: Vec::new(),
            ticket_ttl: Duration::from_secs(600),
            ticket_secret: None,
            limits: Limits::default(),
        }
    }
}

/// Limits of one query, through every door (`nines sql` included). Each refusal is a clear
/// error, counted in `nines_query_queries_refused_total{door,reason}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Memory one query's operators may hold (joins, sorts, aggregations), in bytes.
    pub max_memory_bytes: usize,
    /// Longest a query may run; past it, it is cancelled.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Most rows a result may have.
    pub max_result_rows: usize,
    /// Most bytes a result may take in memory (Arrow arrays).
    pub max_result_bytes: usize,
    /// Most queries running at once on this node; past it, a query is refused at once.
    pub max_concurrent_queries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_memory_bytes: 1 << 30,
            timeout: Duration::from_secs(60),
            max_result_rows: 1_000_000,
            max_result_bytes: 256 << 20,
            max_concurrent_queries: 8,
        }
    }
}

impl Limits {
    /// Refusals of limits as written.
    pub fn check(&self) -> Result<(), String> {
        for (name, v) in [
            ("max_memory_bytes", self.max_memory_bytes),
            ("max_result_rows", self.max_result_rows),
            ("max_result_bytes", self.max_result_bytes),
            ("max_concurrent_queries", self.max_concurrent_queries),
        ] {
            if v == 0 {
                return Err(format!("query.limits.{name} must be at least 1"));
            }
        }
        if self.timeout.is_zero() {
            return Err("query.limits.timeout must be positive".into());
        }
        Ok(())
    }
}
