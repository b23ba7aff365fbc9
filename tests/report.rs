//! The report over a seeded scenario with a known answer: two months (January and February
//! 2026) of three services, pushed through ingest, Kafka and the aggregator.
//!
//! - DORA figures and the bad deploy's burn equal what the test works out from what it
//!   sent; the bad deploy is the one flagged.
//! - The Markdown and JSON reports equal `tests/golden/report.md` and `.json`, reviewed by a
//!   person (regenerate with `NINES_BLESS=1`: then review the diff before committing). The
//!   JSON validates against `docs/report.schema.json`.
//! - The HTML loads in headless Chromium with no request beyond itself and no console
//!   error, and every chart has its data points laid out (`tests/tools/browser_check.py`).
//!   With `NINES_BLESS=1` its screenshot goes to `docs/report.png`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use nines_proto::v1::{
    Commit, DeployEvent, DeployOutcome, GateDecisionEvent, IncidentEvent, PushRequest,
    RequestEvent, Resource,
};

use crate::support::{Env, blessing, compare_golden, push_ok, test_python};

const NS: i64 = 1_000_000_000;
const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;
/// 2026-01-01T00:00:00Z, the start of the range.
const T0: i64 = 1_767_225_600;
/// 2026-03-01T00:00:00Z, its end (59 days).
const END: i64 = T0 + 59 * DAY;
/// Traffic starts 8 days before the range: the baseline of the first deploys.
const DATA_FROM: i64 = T0 - 8 * DAY;
/// Requests come every minute, 2 a minute (5 s apart).
const SLOT: i64 = 60;
const PER_SLOT: i64 = 2;
const SERVICES: [&str; 3] = ["checkout", "search", "payments"];
const TARGET: f64 = 0.99;

/// The bad deploy: checkout on day 20 at 10:00 makes one request in two fail until the fix
/// six hours later.
const BAD: i64 = T0 + 20 * DAY + 10 * HOUR;
const FIX: i64 = BAD + 6 * HOUR;
/// Search's deploy on day 29 at 11:00 is rolled back two hours later.
const ROLLED: i64 = T0 + 29 * DAY + 11 * HOUR;
const ROLLBACK: i64 = ROLLED + 2 * HOUR;
/// Payments' deploy on day 42 at 12:00 is named by incident INC-42, opened at 13:00 and
/// resolved at 17:00.
const BLAMED: i64 = T0 + 42 * DAY + 12 * HOUR;
const INCIDENT: (i64, i64) = (BLAMED + HOUR, BLAMED + 5 * HOUR);

/// Gate decisions a delivery tool of its own pushes for checkout (nines records its own
/// gate's the same way: tests/release.rs): (time, allowed, labels, override label,
/// reasons). Two days before the range (not in the report), one allowed quietly, the deny
/// an hour into the outage and the hotfix that overrides it.
fn gate_decisions() -> Vec<(i64, bool, &'static str, &'static str, &'static str)> {
    vec![
        (T0 - 2 * DAY, false, "", "", "change freeze"),
        (T0 + 3 * DAY, true, "", "", ""),
        (
            BAD + HOUR,
            false,
            "",
            "",
            "checkout-availability: error budget exhausted",
        ),
        (
            FIX - HOUR,
            true,
            "hotfix",
            "hotfix",
            "checkout-availability: error budget exhausted",
        ),
    ]
}

/// One request: (service index, time in seconds, error).
type Request = (usize, i64, bool);

/// Every request of the scenario. A request fails when it is the first of every 400th
/// minute (a 0.125 % baseline), or the first of a minute of checkout in [BAD, FIX).
fn requests() -> Vec<Request> {
    let mut out = Vec::new();
    for s in 0..SERVICES.len() {
        for (k, slot) in (DATA_FROM..END).step_by(SLOT as usize).enumerate() {
            for j in 0..PER_SLOT {
                let outage = s == 0 && (BAD..FIX).contains(&slot) && j == 0;
                out.push((s, slot + j * 5, outage || (k % 400 == 7 && j == 0)));
            }
        }
    }
    out
}

