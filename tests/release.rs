//! The safety net for releases over a seeded scenario with a known answer: October and
//! November 2026 of two services and three tenants (acme, globex, initech: one API key
//! each), pushed through ingest, Kafka and the aggregator.
//!
//! - `checkout` serves each tenant a request a minute. Its bad deploy v2 (10 November,
//!   10:00–18:00 UTC) fails every request of acme, every second minute's of globex and every
//!   thirtieth's of initech, until the hotfix v3; a background failure now and then
//!   besides. Its internal SLO is 99.9 % over 30 days (exhausted by the outage); its SLA
//!   promises 99.5 % a calendar month in Europe/Berlin with credits below 99.5 % (10 %),
//!   99 % (25 %) and 95 % (100 %).
//! - `search` runs a one-hour canary on 20 November: the baseline v1 beside `same` (as
//!   good), `slow` (every request 1.5 times as long) and `tiny` (too few requests).
//!
//! The gate, the verdicts and the SLA statements are checked against what the test works
//! out from its own ledger; the statements also equal `tests/golden/sla.md` and `.json`,
//! reviewed by a person (`NINES_BLESS=1` rewrites them: review the diff).

use std::process::Command;
use std::time::Duration;

use nines_proto::v1::ingest_service_client::IngestServiceClient;
use nines_proto::v1::{PushRequest, RequestEvent, Resource};
use nines_slo::window::rfc3339;
use nines_testkit::process::http_status;
use tonic::transport::Channel;

use crate::support::{BIN, Env, admin_port, compare_golden, json_rows, push_ok_with_key};

const NS: i64 = 1_000_000_000;
const MINUTE: i64 = 60;
const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;
/// 2026-10-01T00:00:00Z.
const T0: i64 = 1_790_812_800;
/// 2026-12-01T00:00:00Z.
const END: i64 = T0 + 61 * DAY;
/// The bad deploy and its hotfix: 2026-11-10 10:00 and 18:00 UTC.
const BAD: i64 = 1_794_304_800;
const FIX: i64 = BAD + 8 * HOUR;
/// The canary hour of `search`: 2026-11-20 12:00 UTC.
const CANARY: i64 = T0 + 50 * DAY + 12 * HOUR;

const TENANTS: [&str; 3] = ["acme", "globex", "initech"];

fn key(tenant: &str) -> String {
    format!("{tenant}-key")
}

/// Whether `checkout`'s request of `tenant` (index) at `minute` (since T0) fails.
fn fails(tenant: usize, minute: i64) -> bool {
    let t = T0 + minute * MINUTE;
    let background = (minute + 1_000 * tenant as i64) % 5_000 == 7;
    let outage = (BAD..FIX).contains(&t)
        && match tenant {
            0 => true,
            1 => minute % 2 == 0,
            _ => minute % 30 == 0,
        };
    background || outage
}

/// (requests, failures) of `checkout` in `[from, to)` for `tenants` (the test's ledger).
fn ledger(tenants: &[usize], from: i64, to: i64) -> (f64, f64) {
    let (mut total, mut bad) = (0.0, 0.0);
    for &tenant in tenants {
        for minute in 0..(END - T0) / MINUTE {
            let t = T0 + minute * MINUTE;
            if (from..to).contains(&t) {
                total += 1.0;
                bad += f64::from(u8::from(fails(tenant, minute)));
            }
        }
    }
    (total, bad)
}

/// The internal SLO's budget left at `at`: 99.9 % over the 30 days before it.
fn remaining(at: i64) -> f64 {
    let (total, bad) = ledger(&[0, 1, 2], at - 30 * DAY, at);
    1.0 - bad / (0.001 * total)
}

fn checkout_version(t: i64) -> &'static str {
    if t < BAD {
        "v1"
    } else if t < FIX {
        "v2"
    } else {
        "v3"
    }
}

fn slo() -> String {
    crate::dora::slo().replace("target: 0.99\n", "target: 0.999\n")
}

const SLA: &str = "\
apiVersion: nines/v1
kind: SLA
metadata:
  name: checkout-enterprise
spec:
  slo: checkout-availability
  target: 0.995
  timeZone: Europe/Berlin
  credits:
    - below: 0.995
      credit: 0.10
    - below: 0.99
      credit: 0.25
    - below: 0.95
      credit: 1.0
