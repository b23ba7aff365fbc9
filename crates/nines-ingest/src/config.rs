//! The `[ingest]` section of the configuration.

use std::time::Duration;

use serde::Deserialize;

/// Ingest front door settings and input limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// gRPC listen address (OTLP and nines.v1 share it).
    pub listen: String,
    /// Largest accepted request, in bytes (after decompression).
    pub max_request_bytes: usize,
    /// API keys, one tenant each. With none, nines runs single-tenant (tenant `default`) and
    /// refuses to listen beyond loopback unless `allow_unauthenticated` says so.
    pub api_keys: Vec<ApiKey>,
    /// Accept unauthenticated pushes on a non-loopback `listen` (single-tenant only).
    pub allow_unauthenticated: bool,
    /// Most open client connections; past it, accepting waits for one to close.
    pub max_connections: usize,
    /// A new connection must send its first bytes (the HTTP/2 preface) within this time, or
    /// it is closed: idle sockets cannot hold the connection slots.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Most concurrent HTTP/2 streams (calls) on one connection.
    pub max_concurrent_streams: u32,
    /// Most calls past authentication at once (reading, decoding or waiting for the broker);
    /// others wait for a slot holding only their headers.
    pub max_in_flight_requests: usize,
    /// Largest estimated memory one request may decode into, in bytes. Checked on the wire
    /// before decoding, so a small body of many empty messages cannot take gigabytes.
    pub max_decoded_bytes: usize,
    /// Longest a call may take, waiting for a slot included; past it the answer is
    /// UNAVAILABLE (outcome unknown: retry with the same batch_id). Must exceed
    /// `bus.delivery_timeout` + 1 s.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    #[serde(flatten)]
    pub limits: Limits,
}

pub use nines_model::keys::ApiKey;

/// What a valid event looks like. Every rejection names the event, the field and the reason.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Most events (of all kinds) in one push.
    pub max_events_per_request: usize,
    /// Most attributes on one request event.
    pub max_attributes: usize,
    /// Longest attribute key or value, in bytes.
    pub max_attribute_bytes: usize,
    /// Longest service, environment, version, operation or id, in bytes.
    pub max_name_bytes: usize,
    /// Oldest accepted event time, relative to now.
    #[serde(with = "humantime_serde")]
    pub max_event_age: Duration,
    /// Furthest accepted event time in the future, relative to now (clock skew).
    #[serde(with = "humantime_serde")]
    pub max_event_ahead: Duration,
    /// Longest accepted request duration.
    #[serde(with = "humantime_serde")]
    pub max_duration: Duration,
    /// Distinct operations remembered per tenant and service; beyond it new ones are stored
    /// as `__overflow__` (a bug that puts ids in routes cannot blow up the rollups).
    pub max_operations_per_service: usize,
    /// Bytes of operation names ingest remembers for the cap above, over all services (and
    /// an eighth of it for the versions behind telemetry deploys); past it, the services
    /// least recently pushed are forgotten and start again.
    pub max_tracked_bytes: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:4317".into(),
            max_request_bytes: 16 * 1024 * 1024,
            api_keys: Vec::new(),
            allow_unauthenticated: false,
            max_connections: 1024,
            handshake_timeout: Duration::from_secs(10),
            max_concurrent_streams: 64,
            max_in_flight_requests: 32,
            max_decoded_bytes: 64 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            limits: Limits::default(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_events_per_request: 20_000,
            max_attributes: 32,
            max_attribute_bytes: 1024,
            max_name_bytes: 512,
            max_event_age: Duration::from_secs(7 * 24 * 3600),
            max_event_ahead: Duration::from_secs(3600),
            max_duration: Duration::from_secs(24 * 3600),
            max_operations_per_service: 2000,
            max_tracked_bytes: 32 * 1024 * 1024,
        }
    }
}
