//! SLAs per customer (docs/sla.md): an external promise, measured by an SLO's indicator over
//! a calendar month in a time zone, per tenant, with service credits when it is missed.
//!
//! A statement is worked out from the month's one-minute good/total series of one tenant:
//! - **requests:** attainment = good / total; the allowance is `(1 − target) × total` bad
//!   requests;
//! - **minutes:** a minute with requests whose error ratio is above `downtimeErrorRate` (5 %)
//!   is a downtime minute; attainment = 1 − downtime minutes / minutes in the month, the
//!   allowance `(1 − target) × minutes in the month` (a month without traffic is up);
//! - the credit is the largest of the tiers whose `below` is above the attainment `measure`
//!   names;
//! - the evidence: the worst hours by bad requests.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate, TimeZone};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::budget::Series;
use crate::openslo::LoadError;
use crate::window::Period;

/// How many worst hours a statement gives as evidence.
pub const WORST_HOURS: usize = 3;

/// One credit tier: below this attainment, this share of the month's bill is credited.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CreditTier {
    pub below: f64,
    pub credit: f64,
}

/// Which attainment decides the credit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Measure {
    Requests,
    Minutes,
}

/// An SLA, as defined and checked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sla {
    pub name: String,
    /// The SLO (its `metadata.name`) whose indicator measures it.
    pub slo: String,
    pub target: f64,
    #[serde(serialize_with = "tz_name")]
    pub time_zone: Tz,
    /// The tenants it is promised to; `None`: every tenant with traffic.
    pub tenants: Option<Vec<String>>,
    /// Highest `below` first.
    pub credits: Vec<CreditTier>,
    pub measure: Measure,
    pub downtime_error_rate: f64,
}

