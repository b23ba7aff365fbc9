//! Canary and version verdicts (docs/release.md): a candidate version against a baseline
//! over the same minutes, from counts and latency sketches.
//!
//! - **Errors:** a one-sided test of two proportions (pooled standard error). H₀: the
//!   candidate's error ratio is at most the baseline's plus `error_margin`; the candidate
//!   fails when H₀ is rejected at `significance`.
//! - **Latency:** for each quantile, the candidate's and baseline's values from merged
//!   DDSketches, each within `sketch_accuracy` (relative) of the true quantile. The candidate
//!   fails only when even the most favourable reading of both sketches leaves it slower
//!   than the baseline by more than `latency_tolerance`: `c / (1 + α) > b / (1 − α) × (1 + tol)`.
//! - **Sample floor:** with fewer than `min_requests` requests on either side, or fewer than
//!   `min_tail` requests above a quantile, that check is inconclusive — never pass.
//!
//! The verdict is `fail` if any check fails, else `inconclusive` if any is, else `pass`.

use serde::{Deserialize, Serialize};

/// A verdict or one check's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail,
    Inconclusive,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::Inconclusive => "inconclusive",
        }
    }
}

/// What one version served over the compared minutes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    pub total: u64,
    pub errors: u64,
    /// (quantile, value in nanoseconds) from the version's merged sketch.
    pub quantiles: Vec<(f64, f64)>,
}

impl Sample {
    /// Errors over requests; 0 without requests.
    pub fn error_ratio(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.errors as f64 / self.total as f64
        }
    }

    fn quantile(&self, q: f64) -> Option<f64> {
        self.quantiles
            .iter()
            .find(|(x, _)| (x - q).abs() < 1e-12)
            .map(|(_, v)| *v)
    }
}

/// How a verdict is reached (defaults in docs/release.md; `[verdict]` in the config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Criteria {
    /// Requests each version needs before any check may pass.
    pub min_requests: u64,
    /// Requests above a quantile (n × (1 − q)) needed to judge it.
    pub min_tail: u64,
    /// One-sided significance level of the error test.
    pub significance: f64,
    /// Absolute error-ratio increase tolerated (0: any significant increase fails).
    pub error_margin: f64,
    /// Relative latency increase tolerated at each quantile.
    pub latency_tolerance: f64,
    /// The sketches' relative accuracy (nines' DDSketch: 1 %).
    pub sketch_accuracy: f64,
    /// The latency quantiles compared.
    pub quantiles: Vec<f64>,
}

impl Default for Criteria {
    fn default() -> Self {
        Self {
            min_requests: 1_000,
            min_tail: 10,
            significance: 0.05,
            error_margin: 0.0,
            latency_tolerance: 0.10,
            sketch_accuracy: 0.01,
            quantiles: vec![0.95, 0.99],
        }
    }
}

impl Criteria {
    /// Refusals of criteria as written (`field: reason`).
    pub fn check(&self) -> Result<(), String> {
        let share = |name: &str, v: f64| {
            if (0.0..1.0).contains(&v) {
                Ok(())
            } else {
                Err(format!("{name}: {v} is not a share in [0, 1)"))
            }
        };
        share("significance", self.significance)?;
        share("error_margin", self.error_margin)?;
        share("sketch_accuracy", self.sketch_accuracy)?;
        if !(self.latency_tolerance.is_finite() && self.latency_tolerance >= 0.0) {
            return Err(format!(
                "latency_tolerance: {} is not a non-negative share",
                self.latency_tolerance
            ));
        }
        if self.significance == 0.0 {
            return Err("significance: 0 would never fail a candidate".into());
        }
        if let Some(q) = self.quantiles.iter().find(|q| !(**q > 0.0 && **q < 1.0)) {
            return Err(format!("quantiles: {q} is not between 0 and 1"));
        }
        if self.min_requests == 0 {
            return Err("min_requests: 0 would let an empty sample pass".into());
        }
        Ok(())
    }
}

/// One check of a verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// `errors`, or `latency_p95`, `latency_p99`, …
    pub name: String,
    pub outcome: Outcome,
    /// The candidate's figure (error ratio, or quantile in ns).
    pub candidate: f64,
    /// The baseline's figure.
    pub baseline: f64,
    /// Errors: the z statistic; latency: candidate / baseline − 1.
    pub statistic: Option<f64>,
    /// Errors: the one-sided p-value.
    pub p_value: Option<f64>,
    /// One line saying why.
    pub reason: String,
}

/// A candidate's verdict against its baseline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub outcome: Outcome,
    /// The first failing check's reason, else the first inconclusive one's, else a summary.
    pub reason: String,
    pub checks: Vec<Check>,
}

/// The standard normal's upper tail, P(Z > z).
pub fn upper_tail(z: f64) -> f64 {
    0.5 * libm::erfc(z / std::f64::consts::SQRT_2)
}

