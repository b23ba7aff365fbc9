//! The aggregator role as a library: consume, decode, roll up, write durable Parquet, then
//! commit. The binary (`src/roles.rs`) only wires it: it owns the CLI, the configuration
//! file and the process. This is the only crate that commits Kafka offsets.
//!
//! Per partition: records accumulate in a [`PartitionBuffer`] until it holds
//! `flush_events` events or is `flush_interval` old; then the store writes every file and
//! the checkpoint, and only then is the partition's offset committed to Kafka. Revoked
//! partitions drop their buffers (the next owner resumes from the durable checkpoint).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use fail::fail_point;
use metrics::{counter, gauge, histogram};
use nines_aggregate::{BatchKey, DedupWindow, PartitionBuffer, Seen};
use nines_bus::BusConfig;
use nines_bus::consumer::Message as _;
use nines_bus::consumer::{AssignmentChange, GroupConsumer, ResumeFn};
use nines_bus::producer::AckProducer;
use nines_model::schema::BUS_RECORD_VERSION;
use nines_proto::v1::EventBatch;
use nines_store::Store;
use nines_store::faults::crash;
use prost::Message as _;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

pub use config::AggregateConfig;

mod config;

/// What the aggregator reads of the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub bus: BusConfig,
    pub aggregate: AggregateConfig,
}

struct Open {
    buffer: PartitionBuffer,
    since: Instant,
}

/// What the aggregator keeps per owned partition besides its open buffer.
struct Owned {
    dedup: DedupWindow,
    /// Offsets past the checkpoint already acknowledged by the dead-letter topic.
    dead_lettered: BTreeSet<i64>,
    /// Idempotency lines appended since the log was last compacted.
    appended: usize,
}

/// Runs the aggregator on `store` until `stop`, then flushes and commits what it holds.
pub async fn run(
    cfg: Settings,
    store: Store,
    bootstrap: String,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let recover_store = store.clone();
    let resume: ResumeFn = Arc::new(move |topic, partition| {
        match recover_store.recover(topic, partition) {
            Ok(next) => next,
            Err(e) => {
                // Resuming from Kafka's committed offset instead could duplicate rows: stop.
                error!(topic, partition, error = %e, "cannot recover partition; exiting");
                std::process::exit(2);
            }
        }
    });
    let consumer = GroupConsumer::new(&cfg.bus, &bootstrap, resume)?;
    let dead_letters = AckProducer::new(&cfg.bus, &bootstrap)?;
    let topic = cfg.bus.events_topic.clone();
    let mut open: HashMap<i32, Open> = HashMap::new();
    let mut owned: BTreeSet<i32> = BTreeSet::new();
    let mut state: HashMap<i32, Owned> = HashMap::new();
    // Partitions whose lag gauge has been set (zeroed once they are no longer owned).
    let mut lag_reported: BTreeSet<i32> = BTreeSet::new();
    let mut tick = tokio::time::interval(cfg.aggregate.flush_interval / 4);
    info!(group = %cfg.bus.consumer_group, %topic, "aggregator started");

    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {
                apply_changes(&consumer, &mut open, &mut state, &mut owned);
                let due: Vec<i32> = open
                    .iter()
                    .filter(|(_, o)| o.since.elapsed() >= cfg.aggregate.flush_interval)
                    .map(|(p, _)| *p)
                    .collect();
                for p in due {
                    flush(&store, &consumer, &topic, &cfg, &mut open, &mut state, p)?;
                }
                report_lag(&store, &consumer, &topic, &owned, &mut lag_reported);
            }
            msg = consumer.recv() => {
                apply_changes(&consumer, &mut open, &mut state, &mut owned);
                let m = match msg {
                    Ok(m) => m,
                    Err(e) => {
                        warn!(error = %e, "consumer error");
                        // Broker trouble repeats until it is resolved: do not spin.
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                        continue;
                    }
                };
                // A failing aggregator, for the test that `nines up` does not hide it
                // (tests/dead_role.rs): the loop returns an error at a consumed record.
                fail_point!("aggregate.record", |_| Err(anyhow::anyhow!(
                    "injected failure (fail point aggregate.record)"
                )));
                let (partition, offset) = (m.partition(), m.offset());
                counter!("nines_aggregate_records_total").increment(1);
                if !owned.contains(&partition) {
                    // Fetched before a revocation we have already applied.
                    continue;
                }
                let entry = open.entry(partition).or_insert_with(|| Open {
                    buffer: PartitionBuffer::new(partition),
                    since: Instant::now(),
                });
                let part = match state.entry(partition) {
                    std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(load_window(&store, &topic, &cfg, partition)?)
                    }
                };
                let payload = m.payload().unwrap_or_default();
                match decode(payload) {
                    Ok(batch) if !batch.batch_id.is_empty() => {
                        let seen = Seen {
                            key: BatchKey {
                                tenant: batch
                                    .resource
                                    .as_ref()
                                    .map(|r| r.tenant.clone())
                                    .unwrap_or_default(),
                                batch_id: batch.batch_id.clone(),
                                part: batch.part,
                                fingerprint: BatchKey::fingerprint_of(&batch.content_fingerprint),
                            },
                            offset,
                            seen_at: now_ns(),
                        };
                        let early = part.dedup.evicted_early();
                        let new = part.dedup.insert(seen.clone());
                        if part.dedup.evicted_early() > early {
                            counter!("nines_aggregate_dedup_evicted_early_total")
                                .increment(part.dedup.evicted_early() - early);
                        }
                        if new {
                            entry.buffer.add(&batch, offset);
                            entry.buffer.note_seen(seen);
                            part.appended += 1;
                        } else {
                            counter!("nines_aggregate_duplicate_batches_total").increment(1);
                            info!(partition, offset, batch_id = %batch.batch_id, "dropping a retried batch already stored");
                            entry.buffer.skip(offset);
                        }
                    }
                    Ok(batch) => entry.buffer.add(&batch, offset),
                    Err(reason) => {
                        if part.dead_lettered.contains(&offset) {
                            // A replay after a crash before this record's flush: sent already.
                            info!(partition, offset, "record already dead-lettered");
                        } else {
                            dead_letter(&dead_letters, &cfg.bus.dead_letter_topic, &m, &reason)
                                .await?;
                            tokio::task::block_in_place(|| {
                                store.note_dead_letter(&topic, partition, offset)
                            })
                            .context("noting a dead letter")?;
                            part.dead_lettered.insert(offset);
                        }
                        entry.buffer.skip(offset);
                    }
                }
                if entry.buffer.events() >= cfg.aggregate.flush_events
                    || entry.buffer.bytes() >= cfg.aggregate.flush_bytes
                {
                    flush(&store, &consumer, &topic, &cfg, &mut open, &mut state, partition)?;
                }
            }
        }
    }
    // Graceful stop: everything buffered becomes durable and committed.
    apply_changes(&consumer, &mut open, &mut state, &mut owned);
    let partitions: Vec<i32> = open.keys().copied().collect();
    for p in partitions {
        flush(&store, &consumer, &topic, &cfg, &mut open, &mut state, p)?;
    }
    dead_letters.flush(cfg.bus.delivery_timeout)?;
    info!("aggregator stopped");
    Ok(())
}

