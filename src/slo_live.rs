//! Live SLO evaluation in `nines up` (docs/slo.md, "Live"): every `slo.interval`, each
//! objective of every SLO under `slo.dir` is evaluated at the latest whole minute that ended
//! `slo.settle` ago; the figures go to `/metrics` as gauges and, when `slo.alertmanager_url`
//! is set, firing and resolved alerts go to an Alertmanager v2 API.
//!
//! The alert protocol is Prometheus's: a firing alert is re-sent on every evaluation with
//! `endsAt` four intervals ahead (so Alertmanager resolves it by itself if nines stops), and
//! a resolved one is sent with `endsAt` the instant it stopped firing, for 15 minutes after.
//! An objective whose data cannot be read keeps its alerts as they were.

use std::collections::BTreeMap;
use std::time::Duration;

use nines_query::QueryEngine;
use nines_slo::eval::{self, Report};
use nines_slo::model::{Objective, Slo};
use nines_slo::window::rfc3339;
use nines_store::Store;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::SloConfig;
use crate::slo_cmd;

/// How long a resolved alert keeps being sent (Prometheus's `resolved_retention`).
const RESOLVED_RESEND: i64 = 15 * 60;

/// The burn-rate windows exported as `nines_slo_burn_rate{window}`.
const EXPORTED_BURN_WINDOWS: [i64; 4] = [300, 3_600, 21_600, 86_400];

/// Loads the definitions under `slo.dir` and evaluates them until `stop`. A missing
/// directory turns live evaluation off (logged); refused definitions are logged and the
/// rest evaluated.
pub(crate) async fn run(
    cfg: SloConfig,
    store: Store,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    if !cfg.dir.exists() {
        info!(dir = %cfg.dir.display(), "no SLO definitions directory; live SLO evaluation is off");
        return Ok(());
    }
    let (_, slos, errors) = slo_cmd::load(std::slice::from_ref(&cfg.dir))?;
    for e in &errors {
        error!("SLO definition refused: {e}");
    }
    metrics::gauge!(crate::metrics::SLO_DEFINITION_ERRORS).set(errors.len() as f64);
    let objectives: usize = slos.iter().map(|s| s.objectives.len()).sum();
    metrics::gauge!(crate::metrics::SLO_OBJECTIVES).set(objectives as f64);
    if slos.is_empty() {
        info!(dir = %cfg.dir.display(), "no SLO to evaluate; live SLO evaluation is off");
        return Ok(());
    }
    info!(dir = %cfg.dir.display(), slos = slos.len(), objectives, "evaluating SLOs live");
    let engine = QueryEngine::new(&store).await?;
    let notifier = match &cfg.alertmanager_url {
        Some(url) => Some(Notifier::new(url, cfg.interval)?),
        None => None,
    };
    let mut state = AlertState::default();
    let mut last_error: BTreeMap<(String, String), String> = BTreeMap::new();
    let interval = cfg.interval.as_secs().max(1) as i64;
    loop {
        // Aligned ticks: every instance evaluates at the same wall-clock instants.
        let now_ms = now_millis();
        let next_ms = (now_ms / (interval * 1_000) + 1) * interval * 1_000;
        let wait = Duration::from_millis(u64::try_from(next_ms - now_ms).unwrap_or(0));
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            () = tokio::time::sleep(wait) => {}
        }
        let at = evaluation_instant(now_millis() / 1_000, cfg.settle.as_secs() as i64);
        let started = std::time::Instant::now();
        let mut firing = BTreeMap::new();
        let mut failed = Vec::new();
        for (slo, objective_name, result) in slo_cmd::evaluate_all(&engine, &slos, at).await {
            let Some(objective) = slo.objectives.iter().find(|o| o.name == objective_name) else {
                continue;
            };
            let key = (slo.name.clone(), objective.name.clone());
            match result {
                Ok(report) => {
                    last_error.remove(&key);
                    publish(&slo, objective, &report);
                    for i in &report.firing {
                        firing.insert(
                            AlertKey {
                                slo: slo.name.clone(),
                                objective: objective.name.clone(),
                                alert: i.alert.clone(),
                            },
                            Firing::new(&slo, &report, i),
                        );
                    }
                    crate::metrics::slo_evaluated(true);
                }
                Err(e) => {
                    // Logged when it starts or changes, not every minute.
                    if last_error.get(&key) != Some(&e) {
                        warn!(slo = %slo.name, objective = %objective.name, error = %e, "SLO not evaluated");
                        last_error.insert(key.clone(), e);
                    }
                    failed.push(key);
                    crate::metrics::slo_evaluated(false);
                }
            }
        }
        metrics::histogram!(crate::metrics::SLO_EVALUATION_DURATION).record(started.elapsed());
        metrics::gauge!(crate::metrics::SLO_EVALUATION_TIMESTAMP).set(at as f64);
        let changes = state.update(at, firing, &failed);
        for c in &changes {
            info!(
                slo = %c.key.slo, objective = %c.key.objective, alert = %c.key.alert,
                severity = %c.firing.severity, state = if c.end.is_some() { "resolved" } else { "firing" },
                "SLO alert"
            );
        }
        if let Some(n) = &notifier {
            n.send(&state, at).await;
        }
    }
}

