//! The aggregator role as a library: consume, decode, roll up, commit to the Delta tables,
//! then commit the Kafka offset. The binary (`src/roles.rs`) only wires it: it owns the CLI,
//! the configuration file and the process. This is the only crate that commits Kafka offsets.
//!
//! Per partition: records accumulate in a [`PartitionBuffer`] until it holds
//! `flush_events` events or is `flush_interval` old; then the store commits the files to
//! every table with the partition's offset in the same Delta commit (`txn`), and only then is
//! the offset committed to Kafka. Buffers at least half that old go with a due one, in the
//! same commits (one per table for them all), so partitions fed together flush together. On
//! assignment a partition resumes after the smallest offset the tables hold; a replayed
//! record is left out of the tables that hold it. Revoked or fenced partitions drop their
//! buffers.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ::metrics::{counter, gauge, histogram};
use anyhow::Context;
use fail::fail_point;
use nines_aggregate::PartitionBuffer;
use nines_bus::BusConfig;
use nines_bus::consumer::Message as _;
use nines_bus::consumer::{AssignmentChange, GroupConsumer, ResumeFn};
use nines_bus::producer::AckProducer;
use nines_store::faults::crash;
use nines_store::{CommitOutcome, Pending, Positions, Store};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

pub use config::AggregateConfig;
use nines_model::clock::now_ns;
use nines_model::flush::Flush;
use nines_model::idempotency::{self, Key, Seen};

mod config;
pub mod metrics;

/// What the aggregator reads of the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub bus: BusConfig,
    pub aggregate: AggregateConfig,
    /// Told, every tick, what needs an operator (`None`: nothing).
    pub on_stall: StallReport,
}

/// Receives a description of the stalled partitions (`None` when there are none), e.g. for
/// `/readyz`.
#[derive(Clone)]
pub struct StallReport(pub Arc<dyn Fn(Option<String>) + Send + Sync>);

impl std::fmt::Debug for StallReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StallReport")
    }
}

impl Default for StallReport {
    fn default() -> Self {
        Self(Arc::new(|_| {}))
    }
}

/// What the stall report says of `stalled`.
fn describe_stalls(stalled: &HashMap<i32, (i64, i64)>) -> Option<String> {
    if stalled.is_empty() {
        return None;
    }
    let mut parts: Vec<_> = stalled.iter().collect();
    parts.sort();
    Some(
        parts
            .into_iter()
            .map(|(p, (next, seen))| {
                format!("partition {p} stalled: the tables hold offsets below {next}, the broker's log is at {seen} (nines reset-offsets)")
            })
            .collect::<Vec<_>>()
            .join("; "),
    )
}

struct Open {
    buffer: PartitionBuffer,
    since: Instant,
}

/// What the aggregator keeps per owned partition besides its open buffer.
struct Owned {
    window: idempotency::Window,
    /// Offsets past the resume point already acknowledged by the dead-letter topic.
    dead_lettered: BTreeSet<i64>,
    /// Where the partition stands in every table (the `txn` versions this writer expects).
    positions: Positions,
    /// When this writer last committed the partition to each table.
    committed_at: HashMap<&'static str, Instant>,
    /// Set after a seek (fencing): records fetched before it, below the new position, are
    /// dropped instead of being taken for a log that went backwards.
    after_seek: bool,
    /// The last offset this writer has flushed for the partition: every record from the
    /// resume point up to it has been read here and is in every table that needs it.
    flushed_to: Option<i64>,
}

/// A table without data in a flush still gets a `txn`-only commit once its version is this
/// old, so a restart never replays far for a table that rarely has rows.
const TXN_REFRESH: Duration = Duration::from_secs(60);

/// Positions read at assignment (by the rebalance callback), taken by the loop.
type Resumed = Arc<Mutex<HashMap<i32, Positions>>>;

