//! Multiwindow, multi-burn-rate alerts (SRE Workbook, "Alerting on SLOs", recommendation 6),
//! and OpenSLO `burnrate` alert conditions, evaluated over a [`Ledger`].
//!
//! For a 30-day period the Workbook's rows are 14.4× over 1 h and 5 m (2 % of the budget),
//! 6× over 6 h and 30 m (5 %), 3× over 1 d and 2 h (10 %) and 1× over 3 d and 6 h (10 %).
//! Other periods keep the factors and budget fractions and scale the windows
//! (`long = fraction × period / factor`, `short = long / 12`), as Pyrra does; a short
//! window is never below one slice. A row whose threshold `factor × (1 − target)` is 1 or
//! more can never fire (an error rate cannot exceed 1) and is refused, named.

use crate::budget::{Ledger, Rule};
use crate::duration::Span;
use crate::model::AlertCondition;

/// One row of the multiwindow table.
#[derive(Debug, Clone, PartialEq)]
pub struct BurnRule {
    /// `page` or `ticket`.
    pub severity: &'static str,
    pub factor: f64,
    /// Long and short windows, seconds.
    pub long: i64,
    pub short: i64,
    /// Share of the period's budget the long window spends at `factor`.
    pub budget_fraction: f64,
}

impl BurnRule {
    /// e.g. `14.4x over 1h/5m`.
    pub fn name(&self) -> String {
        format!(
            "{}x over {}/{}",
            self.factor,
            seconds_text(self.long),
            seconds_text(self.short)
        )
    }
}

/// A row that can never fire, with the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct RefusedRule {
    pub rule: BurnRule,
    pub reason: String,
}

/// The Workbook's table: (factor, budget fraction, severity).
const WORKBOOK: [(f64, f64, &str); 4] = [
    (14.4, 0.02, "page"),
    (6.0, 0.05, "page"),
    (3.0, 0.10, "ticket"),
    (1.0, 0.10, "ticket"),
];

/// The multiwindow rows for a period of `period_seconds`, budgeting slices of
/// `slice_seconds`, and `target`: the rows that can fire, and those refused.
pub fn workbook_rules(
    period_seconds: i64,
    slice_seconds: i64,
    target: f64,
) -> (Vec<BurnRule>, Vec<RefusedRule>) {
    let slice = slice_seconds.max(1);
    let whole = |s: f64| -> i64 {
        // Whole slices, at least one.
        let n = (s / slice as f64).round().max(1.0);
        n as i64 * slice
    };
    let mut ok = Vec::new();
    let mut refused = Vec::new();
    for (factor, fraction, severity) in WORKBOOK {
        let long = fraction * period_seconds as f64 / factor;
        let rule = BurnRule {
            severity,
            factor,
            long: whole(long),
            short: whole(long / 12.0),
            budget_fraction: fraction,
        };
        if factor * (1.0 - target) >= 1.0 {
            refused.push(RefusedRule {
                reason: format!(
                    "can never fire: its threshold {factor} × (1 − {target}) = {:.4} is not below 1",
                    factor * (1.0 - target)
                ),
                rule,
            });
        } else {
            ok.push(rule);
        }
    }
    (ok, refused)
}

/// The low-traffic guard: when a window's burn rate alone may not fire a row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LowTraffic {
    /// No guard: the burn rates decide.
    Off,
    /// The long window must hold at least this many units (events, or slices with data).
    MinUnits(f64),
    /// The long window's bad units must be at least the row's budget fraction of the
    /// period's budget (`fraction × (1 − target) × units over the period before the
    /// instant`): a handful of errors among a handful of requests does not page.
    BudgetShare,
}

/// One stretch of time during which an alert fired: `[start, end)`, `end` `None` when it
/// still fires at the end of the range evaluated.
#[derive(Debug, Clone, PartialEq)]
pub struct Interval {
    pub alert: String,
    pub severity: String,
    pub start: i64,
    pub end: Option<i64>,
}

/// Whether `rule` fires at instant `t` (windows ending at `t`).
pub fn fires(
    ledger: &Ledger,
    objective: &Rule,
    rule: &BurnRule,
    guard: LowTraffic,
    period_seconds: i64,
    t: i64,
) -> bool {
    let threshold = rule.factor * objective.allowed();
    let long = ledger.sums(t - rule.long, t);
    let short = ledger.sums(t - rule.short, t);
    let over = |e: Option<f64>| e.is_some_and(|e| e > threshold);
    if !(over(long.error_rate()) && over(short.error_rate())) {
        return false;
    }
    match guard {
        LowTraffic::Off => true,
        LowTraffic::MinUnits(n) => long.units >= n,
        LowTraffic::BudgetShare => {
            let period = ledger.sums(t - period_seconds, t);
            long.bad >= rule.budget_fraction * objective.allowed() * period.units
        }
    }
}

