//! SLOs over the real pipeline: OpenSLO files, traffic with an outage through ingest, Kafka
//! and the aggregator, and `nines slo status | history | check` answering what the test
//! works out from what it sent.

use std::time::Duration;

use nines_testkit::{Generator, Ledger, WorkloadSpec};

use crate::support::{Env, assert_tables_equal_ledger, json_rows, metric, push_ok};

pub const SLO: &str = r#"
apiVersion: openslo/v1
kind: SLO
metadata:
  name: web-availability
spec:
  service: checkout
  indicator:
    metadata:
      name: web-good-requests
    spec:
      ratioMetric:
        good:
          metricSource:
            type: nines
            spec:
              filter: "service = 'checkout'"
              value: "sum(total - errors)"
        total:
          metricSource:
            type: nines
            spec:
              filter: "service = 'checkout'"
              value: "sum(total)"
  timeWindow:
    - duration: 30d
      isRolling: true
  budgetingMethod: Occurrences
  objectives:
    - displayName: availability
      target: 0.99
---
apiVersion: openslo/v1
kind: SLO
metadata:
  name: prometheus-latency
spec:
  service: checkout
  indicator:
    metadata:
      name: prom-latency
    spec:
      thresholdMetric:
        metricSource:
          type: Prometheus
          spec:
            query: histogram_quantile(0.99, rate(http_bucket[5m]))
  timeWindow:
    - duration: 7d
      isRolling: true
  budgetingMethod: Timeslices
  objectives:
    - displayName: p99
      op: lte
      value: 0.3
      target: 0.99
      timeSliceTarget: 0.99
      timeSliceWindow: 1m
"#;

/// Ninety minutes of 100 requests a minute for `checkout`, all good but for a 10-minute
/// outage from 30 to 21 minutes before `at` (every request fails). Worked out here:
/// 9,000 requests, 1,000 errors; SLI 1 − 1000/9000; budget 1 % of 9,000 = 90 errors;
/// remaining 1 − 1000/90; burn over 1 h (6,000 requests, all 1,000 errors) 1000/6000/0.01;
/// over 6 h, 1 d and 3 d 1000/9000/0.01. The Workbook rows at `at`: 14.4× (1 h / 5 m) is
/// quiet (the last 5 minutes are clean); 6× (6 h / 30 m: 1000/3000/0.01 = 33.3), 3× (1 d /
/// 2 h) and 1× (3 d / 6 h) fire. In history, the 14.4× row fires from the 9th outage minute
/// on (1 h burn 900/6000/0.01 = 15 > 14.4) until the short window is clean, 5 minutes
/// after the outage: [at − 21 min, at − 15 min).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_history_match_the_budget_worked_out_from_what_was_sent() {
    assert_eq!(
        Generator::service_name(0),
        "checkout",
        "the service the SLO names"
    );
    let env = Env::new();
    let slo_dir = env.data_dir().with_file_name("slos");
    std::fs::create_dir_all(&slo_dir).unwrap();
    std::fs::write(slo_dir.join("web.yaml"), slos()).unwrap();
    let _up = env.up();
    let mut client = env.client().await;
    let mut generator = Generator::new(WorkloadSpec {
        seed: 12,
        error_ratio: 0.0,
        client_error_ratio: 0.0,
        ..WorkloadSpec::default()
    });
    let now = nines_model::clock::now_s();
    let at = now / 60 * 60;
    let mut ledger = Ledger::default();
    let mut durations = Vec::new();
    for k in 0..90_i64 {
        let minute = at - (90 - k) * 60;
        let mut push = generator.push(0, 100, (minute + 30) * 1_000_000_000);
        if (60..70).contains(&k) {
            for r in &mut push.requests {
                r.error = true;
                r.status_code = 500;
            }
        }
        push_ok(&mut client, &push).await;
        ledger.record(&push);
        durations.extend(push.requests.iter().map(|r| r.duration_nano));
    }
    assert_eq!((ledger.events(), ledger.errors()), (9_000, 1_000));
    assert_tables_equal_ledger(&env, &ledger, Duration::from_secs(60));

    let at_text = nines_slo::window::rfc3339(at);
    let out = env
        .run(&[
            "slo",
            "status",
            "--at",
            &at_text,
            "--format",
            "json",
            slo_dir.to_str().unwrap(),
        ])
        .unwrap();
    let rows = json_rows(&out);
    assert_eq!(rows.len(), 3, "{out}");
    let web = rows
        .iter()
        .find(|r| r["slo"] == "web-availability")
        .unwrap();
    let close = |key: &str, want: f64| {
        let got = web[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} in {web}"));
        assert!(
            (got - want).abs() < 1e-9 * want.abs().max(1.0),
            "{key}: {got} vs {want}"
        );
    };
    close("target", 0.99);
    close("sli", 1.0 - 1000.0 / 9000.0);
    close("budget_remaining", 1.0 - 1000.0 / 90.0);
    close("burn_1h", 1000.0 / 6000.0 / 0.01);
    close("burn_6h", 1000.0 / 9000.0 / 0.01);
    close("burn_3d", 1000.0 / 9000.0 / 0.01);
    close("coverage", 90.0 / 43_200.0);
    assert_eq!(web["status"], "exhausted");
    assert_eq!(
        web["firing"],
        serde_json::json!([
            "6x over 6h/30m (page)",
            "3x over 1d/2h (ticket)",
            "1x over 3d/6h (ticket)"
        ])
    );
    // Latency from the sketches: a request is counted good when its bucket lies under
    // 60 ms; the sketch's 1 % relative accuracy decides only for requests within 1 % of it.
    let fast = rows.iter().find(|r| r["slo"] == "web-latency").unwrap();
    let threshold = 60e6;
    let surely_good = durations
        .iter()
        .filter(|d| **d as f64 * 1.01 <= threshold)
        .count() as f64;
    let maybe_good = durations
        .iter()
        .filter(|d| **d as f64 * 0.99 <= threshold)
        .count() as f64;
    let good = fast["sli"].as_f64().unwrap() * 9_000.0;
    assert!(
        surely_good - 1e-6 <= good && good <= maybe_good + 1e-6,
        "good {good} outside [{surely_good}, {maybe_good}]"
    );
    assert!(
        surely_good > 4_000.0 && maybe_good < 8_000.0,
        "{surely_good} {maybe_good}"
    );
    let prom = rows
        .iter()
        .find(|r| r["slo"] == "prometheus-latency")
        .unwrap();
    assert_eq!(
        prom["status"],
        "not evaluable by nines: data source type \"Prometheus\" (only `nines` reads nines' tables)"
    );

    let from = nines_slo::window::rfc3339(at - 3_600);
    let out = env
        .run(&[
            "slo",
            "history",
            "web-availability",
            "--from",
            &from,
            "--to",
            &at_text,
            "--step",
            "30m",
            "--format",
            "json",
            "--dir",
            slo_dir.to_str().unwrap(),
        ])
        .unwrap();
    let alerts: Vec<serde_json::Value> = json_rows(&out)
        .into_iter()
        .filter(|r| r.get("alert").is_some())
        .collect();
    let fast = alerts
        .iter()
        .find(|a| a["alert"] == "14.4x over 1h/5m")
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(
        fast["start"],
        nines_slo::window::rfc3339(at - 21 * 60),
        "{out}"
    );
    assert_eq!(
        fast["end"],
        nines_slo::window::rfc3339(at - 15 * 60),
        "{out}"
    );
    assert_eq!(fast["severity"], "page");
}

