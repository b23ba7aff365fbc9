//! `/metrics` of a running `nines up` against docs/metrics.md, both ways: every family on
//! `/metrics` is documented, with its type, its label names and only the documented values
//! of a closed label; every documented family is on `/metrics`, with every value of its
//! closed labels, once what its "appears" column names has happened (this test makes each of
//! them happen, and refuses a mark it does not know).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use nines_proto::v1::{PushRequest, RequestEvent, Resource};

use crate::support::{Env, now_ns, push_ok};

/// When a documented family is first on `/metrics` (docs/metrics.md, "How to read the
/// tables").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Appears {
    Start,
    PartitionOwned,
    PartitionRead,
    RetentionPass,
    SloEvaluated,
    Scrape,
}

impl Appears {
    fn parse(cell: &str) -> Self {
        match cell {
            "start" => Self::Start,
            "partition owned" => Self::PartitionOwned,
            "partition read" => Self::PartitionRead,
            "retention pass" => Self::RetentionPass,
            "SLO evaluated" => Self::SloEvaluated,
            "scrape" => Self::Scrape,
            other => panic!(
                "docs/metrics.md: `appears` {other:?} is not a mark tests/metrics.rs knows how \
                 to bring about; add it there"
            ),
        }
    }
}

/// One row of a metrics table of docs/metrics.md.
#[derive(Debug)]
struct Documented {
    name: String,
    kind: String,
    /// Label name → its values when the set is closed, `None` when open.
    labels: BTreeMap<String, Option<BTreeSet<String>>>,
    appears: Appears,
}

const HEADER: &str = "| metric | type | labels | appears | meaning |";

/// The text between backticks in `s`, in order.
fn backticked(s: &str) -> Vec<String> {
    s.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

/// Every row of every table of docs/metrics.md with the metrics header.
fn documented() -> Vec<Documented> {
    let path = crate::support::repo_root().join("docs/metrics.md");
    let text = std::fs::read_to_string(path).unwrap();
    let mut rows = Vec::new();
    let mut header: Option<&str> = None;
    for line in text.lines() {
        if !line.starts_with('|') {
            header = None;
            continue;
        }
        let Some(h) = header else {
            header = Some(line);
            continue;
        };
        if h != HEADER || line.starts_with("|---") {
            continue;
        }
        let cells: Vec<&str> = line
            .trim_matches('|')
            .splitn(5, '|')
            .map(str::trim)
            .collect();
        assert_eq!(cells.len(), 5, "docs/metrics.md: a row of 5 cells: {line}");
        let name = backticked(cells[0]);
        assert_eq!(name.len(), 1, "docs/metrics.md: one metric per row: {line}");
        let mut labels = BTreeMap::new();
        if cells[2] != "—" {
            for part in cells[2].split(';') {
                let tokens = backticked(part);
                let (label, rest) = (&tokens[0], part.trim().trim_start_matches('`'));
                let closed = rest[label.len()..].trim_start_matches('`').starts_with(':');
                let values = closed.then(|| tokens[1..].iter().cloned().collect());
                assert!(
                    labels.insert(label.clone(), values).is_none(),
                    "docs/metrics.md: label {label} twice: {line}"
                );
            }
        }
        rows.push(Documented {
            name: name[0].clone(),
            kind: cells[1].to_owned(),
            labels,
            appears: Appears::parse(cells[3]),
        });
    }
    let names: BTreeSet<&str> = rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names.len(),
        rows.len(),
        "docs/metrics.md names a metric twice"
    );
    rows
}

/// One family of the Prometheus text.
#[derive(Debug, Default)]
struct Family {
    kind: String,
    help: bool,
    /// The labels of every series (a histogram's `le` left out, one entry per bucket).
    series: Vec<(BTreeMap<String, String>, f64)>,
}

/// `name{a="x",b="y"} value` → (name, labels, value); `None` for anything else.
fn sample(line: &str) -> Option<(String, BTreeMap<String, String>, f64)> {
    let (head, value) = line.rsplit_once(' ')?;
    let value = value.parse().ok()?;
    let Some((name, rest)) = head.split_once('{') else {
        return Some((head.to_owned(), BTreeMap::new(), value));
    };
    let mut labels = BTreeMap::new();
    let mut chars = rest.chars();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        let key = key.trim_start_matches(',').to_owned();
        if key.is_empty() || key == "}" {
            break;
        }
        assert_eq!(chars.next(), Some('"'), "{line}");
        let mut v = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => v.push(chars.next()?),
                '"' => break,
                c => v.push(c),
            }
        }
        labels.insert(key, v);
    }
    Some((name.to_owned(), labels, value))
}

/// The families of a `/metrics` answer (headers and all).
fn families(answer: &str) -> BTreeMap<String, Family> {
    let body = answer.split_once("\r\n\r\n").map_or(answer, |(_, b)| b);
    let mut out: BTreeMap<String, Family> = BTreeMap::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            out.entry(name.to_owned()).or_default().kind = kind.to_owned();
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            out.entry(name.to_owned()).or_default().help = true;
        } else if let Some((name, mut labels, value)) = sample(line) {
            let family = if out.contains_key(&name) {
                name
            } else {
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .filter(|b| out.get(*b).is_some_and(|f| f.kind == "histogram"))
                    .unwrap_or_else(|| panic!("a sample of no declared family: {line}"));
                labels.remove("le");
                base.to_owned()
            };
            out.get_mut(&family).unwrap().series.push((labels, value));
        }
    }
    out
}