/// The instant evaluated at wall-clock second `now`: the end of the latest whole minute
/// that ended at least `settle` seconds ago (its data has had time to arrive).
pub(crate) fn evaluation_instant(now: i64, settle: i64) -> i64 {
    (now - settle).div_euclid(eval::DATA_STEP) * eval::DATA_STEP
}

fn now_millis() -> i64 {
    nines_model::clock::now_ms()
}

/// A gauge value: NaN stands for "no value" (no data, no burn).
fn value(v: Option<f64>) -> f64 {
    v.unwrap_or(f64::NAN)
}

/// Sets the gauges of one objective.
fn publish(slo: &Slo, objective: &Objective, r: &Report) {
    let labels = [
        ("slo", slo.name.clone()),
        ("objective", objective.name.clone()),
        ("service", slo.service.clone()),
    ];
    metrics::gauge!(crate::metrics::SLO_TARGET, &labels).set(r.target);
    metrics::gauge!(crate::metrics::SLO_SLI, &labels).set(value(r.standing.sli));
    metrics::gauge!(crate::metrics::SLO_BUDGET_REMAINING, &labels).set(r.standing.remaining);
    metrics::gauge!(crate::metrics::SLO_BUDGET_CONSUMED, &labels).set(r.standing.consumed);
    metrics::gauge!(crate::metrics::SLO_COVERAGE, &labels).set(r.standing.coverage);
    metrics::gauge!(crate::metrics::SLO_TIME_TO_EXHAUSTION, &labels)
        .set(value(r.standing.time_to_exhaustion));
    for status in crate::metrics::SLO_STATUSES {
        let mut l = labels.to_vec();
        l.push(("status", status.to_owned()));
        let on = r.standing.status.as_str() == status;
        metrics::gauge!(crate::metrics::SLO_STATUS, &l).set(if on { 1.0 } else { 0.0 });
    }
    for (lookback, burn) in &r.burn_rates {
        if EXPORTED_BURN_WINDOWS.contains(lookback) {
            let mut l = labels.to_vec();
            l.push(("window", nines_slo::alerts::seconds_text(*lookback)));
            metrics::gauge!(crate::metrics::SLO_BURN_RATE, &l).set(value(*burn));
        }
    }
    // Every alert the objective can raise, 1 while it fires.
    let (rules, _) = eval::burn_rules(slo, objective);
    let conditions = slo.alert_policies.iter().flat_map(|p| &p.conditions);
    let alerts = rules
        .iter()
        .map(|r| (r.name(), r.severity.to_owned()))
        .chain(conditions.map(|c| (c.name.clone(), c.severity.clone())));
    for (alert, severity) in alerts {
        let on = r.firing.iter().any(|i| i.alert == alert);
        let mut l = labels.to_vec();
        l.push(("alert", alert));
        l.push(("severity", severity));
        metrics::gauge!(crate::metrics::SLO_ALERT_FIRING, &l).set(if on { 1.0 } else { 0.0 });
    }
}

/// Which alert: its labels in Alertmanager are these plus the severity and service.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct AlertKey {
    slo: String,
    objective: String,
    alert: String,
}