/// `nines slo check` exits 1 and names file, document, field and reason of each bad
/// definition; a good directory exits 0.
#[test]
fn check_names_every_bad_definition_and_exits_1() {
    let env = Env::new();
    let dir = env.data_dir().with_file_name("slos-bad");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("good.yaml"), SLO).unwrap();
    assert!(env.run(&["slo", "check", dir.to_str().unwrap()]).is_ok());
    let bad = SLO.replacen("target: 0.99", "target: 1.5", 1);
    std::fs::write(dir.join("z-bad.yaml"), bad).unwrap();
    let err = env
        .run(&["slo", "check", dir.to_str().unwrap()])
        .unwrap_err();
    assert!(
        err.contains("z-bad.yaml: document 1 (SLO/web-availability): spec.objectives[0].target: 1.5 is not a fraction between 0 and 1"),
        "{err}"
    );
}

/// The definitions of the status test: [`SLO`], and `web-latency`, the same indicator on
/// the latency sketches (requests under 60 ms, half of them).
fn slos() -> String {
    let web = SLO.split("---").next().unwrap();
    let latency = web
        .replace("web-availability", "web-latency")
        .replace("web-good-requests", "web-fast-requests")
        .replace(
            "sum(total - errors)",
            "sketch_count_under(latency_sketch, 60e6)",
        )
        .replace("displayName: availability", "displayName: under 60 ms")
        .replace("target: 0.99", "target: 0.5");
    format!("{SLO}---{latency}")
}

/// `web-availability` over one day for the live test: 99 %, so the 14.4× row (2 % of a
/// day's budget: 2 m long window, a 10 s short window floored to one 1-minute slice) pages
/// on a minute of errors.
fn live_slo() -> String {
    let web = SLO.split("---").next().unwrap();
    assert!(web.contains("duration: 30d") && web.contains("target: 0.99"));
    web.replace("web-availability", "live-availability")
        .replace("duration: 30d", "duration: 1d")
}