/// What is wrong with `family` as `doc` describes it (nothing: empty). Each value of a closed
/// label must be on some series, and no other.
fn mismatches(doc: &Documented, family: Option<&Family>) -> Vec<String> {
    let Some(family) = family.filter(|f| !f.series.is_empty()) else {
        return vec![format!("{}: not on /metrics", doc.name)];
    };
    let mut wrong = Vec::new();
    if family.kind != doc.kind {
        wrong.push(format!(
            "{}: type {} on /metrics, {} documented",
            doc.name, family.kind, doc.kind
        ));
    }
    if !family.help {
        wrong.push(format!("{}: no # HELP (not described at start)", doc.name));
    }
    let names: BTreeSet<&String> = doc.labels.keys().collect();
    let mut seen: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (labels, _) in &family.series {
        let got: BTreeSet<&String> = labels.keys().collect();
        if got != names {
            wrong.push(format!(
                "{}: labels {got:?} on /metrics, {names:?} documented",
                doc.name
            ));
        }
        for (k, v) in labels {
            seen.entry(k).or_default().insert(v);
        }
    }
    for (label, values) in &doc.labels {
        let Some(values) = values else { continue };
        let values: BTreeSet<&str> = values.iter().map(String::as_str).collect();
        let got = seen.remove(label.as_str()).unwrap_or_default();
        let undocumented: Vec<_> = got.difference(&values).collect();
        if !undocumented.is_empty() {
            wrong.push(format!(
                "{}: {label} = {undocumented:?} is not documented",
                doc.name
            ));
        }
        let missing: Vec<_> = values.difference(&got).collect();
        if !missing.is_empty() {
            wrong.push(format!(
                "{}: {label} = {missing:?} not on /metrics",
                doc.name
            ));
        }
    }
    wrong
}

/// The value of the one series of `name` whose labels are exactly `labels`.
fn value(families: &BTreeMap<String, Family>, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    families
        .get(name)?
        .series
        .iter()
        .find(|(l, _)| *l == want)
        .map(|(_, v)| *v)
}

