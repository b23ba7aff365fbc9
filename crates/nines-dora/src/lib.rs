//! The five DORA metrics (dora.dev, 2024 onwards) over plain deploys and incidents
//! (docs/dora.md): deployment frequency, change lead time, change fail rate, failed
//! deployment recovery time and deployment rework rate, per service and environment and
//! overall, for a range `[from, to)`.
//!
//! Pure: the data comes in as values, the range is always an argument, and everything is
//! judged with what happened before `to`, so a past range gives the same answer tomorrow.
//! Times are microseconds since the epoch (the tables' precision); durations come out in
//! seconds.

use std::collections::{BTreeMap, BTreeSet};

pub mod tiers;

/// How a deploy ended, as the `deploys` table says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    /// The deploy itself did not finish: no change reached the environment.
    Failed,
    /// The deploy reached the environment and was rolled back.
    RolledBack,
}

impl Outcome {
    /// `succeeded`, `failed`, `rolled_back` (the table's words); anything else is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "succeeded" => Some(Self::Succeeded),
            "failed" => Some(Self::Failed),
            "rolled_back" => Some(Self::RolledBack),
            _ => None,
        }
    }
}

/// One commit of a deploy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    pub sha: String,
    pub time: i64,
}

/// One row of `deploys`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deploy {
    pub service: String,
    pub environment: String,
    pub version: String,
    pub time: i64,
    pub outcome: Outcome,
    pub commits: Vec<Commit>,
}

/// One incident (the latest row of its id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incident {
    pub id: String,
    pub service: String,
    pub opened_at: i64,
    pub resolved_at: Option<i64>,
    pub cause_version: Option<String>,
}

/// A page-severity burn-rate alert that started firing (from the SLO engine), as a signal
/// against the deploy whose attribution window it started in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageAlert {
    pub service: String,
    /// The environment the SLO judges, when it says (an SLO label `environment`); `None`
    /// counts against deploys of every environment of the service.
    pub environment: Option<String>,
    /// e.g. `checkout-availability: 14.4x over 1h/5m`.
    pub name: String,
    pub start: i64,
}

/// Why a deploy counts as failed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Signal {
    /// An incident names its version as the cause.
    Incident(String),
    /// Its outcome says it was rolled back.
    RolledBack,
    /// The next deploy went back to a version deployed before it.
    Rollback { to_version: String },
    /// A page alert started in its attribution window.
    Page(String),
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Incident(id) => write!(f, "incident {id}"),
            Self::RolledBack => f.write_str("outcome rolled_back"),
            Self::Rollback { to_version } => write!(f, "rollback to {to_version}"),
            Self::Page(name) => write!(f, "page alert {name}"),
        }
    }
}

/// What nines makes of one deployment in the range.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    pub deploy: Deploy,
    /// Why it failed; empty when it did not.
    pub signals: Vec<Signal>,
    /// When it was recovered from (failed deploys), if before `to`.
    pub recovered_at: Option<i64>,
    /// Whether it remediates a failed deploy (the next deploy after one).
    pub rework: bool,
}

impl Judged {
    pub fn failed(&self) -> bool {
        !self.signals.is_empty()
    }
}

/// Median and count of a set of durations (seconds); the median of an even count is the
/// mean of the two middle values, taken over every value (not distinct values).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Summary {
    pub count: usize,
    pub median: Option<f64>,
}

impl Summary {
    pub fn of(mut values: Vec<f64>) -> Self {
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let median = match n {
            0 => None,
            _ if n % 2 == 1 => Some(values[n / 2]),
            _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
        };
        Self { count: n, median }
    }
}

/// The DORA metrics of one scope (a service and environment, or everything).
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    /// Deployments in the range (a deploy whose outcome is `failed` changed nothing and
    /// is not one).
    pub deployments: usize,
    /// Deployments per day of the range.
    pub deploys_per_day: f64,
    /// Commit to its first deployment in the range, per commit (seconds).
    pub lead_time: Summary,
    /// Failed deployments / deployments; `None` without deployments.
    pub change_fail_rate: Option<f64>,
    pub failed: usize,
    /// Failed deployment to recovery, per recovered failed deployment (seconds).
    pub recovery_time: Summary,
    /// Failed deployments not recovered from before the end of the range.
    pub unrecovered: usize,
    /// Rework deployments / deployments; `None` without deployments.
    pub rework_rate: Option<f64>,
    pub rework: usize,
}

