//! The error budget of one objective over a series of slices (docs/slo.md, "Formulas").
//!
//! Every budgeting method is the same sum over slices of *units* and *bad units*:
//!
//! | method | units of a slice with data | bad units |
//! |---|---|---|
//! | Occurrences | its events (`total`) | its bad events (`total - good`) |
//! | Timeslices | 1 | 1 when its ratio `good / total` is below `timeSliceTarget`, else 0 |
//! | RatioTimeslices | 1 | `1 - good / total` |
//!
//! A slice with no events has no data: it is neither good nor bad, and lowers coverage.
//! Then, over any range: `SLI = 1 - bad / units`; the burn rate is
//! `(bad / units) / (1 - target)`; the budget is `(1 - target) × units` for Occurrences (the
//! events so far in the period) and `(1 - target) × slices in the whole period` for the two
//! slice methods; consumed = `bad / budget`, remaining = `1 - consumed` (unclamped).

use crate::model::BudgetingMethod;
use crate::window::Period;

/// Good and total counts per slice, from `origin` in steps of `step` seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Start of the first slice (seconds since the epoch).
    pub origin: i64,
    /// Slice length in seconds (60 for `sli_1m`).
    pub step: i64,
    pub good: Vec<f64>,
    pub total: Vec<f64>,
}

impl Series {
    /// An empty series of `len` slices.
    pub fn zeros(origin: i64, step: i64, len: usize) -> Self {
        Self {
            origin,
            step,
            good: vec![0.0; len],
            total: vec![0.0; len],
        }
    }

    pub fn len(&self) -> usize {
        self.total.len()
    }

    pub fn is_empty(&self) -> bool {
        self.total.is_empty()
    }

    /// Adds counts to the slice containing `at`; outside the series, ignored.
    pub fn add(&mut self, at: i64, good: f64, total: f64) {
        if at < self.origin {
            return;
        }
        let i = usize::try_from((at - self.origin) / self.step).unwrap_or(usize::MAX);
        if i < self.len() {
            self.good[i] += good;
            self.total[i] += total;
        }
    }

    /// The series in slices of `step` seconds (a multiple of this one's), aligned on the
    /// same origin: Timeslices with a `timeSliceWindow` longer than the data's slices.
    pub fn rebin(&self, step: i64) -> Self {
        let factor = usize::try_from((step / self.step).max(1)).unwrap_or(1);
        let len = self.len().div_ceil(factor);
        let mut out = Self::zeros(self.origin, self.step * factor as i64, len);
        for i in 0..self.len() {
            out.good[i / factor] += self.good[i];
            out.total[i / factor] += self.total[i];
        }
        out
    }
}

/// How one objective counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rule {
    pub method: BudgetingMethod,
    /// The objective's target, 0 < target < 1.
    pub target: f64,
    /// Timeslices: a slice is good when `good / total >= time_slice_target`.
    pub time_slice_target: f64,
}

impl Rule {
    /// (units, bad units) of one slice; (0, 0) without data.
    pub fn slice(&self, good: f64, total: f64) -> (f64, f64) {
        Self::slice_as(self.method, self.time_slice_target, good, total)
    }

    #[inline(always)]
    fn slice_as(
        method: BudgetingMethod,
        time_slice_target: f64,
        good: f64,
        total: f64,
    ) -> (f64, f64) {
        if total <= 0.0 {
            return (0.0, 0.0);
        }
        let good = good.clamp(0.0, total);
        match method {
            BudgetingMethod::Occurrences => (total, total - good),
            BudgetingMethod::Timeslices => {
                let ok = good / total >= time_slice_target;
                (1.0, if ok { 0.0 } else { 1.0 })
            }
            BudgetingMethod::RatioTimeslices => (1.0, 1.0 - good / total),
        }
    }

    /// The allowed error rate, `1 - target`.
    pub fn allowed(&self) -> f64 {
        1.0 - self.target
    }
}

/// Prefix sums of units and bad units over a series, for O(1) sums over any range.
#[derive(Debug, Clone)]
pub struct Ledger {
    pub origin: i64,
    pub step: i64,
    units: Vec<f64>,
    bad: Vec<f64>,
    with_data: Vec<u32>,
}

