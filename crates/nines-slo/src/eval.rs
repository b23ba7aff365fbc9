//! One objective of one SLO at one instant: what range of data it needs, and its standing,
//! burn rates and alerts from that data.

use crate::alerts::{self, BurnRule, Interval, LowTraffic, RefusedRule};
use crate::budget::{self, Ledger, Rule, Series, Standing};
use crate::model::{BudgetingMethod, Objective, Slo};

/// The data slices nines reads (`sli_1m`): one minute.
pub const DATA_STEP: i64 = 60;

/// The burn-rate lookbacks every report shows (seconds): 5m, 30m, 1h, 2h, 6h, 1d, 3d.
pub const LOOKBACKS: [i64; 7] = [300, 1_800, 3_600, 7_200, 21_600, 86_400, 259_200];

/// How one evaluation is done.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    /// Share of budget left under which the status is `warning`.
    pub warning_below: f64,
    /// The lookback of the "current" burn rate (time to exhaustion).
    pub current_burn: i64,
    pub low_traffic: LowTraffic,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            warning_below: 0.25,
            current_burn: 3_600,
            low_traffic: LowTraffic::BudgetShare,
        }
    }
}

/// The budgeting slice of an objective: its `timeSliceWindow` for the slice methods (at
/// least one minute), else one minute.
pub fn slice_seconds(slo: &Slo, objective: &Objective) -> i64 {
    match slo.budgeting {
        BudgetingMethod::Occurrences => DATA_STEP,
        _ => objective
            .time_slice_window
            .map_or(DATA_STEP, |s| s.nominal_seconds())
            .max(DATA_STEP),
    }
}

/// How an objective counts its slices.
pub fn rule(slo: &Slo, objective: &Objective) -> Rule {
    Rule {
        method: slo.budgeting,
        target: objective.target,
        time_slice_target: objective.time_slice_target.unwrap_or(objective.target),
    }
}

/// The multiwindow rows of an objective.
pub fn burn_rules(slo: &Slo, objective: &Objective) -> (Vec<BurnRule>, Vec<RefusedRule>) {
    alerts::workbook_rules(
        slo.window.nominal_seconds(),
        slice_seconds(slo, objective),
        objective.target,
    )
}

/// The range of one-minute data `[from, to)` an evaluation at `at` needs: the period, the
/// longest lookback and alert window before `at`, and (for the budget-share guard) one
/// period before the longest window. Aligned on the objective's slices.
pub fn data_range(slo: &Slo, objective: &Objective, at: i64) -> (i64, i64) {
    let period = slo.window.period_at(at);
    let (rules, _) = burn_rules(slo, objective);
    let longest = rules
        .iter()
        .map(|r| r.long)
        .chain(LOOKBACKS)
        .max()
        .unwrap_or(0);
    let from = period
        .start
        .min(at - longest - slo.window.nominal_seconds());
    let slice = slice_seconds(slo, objective);
    (from.div_euclid(slice) * slice, at)
}

/// The objective's counting rule and its ledger over `series` in its budgeting slices.
pub fn ledger(slo: &Slo, objective: &Objective, series: &Series) -> (Rule, Ledger) {
    let slice = slice_seconds(slo, objective);
    let rule = rule(slo, objective);
    let ledger = if slice > series.step {
        Ledger::new(&series.rebin(slice), &rule)
    } else {
        Ledger::new(series, &rule)
    };
    (rule, ledger)
}

/// One objective's report.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub slo: String,
    pub objective: String,
    pub target: f64,
    pub at: i64,
    pub standing: Standing,
    /// Burn rate per lookback of [`LOOKBACKS`] (seconds, rate).
    pub burn_rates: Vec<(i64, Option<f64>)>,
    /// Alerts firing at `at` (multiwindow rows and the SLO's own burnrate conditions).
    pub firing: Vec<Interval>,
    pub refused_rules: Vec<RefusedRule>,
}

/// An objective with its ledger built once over a series: every evaluation, alert history
/// and window asked of it after costs no rebuild (a report asks for hundreds: building the
/// ledger is linear in the series, everything after is O(1) per window).
#[derive(Debug)]
pub struct Prepared<'a> {
    pub slo: &'a Slo,
    pub objective: &'a Objective,
    pub rule: Rule,
    pub ledger: Ledger,
}

