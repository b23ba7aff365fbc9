//! The aggregators' consumer group. Auto-commit is off: offsets are committed only by the
//! caller, after what they cover is durable. On every assignment the position of each
//! partition is set from the caller's durable state (`resume`), so a crash between writing a
//! file and committing its offsets neither loses nor duplicates records.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaResult;
pub use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, ClientContext, Statistics};
use tracing::{info, warn};

use crate::{BusConfig, Error, Result};

/// Looks up the next offset to read for (topic, partition) from durable storage;
/// `None` means nothing durable yet (the committed offset, else the earliest, is used).
pub type ResumeFn = Arc<dyn Fn(&str, i32) -> Option<i64> + Send + Sync>;

/// A change of the partitions this member owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssignmentChange {
    Assigned(Vec<i32>),
    Revoked(Vec<i32>),
    /// An assigned partition whose log ends before the durable position (`next`): the broker
    /// lost records or is another broker. It is paused, never read, until an operator decides.
    Stalled {
        partition: i32,
        next: i64,
        log_end: i64,
    },
}

struct GroupContext {
    resume: ResumeFn,
    changes: Mutex<Vec<AssignmentChange>>,
    topic: String,
    /// High watermark per partition of the events topic, from librdkafka's statistics
    /// (refreshed by its fetches every `statistics.interval.ms`, no extra requests).
    high_watermarks: Mutex<HashMap<i32, i64>>,
}

impl ClientContext for GroupContext {
    fn stats(&self, statistics: Statistics) {
        let Some(topic) = statistics.topics.get(&self.topic) else {
            return;
        };
        let mut marks = self.high_watermarks.lock().expect("watermark lock");
        for (partition, p) in &topic.partitions {
            // librdkafka reports -1 (unknown) and an internal partition -1; keep real ones.
            if *partition >= 0 && p.hi_offset >= 0 {
                marks.insert(*partition, p.hi_offset);
            }
        }
    }
}

impl ConsumerContext for GroupContext {
    fn rebalance(
        &self,
        base_consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let elements: Vec<(String, i32)> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_owned(), e.partition()))
                    .collect();
                let mut stalled = TopicPartitionList::new();
                let mut changes = vec![AssignmentChange::Assigned(partitions)];
                for (topic, partition) in elements {
                    let Some(next) = (self.resume)(&topic, partition) else {
                        continue;
                    };
                    // Offsets never go backwards silently: a log that ends before what the
                    // tables hold would be read from its start and its records taken for
                    // ones already stored.
                    match base_consumer.fetch_watermarks(&topic, partition, WATERMARK_TIMEOUT) {
                        Ok((_, log_end)) if log_end < next => {
                            warn!(%topic, partition, next, log_end,
                                "the partition's log ends before the offset the tables hold: \
                                 not reading it (see `nines reset-offsets`)");
                            let _ = stalled.add_partition_offset(&topic, partition, Offset::End);
                            changes.push(AssignmentChange::Stalled {
                                partition,
                                next,
                                log_end,
                            });
                            continue;
                        }
                        Ok(_) => {}
                        Err(e) => {
                            warn!(%topic, partition, error = %e, "could not read the log end")
                        }
                    }
                    info!(%topic, partition, next, "resuming after the committed tables");
                    if let Err(e) =
                        tpl.set_partition_offset(&topic, partition, Offset::Offset(next))
                    {
                        warn!(%topic, partition, error = %e, "could not set resume offset");
                    }
                }
                self.changes
                    .lock()
                    .expect("assignment lock")
                    .extend(changes);
                if let Err(e) = base_consumer.assign(tpl) {
                    warn!(error = %e, "assign failed");
                }
                if stalled.count() > 0
                    && let Err(e) = base_consumer.pause(&stalled)
                {
                    warn!(error = %e, "pausing stalled partitions failed");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.changes
                    .lock()
                    .expect("assignment lock")
                    .push(AssignmentChange::Revoked(partitions));
                if let Err(e) = base_consumer.unassign() {
                    warn!(error = %e, "unassign failed");
                }
            }
            other => warn!(error = ?other, "rebalance error"),
        }
    }
}

/// How long a rebalance waits for a partition's log end.
const WATERMARK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long `partition_count` and `log_end` wait for an answer.
const GROUP_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// A member of the aggregators' consumer group.
pub struct GroupConsumer {
    inner: StreamConsumer<GroupContext>,
    topic: String,
}

impl std::fmt::Debug for GroupConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupConsumer")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

/// How long librdkafka waits before fetching again for a partition whose prefetch queue
/// was full (`fetch.queue.backoff.ms`). Its default, 1 s, is what made a small
/// `bus.consumer_queue_kbytes` slow: the aggregator emptied a 4 MiB queue in a fraction of
/// that and then waited (BENCHMARKS.md, ninth part).
const FETCH_QUEUE_BACKOFF_MS: u32 = 10;

/// The librdkafka settings of an aggregator's consumer.
fn client_config(cfg: &BusConfig, brokers: &str) -> ClientConfig {
    let session_ms = cfg.session_timeout.as_millis().max(1000);
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("group.id", &cfg.consumer_group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", session_ms.to_string())
        .set("heartbeat.interval.ms", (session_ms / 3).to_string())
        .set("allow.auto.create.topics", "false")
        .set("fetch.wait.max.ms", "100")
        .set(
            "queued.max.messages.kbytes",
            cfg.consumer_queue_kbytes.to_string(),
        )
        .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS.to_string())
        // Feeds `high_watermark` (consumer lag) once a second.
        .set("statistics.interval.ms", "1000")
        // Eager protocols only: the aggregator relies on every assignment following a
        // full revocation, with each assigned partition restarting from durable state.
        .set("partition.assignment.strategy", "range,roundrobin");
    config
}