/// Sums over a range of slices.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Sums {
    pub units: f64,
    pub bad: f64,
    /// Slices with data.
    pub slices_with_data: u32,
    /// Slices in the range.
    pub slices: u32,
}

impl Sums {
    /// The error rate `bad / units`; `None` without data.
    pub fn error_rate(&self) -> Option<f64> {
        (self.units > 0.0).then(|| self.bad / self.units)
    }
}

impl Ledger {
    pub fn new(series: &Series, rule: &Rule) -> Self {
        // One loop per budgeting method, the slice rule inlined with its method fixed (a
        // month of minutes per objective, hundreds of objectives per report).
        let t = rule.time_slice_target;
        let (units, bad, with_data) = match rule.method {
            m @ BudgetingMethod::Occurrences => {
                prefix_sums(series, |g, total| Rule::slice_as(m, t, g, total))
            }
            m @ BudgetingMethod::Timeslices => {
                prefix_sums(series, |g, total| Rule::slice_as(m, t, g, total))
            }
            m @ BudgetingMethod::RatioTimeslices => {
                prefix_sums(series, |g, total| Rule::slice_as(m, t, g, total))
            }
        };
        Self {
            origin: series.origin,
            step: series.step,
            units,
            bad,
            with_data,
        }
    }

    /// Sums over the slices whose start lies in `[from, to)`.
    pub fn sums(&self, from: i64, to: i64) -> Sums {
        let n = self.units.len() - 1;
        let idx = |t: i64| {
            let i = (t - self.origin).div_euclid(self.step)
                + i64::from((t - self.origin).rem_euclid(self.step) != 0);
            usize::try_from(i.max(0)).unwrap_or(0).min(n)
        };
        let (a, b) = (idx(from), idx(to).max(idx(from)));
        Sums {
            units: self.units[b] - self.units[a],
            bad: self.bad[b] - self.bad[a],
            slices_with_data: self.with_data[b] - self.with_data[a],
            slices: u32::try_from((to - from).max(0) / self.step).unwrap_or(u32::MAX),
        }
    }
}

/// Running sums from 0 of each slice's units, bad units and whether it has data: `n + 1`
/// entries for `n` slices.
fn prefix_sums(
    series: &Series,
    slice: impl Fn(f64, f64) -> (f64, f64),
) -> (Vec<f64>, Vec<f64>, Vec<u32>) {
    let n = series.len();
    let (mut units, mut bad, mut with_data) = (vec![0.0; n + 1], vec![0.0; n + 1], vec![0; n + 1]);
    let (mut u, mut b, mut d) = (0.0, 0.0, 0_u32);
    let slices = series.good.iter().zip(&series.total);
    let sums = units[1..]
        .iter_mut()
        .zip(&mut bad[1..])
        .zip(&mut with_data[1..]);
    for ((&good, &total), ((units, bad), with_data)) in slices.zip(sums) {
        let (su, sb) = slice(good, total);
        u += su;
        b += sb;
        d += u32::from(total > 0.0);
        (*units, *bad, *with_data) = (u, b, d);
    }
    (units, bad, with_data)
}

/// Budget left below which it counts as spent: `1 - target` is not exact in binary (1 −
/// 0.99 = 0.010000000000000009), so a budget spent to the event would otherwise show a
/// remainder of 1e-16.
const EXACTLY_SPENT: f64 = 1e-9;

/// Where an objective stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Budget left above the warning line.
    Ok,
    /// Less than the warning share of the budget left.
    Warning,
    /// No budget left (remaining ≤ 0).
    Exhausted,
    /// No slice with data in the period: never "met".
    NoData,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warning => "warning",
            Self::Exhausted => "exhausted",
            Self::NoData => "no_data",
        }
    }
}

/// One objective at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Standing {
    /// The period judged (rolling: `[at - span, at)`; calendar: the whole period).
    pub period: Period,
    /// `1 - bad / units` over the period up to the instant; `None` without data.
    pub sli: Option<f64>,
    /// The budget in units (events for Occurrences, slices otherwise).
    pub budget_total: f64,
    /// Bad units so far.
    pub bad: f64,
    /// Units so far (events or slices with data).
    pub units: f64,
    /// `bad / budget_total` (a share of the budget; may exceed 1).
    pub consumed: f64,
    /// `1 - consumed`, unclamped.
    pub remaining: f64,
    /// Slices with data / slices elapsed in the period.
    pub coverage: f64,
    /// Burn rate over `burn_lookback` before the instant.
    pub burn_rate: Option<f64>,
    /// Seconds until the budget is gone at that burn rate (0 when already gone; `None` at
    /// a burn rate of 0 or without data).
    pub time_to_exhaustion: Option<f64>,
    pub status: Status,
}

