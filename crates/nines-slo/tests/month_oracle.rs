//! A generated month against independent oracles.
//!
//! Thirty days of per-minute traffic for four services, seeded, with injected incidents:
//! `checkout` has a 12-minute full outage and a day with no data at all, `search` an 18-hour
//! slow burn at 5 % errors, `quiet` a handful of requests a minute (many minutes with none),
//! and `media` a 3-hour latency regression (its p99 per minute above 300 ms).
//!
//! - The standing of every SLO (SLI, budget, consumed, remaining, coverage, burn, time to
//!   exhaustion, status) for three budgeting methods, two rolling windows and a calendar
//!   month in Europe/Berlin is checked at several instants against sums this test works
//!   out itself, minute by minute, from the generator's own ledger.
//! - The multiwindow burn-rate alerts of a 30-day and a 7-day SLO are checked against
//!   Prometheus: `promtool test rules` is fed the same per-minute counts (as the counters a
//!   service exports) and the Workbook's alert rules written by hand below, and must fire
//!   at the same minutes.
//! - A calendar day in Europe/Berlin across both 2026 DST changes has a budget of 23 and 25
//!   hours of slices.

use std::fmt::Write as _;
use std::path::PathBuf;

use nines_slo::alerts::{Interval, LowTraffic};
use nines_slo::budget::Series;
use nines_slo::eval::{self, Options};
use nines_slo::model::Slo;
use nines_slo::openslo::Catalog;

const MINUTE: i64 = 60;
const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;
const MONTH_DAYS: i64 = 30;
const MINUTES: usize = (MONTH_DAYS * DAY / MINUTE) as usize;

/// splitmix64: the test's own seeded generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One service's month: per minute `(good, total)`, `None` for a minute without data. Minute
/// `k` covers `[k·60, (k+1)·60)` seconds from the epoch.
struct Month {
    name: &'static str,
    minutes: Vec<Option<(u64, u64)>>,
}

fn minute_of(day: i64, hour: i64, minute: i64) -> usize {
    ((day * DAY + hour * HOUR + minute * MINUTE) / MINUTE) as usize
}

fn generate() -> Vec<Month> {
    let mut rng = Rng(20_261_203);
    let mut months = Vec::new();

    // checkout: ~200 a minute, a few errors; day 9 14:00–14:12 every request fails; day 24
    // has no data at all.
    let outage = minute_of(9, 14, 0)..minute_of(9, 14, 12);
    let silent = minute_of(24, 0, 0)..minute_of(25, 0, 0);
    let minutes = (0..MINUTES)
        .map(|k| {
            let total = 180 + rng.below(41);
            let bad = rng.below(3);
            if silent.contains(&k) {
                None
            } else if outage.contains(&k) {
                Some((0, total))
            } else {
                Some((total - bad, total))
            }
        })
        .collect();
    months.push(Month {
        name: "checkout",
        minutes,
    });

    // search: ~100 a minute; day 19 02:00–20:00 at 5 % errors and a little more.
    let burn = minute_of(19, 2, 0)..minute_of(19, 20, 0);
    let minutes = (0..MINUTES)
        .map(|k| {
            let total = 90 + rng.below(21);
            let bad = if burn.contains(&k) {
                total * 5 / 100 + rng.below(3)
            } else {
                rng.below(2)
            };
            Some((total - bad, total))
        })
        .collect();
    months.push(Month {
        name: "search",
        minutes,
    });

    // quiet: 0–3 requests a minute (a minute with none has no data), a rare error, and
    // on day 3 from 05:00 fifteen minutes in which every request fails.
    let burst = minute_of(3, 5, 0)..minute_of(3, 5, 15);
    let minutes = (0..MINUTES)
        .map(|k| {
            let total = rng.below(4);
            let bad = if burst.contains(&k) {
                total
            } else {
                u64::from(total > 0 && rng.below(97) == 0)
            };
            (total > 0).then_some((total - bad, total))
        })
        .collect();
    months.push(Month {
        name: "quiet",
        minutes,
    });

    // media: a p99 per minute (ms), 100–180, and 350–450 on day 14 09:00–12:00; a
    // thresholdMetric `p99 <= 300` makes each minute good 1 of 1 or bad.
    let regression = minute_of(14, 9, 0)..minute_of(14, 12, 0);
    let minutes = (0..MINUTES)
        .map(|k| {
            let p99 = if regression.contains(&k) {
                350 + rng.below(101)
            } else {
                100 + rng.below(81)
            };
            Some((u64::from(p99 <= 300), 1))
        })
        .collect();
    months.push(Month {
        name: "media",
        minutes,
    });
    months
}

