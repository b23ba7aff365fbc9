//! DORA metrics over the real pipeline: deploys (with commits) and incidents pushed through
//! ingest, Kafka and the aggregator, and `nines dora` answering what the test works out from
//! what it sent.

use std::time::Duration;

use nines_proto::v1::{Commit, DeployEvent, DeployOutcome, IncidentEvent, PushRequest, Resource};

use nines_testkit::{Generator, WorkloadSpec};

use crate::support::{Env, json_rows, now_ns, push_ok};

/// The SLO whose page alerts count against deploys: `checkout`'s 99 % availability over 30
/// days (the SLO tests' first definition, renamed).
pub fn slo() -> String {
    let web = crate::slo::SLO.split("---").next().unwrap();
    assert!(web.contains("duration: 30d") && web.contains("target: 0.99"));
    web.replace("web-availability", "checkout-availability")
}

const HOUR: i64 = 3_600_000_000_000;

fn resource() -> Option<Resource> {
    Some(Resource {
        tenant: String::new(),
        service: "checkout".into(),
        environment: "prod".into(),
        version: String::new(),
    })
}

/// Five deployments of `checkout` in prod over 40 hours from `base` (hours, commits and
/// commit hours after `base`):
/// - d1 1 h v1 (a 0, b 0.5): lead 1 h, 0.5 h;
/// - d2 10 h v2 (c 8): lead 2 h; incident INC-1 names v2, opened at 11 h, then updated as
///   resolved at 14 h: failed;
/// - d3 12 h v3 (d 11.5): lead 0.5 h; the fix (rework), recovering d2 after 2 h (before
///   INC-1's resolution);
/// - d4 20 h v4 (e 17): lead 3 h; failed, as d5 goes back to v3;
/// - d5 21 h v3: the rollback (rework), recovering d4 after 1 h.
///
/// And requests: 100 a minute from 0 h to 3 h, one failing a minute before d1 (1 %), none
/// after but for every one from 2 h to 2 h 10 min: the
/// 14.4× page (1 h / 5 m: 10 of the last 60 minutes failing, 16.7 %) and the 6× page (6 h /
/// 30 m: over 8 % of the requests, and a third of the last 30 minutes) start in d1's
/// window [1 h, 10 h), so d1 failed too, recovered by d3 (d2 failed) after 11 h, and d2 is
/// rework.
///
/// So: 5 deployments (3 a day), change fail rate 3/5, rework 3/5 (d2, d3, d5), recovery
/// median over 39600, 7200, 3600 s = 7200 s, lead time median over 1800, 1800, 3600, 7200,
/// 10800 s = 3600 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dora_metrics_match_the_figures_worked_out_from_what_was_sent() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("checkout.yaml"), slo()).unwrap();
    let env = Env::with_config(&format!(
        "[slo]\ndir = {:?}\n",
        dir.path().display().to_string()
    ));
    let _up = env.up();
    let mut client = env.client().await;
    let base = (now_ns() / HOUR - 41) * HOUR;
    let at = |h: f64| base + (h * HOUR as f64) as i64;
    let deploy = |h: f64, version: &str, commits: &[(&str, f64)]| DeployEvent {
        time_unix_nano: at(h),
        version: version.into(),
        commits: commits
            .iter()
            .map(|(sha, c)| Commit {
                sha: (*sha).into(),
                time_unix_nano: at(*c),
            })
            .collect(),
        outcome: DeployOutcome::Succeeded.into(),
        ..Default::default()
    };
    let deploys = vec![
        deploy(1.0, "v1", &[("a", 0.0), ("b", 0.5)]),
        deploy(10.0, "v2", &[("c", 8.0)]),
        deploy(12.0, "v3", &[("d", 11.5)]),
        deploy(20.0, "v4", &[("e", 17.0)]),
        deploy(21.0, "v3", &[]),
    ];
    let incident = |resolved: i64| IncidentEvent {
        id: "INC-1".into(),
        opened_at_unix_nano: at(11.0),
        resolved_at_unix_nano: resolved,
        severity: "sev2".into(),
        cause_version: "v2".into(),
        ..Default::default()
    };
    for (n, (deploys, incidents)) in [
        (deploys, vec![incident(0)]),
        (Vec::new(), vec![incident(at(14.0))]),
    ]
    .into_iter()
    .enumerate()
    {
        let push = PushRequest {
            resource: resource(),
            batch_id: format!("dora-{n}"),
            deploys,
            incidents,
            ..Default::default()
        };
        push_ok(&mut client, &push).await;
    }
    let mut generator = Generator::new(WorkloadSpec {
        seed: 41,
        error_ratio: 0.0,
        client_error_ratio: 0.0,
        ..WorkloadSpec::default()
    });
    for minute in 0..180 {
        let mut push = generator.push(0, 100, at(minute as f64 / 60.0) + 30_000_000_000);
        // Before d1, one error a minute (the baseline, 1 %); from 2 h, ten failing minutes.
        let failing = match minute {
            0..60 => 1,
            120..130 => 100,
            _ => 0,
        };
        for r in push.requests.iter_mut().take(failing) {
            r.error = true;
            r.status_code = 500;
        }
        push_ok(&mut client, &push).await;
    }
    let timeout = Duration::from_secs(60);
    assert_eq!(
        env.wait_for("SELECT sum(total) FROM sli_1m", 18_000, timeout),
        18_000
    );
    assert_eq!(env.wait_for("SELECT count(*) FROM deploys", 5, timeout), 5);
    assert_eq!(
        env.wait_for("SELECT count(*) FROM incidents", 2, timeout),
        2
    );

    let from = nines_slo::window::rfc3339(base / 1_000_000_000);
    let to = nines_slo::window::rfc3339(at(40.0) / 1_000_000_000);
    let out = env
        .run(&["dora", "--from", &from, "--to", &to, "--format", "json"])
        .unwrap();
    let rows = json_rows(&out);
    let scope = rows
        .iter()
        .find(|r| r["service"] == "checkout" && r["environment"] == "prod")
        .unwrap_or_else(|| panic!("{out}"));
    let close = |key: &str, want: f64| {
        let got = scope[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key}: {scope}"));
        assert!((got - want).abs() < 1e-9, "{key}: {got} vs {want}");
    };
    close("deployments", 5.0);
    close("deploys_per_day", 5.0 / (40.0 / 24.0));
    close("change_fail_rate", 0.6);
    close("failed", 3.0);
    close("rework_rate", 0.6);
    close("recovery_median_s", 7_200.0);
    close("unrecovered", 0.0);
    close("lead_time_median_s", 3_600.0);
    close("lead_time_commits", 5.0);
    let failed: Vec<String> = rows
        .iter()
        .filter(|r| r.get("signals").is_some())
        .map(|r| format!("{} {} {}", r["version"], r["signals"], r["recovery_s"]))
        .collect();
    assert_eq!(
        failed,
        [
            r#""v1" ["page alert checkout-availability: 14.4x over 1h/5m","page alert checkout-availability: 6x over 6h/30m"] 39600.0"#,
            r#""v2" ["incident INC-1"] 7200.0"#,
            r#""v4" ["rollback to v3"] 3600.0"#
        ],
        "{out}"
    );
    // Tiers (config/dora-tiers.toml, 2023): 3 a day and a 1 h median lead time are elite;
    // a 60 % fail rate is past every bound (low); a 2 h median recovery is within a day
    // (high).
    let tier = rows
        .iter()
        .find(|r| r.get("deployment_frequency").is_some() && r["service"] == "checkout")
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(
        [
            &tier["deployment_frequency"],
            &tier["lead_time"],
            &tier["change_fail_rate"],
            &tier["recovery_time"]
        ],
        ["elite", "elite", "low", "high"],
        "{out}"
    );
    // The weekly trend splits the same five deployments.
    let weekly: u64 = rows
        .iter()
        .filter(|r| r.get("week").is_some())
        .map(|r| r["deployments"].as_u64().unwrap())
        .sum();
    assert_eq!(weekly, 5, "{out}");
    check_deploys(&env, &from, &to);
    check_report(&env, &from, &to, &slo());
}