/// Runs the aggregator on `store` until `stop`, then flushes and commits what it holds.
pub async fn run(
    cfg: Settings,
    store: Store,
    bootstrap: String,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let resumed: Resumed = Arc::default();
    let (resume_store, resume_into) = (store.clone(), resumed.clone());
    let runtime = tokio::runtime::Handle::current();
    let resume: ResumeFn = Arc::new(move |topic, partition| {
        let read = tokio::task::block_in_place(|| {
            runtime.block_on(resume_store.positions(topic, partition))
        });
        match read {
            Ok(positions) => {
                let next = positions.resume();
                resume_into
                    .lock()
                    .expect("resume lock")
                    .insert(partition, positions);
                Some(next)
            }
            Err(e) => {
                // Resuming from Kafka's committed offset instead could duplicate rows: stop.
                error!(topic, partition, error = %e, "cannot read the partition's position; exiting");
                std::process::exit(2);
            }
        }
    });
    let mut consumer = GroupConsumer::new(&cfg.bus, &bootstrap, resume.clone())?;
    let dead_letters = AckProducer::new(&cfg.bus, &bootstrap)?;
    let topic = cfg.bus.events_topic.clone();
    let mut open: HashMap<i32, Open> = HashMap::new();
    let mut owned: BTreeSet<i32> = BTreeSet::new();
    let mut state: HashMap<i32, Owned> = HashMap::new();
    // Partitions whose log went backwards: never read until an operator resets them.
    let mut stalled: HashMap<i32, (i64, i64)> = HashMap::new();
    // Partitions whose lag gauge has been set (zeroed once they are no longer owned).
    let mut lag_reported: BTreeSet<i32> = BTreeSet::new();
    let mut tick = tokio::time::interval(cfg.aggregate.flush_interval / 4);
    // The orphan watchdog: tansu 0.6 can end a rebalance with partitions assigned to a
    // member it has already expired (one killed between its join and its sync); nobody
    // reads them and no heartbeat starts a rebalance. A partition this member does not own,
    // with records past what the tables hold and no progress in the tables for
    // `orphaned_after`, makes this member rejoin the group (every partition is reassigned).
    // Only the tables and ListOffsets are asked: tansu's DescribeGroups fails and drops
    // the connection.
    let group_check_every = (cfg.bus.session_timeout * 3).max(Duration::from_secs(5));
    let orphaned_after = (cfg.bus.session_timeout * 5)
        .max(cfg.aggregate.flush_interval * 5)
        .max(Duration::from_secs(15));
    let mut group_checked = Instant::now();
    let mut unowned_progress: HashMap<i32, (i64, Instant)> = HashMap::new();
    // Rejoins in a row that found this member owning nothing: after one that brought no
    // partitions, the next joins as a new member (a new client). tansu 0.6 can also leave
    // the group unsettled after a member dies mid-rebalance, the survivor revoked and never
    // assigned again however often it unsubscribes and subscribes (the crash-loop test, two
    // full runs of the suite in a row).
    let mut empty_rejoins = 0_u32;
    let mut new_member = false;
    info!(group = %cfg.bus.consumer_group, %topic, "aggregator started");

    loop {
        // The oldest buffer is flushed when it is `flush_interval` old, not at the next tick
        // after (a quarter of the interval later, at worst).
        let next_due = next_due(&open, cfg.aggregate.flush_interval);
        tokio::select! {
            () = stop.cancelled() => break,
            () = sleep_until(next_due) => {
                apply_changes(&consumer, &mut open, &mut state, &mut owned, &mut stalled);
                let due = due(&open, cfg.aggregate.flush_interval, Instant::now());
                flush(&store, &consumer, &topic, &cfg, &mut open, &mut state, &due).await?;
            }
            _ = tick.tick() => {
                apply_changes(&consumer, &mut open, &mut state, &mut owned, &mut stalled);
                let due = due(&open, cfg.aggregate.flush_interval, Instant::now());
                flush(&store, &consumer, &topic, &cfg, &mut open, &mut state, &due).await?;
                report_lag(&consumer, &state, &owned, &mut lag_reported, &stalled);
                (cfg.on_stall.0)(describe_stalls(&stalled));
                if group_checked.elapsed() >= group_check_every {
                    group_checked = Instant::now();
                    let orphaned = orphaned_partitions(
                        &store, &consumer, &topic, &owned, &mut unowned_progress, orphaned_after,
                    )
                    .await;
                    if !orphaned.is_empty() {
                        counter!(metrics::GROUP_REJOINS).increment(1);
                        unowned_progress.clear();
                        empty_rejoins = if owned.is_empty() { empty_rejoins + 1 } else { 0 };
                        if empty_rejoins >= 2 {
                            warn!(?orphaned, "partitions with records nobody has read for a while, and rejoining brought none: joining as a new member");
                            empty_rejoins = 0;
                            new_member = true;
                        } else {
                            warn!(?orphaned, "partitions with records nobody has read for a while: rejoining the group");
                            if let Err(e) = consumer.rejoin() {
                                warn!(error = %e, "rejoining the group failed");
                            }
                        }
                    }
                }
            }
            msg = consumer.recv() => {
                apply_changes(&consumer, &mut open, &mut state, &mut owned, &mut stalled);
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
                counter!(metrics::RECORDS).increment(1);
                if !owned.contains(&partition) || stalled.contains_key(&partition) {
                    // Fetched before a revocation we have already applied, or stalled.
                    continue;
                }
                let entry = open.entry(partition).or_insert_with(|| Open {
                    buffer: PartitionBuffer::new(partition),
                    since: Instant::now(),
                });
                let part = match state.entry(partition) {
                    std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                    std::collections::hash_map::Entry::Vacant(v) => {
                        let known = resumed.lock().expect("resume lock").remove(&partition);
                        let positions = match known {
                            Some(p) => p,
                            None => store.positions(&topic, partition).await?,
                        };
                        v.insert(load_window(&store, &topic, &cfg, partition, positions).await?)
                    }
                };
                if offset < part.positions.resume() && part.after_seek {
                    // Fetched before the seek of a fenced partition: the tables hold it.
                    continue;
                }
                if offset < part.positions.resume() {
                    // The broker handed out an offset below what the tables hold: its log
                    // went backwards (wiped, or another broker). Writing would mix records.
                    let next = part.positions.resume();
                    error!(partition, offset, next, "offset below the committed tables: the log went backwards; partition stalled (see `nines reset-offsets`)");
                    stalled.insert(partition, (next, offset));
                    open.remove(&partition);
                    state.remove(&partition);
                    if let Err(e) = consumer.pause(partition) {
                        warn!(partition, error = %e, "could not pause the stalled partition");
                    }
                    continue;
                }
                let held = part.positions.clone();
                let payload = m.payload().unwrap_or_default();
                let mut attributes = Vec::new();
                match nines_record::read(payload, &mut attributes).map_err(|e| e.to_string()) {
                    Ok(record) if !record.batch.batch_id.is_empty() => {
                        let batch = &record.batch;
                        let seen = Seen {
                            key: Key {
                                tenant: batch
                                    .resource
                                    .as_ref()
                                    .map(|r| r.tenant.clone())
                                    .unwrap_or_default(),
                                batch_id: batch.batch_id.clone(),
                                part: batch.part,
                                fingerprint: Key::fingerprint_of(&batch.content_fingerprint),
                            },
                            offset,
                            seen_at: now_ns(),
                        };
                        let early = part.window.evicted_early();
                        let new = part.window.insert(seen.clone());
                        if part.window.evicted_early() > early {
                            counter!(metrics::IDEMPOTENCY_KEYS_EVICTED)
                                .increment(part.window.evicted_early() - early);
                        }
                        if new {
                            entry.buffer.add_to(&record, offset, |t| !held.holds(t, offset));
                            entry.buffer.note_seen(seen);
                        } else {
                            counter!(metrics::DUPLICATE_RECORDS).increment(1);
                            info!(partition, offset, batch_id = %batch.batch_id, "dropping a retried batch already stored");
                            entry.buffer.skip(offset);
                        }
                    }
                    Ok(record) => entry.buffer.add_to(&record, offset, |t| !held.holds(t, offset)),
                    Err(reason) => {
                        if part.dead_lettered.contains(&offset) {
                            // A replay after a crash before this record's flush: sent already.
                            info!(partition, offset, "record already dead-lettered");
                        } else {
                            dead_letter(&dead_letters, &cfg.bus.dead_letter_topic, &m, &reason)
                                .await?;
                            store
                                .note_dead_letter(&topic, partition, offset)
                                .await
                                .context("noting a dead letter")?;
                            part.dead_lettered.insert(offset);
                        }
                        entry.buffer.skip(offset);
                    }
                }
                if entry.buffer.events() >= cfg.aggregate.flush_events
                    || entry.buffer.bytes() >= cfg.aggregate.flush_bytes
                {
                    flush(&store, &consumer, &topic, &cfg, &mut open, &mut state, &[partition]).await?;
                }
            }
        }
        if std::mem::take(&mut new_member) && owned.is_empty() {
            // Nothing is owned, so nothing buffered is lost. The old client leaves the group
            // as it closes (bounded by the session timeout).
            let fresh = GroupConsumer::new(&cfg.bus, &bootstrap, resume.clone())?;
            let old = std::mem::replace(&mut consumer, fresh);
            tokio::task::block_in_place(|| drop(old));
        }
    }
    // Graceful stop: everything buffered becomes durable and committed.
    apply_changes(&consumer, &mut open, &mut state, &mut owned, &mut stalled);
    let partitions: Vec<i32> = open.keys().copied().collect();
    flush(
        &store,
        &consumer,
        &topic,
        &cfg,
        &mut open,
        &mut state,
        &partitions,
    )
    .await?;
    settle(&store, &topic, &state).await;
    dead_letters.flush(cfg.bus.delivery_timeout)?;
    info!("aggregator stopped");
    Ok(())
}