impl GroupConsumer {
    /// Joins the group and subscribes to the events topic.
    pub fn new(cfg: &BusConfig, brokers: &str, resume: ResumeFn) -> Result<Self> {
        let ctx = GroupContext {
            resume,
            changes: Mutex::new(Vec::new()),
            topic: cfg.events_topic.clone(),
            high_watermarks: Mutex::new(HashMap::new()),
        };
        let inner: StreamConsumer<GroupContext> = client_config(cfg, brokers)
            .create_with_context(ctx)
            .map_err(Error::from_kafka)?;
        inner
            .subscribe(&[&cfg.events_topic])
            .map_err(Error::from_kafka)?;
        Ok(Self {
            inner,
            topic: cfg.events_topic.clone(),
        })
    }

    /// Partitions of the topic, from the broker's metadata. Blocking.
    pub fn partition_count(&self) -> Result<i32> {
        let metadata = self
            .inner
            .fetch_metadata(Some(&self.topic), GROUP_CHECK_TIMEOUT)
            .map_err(Error::from_kafka)?;
        Ok(metadata
            .topics()
            .iter()
            .find(|t| t.name() == self.topic)
            .map_or(0, |t| {
                i32::try_from(t.partitions().len()).unwrap_or(i32::MAX)
            }))
    }

    /// The offset after a partition's last record (its log end), whoever owns it. Blocking.
    pub fn log_end(&self, partition: i32) -> Result<i64> {
        self.inner
            .fetch_watermarks(&self.topic, partition, GROUP_CHECK_TIMEOUT)
            .map(|(_, high)| high)
            .map_err(Error::from_kafka)
    }

    /// Leaves the group and joins it again: every member's partitions are revoked and
    /// assigned afresh.
    pub fn rejoin(&self) -> Result<()> {
        self.inner.unsubscribe();
        self.inner
            .subscribe(&[&self.topic])
            .map_err(Error::from_kafka)
    }

    /// The next record (also drives rebalances).
    pub async fn recv(&self) -> KafkaResult<BorrowedMessage<'_>> {
        self.inner.recv().await
    }

    /// Assignment changes since the last call, oldest first.
    pub fn take_changes(&self) -> Vec<AssignmentChange> {
        std::mem::take(
            &mut *self
                .inner
                .context()
                .changes
                .lock()
                .expect("assignment lock"),
        )
    }

    /// The partition's high watermark (offset of the next record to be written) as of the
    /// last statistics report; `None` before the first one.
    pub fn high_watermark(&self, partition: i32) -> Option<i64> {
        self.inner
            .context()
            .high_watermarks
            .lock()
            .expect("watermark lock")
            .get(&partition)
            .copied()
    }

    /// Moves an assigned partition's position to `next_offset` (after a fenced commit, the
    /// partition is re-read from what the tables hold).
    pub fn seek(&self, partition: i32, next_offset: i64) -> Result<()> {
        self.inner
            .seek(
                &self.topic,
                partition,
                Offset::Offset(next_offset),
                WATERMARK_TIMEOUT,
            )
            .map_err(Error::from_kafka)
    }

    /// Stops fetching an assigned partition (one whose log went backwards).
    pub fn pause(&self, partition: i32) -> Result<()> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.topic, partition);
        self.inner.pause(&tpl).map_err(Error::from_kafka)
    }

    /// Commits each `(partition, next_offset)` (last processed + 1), synchronously, in one
    /// OffsetCommit request: a round of partitions flushed together waits for one round trip,
    /// not one per partition. An error fails them all (the caller re-reads each).
    pub fn commit(&self, offsets: &[(i32, i64)]) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::with_capacity(offsets.len());
        for &(partition, next_offset) in offsets {
            tpl.add_partition_offset(&self.topic, partition, Offset::Offset(next_offset))
                .map_err(Error::from_kafka)?;
        }
        self.inner
            .commit(&tpl, rdkafka::consumer::CommitMode::Sync)
            .map_err(Error::from_kafka)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The queue bound reaches librdkafka, with the short wait, and `nines`' accepted range
    /// for it (src/config.rs) is librdkafka's own: both ends make a client, one past the top
    /// is refused by librdkafka. No broker is needed to make a client.
    #[test]
    fn the_consumer_queue_reaches_librdkafka_within_its_range() {
        let client = |kbytes: u32| {
            let cfg = BusConfig {
                consumer_queue_kbytes: kbytes,
                ..BusConfig::default()
            };
            client_config(&cfg, "127.0.0.1:1")
        };
        let config = client(4096);
        assert_eq!(config.get("queued.max.messages.kbytes"), Some("4096"));
        assert_eq!(config.get("fetch.queue.backoff.ms"), Some("10"));
        for kbytes in [1024, 2_097_151] {
            assert!(
                client(kbytes).create::<BaseConsumer>().is_ok(),
                "librdkafka refused {kbytes} KiB"
            );
        }
        let Err(err) = client(2_097_152).create::<BaseConsumer>() else {
            panic!("librdkafka's range ends at 2097151");
        };
        assert!(
            err.to_string().contains("queued.max.messages.kbytes"),
            "{err}"
        );
    }
}