/// `nines deploys` over the same scenario: d1's window [1 h, 10 h) holds 12,000 requests and
/// the outage's 1,000 failures; the 30-day budget at 10 h is 1 % of the 18,000 requests so
/// far (180); the baseline before d1 is 60 / 6,000 = 1 %, so the excess is (1,000 − 120) /
/// 180. Only d1 is flagged, and it comes first.
fn check_deploys(env: &Env, from: &str, to: &str) {
    let out = env
        .run(&["deploys", "--from", from, "--to", to, "--format", "json"])
        .unwrap();
    let rows = json_rows(&out);
    assert_eq!(rows.len(), 5, "{out}");
    let d1 = &rows[0];
    assert_eq!(
        (&d1["version"], &d1["flagged"]),
        (&"v1".into(), &true.into()),
        "{out}"
    );
    let budget = (1.0 - 0.99) * 18_000.0;
    for (key, want) in [
        ("bad", 1_000.0),
        ("units", 12_000.0),
        ("budget_burned", 1_000.0 / budget),
        ("baseline_error_ratio", 0.01),
        ("excess_burn", (1_000.0 - 0.01 * 12_000.0) / budget),
    ] {
        let got = d1[key].as_f64().unwrap();
        assert!(
            (got - want).abs() < 1e-9 * want.max(1.0),
            "{key}: {got} vs {want}"
        );
    }
    assert!(
        d1["alerts"].as_array().unwrap().iter().any(|a| a
            .as_str()
            .unwrap()
            .starts_with("14.4x over 1h/5m (page) from")),
        "{d1}"
    );
    for r in &rows[1..] {
        assert_eq!(r["flagged"], false, "{r}");
        assert_eq!(r["excess_burn"].as_f64(), Some(0.0), "{r}");
    }
}