/// What is known of a firing alert, for its labels and annotations.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Firing {
    service: String,
    severity: String,
    summary: String,
    description: String,
}

impl Firing {
    fn new(slo: &Slo, r: &Report, i: &nines_slo::alerts::Interval) -> Self {
        let burn = |l: i64| {
            r.burn_rates
                .iter()
                .find(|(s, _)| *s == l)
                .and_then(|(_, b)| *b)
                .map_or("-".to_owned(), |b| format!("{b:.1}"))
        };
        let name = slo.display_name.as_deref().unwrap_or(&slo.name);
        Self {
            service: slo.service.clone(),
            severity: i.severity.clone(),
            summary: format!(
                "{name} ({}): error budget burning, {} ({})",
                slo.service, i.alert, i.severity
            ),
            description: format!(
                "Objective {:?} (target {}) at {}: burn rate {}× over 5m, {}× over 1h, {}× \
                 over 6h; {:.1} % of the error budget left ({}); SLI {}. \
                 `nines slo history {}` shows the series and when it started.",
                r.objective,
                r.target,
                rfc3339(r.at),
                burn(300),
                burn(3_600),
                burn(21_600),
                r.standing.remaining * 100.0,
                r.standing.status.as_str(),
                r.standing.sli.map_or("-".to_owned(), |s| format!("{s:.6}")),
                slo.name,
            ),
        }
    }
}

/// One alert that started or stopped firing at an evaluation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Change {
    pub(crate) key: AlertKey,
    pub(crate) firing: Firing,
    /// `None`: started; `Some(t)`: resolved at `t`.
    pub(crate) end: Option<i64>,
}

/// The alerts firing, and those resolved in the last [`RESOLVED_RESEND`] seconds.
#[derive(Debug, Default)]
pub(crate) struct AlertState {
    /// Alert → (since, what it says).
    active: BTreeMap<AlertKey, (i64, Firing)>,
    /// Alert → (since, resolved at, what it said).
    resolved: BTreeMap<AlertKey, (i64, i64, Firing)>,
}

impl AlertState {
    /// Takes the alerts firing at `at`. Alerts of the objectives in `failed` (not
    /// evaluated) stay as they were. Returns what started and what stopped.
    pub(crate) fn update(
        &mut self,
        at: i64,
        firing: BTreeMap<AlertKey, Firing>,
        failed: &[(String, String)],
    ) -> Vec<Change> {
        let mut changes = Vec::new();
        let kept = |k: &AlertKey| failed.iter().any(|(s, o)| *s == k.slo && *o == k.objective);
        let stopped: Vec<AlertKey> = self
            .active
            .keys()
            .filter(|k| !firing.contains_key(*k) && !kept(k))
            .cloned()
            .collect();
        for k in stopped {
            if let Some((since, f)) = self.active.remove(&k) {
                changes.push(Change {
                    key: k.clone(),
                    firing: f.clone(),
                    end: Some(at),
                });
                self.resolved.insert(k, (since, at, f));
            }
        }
        for (k, f) in firing {
            match self.active.get_mut(&k) {
                Some(entry) => entry.1 = f,
                None => {
                    self.resolved.remove(&k);
                    changes.push(Change {
                        key: k.clone(),
                        firing: f.clone(),
                        end: None,
                    });
                    self.active.insert(k, (at, f));
                }
            }
        }
        self.resolved
            .retain(|_, (_, end, _)| at - *end < RESOLVED_RESEND);
        changes
    }

    /// The Alertmanager v2 `postableAlerts` body: every firing alert (`endsAt` = `at` +
    /// `hold`) and every recently resolved one (`endsAt` = when it stopped).
    pub(crate) fn postable(&self, at: i64, hold: i64) -> Value {
        let alert = |k: &AlertKey, f: &Firing, start: i64, end: i64| {
            json!({
                "labels": {
                    "alertname": "SLOErrorBudgetBurn",
                    "slo": k.slo,
                    "objective": k.objective,
                    "alert": k.alert,
                    "severity": f.severity,
                    "service": f.service,
                },
                "annotations": {
                    "summary": f.summary,
                    "description": f.description,
                },
                "startsAt": rfc3339(start),
                "endsAt": rfc3339(end),
                "generatorURL": "",
            })
        };
        let firing = self
            .active
            .iter()
            .map(|(k, (since, f))| alert(k, f, *since, at + hold));
        let resolved = self
            .resolved
            .iter()
            .map(|(k, (since, end, f))| alert(k, f, *since, *end));
        Value::Array(firing.chain(resolved).collect())
    }
}