";

/// `search` in one minute of the canary hour: the baseline v1 (200 a minute, one error a
/// minute) beside `same` (50 a minute, as fast, one error every four minutes: the same
/// 0.5 %), `slow` (as `same`, every request 1.5 times as long) and `tiny` (5 a minute: 300
/// in the hour, below the floor of 1,000).
fn search_minute(version: &str, minute: i64) -> Vec<RequestEvent> {
    let (n, step_us, errors) = match version {
        "v1" => (200, 100, 1),
        "same" | "slow" => (50, 400, usize::from(minute % 4 == 0)),
        "tiny" => (5, 4_000, 0),
        other => unreachable!("{other}"),
    };
    let slow = if version == "slow" { 1.5 } else { 1.0 };
    (0..n)
        .map(|i| RequestEvent {
            time_unix_nano: (CANARY + minute * MINUTE) * NS + 1_000_000 * i as i64,
            operation: "GET /search".into(),
            status_code: if i < errors { 500 } else { 200 },
            error: i < errors,
            // 10 ms plus a spread over [0, 20 ms), in an order unrelated to time.
            duration_nano: ((10_000.0 + ((i * 37) % n) as f64 * step_us as f64) * 1_000.0 * slow)
                as i64,
            ..Default::default()
        })
        .collect()
}

/// The exact nearest-rank quantile of a version's durations over the canary hour (ns).
fn exact_quantile(version: &str, q: f64) -> f64 {
    let mut d: Vec<i64> = (0..60)
        .flat_map(|m| search_minute(version, m))
        .map(|e| e.duration_nano)
        .collect();
    d.sort_unstable();
    let rank = ((q * d.len() as f64).ceil() as usize).clamp(1, d.len());
    d[rank - 1] as f64
}

fn resource(service: &str, version: &str) -> Option<Resource> {
    Some(Resource {
        tenant: String::new(),
        service: service.into(),
        environment: "prod".into(),
        version: version.into(),
    })
}

/// Pushes `push` with `tenant`'s key.
async fn push_as(client: &mut IngestServiceClient<Channel>, tenant: &str, push: PushRequest) {
    push_ok_with_key(client, &push, Some(&key(tenant))).await;
}

