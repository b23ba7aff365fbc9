//! The OpenSLO loader against the reference corpus in `tests/openslo` (a copy of the shared
//! OpenSLO reference data, Apache-2.0; its README says where each part comes from): every example loads
//! and resolves, every spec case is accepted or refused as decided below (with the field
//! path), and a corpus of bad definitions is refused with the file, document, path and reason.

use std::fs;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use nines_slo::duration::Span;
use nines_slo::model::{
    BudgetingMethod, IndicatorMetric, Op, RatioMetric, RawKind, Slo, SpecValue, TimeWindow,
};
use nines_slo::openslo::{Catalog, LoadError};

/// This crate's directory, read when the test runs (see `repo_root` in the workspace's
/// `tests/support.rs`: a binary cargo reused from another checkout must not read that one).
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .expect("tests run by cargo")
        .into()
}

fn corpus() -> PathBuf {
    manifest_dir().join("tests/openslo")
}

/// The YAML files under `dir`, recursively, sorted, relative to the corpus root.
fn yaml_files(dir: &Path) -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, &mut files);
    let root = corpus();
    let mut files: Vec<String> = files
        .iter()
        .map(|f| {
            f.strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    files.sort();
    files
}

fn read(relative: &str) -> String {
    let path = corpus().join(relative);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn load(files: &[&str]) -> (Catalog, Vec<LoadError>) {
    let mut catalog = Catalog::default();
    let mut errors = Vec::new();
    for file in files {
        errors.extend(catalog.add_file(file, &read(file)));
    }
    (catalog, errors)
}

fn show(errors: &[LoadError]) -> String {
    errors.iter().map(|e| format!("\n  {e}")).collect()
}

#[test]
fn every_example_loads_and_resolves() {
    let files = yaml_files(&corpus().join("examples"));
    assert_eq!(files.len(), 15, "{files:?}");
    let mut catalog = Catalog::default();
    for file in &files {
        let errors = catalog.add_file(file, &read(file));
        assert!(errors.is_empty(), "{file}:{}", show(&errors));
    }
    assert_eq!(
        catalog.counts(),
        vec![
            ("SLO", 6),
            ("SLI", 7),
            ("Service", 4),
            ("DataSource", 2),
            ("AlertPolicy", 3),
            ("AlertCondition", 4),
            ("AlertNotificationTarget", 2),
        ]
    );

    // Every reference in the examples resolves: the SLOs' indicators are inline with their
    // own `type`, the standalone SLIs name DataSources that exist nowhere but give a `type`
    // too, the policies' `conditionRef: cpu-usage-breach` is in alert_conditions.yaml (and
    // 04-alert-conditions.yaml). Notification `targetRef`s naming no target are not errors.
    let (slos, errors) = catalog.resolve();
    let expected: Vec<LoadError> = Vec::new();
    assert_eq!(errors, expected, "{}", show(&errors));
    let names: Vec<(&str, &str)> = slos
        .iter()
        .map(|s| (s.source.file.as_str(), s.name.as_str()))
        .collect();
    assert_eq!(
        names,
        vec![
            (
                "examples/01-slo-web-availability-timeslices.yaml",
                "web-availability"
            ),
            ("examples/go-sdk-v1/slos.yaml", "web-availability"),
            (
                "examples/upstream-schema-drift/budgeting-method__occurences-slo.yaml",
                "search-slo"
            ),
            (
                "examples/upstream-schema-drift/budgeting-method__ratio-timeslices.yaml",
                "main-page"
            ),
            (
                "examples/upstream-schema-drift/budgeting-method__timeslices-slo.yaml",
                "service-availability"
            ),
            (
                "examples/upstream-schema-drift/treat-low-traffic-as-equally-important__timeslices-slo.yaml",
                "service-availability"
            ),
        ]
    );

    let by_file = |file: &str| slos.iter().find(|s| s.source.file.ends_with(file)).unwrap();
    let ratio = by_file("budgeting-method__ratio-timeslices.yaml");
    assert_eq!(ratio.budgeting, BudgetingMethod::RatioTimeslices);
    assert_eq!(
        ratio.window,
        TimeWindow::Rolling {
            span: "2w".parse().unwrap()
        }
    );
    assert_eq!(
        ratio.objectives[0].time_slice_window,
        Some(Span::minutes(1))
    );
    assert_eq!(
        ratio.objectives[0].threshold, None,
        "op without value on a ratio SLI is ignored"
    );
    assert!(ratio.alert_policies.is_empty());

    let search = by_file("budgeting-method__occurences-slo.yaml");
    assert_eq!(search.budgeting, BudgetingMethod::Occurrences);
    assert_eq!(search.objectives[0].threshold, Some((Op::Lt, 500.0)));
    assert_eq!(search.objectives[0].name, "Good experience");
    let IndicatorMetric::Threshold(source) = &search.indicator.metric else {
        panic!("{search:?}")
    };
    assert_eq!(source.kind, "Any");
    assert_eq!(
        source.spec.get("query"),
        Some(&SpecValue::String("Any".into()))
    );
    assert!(search.alert_policies.is_empty(), "null alertPolicies");

    let sla = by_file("budgeting-method__timeslices-slo.yaml");
    assert_eq!(sla.objectives.len(), 2);
    assert_eq!(sla.objectives[1].name, "SLA");
    assert_eq!(sla.objectives[1].target, 0.99);
    // `1m` is a minute, whatever the upstream comment says.
    assert!(matches!(sla.window, TimeWindow::Calendar { span, .. } if span == Span::minutes(1)));
}

#[test]
fn the_go_sdk_forms_load() {
    let (catalog, errors) = load(&[
        "examples/go-sdk-v1/slis.yaml",
        "examples/go-sdk-v1/data_sources.yaml",
        "examples/go-sdk-v1/alert_policies.yaml",
        "examples/go-sdk-v1/alert_conditions.yaml",
    ]);
    assert!(errors.is_empty(), "{}", show(&errors));
    // A catalog resolves the standalone documents' references even with no SLO.
    let (slos, errors) = catalog.resolve();
    assert!(slos.is_empty());
    assert!(errors.is_empty(), "{}", show(&errors));

    // The raw ratio, the inline condition and the inline notification target, through an SLO
    // that refers to them by name.
    let slo = "
apiVersion: openslo/v1
kind: SLO
metadata:
  name: wifi
spec:
  service: wifi
  indicatorRef: wifi-client-satisfaction
  timeWindow:
    - duration: 28d
      isRolling: true
  budgetingMethod: RatioTimeslices
  objectives:
    - targetPercent: 99.5
      timeSliceWindow: 5
  alertPolicies:
    - alertPolicyRef: high-priority
    - targetRef: medium-priority
    - low-priority
";
    let mut catalog = catalog;
    assert_eq!(catalog.add_file("wifi.yaml", slo), vec![]);
    let (slos, errors) = catalog.resolve();
    assert!(errors.is_empty(), "{}", show(&errors));
    let wifi = &slos[0];
    let IndicatorMetric::Ratio(RatioMetric::Raw { raw, kind }) = &wifi.indicator.metric else {
        panic!("{wifi:?}")
    };
    assert_eq!(*kind, RawKind::Success);
    assert_eq!(raw.kind, "Prometheus");
    assert_eq!(raw.reference.as_deref(), Some("prometheus"));
    assert!((wifi.objectives[0].target - 0.995).abs() < 1e-12);
    assert_eq!(wifi.objectives[0].name, "objective-1");
    assert_eq!(wifi.objectives[0].time_slice_window, Some(Span::minutes(5)));
    let policies: Vec<&str> = wifi
        .alert_policies
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(
        policies,
        ["high-priority", "medium-priority", "low-priority"]
    );
    let high = &wifi.alert_policies[0];
    assert!(high.when_breaching && !high.when_resolved && !high.when_no_data);
    assert_eq!(high.conditions[0].name, "memory-usage-breach");
    assert_eq!(high.conditions[0].op, Op::Gt);
    assert_eq!(high.conditions[0].threshold, 2.0);
    assert_eq!(high.conditions[0].lookback, "1h".parse().unwrap());
    assert_eq!(high.conditions[0].alert_after, Span::minutes(5));
    assert_eq!(high.notification_targets, ["on-call-pd-notification"]);
    assert_eq!(
        wifi.alert_policies[1].notification_targets,
        ["on-call-slack-notification"]
    );
    let low = &wifi.alert_policies[2];
    assert_eq!(low.conditions[0].name, "cpu-usage-breach");
    assert_eq!(low.conditions[0].op, Op::Lte);
    assert_eq!(low.conditions[0].severity, "page");
}

#[test]
fn web_availability_resolves_to_these_values() {
    let file = "examples/01-slo-web-availability-timeslices.yaml";
    let (catalog, errors) = load(&[file]);
    assert!(errors.is_empty(), "{}", show(&errors));
    assert_eq!(catalog.counts(), vec![("SLO", 1)]);
    let (slos, errors) = catalog.resolve();
    assert!(errors.is_empty(), "{}", show(&errors));
    let [slo]: [Slo; 1] = slos.try_into().unwrap();
    assert_eq!(slo.name, "web-availability");
    assert_eq!(
        slo.display_name.as_deref(),
        Some("SLO for web availability")
    );
    assert_eq!(slo.service, "web");
    assert_eq!(
        slo.description.as_deref(),
        Some("X% of search requests are successful")
    );
    assert_eq!(slo.labels["team"], ["team-a", "team-b"]);
    assert_eq!(slo.labels["env"], ["prod"]);
    assert_eq!(slo.source.file, file);
    assert_eq!(slo.source.document, 0);
    assert_eq!(slo.budgeting, BudgetingMethod::Timeslices);
    assert_eq!(
        slo.window,
        TimeWindow::Calendar {
            span: "1w".parse().unwrap(),
            start: NaiveDate::from_ymd_opt(2022, 1, 1)
                .unwrap()
                .and_hms_opt(12, 0, 0)
                .unwrap(),
            time_zone: chrono_tz::America::New_York,
        }
    );
    assert_eq!(slo.objectives.len(), 1);
    let objective = &slo.objectives[0];
    assert_eq!(objective.name, "Good");
    assert_eq!(objective.target, 0.995);
    assert_eq!(objective.time_slice_target, Some(0.95));
    assert_eq!(objective.time_slice_window, Some(Span::minutes(1)));
    assert_eq!(objective.threshold, None);
    assert_eq!(slo.indicator.name, "web-successful-requests-ratio");
    let IndicatorMetric::Ratio(RatioMetric::Good { good, total }) = &slo.indicator.metric else {
        panic!("{slo:?}")
    };
    assert_eq!(good.kind, "Prometheus");
    assert_eq!(good.reference, None);
    assert_eq!(
        good.spec.get("query"),
        Some(&SpecValue::String(
            r#"sum(http_requests{k8s_cluster="prod",component="web",code=~"2xx|4xx"})"#.into()
        ))
    );
    assert_eq!(
        total.spec.get("query").and_then(SpecValue::as_str),
        Some(r#"sum(http_requests{k8s_cluster="prod",component="web"})"#)
    );
    assert!(slo.alert_policies.is_empty());
}

/// Expected outcome of loading one spec case on its own.
enum Expect {
    Ok,
    /// Refused, with an error whose path contains this.
    Err(&'static str),
}
use Expect::{Err, Ok};

/// Every spec case, read one by one. The decisions on the ambiguous ones:
/// - `alert-policy-inline-cond.yaml`: its inline burnrate condition has no `op`, which the
///   schema, the v1 README and the go-sdk all require (and an AlertCondition needs): refused.
/// - `alert-policy-many-cond.yaml`: nine conditions; v1 allows exactly one (schema `maxItems: 1`,
///   the README's "max of one condition", the go-sdk): refused.
/// - `alert-policy-no-notification.yaml`: `notificationTargets` is required (schema, go-sdk).
/// - `operator: and` beside `conditionRef` (v1alpha's field) is in the valid `alert-policy.yaml`:
///   accepted and ignored.
/// - `service-long-description.yaml`: 1418 characters, over the 1050 allowed: refused.
/// - `sli-description-ratio-inline-metricsource.yaml`: both `good` and `bad`: refused.
/// - the SLO cases with `alertPolicies: [foo-alert-policy]` (plain names, the v1 schema's
///   form): accepted; the names are references, resolved later.
const SPEC_CASES: &[(&str, Expect)] = &[
    ("spec-cases/invalid-apiversion.yaml", Err("apiVersion")),
    (
        "spec-cases/v1/alert-condition/alert-condition-no-condition.yaml",
        Err("spec.condition"),
    ),
    (
        "spec-cases/v1/alert-condition/alert-condition-no-description.yaml",
        Ok,
    ),
    (
        "spec-cases/v1/alert-condition/alert-condition-no-sev.yaml",
        Err("spec.severity"),
    ),
    ("spec-cases/v1/alert-condition/alert-condition.yaml", Ok),
    (
        "spec-cases/v1/alert-notification-target/alert-notification-target-no-description.yaml",
        Ok,
    ),
    (
        "spec-cases/v1/alert-notification-target/alert-notification-target-no-target.yaml",
        Err("spec.target"),
    ),
    (
        "spec-cases/v1/alert-notification-target/alert-notification-target.yaml",
        Ok,
    ),
    (
        "spec-cases/v1/alert-policy/alert-policy-inline-cond.yaml",
        Err("spec.conditions[0].spec.condition.op"),
    ),
    (
        "spec-cases/v1/alert-policy/alert-policy-malformed-cond.yaml",
        Err("spec.conditions[0].foo"),
    ),
    (
        "spec-cases/v1/alert-policy/alert-policy-malformed-targetref.yaml",
        Err("spec.notificationTargets[0].foo"),
    ),
    (
        "spec-cases/v1/alert-policy/alert-policy-many-cond.yaml",
        Err("spec.conditions"),
    ),
    (
        "spec-cases/v1/alert-policy/alert-policy-many-notificationref.yaml",
        Ok,
    ),
    (
        "spec-cases/v1/alert-policy/alert-policy-no-cond.yaml",
        Err("spec.conditions"),
    ),
    (
        "spec-cases/v1/alert-policy/alert-policy-no-notification.yaml",
        Err("spec.notificationTargets"),
    ),
    ("spec-cases/v1/alert-policy/alert-policy.yaml", Ok),
    ("spec-cases/v1/data-source/data-source.yaml", Ok),
    ("spec-cases/v1/invalid-apiversion.yaml", Err("apiVersion")),
    (
        "spec-cases/v1/service/service-long-description.yaml",
        Err("spec.description"),
    ),
    ("spec-cases/v1/service/service-no-displayname.yaml", Ok),
    ("spec-cases/v1/service/service.yaml", Ok),
    (
        "spec-cases/v1/sli/sli-description-ratio-bad-inline-metricsource.yaml",
        Ok,
    ),
    (
        "spec-cases/v1/sli/sli-description-ratio-bad-metricsourceref.yaml",
        Ok,
    ),
    (
        "spec-cases/v1/sli/sli-description-ratio-good-inline-metricsource.yaml",
        Ok,
    ),
    (
        "spec-cases/v1/sli/sli-description-ratio-good-metricsourceref.yaml",
        Ok,
    ),
    (
        "spec-cases/v1/sli/sli-description-ratio-inline-metricsource.yaml",
        Err("spec.ratioMetric"),
    ),
    (
        "spec-cases/v1/sli/sli-description-threshold-inline-metricsource.yaml",
        Ok,
    ),
    (
        "spec-cases/v1/sli/sli-description-threshold-metricsourceref.yaml",
        Ok,
    ),
    (
        "spec-cases/v1/sli/sli-no-description-ratio-bad-inline-metricsource.yaml",
        Ok,
    ),
    (
        "spec-cases/v1/sli/sli-no-description-ratio-bad-metricsourceref.yaml",
        Ok,
    ),
    (
        "spec-cases/v1/sli/sli-no-description-ratio-good-inline-metricsource.yaml",
        Ok,
    ),
    (
        "spec-cases/v1/sli/sli-no-description-ratio-good-metricsourceref.yaml",
        Ok,
    ),
    (
        "spec-cases/v1/sli/sli-no-description-threshold-inline-metricsource.yaml",
        Ok,
    ),
    (
        "spec-cases/v1/sli/sli-no-description-threshold-metricsourceref.yaml",
        Ok,
    ),
    (
        "spec-cases/v1/sli/sli-ratio-good-and-bad.yaml",
        Err("spec.ratioMetric"),
    ),
    (
        "spec-cases/v1/slo/slo-indicatorref-calendar-alerts.yaml",
        Ok,
    ),
    (
        "spec-cases/v1/slo/slo-indicatorref-calendar-no-alerts.yaml",
        Ok,
    ),
    ("spec-cases/v1/slo/slo-indicatorref-rolling-alerts.yaml", Ok),
    (
        "spec-cases/v1/slo/slo-indicatorref-rolling-no-alerts.yaml",
        Ok,
    ),
    (
        "spec-cases/v1/slo/slo-no-indicatorref-calendar-alerts.yaml",
        Ok,
    ),
    (
        "spec-cases/v1/slo/slo-no-indicatorref-calendar-no-alerts.yaml",
        Ok,
    ),
    (
        "spec-cases/v1/slo/slo-no-indicatorref-rolling-alerts.yaml",
        Ok,
    ),
    (
        "spec-cases/v1/slo/slo-no-indicatorref-rolling-no-alerts.yaml",
        Ok,
    ),
];

#[test]
fn every_spec_case_is_accepted_or_refused_as_decided() {
    let files = yaml_files(&corpus().join("spec-cases"));
    let listed: Vec<&str> = SPEC_CASES.iter().map(|(f, _)| *f).collect();
    assert_eq!(files, listed, "the table lists every spec case, in order");
    let mut failures = Vec::new();
    for (file, expect) in SPEC_CASES {
        let mut catalog = Catalog::default();
        let errors = catalog.add_file(file, &read(file));
        match expect {
            Ok if errors.is_empty() => {
                assert_eq!(catalog.counts().iter().map(|c| c.1).sum::<usize>(), 1)
            }
            Ok => failures.push(format!("{file}: expected to load:{}", show(&errors))),
            Err(path) => {
                if !errors.iter().any(|e| e.path.contains(path)) {
                    failures.push(format!(
                        "{file}: expected an error at {path}:{}",
                        show(&errors)
                    ));
                }
                for e in &errors {
                    assert_eq!(e.file, *file);
                    assert_eq!(e.document, 1);
                    assert!(
                        e.to_string().starts_with(&format!("{file}: document 1")),
                        "{e}"
                    );
                }
                assert!(
                    catalog.counts().is_empty(),
                    "{file}: a refused document is not kept"
                );
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn spec_case_refusals_say_why() {
    let one = |file: &str| {
        let errors = Catalog::default().add_file(file, &read(file));
        assert_eq!(errors.len(), 1, "{}", show(&errors));
        errors.into_iter().next().unwrap()
    };
    let e = one("spec-cases/v1/invalid-apiversion.yaml");
    assert_eq!(e.path, "apiVersion");
    assert_eq!(
        e.reason,
        r#""openslo/v1alpha" is not supported; expected openslo/v1"#
    );
    assert_eq!(
        e.name.as_deref(),
        Some("AlertNotificationTarget/OnCallDevopsMailNotification")
    );
    assert_eq!(
        e.to_string(),
        "spec-cases/v1/invalid-apiversion.yaml: document 1 (AlertNotificationTarget/OnCallDevopsMailNotification): \
         apiVersion: \"openslo/v1alpha\" is not supported; expected openslo/v1"
    );

    let e = one("spec-cases/v1/alert-condition/alert-condition-no-condition.yaml");
    assert_eq!(
        (e.path.as_str(), e.reason.as_str()),
        ("spec.condition", "is required")
    );
    let e = one("spec-cases/v1/alert-policy/alert-policy-inline-cond.yaml");
    assert_eq!(e.path, "spec.conditions[0].spec.condition.op");
    let e = one("spec-cases/v1/alert-policy/alert-policy-malformed-cond.yaml");
    assert_eq!(e.path, "spec.conditions[0].foo");
    assert!(
        e.reason
            .starts_with("unknown field `foo`, expected one of `conditionRef`"),
        "{e}"
    );
    let e = one("spec-cases/v1/alert-policy/alert-policy-many-cond.yaml");
    assert_eq!(e.path, "spec.conditions");
    assert_eq!(e.reason, "has 9 conditions; OpenSLO v1 allows exactly one");
    let e = one("spec-cases/v1/service/service-long-description.yaml");
    assert_eq!(
        e.reason,
        "is 1418 characters long; at most 1050 are allowed"
    );
    let e = one("spec-cases/v1/sli/sli-ratio-good-and-bad.yaml");
    assert_eq!(e.path, "spec.ratioMetric");
    assert_eq!(
        e.reason,
        "has both good and bad; give exactly one (with total)"
    );
}

#[test]
fn spec_case_slos_resolve_only_with_their_references() {
    let (catalog, errors) = load(&["spec-cases/v1/slo/slo-indicatorref-calendar-alerts.yaml"]);
    assert!(errors.is_empty(), "{}", show(&errors));
    let (slos, errors) = catalog.resolve();
    assert!(slos.is_empty());
    let found: Vec<(&str, &str)> = errors
        .iter()
        .map(|e| (e.path.as_str(), e.reason.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            (
                "spec.indicatorRef",
                r#"no SLI named "indicator-ref-string""#
            ),
            (
                "spec.alertPolicies[0]",
                r#"no AlertPolicy named "foo-alert-policy""#
            ),
        ]
    );

    // With an SLI and a policy of those names (and the policy's condition) it resolves.
    let mut catalog = catalog;
    let more = r#"
apiVersion: openslo/v1
kind: SLI
metadata:
  name: indicator-ref-string
spec:
  ratioMetric:
    bad:
      metricSource:
        metricSourceRef: redshift-datasource
        spec:
          query: SELECT 1
    total:
      metricSource:
        metricSourceRef: redshift-datasource
        spec:
          query: SELECT 2
---
apiVersion: openslo/v1
kind: DataSource
metadata:
  name: redshift-datasource
spec:
  type: Redshift
  connectionDetails:
    accessKeyID: accessKey
---
- apiVersion: openslo/v1
  kind: AlertPolicy
  metadata:
    name: foo-alert-policy
  spec:
    alertWhenBreaching: true
    conditions:
      - conditionRef: cpu-usage-breach
    notificationTargets:
      - targetRef: on-call
"#;
    assert_eq!(catalog.add_file("more.yaml", more), vec![]);
    assert_eq!(
        catalog.add_file(
            "cond.yaml",
            &read("spec-cases/v1/alert-condition/alert-condition.yaml")
        ),
        vec![]
    );
    let (_, errors) = catalog.resolve();
    let found: Vec<(&str, &str, &str)> = errors
        .iter()
        .map(|e| (e.file.as_str(), e.path.as_str(), e.reason.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            (
                "more.yaml",
                "spec.conditions[0].conditionRef",
                r#"no AlertCondition named "cpu-usage-breach""#
            ),
            (
                "spec-cases/v1/slo/slo-indicatorref-calendar-alerts.yaml",
                "spec.alertPolicies[0]",
                r#"AlertPolicy "foo-alert-policy" has unresolved references (see more.yaml (document 3))"#
            ),
        ]
    );
    let alert_condition = read("spec-cases/v1/alert-condition/alert-condition.yaml")
        .replace("name: alert-condition", "name: cpu-usage-breach");
    assert_eq!(catalog.add_file("cond2.yaml", &alert_condition), vec![]);
    let (slos, errors) = catalog.resolve();
    assert!(errors.is_empty(), "{}", show(&errors));
    let slo = &slos[0];
    let IndicatorMetric::Ratio(RatioMetric::Bad { bad, total }) = &slo.indicator.metric else {
        panic!("{slo:?}")
    };
    assert_eq!(
        (bad.kind.as_str(), total.kind.as_str()),
        ("Redshift", "Redshift"),
        "the DataSource's type"
    );
    assert_eq!(slo.alert_policies[0].conditions[0].threshold, 24.0);
    assert_eq!(slo.alert_policies[0].conditions[0].severity, "sev1");
}

// ---------------------------------------------------------------------------------------------
// Bad definitions

const SLO_HEAD: &str = "apiVersion: openslo/v1
kind: SLO
metadata:
  name: checkout
spec:
  service: shop
";

const INDICATOR: &str = "  indicator:
    metadata:
      name: checkout-ok
    spec:
      ratioMetric:
        good:
          metricSource:
            type: nines
            spec:
              service: checkout
        total:
          metricSource:
            type: nines
            spec:
              service: checkout
";

const ROLLING: &str = "  timeWindow:
    - duration: 28d
      isRolling: true
";

fn slo(indicator: &str, window: &str, rest: &str) -> String {
    format!("{SLO_HEAD}{indicator}{window}{rest}")
}

/// The errors of one file with one document.
fn refusals(text: &str) -> Vec<LoadError> {
    let mut catalog = Catalog::default();
    let errors = catalog.add_file("bad.yaml", text);
    assert!(!errors.is_empty(), "accepted:\n{text}");
    assert!(catalog.counts().is_empty());
    errors
}

fn only_refusal(text: &str) -> (String, String) {
    let errors = refusals(text);
    assert_eq!(errors.len(), 1, "{}", show(&errors));
    (errors[0].path.clone(), errors[0].reason.clone())
}

const OCCURRENCES: &str = "  budgetingMethod: Occurrences
  objectives:
    - target: 0.999
";

#[test]
fn a_good_slo_of_the_bad_corpus_loads() {
    let mut catalog = Catalog::default();
    assert_eq!(
        catalog.add_file("good.yaml", &slo(INDICATOR, ROLLING, OCCURRENCES)),
        vec![]
    );
    let (slos, errors) = catalog.resolve();
    assert!(errors.is_empty());
    assert_eq!(slos[0].objectives[0].name, "objective-1");
    assert_eq!(
        slos[0].window,
        TimeWindow::Rolling {
            span: "28d".parse().unwrap()
        }
    );
}

#[test]
fn bad_yaml_names_the_file_document_and_line() {
    let text = "apiVersion: openslo/v1
kind: Service
metadata:
  name: fine
spec: {}
---
apiVersion: openslo/v1
kind: Service
metadata:
  name: [unclosed
spec: {}
";
    let mut catalog = Catalog::default();
    let errors = catalog.add_file("broken.yaml", text);
    assert_eq!(
        catalog.counts(),
        vec![("Service", 1)],
        "the document before the error is kept"
    );
    assert_eq!(errors.len(), 1, "{}", show(&errors));
    let e = &errors[0];
    assert_eq!((e.file.as_str(), e.document), ("broken.yaml", 2));
    assert!(e.path.starts_with("line 11 column"), "{e}");
    assert!(e.reason.starts_with("YAML syntax error: "), "{e}");
    assert!(
        e.to_string()
            .starts_with("broken.yaml: document 2: line 11 column"),
        "{e}"
    );
}

#[test]
fn unknown_kind_is_refused_with_the_known_ones() {
    let errors =
        refusals("apiVersion: openslo/v1\nkind: Dashboard\nmetadata:\n  name: board\nspec: {}\n");
    assert_eq!(errors[0].path, "kind");
    assert_eq!(
        errors[0].reason,
        r#"unknown kind "Dashboard"; expected one of SLO, SLI, Service, DataSource, AlertPolicy, AlertCondition, AlertNotificationTarget"#
    );
    assert_eq!(errors[0].name.as_deref(), Some("Dashboard/board"));
    assert_eq!(
        errors[0].to_string(),
        "bad.yaml: document 1 (Dashboard/board): kind: unknown kind \"Dashboard\"; expected one of SLO, SLI, Service, \
         DataSource, AlertPolicy, AlertCondition, AlertNotificationTarget"
    );
}

#[test]
fn missing_indicator_ref_target_is_a_resolve_error() {
    let mut catalog = Catalog::default();
    let text = slo("  indicatorRef: x\n", ROLLING, OCCURRENCES);
    assert_eq!(catalog.add_file("slo.yaml", &text), vec![]);
    let (slos, errors) = catalog.resolve();
    assert!(slos.is_empty());
    assert_eq!(
        errors,
        [LoadError {
            file: "slo.yaml".into(),
            document: 1,
            name: Some("SLO/checkout".into()),
            path: "spec.indicatorRef".into(),
            reason: r#"no SLI named "x""#.into(),
        }]
    );
    assert_eq!(
        errors[0].to_string(),
        r#"slo.yaml: document 1 (SLO/checkout): spec.indicatorRef: no SLI named "x""#
    );
}

#[test]
fn a_target_above_one_is_refused() {
    let text = slo(
        INDICATOR,
        ROLLING,
        "  budgetingMethod: Occurrences\n  objectives:\n    - target: 1.5\n",
    );
    let errors = refusals(&text);
    assert_eq!(errors.len(), 1, "{}", show(&errors));
    assert_eq!(errors[0].path, "spec.objectives[0].target");
    assert_eq!(
        errors[0].reason,
        "1.5 is not a fraction between 0 and 1 (0 < target < 1)"
    );
    assert_eq!(
        (errors[0].file.as_str(), errors[0].document),
        ("bad.yaml", 1)
    );
}

#[test]
fn a_time_zone_on_mars_is_refused() {
    let window = "  timeWindow:
    - duration: 1M
      isRolling: false
      calendar:
        startTime: 2024-01-01 00:00:00
        timeZone: Mars/Olympus_Mons
";
    let (path, reason) = only_refusal(&slo(INDICATOR, window, OCCURRENCES));
    assert_eq!(path, "spec.timeWindow[0].calendar.timeZone");
    assert_eq!(
        reason,
        r#""Mars/Olympus_Mons" is not an IANA time zone name (such as Etc/UTC or America/New_York)"#
    );
}

#[test]
fn more_bad_definitions() {
    let calendar = |start: &str| {
        format!(
            "  timeWindow:\n    - duration: 1M\n      calendar:\n        startTime: {start}\n        timeZone: Etc/UTC\n"
        )
    };
    let cases: Vec<(String, &str, &str)> = vec![
        (slo(INDICATOR, ROLLING, &format!("{OCCURRENCES}  colour: blue\n")), "spec.colour", "unknown field `colour`"),
        (slo(INDICATOR, &calendar("2024-01-01"), OCCURRENCES), "spec.timeWindow[0].calendar.startTime", "is not a date and time"),
        (slo(INDICATOR, &calendar("2024-02-30 00:00:00"), OCCURRENCES), "spec.timeWindow[0].calendar.startTime", "is not a date and time"),
        (slo(INDICATOR, "  timeWindow:\n    - duration: 1M\n", OCCURRENCES), "spec.timeWindow[0].calendar", "is required"),
        (slo(INDICATOR, "  timeWindow:\n    - duration: 30 days\n      isRolling: true\n", OCCURRENCES), "spec.timeWindow[0].duration", "is not a duration shorthand"),
        (slo(INDICATOR, "  timeWindow: []\n", OCCURRENCES), "spec.timeWindow", "exactly one"),
        (slo(INDICATOR, "", OCCURRENCES), "spec.timeWindow", "is required"),
        (slo(INDICATOR, ROLLING, "  budgetingMethod: Occurences\n  objectives:\n    - target: 0.9\n"), "spec.budgetingMethod", "is not one of Occurrences, Timeslices, RatioTimeslices"),
        (slo(INDICATOR, ROLLING, "  budgetingMethod: Timeslices\n  objectives:\n    - target: 0.9\n      timeSliceWindow: 1m\n"), "spec.objectives[0].timeSliceTarget", "is required with budgetingMethod Timeslices"),
        (slo(INDICATOR, ROLLING, "  budgetingMethod: RatioTimeslices\n  objectives:\n    - target: 0.9\n"), "spec.objectives[0].timeSliceWindow", "is required with budgetingMethod RatioTimeslices"),
        (slo(INDICATOR, ROLLING, "  budgetingMethod: Occurrences\n  objectives:\n    - targetPercent: 100\n"), "spec.objectives[0].targetPercent", "0 < targetPercent < 100"),
        (slo(INDICATOR, ROLLING, "  budgetingMethod: Occurrences\n  objectives: []\n"), "spec.objectives", "at least one"),
        (slo(INDICATOR, ROLLING, "  budgetingMethod: Occurrences\n  objectives:\n    - target: 0.9\n      op: ne\n"), "spec.objectives[0].op", r#""ne" is not one of lt, lte, gt, gte"#),
        (slo(INDICATOR, ROLLING, &format!("  indicatorRef: a\n{OCCURRENCES}")), "spec", "has both indicator and indicatorRef"),
        (slo("  indicator:\n    spec: {}\n", ROLLING, OCCURRENCES), "spec.indicator.metadata", "is required"),
        (format!("{}{}", SLO_HEAD.replace("  service: shop\n", ""), "  indicatorRef: a\n  timeWindow:\n    - duration: 1d\n      isRolling: true\n  budgetingMethod: Occurrences\n  objectives:\n    - target: 0.9\n"), "spec.service", "is required"),
        (SLO_HEAD.replace("checkout", "Checkout") + "  indicatorRef: a\n" + ROLLING + OCCURRENCES, "metadata.name", r#""Checkout" is not a valid name"#),
        (SLO_HEAD.replace("openslo/v1", "openslo/v2") + "  indicatorRef: a\n", "apiVersion", r#""openslo/v2" is not supported"#),
        ("apiVersion: openslo/v1\nkind: SLI\nmetadata:\n  name: lat\nspec:\n  thresholdMetric:\n    metricSource:\n      spec:\n        q: 1\n".into(), "spec.thresholdMetric.metricSource", "needs type or metricSourceRef"),
        ("apiVersion: openslo/v1\nkind: SLI\nmetadata:\n  name: lat\nspec:\n  ratioMetric:\n    rawType: sucess\n    raw:\n      metricSource:\n        type: nines\n        spec:\n          q: 1\n".into(), "spec.ratioMetric.rawType", r#""sucess" is not success or failure"#),
        ("apiVersion: openslo/v1\nkind: SLI\nmetadata:\n  name: lat\nspec:\n  ratioMetric:\n    good:\n      metricSource:\n        type: nines\n        spec:\n          q: 1\n".into(), "spec.ratioMetric.total", "is required with good or bad"),
        ("apiVersion: openslo/v1\nkind: DataSource\nmetadata:\n  name: prom\nspec:\n  connectionDetails: {}\n".into(), "spec.type", "is required"),
        ("apiVersion: openslo/v1\nkind: AlertCondition\nmetadata:\n  name: fast\nspec:\n  severity: page\n  condition:\n    kind: burnrate\n    op: gt\n    threshold: 14.4\n    lookbackWindow: 1 hour\n    alertAfter: 5m\n".into(), "spec.condition.lookbackWindow", "is not a duration shorthand"),
        ("apiVersion: openslo/v1\nkind: AlertCondition\nmetadata:\n  name: fast\nspec:\n  severity: page\n  condition:\n    kind: burnrate\n    op: gt\n    threshold: high\n    lookbackWindow: 1h\n    alertAfter: 5m\n".into(), "spec.condition.threshold", "invalid type: string \"high\", expected f64"),
        ("apiVersion: openslo/v1\nkind: Service\nmetadata:\n  name: shop\n  owner: me\nspec: {}\n".into(), "metadata.owner", "unknown field `owner`"),
        ("apiVersion: openslo/v1\nkind: Service\nmetadata:\n  displayName: Shop\nspec: {}\n".into(), "metadata.name", "is required"),
    ];
    for (text, path, reason) in &cases {
        let errors = refusals(text);
        assert!(
            errors
                .iter()
                .any(|e| e.path == *path && e.reason.contains(reason)),
            "expected {path}: {reason} for\n{text}\ngot:{}",
            show(&errors)
        );
    }
}

#[test]
fn a_threshold_sli_by_reference_needs_op_and_value() {
    let sli = "apiVersion: openslo/v1
kind: SLI
metadata:
  name: latency
spec:
  thresholdMetric:
    metricSource:
      type: nines
      spec:
        metric: latency_p99
";
    let mut catalog = Catalog::default();
    assert_eq!(catalog.add_file("sli.yaml", sli), vec![]);
    let text = slo(
        "  indicatorRef: latency\n",
        ROLLING,
        "  budgetingMethod: Occurrences\n  objectives:\n    - target: 0.99\n      op: lte\n",
    );
    assert_eq!(catalog.add_file("slo.yaml", &text), vec![]);
    let (slos, errors) = catalog.resolve();
    assert!(slos.is_empty());
    assert_eq!(errors.len(), 1, "{}", show(&errors));
    assert_eq!(errors[0].path, "spec.objectives[0].value");
    assert_eq!(
        errors[0].reason,
        r#"is required: SLI "latency" is a thresholdMetric"#
    );
}

#[test]
fn a_metric_source_ref_without_type_needs_the_data_source() {
    let sli = "- apiVersion: openslo/v1
  kind: SLI
  metadata:
    name: errors
  spec:
    thresholdMetric:
      metricSource:
        metricSourceRef: prom
        spec:
          query: up
";
    let mut catalog = Catalog::default();
    assert_eq!(catalog.add_file("sli.yaml", sli), vec![]);
    let (_, errors) = catalog.resolve();
    assert_eq!(errors.len(), 1, "{}", show(&errors));
    assert_eq!(
        errors[0].path,
        "spec.thresholdMetric.metricSource.metricSourceRef"
    );
    assert_eq!(
        errors[0].reason,
        r#"no DataSource named "prom" (and the metricSource has no type)"#
    );
    let ds = "apiVersion: openslo/v1\nkind: DataSource\nmetadata:\n  name: prom\nspec:\n  type: Prometheus\n  connectionDetails:\n    - url: http://prom\n";
    assert_eq!(catalog.add_file("ds.yaml", ds), vec![]);
    let (_, errors) = catalog.resolve();
    assert!(errors.is_empty(), "{}", show(&errors));
}

#[test]
fn list_items_are_documents_in_order() {
    let text = "- apiVersion: openslo/v1
  kind: Service
  metadata:
    name: one
  spec: {}
- apiVersion: openslo/v1
  kind: Service
  metadata:
    name: two
  spec:
    owner: nobody
---
apiVersion: openslo/v1
kind: Service
metadata:
  name: three
spec:
  description: third
";
    let mut catalog = Catalog::default();
    let errors = catalog.add_file("services.yaml", text);
    assert_eq!(errors.len(), 1, "{}", show(&errors));
    assert_eq!(errors[0].document, 2);
    assert_eq!(errors[0].name.as_deref(), Some("Service/two"));
    assert_eq!(errors[0].path, "spec.owner");
    assert_eq!(catalog.counts(), vec![("Service", 2)]);

    // Source.document is 0-based and counts list items.
    let slos = format!(
        "---\n# comment only\n---\n- {}\n- {}",
        indent(&slo(INDICATOR, ROLLING, OCCURRENCES)),
        indent(&slo(INDICATOR, ROLLING, OCCURRENCES).replace("checkout\n", "payment\n"))
    );
    let mut catalog = Catalog::default();
    assert_eq!(catalog.add_file("slos.yaml", &slos), vec![]);
    let (slos, errors) = catalog.resolve();
    assert!(errors.is_empty());
    let found: Vec<(&str, usize)> = slos
        .iter()
        .map(|s| (s.name.as_str(), s.source.document))
        .collect();
    assert_eq!(found, [("checkout", 0), ("payment", 1)]);
}

/// A document as a YAML list item: every line after the first indented by two.
fn indent(doc: &str) -> String {
    doc.lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                format!("{l}\n")
            } else {
                format!("  {l}\n")
            }
        })
        .collect()
}