/// Posts alerts to Alertmanager.
#[derive(Debug)]
struct Notifier {
    url: String,
    client: reqwest::Client,
    /// How long a firing alert holds without being re-sent: four intervals.
    hold: i64,
}

impl Notifier {
    fn new(base: &str, interval: Duration) -> anyhow::Result<Self> {
        let url = format!("{}/api/v2/alerts", base.trim_end_matches('/'));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self {
            url,
            client,
            hold: 4 * interval.as_secs().max(60) as i64,
        })
    }

    /// Sends the current alerts (nothing when there are none). A failure is logged and
    /// counted; the next evaluation sends again.
    async fn send(&self, state: &AlertState, at: i64) {
        let body = state.postable(at, self.hold);
        if body.as_array().is_none_or(Vec::is_empty) {
            return;
        }
        let sent = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await;
        let result = match sent {
            Ok(r) if r.status().is_success() => "ok",
            Ok(r) => {
                warn!(url = %self.url, status = %r.status(), "Alertmanager refused the alerts");
                "refused"
            }
            Err(e) => {
                warn!(url = %self.url, error = %e, "Alertmanager unreachable");
                "unreachable"
            }
        };
        metrics::counter!(crate::metrics::SLO_ALERTMANAGER_POSTS, "result" => result).increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn firing(severity: &str) -> Firing {
        Firing {
            service: "checkout".into(),
            severity: severity.into(),
            summary: "s".into(),
            description: "d".into(),
        }
    }

    fn key(alert: &str) -> AlertKey {
        AlertKey {
            slo: "web".into(),
            objective: "availability".into(),
            alert: alert.into(),
        }
    }

    #[test]
    fn the_instant_is_the_last_minute_that_ended_a_settle_ago() {
        assert_eq!(evaluation_instant(1_000_020, 15), 999_960);
        assert_eq!(evaluation_instant(1_000_010, 15), 999_960);
        // 1_000_034 - 15 = 1_000_019: still the minute ending at 999_960.
        assert_eq!(evaluation_instant(1_000_034, 15), 999_960);
        assert_eq!(evaluation_instant(1_000_035, 15), 1_000_020);
    }

    #[test]
    fn alerts_start_resolve_and_are_kept_when_not_evaluated() {
        let mut s = AlertState::default();
        let page = BTreeMap::from([(key("14.4x over 1h/5m"), firing("page"))]);
        let c = s.update(600, page.clone(), &[]);
        assert_eq!((c.len(), c[0].end), (1, None));
        // Still firing: no change; its start stays 600.
        assert!(s.update(660, page.clone(), &[]).is_empty());
        // Not evaluated (data unreadable): kept.
        let failed = [("web".to_owned(), "availability".to_owned())];
        assert!(s.update(720, BTreeMap::new(), &failed).is_empty());
        let body = s.postable(720, 240);
        assert_eq!(body[0]["startsAt"], rfc3339(600));
        assert_eq!(body[0]["endsAt"], rfc3339(960));
        assert_eq!(body[0]["labels"]["severity"], "page");
        // Stops: resolved at 780, sent as such for 15 minutes.
        let c = s.update(780, BTreeMap::new(), &[]);
        assert_eq!(c[0].end, Some(780));
        let body = s.postable(840, 240);
        assert_eq!(body.as_array().unwrap().len(), 1);
        assert_eq!(body[0]["endsAt"], rfc3339(780));
        assert!(
            s.update(780 + RESOLVED_RESEND, BTreeMap::new(), &[])
                .is_empty()
        );
        assert_eq!(s.postable(780 + RESOLVED_RESEND, 240), json!([]));
        // Fires again: a new start.
        let c = s.update(2_000, page, &[]);
        assert_eq!(c[0].end, None);
        assert_eq!(s.postable(2_000, 240)[0]["startsAt"], rfc3339(2_000));
    }
}
