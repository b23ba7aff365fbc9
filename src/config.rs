//! The one configuration tree: defaults < file (`--config`) < environment (`NINES__SECTION__KEY`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use nines_bus::BusConfig;
use nines_ingest::IngestConfig;
use nines_model::idempotency;
use nines_pipeline::AggregateConfig;
use nines_store::StorageConfig;
use serde::Deserialize;

use crate::roles::{Plan, Role};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Config {
    /// Where the tables (`tables/`, Delta Lake) and the embedded broker's database live.
    pub data_dir: PathBuf,
    /// After SIGTERM/SIGINT a role that has not finished flushing within this time exits
    /// with status 1 (what it had not made durable is re-read from Kafka by the next start).
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    pub broker: BrokerConfig,
    pub bus: BusConfig,
    pub ingest: IngestConfig,
    pub aggregate: AggregateConfig,
    pub storage: StorageConfig,
    pub admin: AdminConfig,
    pub slo: SloConfig,
    pub report: ReportConfig,
    pub dora: DoraConfig,
    pub gate: GateConfig,
    pub verdict: nines_slo::verdict::Criteria,
    pub sla: SlaConfig,
    pub query: nines_query::QueryConfig,
}

/// `[sla]`: where the SLA definitions are (docs/sla.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct SlaConfig {
    /// Directory of SLA YAML files (`kind: SLA`, `.yaml`/`.yml`, walked recursively),
    /// relative to the working directory.
    pub dir: PathBuf,
}

impl Default for SlaConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("slas"),
        }
    }
}

/// `[gate]`: the error-budget policies `nines gate` and `GET /v1/gate` apply
/// (docs/release.md). Without any, the Workbook's policy applies to every service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct GateConfig {
    /// `[[gate.policy]]` entries; the most specific match for a service and environment
    /// applies.
    pub policy: Vec<nines_slo::gate::Policy>,
    /// Record every decision in the `gate_decisions` table (pushed through the events topic
    /// like any fact).
    pub record: bool,
    /// The tenant decisions are recorded under.
    pub tenant: String,
}

impl Default for GateConfig {
    fn default() -> Self {
        Self {
            policy: Vec::new(),
            record: true,
            tenant: nines_ingest::validate::DEFAULT_TENANT.into(),
        }
    }
}

/// `[dora]`: how the DORA metrics are rated (docs/dora.md, "Tiers").
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct DoraConfig {
    /// A TOML file of performance tiers (the format of `config/dora-tiers.toml`). Unset:
    /// that file as built into nines.
    pub tiers: Option<PathBuf>,
}

/// `[report]`: scheduled reports written by `nines up` (docs/report.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ReportConfig {
    /// Every this long (aligned on the wall clock, UTC), `nines up` writes the report of
    /// the period that just ended. Unset: no scheduled reports.
    #[serde(with = "humantime_serde")]
    pub every: Option<Duration>,
    /// Where the reports go (`.html`, `.md` and `.json`), relative to where nines starts.
    pub dir: PathBuf,
}

impl Default for ReportConfig {
    fn default() -> Self {
        Self {
            every: None,
            dir: PathBuf::from("reports"),
        }
    }
}

/// `[slo]`: where the OpenSLO definitions are, and how `nines up` evaluates them live.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct SloConfig {
    /// Directory of OpenSLO v1 YAML files (`.yaml`, `.yml`, walked recursively), relative
    /// to the working directory.
    pub dir: PathBuf,
    /// How often `nines up` evaluates every objective (aligned on the wall clock).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// How long after a minute ends its data counts as complete: live evaluation is at the
    /// latest whole minute that ended at least this long ago.
    #[serde(with = "humantime_serde")]
    pub settle: Duration,
    /// An Alertmanager base URL (e.g. `http://127.0.0.1:9093`): firing and resolved alerts
    /// are POSTed to its v2 API. Unset: no notifications (the gauges still show them).
    pub alertmanager_url: Option<String>,
}

