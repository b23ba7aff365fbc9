//! A plain consumer that reads topics from their beginning to their current end: the floor
//! an aggregator's consumption is measured against (`nines bench`).

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::{Error, Result};

/// What a drain read.
#[derive(Debug, Clone, Copy, Default)]
pub struct Drained {
    pub records: u64,
    pub bytes: u64,
    pub elapsed: Duration,
}

/// Reads every partition of `topic` (0..`partitions`) from offset 0 up to the high watermark
/// it has when the drain starts, with no group and no commits.
pub fn drain(brokers: &str, topic: &str, partitions: i32, timeout: Duration) -> Result<Drained> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "nines-bench-drain")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .map_err(Error::from_kafka)?;
    let mut ends = Vec::new();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        let (_, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .map_err(Error::from_kafka)?;
        ends.push(high);
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .map_err(Error::from_kafka)?;
    }
    consumer.assign(&tpl).map_err(Error::from_kafka)?;
    let started = Instant::now();
    let mut next = vec![0_i64; partitions as usize];
    let mut out = Drained::default();
    while next.iter().zip(&ends).any(|(n, e)| n < e) {
        if started.elapsed() > timeout {
            return Err(Error::Unavailable(format!(
                "drain of {topic} took over {timeout:?}"
            )));
        }
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.map_err(Error::from_kafka)?;
        let p = m.partition() as usize;
        if m.offset() < ends[p] {
            out.records += 1;
            out.bytes += m.payload().map_or(0, |b| b.len() as u64);
        }
        next[p] = m.offset() + 1;
    }
    out.elapsed = started.elapsed();
    Ok(out)
}