/// The series nines evaluates: one-minute slices from the epoch.
fn series(month: &Month) -> Series {
    let mut s = Series::zeros(0, MINUTE, MINUTES);
    for (k, m) in month.minutes.iter().enumerate() {
        if let Some((good, total)) = m {
            s.good[k] = *good as f64;
            s.total[k] = *total as f64;
        }
    }
    s
}

fn slo_yaml(name: &str, service: &str, window: &str, method: &str) -> String {
    // `1M`: the calendar month in Berlin (UTC+1 in January 1970: it starts at −3600 s).
    let window = if window == "1M" {
        "1M\n      isRolling: false\n      calendar:\n        startTime: 1970-01-01 00:00:00\n        timeZone: Europe/Berlin".to_owned()
    } else {
        format!("{window}\n      isRolling: true")
    };
    let extra = match method {
        "Timeslices" => "\n      timeSliceTarget: 0.95\n      timeSliceWindow: 1m",
        "RatioTimeslices" => "\n      timeSliceWindow: 5m",
        _ => "",
    };
    format!(
        r#"apiVersion: openslo/v1
kind: SLO
metadata:
  name: {name}
spec:
  service: {service}
  indicator:
    metadata:
      name: {name}-sli
    spec:
      ratioMetric:
        good:
          metricSource:
            type: nines
            spec:
              value: "sum(total - errors)"
        total:
          metricSource:
            type: nines
            spec:
              value: "sum(total)"
  timeWindow:
    - duration: {window}
  budgetingMethod: {method}
  objectives:
    - displayName: objective
      target: 0.99{extra}
---
"#
    )
}

fn load(yaml: &str) -> Vec<Slo> {
    let mut catalog = Catalog::default();
    let errors = catalog.add_file("month.yaml", yaml);
    assert!(errors.is_empty(), "{errors:?}");
    let (slos, errors) = catalog.resolve();
    assert!(errors.is_empty(), "{errors:?}");
    slos
}

/// What the test expects of one objective at one instant, worked out minute by minute.
#[derive(Debug)]
struct Expected {
    sli: Option<f64>,
    budget: f64,
    consumed: f64,
    remaining: f64,
    coverage: f64,
    burn_1h: Option<f64>,
    time_to_exhaustion: Option<f64>,
    status: &'static str,
}

/// Units and bad units of `[from, to)` (seconds) for a method, by plain loops; the slice
/// methods count `slice`-second slices aligned on the epoch.
fn sums(month: &Month, method: &str, slice: i64, from: i64, to: i64) -> (f64, f64, u64, u64) {
    let (mut units, mut bad, mut with_data, mut slices) = (0.0, 0.0, 0_u64, 0_u64);
    let per = (slice / MINUTE) as usize;
    let mut t = from;
    while t < to {
        slices += 1;
        let (mut good, mut total) = (0_u64, 0_u64);
        if t >= 0 {
            let k = (t / MINUTE) as usize;
            for m in month.minutes.iter().skip(k).take(per).flatten() {
                good += m.0;
                total += m.1;
            }
        }
        if total > 0 {
            with_data += 1;
            match method {
                "Occurrences" => {
                    units += total as f64;
                    bad += (total - good) as f64;
                }
                // Bad when good/total < 0.95, in integers.
                "Timeslices" => {
                    units += 1.0;
                    bad += f64::from(u8::from(good * 100 < 95 * total));
                }
                _ => {
                    units += 1.0;
                    bad += (total - good) as f64 / total as f64;
                }
            }
        }
        t += slice;
    }
    (units, bad, with_data, slices)
}