impl<'a> Prepared<'a> {
    /// The objective over `series` (one-minute slices covering what will be asked).
    pub fn new(slo: &'a Slo, objective: &'a Objective, series: &Series) -> Self {
        let (rule, ledger) = ledger(slo, objective, series);
        Self {
            slo,
            objective,
            rule,
            ledger,
        }
    }

    /// The objective's report at `at`.
    pub fn at(&self, at: i64, options: &Options) -> Report {
        report_at(
            self.slo,
            self.objective,
            &self.rule,
            &self.ledger,
            at,
            options,
        )
    }

    /// The alert intervals over `[from, to]` (see [`alert_history`]).
    pub fn alert_history(&self, from: i64, to: i64, options: &Options) -> Vec<Interval> {
        let (slo, rule, ledger) = (self.slo, &self.rule, &self.ledger);
        let (rules, _) = burn_rules(slo, self.objective);
        let mut out = alerts::history(
            ledger,
            rule,
            &rules,
            options.low_traffic,
            slo.window.nominal_seconds(),
            from,
            to,
        );
        for policy in &slo.alert_policies {
            for condition in &policy.conditions {
                out.extend(alerts::condition_history(ledger, rule, condition, from, to));
            }
        }
        out.sort_by_key(|i| (i.start, i.alert.clone()));
        out
    }
}

/// Evaluates an objective at `at` over `series` (one-minute slices covering
/// [`data_range`]).
pub fn evaluate(
    slo: &Slo,
    objective: &Objective,
    series: &Series,
    at: i64,
    options: &Options,
) -> Report {
    Prepared::new(slo, objective, series).at(at, options)
}

/// Evaluates an objective at each of `instants` over one `series` covering the data range
/// of the earliest and the latest (the ledger is built once: a history of a month by the
/// minute costs a month of slices, not a month per instant).
pub fn evaluate_many(
    slo: &Slo,
    objective: &Objective,
    series: &Series,
    instants: impl IntoIterator<Item = i64>,
    options: &Options,
) -> Vec<Report> {
    let prepared = Prepared::new(slo, objective, series);
    instants
        .into_iter()
        .map(|at| prepared.at(at, options))
        .collect()
}

fn report_at(
    slo: &Slo,
    objective: &Objective,
    rule: &Rule,
    ledger: &Ledger,
    at: i64,
    options: &Options,
) -> Report {
    let rule = *rule;
    let period = slo.window.period_at(at);
    let standing = budget::standing(
        ledger,
        &rule,
        period,
        at,
        options.current_burn,
        options.warning_below,
    );
    let burn_rates = LOOKBACKS
        .iter()
        .map(|l| (*l, budget::burn(ledger, &rule, at - l, at)))
        .collect();
    let (rules, refused_rules) = burn_rules(slo, objective);
    let period_seconds = slo.window.nominal_seconds();
    let mut firing: Vec<Interval> = rules
        .iter()
        .filter(|r| alerts::fires(ledger, &rule, r, options.low_traffic, period_seconds, at))
        .map(|r| Interval {
            alert: r.name(),
            severity: r.severity.to_owned(),
            start: at,
            end: None,
        })
        .collect();
    for policy in &slo.alert_policies {
        for condition in &policy.conditions {
            let after = condition.alert_after.nominal_seconds();
            let lookback = condition.lookback.nominal_seconds();
            let from = at - after - lookback;
            firing.extend(
                alerts::condition_history(ledger, &rule, condition, from, at)
                    .into_iter()
                    .filter(|i| i.end.is_none()),
            );
        }
    }
    Report {
        slo: slo.name.clone(),
        objective: objective.name.clone(),
        target: objective.target,
        at,
        standing,
        burn_rates,
        firing,
        refused_rules,
    }
}

/// The alert intervals of an objective over `[from, to]` (history), multiwindow rows and
/// the SLO's own conditions, from `series` (one-minute slices from before `from` by the
/// longest window and one period).
pub fn alert_history(
    slo: &Slo,
    objective: &Objective,
    series: &Series,
    from: i64,
    to: i64,
    options: &Options,
) -> Vec<Interval> {
    Prepared::new(slo, objective, series).alert_history(from, to, options)
}