/// The DORA figures of a range.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    pub from: i64,
    pub to: i64,
    /// Per (service, environment).
    pub scopes: BTreeMap<(String, String), Metrics>,
    pub overall: Metrics,
    /// Every deployment in the range, in time order, with its verdict.
    pub deploys: Vec<Judged>,
    /// The trend: the overall metrics of each ISO week (Monday 00:00 UTC) the range
    /// touches, clipped to the range, in order.
    pub weeks: Vec<(i64, Metrics)>,
}

const MICROS: f64 = 1e6;

/// A week in microseconds.
const WEEK: i64 = 7 * 86_400 * 1_000_000;
/// 1970-01-01 was a Thursday: Monday 1969-12-29 00:00 UTC is 3 days before the epoch.
const MONDAY: i64 = -3 * 86_400 * 1_000_000;

/// The signals besides the deploys themselves: incidents, and page alerts with the
/// attribution horizon (a deploy's window runs until the next deploy of its service and
/// environment, or `horizon` after it, whichever comes first).
#[derive(Debug, Clone, Copy)]
pub struct Evidence<'a> {
    pub incidents: &'a [Incident],
    pub alerts: &'a [PageAlert],
    pub horizon: i64,
}

/// Analyses the deploys and incidents (any range; those at or after `to` are ignored) for
/// the deployments in `[from, to)`, without alerts.
pub fn analyse(deploys: &[Deploy], incidents: &[Incident], from: i64, to: i64) -> Analysis {
    let evidence = Evidence {
        incidents,
        alerts: &[],
        horizon: 0,
    };
    analyse_with(deploys, &evidence, from, to)
}

/// [`analyse`] with every signal.
pub fn analyse_with(deploys: &[Deploy], evidence: &Evidence<'_>, from: i64, to: i64) -> Analysis {
    let incidents = evidence.incidents;
    // Deployments known by `to`, per service and environment, in time order; a deploy that
    // repeats the version deployed just before it (telemetry noticing a deploy the API
    // already reported) is the same deployment.
    let mut by_scope: BTreeMap<(String, String), Vec<&Deploy>> = BTreeMap::new();
    let mut sorted: Vec<&Deploy> = deploys
        .iter()
        .filter(|d| d.time < to && d.outcome != Outcome::Failed)
        .collect();
    sorted.sort_by(|a, b| (a.time, &a.version).cmp(&(b.time, &b.version)));
    for d in sorted {
        let list = by_scope
            .entry((d.service.clone(), d.environment.clone()))
            .or_default();
        if list.last().is_some_and(|p| p.version == d.version) {
            continue;
        }
        list.push(d);
    }
    let incidents: Vec<&Incident> = incidents.iter().filter(|i| i.opened_at < to).collect();

    let mut judged = Vec::new();
    let mut scopes = BTreeMap::new();
    for (scope, list) in &by_scope {
        let verdicts = judge(list, &incidents, evidence, to);
        let in_range: Vec<Judged> = verdicts
            .into_iter()
            .filter(|j| j.deploy.time >= from)
            .collect();
        scopes.insert(scope.clone(), metrics(&in_range, list, from, to));
        judged.extend(in_range);
    }
    judged.sort_by(|a, b| {
        (a.deploy.time, &a.deploy.service, &a.deploy.environment).cmp(&(
            b.deploy.time,
            &b.deploy.service,
            &b.deploy.environment,
        ))
    });
    let all: Vec<&Deploy> = by_scope.values().flatten().copied().collect();
    let overall = metrics(&judged, &all, from, to);
    let mut weeks = Vec::new();
    let mut start = (from - MONDAY).div_euclid(WEEK) * WEEK + MONDAY;
    while start < to {
        let (a, b) = (start.max(from), (start + WEEK).min(to));
        let in_week: Vec<Judged> = judged
            .iter()
            .filter(|j| (a..b).contains(&j.deploy.time))
            .cloned()
            .collect();
        weeks.push((start, metrics(&in_week, &all, a, b)));
        start += WEEK;
    }
    Analysis {
        from,
        to,
        scopes,
        overall,
        deploys: judged,
        weeks,
    }
}

