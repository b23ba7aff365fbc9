//! Performance tiers of the DORA metrics: thresholds that live in a versioned file
//! (`config/dora-tiers.toml`, or the operator's own), never in code, each set naming the
//! report it comes from.
//!
//! Each metric is rated on its own: its tier is the first (best) tier whose bound the
//! value meets, else the last tier. The published clusters are rated on all four metrics
//! together and overlap (the 2023 low and medium clusters share their throughput), so a
//! per-metric rating is the one that can be read off without guessing.

use serde::Deserialize;

use crate::Metrics;

/// A set of tiers, best first.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tiers {
    /// The report the thresholds come from, e.g. "Accelerate State of DevOps Report 2023".
    pub source: String,
    #[serde(rename = "tier")]
    pub tiers: Vec<Tier>,
}

/// One tier's bounds; a missing bound is met by every value.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    pub name: String,
    /// Deployment frequency at least this many per day.
    pub deploys_per_day_at_least: Option<f64>,
    /// Median change lead time at most this many seconds.
    pub lead_time_at_most_s: Option<f64>,
    /// Change fail rate at most this share.
    pub change_fail_rate_at_most: Option<f64>,
    /// Median failed deployment recovery time at most this many seconds.
    pub recovery_time_at_most_s: Option<f64>,
}

/// The tier of each metric (`None`: the metric has no value in the range).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rating {
    pub deployment_frequency: Option<String>,
    pub lead_time: Option<String>,
    pub change_fail_rate: Option<String>,
    pub recovery_time: Option<String>,
}

impl Tiers {
    /// Rates each metric of `m`.
    pub fn rate(&self, m: &Metrics) -> Rating {
        let pick = |value: Option<f64>, meets: &dyn Fn(&Tier, f64) -> bool| {
            let v = value?;
            let tier = self
                .tiers
                .iter()
                .find(|t| meets(t, v))
                .or(self.tiers.last())?;
            Some(tier.name.clone())
        };
        let frequency = (m.deployments > 0).then_some(m.deploys_per_day);
        Rating {
            deployment_frequency: pick(frequency, &|t, v| {
                t.deploys_per_day_at_least.is_none_or(|b| v >= b)
            }),
            lead_time: pick(m.lead_time.median, &|t, v| {
                t.lead_time_at_most_s.is_none_or(|b| v <= b)
            }),
            change_fail_rate: pick(m.change_fail_rate, &|t, v| {
                t.change_fail_rate_at_most.is_none_or(|b| v <= b)
            }),
            recovery_time: pick(m.recovery_time.median, &|t, v| {
                t.recovery_time_at_most_s.is_none_or(|b| v <= b)
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Summary;

    fn tier(name: &str, bounds: [Option<f64>; 4]) -> Tier {
        Tier {
            name: name.into(),
            deploys_per_day_at_least: bounds[0],
            lead_time_at_most_s: bounds[1],
            change_fail_rate_at_most: bounds[2],
            recovery_time_at_most_s: bounds[3],
        }
    }

    fn metrics(deploys: usize, per_day: f64, lead: &[f64], cfr: f64, recovery: &[f64]) -> Metrics {
        Metrics {
            deployments: deploys,
            deploys_per_day: per_day,
            lead_time: Summary::of(lead.to_vec()),
            change_fail_rate: (deploys > 0).then_some(cfr),
            failed: 0,
            recovery_time: Summary::of(recovery.to_vec()),
            unrecovered: 0,
            rework_rate: None,
            rework: 0,
        }
    }

    fn tiers() -> Tiers {
        Tiers {
            source: "test".into(),
            tiers: vec![
                tier(
                    "elite",
                    [Some(1.0), Some(86_400.0), Some(0.05), Some(3_600.0)],
                ),
                tier("high", [Some(1.0 / 7.0), Some(604_800.0), Some(0.10), None]),
                tier("low", [None; 4]),
            ],
        }
    }

    #[test]
    fn each_metric_takes_the_first_tier_whose_bound_it_meets() {
        // 2 a day: elite; lead median 2 days: high; 5 % exactly: elite (bounds are
        // inclusive); recovery 2 h: not elite, and high has no bound: high.
        let r = tiers().rate(&metrics(
            10,
            2.0,
            &[3_600.0, 172_800.0, 200_000.0],
            0.05,
            &[7_200.0],
        ));
        assert_eq!(r.deployment_frequency.as_deref(), Some("elite"));
        assert_eq!(r.lead_time.as_deref(), Some("high"));
        assert_eq!(r.change_fail_rate.as_deref(), Some("elite"));
        assert_eq!(r.recovery_time.as_deref(), Some("high"));
    }

    #[test]
    fn worse_than_every_bound_is_the_last_tier_and_no_value_is_no_tier() {
        // Once in 10 days, a 30 % fail rate: the last tier. No commits, no recoveries: none.
        let r = tiers().rate(&metrics(3, 0.1, &[], 0.3, &[]));
        assert_eq!(r.deployment_frequency.as_deref(), Some("low"));
        assert_eq!(r.change_fail_rate.as_deref(), Some("low"));
        assert_eq!(r.lead_time, None);
        assert_eq!(r.recovery_time, None);
        // No deployments at all: no frequency tier either.
        assert_eq!(
            tiers()
                .rate(&metrics(0, 0.0, &[], 0.0, &[]))
                .deployment_frequency,
            None
        );
    }
}
