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
        Ok(())
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

/// Applies `policy` to the service's objectives for a deploy carrying `labels`.
pub fn decide(policy: &Policy, labels: &[String], standings: &[Standing]) -> Decision {
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
        let d = decide(&p, &[], &[standing(0.2, &[])]);
        assert!(d.allow);
        assert_eq!(
            d.reasons,
            ["1 objective(s) within budget and no page alert firing"]
        );
        let d = decide(&p, &[], &[standing(-0.5, &[])]);
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
        );
        assert!(!d.allow);
        assert_eq!(
            d.reasons,
            ["SLO checkout-availability/main: page alert 14.4x-1h is firing"]
        );
        // A hotfix goes through, and the reasons it overrode are kept.
        let d = decide(&p, &["hotfix".into()], &[standing(-0.5, &[])]);
        assert!(d.allow);
        assert_eq!(d.override_label.as_deref(), Some("hotfix"));
        assert_eq!(d.reasons.len(), 1);
        // An unrelated label does not.
        assert!(!decide(&p, &["feature".into()], &[standing(-0.5, &[])]).allow);
    }

    #[test]
    fn a_reserve_denies_before_exhaustion() {
        let p = Policy {
            min_budget_remaining: 0.25,
            ..Policy::default()
        };
        let d = decide(&p, &[], &[standing(0.2, &[])]);
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
}