/// The idempotency window of a partition, as its durable log left it.
fn load_window(
    store: &Store,
    topic: &str,
    cfg: &Settings,
    partition: i32,
) -> anyhow::Result<Owned> {
    let mut dedup = DedupWindow::new(
        cfg.aggregate.dedup_window.as_nanos() as i64,
        cfg.aggregate.dedup_max_batches,
        cfg.aggregate.dedup_max_bytes,
    );
    let seen = tokio::task::block_in_place(|| store.seen_batches(topic, partition))
        .context("reading the idempotency log")?;
    let lines = seen.len();
    for s in seen {
        dedup.insert(s);
    }
    info!(
        partition,
        remembered = dedup.len(),
        "idempotency window loaded"
    );
    let dead_lettered =
        tokio::task::block_in_place(|| store.dead_letters_beyond_checkpoint(topic, partition))
            .context("reading the dead-letter log")?;
    Ok(Owned {
        dedup,
        dead_lettered,
        appended: lines,
    })
}

fn decode(payload: &[u8]) -> Result<EventBatch, String> {
    let batch =
        EventBatch::decode(payload).map_err(|e| format!("not a nines.v1.EventBatch: {e}"))?;
    if batch.schema_version != BUS_RECORD_VERSION {
        return Err(format!(
            "unknown schema_version {} (this aggregator reads {BUS_RECORD_VERSION})",
            batch.schema_version
        ));
    }
    Ok(batch)
}

async fn dead_letter(
    producer: &AckProducer,
    topic: &str,
    m: &nines_bus::consumer::BorrowedMessage<'_>,
    reason: &str,
) -> anyhow::Result<()> {
    let partition = m.partition().to_string();
    let offset = m.offset().to_string();
    warn!(partition = m.partition(), offset = m.offset(), %reason, "dead-lettering record");
    producer
        .send_with_headers(
            topic,
            m.key().unwrap_or_default(),
            m.payload().unwrap_or_default(),
            &[
                ("nines.reason", reason.as_bytes()),
                ("nines.source.topic", m.topic().as_bytes()),
                ("nines.source.partition", partition.as_bytes()),
                ("nines.source.offset", offset.as_bytes()),
            ],
        )
        .await
        .context("writing to the dead-letter topic")?;
    counter!("nines_aggregate_dead_letters_total").increment(1);
    Ok(())
}

