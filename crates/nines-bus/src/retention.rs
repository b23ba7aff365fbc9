//! The embedded broker's log retention: records every consumer group has read and older than
//! `broker.log_retention` are deleted; a record a group has not read yet is never deleted,
//! however old.
//!
//! tansu 0.6 deletes by age alone, in its own maintenance pass (every
//! `broker.maintenance_interval`): records of a topic whose `cleanup.policy` holds `delete`
//! and whose timestamp is older than the topic's `retention.ms`. It answers Kafka's
//! DeleteRecords with a panic (an unwritten branch, decision 0006). So nines deletes nothing
//! itself. Each interval this guard reads, per topic, the oldest record some group still
//! needs (at or above the smallest committed offset of its partition), and sets the topic's `retention.ms` to
//! `max(log_retention, age of that record + 2 intervals)`: tansu's next passes then spare
//! it. A partition no group has committed on keeps everything, and so does the events topic
//! before any aggregator committed. Topics no group consumes (the dead-letter topic) are
//! kept by age alone, as Kafka does.
//!
//! The guard writes to tansu's database only when a topic's setting changes: once at start,
//! then while a consumer lags by more than the age. Its reads do not block the broker
//! (SQLite in WAL mode).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use libsql::Connection;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{Error, Result};

/// What the guard keeps.
#[derive(Debug, Clone)]
pub struct LogRetention {
    /// Records read by every group are deleted once older than this.
    pub age: Duration,
    /// How often tansu's maintenance and this guard run.
    pub interval: Duration,
    /// Topics kept whole until some group commits on them (the events topic).
    pub guarded_topics: Vec<String>,
}

/// One topic's setting after a pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRetention {
    /// The `retention.ms` the topic now has.
    pub retention_ms: i64,
    /// Whether it is above `age` because a group still needs an older record.
    pub held: bool,
}

impl LogRetention {
    /// The `retention.ms` of a topic whose oldest record still needed by a group has the
    /// timestamp `oldest` (ms since the epoch; None: no record is needed), at `now_ms`.
    pub fn retention_for(&self, oldest: Option<i64>, now_ms: i64) -> TopicRetention {
        let age_ms = i64::try_from(self.age.as_millis()).unwrap_or(i64::MAX);
        let step_ms = i64::try_from(self.interval.as_millis())
            .unwrap_or(i64::MAX)
            .max(1000);
        // tansu's pass may run up to one interval after this one, and this one may be late
        // by up to one interval.
        let margin_ms = step_ms.saturating_mul(2);
        let held_for = oldest.map_or(0, |ts| now_ms.saturating_sub(ts).saturating_add(margin_ms));
        if held_for > age_ms {
            // Rounded up to whole intervals, so a lagging consumer changes the setting once
            // per interval, not at every pass.
            TopicRetention {
                retention_ms: held_for.saturating_add(step_ms - 1) / step_ms * step_ms,
                held: true,
            }
        } else {
            TopicRetention {
                retention_ms: age_ms,
                held: false,
            }
        }
    }
}

/// Runs the guard on the database at `db_path` until `stop` fires, a pass every interval
/// from one interval after the start.
pub(crate) async fn guard(
    db_path: &str,
    cluster: &str,
    policy: LogRetention,
    stop: CancellationToken,
) {
    crate::metrics::describe_broker();
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + policy.interval,
        policy.interval,
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut conn: Option<Connection> = None;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if conn.is_none() {
            match open(db_path).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    warn!(error = %e, "broker log retention: cannot open the broker database; retrying next interval");
                    continue;
                }
            }
        }
        let Some(c) = conn.as_ref() else { continue };
        match pass(c, cluster, &policy, SystemTime::now()).await {
            Ok(topics) => {
                for (topic, r) in &topics {
                    crate::metrics::log_retention(topic, r.retention_ms as f64 / 1000.0, r.held);
                }
            }
            Err(e) => warn!(error = %e, "broker log retention pass failed; retrying next interval"),
        }
    }
}

/// One pass before the broker starts, on the database an earlier run left. A database
/// without tansu's tables yet (a first start) has nothing to keep.
pub(crate) async fn pass_once(db_path: &str, cluster: &str, policy: &LogRetention) -> Result<()> {
    let conn = open(db_path).await?;
    let mut rows = conn
        .query(
            "select count(*) from sqlite_master where type = 'table' and name = 'topic_configuration'",
            (),
        )
        .await
        .map_err(broker_err)?;
    let made = match rows.next().await.map_err(broker_err)? {
        Some(row) => row.get::<i64>(0).map_err(broker_err)? > 0,
        None => false,
    };
    drop(rows);
    if made {
        pass(&conn, cluster, policy, SystemTime::now()).await?;
    }
    Ok(())
}

async fn open(db_path: &str) -> Result<Connection> {
    let db = libsql::Builder::new_local(db_path)
        .build()
        .await
        .map_err(broker_err)?;
    let conn = db.connect().map_err(broker_err)?;
    // tansu holds the write lock for a few milliseconds at a time; wait for it.
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(broker_err)?;
    Ok(conn)
}

fn broker_err(e: libsql::Error) -> Error {
    Error::Broker(format!("broker database: {e}"))
}