/// At a graceful stop, after the last flush: moves every table of every partition held up to
/// the last offset this writer flushed for it ([`settle_to`]), by commits of the `txn` alone.
/// A table with no rows since its last commit (`deploys` and `incidents` between deploys) is
/// otherwise left behind by up to [`TXN_REFRESH`], and the partition's next reader, which
/// resumes after the lowest table, would read those records again only to drop them as
/// stored: the restart's first seconds spent decoding old records while fresh ones wait. A
/// partition another member has taken meanwhile is fenced and left to it.
async fn settle(store: &Store, topic: &str, state: &HashMap<i32, Owned>) {
    let mut partitions: Vec<_> = state.iter().collect();
    partitions.sort_by_key(|(p, _)| **p);
    for (&partition, part) in partitions {
        let Some(high) = settle_to(&part.positions, part.flushed_to) else {
            continue;
        };
        let txn_only = Flush {
            partition,
            first_offset: high + 1,
            last_offset: high,
            events: 0,
            batches: Vec::new(),
            seen: Vec::new(),
        };
        match store
            .commit(topic, &txn_only, &part.positions, |_| true)
            .await
        {
            Ok(CommitOutcome::Committed(_)) => {
                debug!(
                    partition,
                    offset = high,
                    "every table moved to the last offset flushed"
                );
            }
            Ok(CommitOutcome::Fenced(f)) => {
                warn!(
                    partition,
                    table = f.table,
                    "fenced while settling at stop: another member holds it"
                );
            }
            Err(e) => {
                warn!(partition, error = %e, "could not settle the partition's tables at stop")
            }
        }
    }
}