impl Default for SloConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("slos"),
            interval: Duration::from_secs(60),
            settle: Duration::from_secs(15),
            alertmanager_url: None,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::new(),
            shutdown_timeout: Duration::from_secs(30),
            broker: BrokerConfig::default(),
            bus: BusConfig::default(),
            ingest: IngestConfig::default(),
            aggregate: AggregateConfig::default(),
            storage: StorageConfig::default(),
            admin: AdminConfig::default(),
            slo: SloConfig::default(),
            report: ReportConfig::default(),
            dora: DoraConfig::default(),
            gate: GateConfig::default(),
            query: nines_query::QueryConfig::default(),
            verdict: nines_slo::verdict::Criteria::default(),
            sla: SlaConfig::default(),
        }
    }
}

/// The embedded broker (used when `bus.brokers` is empty).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct BrokerConfig {
    /// Port on 127.0.0.1.
    pub port: u16,
    /// Records every consumer group has read are deleted once older than this; a record a
    /// group has not read is kept, however old (`nines_bus::retention`).
    #[serde(with = "humantime_serde")]
    pub log_retention: Duration,
    /// How often the broker deletes old records (and the guard checks what groups still
    /// need). Each pass scans the broker's record table.
    #[serde(with = "humantime_serde")]
    pub maintenance_interval: Duration,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            port: 19092,
            log_retention: Duration::from_secs(7 * 86_400),
            maintenance_interval: Duration::from_secs(600),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct AdminConfig {
    /// `/metrics`, `/healthz` and `/readyz`. Empty disables the admin server.
    pub listen: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9464".into(),
        }
    }
}