/// The period an objective judges at `at`: rolling `[at − window, at)`, or the calendar
/// period given.
#[derive(Debug, Clone, Copy)]
enum Judged {
    Rolling(i64),
    Calendar(i64, i64),
}

fn expected(month: &Month, method: &str, judged: Judged, at: i64) -> Expected {
    let slice = match method {
        "RatioTimeslices" => 300,
        _ => MINUTE,
    };
    let (start, end) = match judged {
        Judged::Rolling(w) => (at - w, at),
        Judged::Calendar(s, e) => (s, e),
    };
    let window = end - start;
    let allowed = 1.0 - 0.99;
    // Data up to the instant (a calendar period's end is ahead of it).
    let (units, bad, with_data, slices) = sums(month, method, slice, start, at.min(end));
    let budget = match method {
        "Occurrences" => allowed * units,
        _ => allowed * (window / slice) as f64,
    };
    let consumed = if budget > 0.0 { bad / budget } else { 0.0 };
    let remaining = 1.0 - consumed;
    let (u1, b1, _, _) = sums(month, method, slice, at - HOUR, at);
    let burn_1h = (u1 > 0.0).then(|| b1 / u1 / allowed);
    let time_to_exhaustion = match burn_1h {
        _ if remaining <= 1e-9 => Some(0.0),
        Some(b) if b > 0.0 => Some(remaining * window as f64 / b),
        _ => None,
    };
    let status = if units == 0.0 {
        "no_data"
    } else if remaining <= 1e-9 {
        "exhausted"
    } else if remaining < 0.25 {
        "warning"
    } else {
        "ok"
    };
    Expected {
        sli: (units > 0.0).then(|| 1.0 - bad / units),
        budget,
        consumed,
        remaining,
        coverage: with_data as f64 / slices as f64,
        burn_1h,
        time_to_exhaustion,
        status,
    }
}

fn close(what: &str, got: Option<f64>, want: Option<f64>) {
    match (got, want) {
        (Some(g), Some(w)) => assert!(
            (g - w).abs() <= 1e-9 * w.abs().max(1.0),
            "{what}: nines {g}, oracle {w}"
        ),
        (g, w) => assert_eq!(g, w, "{what}"),
    }
}