/// The offset a stop may move every table of a partition to: the last one this writer
/// flushed, if a table is behind it. Never a table's higher version: a table ahead of the
/// others (a crash between two tables' commits) does not vouch for the records the others
/// still lack, which only reading them again adds.
fn settle_to(positions: &Positions, flushed_to: Option<i64>) -> Option<i64> {
    let to = flushed_to?;
    (positions.resume() <= to).then_some(to)
}

/// When the oldest open buffer is `interval` old; `None` with none open.
fn next_due(open: &HashMap<i32, Open>, interval: Duration) -> Option<Instant> {
    open.values()
        .map(|o| o.since)
        .min()
        .map(|since| since + interval)
}

/// The partitions to flush at `now`, oldest first: none until a buffer is `interval` old,
/// then with it every buffer at least half as old. They share one commit per table, and
/// having flushed together they open and fall due together again: a steady stream flushes
/// all its partitions in one round, not in one round each.
fn due(open: &HashMap<i32, Open>, interval: Duration, now: Instant) -> Vec<i32> {
    let age = |o: &Open| now.saturating_duration_since(o.since);
    if !open.values().any(|o| age(o) >= interval) {
        return Vec::new();
    }
    let mut due: Vec<(Instant, i32)> = open
        .iter()
        .filter(|(_, o)| age(o) >= interval / 2)
        .map(|(p, o)| (o.since, *p))
        .collect();
    due.sort_unstable();
    due.into_iter().map(|(_, p)| p).collect()
}

/// Sleeps until `at`; forever without it.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Keeps the tables compact and bounded while the aggregator runs: every `cfg.interval`,
/// compacts each table, expires the days its retention no longer keeps, and vacuums. A
/// failure is logged and retried at the next round (another aggregator may have compacted
/// the same files first).
pub async fn maintain(store: Store, cfg: nines_store::StorageConfig, stop: CancellationToken) {
    if cfg.interval.is_zero() {
        return;
    }
    let mut tick = tokio::time::interval(cfg.interval);
    tick.tick().await;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {
                if let Err(e) = maintain_once(&store, &cfg).await {
                    warn!(error = %e, "table maintenance failed; retrying next round");
                }
            }
        }
    }
}