impl Config {
    /// Loads defaults < `file` < environment, then validates.
    pub(crate) fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let mut fig = Figment::new();
        if let Some(f) = file {
            if !f.exists() {
                bail!("config file {} does not exist", f.display());
            }
            fig = fig.merge(Toml::file(f));
        }
        let mut cfg: Config = fig
            .merge(Env::prefixed("NINES__").split("__"))
            .extract()
            .context("reading configuration")?;
        if cfg.data_dir.as_os_str().is_empty() {
            cfg.data_dir = PathBuf::from("data");
        }
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> anyhow::Result<()> {
        self.query.limits.check().map_err(anyhow::Error::msg)?;
        if self.bus.partitions < 1 {
            bail!(
                "bus.partitions must be at least 1, got {}",
                self.bus.partitions
            );
        }
        if self.bus.max_record_bytes < 1024 {
            bail!("bus.max_record_bytes must be at least 1024");
        }
        // librdkafka's range for `queued.max.messages.kbytes` ends at 2097151 (checked
        // against librdkafka in nines-bus's consumer tests); below a record's size a fetch
        // overshoots the bound anyway.
        if !(1024..=2_097_151).contains(&self.bus.consumer_queue_kbytes) {
            bail!(
                "bus.consumer_queue_kbytes must be between 1024 and 2097151 (KiB), got {}",
                self.bus.consumer_queue_kbytes
            );
        }
        if self.aggregate.flush_events == 0 {
            bail!("aggregate.flush_events must be at least 1");
        }
        if self.shutdown_timeout.is_zero() {
            bail!("shutdown_timeout must be positive");
        }
        if self.broker.maintenance_interval < Duration::from_secs(1) {
            bail!("broker.maintenance_interval must be at least 1s");
        }
        if self.broker.log_retention < Duration::from_secs(1) {
            bail!("broker.log_retention must be at least 1s");
        }
        if self.aggregate.flush_interval.is_zero() {
            bail!("aggregate.flush_interval must be positive");
        }
        for (i, p) in self.gate.policy.iter().enumerate() {
            p.check(i + 1).map_err(anyhow::Error::msg)?;
        }
        self.verdict
            .check()
            .map_err(|e| anyhow::anyhow!("verdict.{e}"))?;
        let tables: Vec<&str> = nines_store::layout::all_tables().collect();
        for (table, keep) in &self.storage.retention {
            if !tables.contains(&table.as_str()) {
                bail!(
                    "storage.retention.{table}: no such table (tables: {})",
                    tables.join(", ")
                );
            }
            if keep.as_secs() < 86_400 {
                bail!("storage.retention.{table} must be at least 1 day (whole days are removed)");
            }
        }
        if let Some(keep) = self.storage.retention.get(idempotency::TABLE) {
            idempotency::check_retention(*keep, self.aggregate.idempotency_window)
                .map_err(anyhow::Error::msg)?;
        }
        if self.storage.target_file_bytes < 1024 * 1024 {
            bail!("storage.target_file_bytes must be at least 1 MiB");
        }
        let ack_wait = self.bus.delivery_timeout + Duration::from_secs(1);
        if self.ingest.request_timeout <= ack_wait {
            bail!(
                "ingest.request_timeout ({:?}) must exceed bus.delivery_timeout + 1s ({ack_wait:?}): \
                 pushes waiting for the broker would be cut off before it answers",
                self.ingest.request_timeout
            );
        }
        for (key, value) in [
            ("ingest.max_connections", self.ingest.max_connections),
            (
                "ingest.max_in_flight_requests",
                self.ingest.max_in_flight_requests,
            ),
            (
                "ingest.max_concurrent_streams",
                self.ingest.max_concurrent_streams as usize,
            ),
        ] {
            if value == 0 {
                bail!("{key} must be at least 1");
            }
        }
        if self.ingest.max_request_bytes > u32::MAX as usize {
            bail!(
                "ingest.max_request_bytes ({}) must be at most {} (a gRPC message's length is 32 bits)",
                self.ingest.max_request_bytes,
                u32::MAX
            );
        }
        if self.ingest.max_decoded_bytes < self.ingest.max_request_bytes {
            bail!(
                "ingest.max_decoded_bytes ({}) must be at least ingest.max_request_bytes ({}): \
                 a request decodes into at least its own size",
                self.ingest.max_decoded_bytes,
                self.ingest.max_request_bytes
            );
        }
        if self
            .report
            .every
            .is_some_and(|e| e < Duration::from_secs(1))
        {
            bail!("report.every must be at least 1s");
        }
        if self.slo.interval < Duration::from_secs(1) {
            bail!("slo.interval must be at least 1s");
        }
        if let Some(url) = &self.slo.alertmanager_url {
            match url::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                Ok(u) => bail!(
                    "slo.alertmanager_url {url:?}: scheme {:?} is not http or https",
                    u.scheme()
                ),
                Err(e) => bail!("slo.alertmanager_url {url:?}: not a URL ({e})"),
            }
        }
        Ok(())
    }
}

/// `nines config check`: loads the configuration as `role` would (defaults < file <
/// environment), makes the role's [`Plan`](crate::roles::Plan) — every check it runs before
/// binding or connecting — and prints `ok` with a summary, or the error naming the key.
/// Warnings go to stderr. Returns whether the role would start.
pub(crate) fn check(
    file: Option<&Path>,
    data_dir: Option<PathBuf>,
    role: Role,
    kafka: Option<String>,
) -> bool {
    let planned = Config::load(file).and_then(|mut cfg| {
        if let Some(d) = data_dir {
            cfg.data_dir = d;
        }
        let plan = crate::roles::plan(&cfg, role, kafka)?;
        Ok((cfg, plan))
    });
    let (cfg, plan) = match planned {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e:#}");
            return false;
        }
    };
    for w in &plan.warnings {
        eprintln!("warning: {w}");
    }
    println!("{}", summary(&cfg, &plan, file));
    true
}