/// SLI, budget, consumed, remaining, coverage, burn, time to exhaustion and status of every
/// service under three methods and two windows, at instants before, inside and after each
/// incident (and inside the day without data).
#[test]
fn standing_matches_the_minute_by_minute_oracle() {
    let months = generate();
    let mut yaml = String::new();
    for m in &months {
        for (window, w) in [("30d", "30d"), ("7d", "7d"), ("1M", "month")] {
            for method in ["Occurrences", "Timeslices", "RatioTimeslices"] {
                let name = format!("{}-{w}-{}", m.name, method.to_lowercase());
                yaml += &slo_yaml(&name, m.name, window, method);
            }
        }
    }
    let slos = load(&yaml);
    assert_eq!(slos.len(), months.len() * 9);
    let instants = [
        3 * DAY + 5 * HOUR + 5 * MINUTE,
        9 * DAY + 14 * HOUR + 15 * MINUTE,
        10 * DAY,
        14 * DAY + 12 * HOUR,
        19 * DAY + 8 * HOUR,
        19 * DAY + 20 * HOUR,
        24 * DAY + 12 * HOUR,
        25 * DAY + 6 * HOUR + 5 * MINUTE,
        30 * DAY,
    ];
    let mut checked = std::collections::BTreeMap::new();
    for slo in &slos {
        let month = months.iter().find(|m| m.name == slo.service).unwrap();
        let s = series(month);
        let method = match slo.budgeting {
            nines_slo::model::BudgetingMethod::Occurrences => "Occurrences",
            nines_slo::model::BudgetingMethod::Timeslices => "Timeslices",
            nines_slo::model::BudgetingMethod::RatioTimeslices => "RatioTimeslices",
        };
        // The January 1970 of Berlin, worked out here: 00:00 CET is 23:00 UTC the day before.
        let judged = if slo.name.contains("-month-") {
            Judged::Calendar(-HOUR, 31 * DAY - HOUR)
        } else {
            Judged::Rolling(slo.window.nominal_seconds())
        };
        let objective = &slo.objectives[0];
        // One ledger for every instant gives what one evaluation per instant gives.
        let many = eval::evaluate_many(slo, objective, &s, instants, &Options::default());
        for (at, from_many) in instants.into_iter().zip(many) {
            let r = eval::evaluate(slo, objective, &s, at, &Options::default());
            assert_eq!(r, from_many);
            let want = expected(month, method, judged, at);
            let what = |f: &str| format!("{} at {}: {f}", slo.name, nines_slo::window::rfc3339(at));
            close(&what("sli"), r.standing.sli, want.sli);
            close(
                &what("budget"),
                Some(r.standing.budget_total),
                Some(want.budget),
            );
            close(
                &what("consumed"),
                Some(r.standing.consumed),
                Some(want.consumed),
            );
            close(
                &what("remaining"),
                Some(r.standing.remaining),
                Some(want.remaining),
            );
            close(
                &what("coverage"),
                Some(r.standing.coverage),
                Some(want.coverage),
            );
            let burn_1h = r.burn_rates.iter().find(|(l, _)| *l == HOUR).unwrap().1;
            close(&what("burn 1h"), burn_1h, want.burn_1h);
            close(
                &what("time to exhaustion"),
                r.standing.time_to_exhaustion,
                want.time_to_exhaustion,
            );
            assert_eq!(
                r.standing.status.as_str(),
                want.status,
                "{}",
                what("status")
            );
            *checked.entry(want.status).or_insert(0) += 1;
        }
    }
    // The month reaches every status (else it tests less than it claims).
    for status in ["ok", "warning", "exhausted"] {
        assert!(
            checked.contains_key(status),
            "no {status} case: {checked:?}"
        );
    }
    // The day without data: checkout's 7-day coverage at its noon is 6.5 days of 7.
    let checkout = &months[0];
    let at = 24 * DAY + 12 * HOUR;
    let c = expected(checkout, "Occurrences", Judged::Rolling(7 * DAY), at).coverage;
    assert!((c - 6.5 / 7.0).abs() < 1e-12, "{c}");
}

/// The Workbook's rows as a person writes them for Prometheus: (alert, severity, factor,
/// long, short). 30 days: 1h/5m, 6h/30m, 1d/2h, 3d/6h. 7 days, scaled as
/// `long = fraction × 7d / factor`, `short = long / 12` in whole minutes (at least one):
/// 14m/1m, 84m/7m, 336m/28m, 1008m/84m.
const RULES_30D: [(&str, &str, f64, &str, &str); 4] = [
    ("Burn30dFast", "page", 14.4, "1h", "5m"),
    ("Burn30dMedium", "page", 6.0, "6h", "30m"),
    ("Burn30dSlow", "ticket", 3.0, "1d", "2h"),
    ("Burn30dSlowest", "ticket", 1.0, "3d", "6h"),
];
const RULES_7D: [(&str, &str, f64, &str, &str); 4] = [
    ("Burn7dFast", "page", 14.4, "14m", "1m"),
    ("Burn7dMedium", "page", 6.0, "84m", "7m"),
    ("Burn7dSlow", "ticket", 3.0, "336m", "28m"),
    ("Burn7dSlowest", "ticket", 1.0, "1008m", "84m"),
];

fn humantime_seconds(w: &str) -> i64 {
    let (n, unit) = w.split_at(w.len() - 1);
    let n: i64 = n.parse().unwrap();
    n * match unit {
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        other => panic!("unit {other}"),
    }
}

fn promtool() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NINES_PROMTOOL") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("promtool"))
            .find(|p| p.is_file())
    })
}

/// Minutes of zero counters before the month in promtool's time (which starts at 0): the
/// longest window (3 days) always finds a sample, as nines finds no data before the month.
const PAD_MINUTES: i64 = 3 * 1_440 + 1;

