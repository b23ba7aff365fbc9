//! Topic creation. Topics are created explicitly with the configured partition count, never
//! by a broker's auto-create (tansu would create one on a Metadata request).

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use tracing::{info, warn};

use crate::{BusConfig, Error, Result};

/// Creates the events and dead-letter topics if they are missing. Retries until `wait` has
/// passed, so it can be called while a broker is still starting.
pub async fn ensure_topics(cfg: &BusConfig, brokers: &str, wait: Duration) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("allow.auto.create.topics", "false")
        .create()
        .map_err(Error::from_kafka)?;
    let topics = [
        NewTopic::new(
            &cfg.events_topic,
            cfg.partitions,
            TopicReplication::Fixed(cfg.replication_factor),
        ),
        NewTopic::new(
            &cfg.dead_letter_topic,
            1,
            TopicReplication::Fixed(cfg.replication_factor),
        ),
    ];
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(5)));
    let deadline = Instant::now() + wait;
    loop {
        match admin.create_topics(&topics, &opts).await {
            Ok(results) => {
                let mut pending = None;
                for r in results {
                    match r {
                        Ok(name) => info!(topic = %name, "created topic"),
                        Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                        Err((name, code)) => pending = Some(format!("{name}: {code}")),
                    }
                }
                match pending {
                    None => return Ok(()),
                    Some(e) if Instant::now() >= deadline => return Err(Error::Unavailable(e)),
                    Some(e) => warn!(error = %e, "creating topics, retrying"),
                }
            }
            Err(e) if Instant::now() >= deadline => return Err(Error::from_kafka(e)),
            Err(e) => warn!(error = %e, "broker not reachable yet, retrying"),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