/// Evaluates every row at each slice boundary of `[from, to]` and returns the intervals
/// during which each fired, in order of start.
pub fn history(
    ledger: &Ledger,
    objective: &Rule,
    rules: &[BurnRule],
    guard: LowTraffic,
    period_seconds: i64,
    from: i64,
    to: i64,
) -> Vec<Interval> {
    let mut out = Vec::new();
    for rule in rules {
        let mut open: Option<i64> = None;
        let mut t = align(from, ledger);
        while t <= to {
            let on = fires(ledger, objective, rule, guard, period_seconds, t);
            match (on, open) {
                (true, None) => open = Some(t),
                (false, Some(s)) => {
                    out.push(Interval {
                        alert: rule.name(),
                        severity: rule.severity.to_owned(),
                        start: s,
                        end: Some(t),
                    });
                    open = None;
                }
                _ => {}
            }
            t += ledger.step;
        }
        if let Some(s) = open {
            out.push(Interval {
                alert: rule.name(),
                severity: rule.severity.to_owned(),
                start: s,
                end: None,
            });
        }
    }
    out.sort_by_key(|i| (i.start, i.alert.clone()));
    out
}

/// An OpenSLO `AlertCondition` (`kind: burnrate`) over `[from, to]`: it fires once the burn
/// rate over `lookbackWindow` has compared true with `threshold` for `alertAfter` (as
/// Prometheus's `for`).
pub fn condition_history(
    ledger: &Ledger,
    objective: &Rule,
    condition: &AlertCondition,
    from: i64,
    to: i64,
) -> Vec<Interval> {
    let lookback = span_seconds(condition.lookback);
    let after = span_seconds(condition.alert_after);
    let mut out = Vec::new();
    let mut holding_since: Option<i64> = None;
    let mut open: Option<i64> = None;
    let mut t = align(from, ledger);
    while t <= to {
        let holds = ledger
            .sums(t - lookback, t)
            .error_rate()
            .map(|e| e / objective.allowed())
            .is_some_and(|burn| condition.op.holds(burn, condition.threshold));
        if holds {
            let since = *holding_since.get_or_insert(t);
            if open.is_none() && t - since >= after {
                open = Some(t);
            }
        } else {
            holding_since = None;
            if let Some(s) = open.take() {
                out.push(Interval {
                    alert: condition.name.clone(),
                    severity: condition.severity.clone(),
                    start: s,
                    end: Some(t),
                });
            }
        }
        t += ledger.step;
    }
    if let Some(s) = open {
        out.push(Interval {
            alert: condition.name.clone(),
            severity: condition.severity.clone(),
            start: s,
            end: None,
        });
    }
    out
}

/// The first slice boundary at or after `t`.
fn align(t: i64, ledger: &Ledger) -> i64 {
    let off = (t - ledger.origin).rem_euclid(ledger.step);
    if off == 0 { t } else { t + ledger.step - off }
}

fn span_seconds(s: Span) -> i64 {
    s.nominal_seconds()
}

