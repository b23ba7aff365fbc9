//! The `[bus]` section of the configuration.

use std::time::Duration;

use serde::Deserialize;

/// How nines talks to Kafka.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusConfig {
    /// `host:port[,host:port]` of an external Kafka. Empty: `nines up` starts the embedded broker.
    pub brokers: String,
    /// Topic that carries event batches.
    pub events_topic: String,
    /// Topic for records the aggregator cannot decode.
    pub dead_letter_topic: String,
    /// Partitions of the topics nines creates (aggregators scale up to this many).
    pub partitions: i32,
    /// Replication factor of the topics nines creates (1 for the embedded broker). Stays 1
    /// for an external Kafka too, where it only fits a single-broker cluster: see
    /// [`BusConfig::replication_warning`].
    pub replication_factor: i32,
    /// Largest record value ingest produces; pushes are cut into records below it.
    pub max_record_bytes: usize,
    /// How long ingest waits for the broker's acknowledgement before answering UNAVAILABLE.
    #[serde(with = "humantime_serde")]
    pub delivery_timeout: Duration,
    /// Producer batching delay (librdkafka `linger.ms`).
    #[serde(with = "humantime_serde")]
    pub linger: Duration,
    /// Bound on the producer's local queue in KiB; beyond it pushes get RESOURCE_EXHAUSTED.
    pub producer_queue_kbytes: u32,
    /// Compression of produced record batches: `auto`, or librdkafka's `compression.type`
    /// (`none`, `lz4`, `zstd`, `snappy`, `gzip`). `auto` is `none` when `brokers` is empty (the
    /// embedded broker on this machine: it inflates every batch it accepts, which cost it
    /// three quarters of its CPU with zstd, for disk space only) and `zstd` for an external
    /// Kafka (bytes on the network and on its disks). Figures in BENCHMARKS.md.
    pub compression: Compression,
    /// Kafka's idempotent producer (`enable.idempotence`). Off by default: exactly-once does
    /// not rest on it (every record carries the (tenant, batch_id, part) key the aggregator
    /// deduplicates on), and the embedded broker (tansu 0.6) panics when an idempotent
    /// producer keeps sending across a broker restart. Turn it on for a real Kafka if you like.
    pub idempotent_producer: bool,
    /// Consumer group of the aggregators.
    pub consumer_group: String,
    /// Consumer group session timeout (keep small on the embedded broker: it delays joins).
    #[serde(with = "humantime_serde")]
    pub session_timeout: Duration,
    /// Bound on the records an aggregator has fetched ahead of its work, in KiB (librdkafka
    /// `queued.max.messages.kbytes`), part of its memory while it works off a backlog. Much
    /// less saves memory and costs speed (BENCHMARKS.md, ninth part; docs/reliability.md).
    pub consumer_queue_kbytes: u32,
}

/// `bus.compression`: `auto` or one of librdkafka's codecs. Anything else is refused when the
/// configuration is read, naming the key and the choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    Auto,
    None,
    Lz4,
    Zstd,
    Snappy,
    Gzip,
}

impl Compression {
    /// Every value, as written in the configuration.
    pub const NAMES: [&str; 6] = ["auto", "none", "lz4", "zstd", "snappy", "gzip"];

    fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::None => "none",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
            Self::Snappy => "snappy",
            Self::Gzip => "gzip",
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Compression {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Self::deserialize(serde::de::value::StrDeserializer::<serde::de::value::Error>::new(s))
            .map_err(|_| format!("{s:?} is not one of {}", Self::NAMES.join(", ")))
    }
}

impl BusConfig {
    /// The librdkafka `compression.type` that `compression` stands for.
    pub fn compression_type(&self) -> &'static str {
        match self.compression {
            Compression::Auto if self.brokers.is_empty() => "none",
            Compression::Auto => "zstd",
            other => other.name(),
        }
    }
}

impl BusConfig {
    /// The warning every role logs at start (and `nines config check` prints) when it uses an
    /// external Kafka with `replication_factor = 1`: each partition then lives on one broker,
    /// and losing that broker's disk loses events ingest acknowledged. The default stays 1
    /// rather than becoming 3 with `brokers`: the right factor is the cluster's (3 fails topic
    /// creation on one or two brokers, such as the single-node Kafka of docker-compose.yml),
    /// and nines cannot know it without connecting. Topics that already exist keep theirs.
    pub fn replication_warning(&self, external_kafka: bool) -> Option<String> {
        (external_kafka && self.replication_factor == 1).then(|| {
            "bus.replication_factor = 1 on an external Kafka: each partition of the topics nines \
             creates lives on one broker, and losing it loses acknowledged events. Set \
             bus.replication_factor = 3 (with min.insync.replicas = 2 on the cluster) unless \
             this Kafka has a single broker"
                .to_owned()
        })
    }
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            brokers: String::new(),
            events_topic: "nines.events".into(),
            dead_letter_topic: "nines.dead-letter".into(),
            partitions: 4,
            replication_factor: 1,
            max_record_bytes: 900 * 1024,
            delivery_timeout: Duration::from_secs(10),
            linger: Duration::from_millis(5),
            producer_queue_kbytes: 64 * 1024,
            compression: Compression::Auto,
            idempotent_producer: false,
            consumer_group: "nines-aggregate".into(),
            session_timeout: Duration::from_secs(6),
            consumer_queue_kbytes: 16 * 1024,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_compression_is_none_on_the_embedded_broker_only() {
        let embedded = BusConfig::default();
        assert_eq!(embedded.compression_type(), "none");
        let external = BusConfig {
            brokers: "kafka-1:9092".into(),
            ..BusConfig::default()
        };
        assert_eq!(external.compression_type(), "zstd");
        let chosen = BusConfig {
            compression: Compression::Lz4,
            ..BusConfig::default()
        };
        assert_eq!(chosen.compression_type(), "lz4");
    }

    #[test]
    fn replication_factor_one_is_warned_about_on_an_external_kafka_only() {
        let one = BusConfig::default();
        assert_eq!(one.replication_warning(false), None);
        let warning = one.replication_warning(true).unwrap();
        assert!(
            warning.starts_with("bus.replication_factor = 1 on an external Kafka"),
            "{warning}"
        );
        let three = BusConfig {
            replication_factor: 3,
            ..BusConfig::default()
        };
        assert_eq!(three.replication_warning(true), None);
    }

    #[test]
    fn compression_names_round_trip_and_others_are_refused() {
        for name in Compression::NAMES {
            let c: Compression = name.parse().unwrap();
            assert_eq!(c.to_string(), name);
        }
        assert_eq!(
            "brotli".parse::<Compression>().unwrap_err(),
            r#""brotli" is not one of auto, none, lz4, zstd, snappy, gzip"#
        );
    }
}