/// Evaluates one objective at instant `at` over `period` (from `TimeWindow::period_at`),
/// with `ledger` covering the period and the lookback. `slice_seconds` is the budgeting
/// slice (the `timeSliceWindow`, or the data's step for Occurrences); `warning_below` the
/// share of budget left under which the status is `warning`.
pub fn standing(
    ledger: &Ledger,
    rule: &Rule,
    period: Period,
    at: i64,
    burn_lookback: i64,
    warning_below: f64,
) -> Standing {
    let until = at.min(period.end);
    let s = ledger.sums(period.start, until);
    let elapsed_slices = ((until - period.start).max(0) / ledger.step).max(0) as f64;
    let period_slices = ((period.end - period.start) / ledger.step).max(1) as f64;
    let budget_total = match rule.method {
        BudgetingMethod::Occurrences => rule.allowed() * s.units,
        BudgetingMethod::Timeslices | BudgetingMethod::RatioTimeslices => {
            rule.allowed() * period_slices
        }
    };
    let consumed = if budget_total > 0.0 {
        s.bad / budget_total
    } else if s.bad > 0.0 {
        f64::INFINITY
    } else {
        0.0
    };
    let remaining = 1.0 - consumed;
    let burn_rate = burn(ledger, rule, at - burn_lookback, at);
    // A burn rate of 1 spends the whole budget in one period.
    let time_to_exhaustion = match burn_rate {
        _ if remaining <= EXACTLY_SPENT => Some(0.0),
        Some(b) if b > 0.0 => Some(remaining * (period.end - period.start) as f64 / b),
        _ => None,
    };
    let status = if s.slices_with_data == 0 {
        Status::NoData
    } else if remaining <= EXACTLY_SPENT {
        Status::Exhausted
    } else if remaining < warning_below {
        Status::Warning
    } else {
        Status::Ok
    };
    Standing {
        period,
        sli: s.error_rate().map(|e| 1.0 - e),
        budget_total,
        bad: s.bad,
        units: s.units,
        consumed,
        remaining,
        coverage: if elapsed_slices > 0.0 {
            f64::from(s.slices_with_data) / elapsed_slices
        } else {
            0.0
        },
        burn_rate,
        time_to_exhaustion,
        status,
    }
}