/// `3600` → `1h`, `300` → `5m`, `86400` → `1d`, else seconds.
pub fn seconds_text(s: i64) -> String {
    if s % 86_400 == 0 {
        format!("{}d", s / 86_400)
    } else if s % 3_600 == 0 {
        format!("{}h", s / 3_600)
    } else if s % 60 == 0 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::Series;
    use crate::model::{BudgetingMethod, Op};

    const DAY: i64 = 86_400;

    #[test]
    fn thirty_days_give_the_workbook_windows() {
        let (rules, refused) = workbook_rules(30 * DAY, 60, 0.999);
        assert!(refused.is_empty());
        let got: Vec<(f64, i64, i64)> = rules.iter().map(|r| (r.factor, r.long, r.short)).collect();
        assert_eq!(
            got,
            [
                (14.4, 3_600, 300),
                (6.0, 6 * 3_600, 1_800),
                (3.0, DAY, 2 * 3_600),
                (1.0, 3 * DAY, 6 * 3_600)
            ]
        );
        assert_eq!(rules[0].name(), "14.4x over 1h/5m");
    }

    #[test]
    fn seven_days_scale_the_windows_and_keep_the_fractions() {
        let (rules, _) = workbook_rules(7 * DAY, 60, 0.999);
        // 0.02 × 7 d / 14.4 = 840 s = 14 min; short 70 s → 1 min (whole slices).
        assert_eq!((rules[0].long, rules[0].short), (840, 60));
        // 0.1 × 7 d / 1 = 16.8 h = 60,480 s; short 5,040 s = 84 min.
        assert_eq!((rules[3].long, rules[3].short), (60_480, 5_040));
    }

    #[test]
    fn short_windows_are_floored_at_one_slice() {
        // One day with 5-minute slices: 14.4× long = 120 s → one slice, short one slice.
        let (rules, _) = workbook_rules(DAY, 300, 0.99);
        assert_eq!((rules[0].long, rules[0].short), (300, 300));
    }

    #[test]
    fn rows_that_can_never_fire_are_refused() {
        // target 0.9: 14.4 × 0.1 = 1.44 ≥ 1 and 6 × 0.1 = 0.6 < 1.
        let (rules, refused) = workbook_rules(30 * DAY, 60, 0.9);
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].rule.factor, 14.4);
        assert!(
            refused[0].reason.contains("can never fire"),
            "{}",
            refused[0].reason
        );
        assert_eq!(rules.len(), 3);
    }

    /// Three days of 100 events a minute with a 30-minute total outage from 36:00: the
    /// 14.4× row fires 5 minutes into it (the short window is the last to cross) … and the
    /// bounds are computed here by hand.
    #[test]
    fn an_outage_fires_the_fast_row_at_the_minutes_worked_out_by_hand() {
        let origin = 1_700_000_000 / DAY * DAY;
        let mut s = Series::zeros(origin, 60, 3 * 1440);
        let outage = 36 * 60..36 * 60 + 30;
        for i in 0..s.len() {
            s.total[i] = 100.0;
            s.good[i] = if outage.contains(&i) { 0.0 } else { 100.0 };
        }
        let objective = Rule {
            method: BudgetingMethod::Occurrences,
            target: 0.999,
            time_slice_target: 0.0,
        };
        let ledger = Ledger::new(&s, &objective);
        let (rules, _) = workbook_rules(30 * DAY, 60, 0.999);
        let fast = &rules[..1];
        let got = history(
            &ledger,
            &objective,
            fast,
            LowTraffic::Off,
            30 * DAY,
            origin + DAY,
            origin + 3 * DAY,
        );
        // Threshold: 14.4 × 0.001 = 1.44 % errors. The 5-minute window holds the outage's
        // first minute at t = start + 1 min (100 % > 1.44 %); the 1-hour window needs
        // more than 0.864 bad minutes of 60, so 1 minute: fires at start + 1 min.
        // It stops when the short window is clean: 5 minutes after the outage ends.
        let start = origin + 36 * 3_600;
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].start, start + 60);
        assert_eq!(got[0].end, Some(start + 30 * 60 + 5 * 60));
        // With the budget-share guard over a 30-day period of which 3 days have data, the
        // long window's 30 bad minutes (3,000 events) exceed 2 % × 0.1 % × 432,000 = 8.6.
        let guarded = history(
            &ledger,
            &objective,
            fast,
            LowTraffic::BudgetShare,
            30 * DAY,
            origin + DAY,
            origin + 3 * DAY,
        );
        assert_eq!(guarded[0].start, start + 60);
    }

    #[test]
    fn an_alert_condition_waits_for_alert_after() {
        let origin = 1_700_000_000 / DAY * DAY;
        let mut s = Series::zeros(origin, 60, 600);
        for i in 0..s.len() {
            s.total[i] = 100.0;
            // 2 % errors from minute 100 to 299.
            s.good[i] = if (100..300).contains(&i) { 98.0 } else { 100.0 };
        }
        let objective = Rule {
            method: BudgetingMethod::Occurrences,
            target: 0.99,
            time_slice_target: 0.0,
        };
        let ledger = Ledger::new(&s, &objective);
        let condition = AlertCondition {
            name: "fast-burn".into(),
            severity: "page".into(),
            op: Op::Gte,
            threshold: 1.5,
            lookback: "10m".parse().unwrap(),
            alert_after: "5m".parse().unwrap(),
        };
        let got = condition_history(&ledger, &objective, &condition, origin, origin + 599 * 60);
        // Burn over 10 minutes = (bad minutes in the window / 10) × 2 %/1 %: at least 1.5
        // with 8 bad minutes of 10, first at t = minute 108 ([98, 108) holds 100..107); it
        // has held 5 minutes at 113. The last window with 8 bad minutes is [292, 302): it
        // ends at 303.
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].start, origin + 113 * 60);
        assert_eq!(got[0].end, Some(origin + 303 * 60));
    }
}