/// An Alertmanager stand-in on 127.0.0.1: keeps every alert POSTed to `/api/v2/alerts`.
async fn alert_receiver() -> (
    u16,
    std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
) {
    use axum::routing::post;
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = got.clone();
    let app = axum::Router::new().route(
        "/api/v2/alerts",
        post(move |body: String| {
            let alerts: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
            keep.lock().unwrap().extend(alerts);
            std::future::ready("")
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, got)
}

/// `nines up` evaluates `slo.dir` live: a minute of errors after two clean minutes shows on
/// `/metrics` with the burn worked out here, pages through the Alertmanager receiver, and
/// resolves once the next minute is clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_evaluates_live_and_notifies_alertmanager_firing_then_resolved() {
    let (am_port, received) = alert_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let slo_dir = dir.path().join("slos");
    std::fs::create_dir_all(&slo_dir).unwrap();
    std::fs::write(slo_dir.join("live.yaml"), live_slo()).unwrap();
    let env = Env::with_config(&format!(
        "[slo]\ndir = {:?}\ninterval = \"2s\"\nsettle = \"2s\"\n\
         alertmanager_url = \"http://127.0.0.1:{am_port}\"\n",
        slo_dir.display().to_string()
    ));
    let up = env.up();
    let mut client = env.client().await;
    let mut generator = Generator::new(WorkloadSpec {
        seed: 31,
        error_ratio: 0.0,
        client_error_ratio: 0.0,
        ..WorkloadSpec::default()
    });
    // Start early in a minute M, so that the evaluations at M (the outage minute M − 1 is
    // the short window) happen well before M + 1 min.
    let wall = nines_model::clock::now_s;
    while !(3..=25).contains(&wall().rem_euclid(60)) {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let m = wall() / 60 * 60;
    for (minute, failing) in [(m - 180, false), (m - 120, false), (m - 60, true)] {
        let mut push = generator.push(0, 100, (minute + 20) * 1_000_000_000);
        if failing {
            for r in &mut push.requests {
                r.error = true;
                r.status_code = 500;
            }
        }
        push_ok(&mut client, &push).await;
    }
    // At M: 300 requests in the day, 100 bad; budget 1 % of 300 = 3.
    let page = "14.4x over 2m/1m";
    let labels = "{slo=\"live-availability\",objective=\"availability\",service=\"checkout\"";
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let firing_line = format!("{labels},alert=\"{page}\",severity=\"page\"}}");
    let text = loop {
        let text = up.metrics();
        if metric(&text, "nines_slo_alert_firing", &firing_line) == Some(1.0) {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the page never fired; last /metrics:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let gauge = |name: &str, extra: &str| {
        metric(&text, name, &format!("{labels}{extra}}}"))
            .unwrap_or_else(|| panic!("{name}{labels}{extra} in\n{text}"))
    };
    let close = |got: f64, want: f64| (got - want).abs() < 1e-9 * want.abs().max(1.0);
    assert!(close(gauge("nines_slo_sli", ""), 200.0 / 300.0));
    assert!(close(gauge("nines_slo_target", ""), 0.99));
    assert!(close(
        gauge("nines_slo_budget_remaining_ratio", ""),
        1.0 - 100.0 / 3.0
    ));
    assert!(close(
        gauge("nines_slo_burn_rate", ",window=\"1h\""),
        100.0 / 300.0 / 0.01
    ));
    assert_eq!(gauge("nines_slo_status", ",status=\"exhausted\""), 1.0);
    assert_eq!(gauge("nines_slo_status", ",status=\"ok\""), 0.0);

    let find = |want_end: Option<&str>| {
        received.lock().unwrap().iter().find_map(|a| {
            let l = &a["labels"];
            let ours = l["alertname"] == "SLOErrorBudgetBurn"
                && l["slo"] == "live-availability"
                && l["objective"] == "availability"
                && l["alert"] == page
                && l["severity"] == "page"
                && l["service"] == "checkout";
            let end_ok = want_end.is_none_or(|e| a["endsAt"] == e);
            (ours && end_ok).then(|| a.clone())
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let fired = loop {
        if let Some(a) = find(None) {
            break a;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no firing alert posted"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(fired["startsAt"], nines_slo::window::rfc3339(m));
    let ends = chrono::DateTime::parse_from_rfc3339(fired["endsAt"].as_str().unwrap()).unwrap();
    assert!(
        ends.timestamp() > wall(),
        "a firing alert ends in the future: {fired}"
    );
    assert!(
        fired["annotations"]["summary"]
            .as_str()
            .unwrap()
            .contains(page),
        "{fired}"
    );

    // Minute M is clean: at M + 1 min the short window holds no error, the page resolves.
    let push = generator.push(0, 100, (m + 1) * 1_000_000_000);
    push_ok(&mut client, &push).await;
    let resolved_at = nines_slo::window::rfc3339(m + 60);
    let deadline = std::time::Instant::now()
        + Duration::from_secs(u64::try_from(m + 60 - wall()).unwrap_or(0) + 30);
    let resolved = loop {
        if let Some(a) = find(Some(&resolved_at)) {
            break a;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no resolved alert posted; got {:?}",
            received.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(resolved["startsAt"], nines_slo::window::rfc3339(m));
    assert_eq!(
        metric(&up.metrics(), "nines_slo_alert_firing", &firing_line),
        Some(0.0)
    );
}