/// Runs `nines` with `args`: its exit status and standard output.
fn nines(env: &Env, args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN)
        .arg("--config")
        .arg(env.config("one-shot"))
        .args(["--log", "warn"])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let code = out.status.code().unwrap_or(-1);
    assert!(
        code != 2 && code != 101,
        "nines {args:?} could not answer: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (code, stdout)
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_months_of_releases_give_the_worked_out_gate_verdicts_and_sla() {
    let dir = tempfile::tempdir().unwrap();
    let (slos, slas) = (dir.path().join("slos"), dir.path().join("slas"));
    std::fs::create_dir_all(&slos).unwrap();
    std::fs::create_dir_all(&slas).unwrap();
    std::fs::write(slos.join("checkout.yaml"), slo()).unwrap();
    std::fs::write(slas.join("checkout.yaml"), SLA).unwrap();
    let keys: String = TENANTS
        .iter()
        .map(|t| format!("[[ingest.api_keys]]\ntenant = {t:?}\nkey = {:?}\n", key(t)))
        .collect();
    // Staging keeps a quarter of the budget in reserve and ignores alerts; prod has the
    // Workbook's policy (the default) and holds releases while the last deploy's first day
    // burns more than 5 % of the budget above its baseline.
    let env = Env::with_config(&format!(
        "[slo]\ndir = {:?}\n[sla]\ndir = {:?}\n{keys}\
         [[gate.policy]]\nservice = \"checkout\"\nenvironment = \"staging\"\n\
         min_budget_remaining = 0.25\ndeny_on_severities = []\n\
         [[gate.policy]]\nservice = \"checkout\"\nenvironment = \"prod\"\n\
         max_previous_deploy_excess = 0.05\n",
        slos.display().to_string(),
        slas.display().to_string(),
    ));
    // Two months ago is older than ingest takes by default; maintenance (retention of raw
    // requests) stays off so the tables hold what was sent.
    let _up = env.spawn(
        "up",
        &[
            ("NINES__INGEST__MAX_EVENT_AGE", "3650days"),
            ("NINES__STORAGE__INTERVAL", "0s"),
        ],
        &["up"],
    );
    let admin = admin_port(&env.dir.path().join("up.toml"));
    let mut client = env.client().await;

    // checkout: one push per tenant, day and version.
    for (tenant, name) in TENANTS.iter().enumerate() {
        let mut batch: Vec<RequestEvent> = Vec::new();
        let mut version = checkout_version(T0);
        let mut sent = 0;
        for minute in 0..(END - T0) / MINUTE {
            let t = T0 + minute * MINUTE;
            if checkout_version(t) != version || (t - T0) % DAY == 0 && !batch.is_empty() {
                let push = PushRequest {
                    resource: resource("checkout", version),
                    batch_id: format!("checkout-{name}-{sent}"),
                    requests: std::mem::take(&mut batch),
                    ..Default::default()
                };
                push_as(&mut client, name, push).await;
                sent += 1;
                version = checkout_version(t);
            }
            let failed = fails(tenant, minute);
            batch.push(RequestEvent {
                time_unix_nano: (t + 10 * tenant as i64) * NS,
                operation: "POST /checkout".into(),
                status_code: if failed { 500 } else { 200 },
                error: failed,
                duration_nano: 20_000_000,
                ..Default::default()
            });
        }
        let push = PushRequest {
            resource: resource("checkout", version),
            batch_id: format!("checkout-{name}-{sent}"),
            requests: batch,
            ..Default::default()
        };
        push_as(&mut client, name, push).await;
    }
    // search: acme's canary hour, one push per version and ten minutes.
    for version in ["v1", "same", "slow", "tiny"] {
        for start in (0..60).step_by(10) {
            let push = PushRequest {
                resource: resource("search", version),
                batch_id: format!("search-{version}-{start}"),
                requests: (start..start + 10)
                    .flat_map(|m| search_minute(version, m))
                    .collect(),
                ..Default::default()
            };
            push_as(&mut client, "acme", push).await;
        }
    }
    let expected = 3 * (END - T0) / MINUTE + 60 * (200 + 50 + 50 + 5);
    assert_eq!(
        env.wait_for(
            "SELECT sum(total) FROM sli_1m",
            expected,
            Duration::from_secs(240)
        ),
        expected
    );
    // The rollup keeps versions apart: v2 served exactly the outage.
    let (_, outage_bad) = ledger(&[0, 1, 2], BAD, FIX);
    assert_eq!(
        env.sql_i64("SELECT sum(errors) FROM sli_1m WHERE service = 'checkout' AND version = 'v2'"),
        outage_bad as i64
    );

    check_gate(&env, admin);
    check_verdicts(&env, admin);
    check_sla(&env);
}

/// A decision the test expects in `gate_decisions`: environment, the instant asked about,
/// allow or deny, the override label.
type Recorded = (String, i64, String, Option<String>);

fn check_gate(env: &Env, admin: u16) {
    let gate = |environment: &str, at: i64, labels: &str, extra: &[&str]| {
        let at_text = rfc3339(at);
        let mut args = vec![
            "gate",
            "--service",
            "checkout",
            "--environment",
            environment,
            "--labels",
            labels,
            "--at",
            &at_text,
            "--format",
            "json",
        ];
        args.extend_from_slice(extra);
        let (code, out) = nines(env, &args);
        let v = json(&out);
        assert_eq!(code == 0, v["allow"] == true, "{out}");
        v
    };
    let budget = |v: &serde_json::Value| v["slos"][0]["budget_remaining"].as_f64().unwrap();
    // What each answer says it recorded, in the test's own terms.
    let mut recorded: Vec<Recorded> = Vec::new();
    let mut note = |environment: &str, at: i64, v: &serde_json::Value| {
        assert_eq!(v["recorded"], true, "{v}");
        recorded.push((
            environment.to_owned(),
            at,
            v["decision"].as_str().unwrap().to_owned(),
            v["override_label"].as_str().map(str::to_owned),
        ));
    };

    // Two hours into the outage: the budget is gone (184 of its 130 requests, besides the
    // background) and the 14.4x page row fires (the last hour and the last 5 minutes
    // failed at acme's 100 %, globex's 50 % and initech's 3.3 %: a burn of 511).
    let at = BAD + 2 * HOUR;
    assert!(remaining(at) < 0.0);
    let v = gate("prod", at, "", &[]);
    assert_eq!(v["decision"], "deny", "{v}");
    note("prod", at, &v);
    assert!((budget(&v) - remaining(at)).abs() < 1e-9, "{v}");
    let reasons: Vec<String> = v["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("error budget exhausted")),
        "{v}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("page alert 14.4x over 1h/5m is firing")),
        "{v}"
    );
    // v2's window (from its last tenant's first request, initech's at BAD + 20 s, so from
    // the next whole minute) burned far above the 7 days before it.
    let (units, bad) = ledger(&[0, 1, 2], BAD + MINUTE, at);
    let (base_units, base_bad) = ledger(&[0, 1, 2], BAD - 7 * DAY + MINUTE, BAD + MINUTE);
    let whole = 0.001 * ledger(&[0, 1, 2], at - 30 * DAY, at).0;
    let excess = (bad - base_bad / base_units * units) / whole;
    let previous = &v["previous_deploy"];
    assert_eq!(previous["version"], "v2", "{v}");
    assert_eq!(previous["deployed_at"], rfc3339(BAD + 20), "{v}");
    let got = previous["excess_burn"][0]["excess_burn"].as_f64().unwrap();
    assert!((got - excess).abs() < 1e-9, "{got} vs {excess}");
    assert!(
        reasons.iter().any(|r| r.starts_with(&format!(
            "previous deploy v2 ({}) is in its window until {} and burned {:.1} % of SLO \
             checkout-availability/",
            rfc3339(BAD + 20),
            rfc3339(BAD + 20 + DAY),
            excess * 100.0
        ))),
        "{v}"
    );
    // An hour after the hotfix v3 its window burned nothing above the baseline (which the
    // outage raised): the rule holds nothing, the spent budget still does.
    let v = gate("prod", FIX + HOUR, "", &[]);
    assert_eq!(v["previous_deploy"]["version"], "v3", "{v}");
    assert_eq!(
        v["previous_deploy"]["excess_burn"][0]["excess_burn"], 0.0,
        "{v}"
    );
    assert_eq!(v["decision"], "deny", "{v}");
    let said = v["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap());
    assert!(
        said.clone().all(|r| !r.starts_with("previous deploy")),
        "{v}"
    );
    note("prod", FIX + HOUR, &v);
    // The hotfix goes out regardless, and says what it overrode.
    let v = gate(
        "prod",
        at,
        "hotfix",
        &["--version", "v3", "--requester", "ci/checkout#77"],
    );
    assert_eq!(v["decision"], "allow", "{v}");
    assert_eq!(v["override_label"], "hotfix", "{v}");
    assert_eq!(v["reasons"].as_array().unwrap().len(), reasons.len(), "{v}");
    note("prod", at, &v);
    // A dry run answers the same and records nothing.
    let v = gate("prod", at, "", &["--no-record"]);
    assert_eq!(
        (&v["decision"], &v["recorded"]),
        (&"deny".into(), &false.into()),
        "{v}"
    );

    // Away from the outage's alert windows (a day before, and from a day after), prod
    // denies exactly while the 30-day budget is overspent: from the outage until it leaves
    // the window, 30 days later (after the data ends, so the test asks on 11 December too).
    let mut decisions = Vec::new();
    for at in [
        BAD - DAY,
        FIX + DAY,
        FIX + 10 * DAY,
        END - HOUR,
        BAD + 30 * DAY + DAY,
    ] {
        let path = format!(
            "/v1/gate?service=checkout&environment=prod&at={}",
            rfc3339(at)
        );
        let (status, body) = http_status(admin, &path).unwrap();
        assert_eq!(status, 200, "{body}");
        let v = json(&body);
        let want = if remaining(at) >= 0.0 {
            "allow"
        } else {
            "deny"
        };
        assert_eq!(v["decision"], want, "{}: {v}", rfc3339(at));
        assert!((budget(&v) - remaining(at)).abs() < 1e-9, "{v}");
        note("prod", at, &v);
        decisions.push(want);
    }
    assert_eq!(decisions, ["allow", "deny", "deny", "deny", "allow"]);
    // Staging keeps a quarter in reserve: a day before the outage the budget is whole
    // enough, the day after it is not.
    let v = gate("staging", BAD - DAY, "", &[]);
    assert_eq!(v["decision"], "allow", "{v}");
    note("staging", BAD - DAY, &v);
    let v = gate("staging", FIX + DAY, "", &[]);
    assert_eq!(v["decision"], "deny", "{v}");
    note("staging", FIX + DAY, &v);
    assert_eq!(
        v["reasons"][0].as_str().unwrap(),
        format!(
            "SLO checkout-availability/{}: {:.1} % of the error budget left, below the policy's 25.0 %",
            v["slos"][0]["objective"].as_str().unwrap(),
            remaining(FIX + DAY) * 100.0
        ),
        "{v}"
    );
    // The same question asked of the running nines over HTTP, by the command line.
    let url = format!("http://127.0.0.1:{admin}");
    let (code, out) = nines(
        env,
        &[
            "gate",
            "--service",
            "checkout",
            "--environment",
            "prod",
            "--at",
            &rfc3339(FIX + DAY),
            "--server",
            &url,
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("deny: SLO checkout-availability/"), "{out}");
    recorded.push(("prod".into(), FIX + DAY, "deny".into(), None));

    check_recorded(env, recorded);
}

/// Every recorded decision is in `gate_decisions` once, and the report's "Release gate"
/// counts and lists them.
fn check_recorded(env: &Env, mut recorded: Vec<Recorded>) {
    let n = recorded.len() as i64;
    assert_eq!(n, 11);
    assert_eq!(
        env.wait_for(
            "SELECT count(*) FROM gate_decisions",
            n,
            Duration::from_secs(120)
        ),
        n
    );
    recorded.sort();
    let rows = env.sql(
        "SELECT environment, CAST(to_unixtime(evaluated_at) AS BIGINT) AS at, decision, \
         override_label, tenant, service, version, requester, cardinality(reasons) AS reasons \
         FROM gate_decisions ORDER BY environment, at, decision, override_label NULLS FIRST",
    );
    let got: Vec<Recorded> = rows
        .iter()
        .map(|r| {
            (
                r["environment"].as_str().unwrap().to_owned(),
                r["at"].as_i64().unwrap(),
                r["decision"].as_str().unwrap().to_owned(),
                r["override_label"].as_str().map(str::to_owned),
            )
        })
        .collect();
    assert_eq!(got, recorded);
    for r in &rows {
        assert_eq!(
            (&r["tenant"], &r["service"]),
            (&"default".into(), &"checkout".into()),
            "{r}"
        );
        // A deny always says why; so does an override (what it overrode).
        if r["decision"] == "deny" || !r["override_label"].is_null() {
            assert!(r["reasons"].as_i64().unwrap() > 0, "{r}");
        }
    }
    let hotfix = rows
        .iter()
        .find(|r| r["override_label"] == "hotfix")
        .unwrap();
    assert_eq!(
        (&hotfix["version"], &hotfix["requester"]),
        (&"v3".into(), &"ci/checkout#77".into())
    );

    // The report over November: the decisions about instants in it, by environment.
    let (from, to) = (T0 + 31 * DAY, END);
    let (code, out) = nines(
        env,
        &[
            "report",
            "--service",
            "checkout",
            "--from",
            &rfc3339(from),
            "--to",
            &rfc3339(to),
            "--format",
            "json",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let gate = &json(&out)["gate"];
    let inside: Vec<&Recorded> = recorded
        .iter()
        .filter(|r| (from..to).contains(&r.1))
        .collect();
    assert_eq!(inside.len(), 10, "all but 11 December");
    let mut counts = Vec::new();
    for environment in ["prod", "staging"] {
        let of = |f: &dyn Fn(&Recorded) -> bool| {
            inside.iter().filter(|r| r.0 == environment && f(r)).count()
        };
        counts.push(serde_json::json!({
            "service": "checkout",
            "environment": environment,
            "allowed": of(&|r| r.2 == "allow"),
            "denied": of(&|r| r.2 == "deny"),
            "overridden": of(&|r| r.3.is_some()),
        }));
    }
    assert_eq!(gate["counts"], serde_json::Value::Array(counts), "{gate}");
    // Held: every deny and the hotfix, oldest first.
    let mut held: Vec<(i64, String, Option<String>)> = inside
        .iter()
        .filter(|r| r.2 == "deny" || r.3.is_some())
        .map(|r| (r.1, r.0.clone(), r.3.clone()))
        .collect();
    held.sort();
    let got: Vec<(i64, String, Option<String>)> = gate["held"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                chrono::DateTime::parse_from_rfc3339(h["at"].as_str().unwrap())
                    .unwrap()
                    .timestamp(),
                h["environment"].as_str().unwrap().to_owned(),
                h["override_label"].as_str().map(str::to_owned),
            )
        })
        .collect();
    assert_eq!(got, held, "{gate}");
}

fn check_verdicts(env: &Env, admin: u16) {
    let (from, to) = (rfc3339(CANARY), rfc3339(CANARY + HOUR));
    let verdict = |candidate: &str| {
        let (code, out) = nines(
            env,
            &[
                "verdict",
                "--service",
                "search",
                "--environment",
                "prod",
                "--candidate",
                candidate,
                "--baseline",
                "v1",
                "--since",
                &from,
                "--to",
                &to,
                "--format",
                "json",
            ],
        );
        (code, json(&out))
    };
    let counts = |v: &serde_json::Value, who: &str| {
        (
            v[who]["total"].as_u64().unwrap(),
            v[who]["errors"].as_u64().unwrap(),
        )
    };

    let (code, v) = verdict("slow");
    assert_eq!((code, v["verdict"].as_str()), (1, Some("fail")), "{v}");
    assert_eq!(v["minutes"], 60, "{v}");
    assert_eq!(counts(&v, "candidate_sample"), (3_000, 15), "{v}");
    assert_eq!(counts(&v, "baseline_sample"), (12_000, 60), "{v}");
    assert_eq!(v["checks"][0]["outcome"], "pass", "{v}");
    assert!(v["reason"].as_str().unwrap().starts_with("p95 "), "{v}");
    // The sketches' quantiles are within their 1 % of the exact ones (and a rank).
    for (who, version) in [("candidate_sample", "slow"), ("baseline_sample", "v1")] {
        for (key, q) in [("p95", 0.95), ("p99", 0.99)] {
            let got = v[who]["latency_ns"][key].as_f64().unwrap();
            let want = exact_quantile(version, q);
            assert!(
                (got / want - 1.0).abs() < 0.02,
                "{who} {key}: {got} vs {want}"
            );
        }
    }

    let (code, v) = verdict("same");
    assert_eq!((code, v["verdict"].as_str()), (0, Some("pass")), "{v}");
    assert_eq!(counts(&v, "candidate_sample"), (3_000, 15), "{v}");

    let (code, v) = verdict("tiny");
    assert_eq!(
        (code, v["verdict"].as_str()),
        (3, Some("inconclusive")),
        "{v}"
    );
    assert_eq!(
        v["reason"],
        "the candidate served 300 requests in the compared minutes, below the floor of 1000"
    );

    // Argo Rollouts' web metric provider reads `jsonPath: "{$.verdict}"` from this body and
    // tests `successCondition: result == "pass"` / `failureCondition: result == "fail"`
    // (docs/release.md): the same field, read the same way. With `strict=true` (Flagger's
    // webhooks read only the status) anything but a pass is a 412.
    for (candidate, result, strict) in [
        ("slow", "fail", 412),
        ("same", "pass", 200),
        ("tiny", "inconclusive", 412),
    ] {
        let path = format!(
            "/v1/verdict?service=search&environment=prod&candidate={candidate}&baseline=v1&since={from}&to={to}"
        );
        let (status, body) = http_status(admin, &path).unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(json(&body)["verdict"], result, "{body}");
        let (status, body) = http_status(admin, &format!("{path}&strict=true")).unwrap();
        assert_eq!(status, strict, "{body}");
    }
    // A question without its versions is refused by name.
    let (status, body) = http_status(admin, "/v1/verdict?service=search").unwrap();
    assert_eq!(status, 400);
    assert!(
        body.contains("service, candidate and baseline: required"),
        "{body}"
    );
    let (status, body) =
        http_status(admin, "/v1/verdict?service=search&candidate=v1&baseline=v1").unwrap();
    assert_eq!(status, 400);
    assert!(
        body.contains("candidate, baseline: both are \\\"v1\\\""),
        "{body}"
    );
}

/// Berlin's November 2026 (CET all month): [31 Oct 23:00, 30 Nov 23:00) UTC; its October
/// (CEST until the 25th): [30 Sep 22:00, 31 Oct 23:00) UTC.
const NOVEMBER: (i64, i64) = (T0 + 31 * DAY - HOUR, END - HOUR);
const OCTOBER: (i64, i64) = (T0 - 2 * HOUR, T0 + 31 * DAY - HOUR);

fn check_sla(env: &Env) {
    let (code, out) = nines(
        env,
        &["sla", "statement", "--month", "2026-11", "--format", "json"],
    );
    assert_eq!(code, 0);
    let v = json(&out);
    let statements = v["statements"].as_array().unwrap();
    assert_eq!(statements.len(), 3, "{v}");
    // Worked out from the ledger: attainment = 1 − failures / requests in Berlin's month,
    // the credit the largest tier whose bound is above it.
    let mut credits = Vec::new();
    for (tenant, s) in statements.iter().enumerate() {
        assert_eq!(s["tenant"], TENANTS[tenant], "{s}");
        let (total, bad) = ledger(&[tenant], NOVEMBER.0, NOVEMBER.1);
        let attainment = 1.0 - bad / total;
        assert_eq!(s["requests"]["total"].as_f64().unwrap(), total, "{s}");
        assert_eq!(s["requests"]["bad"].as_f64().unwrap(), bad, "{s}");
        assert!(
            (s["attainment"].as_f64().unwrap() - attainment).abs() < 1e-12,
            "{s}"
        );
        let credit = [(0.95, 1.0), (0.99, 0.25), (0.995, 0.10)]
            .into_iter()
            .find(|(below, _)| attainment < *below)
            .map_or(0.0, |(_, c)| c);
        assert_eq!(s["credit"].as_f64().unwrap(), credit, "{s}");
        assert_eq!(s["met"], attainment >= 0.995, "{s}");
        // Every failed request is a downtime minute (one request a minute).
        assert_eq!(s["minutes"]["downtime"].as_f64().unwrap(), bad, "{s}");
        assert_eq!(s["minutes"]["in_month"], 30 * 24 * 60, "{s}");
        credits.push(credit);
    }
    // acme took the outage whole, globex half, initech a thirtieth.
    assert_eq!(credits, [0.25, 0.10, 0.0]);
    // October: only the background failures; every tenant met it.
    let (_, out) = nines(
        env,
        &[
            "sla",
            "statement",
            "--month",
            "2026-10",
            "--tenant",
            "globex",
            "--format",
            "json",
        ],
    );
    let v = json(&out);
    let s = &v["statements"][0];
    let (total, bad) = ledger(&[1], OCTOBER.0, OCTOBER.1);
    assert_eq!(s["requests"]["total"].as_f64().unwrap(), total, "{s}");
    assert_eq!(s["requests"]["bad"].as_f64().unwrap(), bad, "{s}");
    assert_eq!(
        (s["met"].clone(), s["credit"].as_f64()),
        (true.into(), Some(0.0))
    );
    assert_eq!(v["statements"].as_array().unwrap().len(), 1);

    // `nines slo status` shows how much of the SLO's SLI is left above the SLA's target.
    let at = END - HOUR;
    let (_, out) = nines(
        env,
        &["slo", "status", "--at", &rfc3339(at), "--format", "json"],
    );
    let rows = json_rows(&out);
    let row = rows
        .iter()
        .find(|r| r["slo"] == "checkout-availability")
        .unwrap_or_else(|| panic!("{out}"));
    let (total, bad) = ledger(&[0, 1, 2], at - 30 * DAY, at);
    assert_eq!(row["sla"], "checkout-enterprise (0.995)", "{row}");
    let margin = row["sla_margin"].as_f64().unwrap();
    assert!(
        (margin - (1.0 - bad / total - 0.995)).abs() < 1e-12,
        "{row}"
    );

    let (_, md) = nines(env, &["sla", "statement", "--month", "2026-11"]);
    compare_golden("sla.md", &md);
    compare_golden("sla.json", &out_json(env));
}

fn out_json(env: &Env) -> String {
    nines(
        env,
        &["sla", "statement", "--month", "2026-11", "--format", "json"],
    )
    .1
}
