//! The release gate (docs/release.md): a team's error-budget policy for a service and
//! environment, applied to the standing of its SLOs at one instant. The SRE Workbook's
//! policy (appendix B) by default: releases stop while an SLO's budget is exhausted or a
//! page-severity burn alert fires, except fixes labelled `hotfix` or `security`.

use serde::{Deserialize, Serialize};

/// One error-budget policy. `service` and `environment` match exactly, or `*` anything; the
/// most specific policy that matches applies (exact service before `*`, then exact
/// environment before `*`, then the first written).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default = "any")]
    pub service: String,
    #[serde(default = "any")]
    pub environment: String,
    /// Deny while any objective of the service has less than this share of its budget left
    /// (0: only once it is exhausted; 0.25: keep a quarter in reserve).
    #[serde(default)]
    pub min_budget_remaining: f64,
    /// Deny while a burn-rate alert of one of these severities fires.
    #[serde(default = "page")]
    pub deny_on_severities: Vec<String>,
    /// A deploy carrying one of these labels is allowed whatever the rest says.
    #[serde(default = "fixes")]
    pub allow_labels: Vec<String>,
    /// Deny while the service's last deploy to the environment is younger than
    /// `previous_deploy_window` and its window so far has burned more than this share of an
    /// objective's budget above the 7-day baseline (what `nines deploys` flags at 0.05).
    /// Unset: the rule is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_previous_deploy_excess: Option<f64>,
    /// How long a deploy stays answerable for the burn after it (OpenSLO shorthand:
    /// `1d`, `6h`); `nines deploys` uses a day too.
    #[serde(default = "one_day")]
    pub previous_deploy_window: String,
}

fn one_day() -> String {
    "1d".into()
}

fn any() -> String {
    "*".into()
}

fn page() -> Vec<String> {
    vec!["page".into()]
}

fn fixes() -> Vec<String> {
    vec!["hotfix".into(), "security".into()]
}

impl Default for Policy {
    /// The Workbook's policy, for any service and environment.
    fn default() -> Self {
        Self {
            service: any(),
            environment: any(),
            min_budget_remaining: 0.0,
            deny_on_severities: page(),
            allow_labels: fixes(),
            max_previous_deploy_excess: None,
            previous_deploy_window: one_day(),
        }
    }
}

impl Policy {
    /// Refusals of a policy as written (`policy N: field: reason`).
    pub fn check(&self, n: usize) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.min_budget_remaining) {
            return Err(format!(
                "gate.policy {n}: min_budget_remaining: {} is not a share between 0 and 1",
                self.min_budget_remaining
            ));
        }
        if self.service.is_empty() || self.environment.is_empty() {
            return Err(format!(
                "gate.policy {n}: service and environment are names or `*`, not empty"
            ));
        }
        if let Some(x) = self.max_previous_deploy_excess
            && !(x >= 0.0 && x.is_finite())
        {
            return Err(format!(
                "gate.policy {n}: max_previous_deploy_excess: {x} is not a share of the budget (>= 0)"
            ));
        }
        self.previous_window_seconds()
            .map_err(|e| format!("gate.policy {n}: previous_deploy_window: {e}"))?;
        Ok(())
    }

    /// `previous_deploy_window` in seconds (a fixed length: minutes to weeks).
    pub fn previous_window_seconds(&self) -> Result<i64, String> {
        let span: crate::duration::Span = self.previous_deploy_window.parse()?;
        span.fixed_seconds()
            .ok_or_else(|| format!("{span} is not a fixed length (use m, h, d or w)"))
    }

    fn specificity(&self, service: &str, environment: &str) -> Option<u8> {
        let s = match self.service.as_str() {
            "*" => 0,
            x if x == service => 2,
            _ => return None,
        };
        let e = match self.environment.as_str() {
            "*" => 0,
            x if x == environment => 1,
            _ => return None,
        };
        Some(s + e)
    }
}

/// The policy for `service` in `environment`: the most specific of `policies`, else the
/// default.
pub fn policy_for(policies: &[Policy], service: &str, environment: &str) -> Policy {
    let mut best: Option<(u8, &Policy)> = None;
    for p in policies {
        if let Some(s) = p.specificity(service, environment)
            && best.is_none_or(|(b, _)| s > b)
        {
            best = Some((s, p));
        }
    }
    best.map_or_else(Policy::default, |(_, p)| p.clone())
}

/// One objective of one of the service's SLOs, as evaluated at the decision's instant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Standing {
    pub slo: String,
    pub objective: String,
    /// Share of the budget left (negative when overspent).
    pub budget_remaining: f64,
    /// (alert, severity) of every burn alert firing.
    pub firing: Vec<(String, String)>,
}