/// One pass: computes each topic's `retention.ms` and writes those that changed.
pub async fn pass(
    conn: &Connection,
    cluster: &str,
    policy: &LogRetention,
    now: SystemTime,
) -> Result<BTreeMap<String, TopicRetention>> {
    let now_ms = i64::try_from(
        now.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(i64::MAX);

    // Per partition: the smallest offset a group committed (None: no group has), whether
    // any group consumes the topic, and the oldest record at or above that offset.
    let mut rows = conn
        .query(
            "select t.name, tp.id, \
               (select min(co.committed_offset) from consumer_offset co \
                  where co.topition = tp.id and co.committed_offset >= 0), \
               exists (select 1 from consumer_offset co2 join topition tp2 on tp2.id = co2.topition \
                  where tp2.topic = t.id) \
             from cluster c join topic t on t.cluster = c.id join topition tp on tp.topic = t.id \
             where c.name = ?1 and t.is_internal = 0",
            [cluster],
        )
        .await
        .map_err(broker_err)?;
    let mut partitions = Vec::new();
    while let Some(row) = rows.next().await.map_err(broker_err)? {
        let topic: String = row.get(0).map_err(broker_err)?;
        let topition: i64 = row.get(1).map_err(broker_err)?;
        let committed: Option<i64> = row.get(2).map_err(broker_err)?;
        let consumed: i64 = row.get(3).map_err(broker_err)?;
        partitions.push((topic, topition, committed, consumed != 0));
    }
    drop(rows);

    // Per topic: the timestamp of the oldest record some group still needs (None: none).
    let mut needed: BTreeMap<String, Option<i64>> = BTreeMap::new();
    for (topic, topition, committed, consumed) in partitions {
        let guarded = consumed || policy.guarded_topics.contains(&topic);
        let oldest = if guarded {
            let from = committed.unwrap_or(i64::MIN);
            let mut r = conn
                .query(
                    "select min(timestamp) from record where topition = ?1 and offset_id >= ?2",
                    [topition, from],
                )
                .await
                .map_err(broker_err)?;
            match r.next().await.map_err(broker_err)? {
                Some(row) => row.get::<Option<i64>>(0).map_err(broker_err)?,
                None => None,
            }
        } else {
            None
        };
        let slot = needed.entry(topic).or_insert(None);
        *slot = match (*slot, oldest) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }

    let mut out = BTreeMap::new();
    for (topic, oldest) in needed {
        let TopicRetention { retention_ms, held } = policy.retention_for(oldest, now_ms);
        set_config(conn, cluster, &topic, "cleanup.policy", "delete").await?;
        let changed = set_config(
            conn,
            cluster,
            &topic,
            "retention.ms",
            &retention_ms.to_string(),
        )
        .await?;
        if changed && held {
            info!(
                topic,
                retention_ms,
                "broker log retention held above the age: a group has not read older records"
            );
        }
        out.insert(topic, TopicRetention { retention_ms, held });
    }
    Ok(out)
}

/// Sets a topic's configuration value unless it already has it; true when it wrote.
async fn set_config(
    conn: &Connection,
    cluster: &str,
    topic: &str,
    name: &str,
    value: &str,
) -> Result<bool> {
    let mut rows = conn
        .query(
            "select tc.value from cluster c join topic t on t.cluster = c.id \
             join topic_configuration tc on tc.topic = t.id \
             where c.name = ?1 and t.name = ?2 and tc.name = ?3",
            [cluster, topic, name],
        )
        .await
        .map_err(broker_err)?;
    let current: Option<String> = match rows.next().await.map_err(broker_err)? {
        Some(row) => row.get::<Option<String>>(0).map_err(broker_err)?,
        None => None,
    };
    drop(rows);
    if current.as_deref() == Some(value) {
        return Ok(false);
    }
    // The statement tansu itself uses (topic_configuration_upsert.sql).
    conn.execute(
        "insert into topic_configuration (topic, name, value) \
         select t.id, ?3, ?4 from cluster c join topic t on t.cluster = c.id \
         where c.name = ?1 and t.name = ?2 \
         on conflict (topic, name) do update set value = excluded.value, \
         last_updated = current_timestamp",
        [cluster, topic, name, value],
    )
    .await
    .map_err(broker_err)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> LogRetention {
        LogRetention {
            age: Duration::from_secs(3600),
            interval: Duration::from_secs(60),
            guarded_topics: vec![],
        }
    }

    #[test]
    fn nothing_needed_keeps_the_age() {
        let r = policy().retention_for(None, 10_000_000);
        assert_eq!(
            r,
            TopicRetention {
                retention_ms: 3_600_000,
                held: false
            }
        );
    }

    #[test]
    fn a_recent_unread_record_keeps_the_age() {
        // 50 min old + 2 min margin < 60 min.
        let now = 100_000_000;
        let r = policy().retention_for(Some(now - 50 * 60_000), now);
        assert_eq!(
            r,
            TopicRetention {
                retention_ms: 3_600_000,
                held: false
            }
        );
    }

    #[test]
    fn an_old_unread_record_holds_the_log_with_a_margin_of_two_intervals() {
        // 2 h 0 min 30 s old: + 2 min margin = 7,350 s, rounded up to whole minutes: 7,380 s.
        let now = 100_000_000;
        let r = policy().retention_for(Some(now - 7_230_000), now);
        assert_eq!(
            r,
            TopicRetention {
                retention_ms: 7_380_000,
                held: true
            }
        );
        // tansu deletes records older than retention.ms: the unread one is 7,230 s old.
        assert!(r.retention_ms > 7_230_000);
    }
}
