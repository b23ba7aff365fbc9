//! SLO data read together (`nines_query::slo_source::series_many`): the one query of a
//! group of objectives over `requests`, summed per minute and objective by nines, against
//! the counts the test sent, minute by minute.

use std::collections::BTreeMap;

use nines_model::clock::now_ns;
use nines_proto::v1::{EventBatch, RequestEvent, Resource};
use nines_query::QueryEngine;
use nines_query::slo_source::{Want, series_many};
use nines_slo::model::{
    Indicator, IndicatorMetric, MetricSource, Objective, RatioMetric, SpecValue,
};
use nines_store::Store;

use crate::query_live::commit;

const SERVICES: [&str; 2] = ["cart", "orders"];
const OPERATIONS: [&str; 2] = ["GET /a", "POST /b"];
const MINUTES: i64 = 6;

/// Requests of (service `s`, operation `o`) in minute `k`: `3 + k + 2s + o`, the first
/// `(k + s) % 3` of them errors.
fn sent(s: usize, o: usize, k: i64) -> (i64, i64) {
    let n = 3 + k + 2 * s as i64 + o as i64;
    (n, (k + s as i64) % 3)
}

/// A `nines` source over `requests`: `value` for one service and operation.
fn source(service: &str, operation: &str, value: &str) -> MetricSource {
    let spec = [
        ("table", "requests".to_owned()),
        (
            "filter",
            format!("service = '{service}' AND operation = '{operation}'"),
        ),
        ("value", value.to_owned()),
    ];
    MetricSource {
        kind: "nines".into(),
        reference: None,
        spec: spec
            .into_iter()
            .map(|(k, v)| (k.to_owned(), SpecValue::String(v)))
            .collect(),
    }
}

/// Four objectives (three of the four combinations sent, one of a service never sent) read
/// together, one of them over a shorter range: each minute's good and total are what was
/// sent, whatever order the rows come in and however the batches split their runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objectives_read_together_get_the_counts_sent_minute_by_minute() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_dir(dir.path()).await.expect("store");
    // Minute 0 starts ten minutes ago, on a minute.
    let first = (now_ns() / 60_000_000_000 - 10) * 60;
    for (s, service) in SERVICES.iter().enumerate() {
        let mut requests = Vec::new();
        for k in 0..MINUTES {
            for (o, operation) in OPERATIONS.iter().enumerate() {
                let (n, errors) = sent(s, o, k);
                for i in 0..n {
                    requests.push(RequestEvent {
                        time_unix_nano: ((first + k * 60) * 1_000 + i) * 1_000_000,
                        operation: (*operation).into(),
                        status_code: if i < errors { 500 } else { 200 },
                        error: i < errors,
                        duration_nano: 1_000_000,
                        trace_id: format!("{s:08x}{o:08x}{k:08x}{i:08x}"),
                        ..Default::default()
                    });
                }
            }
        }
        let batch = EventBatch {
            resource: Some(Resource {
                tenant: "t".into(),
                service: (*service).into(),
                environment: "production".into(),
                version: "1".into(),
            }),
            requests,
            ..Default::default()
        };
        commit(&store, s as i64, &batch).await;
    }
    let engine = QueryEngine::new(&store).await.expect("engine");

    let objective = Objective {
        name: "availability".into(),
        target: 0.99,
        threshold: None,
        time_slice_target: None,
        time_slice_window: None,
    };
    let good = "sum(CASE WHEN error THEN 0 ELSE 1 END)";
    // (service, operation, first minute read).
    let read = [
        ("cart", "GET /a", 0),
        ("cart", "POST /b", 0),
        ("orders", "POST /b", 2),
        ("search", "GET /a", 0),
    ];
    let indicators: Vec<Indicator> = read
        .iter()
        .map(|&(service, operation, _)| Indicator {
            name: format!("{service} {operation}"),
            metric: IndicatorMetric::Ratio(RatioMetric::Good {
                good: source(service, operation, good),
                total: source(service, operation, "sum(1)"),
            }),
        })
        .collect();
    let wants: Vec<Want<'_>> = read
        .iter()
        .zip(&indicators)
        .map(|(&(_, _, from), indicator)| Want {
            indicator,
            objective: &objective,
            from: first + from * 60,
            to: first + (MINUTES + 1) * 60,
        })
        .collect();
    let series = series_many(&engine, &wants).await;

    for ((service, operation, from), series) in read.iter().zip(series) {
        let series = series.expect("series");
        assert_eq!(series.origin, first + from * 60, "{service} {operation}");
        assert_eq!(series.len(), (MINUTES + 1 - from) as usize);
        let s = SERVICES.iter().position(|x| x == service);
        let o = OPERATIONS.iter().position(|x| x == operation).expect("op");
        let mut got = BTreeMap::new();
        let mut want = BTreeMap::new();
        for (i, (&g, &t)) in series.good.iter().zip(&series.total).enumerate() {
            let k = from + i as i64;
            got.insert(k, (g, t));
            let (n, errors) = match s {
                Some(s) if k < MINUTES => sent(s, o, k),
                _ => (0, 0),
            };
            want.insert(k, ((n - errors) as f64, n as f64));
        }
        assert_eq!(got, want, "{service} {operation}");
    }
}
