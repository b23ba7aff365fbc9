//! The deploys and incidents the DORA metrics read (docs/dora.md), from the tables through
//! the query session, as the plain values `nines-dora` analyses.

use arrow::array::{
    Array, AsArray, Int64Array, ListArray, StringArray, StructArray, TimestampMicrosecondArray,
};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use nines_dora::{Commit, Deploy, Incident, Outcome};

use crate::{Error, QueryEngine, Result};

fn strings(batch: &arrow::record_batch::RecordBatch, i: usize) -> Result<StringArray> {
    Ok(cast(batch.column(i), &DataType::Utf8)?
        .as_string::<i32>()
        .clone())
}

fn micros(batch: &arrow::record_batch::RecordBatch, i: usize) -> Result<Int64Array> {
    Ok(cast(batch.column(i), &DataType::Int64)?
        .as_primitive::<arrow::datatypes::Int64Type>()
        .clone())
}

/// Every deploy before `to` (microseconds since the epoch), with its commits, in time order
/// (ties by service, environment, version: the same answer every time). A deploy whose
/// outcome nines does not know is an error naming it.
pub async fn deploys(engine: &QueryEngine, to: i64) -> Result<Vec<Deploy>> {
    let sql = format!(
        "SELECT service, environment, version, CAST(time AS BIGINT) AS t, outcome, commits \
         FROM deploys WHERE time < to_timestamp_micros({to}) \
         ORDER BY time, service, environment, version, outcome"
    );
    let (_, batches) = engine.sql(&sql).await?;
    let mut out = Vec::new();
    for b in &batches {
        let (service, environment, version) = (strings(b, 0)?, strings(b, 1)?, strings(b, 2)?);
        let time = micros(b, 3)?;
        let outcome = strings(b, 4)?;
        let commits = b
            .column(5)
            .as_any()
            .downcast_ref::<ListArray>()
            .ok_or_else(|| Error::Sql("deploys.commits is not a list".into()))?;
        for r in 0..b.num_rows() {
            let o = Outcome::parse(outcome.value(r)).ok_or_else(|| {
                Error::Sql(format!(
                    "deploys: {} {} has outcome {:?}, not succeeded, failed or rolled_back",
                    service.value(r),
                    version.value(r),
                    outcome.value(r)
                ))
            })?;
            let mut list = Vec::new();
            if !commits.is_null(r) {
                let items = commits.value(r);
                let items = items
                    .as_any()
                    .downcast_ref::<StructArray>()
                    .ok_or_else(|| Error::Sql("deploys.commits items are not structs".into()))?;
                let sha = items
                    .column_by_name("sha")
                    .and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned());
                let at = items.column_by_name("time").and_then(|c| {
                    c.as_any()
                        .downcast_ref::<TimestampMicrosecondArray>()
                        .cloned()
                });
                let (Some(sha), Some(at)) = (sha, at) else {
                    return Err(Error::Sql("deploys.commits: no sha or time".into()));
                };
                for k in 0..items.len() {
                    if !items.is_null(k) {
                        list.push(Commit {
                            sha: sha.value(k).to_owned(),
                            time: at.value(k),
                        });
                    }
                }
            }
            out.push(Deploy {
                service: service.value(r).to_owned(),
                environment: environment.value(r).to_owned(),
                version: version.value(r).to_owned(),
                time: time.value(r),
                outcome: o,
                commits: list,
            });
        }
    }
    Ok(out)
}

/// Every incident opened before `to`, as its latest row (by arrival) says.
pub async fn incidents(engine: &QueryEngine, to: i64) -> Result<Vec<Incident>> {
    let sql = format!(
        "SELECT id, service, CAST(opened_at AS BIGINT), CAST(resolved_at AS BIGINT), cause_version \
         FROM (SELECT *, row_number() OVER (PARTITION BY tenant, id \
                 ORDER BY received_at DESC, kafka_partition DESC, kafka_offset DESC) AS rn \
               FROM incidents) AS latest \
         WHERE rn = 1 AND opened_at < to_timestamp_micros({to})"
    );
    let (_, batches) = engine.sql(&sql).await?;
    let mut out = Vec::new();
    for b in &batches {
        let (id, service) = (strings(b, 0)?, strings(b, 1)?);
        let (opened, resolved) = (micros(b, 2)?, micros(b, 3)?);
        let cause = strings(b, 4)?;
        for r in 0..b.num_rows() {
            out.push(Incident {
                id: id.value(r).to_owned(),
                service: service.value(r).to_owned(),
                opened_at: opened.value(r),
                resolved_at: (!resolved.is_null(r)).then(|| resolved.value(r)),
                cause_version: (!cause.is_null(r) && !cause.value(r).is_empty())
                    .then(|| cause.value(r).to_owned()),
            });
        }
    }
    Ok(out)
}
