//! Error budget burned per deployment (docs/slo.md, "Budget burned per deployment"): what
//! one objective spent in a deploy's attribution window, against the period's budget, and
//! how much of it is above the service's usual error ratio.

use crate::alerts::Interval;
use crate::eval::{Options, Prepared};

/// How far back the baseline error ratio looks: the 7 days before the deploy.
pub const BASELINE: i64 = 7 * 86_400;

/// One objective over one deploy's window `[start, end)`.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowBurn {
    pub start: i64,
    pub end: i64,
    /// Bad units and units in the window (events, or slices for the slice methods).
    pub bad: f64,
    pub units: f64,
    /// The period's budget at the window's end (units).
    pub budget: f64,
    /// `bad / budget`: the share of the period's budget the window spent.
    pub burned: f64,
    /// The error ratio over the [`BASELINE`] before the deploy (0 without data).
    pub baseline_ratio: f64,
    /// `max(0, bad − baseline_ratio × units) / budget`: what the window spent above the
    /// usual.
    pub excess: f64,
    /// Alerts that fired at any time in the window (multiwindow rows and the SLO's own
    /// conditions).
    pub alerts: Vec<Interval>,
}

/// What an objective spent in `[start, end)`, from its ledger over one-minute slices from
/// the data range of `start − BASELINE` up to `end` (one [`Prepared`] serves every deploy).
pub fn window_burn(prepared: &Prepared<'_>, (start, end): (i64, i64)) -> WindowBurn {
    let ledger = &prepared.ledger;
    let window = ledger.sums(start, end);
    let base = ledger.sums(start - BASELINE, start);
    let baseline_ratio = base.error_rate().unwrap_or(0.0);
    let at_end = prepared.at(end, &Options::default());
    let budget = at_end.standing.budget_total;
    let share = |bad: f64| {
        if budget > 0.0 {
            bad / budget
        } else if bad > 0.0 {
            f64::INFINITY
        } else {
            0.0
        }
    };
    let alerts = prepared
        .alert_history(start, end, &Options::default())
        .into_iter()
        .filter(|i| i.start < end && i.end.is_none_or(|e| e > start))
        .collect();
    WindowBurn {
        start,
        end,
        bad: window.bad,
        units: window.units,
        budget,
        burned: share(window.bad),
        baseline_ratio,
        excess: share((window.bad - baseline_ratio * window.units).max(0.0)),
        alerts,
    }
}