fn checkout_push(events: usize, at_ns: i64) -> PushRequest {
    PushRequest {
        resource: Some(Resource {
            service: "checkout".into(),
            ..Default::default()
        }),
        requests: (0..events)
            .map(|i| RequestEvent {
                time_unix_nano: at_ns + i as i64,
                operation: "GET /cart".into(),
                status_code: 200,
                duration_nano: 2_000_000,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_of_nines_up_are_exactly_those_of_docs_metrics_md() {
    let doc = documented();
    assert!(doc.len() > 50, "docs/metrics.md has {} metrics", doc.len());

    // `SLO evaluated`: one SLO (checkout, 30 days, one objective), evaluated every second.
    // `retention pass`: the embedded broker's maintenance every second.
    let slo_dir = tempfile::tempdir().unwrap();
    let slo = crate::slo::SLO.split("---").next().unwrap();
    assert!(slo.contains("name: web-availability") && slo.contains("service: checkout"));
    std::fs::write(slo_dir.path().join("web.yaml"), slo).unwrap();
    let env = Env::with_config(&format!(
        "[slo]\ndir = {:?}\ninterval = \"1s\"\nsettle = \"1s\"\n",
        slo_dir.path().display().to_string()
    ));
    let up = env.spawn(
        "up",
        &[("NINES__BROKER__MAINTENANCE_INTERVAL", "1s")],
        &["up"],
    );

    // `start`: ready means every such family is there, with every series at its closed
    // values, before anything is pushed; ingest's counters are at zero.
    let at_start = families(&up.metrics());
    let wrong: Vec<String> = doc
        .iter()
        .filter(|d| d.appears == Appears::Start)
        .flat_map(|d| mismatches(d, at_start.get(&d.name)))
        .collect();
    assert!(wrong.is_empty(), "at start:\n{}", wrong.join("\n"));
    let rejected = "nines_ingest_pushes_rejected_total";
    let reasons = doc.iter().find(|d| d.name == rejected).unwrap().labels["reason"]
        .clone()
        .unwrap();
    assert_eq!(reasons.len(), 12, "{reasons:?}");
    for reason in &reasons {
        let series = [("reason", reason.as_str())];
        assert_eq!(value(&at_start, rejected, &series), Some(0.0), "{reason}");
    }

    // Traffic: two pushes of checkout (two minutes ago, so the live evaluation has data in
    // its range, and now), and one push with no events, refused as invalid.
    let mut client = env.client().await;
    let now = now_ns();
    push_ok(&mut client, &checkout_push(30, now - 120_000_000_000)).await;
    push_ok(&mut client, &checkout_push(20, now)).await;
    let refused = client
        .push(checkout_push(0, now))
        .await
        .expect_err("a push with no events");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert_eq!(
        env.wait_for(
            "SELECT count(*) AS n FROM requests",
            50,
            Duration::from_secs(60)
        ),
        50
    );

    // Until every documented family is there (the marks above have all happened), every
    // partition is owned and the 50 events are counted durable.
    let deadline = Instant::now() + Duration::from_secs(90);
    let (text, got) = loop {
        let text = up.metrics();
        let got = families(&text);
        let missing: Vec<&str> = doc
            .iter()
            .filter(|d| got.get(&d.name).is_none_or(|f| f.series.is_empty()))
            .map(|d| d.name.as_str())
            .collect();
        let owned = value(&got, "nines_aggregate_partitions_owned", &[]);
        let durable = value(&got, "nines_aggregate_events_total", &[]);
        if missing.is_empty() && owned == Some(4.0) && durable == Some(50.0) {
            break (text, got);
        }
        assert!(
            Instant::now() < deadline,
            "after 90 s: documented but not on /metrics: {missing:?}; partitions owned \
             {owned:?}; events durable {durable:?}\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };

    // Both ways.
    let undocumented: Vec<&String> = got
        .keys()
        .filter(|name| !doc.iter().any(|d| &d.name == *name))
        .collect();
    assert!(
        undocumented.is_empty(),
        "on /metrics, not in docs/metrics.md: {undocumented:?}"
    );
    let wrong: Vec<String> = doc
        .iter()
        .flat_map(|d| mismatches(d, got.get(&d.name)))
        .collect();
    assert!(wrong.is_empty(), "{}\n\n{text}", wrong.join("\n"));

    // What the traffic was counted as.
    for reason in &reasons {
        let want = if reason == "invalid" { 1.0 } else { 0.0 };
        let series = [("reason", reason.as_str())];
        assert_eq!(value(&got, rejected, &series), Some(want), "{reason}");
    }
    let accepted = |kind| {
        value(
            &got,
            "nines_ingest_events_accepted_total",
            &[("kind", kind)],
        )
    };
    assert_eq!(accepted("request"), Some(50.0));
    assert_eq!(accepted("deploy"), Some(0.0));
    let stalled = &got["nines_aggregate_partition_stalled"].series;
    let partitions: BTreeSet<&str> = stalled
        .iter()
        .map(|(l, _)| l["partition"].as_str())
        .collect();
    assert_eq!(partitions, BTreeSet::from(["0", "1", "2", "3"]));
    assert!(stalled.iter().all(|(_, v)| *v == 0.0), "{stalled:?}");
    assert_eq!(value(&got, "nines_slo_objectives", &[]), Some(1.0));
    let objective = [
        ("slo", "web-availability"),
        ("objective", "availability"),
        ("service", "checkout"),
    ];
    assert_eq!(value(&got, "nines_slo_target", &objective), Some(0.99));
    let statuses_on: f64 = got["nines_slo_status"].series.iter().map(|(_, v)| v).sum();
    assert_eq!(statuses_on, 1.0, "one status of the one objective is 1");
}

#[test]
fn the_doc_parser_reads_closed_and_open_labels() {
    let doc = documented();
    let row = |name: &str| doc.iter().find(|d| d.name == name).unwrap();
    let stalled = row("nines_aggregate_partition_stalled");
    assert_eq!(stalled.kind, "gauge");
    assert_eq!(stalled.appears, Appears::PartitionOwned);
    assert_eq!(stalled.labels.get("partition"), Some(&None));
    let otlp = row("nines_ingest_otlp_items_rejected_total");
    assert_eq!(
        otlp.labels["signal"],
        Some(["traces", "logs", "metrics"].map(str::to_owned).into())
    );
    let status = row("nines_slo_status");
    assert_eq!(
        status.labels.keys().map(String::as_str).collect::<Vec<_>>(),
        ["objective", "service", "slo", "status"]
    );
    assert_eq!(status.labels["status"].as_ref().map(BTreeSet::len), Some(4));
    assert!(row("process_cpu_seconds_total").labels.is_empty());
}

#[test]
fn the_exposition_parser_reads_labels_and_histograms() {
    let text = "HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n\
        # HELP h Time.\n# TYPE h histogram\n\
        h_bucket{outcome=\"ok\",le=\"0.5\"} 1\nh_sum{outcome=\"ok\"} 0.2\nh_count{outcome=\"ok\"} 1\n\
        # TYPE c counter\nc{alert=\"14.4x over 1h/5m\",q=\"a\\\"b\"} 3\nc 0\n";
    let f = families(text);
    assert_eq!(f["h"].kind, "histogram");
    assert!(f["h"].help && !f["c"].help);
    assert_eq!(f["h"].series.len(), 3);
    assert!(
        f["h"]
            .series
            .iter()
            .all(|(l, _)| l.len() == 1 && l["outcome"] == "ok")
    );
    assert_eq!(
        value(&f, "c", &[("alert", "14.4x over 1h/5m"), ("q", "a\"b")]),
        Some(3.0)
    );
    assert_eq!(value(&f, "c", &[]), Some(0.0));
}