/// The burn rate over `[from, to)`: the error rate there over the allowed one; `None`
/// without data.
pub fn burn(ledger: &Ledger, rule: &Rule, from: i64, to: i64) -> Option<f64> {
    ledger
        .sums(from, to)
        .error_rate()
        .map(|e| e / rule.allowed())
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000 / 86_400 * 86_400;

    fn rule(method: BudgetingMethod) -> Rule {
        Rule {
            method,
            target: 0.99,
            time_slice_target: 0.95,
        }
    }

    /// A day of minutes with 100 events each; `bad(i)` bad events in minute i.
    fn day(bad: impl Fn(usize) -> f64) -> Series {
        let mut s = Series::zeros(T0, 60, 1440);
        for i in 0..1440 {
            s.good[i] = 100.0 - bad(i);
            s.total[i] = 100.0;
        }
        s
    }

    #[test]
    fn occurrences_count_events() {
        // 1 bad event per minute: error rate 1 %, exactly the allowed rate.
        let s = day(|_| 1.0);
        let r = rule(BudgetingMethod::Occurrences);
        let l = Ledger::new(&s, &r);
        let period = Period {
            start: T0,
            end: T0 + 86_400,
        };
        let st = standing(&l, &r, period, T0 + 86_400, 3_600, 0.25);
        assert_eq!(st.units, 144_000.0);
        assert_eq!(st.bad, 1_440.0);
        assert!((st.budget_total - 1_440.0).abs() < 1e-6);
        assert!((st.consumed - 1.0).abs() < 1e-9);
        assert!((st.burn_rate.unwrap() - 1.0).abs() < 1e-9);
        assert_eq!(st.status, Status::Exhausted);
        assert!((st.sli.unwrap() - 0.99).abs() < 1e-12);
        assert_eq!(st.coverage, 1.0);
    }

    #[test]
    fn timeslices_count_bad_slices_against_the_whole_period() {
        // 10 minutes at 50 % errors, the rest perfect: 10 bad slices of 1440.
        let s = day(|i| if (600..610).contains(&i) { 50.0 } else { 0.0 });
        let r = rule(BudgetingMethod::Timeslices);
        let l = Ledger::new(&s, &r);
        let period = Period {
            start: T0,
            end: T0 + 86_400,
        };
        // Half-way through the day: the budget is still 1 % of the whole day's slices.
        let st = standing(&l, &r, period, T0 + 43_200, 3_600, 0.25);
        assert_eq!(st.bad, 10.0);
        assert!((st.budget_total - 14.4).abs() < 1e-9);
        assert!((st.remaining - (1.0 - 10.0 / 14.4)).abs() < 1e-12);
        assert_eq!(st.status, Status::Ok);
        assert!((st.sli.unwrap() - (1.0 - 10.0 / 720.0)).abs() < 1e-12);
        // The last hour (11:00–12:00) is clean; burn 0, no exhaustion time.
        assert_eq!(st.burn_rate, Some(0.0));
        assert_eq!(st.time_to_exhaustion, None);
    }

    #[test]
    fn ratio_timeslices_average_slice_ratios() {
        // Every slice at 98 %: mean ratio 0.98, twice the allowed shortfall.
        let s = day(|_| 2.0);
        let r = rule(BudgetingMethod::RatioTimeslices);
        let l = Ledger::new(&s, &r);
        let period = Period {
            start: T0,
            end: T0 + 86_400,
        };
        let st = standing(&l, &r, period, T0 + 86_400, 3_600, 0.25);
        assert!((st.sli.unwrap() - 0.98).abs() < 1e-12);
        assert!((st.consumed - 2.0).abs() < 1e-9);
        assert!(
            (st.remaining + 1.0).abs() < 1e-9,
            "unclamped: {}",
            st.remaining
        );
    }

    #[test]
    fn no_data_is_never_met() {
        let s = Series::zeros(T0, 60, 1440);
        let r = rule(BudgetingMethod::Occurrences);
        let l = Ledger::new(&s, &r);
        let st = standing(
            &l,
            &r,
            Period {
                start: T0,
                end: T0 + 86_400,
            },
            T0 + 86_400,
            3_600,
            0.25,
        );
        assert_eq!(st.status, Status::NoData);
        assert_eq!(st.sli, None);
        assert_eq!(st.coverage, 0.0);
    }

    #[test]
    fn time_to_exhaustion_at_the_current_burn() {
        // First 12 h clean, then 2 % errors (burn 2): half a day of budget-equivalent
        // consumed at burn 2 per period... at 18:00, 6 h at burn 2 over a 1-day period
        // consumed 2 × 6/24 = 0.5 of the budget measured in events so far (Occurrences: the
        // budget grows with traffic), so check against the formula directly.
        let s = day(|i| if i >= 720 { 2.0 } else { 0.0 });
        let r = rule(BudgetingMethod::Occurrences);
        let l = Ledger::new(&s, &r);
        let period = Period {
            start: T0,
            end: T0 + 86_400,
        };
        let at = T0 + 18 * 3_600;
        let st = standing(&l, &r, period, at, 3_600, 0.25);
        // 360 minutes × 2 bad = 720 bad; units 1080 × 100 = 108,000; budget 1,080.
        assert_eq!(st.bad, 720.0);
        assert!((st.remaining - (1.0 - 720.0 / 1_080.0)).abs() < 1e-9);
        let b = st.burn_rate.unwrap();
        assert!((b - 2.0).abs() < 1e-9);
        assert!((st.time_to_exhaustion.unwrap() - st.remaining * 86_400.0 / 2.0).abs() < 1e-6);
    }

    #[test]
    fn rebinning_sums_slices() {
        let s = day(|i| if i % 5 == 0 { 10.0 } else { 0.0 });
        let five = s.rebin(300);
        assert_eq!(five.len(), 288);
        assert_eq!(five.total[0], 500.0);
        assert_eq!(five.good[0], 490.0);
    }
}