fn tz_name<S: serde::Serializer>(tz: &Tz, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(tz.name())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Doc {
    #[serde(rename = "apiVersion")]
    api_version: String,
    kind: String,
    metadata: Metadata,
    spec: Spec,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Metadata {
    name: String,
    #[serde(default, rename = "displayName")]
    _display_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Spec {
    slo: String,
    target: f64,
    #[serde(default = "utc")]
    time_zone: String,
    #[serde(default)]
    tenants: Option<Vec<String>>,
    credits: Vec<CreditTier>,
    #[serde(default = "requests")]
    measure: Measure,
    #[serde(default = "five_percent")]
    downtime_error_rate: f64,
    #[serde(default, rename = "description")]
    _description: Option<String>,
}

fn utc() -> String {
    "UTC".into()
}

fn requests() -> Measure {
    Measure::Requests
}

fn five_percent() -> f64 {
    0.05
}

/// The SLAs of one file (`apiVersion: nines/v1`, `kind: SLA`, several documents allowed),
/// and every refusal naming file, document, field and reason.
pub fn parse(file: &str, text: &str) -> (Vec<Sla>, Vec<LoadError>) {
    let mut slas = Vec::new();
    let mut errors = Vec::new();
    for (i, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let fail = |name: Option<String>, path: &str, reason: String| LoadError {
            file: file.to_owned(),
            document: i + 1,
            name: name.map(|n| format!("SLA/{n}")),
            path: path.to_owned(),
            reason,
        };
        let doc: Doc = match serde_path_to_error::deserialize(document) {
            Ok(d) => d,
            Err(e) => {
                let path = e.path().to_string();
                errors.push(fail(None, &path, e.into_inner().to_string()));
                continue;
            }
        };
        let name = Some(doc.metadata.name.clone());
        match check(doc) {
            Ok(sla) => slas.push(sla),
            Err((path, reason)) => errors.push(fail(name, path, reason)),
        }
    }
    (slas, errors)
}

fn check(doc: Doc) -> Result<Sla, (&'static str, String)> {
    if doc.api_version != "nines/v1" {
        return Err((
            "apiVersion",
            format!("{:?}: an SLA is `nines/v1`", doc.api_version),
        ));
    }
    if doc.kind != "SLA" {
        return Err(("kind", format!("{:?}: expected SLA", doc.kind)));
    }
    let s = doc.spec;
    if !(s.target > 0.0 && s.target < 1.0) {
        return Err((
            "spec.target",
            format!("{} is not a share between 0 and 1", s.target),
        ));
    }
    let time_zone: Tz = s.time_zone.parse().map_err(|_| {
        (
            "spec.timeZone",
            format!("{:?} is not an IANA time zone", s.time_zone),
        )
    })?;
    if s.credits.is_empty() {
        return Err(("spec.credits", "at least one tier is needed".into()));
    }
    let mut credits = s.credits;
    credits.sort_by(|a, b| b.below.total_cmp(&a.below));
    for c in &credits {
        let share = |x: f64| x > 0.0 && x <= 1.0;
        if !(share(c.below) && share(c.credit)) {
            return Err((
                "spec.credits",
                format!(
                    "below {} credit {}: both are shares in (0, 1]",
                    c.below, c.credit
                ),
            ));
        }
    }
    if credits.windows(2).any(|w| w[1].credit < w[0].credit) {
        return Err((
            "spec.credits",
            "a lower attainment must not earn a smaller credit".into(),
        ));
    }
    if !(s.downtime_error_rate > 0.0 && s.downtime_error_rate <= 1.0) {
        return Err((
            "spec.downtimeErrorRate",
            format!("{} is not a share in (0, 1]", s.downtime_error_rate),
        ));
    }
    if s.tenants.as_ref().is_some_and(Vec::is_empty) {
        return Err((
            "spec.tenants",
            "an empty list promises nothing: omit it for every tenant".into(),
        ));
    }
    Ok(Sla {
        name: doc.metadata.name,
        slo: s.slo,
        target: s.target,
        time_zone,
        tenants: s.tenants,
        credits,
        measure: s.measure,
        downtime_error_rate: s.downtime_error_rate,
    })
}

/// The calendar month `YYYY-MM` in `tz`: `[first midnight, next first midnight)`.
pub fn month(text: &str, tz: Tz) -> Result<Period, String> {
    let first = NaiveDate::parse_from_str(&format!("{text}-01"), "%Y-%m-%d")
        .map_err(|_| format!("{text:?} is not a month (YYYY-MM)"))?;
    let next = if first.month() == 12 {
        NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
    }
    .ok_or_else(|| format!("{text:?}: no month after it"))?;
    let midnight = |d: NaiveDate| {
        let local = d.and_hms_opt(0, 0, 0).expect("midnight exists");
        // A zone whose clocks skip midnight: the first instant of the day.
        tz.from_local_datetime(&local)
            .earliest()
            .or_else(|| {
                tz.from_local_datetime(&(local + chrono::Duration::hours(1)))
                    .earliest()
            })
            .map(|t| t.timestamp())
            .ok_or_else(|| format!("midnight of {d} does not exist in {}", tz.name()))
    };
    Ok(Period {
        start: midnight(first)?,
        end: midnight(next)?,
    })
}

/// One hour of evidence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Window {
    pub start: i64,
    pub end: i64,
    pub total: f64,
    pub bad: f64,
}

/// One tenant's statement for one month.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Statement {
    pub tenant: String,
    pub period: (i64, i64),
    pub total: f64,
    pub bad: f64,
    /// good / total (1 without traffic).
    pub request_attainment: f64,
    /// `(1 − target) × total`.
    pub allowed_bad_requests: f64,
    pub minutes: i64,
    pub downtime_minutes: i64,
    /// 1 − downtime minutes / minutes.
    pub minute_attainment: f64,
    /// `(1 − target) × minutes`.
    pub allowed_downtime_minutes: f64,
    /// The attainment `measure` names.
    pub attainment: f64,
    pub met: bool,
    /// The tier reached (`None`: no credit).
    pub tier: Option<CreditTier>,
    pub credit: f64,
    /// The worst hours by bad requests (at most [`WORST_HOURS`], only hours with any).
    pub worst: Vec<Window>,
}

/// The statement of `sla` for `tenant` over `period`, from the tenant's one-minute series
/// (good and total per minute; minutes outside `period` are ignored).
pub fn statement(sla: &Sla, tenant: &str, series: &Series, period: Period) -> Statement {
    let (mut total, mut bad, mut downtime) = (0.0, 0.0, 0_i64);
    let mut hours: BTreeMap<i64, (f64, f64)> = BTreeMap::new();
    for i in 0..series.len() {
        let at = series.origin + i as i64 * series.step;
        if at < period.start || at >= period.end {
            continue;
        }
        let (t, g) = (series.total[i], series.good[i]);
        if t <= 0.0 {
            continue;
        }
        let b = (t - g).max(0.0);
        total += t;
        bad += b;
        if b / t > sla.downtime_error_rate {
            downtime += series.step / 60;
        }
        let hour = period.start + (at - period.start).div_euclid(3_600) * 3_600;
        let h = hours.entry(hour).or_default();
        h.0 += t;
        h.1 += b;
    }
    let minutes = period.seconds() / 60;
    let request_attainment = if total > 0.0 {
        (total - bad) / total
    } else {
        1.0
    };
    let minute_attainment = 1.0 - downtime as f64 / minutes.max(1) as f64;
    let attainment = match sla.measure {
        Measure::Requests => request_attainment,
        Measure::Minutes => minute_attainment,
    };
    let tier = sla
        .credits
        .iter()
        .filter(|c| attainment < c.below)
        .max_by(|a, b| a.credit.total_cmp(&b.credit))
        .copied();
    let mut worst: Vec<Window> = hours
        .into_iter()
        .filter(|(_, (_, b))| *b > 0.0)
        .map(|(start, (t, b))| Window {
            start,
            end: (start + 3_600).min(period.end),
            total: t,
            bad: b,
        })
        .collect();
    worst.sort_by(|a, b| b.bad.total_cmp(&a.bad).then(a.start.cmp(&b.start)));
    worst.truncate(WORST_HOURS);
    Statement {
        tenant: tenant.to_owned(),
        period: (period.start, period.end),
        total,
        bad,
        request_attainment,
        allowed_bad_requests: (1.0 - sla.target) * total,
        minutes,
        downtime_minutes: downtime,
        minute_attainment,
        allowed_downtime_minutes: (1.0 - sla.target) * minutes as f64,
        attainment,
        met: attainment >= sla.target,
        tier,
        credit: tier.map_or(0.0, |t| t.credit),
        worst,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLA: &str = r#"
apiVersion: nines/v1
kind: SLA
metadata:
  name: checkout-enterprise
spec:
  slo: checkout-availability
  target: 0.999
  timeZone: America/New_York
  tenants: [acme, globex]
  credits:
    - below: 0.95
      credit: 1.0
    - below: 0.999
      credit: 0.10
    - below: 0.99
      credit: 0.25
"#;

    fn sla() -> Sla {
        let (mut slas, errors) = parse("sla.yaml", SLA);
        assert_eq!(errors, []);
        slas.remove(0)
    }

    #[test]
    fn a_definition_is_read_and_its_tiers_ordered() {
        let s = sla();
        assert_eq!(s.time_zone, chrono_tz::America::New_York);
        assert_eq!(
            s.credits.iter().map(|c| c.below).collect::<Vec<_>>(),
            [0.999, 0.99, 0.95]
        );
        assert_eq!(s.measure, Measure::Requests);
    }

    #[test]
    fn refusals_name_the_document_and_field() {
        let bad = SLA.replace("target: 0.999", "target: 1.5");
        let (_, errors) = parse("sla.yaml", &bad);
        assert_eq!(
            errors[0].to_string(),
            "sla.yaml: document 1 (SLA/checkout-enterprise): spec.target: 1.5 is not a share between 0 and 1"
        );
        let bad = SLA.replace("America/New_York", "Mars/Olympus_Mons");
        let (_, errors) = parse("sla.yaml", &bad);
        assert_eq!(
            errors[0].to_string(),
            "sla.yaml: document 1 (SLA/checkout-enterprise): spec.timeZone: \"Mars/Olympus_Mons\" is not an IANA time zone"
        );
        let bad = SLA.replace("credit: 0.25", "credit: 0.05");
        let (_, errors) = parse("sla.yaml", &bad);
        assert_eq!(errors[0].path, "spec.credits");
        let bad = SLA.replace(
            "  slo: checkout-availability\n",
            "  slo: x\n  colour: red\n",
        );
        let (_, errors) = parse("sla.yaml", &bad);
        assert_eq!(errors[0].path, "spec.colour");
        assert!(
            errors[0].reason.contains("unknown field `colour`"),
            "{errors:?}"
        );
    }

    #[test]
    fn months_follow_the_zone() {
        // November 2026 in New York: EDT until Nov 1 02:00, so it starts at 04:00 UTC and
        // ends at 05:00 UTC on Dec 1 (EST): 30 days and one hour.
        let p = month("2026-11", chrono_tz::America::New_York).unwrap();
        assert_eq!(p.start, 1_793_505_600); // 2026-11-01T04:00:00Z
        assert_eq!(p.end, 1_796_101_200); // 2026-12-01T05:00:00Z
        assert_eq!(p.seconds(), 30 * 86_400 + 3_600);
        let p = month("2026-12", chrono_tz::UTC).unwrap();
        assert_eq!((p.start, p.end), (1_796_083_200, 1_798_761_600));
        assert!(month("2026-13", chrono_tz::UTC).is_err());
    }

    #[test]
    fn a_statement_counts_requests_minutes_and_the_credit() {
        let s = sla();
        let p = month("2026-11", chrono_tz::UTC).unwrap();
        // 100 requests a minute all month; 90 minutes with 10 bad (10 %: downtime), on
        // day 3 from 10:00; 200 more minutes with 1 bad (1 %: not downtime).
        let minutes = (p.seconds() / 60) as usize;
        let mut series = Series::zeros(p.start, 60, minutes);
        for i in 0..minutes {
            let at = p.start + i as i64 * 60;
            let bad = if (3_480..3_570).contains(&i) {
                10.0
            } else if (10_000..10_200).contains(&i) {
                1.0
            } else {
                0.0
            };
            series.add(at, 100.0 - bad, 100.0);
        }
        let st = statement(&s, "acme", &series, p);
        let total = 100.0 * minutes as f64;
        let bad = 900.0 + 200.0;
        assert_eq!((st.total, st.bad), (total, bad));
        assert!((st.request_attainment - (1.0 - bad / total)).abs() < 1e-12);
        assert_eq!(st.downtime_minutes, 90);
        assert_eq!(st.minutes, 43_200);
        assert!((st.minute_attainment - (1.0 - 90.0 / 43_200.0)).abs() < 1e-12);
        // 1 − 1,100 / 4,320,000 = 0.999745: above 0.999, no credit.
        assert!(st.met);
        assert_eq!(st.tier, None);
        assert!((st.allowed_bad_requests - 4_320.0).abs() < 1e-6);
        // The worst hours: 10:00–11:00 of day 3 (i 3,480 = 58 h) holds 60 × 10 bad... the
        // outage is [58 h, 59 h 30): 600 bad then 300 bad.
        assert_eq!(st.worst[0].start, p.start + 58 * 3_600);
        assert_eq!(st.worst[0].bad, 600.0);
        assert_eq!(st.worst[1].bad, 300.0);
        // The same month measured in minutes against 99.9 %: 90 > 43.2 allowed, 0.99792 is
        // below 0.999 (10 %) but not below 0.99.
        let minutes_sla = Sla {
            measure: Measure::Minutes,
            ..s
        };
        let st = statement(&minutes_sla, "acme", &series, p);
        assert!(!st.met);
        assert_eq!(st.credit, 0.10);
        assert!((st.allowed_downtime_minutes - 43.2).abs() < 1e-9);
    }
}