/// One deploy as sent: service, time, version, commits (sha, time).
#[derive(Debug, Clone)]
struct Sent {
    service: usize,
    time: i64,
    version: String,
    commits: Vec<(String, i64)>,
}

/// Every deploy: each service deploys every 4 days (checkout on days 0, 4, …, search on 1,
/// 5, …, payments on 2, 6, …) at 10:00, 11:00 and 12:00, a new version with two commits
/// made 2–6 h and 20–32 h before; plus checkout's fix (one commit an hour before) and
/// search's rollback to the version before (no commits).
fn deploys() -> Vec<Sent> {
    let mut out = Vec::new();
    for (s, name) in SERVICES.iter().enumerate() {
        let mut n = 0;
        for day in (s as i64..59).step_by(4) {
            n += 1;
            let time = T0 + day * DAY + (10 + s as i64) * HOUR;
            out.push(Sent {
                service: s,
                time,
                version: format!("v{n}"),
                commits: vec![
                    (format!("{name}-{n}a"), time - (2 + n % 5) * HOUR),
                    (format!("{name}-{n}b"), time - (20 + 4 * (n % 4)) * HOUR),
                ],
            });
            if time == BAD {
                n += 1;
                out.push(Sent {
                    service: s,
                    time: FIX,
                    version: format!("v{n}"),
                    commits: vec![(format!("{name}-{n}fix"), FIX - HOUR)],
                });
            }
            if time == ROLLED {
                out.push(Sent {
                    service: s,
                    time: ROLLBACK,
                    version: format!("v{}", n - 1),
                    commits: vec![],
                });
            }
        }
    }
    assert!(out.iter().any(|d| d.time == BAD && d.service == 0));
    assert!(out.iter().any(|d| d.time == ROLLED && d.service == 1));
    assert!(out.iter().any(|d| d.time == BLAMED && d.service == 2));
    out.sort_by_key(|d| (d.service, d.time));
    out
}

/// (requests, errors) of a service in `[from, to)`.
fn count(reqs: &[Request], service: usize, from: i64, to: i64) -> (f64, f64) {
    reqs.iter()
        .filter(|(s, t, _)| *s == service && (from..to).contains(t))
        .fold((0.0, 0.0), |(n, e), (_, _, bad)| {
            (n + 1.0, e + f64::from(u8::from(*bad)))
        })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

const SLA: &str = "\
apiVersion: nines/v1
kind: SLA
metadata:
  name: checkout-sla
spec:
  slo: checkout-availability
  target: 0.995
  credits:
    - below: 0.995
      credit: 0.10
    - below: 0.99
      credit: 0.25
";

/// The SLO tests' first definition (99 % of `checkout`'s requests over 30 rolling days,
/// Occurrences), for `service`.
fn slo_yaml(service: &str) -> String {
    let web = crate::slo::SLO.split("---").next().unwrap();
    assert!(web.contains("duration: 30d") && web.contains("target: 0.99\n"));
    assert!(web.contains("budgetingMethod: Occurrences"));
    web.replace("web-", &format!("{service}-"))
        .replace("checkout", service)
}

fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        tenant: String::new(),
        service: service.into(),
        environment: "prod".into(),
        version: String::new(),
    })
}