/// nines' alert intervals (guard off: Prometheus's rules have none) of the 30-day and
/// 7-day SLOs over the month equal the minutes at which Prometheus fires the same rules on
/// the same per-minute series.
#[test]
fn burn_rate_alerts_fire_at_the_same_minutes_as_prometheus() {
    let promtool = promtool().expect(
        "promtool not found (Debian package `prometheus`; .ci/run installs it, or set \
         NINES_PROMTOOL)",
    );
    let months: Vec<Month> = generate()
        .into_iter()
        .filter(|m| m.name != "media")
        .collect();
    let mut yaml = String::new();
    for m in &months {
        yaml += &slo_yaml(&format!("{}-30d", m.name), m.name, "30d", "Occurrences");
        yaml += &slo_yaml(&format!("{}-7d", m.name), m.name, "7d", "Occurrences");
    }
    let slos = load(&yaml);
    let options = Options {
        low_traffic: LowTraffic::Off,
        ..Options::default()
    };
    let end = MONTH_DAYS * DAY;
    // nines' answer: (alert name as in the rules, service) → intervals.
    let mut firing: Vec<(String, &'static str, &'static str, Interval)> = Vec::new();
    for slo in &slos {
        let month = months.iter().find(|m| m.name == slo.service).unwrap();
        let s = series(month);
        let rules = if slo.window.nominal_seconds() == 30 * DAY {
            &RULES_30D
        } else {
            &RULES_7D
        };
        for i in eval::alert_history(slo, &slo.objectives[0], &s, 0, end, &options) {
            let (name, severity, ..) = rules
                .iter()
                .find(|r| {
                    i.alert == format!("{}x over {}/{}", r.2, short_text(r.3), short_text(r.4))
                })
                .unwrap_or_else(|| panic!("{} has no rule for {i:?}", slo.name));
            firing.push((name.to_string(), severity, month.name, i));
        }
    }
    // It is not a vacuous comparison: the outage pages on both periods, the slow burn opens
    // tickets, the quiet service's burst pages without a guard.
    for (alert, service) in [
        ("Burn30dFast", "checkout"),
        ("Burn7dFast", "checkout"),
        ("Burn30dSlow", "search"),
        ("Burn7dSlow", "search"),
        ("Burn30dFast", "quiet"),
    ] {
        assert!(
            firing.iter().any(|f| f.0 == alert && f.2 == service),
            "{alert} never fires for {service}: {firing:?}"
        );
    }
    assert!(
        !firing
            .iter()
            .any(|f| f.2 == "search" && f.0.ends_with("Fast")),
        "a 5 % burn pages at 14.4×: {firing:?}"
    );

    // Minutes to compare: around every start and end, and every 97th minute.
    let mut eval_minutes: std::collections::BTreeSet<i64> =
        (0..=end / MINUTE).step_by(97).collect();
    for (_, _, _, i) in &firing {
        for t in [Some(i.start), i.end].into_iter().flatten() {
            for d in [-1, 0, 1] {
                let m = t / MINUTE + d;
                if (1..=end / MINUTE).contains(&m) {
                    eval_minutes.insert(m);
                }
            }
        }
    }
    let fires_at = |alert: &str, service: &str, t: i64| {
        firing.iter().any(|(a, _, s, i)| {
            a == alert && *s == service && i.start <= t && i.end.is_none_or(|e| t < e)
        })
    };

    // The Workbook's rules in PromQL: bad over total in each window as differences of the
    // counters (exact: no extrapolation, unlike `increase`), against the threshold nines
    // compares with, factor × (1 − target), as the same double.
    let rules: Vec<(&str, &str, String)> = RULES_30D
        .iter()
        .chain(&RULES_7D)
        .map(|(name, severity, factor, long, short)| {
            let threshold = factor * (1.0 - 0.99);
            let ratio = |w: &str| {
                format!("(slo_bad - slo_bad offset {w}) / (slo_total - slo_total offset {w})")
            };
            let expr = format!(
                "({} > {threshold:?}) and ({} > {threshold:?})",
                ratio(long),
                ratio(short)
            );
            (*name, *severity, expr)
        })
        .collect();
    let rule_file = |names: &[&str]| {
        let mut text = String::from("groups:\n  - name: slo\n    interval: 1m\n    rules:\n");
        for (name, severity, expr) in rules.iter().filter(|r| names.contains(&r.0)) {
            writeln!(
                text,
                "      - alert: {name}\n        expr: {expr}\n        labels:\n          severity: {severity}"
            )
            .unwrap();
        }
        text
    };

    // Counters, as a service exports them: the sample at promtool minute PAD + k is the
    // count before month minute k; zero through the padding.
    let mut input = String::from("  - interval: 1m\n    input_series:\n");
    for m in &months {
        for (metric, value) in [
            ("slo_bad", (|g: u64, t: u64| t - g) as fn(u64, u64) -> u64),
            ("slo_total", |_, t| t),
        ] {
            let mut values = format!("0+0x{}", PAD_MINUTES - 1);
            let mut count = 0;
            write!(values, " {count}").unwrap();
            for (g, t) in m.minutes.iter().map(|s| s.unwrap_or((0, 0))) {
                count += value(g, t);
                write!(values, " {count}").unwrap();
            }
            writeln!(
                input,
                "      - series: '{metric}{{service=\"{}\"}}'\n        values: '{values}'",
                m.name
            )
            .unwrap();
        }
    }
    let firing_services = |name: &str, t: i64| -> Vec<&str> {
        months
            .iter()
            .map(|m| m.name)
            .filter(|s| fires_at(name, s, t))
            .collect()
    };

    // A promtool test file: under `section`, for each compared minute and rule, the entry
    // `head` writes, then an `item` per service nines has firing (how many in all).
    let test_file = |rule_files: &str,
                     section: &str,
                     last_minute: i64,
                     names: &[&str],
                     head: &dyn Fn(&str, &str, i64) -> String,
                     item: &dyn Fn(&str, &str) -> String| {
        let mut text = format!(
            "rule_files: {rule_files}\nevaluation_interval: 1m\ntests:\n{input}    {section}:\n"
        );
        let mut firing = 0;
        for minute in eval_minutes.iter().filter(|m| **m <= last_minute) {
            for (name, severity, expr) in rules.iter().filter(|r| names.contains(&r.0)) {
                text += &head(name, expr, PAD_MINUTES + minute);
                let services = firing_services(name, minute * MINUTE);
                text.push_str(if services.is_empty() { " []\n" } else { "\n" });
                for s in services {
                    firing += 1;
                    text += &item(severity, s);
                }
            }
        }
        (text, firing)
    };
    let all: Vec<&str> = rules.iter().map(|r| r.0).collect();

    // 1. Every rule's expression at every compared minute of the month: an alert without
    //    `for` fires at an evaluation exactly when its expression returns the series.
    //    (Instant queries: promtool steps no rule group through the month.)
    let (month_test, expected_firing) = test_file(
        "[]",
        "promql_expr_test",
        i64::MAX,
        &all,
        &|_, expr, minute| {
            format!(
                "      - expr: 'count by (service) ({expr})'\n        eval_time: {minute}m\n        exp_samples:"
            )
        },
        &|_, s| format!("          - labels: '{{service=\"{s}\"}}'\n            value: 1\n"),
    );
    assert!(expected_firing > 50, "{expected_firing}");

    // 2. The alerting rules themselves (Prometheus's rule manager, stepping every minute)
    //    for the two fast rows through the first ten days: the quiet burst and the outage.
    let fast = ["Burn30dFast", "Burn7dFast"];
    let (alert_test, alerts_compared) = test_file(
        "\n  - fast.yaml",
        "alert_rule_test",
        10 * 1_440,
        &fast,
        &|name, _, minute| {
            format!("      - eval_time: {minute}m\n        alertname: {name}\n        exp_alerts:")
        },
        &|severity, s| {
            format!(
                "          - exp_labels:\n              severity: {severity}\n              service: {s}\n"
            )
        },
    );
    assert!(alerts_compared > 10, "{alerts_compared}");

    let dir = tempfile_dir();
    std::fs::write(dir.join("rules.yaml"), rule_file(&all)).unwrap();
    std::fs::write(dir.join("fast.yaml"), rule_file(&fast)).unwrap();
    std::fs::write(dir.join("month.yaml"), month_test).unwrap();
    std::fs::write(dir.join("alerts.yaml"), alert_test).unwrap();
    for args in [
        &["check", "rules", "rules.yaml"][..],
        &["test", "rules", "month.yaml"],
        &["test", "rules", "alerts.yaml"],
    ] {
        let out = std::process::Command::new(&promtool)
            .current_dir(&dir)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", promtool.display()));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "promtool {} disagrees with nines ({} minutes compared; files in {}):\n{}",
            args.join(" "),
            eval_minutes.len(),
            dir.display(),
            &text[..text.len().min(20_000)]
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// `1h` → `1h`, `84m` → `1h24m`-free form nines prints: whole days, hours or minutes.
fn short_text(w: &str) -> String {
    nines_slo::alerts::seconds_text(humantime_seconds(w))
}

/// A fresh directory under the system's temp dir (kept when the test fails, to look at).
fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "nines-promtool-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Calendar days in Europe/Berlin across the 2026 DST changes: 29 March has 23 hours, 25
/// October 25; a Timeslices budget counts the day's one-minute slices.
#[test]
fn calendar_days_across_dst_have_23_and_25_hours_of_budget() {
    let yaml = r#"apiVersion: openslo/v1
kind: SLO
metadata:
  name: berlin-day
spec:
  service: checkout
  indicator:
    metadata:
      name: berlin-sli
    spec:
      ratioMetric:
        good:
          metricSource:
            type: nines
            spec:
              value: "sum(total - errors)"
        total:
          metricSource:
            type: nines
            spec:
              value: "sum(total)"
  timeWindow:
    - duration: 1d
      isRolling: false
      calendar:
        startTime: 2026-01-01 00:00:00
        timeZone: Europe/Berlin
  budgetingMethod: Timeslices
  objectives:
    - displayName: day
      target: 0.99
      timeSliceTarget: 0.95
      timeSliceWindow: 1m
"#;
    let slo = &load(yaml)[0];
    // (local midnight of the day in UTC, an instant inside it, hours in the day)
    let cases = [
        // 2026-03-29 00:00 CET = 03-28 23:00 UTC; at 12:00 CEST = 10:00 UTC.
        (1_774_738_800_i64, 1_774_778_400_i64, 23),
        // 2026-10-25 00:00 CEST = 10-24 22:00 UTC; at 12:00 CET = 11:00 UTC.
        (1_792_879_200, 1_792_926_000, 25),
        // An ordinary day: 2026-06-10 00:00 CEST = 06-09 22:00 UTC; at 12:00 = 10:00 UTC.
        (1_781_042_400, 1_781_085_600, 24),
    ];
    for (midnight, at, hours) in cases {
        // Data: every minute of the two days around it, one bad minute an hour.
        let origin = midnight - DAY;
        let n = (3 * DAY / MINUTE) as usize;
        let mut s = Series::zeros(origin, MINUTE, n);
        for k in 0..n {
            s.total[k] = 100.0;
            s.good[k] = if k % 60 == 7 { 50.0 } else { 100.0 };
        }
        let r = eval::evaluate(slo, &slo.objectives[0], &s, at, &Options::default());
        let p = r.standing.period;
        assert_eq!(
            (p.start, p.end),
            (midnight, midnight + hours * HOUR),
            "{hours} h day"
        );
        let slices = (hours * 60) as f64;
        close("budget", Some(r.standing.budget_total), Some(0.01 * slices));
        // Elapsed since local midnight: bad minutes are those with k % 60 == 7.
        let elapsed = (at - midnight) / MINUTE;
        let first = (midnight - origin) / MINUTE;
        let bad = (first..first + elapsed).filter(|k| k % 60 == 7).count() as f64;
        close("bad", Some(r.standing.bad), Some(bad));
        close(
            "remaining",
            Some(r.standing.remaining),
            Some(1.0 - bad / (0.01 * slices)),
        );
        close("coverage", Some(r.standing.coverage), Some(1.0));
    }
}