/// One round of maintenance over every table (what `nines compact` runs).
pub async fn maintain_once(
    store: &Store,
    cfg: &nines_store::StorageConfig,
) -> anyhow::Result<Vec<(&'static str, nines_store::CompactionReport)>> {
    let mut out = Vec::new();
    for table in nines_store::layout::all_tables() {
        if let Some(keep) = cfg.retention.get(table) {
            store.expire(table, *keep, now_ns()).await?;
        }
        let report = store.compact(table, cfg.target_file_bytes).await?;
        store.vacuum(table, cfg.vacuum_grace).await?;
        out.push((table, report));
    }
    Ok(out)
}

/// The idempotency window of a partition, as the idempotency table left it, and the
/// dead-letter notes of records after its resume point.
async fn load_window(
    store: &Store,
    topic: &str,
    cfg: &Settings,
    partition: i32,
    positions: Positions,
) -> anyhow::Result<Owned> {
    let mut window = idempotency::Window::new(
        cfg.aggregate.idempotency_window.as_nanos() as i64,
        cfg.aggregate.idempotency_max_keys,
        cfg.aggregate.idempotency_max_bytes,
    );
    let since = now_ns() - cfg.aggregate.idempotency_window.as_nanos() as i64;
    let idempotency::Remembered {
        seen,
        dead_lettered,
    } = store
        .remembered(topic, partition, since, positions.resume())
        .await
        .context("reading the idempotency table")?;
    for s in seen {
        window.insert(s);
    }
    info!(
        partition,
        remembered = window.len(),
        resume = positions.resume(),
        "partition state loaded"
    );
    Ok(Owned {
        window,
        dead_lettered,
        positions,
        committed_at: HashMap::new(),
        after_seek: false,
        flushed_to: None,
    })
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
    counter!(metrics::DEAD_LETTERS).increment(1);
    Ok(())
}