/// `nines report` over the same scenario, in JSON and Markdown: at the end of the range the
/// SLO has 1,060 bad of 18,000 requests (60 before d1, the outage's 1,000) against a budget
/// of 180, so 1 − 1060/180 remains and the service is exhausted; the flagged deploy, the
/// DORA figures and the provenance (the SLO file's hash worked out here) are there.
fn check_report(env: &Env, from: &str, to: &str, slo_text: &str) {
    use sha2::Digest;
    let file = env.dir.path().join("report.json");
    env.run(&[
        "report",
        "--from",
        from,
        "--to",
        to,
        "--format",
        "json",
        "--out",
        file.to_str().unwrap(),
    ])
    .unwrap();
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(r["schema"], "nines.report/v1");
    let p = &r["provenance"];
    assert_eq!(
        (p["from"].as_str(), p["to"].as_str()),
        (Some(from), Some(to))
    );
    let hash: String = sha2::Sha256::digest(slo_text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(p["slo_files"][0]["sha256"], hash.as_str(), "{p}");
    assert!(p["table_versions"]["deploys"].as_u64().unwrap() >= 1, "{p}");
    let svc = &r["services"][0];
    assert_eq!(
        (&svc["service"], &svc["status"]),
        (&"checkout".into(), &"exhausted".into())
    );
    let slo = &svc["slos"][0];
    let remaining = slo["remaining"].as_f64().unwrap();
    assert!((remaining - (1.0 - 1_060.0 / 180.0)).abs() < 1e-9, "{slo}");
    assert!(
        slo["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["alert"] == "14.4x over 1h/5m" && a["end"].is_string()),
        "{slo}"
    );
    assert_eq!(
        (&r["deploys"][0]["version"], &r["deploys"][0]["flagged"]),
        (&"v1".into(), &true.into())
    );
    let prod = r["dora"]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["environment"] == "prod")
        .unwrap();
    assert_eq!(prod["change_fail_rate"], 0.6);

    let md = env
        .run(&["report", "--from", from, "--to", to, "--format", "md"])
        .unwrap();
    for want in [
        "### checkout — exhausted",
        "## Deploys (flagged first)",
        "## DORA",
        "Weekly trend:",
    ] {
        assert!(md.contains(want), "{want:?} not in\n{md}");
    }
    let flagged_row = md
        .lines()
        .find(|l| l.contains("| v1 ") && l.contains("checkout-availability"))
        .unwrap_or_else(|| panic!("{md}"));
    assert!(flagged_row.contains("true"), "{flagged_row}");
}

/// `nines up` with `report.every` writes the report of each period that ends, HTML, Markdown
/// and JSON side by side, each covering exactly the period.
#[test]
fn up_writes_a_report_for_every_period() {
    let reports = tempfile::tempdir().unwrap();
    let env = Env::with_config(&format!(
        "[report]\nevery = \"3s\"\ndir = {:?}\n",
        reports.path().display().to_string()
    ));
    let _up = env.up();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let json = loop {
        let found = std::fs::read_dir(reports.path())
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "json"));
        if let Some(p) = found {
            break p;
        }
        assert!(std::time::Instant::now() < deadline, "no report written");
        std::thread::sleep(Duration::from_millis(200));
    };
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(r["schema"], "nines.report/v1");
    let t = |k: &str| {
        chrono::DateTime::parse_from_rfc3339(r["provenance"][k].as_str().unwrap())
            .unwrap()
            .timestamp()
    };
    assert_eq!(t("to") - t("from"), 3, "{r}");
    assert_eq!(t("to") % 3, 0, "periods are aligned on the clock: {r}");
    let md = std::fs::read_to_string(json.with_extension("md")).unwrap();
    assert!(md.starts_with("# nines report: "), "{md}");
    let html = std::fs::read_to_string(json.with_extension("html")).unwrap();
    assert!(html.starts_with("<!doctype html>"), "{html}");
}