/// The service's last deploy to the environment, while inside its window: what its window
/// so far burned above the baseline, per objective (`nines_slo::attribution`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PreviousDeploy {
    pub version: String,
    /// Seconds since the epoch.
    pub deployed_at: i64,
    /// When its window ends (seconds).
    pub window_end: i64,
    /// (SLO, objective, excess burn as a share of the period's budget).
    pub excess: Vec<(String, String, f64)>,
}

/// Why a decision went the way it did: one line per finding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub allow: bool,
    /// `allow` or `deny`, for conditions that test a string.
    pub decision: &'static str,
    /// The label that allowed the deploy regardless, if one did.
    pub override_label: Option<String>,
    /// Every finding that denies (or would have, before an override); for an allow without
    /// findings, what was checked.
    pub reasons: Vec<String>,
}

/// Applies `policy` to the service's objectives for a deploy carrying `labels`, and to its
/// previous deploy when the policy has that rule and the deploy is still in its window.
pub fn decide(
    policy: &Policy,
    labels: &[String],
    standings: &[Standing],
    previous: Option<&PreviousDeploy>,
) -> Decision {
    let mut reasons = Vec::new();
    for s in standings {
        if s.budget_remaining < policy.min_budget_remaining {
            reasons.push(if policy.min_budget_remaining == 0.0 {
                format!(
                    "SLO {}/{}: error budget exhausted ({:.1} % left)",
                    s.slo,
                    s.objective,
                    s.budget_remaining * 100.0
                )
            } else {
                format!(
                    "SLO {}/{}: {:.1} % of the error budget left, below the policy's {:.1} %",
                    s.slo,
                    s.objective,
                    s.budget_remaining * 100.0,
                    policy.min_budget_remaining * 100.0
                )
            });
        }
        for (alert, severity) in &s.firing {
            if policy.deny_on_severities.contains(severity) {
                reasons.push(format!(
                    "SLO {}/{}: {severity} alert {alert} is firing",
                    s.slo, s.objective
                ));
            }
        }
    }
    if let (Some(limit), Some(p)) = (policy.max_previous_deploy_excess, previous) {
        for (slo, objective, excess) in &p.excess {
            if *excess > limit {
                reasons.push(format!(
                    "previous deploy {} ({}) is in its window until {} and burned {:.1} % of \
                     SLO {slo}/{objective}'s budget above baseline, more than the policy's {:.1} %",
                    p.version,
                    crate::window::rfc3339(p.deployed_at),
                    crate::window::rfc3339(p.window_end),
                    excess * 100.0,
                    limit * 100.0
                ));
            }
        }
    }
    let override_label = labels
        .iter()
        .find(|l| policy.allow_labels.contains(l))
        .cloned();
    let allow = reasons.is_empty() || override_label.is_some();
    if reasons.is_empty() {
        reasons.push(if standings.is_empty() {
            "no SLO covers this service: nothing to hold the release".to_owned()
        } else {
            format!(
                "{} objective(s) within budget and no {} alert firing",
                standings.len(),
                policy.deny_on_severities.join("/")
            )
        });
    }
    Decision {
        allow,
        decision: if allow { "allow" } else { "deny" },
        override_label,
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standing(remaining: f64, firing: &[(&str, &str)]) -> Standing {
        Standing {
            slo: "checkout-availability".into(),
            objective: "main".into(),
            budget_remaining: remaining,
            firing: firing
                .iter()
                .map(|(a, s)| ((*a).to_owned(), (*s).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn the_workbook_policy_holds_releases_while_the_budget_is_exhausted_or_a_page_fires() {
        let p = Policy::default();
        let d = decide(&p, &[], &[standing(0.2, &[])], None);
        assert!(d.allow);
        assert_eq!(
            d.reasons,
            ["1 objective(s) within budget and no page alert firing"]
        );
        let d = decide(&p, &[], &[standing(-0.5, &[])], None);
        assert!(!d.allow);
        assert_eq!(d.decision, "deny");
        assert_eq!(
            d.reasons,
            ["SLO checkout-availability/main: error budget exhausted (-50.0 % left)"]
        );
        let d = decide(
            &p,
            &[],
            &[standing(0.9, &[("14.4x-1h", "page"), ("1x-3d", "ticket")])],
            None,
        );
        assert!(!d.allow);
        assert_eq!(
            d.reasons,
            ["SLO checkout-availability/main: page alert 14.4x-1h is firing"]
        );
        // A hotfix goes through, and the reasons it overrode are kept.
        let d = decide(&p, &["hotfix".into()], &[standing(-0.5, &[])], None);
        assert!(d.allow);
        assert_eq!(d.override_label.as_deref(), Some("hotfix"));
        assert_eq!(d.reasons.len(), 1);
        // An unrelated label does not.
        assert!(!decide(&p, &["feature".into()], &[standing(-0.5, &[])], None).allow);
    }

    #[test]
    fn a_reserve_denies_before_exhaustion() {
        let p = Policy {
            min_budget_remaining: 0.25,
            ..Policy::default()
        };
        let d = decide(&p, &[], &[standing(0.2, &[])], None);
        assert!(!d.allow);
        assert_eq!(
            d.reasons,
            [
                "SLO checkout-availability/main: 20.0 % of the error budget left, below the policy's 25.0 %"
            ]
        );
    }

    #[test]
    fn the_most_specific_policy_applies() {
        let p = |s: &str, e: &str, r: f64| Policy {
            service: s.into(),
            environment: e.into(),
            min_budget_remaining: r,
            ..Policy::default()
        };
        let ps = [
            p("*", "*", 0.1),
            p("*", "prod", 0.2),
            p("checkout", "*", 0.3),
            p("checkout", "prod", 0.4),
        ];
        assert_eq!(
            policy_for(&ps, "checkout", "prod").min_budget_remaining,
            0.4
        );
        assert_eq!(
            policy_for(&ps, "checkout", "staging").min_budget_remaining,
            0.3
        );
        assert_eq!(policy_for(&ps, "search", "prod").min_budget_remaining, 0.2);
        assert_eq!(policy_for(&ps, "search", "dev").min_budget_remaining, 0.1);
        assert_eq!(policy_for(&ps[2..3], "search", "dev"), Policy::default());
        assert_eq!(
            p("*", "*", 1.5).check(3).unwrap_err(),
            "gate.policy 3: min_budget_remaining: 1.5 is not a share between 0 and 1"
        );
    }

    #[test]
    fn a_previous_deploy_still_burning_denies_until_its_window_ends() {
        let p = Policy {
            max_previous_deploy_excess: Some(0.05),
            ..Policy::default()
        };
        // v2 went out at 2026-11-10T10:00Z; its window so far spent 7 % of one objective's
        // budget above baseline and 1 % of another's.
        let previous = PreviousDeploy {
            version: "v2".into(),
            deployed_at: 1_794_304_800,
            window_end: 1_794_304_800 + 86_400,
            excess: vec![
                ("checkout-availability".into(), "main".into(), 0.07),
                ("checkout-latency".into(), "p99".into(), 0.01),
            ],
        };
        // The budget is fine and nothing fires: the rule alone denies.
        let d = decide(&p, &[], &[standing(0.6, &[])], Some(&previous));
        assert!(!d.allow);
        assert_eq!(
            d.reasons,
            [
                "previous deploy v2 (2026-11-10T10:00:00Z) is in its window until \
                 2026-11-11T10:00:00Z and burned 7.0 % of SLO checkout-availability/main's budget \
                 above baseline, more than the policy's 5.0 %"
            ]
        );
        // At the limit it is not above it; without the rule the same deploy passes; a
        // hotfix passes anyway.
        let at_limit = PreviousDeploy {
            excess: vec![("checkout-availability".into(), "main".into(), 0.05)],
            ..previous.clone()
        };
        assert!(decide(&p, &[], &[standing(0.6, &[])], Some(&at_limit)).allow);
        assert!(
            decide(
                &Policy::default(),
                &[],
                &[standing(0.6, &[])],
                Some(&previous)
            )
            .allow
        );
        let d = decide(
            &p,
            &["hotfix".into()],
            &[standing(0.6, &[])],
            Some(&previous),
        );
        assert_eq!(
            (d.allow, d.override_label.as_deref()),
            (true, Some("hotfix"))
        );
        // The window is a fixed length, checked when the policy is loaded.
        assert_eq!(p.previous_window_seconds(), Ok(86_400));
        let bad = Policy {
            previous_deploy_window: "1M".into(),
            ..p.clone()
        };
        assert_eq!(
            bad.check(2).unwrap_err(),
            "gate.policy 2: previous_deploy_window: 1M is not a fixed length (use m, h, d or w)"
        );
        let bad = Policy {
            max_previous_deploy_excess: Some(-0.1),
            ..p
        };
        assert_eq!(
            bad.check(0).unwrap_err(),
            "gate.policy 0: max_previous_deploy_excess: -0.1 is not a share of the budget (>= 0)"
        );
    }
}