/// The verdict of each deployment of one service and environment (time order).
fn judge(
    list: &[&Deploy],
    incidents: &[&Incident],
    evidence: &Evidence<'_>,
    to: i64,
) -> Vec<Judged> {
    let mut out: Vec<Judged> = Vec::with_capacity(list.len());
    for (k, d) in list.iter().enumerate() {
        let mut signals = BTreeSet::new();
        if d.outcome == Outcome::RolledBack {
            signals.insert(Signal::RolledBack);
        }
        if let Some(next) = list.get(k + 1) {
            let earlier: BTreeSet<&str> = list[..k].iter().map(|p| p.version.as_str()).collect();
            if earlier.contains(next.version.as_str()) {
                signals.insert(Signal::Rollback {
                    to_version: next.version.clone(),
                });
            }
        }
        // An incident naming a version counts against the latest deploy of that version
        // before it opened.
        let caused: Vec<&&Incident> = incidents
            .iter()
            .filter(|i| {
                i.service == d.service
                    && i.cause_version.as_deref() == Some(d.version.as_str())
                    && i.opened_at >= d.time
                    && !list[k + 1..]
                        .iter()
                        .any(|later| later.version == d.version && later.time <= i.opened_at)
            })
            .collect();
        for i in &caused {
            signals.insert(Signal::Incident(i.id.clone()));
        }
        // A page alert that started in the attribution window.
        let window_end = list
            .get(k + 1)
            .map_or(d.time + evidence.horizon, |n| {
                n.time.min(d.time + evidence.horizon)
            })
            .min(to);
        for a in evidence.alerts {
            if a.service == d.service
                && a.environment.as_ref().is_none_or(|e| *e == d.environment)
                && (d.time..window_end).contains(&a.start)
            {
                signals.insert(Signal::Page(a.name.clone()));
            }
        }
        let rework = out.last().is_some_and(|p| p.failed());
        out.push(Judged {
            deploy: (*d).clone(),
            signals: signals.into_iter().collect(),
            recovered_at: None,
            rework,
        });
    }
    // Recovery: the first later deploy that is not failed, or every incident it caused
    // resolved, whichever comes first (before `to`).
    for k in 0..out.len() {
        if !out[k].failed() {
            continue;
        }
        let by_deploy = out[k + 1..]
            .iter()
            .find(|j| !j.failed())
            .map(|j| j.deploy.time);
        let ids: Vec<&str> = out[k]
            .signals
            .iter()
            .filter_map(|s| match s {
                Signal::Incident(id) => Some(id.as_str()),
                _ => None,
            })
            .collect();
        let by_incidents = if ids.is_empty() {
            None
        } else {
            ids.iter()
                .map(|id| {
                    incidents
                        .iter()
                        .find(|i| i.id == *id)
                        .and_then(|i| i.resolved_at)
                        .filter(|r| *r < to)
                })
                .collect::<Option<Vec<i64>>>()
                .and_then(|r| r.into_iter().max())
        };
        out[k].recovered_at = match (by_deploy, by_incidents) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    out
}

/// The metrics of `judged` (deployments in the range); `known` are every deployment of
/// their scopes before `to`, which decide each commit's first deployment per service and
/// environment.
fn metrics(judged: &[Judged], known: &[&Deploy], from: i64, to: i64) -> Metrics {
    let mut first: BTreeMap<(&str, &str, &str), i64> = BTreeMap::new();
    for d in known {
        for c in &d.commits {
            let t = first
                .entry((&d.service, &d.environment, &c.sha))
                .or_insert(d.time);
            *t = (*t).min(d.time);
        }
    }
    let deployments = judged.len();
    let failed: Vec<&Judged> = judged.iter().filter(|j| j.failed()).collect();
    let rework = judged.iter().filter(|j| j.rework).count();
    // Each commit once per service and environment, at its first deployment there, if
    // that deployment is one of these.
    let mut lead = Vec::new();
    let mut seen = BTreeSet::new();
    for j in judged {
        let d = &j.deploy;
        for c in &d.commits {
            let key = (d.service.as_str(), d.environment.as_str(), c.sha.as_str());
            if first.get(&key) == Some(&d.time) && seen.insert(key) {
                lead.push((d.time - c.time) as f64 / MICROS);
            }
        }
    }
    let recovery: Vec<f64> = failed
        .iter()
        .filter_map(|j| j.recovered_at.map(|r| (r - j.deploy.time) as f64 / MICROS))
        .collect();
    let unrecovered = failed.len() - recovery.len();
    let days = (to - from) as f64 / MICROS / 86_400.0;
    let rate = |n: usize| (deployments > 0).then(|| n as f64 / deployments as f64);
    Metrics {
        deployments,
        deploys_per_day: if days > 0.0 {
            deployments as f64 / days
        } else {
            0.0
        },
        lead_time: Summary::of(lead),
        change_fail_rate: rate(failed.len()),
        failed: failed.len(),
        recovery_time: Summary::of(recovery),
        unrecovered,
        rework_rate: rate(rework),
        rework,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000_000;

    fn deploy(
        env: &str,
        service: &str,
        version: &str,
        hours: f64,
        commits: &[(&str, f64)],
    ) -> Deploy {
        Deploy {
            service: service.into(),
            environment: env.into(),
            version: version.into(),
            time: (hours * H as f64) as i64,
            outcome: Outcome::Succeeded,
            commits: commits
                .iter()
                .map(|(sha, h)| Commit {
                    sha: (*sha).into(),
                    time: (*h * H as f64) as i64,
                })
                .collect(),
        }
    }

    fn incident(id: &str, service: &str, version: &str, opened: f64, resolved: f64) -> Incident {
        Incident {
            id: id.into(),
            service: service.into(),
            opened_at: (opened * H as f64) as i64,
            resolved_at: Some((resolved * H as f64) as i64),
            cause_version: Some(version.into()),
        }
    }

    /// A scenario worked out by hand (hours): see each figure's comment.
    fn scenario() -> (Vec<Deploy>, Vec<Incident>) {
        let mut rolled_back = deploy("prod", "web", "v5", 40.0, &[("f", 39.0)]);
        rolled_back.outcome = Outcome::RolledBack;
        let mut attempt = deploy("prod", "web", "v9", 35.0, &[("z", 34.0)]);
        attempt.outcome = Outcome::Failed;
        let deploys = vec![
            deploy("prod", "web", "v0", -5.0, &[("old", -6.0)]),
            deploy("staging", "web", "v1", 9.5, &[("a", 8.0), ("b", 9.0)]),
            deploy("prod", "web", "v1", 10.0, &[("a", 8.0), ("b", 9.0)]),
            deploy("prod", "web", "v2", 20.0, &[("c", 19.0)]),
            deploy("prod", "web", "v3", 22.0, &[("d", 21.5)]),
            deploy("prod", "web", "v4", 30.0, &[("e", 25.0)]),
            deploy("prod", "web", "v3", 31.0, &[]),
            attempt,
            rolled_back,
            // Telemetry noticing v5 again: the same deployment.
            deploy("prod", "web", "v5", 40.01, &[]),
            deploy("prod", "api", "v1", 5.0, &[("g", 4.0)]),
            // After the range: changes nothing.
            deploy("prod", "web", "v6", 50.0, &[("h", 49.0)]),
        ];
        let incidents = vec![
            incident("I1", "web", "v2", 21.0, 23.0),
            incident("I2", "api", "v1", 6.0, 6.5),
            incident("I3", "api", "v1", 7.0, 8.0),
        ];
        (deploys, incidents)
    }

    fn close(got: Option<f64>, want: f64) {
        let got = got.expect("a value");
        assert!((got - want).abs() < 1e-9, "{got} vs {want}");
    }

    #[test]
    fn the_scenario_gives_the_figures_worked_out_by_hand() {
        let (deploys, incidents) = scenario();
        let a = analyse(&deploys, &incidents, 0, 48 * H);
        let web = &a.scopes[&("web".to_owned(), "prod".to_owned())];
        // d1 v1, d2 v2 (incident I1), d3 v3 (fix: rework), d4 v4 (rolled back to v3 by d5),
        // d5 v3 (rework), d6 v5 (outcome rolled_back, never recovered); the failed attempt
        // v9 and the telemetry echo of v5 are not deployments.
        assert_eq!(web.deployments, 6);
        close(Some(web.deploys_per_day), 3.0);
        assert_eq!(web.failed, 3);
        close(web.change_fail_rate, 0.5);
        assert_eq!(web.rework, 2);
        close(web.rework_rate, 2.0 / 6.0);
        // d2: recovered by d3 at 22 h (before I1's resolution at 23 h): 2 h; d4: by d5, 1 h.
        assert_eq!((web.recovery_time.count, web.unrecovered), (2, 1));
        close(web.recovery_time.median, 5_400.0);
        // a 2 h, b 1 h, c 1 h, d 0.5 h, e 5 h, f 1 h: median over all six values 1 h (over
        // the distinct ones it would be 1.5 h).
        assert_eq!(web.lead_time.count, 6);
        close(web.lead_time.median, 3_600.0);

        let api = &a.scopes[&("api".to_owned(), "prod".to_owned())];
        // One deploy, two incidents naming it: it fails once (100 %, never more), recovered
        // when the last of them was resolved, at 8 h: 3 h.
        assert_eq!((api.deployments, api.failed), (1, 1));
        close(api.change_fail_rate, 1.0);
        close(api.recovery_time.median, 3.0 * 3_600.0);

        let staging = &a.scopes[&("web".to_owned(), "staging".to_owned())];
        // Lead time per environment: a reached staging after 1.5 h and prod after 2 h.
        close(
            staging.lead_time.median,
            (1.5 * 3_600.0 + 0.5 * 3_600.0) / 2.0,
        );

        // Overall pools every value (never a mean of medians): 8 deployments, 4 failed.
        let all = &a.overall;
        assert_eq!((all.deployments, all.failed, all.rework), (8, 4, 2));
        close(all.change_fail_rate, 0.5);
        // Recovery 2 h, 1 h, 3 h: median 2 h.
        close(all.recovery_time.median, 7_200.0);
        // Lead: web prod six, api 1 h, staging 1.5 h and 0.5 h: 0.5 0.5 1 1 1 1 1.5 2 5 → 1 h.
        assert_eq!(all.lead_time.count, 9);
        close(all.lead_time.median, 3_600.0);
        let signals: Vec<String> = a
            .deploys
            .iter()
            .filter(|j| j.failed())
            .map(|j| {
                let s: Vec<String> = j.signals.iter().map(ToString::to_string).collect();
                format!(
                    "{} {}: {}",
                    j.deploy.service,
                    j.deploy.version,
                    s.join(", ")
                )
            })
            .collect();
        assert_eq!(
            signals,
            [
                "api v1: incident I2, incident I3",
                "web v2: incident I1",
                "web v4: rollback to v3",
                "web v5: outcome rolled_back",
            ]
        );
    }

    #[test]
    fn a_page_alert_fails_the_deploy_whose_window_it_started_in() {
        let deploys = vec![
            deploy("prod", "web", "v1", 0.0, &[]),
            deploy("prod", "web", "v2", 10.0, &[]),
            deploy("staging", "web", "v2", 9.0, &[]),
            deploy("prod", "web", "v3", 40.0, &[]),
        ];
        let page = |env: Option<&str>, hours: f64| PageAlert {
            service: "web".into(),
            environment: env.map(Into::into),
            name: format!("web-availability: 14.4x over 1h/5m at {hours}"),
            start: (hours * H as f64) as i64,
        };
        let alerts = vec![
            // In v1's window [0, 10 h): v1.
            page(Some("prod"), 3.0),
            // 30 h: inside v2's window [10 h, 34 h), which its 24-hour horizon ends.
            page(Some("prod"), 30.0),
            // 36 h: past v2's horizon, before v3: nobody's.
            page(Some("prod"), 36.0),
            // Any environment: staging v2's window [9 h, 33 h) and prod v2's [10 h, 34 h).
            page(None, 12.0),
        ];
        let evidence = Evidence {
            incidents: &[],
            alerts: &alerts,
            horizon: 24 * H,
        };
        let a = analyse_with(&deploys, &evidence, 0, 48 * H);
        let failed: Vec<String> = a
            .deploys
            .iter()
            .map(|j| {
                let s: Vec<String> = j.signals.iter().map(ToString::to_string).collect();
                format!(
                    "{} {}: {}",
                    j.deploy.environment,
                    j.deploy.version,
                    s.join(", ")
                )
            })
            .collect();
        assert_eq!(
            failed,
            [
                "prod v1: page alert web-availability: 14.4x over 1h/5m at 3",
                "staging v2: page alert web-availability: 14.4x over 1h/5m at 12",
                "prod v2: page alert web-availability: 14.4x over 1h/5m at 12, page alert web-availability: 14.4x over 1h/5m at 30",
                "prod v3: ",
            ]
        );
    }

    #[test]
    fn weeks_start_on_monday_and_split_the_range() {
        // 1_796_601_600 s is Monday 2026-12-07 00:00 UTC.
        let monday = 1_796_601_600_i64 * 1_000_000;
        let day = 24 * H;
        let deploys = vec![
            deploy("prod", "web", "v1", (monday - day) as f64 / H as f64, &[]),
            deploy("prod", "web", "v2", (monday + day) as f64 / H as f64, &[]),
            deploy(
                "prod",
                "web",
                "v3",
                (monday + 2 * day) as f64 / H as f64,
                &[],
            ),
        ];
        let a = analyse(&deploys, &[], monday - 3 * day, monday + 3 * day);
        let weeks: Vec<(i64, usize)> = a.weeks.iter().map(|(s, m)| (*s, m.deployments)).collect();
        assert_eq!(weeks, [(monday - 7 * day, 1), (monday, 2)]);
        // Each week's rate is over its part of the range: 1 in 3 days, 2 in 3 days.
        close(Some(a.weeks[0].1.deploys_per_day), 1.0 / 3.0);
        close(Some(a.weeks[1].1.deploys_per_day), 2.0 / 3.0);
    }

    #[test]
    fn medians_of_one_and_two_values_and_none() {
        assert_eq!(Summary::of(vec![]).median, None);
        assert_eq!(Summary::of(vec![7.0]).median, Some(7.0));
        assert_eq!(Summary::of(vec![9.0, 1.0]).median, Some(5.0));
        assert_eq!(Summary::of(vec![3.0, 1.0, 2.0, 2.0]).median, Some(2.0));
    }

    #[test]
    fn a_past_range_ignores_what_happened_after_it() {
        let (deploys, incidents) = scenario();
        // Up to 21.5 h: d2 has failed (I1 opened at 21 h) but nothing has recovered it yet.
        let a = analyse(&deploys, &incidents, 0, (21.5 * H as f64) as i64);
        let web = &a.scopes[&("web".to_owned(), "prod".to_owned())];
        assert_eq!((web.deployments, web.failed, web.unrecovered), (2, 1, 1));
        // The same range again with tomorrow's data: the same answer.
        let mut more = deploys.clone();
        more.push(deploy("prod", "web", "v7", 60.0, &[("i", 59.0)]));
        assert_eq!(analyse(&more, &incidents, 0, (21.5 * H as f64) as i64), a);
    }
}