/// Applies rebalances. An assigned partition restarts from its durable checkpoint, so any
/// in-memory state of it (open buffer, idempotency keys not yet durable) is dropped: keeping
/// keys of records that were never written would make their re-delivery look like a retry.
fn apply_changes(
    consumer: &GroupConsumer,
    open: &mut HashMap<i32, Open>,
    state: &mut HashMap<i32, Owned>,
    owned: &mut BTreeSet<i32>,
) {
    for change in consumer.take_changes() {
        match change {
            AssignmentChange::Assigned(ps) => {
                info!(partitions = ?ps, "assigned");
                owned.clear();
                owned.extend(ps);
                open.clear();
                state.clear();
            }
            AssignmentChange::Revoked(ps) => {
                info!(partitions = ?ps, "revoked");
                for p in ps {
                    owned.remove(&p);
                    open.remove(&p);
                    state.remove(&p);
                }
            }
        }
    }
}

/// Sets `nines_aggregate_consumer_lag_records{partition}` for every owned partition: records
/// in the partition (its high watermark) not yet in a durable file. The durable position is
/// the store's checkpoint, the one a restart would resume from, never the Kafka commit.
fn report_lag(
    store: &Store,
    consumer: &GroupConsumer,
    topic: &str,
    owned: &BTreeSet<i32>,
    reported: &mut BTreeSet<i32>,
) {
    gauge!("nines_aggregate_partitions_owned").set(owned.len() as f64);
    for p in reported.difference(owned) {
        gauge!("nines_aggregate_consumer_lag_records", "partition" => p.to_string()).set(0.0);
    }
    reported.retain(|p| owned.contains(p));
    for &p in owned {
        let next = match store.checkpoint(topic, p) {
            Ok(c) => c.map_or(0, |c| c.last_offset + 1),
            Err(e) => {
                warn!(partition = p, error = %e, "cannot read checkpoint for lag");
                continue;
            }
        };
        if let Some(high) = consumer.high_watermark(p) {
            reported.insert(p);
            gauge!("nines_aggregate_consumer_lag_records", "partition" => p.to_string())
                .set((high - next).max(0) as f64);
        }
    }
}

/// Makes a partition's buffer durable, commits its offset, then compacts its idempotency log
/// once that holds far more lines than the window (every key in memory is durable by then).
fn flush(
    store: &Store,
    consumer: &GroupConsumer,
    topic: &str,
    cfg: &Settings,
    open: &mut HashMap<i32, Open>,
    state: &mut HashMap<i32, Owned>,
    partition: i32,
) -> anyhow::Result<()> {
    flush_buffer(store, consumer, topic, open, partition)?;
    let Some(o) = state.get_mut(&partition) else {
        return Ok(());
    };
    if o.appended <= cfg.aggregate.dedup_max_batches.max(o.dedup.len() * 2) {
        return Ok(());
    }
    tokio::task::block_in_place(|| {
        store.compact_seen(topic, partition, o.dedup.entries().into_iter())
    })
    .context("compacting the idempotency log")?;
    o.appended = o.dedup.len();
    Ok(())
}

fn flush_buffer(
    store: &Store,
    consumer: &GroupConsumer,
    topic: &str,
    open: &mut HashMap<i32, Open>,
    partition: i32,
) -> anyhow::Result<()> {
    let Some(mut o) = open.remove(&partition) else {
        return Ok(());
    };
    let Some(flush) = o.buffer.take().context("building batches")? else {
        return Ok(());
    };
    let started = Instant::now();
    tokio::task::block_in_place(|| store.commit(topic, &flush)).context("writing files")?;
    fail_point!("aggregate.before_commit", |_| crash(
        "aggregate.before_commit"
    ));
    consumer
        .commit(partition, flush.last_offset + 1)
        .map_err(|e| warn!(partition, error = %e, "offset commit failed; durable files still rule"))
        .ok();
    histogram!("nines_aggregate_flush_duration_seconds").record(started.elapsed().as_secs_f64());
    counter!("nines_aggregate_flushes_total").increment(1);
    counter!("nines_aggregate_events_total").increment(flush.events);
    info!(
        partition,
        first_offset = flush.first_offset,
        last_offset = flush.last_offset,
        events = flush.events,
        ms = started.elapsed().as_millis() as u64,
        "flushed"
    );
    Ok(())
}

/// The aggregator's clock, in nanoseconds since the epoch (the idempotency window's time).
fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}