/// Partitions this member does not own whose log ends past what the tables hold and whose
/// position in the tables has not moved for `after` (see the orphan watchdog in `run`).
async fn orphaned_partitions(
    store: &Store,
    consumer: &GroupConsumer,
    topic: &str,
    owned: &BTreeSet<i32>,
    progress: &mut HashMap<i32, (i64, Instant)>,
    after: Duration,
) -> Vec<i32> {
    let partitions = match tokio::task::block_in_place(|| consumer.partition_count()) {
        Ok(n) => n,
        Err(e) => {
            debug!(error = %e, "orphan check: no metadata");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for p in 0..partitions {
        if owned.contains(&p) {
            progress.remove(&p);
            continue;
        }
        let (Ok(positions), Ok(end)) = (
            store.positions(topic, p).await,
            tokio::task::block_in_place(|| consumer.log_end(p)),
        ) else {
            continue;
        };
        let resume = positions.resume();
        if end <= resume {
            progress.remove(&p);
            continue;
        }
        let seen = progress.entry(p).or_insert((resume, Instant::now()));
        if seen.0 != resume {
            *seen = (resume, Instant::now());
        } else if seen.1.elapsed() >= after {
            out.push(p);
        }
    }
    out
}

/// Applies rebalances. An assigned partition restarts from what the tables hold, so any
/// in-memory state of it (open buffer, idempotency keys not yet durable) is dropped: keeping
/// keys of records that were never written would make their re-delivery look like a retry.
fn apply_changes(
    consumer: &GroupConsumer,
    open: &mut HashMap<i32, Open>,
    state: &mut HashMap<i32, Owned>,
    owned: &mut BTreeSet<i32>,
    stalled: &mut HashMap<i32, (i64, i64)>,
) {
    for change in consumer.take_changes() {
        match change {
            AssignmentChange::Assigned(ps) => {
                info!(partitions = ?ps, "assigned");
                owned.clear();
                owned.extend(ps);
                open.clear();
                state.clear();
                stalled.clear();
            }
            AssignmentChange::Revoked(ps) => {
                info!(partitions = ?ps, "revoked");
                for p in ps {
                    owned.remove(&p);
                    open.remove(&p);
                    state.remove(&p);
                    stalled.remove(&p);
                }
            }
            AssignmentChange::Stalled {
                partition,
                next,
                log_end,
            } => {
                error!(
                    partition,
                    next,
                    log_end,
                    "partition stalled: its log ends before the offset the tables hold"
                );
                stalled.insert(partition, (next, log_end));
            }
        }
    }
}

/// Sets `nines_aggregate_consumer_lag_records{partition}` for every owned partition: records
/// in the partition (its high watermark) after the last offset the tables hold (a table
/// without rows in the later records holds them as well), never from the Kafka commit. A stalled partition has
/// `nines_aggregate_partition_stalled{partition}` = 1.
fn report_lag(
    consumer: &GroupConsumer,
    state: &HashMap<i32, Owned>,
    owned: &BTreeSet<i32>,
    reported: &mut BTreeSet<i32>,
    stalled: &HashMap<i32, (i64, i64)>,
) {
    gauge!(metrics::PARTITIONS_OWNED).set(owned.len() as f64);
    gauge!(metrics::PARTITIONS_STALLED).set(stalled.len() as f64);
    for p in reported.difference(owned) {
        metrics::consumer_lag(*p, 0.0);
        metrics::partition_stalled(*p, false);
    }
    reported.retain(|p| owned.contains(p));
    for &p in owned {
        metrics::partition_stalled(p, stalled.contains_key(&p));
        reported.insert(p);
        let Some(next) = state
            .get(&p)
            .map(|o| o.positions.high().map_or(0, |h| h + 1))
        else {
            continue;
        };
        if let Some(high) = consumer.high_watermark(p) {
            metrics::consumer_lag(p, (high - next).max(0) as f64);
        }
    }
}

/// Commits the buffers of `partitions` to the tables, one commit per table for them all
/// ([`Store::commit_group`]), then their offsets to Kafka in one request. A fenced commit
/// (another writer moved one of them) drops the state of every partition in it and re-reads
/// their positions from the tables, as does a failed Kafka commit: nothing this writer held
/// is trusted any more.
async fn flush(
    store: &Store,
    consumer: &GroupConsumer,
    topic: &str,
    cfg: &Settings,
    open: &mut HashMap<i32, Open>,
    state: &mut HashMap<i32, Owned>,
    partitions: &[i32],
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut flushes = Vec::with_capacity(partitions.len());
    for p in partitions {
        let Some(mut o) = open.remove(p) else {
            continue;
        };
        let Some(flush) = o.buffer.take().context("building batches")? else {
            continue;
        };
        if state.contains_key(p) {
            flushes.push(flush);
        }
    }
    if flushes.is_empty() {
        return Ok(());
    }
    let stale: Vec<_> = flushes
        .iter()
        .map(|f| {
            let committed_at = &state[&f.partition].committed_at;
            move |t: &str| {
                committed_at
                    .get(t)
                    .is_none_or(|at| at.elapsed() >= TXN_REFRESH)
            }
        })
        .collect();
    let group: Vec<Pending> = flushes
        .iter()
        .zip(&stale)
        .map(|(flush, stale)| Pending {
            flush,
            expected: &state[&flush.partition].positions,
            stale,
        })
        .collect();
    let outcome = store
        .commit_group(topic, &group)
        .await
        .context("committing to the tables")?;
    let positions = match outcome {
        CommitOutcome::Committed(p) => p,
        CommitOutcome::Fenced(f) => {
            let partitions: Vec<i32> = flushes.iter().map(|f| f.partition).collect();
            warn!(partition = f.partition, table = f.table, expected = ?f.expected,
                stored = ?f.stored, flushed_with = ?partitions,
                "fenced by another writer: dropping the state of the partitions flushed together");
            counter!(metrics::FLUSHES_FENCED).increment(flushes.len() as u64);
            for p in partitions {
                reread(store, consumer, topic, cfg, state, p).await?;
            }
            return Ok(());
        }
    };
    for (flush, positions) in flushes.iter().zip(positions) {
        let part = state
            .get_mut(&flush.partition)
            .expect("owned, checked above");
        for (t, v) in &positions.by_table {
            if part.positions.by_table.get(t) != Some(v) {
                part.committed_at.insert(t, Instant::now());
            }
        }
        part.positions = positions;
        part.flushed_to = Some(flush.last_offset);
    }
    fail_point!("aggregate.before_commit", |_| crash(
        "aggregate.before_commit"
    ));
    let offsets: Vec<(i32, i64)> = flushes
        .iter()
        .map(|f| (f.partition, f.last_offset + 1))
        .collect();
    if let Err(e) = consumer.commit(&offsets) {
        // Not ignored: a member that cannot commit may have been expelled from the group.
        let partitions: Vec<i32> = offsets.iter().map(|o| o.0).collect();
        warn!(?partitions, error = %e, "Kafka offset commit failed: re-reading the partitions");
        counter!(metrics::OFFSET_COMMIT_FAILURES).increment(1);
        for p in partitions {
            reread(store, consumer, topic, cfg, state, p).await?;
        }
        return Ok(());
    }
    for flush in &flushes {
        counter!(metrics::FLUSHES).increment(1);
        counter!(metrics::EVENTS).increment(flush.events);
        info!(
            partition = flush.partition,
            first_offset = flush.first_offset,
            last_offset = flush.last_offset,
            events = flush.events,
            flushed_with = flushes.len(),
            ms = started.elapsed().as_millis() as u64,
            "flushed"
        );
    }
    histogram!(metrics::FLUSH_DURATION).record(started.elapsed().as_secs_f64());
    Ok(())
}

/// Drops a partition's state and moves its position to what the tables hold. If this member
/// no longer owns it, the seek fails and the coming rebalance settles it.
async fn reread(
    store: &Store,
    consumer: &GroupConsumer,
    topic: &str,
    cfg: &Settings,
    state: &mut HashMap<i32, Owned>,
    partition: i32,
) -> anyhow::Result<()> {
    state.remove(&partition);
    let positions = store
        .positions(topic, partition)
        .await
        .context("re-reading a fenced partition")?;
    let next = positions.resume();
    let mut part = load_window(store, topic, cfg, partition, positions).await?;
    part.after_seek = true;
    state.insert(partition, part);
    if let Err(e) = consumer.seek(partition, next) {
        warn!(partition, error = %e, "seek after fencing failed; waiting for the rebalance");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stop moves the tables up to what this writer flushed, never to a table that is
    /// ahead of the others: after a crash between tables, `requests` at 100 and `deploys`
    /// at 50 mean `deploys` lacks 51..100 until they are read again.
    #[test]
    fn a_stop_settles_tables_only_up_to_what_this_writer_flushed() {
        let at = |requests: i64, deploys: Option<i64>| Positions {
            by_table: [("requests", Some(requests)), ("deploys", deploys)].into(),
        };
        // Read 51..60 again and flushed them: up to 60, not to requests' 100.
        assert_eq!(settle_to(&at(100, Some(50)), Some(60)), Some(60));
        // Flushed nothing here: nothing to vouch for.
        assert_eq!(settle_to(&at(100, Some(50)), None), None);
        // Every table at or past what was flushed: nothing to move.
        assert_eq!(settle_to(&at(100, Some(100)), Some(100)), None);
        // deploys never committed: it moves to what was flushed (every record from 0 read).
        assert_eq!(settle_to(&at(70, None), Some(70)), Some(70));
    }

    /// Nothing is due before the oldest buffer is `flush_interval` old; then it is, oldest
    /// first, with every buffer at least half as old.
    #[test]
    fn buffers_are_due_at_their_interval_with_those_half_as_old() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let open: HashMap<i32, Open> = [(3, t0 + ms(1000)), (1, t0), (2, t0 + ms(1500))]
            .into_iter()
            .map(|(p, since)| {
                let buffer = PartitionBuffer::new(p);
                (p, Open { buffer, since })
            })
            .collect();
        let interval = ms(2000);
        assert_eq!(next_due(&open, interval), Some(t0 + ms(2000)));
        // Partition 3 is 1 s old, half the interval, by then; partition 2 is not.
        assert_eq!(
            due(&open, interval, t0 + ms(2000) - Duration::from_nanos(1)),
            Vec::<i32>::new()
        );
        assert_eq!(due(&open, interval, t0 + ms(2000)), vec![1, 3]);
        assert_eq!(due(&open, interval, t0 + ms(2499)), vec![1, 3]);
        assert_eq!(due(&open, interval, t0 + ms(2500)), vec![1, 3, 2]);
        // Without the oldest, the others wait for their own interval.
        let later: HashMap<i32, Open> = open.into_iter().filter(|(p, _)| *p != 1).collect();
        assert_eq!(due(&later, interval, t0 + ms(2999)), Vec::<i32>::new());
        assert_eq!(due(&later, interval, t0 + ms(3000)), vec![3, 2]);
        assert_eq!(next_due(&HashMap::new(), interval), None);
    }
}