fn rfc3339(t: i64) -> String {
    nines_slo::window::rfc3339(t)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_months_of_three_services_give_the_worked_out_report() {
    let mut env = Env::new();
    let slo_dir = env.dir.path().join("slos");
    std::fs::create_dir(&slo_dir).unwrap();
    for s in SERVICES {
        std::fs::write(slo_dir.join(format!("{s}.yaml")), slo_yaml(s)).unwrap();
    }
    // checkout's customers are promised 99.5 % a UTC month, with a credit below it.
    let sla_dir = env.dir.path().join("slas");
    std::fs::create_dir(&sla_dir).unwrap();
    std::fs::write(sla_dir.join("checkout.yaml"), SLA).unwrap();
    env.extra_config = format!(
        "[slo]\ndir = {:?}\n[sla]\ndir = {:?}\n",
        slo_dir.display().to_string(),
        sla_dir.display().to_string()
    );
    // Two months ago is older than ingest takes by default; maintenance (retention of raw
    // requests) stays off so the test reads what it sent.
    let _up = env.spawn(
        "up",
        &[
            ("NINES__INGEST__MAX_EVENT_AGE", "3650days"),
            ("NINES__STORAGE__INTERVAL", "0s"),
        ],
        &["up"],
    );
    let mut client = env.client().await;
    let reqs = requests();
    let sent = deploys();

    // Requests, a day of a service per push.
    let mut by_push: BTreeMap<(usize, i64), Vec<RequestEvent>> = BTreeMap::new();
    for &(s, t, error) in &reqs {
        by_push
            .entry((s, (t - DATA_FROM) / DAY))
            .or_default()
            .push(RequestEvent {
                time_unix_nano: t * NS,
                operation: "GET /".into(),
                status_code: if error { 503 } else { 200 },
                error,
                duration_nano: 20_000_000,
                ..Default::default()
            });
    }
    for ((s, day), requests) in by_push {
        let push = PushRequest {
            batch_id: format!("report-{s}-{day}"),
            resource: resource(SERVICES[s]),
            requests,
            ..Default::default()
        };
        push_ok(&mut client, &push).await;
    }
    // Deploys, then the incident opened and later resolved (two rows, as in life).
    for (s, name) in SERVICES.iter().enumerate() {
        let push = PushRequest {
            batch_id: format!("report-deploys-{s}"),
            resource: resource(name),
            deploys: sent
                .iter()
                .filter(|d| d.service == s)
                .map(|d| DeployEvent {
                    time_unix_nano: d.time * NS,
                    version: d.version.clone(),
                    commits: d
                        .commits
                        .iter()
                        .map(|(sha, t)| Commit {
                            sha: sha.clone(),
                            time_unix_nano: t * NS,
                        })
                        .collect(),
                    outcome: DeployOutcome::Succeeded.into(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        push_ok(&mut client, &push).await;
    }
    let blamed = sent
        .iter()
        .find(|d| d.time == BLAMED)
        .unwrap()
        .version
        .clone();
    for (i, resolved) in [(0, None), (1, Some(INCIDENT.1))] {
        let push = PushRequest {
            batch_id: format!("report-incident-{i}"),
            resource: resource("payments"),
            incidents: vec![IncidentEvent {
                id: "INC-42".into(),
                opened_at_unix_nano: INCIDENT.0 * NS,
                resolved_at_unix_nano: resolved.map_or(0, |t| t * NS),
                severity: "sev1".into(),
                cause_version: blamed.clone(),
                ..Default::default()
            }],
            ..Default::default()
        };
        push_ok(&mut client, &push).await;
    }
    let push = PushRequest {
        batch_id: "report-gate".into(),
        resource: resource("checkout"),
        gate_decisions: gate_decisions()
            .into_iter()
            .map(|(t, allowed, label, overrode, reason)| GateDecisionEvent {
                time_unix_nano: t * NS,
                allowed,
                labels: [label]
                    .into_iter()
                    .filter(|l| !l.is_empty())
                    .map(Into::into)
                    .collect(),
                override_label: overrode.into(),
                reasons: [reason]
                    .into_iter()
                    .filter(|r| !r.is_empty())
                    .map(Into::into)
                    .collect(),
                requester: "deploy-bot".into(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    assert_eq!(push_ok(&mut client, &push).await.accepted_gate_decisions, 4);
    let timeout = Duration::from_secs(180);
    assert_eq!(
        env.wait_for("SELECT count(*) FROM gate_decisions", 4, timeout),
        4
    );
    assert_eq!(
        env.wait_for("SELECT sum(total) FROM sli_1m", reqs.len() as i64, timeout),
        reqs.len() as i64
    );
    assert_eq!(
        env.wait_for("SELECT count(*) FROM deploys", sent.len() as i64, timeout),
        sent.len() as i64
    );
    assert_eq!(
        env.wait_for("SELECT count(*) FROM incidents", 2, timeout),
        2
    );

    let (from, to) = (rfc3339(T0), rfc3339(END));
    let report = |format: &str, out: &Path| {
        env.run_with(
            &[("SOURCE_DATE_EPOCH", &END.to_string())],
            &[
                "report",
                "--from",
                &from,
                "--to",
                &to,
                "--format",
                format,
                "--out",
                out.to_str().unwrap(),
            ],
        )
        .unwrap_or_else(|e| panic!("nines report --format {format}: {e}"));
        std::fs::read_to_string(out).unwrap()
    };
    let json_text = report("json", &env.dir.path().join("report.json"));
    let r: serde_json::Value = serde_json::from_str(&json_text).unwrap();
    check_figures(&r, &reqs, &sent);
    check_schema(&r);

    // Golden files: what depends on the run (the SLO directory, the Delta versions) is
    // replaced by a placeholder first.
    let slo_prefix = slo_dir.display().to_string();
    let versions: Vec<(String, u64)> = r["provenance"]["table_versions"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(t, v)| (t.clone(), v.as_u64().unwrap()))
        .collect();
    let mut golden_json = r.clone();
    for v in golden_json["provenance"]["table_versions"]
        .as_object_mut()
        .unwrap()
        .values_mut()
    {
        *v = 0.into();
    }
    let golden_json = serde_json::to_string_pretty(&golden_json)
        .unwrap()
        .replace(&slo_prefix, "<slo.dir>")
        + "\n";
    let mut md = report("md", &env.dir.path().join("report.md")).replace(&slo_prefix, "<slo.dir>");
    for (t, v) in &versions {
        md = md.replace(&format!("`{t}` v{v}"), &format!("`{t}` v0"));
    }
    compare_golden("report.json", &golden_json);
    compare_golden("report.md", &md);

    let html_path = env.dir.path().join("report.html");
    let html = report("html", &html_path);
    assert!(!html.contains("http://") || only_svg_namespace(&html));
    // The SLA section: both months' rows, January's credit.
    let slas = &html[html.find("<h2>SLAs</h2>").expect("an SLA section")..];
    assert!(
        slas.contains(">2026-01<") && slas.contains(">2026-02<"),
        "{slas}"
    );
    assert!(slas.contains("10 % (below 99.500 %)"), "{slas}");
    check_in_browser(&html_path, &r);
}

/// The page's only `http://` is the SVG namespace (an identifier, never fetched).
fn only_svg_namespace(html: &str) -> bool {
    html.matches("http://").count() == html.matches("http://www.w3.org/2000/svg").count()
}

/// DORA figures and the bad deploy's burn against what the test works out itself.
fn check_figures(r: &serde_json::Value, reqs: &[Request], sent: &[Sent]) {
    let close = |got: &serde_json::Value, want: f64, what: &str| {
        let got = got.as_f64().unwrap_or_else(|| panic!("{what}: {got}"));
        assert!((got - want).abs() < 1e-9, "{what}: {got} vs {want}");
    };
    // The release gate: the three decisions in the range, the deny and the override held.
    let inside: Vec<_> = gate_decisions()
        .into_iter()
        .filter(|d| (T0..END).contains(&d.0))
        .collect();
    let allowed = inside.iter().filter(|d| d.1).count();
    assert_eq!(
        r["gate"]["counts"],
        serde_json::json!([{
            "service": "checkout", "environment": "prod", "allowed": allowed,
            "denied": inside.len() - allowed,
            "overridden": inside.iter().filter(|d| !d.3.is_empty()).count(),
        }])
    );
    let held: Vec<(String, &str)> = r["gate"]["held"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["at"].as_str().unwrap().to_owned(),
                h["decision"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        held,
        [
            (rfc3339(BAD + HOUR), "deny"),
            (rfc3339(FIX - HOUR), "allow")
        ]
    );
    // The SLA section: January and February of checkout's default tenant, attainment and
    // credit from the requests sent (the bad deploy's 180 failures fall in January).
    let slas = r["slas"].as_array().unwrap();
    assert_eq!(slas.len(), 2, "{slas:?}");
    for (st, (month, from, to)) in slas.iter().zip([
        ("2026-01", T0, T0 + 31 * DAY),
        ("2026-02", T0 + 31 * DAY, END),
    ]) {
        let (total, bad) = count(reqs, 0, from, to);
        assert_eq!(st["month"], month, "{st}");
        assert_eq!(st["tenant"], "default", "{st}");
        close(&st["requests"]["total"], total, "SLA requests");
        close(&st["requests"]["bad"], bad, "SLA failures");
        close(&st["attainment"], 1.0 - bad / total, "SLA attainment");
        let credit = [(0.99, 0.25), (0.995, 0.10)]
            .into_iter()
            .find(|(below, _)| 1.0 - bad / total < *below)
            .map_or(0.0, |(_, c)| c);
        close(&st["credit"], credit, "SLA credit");
    }
    let metrics = r["dora"]["metrics"].as_array().unwrap();
    let scope = |service: &str| {
        metrics
            .iter()
            .find(|m| m["service"] == service)
            .unwrap_or_else(|| panic!("no DORA row for {service}: {metrics:?}"))
    };
    // Per service: one failed deployment each, recovered after 6 h (the fix), 2 h (the
    // rollback) and 5 h (the incident resolved, before the next deploy 4 days on); one
    // rework each (the fix, the rollback, the next payments deploy).
    let recovery = [6.0 * 3_600.0, 2.0 * 3_600.0, 5.0 * 3_600.0];
    let mut leads_all = Vec::new();
    for (s, name) in SERVICES.iter().enumerate() {
        let mine: Vec<&Sent> = sent.iter().filter(|d| d.service == s).collect();
        let n = mine.len() as f64;
        let leads: Vec<f64> = mine
            .iter()
            .flat_map(|d| d.commits.iter().map(|(_, c)| (d.time - c) as f64))
            .collect();
        leads_all.extend(leads.clone());
        let m = scope(name);
        close(&m["deployments"], n, "deployments");
        close(&m["deploys_per_day"], n / 59.0, "deploys_per_day");
        close(&m["change_fail_rate"], 1.0 / n, "change_fail_rate");
        close(&m["rework_rate"], 1.0 / n, "rework_rate");
        close(&m["recovery_median_s"], recovery[s], "recovery_median_s");
        close(
            &m["lead_time_commits"],
            leads.len() as f64,
            "lead_time_commits",
        );
        close(
            &m["lead_time_median_s"],
            median(leads),
            "lead_time_median_s",
        );
    }
    let all = scope("(all)");
    close(&all["deployments"], sent.len() as f64, "all deployments");
    close(
        &all["change_fail_rate"],
        3.0 / sent.len() as f64,
        "all change_fail_rate",
    );
    close(
        &all["recovery_median_s"],
        median(recovery.to_vec()),
        "all recovery",
    );
    close(
        &all["lead_time_median_s"],
        median(leads_all),
        "all lead time",
    );
    let failed: Vec<(String, String)> = r["dora"]["failed_deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["deployed_at"].as_str().unwrap().to_owned(),
                f["signals"][0].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let blamed = &sent.iter().find(|d| d.time == BLAMED).unwrap().version;
    let prev = &sent.iter().find(|d| d.time == ROLLBACK).unwrap().version;
    assert_eq!(
        failed,
        [
            (
                rfc3339(BAD),
                "page alert checkout-availability: 14.4x over 1h/5m".to_owned()
            ),
            (rfc3339(ROLLED), format!("rollback to {prev}")),
            (rfc3339(BLAMED), "incident INC-42".to_owned()),
        ],
        "blamed version {blamed}"
    );

    // The bad deploy's burn: its window is [BAD, FIX) (the fix comes before the 24 h
    // horizon); the budget is 1 % of the 30 days of requests before FIX; the baseline is
    // the error ratio of the 7 days before BAD.
    let (units, bad) = count(reqs, 0, BAD, FIX);
    let (period, _) = count(reqs, 0, FIX - 30 * DAY, FIX);
    let budget = (1.0 - TARGET) * period;
    let (base_n, base_e) = count(reqs, 0, BAD - 7 * DAY, BAD);
    let baseline = base_e / base_n;
    let excess = (bad - baseline * units).max(0.0) / budget;
    assert_eq!((units, bad), (360.0 * 2.0, 360.0));
    let deploys = r["deploys"].as_array().unwrap();
    let first = &deploys[0];
    assert_eq!(
        (&first["service"], &first["deployed_at"], &first["flagged"]),
        (&"checkout".into(), &rfc3339(BAD).into(), &true.into()),
        "{first}"
    );
    close(&first["units"], units, "units");
    close(&first["bad"], bad, "bad");
    close(&first["budget_burned"], bad / budget, "budget_burned");
    close(&first["baseline_error_ratio"], baseline, "baseline");
    close(&first["excess_burn"], excess, "excess_burn");
    assert_eq!(&first["window_end"], &serde_json::Value::from(rfc3339(FIX)));
    let flagged = deploys.iter().filter(|d| d["flagged"] == true).count();
    assert_eq!(flagged, 1, "only the bad deploy is flagged");
    assert_eq!(
        deploys.len(),
        sent.len(),
        "one row per deploy (one SLO each)"
    );

    // Each SLO at the end of the range: the last 30 days of requests.
    for (s, name) in SERVICES.iter().enumerate() {
        let (n, e) = count(reqs, s, END - 30 * DAY, END);
        let svc = r["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["service"] == *name)
            .unwrap();
        let slo = &svc["slos"][0];
        close(&slo["sli"], 1.0 - e / n, "sli");
        close(
            &slo["remaining"],
            1.0 - e / ((1.0 - TARGET) * n),
            "remaining",
        );
    }
}

fn check_schema(r: &serde_json::Value) {
    let path = crate::support::repo_root().join("docs/report.schema.json");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
    let errors: Vec<String> = validator
        .iter_errors(r)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "the report breaks its schema:\n{}",
        errors.join("\n")
    );
}

/// The HTML in headless Chromium: loaded, no request but itself, no console error, and
/// every chart (three per SLO and the weekly bars) with all its points laid out.
fn check_in_browser(html: &Path, r: &serde_json::Value) {
    let script = crate::support::repo_root().join("tests/tools/browser_check.py");
    let shot = html.with_extension("png");
    let out = std::process::Command::new(test_python())
        .arg(&script)
        .arg(html)
        .arg(&shot)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "browser_check.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["loaded"], true, "{seen}");
    assert_eq!(seen["requests"], serde_json::json!([]), "{seen}");
    assert_eq!(seen["console"], serde_json::json!([]), "{seen}");
    let charts = seen["charts"].as_array().unwrap();
    assert_eq!(charts.len(), 3 * SERVICES.len() + 1, "{seen}");
    for c in charts {
        let declared = c["declared"].as_u64().unwrap();
        assert!(declared > 0, "a chart without data: {c}");
        assert_eq!(c["laid_out"].as_u64(), Some(declared), "{c}");
        assert!(c["width"].as_f64().unwrap() > 300.0, "{c}");
    }
    // The SLI chart of each SLO has one point per history instant.
    let history = r["services"][0]["slos"][0]["history"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(
        charts[0]["declared"].as_u64(),
        Some(history as u64),
        "{seen}"
    );
    if blessing() {
        std::fs::copy(&shot, crate::support::repo_root().join("docs/report.png")).unwrap();
    }
}