fn summary(cfg: &Config, plan: &Plan, file: Option<&Path>) -> String {
    let mut env: Vec<String> = std::env::vars()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("NINES__"))
        .collect();
    env.sort();
    let mut out = format!(
        "ok: `nines {}` can start with this configuration\n",
        plan.role
    );
    out += &format!(
        "  from: {}; environment: {}\n",
        file.map_or("defaults".into(), |f| f.display().to_string()),
        if env.is_empty() {
            "no NINES__ variables".to_owned()
        } else {
            env.join(", ")
        }
    );
    let bus = &cfg.bus;
    out += &match &plan.kafka {
        Some(k) => format!("  kafka: {k} (external)"),
        None => format!("  kafka: embedded broker on 127.0.0.1:{}", cfg.broker.port),
    };
    out += &format!(
        "; topics {} ({} partitions) and {}, replication factor {}\n",
        bus.events_topic, bus.partitions, bus.dead_letter_topic, bus.replication_factor
    );
    if let Some((addr, _)) = &plan.ingest {
        let keys = &cfg.ingest.api_keys;
        let mut tenants: Vec<&str> = keys.iter().map(|k| k.tenant.as_str()).collect();
        tenants.sort_unstable();
        tenants.dedup();
        out += &if keys.is_empty() {
            format!("  ingest: {addr}, no API keys (single tenant `default`)\n")
        } else {
            format!(
                "  ingest: {addr}, {} API key(s) for tenant(s) {}\n",
                keys.len(),
                tenants.join(", ")
            )
        };
    }
    if let Some((addr, _)) = &plan.query {
        let keys = &cfg.query.api_keys;
        out += &if keys.is_empty() {
            format!("  query: {addr} (Flight SQL, POST /v1/sql), no query keys (every tenant)\n")
        } else {
            format!(
                "  query: {addr} (Flight SQL, POST /v1/sql), {} query key(s)\n",
                keys.len()
            )
        };
    }
    if matches!(plan.role, Role::Up | Role::Aggregate) {
        out += &format!(
            "  aggregate: consumer group {}, data in {}\n",
            bus.consumer_group,
            cfg.data_dir.display()
        );
    }
    out += &if cfg.admin.listen.is_empty() {
        "  admin: off".to_owned()
    } else {
        format!(
            "  admin: {} (/metrics, /healthz, /readyz)",
            cfg.admin.listen
        )
    };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `text` loaded as a config file.
    fn load(text: &str) -> anyhow::Result<Config> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nines.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(Some(&path))
    }

    /// The error of loading `text`, with its causes.
    fn refusal(text: &str) -> String {
        format!("{:#}", load(text).unwrap_err())
    }

    #[test]
    fn example_config_loads_and_matches_defaults() {
        // `cargo test` sets this at run time; `env!` would bake in the path of whichever
        // checkout first compiled the test into a shared target directory.
        let root = std::env::var("CARGO_MANIFEST_DIR").unwrap();
        let path = Path::new(&root).join("config/nines.example.toml");
        let cfg = Config::load(Some(&path)).unwrap();
        // The example documents the defaults: loading it must change nothing.
        let d = Config::default();
        assert_eq!(cfg.data_dir, PathBuf::from("data"));
        assert_eq!(cfg.shutdown_timeout, d.shutdown_timeout);
        assert_eq!(cfg.broker.port, d.broker.port);
        assert_eq!(cfg.bus.partitions, 4);
        assert_eq!(cfg.bus.events_topic, d.bus.events_topic);
        assert_eq!(cfg.bus.delivery_timeout, d.bus.delivery_timeout);
        assert_eq!(cfg.bus.compression, d.bus.compression);
        assert_eq!(cfg.bus.consumer_queue_kbytes, 16_384);
        assert_eq!(cfg.ingest.listen, d.ingest.listen);
        assert_eq!(
            cfg.ingest.limits.max_event_age,
            d.ingest.limits.max_event_age
        );
        assert_eq!(cfg.aggregate.flush_interval, Duration::from_millis(500));
        assert_eq!(cfg.aggregate.flush_events, 100_000);
        assert_eq!(cfg.aggregate.flush_events, d.aggregate.flush_events);
        assert_eq!(
            cfg.aggregate.idempotency_window,
            d.aggregate.idempotency_window
        );
        assert_eq!(
            cfg.aggregate.idempotency_max_keys,
            d.aggregate.idempotency_max_keys
        );
        assert_eq!(cfg.admin.listen, d.admin.listen);
        assert_eq!(cfg.query.listen, d.query.listen);
        assert_eq!(cfg.query.ticket_ttl, d.query.ticket_ttl);
        assert_eq!(
            cfg.query.limits.max_memory_bytes,
            d.query.limits.max_memory_bytes
        );
        assert_eq!(cfg.query.limits.timeout, d.query.limits.timeout);
        assert_eq!(
            cfg.query.limits.max_result_rows,
            d.query.limits.max_result_rows
        );
        assert_eq!(
            cfg.query.limits.max_result_bytes,
            d.query.limits.max_result_bytes
        );
        assert_eq!(
            cfg.query.limits.max_concurrent_queries,
            d.query.limits.max_concurrent_queries
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = refusal("[bus]\npartitons = 3\n");
        assert!(err.contains("partitons"), "{err}");
    }

    #[test]
    fn a_request_limit_past_32_bits_is_refused() {
        let past = u64::from(u32::MAX) + 1;
        let err = refusal(&format!(
            "[ingest]\nmax_request_bytes = {past}\nmax_decoded_bytes = {past}\n"
        ));
        assert!(
            err.contains("ingest.max_request_bytes (4294967296) must be at most 4294967295"),
            "{err}"
        );
    }

    #[test]
    fn a_test_role_config_loads_as_written() {
        // The document tests and `nines bench` give each role (nines_testkit::config).
        let text = nines_testkit::config::RoleConfig::new(Path::new("/d"), 19092, 14317, 19464)
            .set("aggregate.flush_interval", "300ms")
            .merge("[[ingest.api_keys]]\ntenant = \"acme\"\nkey = \"k-acme\"\n")
            .unwrap()
            .to_toml();
        let cfg = load(&text).unwrap();
        assert_eq!(cfg.data_dir, Path::new("/d"));
        assert_eq!(cfg.broker.port, 19092);
        assert_eq!(cfg.ingest.listen, "127.0.0.1:14317");
        assert_eq!(cfg.admin.listen, "127.0.0.1:19464");
        assert_eq!(cfg.aggregate.flush_interval, Duration::from_millis(300));
        assert_eq!(cfg.ingest.api_keys.len(), 1);
        assert_eq!(cfg.ingest.api_keys[0].tenant, "acme");
    }

    #[test]
    fn the_idempotency_keys_former_names_still_load() {
        let cfg = load(
            "[aggregate]\ndedup_window = \"20m\"\ndedup_max_batches = 7\ndedup_max_bytes = 4096\n",
        )
        .unwrap();
        assert_eq!(cfg.aggregate.idempotency_window, Duration::from_secs(1_200));
        assert_eq!(cfg.aggregate.idempotency_max_keys, 7);
        assert_eq!(cfg.aggregate.idempotency_max_bytes, 4096);
    }

    #[test]
    fn an_idempotency_retention_inside_the_window_is_refused() {
        let err = refusal(
            "[aggregate]\nidempotency_window = \"2d\"\n[storage.retention]\nidempotency = \"2d\"\n",
        );
        assert!(
            err.contains(
                "storage.retention.idempotency (172800s) must exceed \
                 aggregate.idempotency_window (172800s) by a day"
            ),
            "{err}"
        );
    }

    #[test]
    fn a_consumer_queue_outside_librdkafkas_range_is_refused() {
        for kbytes in [0, 1023, 2_097_152] {
            let err = refusal(&format!("[bus]\nconsumer_queue_kbytes = {kbytes}\n"));
            assert!(
                err.contains(&format!(
                    "bus.consumer_queue_kbytes must be between 1024 and 2097151 (KiB), got {kbytes}"
                )),
                "{err}"
            );
        }
        let cfg = load("[bus]\nconsumer_queue_kbytes = 8192\n").unwrap();
        assert_eq!(cfg.bus.consumer_queue_kbytes, 8192);
    }

    #[test]
    fn an_unknown_compression_is_refused_naming_the_key() {
        let err = refusal("[bus]\ncompression = \"brotli\"\n");
        assert!(
            err.contains("brotli") && err.contains("bus.compression") && err.contains("lz4"),
            "{err}"
        );
    }
}