/// The error test: z and p-value of H₀ `p_c ≤ p_b + margin`, pooled standard error.
/// `None` when the pooled ratio is 0 or 1 (no variance: nothing to reject).
pub fn error_test(c: &Sample, b: &Sample, margin: f64) -> Option<(f64, f64)> {
    let n = (c.total + b.total) as f64;
    let pooled = (c.errors + b.errors) as f64 / n;
    let se = (pooled * (1.0 - pooled) * (1.0 / c.total as f64 + 1.0 / b.total as f64)).sqrt();
    if se == 0.0 || !se.is_finite() {
        return None;
    }
    let z = (c.error_ratio() - b.error_ratio() - margin) / se;
    Some((z, upper_tail(z)))
}

fn pct(x: f64) -> String {
    format!("{:.3} %", x * 100.0)
}

fn ms(ns: f64) -> String {
    format!("{:.1} ms", ns / 1e6)
}

/// Judges `candidate` against `baseline`.
pub fn judge(candidate: &Sample, baseline: &Sample, criteria: &Criteria) -> Verdict {
    let mut checks = Vec::new();
    let floor = [("candidate", candidate), ("baseline", baseline)]
        .into_iter()
        .find(|(_, s)| s.total < criteria.min_requests)
        .map(|(who, s)| {
            format!(
                "the {who} served {} requests in the compared minutes, below the floor of {}",
                s.total, criteria.min_requests
            )
        });

    let (pc, pb) = (candidate.error_ratio(), baseline.error_ratio());
    let test = (floor.is_none())
        .then(|| error_test(candidate, baseline, criteria.error_margin))
        .flatten();
    let (outcome, reason) = match (&floor, test) {
        (Some(why), _) => (Outcome::Inconclusive, why.clone()),
        (None, Some((z, p))) if p < criteria.significance => (
            Outcome::Fail,
            format!(
                "error ratio {} vs baseline {} (z = {z:.2}, one-sided p = {p:.4} < {})",
                pct(pc),
                pct(pb),
                criteria.significance
            ),
        ),
        (None, _) => (
            Outcome::Pass,
            format!(
                "error ratio {} vs baseline {}: no significant increase",
                pct(pc),
                pct(pb)
            ),
        ),
    };
    checks.push(Check {
        name: "errors".into(),
        outcome,
        candidate: pc,
        baseline: pb,
        statistic: test.map(|t| t.0),
        p_value: test.map(|t| t.1),
        reason,
    });

    let alpha = criteria.sketch_accuracy;
    for &q in &criteria.quantiles {
        let name = format!("latency_p{}", (q * 100.0).round());
        let (c, b) = (candidate.quantile(q), baseline.quantile(q));
        let (cv, bv) = (c.unwrap_or(f64::NAN), b.unwrap_or(f64::NAN));
        let tail = |s: &Sample| (s.total as f64 * (1.0 - q)).floor() as u64;
        let thin = [("candidate", candidate), ("baseline", baseline)]
            .into_iter()
            .find(|(_, s)| tail(s) < criteria.min_tail);
        let (outcome, statistic, reason) = if let Some(why) = &floor {
            (Outcome::Inconclusive, None, why.clone())
        } else if let Some((who, s)) = thin {
            (
                Outcome::Inconclusive,
                None,
                format!(
                    "the {who} has {} requests above p{}, below the floor of {}",
                    tail(s),
                    (q * 100.0).round(),
                    criteria.min_tail
                ),
            )
        } else if !(cv.is_finite() && bv.is_finite() && bv > 0.0) {
            (
                Outcome::Inconclusive,
                None,
                "no latency sketch for one of the versions".to_owned(),
            )
        } else {
            let rel = cv / bv - 1.0;
            let slower =
                cv / (1.0 + alpha) > bv / (1.0 - alpha) * (1.0 + criteria.latency_tolerance);
            let said = format!(
                "p{} {} vs baseline {} ({:+.1} %; tolerance {:.0} % beyond the sketches' {:.0} % error)",
                (q * 100.0).round(),
                ms(cv),
                ms(bv),
                rel * 100.0,
                criteria.latency_tolerance * 100.0,
                alpha * 100.0
            );
            let outcome = if slower { Outcome::Fail } else { Outcome::Pass };
            (outcome, Some(rel), said)
        };
        checks.push(Check {
            name,
            outcome,
            candidate: cv,
            baseline: bv,
            statistic,
            p_value: None,
            reason,
        });
    }

    let first = |o: Outcome| checks.iter().find(|c| c.outcome == o);
    let (outcome, reason) = if let Some(c) = first(Outcome::Fail) {
        (Outcome::Fail, c.reason.clone())
    } else if let Some(c) = first(Outcome::Inconclusive) {
        (Outcome::Inconclusive, c.reason.clone())
    } else {
        (
            Outcome::Pass,
            format!(
                "no significant error increase and no quantile slower beyond {:.0} % ({} vs {} requests)",
                criteria.latency_tolerance * 100.0,
                candidate.total,
                baseline.total
            ),
        )
    };
    Verdict {
        outcome,
        reason,
        checks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(total: u64, errors: u64, p95_ms: f64, p99_ms: f64) -> Sample {
        Sample {
            total,
            errors,
            quantiles: vec![(0.95, p95_ms * 1e6), (0.99, p99_ms * 1e6)],
        }
    }

    #[test]
    fn the_normal_tail_matches_the_table() {
        // Standard normal table: P(Z > 1.6449) = 0.05, P(Z > 2.3263) = 0.01, P(Z > 0) = 0.5.
        assert!((upper_tail(1.644_853_6) - 0.05).abs() < 1e-7);
        assert!((upper_tail(2.326_347_9) - 0.01).abs() < 1e-7);
        assert!((upper_tail(0.0) - 0.5).abs() < 1e-15);
    }

    #[test]
    fn the_error_test_matches_a_hand_worked_z() {
        // 60/10,000 against 30/10,000: pooled 90/20,000 = 0.0045,
        // se = sqrt(0.0045 × 0.9955 × (2/10,000)) = 0.00094655, z = 0.003 / se = 3.1694
        let (c, b) = (sample(10_000, 60, 1.0, 1.0), sample(10_000, 30, 1.0, 1.0));
        let (z, p) = error_test(&c, &b, 0.0).unwrap();
        let se = (0.0045_f64 * 0.9955 * 0.0002).sqrt();
        assert!((z - 0.003 / se).abs() < 1e-9, "{z}");
        assert!((z - 3.1694).abs() < 1e-3, "{z}");
        assert!(p < 0.001 && p > 0.0007, "{p}");
        let v = judge(&c, &b, &Criteria::default());
        assert_eq!(v.outcome, Outcome::Fail);
        assert!(
            v.reason
                .starts_with("error ratio 0.600 % vs baseline 0.300 %"),
            "{}",
            v.reason
        );
        // The same ratios on a tenth of the traffic are not significant: z = 1.0026, p ≈ 0.158.
        let v = judge(
            &sample(1_000, 6, 1.0, 1.0),
            &sample(1_000, 3, 1.0, 1.0),
            &Criteria::default(),
        );
        assert_eq!(v.outcome, Outcome::Pass, "{v:?}");
        // No error on either side: nothing to reject.
        assert_eq!(
            error_test(&sample(5_000, 0, 1.0, 1.0), &b, 0.0).map(|t| t.0 < 0.0),
            Some(true)
        );
        assert_eq!(
            error_test(
                &sample(5_000, 0, 1.0, 1.0),
                &sample(5_000, 0, 1.0, 1.0),
                0.0
            ),
            None
        );
    }

    #[test]
    fn latency_fails_only_beyond_the_tolerance_and_the_sketch_error() {
        let criteria = Criteria::default();
        // Fail threshold: c > b × (1.01 / 0.99) × 1.10 = b × 1.12222…
        let b = sample(10_000, 10, 100.0, 200.0);
        let v = judge(&sample(10_000, 10, 112.0, 224.0), &b, &criteria);
        assert_eq!(v.outcome, Outcome::Pass, "{v:?}");
        let v = judge(&sample(10_000, 10, 100.0, 224.6), &b, &criteria);
        assert_eq!(v.outcome, Outcome::Fail, "{v:?}");
        assert_eq!(v.checks[2].name, "latency_p99");
        assert!((v.checks[2].statistic.unwrap() - 0.123).abs() < 1e-9);
        assert!(
            v.reason
                .starts_with("p99 224.6 ms vs baseline 200.0 ms (+12.3 %"),
            "{}",
            v.reason
        );
        // Faster is never a failure.
        let v = judge(&sample(10_000, 10, 50.0, 60.0), &b, &criteria);
        assert_eq!(v.outcome, Outcome::Pass);
    }

    #[test]
    fn below_the_sample_floor_it_is_inconclusive_never_pass() {
        let criteria = Criteria::default();
        let b = sample(50_000, 50, 100.0, 200.0);
        let v = judge(&sample(999, 0, 100.0, 200.0), &b, &criteria);
        assert_eq!(v.outcome, Outcome::Inconclusive);
        assert_eq!(
            v.reason,
            "the candidate served 999 requests in the compared minutes, below the floor of 1000"
        );
        assert!(v.checks.iter().all(|c| c.outcome == Outcome::Inconclusive));
        // Enough requests but too thin a tail for p99 (1,050 × 0.01 = 10.5 → 10 is enough;
        // a criteria asking 20 is not met): p95 and errors judge, p99 does not.
        let thin = Criteria {
            min_tail: 20,
            ..Criteria::default()
        };
        let v = judge(&sample(1_050, 1, 100.0, 200.0), &b, &thin);
        assert_eq!(v.outcome, Outcome::Inconclusive);
        assert_eq!(
            v.checks.iter().map(|c| c.outcome).collect::<Vec<_>>(),
            [Outcome::Pass, Outcome::Pass, Outcome::Inconclusive]
        );
        assert_eq!(
            v.reason,
            "the candidate has 10 requests above p99, below the floor of 20"
        );
    }
}
