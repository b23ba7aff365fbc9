//! SLO definitions as nines evaluates them: OpenSLO documents with their references resolved
//! (`openslo` builds these), independent of YAML.

use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use chrono_tz::Tz;

use crate::duration::Span;

/// One SLO, ready to evaluate.
#[derive(Debug, Clone, PartialEq)]
pub struct Slo {
    /// `metadata.name`.
    pub name: String,
    pub display_name: Option<String>,
    /// `spec.service`.
    pub service: String,
    pub description: Option<String>,
    /// `metadata.labels`, each with its values.
    pub labels: BTreeMap<String, Vec<String>>,
    /// The indicator (inline, or the SLI `indicatorRef` names).
    pub indicator: Indicator,
    pub window: TimeWindow,
    pub budgeting: BudgetingMethod,
    pub objectives: Vec<Objective>,
    /// Alert policies (inline or by reference), in order.
    pub alert_policies: Vec<AlertPolicy>,
    /// Where the definition came from: `file`, document index.
    pub source: Source,
}

/// Where a document came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Source {
    pub file: String,
    /// 0-based index of the document in the file (a list item counts as a document).
    pub document: usize,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (document {})", self.file, self.document + 1)
    }
}

/// An SLI.
#[derive(Debug, Clone, PartialEq)]
pub struct Indicator {
    /// The SLI's `metadata.name` (inline indicators have one too).
    pub name: String,
    pub metric: IndicatorMetric,
}

impl Indicator {
    /// The indicator restricted to the rows `condition` (SQL over its table) selects, for
    /// nines' short-form sources: an SLA per customer reads its SLO's indicator for one
    /// tenant. The SQL form and other data sources cannot be restricted (the error says
    /// which source and why).
    pub fn restricted(&self, condition: &str) -> Result<Indicator, String> {
        let restrict = |m: &MetricSource| -> Result<MetricSource, String> {
            if !m.kind.eq_ignore_ascii_case("nines") {
                return Err(format!(
                    "indicator {}: a {:?} source cannot be read per tenant",
                    self.name, m.kind
                ));
            }
            if m.spec.contains_key("sql") {
                return Err(format!(
                    "indicator {}: spec.sql cannot be restricted to a tenant (use the short form: table, filter, value)",
                    self.name
                ));
            }
            let mut out = m.clone();
            let filter = match m.spec.get("filter").and_then(SpecValue::as_str) {
                Some(f) => format!("({f}) AND ({condition})"),
                None => condition.to_owned(),
            };
            out.spec.insert("filter".into(), SpecValue::String(filter));
            Ok(out)
        };
        let metric = match &self.metric {
            IndicatorMetric::Threshold(m) => IndicatorMetric::Threshold(restrict(m)?),
            IndicatorMetric::Ratio(RatioMetric::Good { good, total }) => {
                IndicatorMetric::Ratio(RatioMetric::Good {
                    good: restrict(good)?,
                    total: restrict(total)?,
                })
            }
            IndicatorMetric::Ratio(RatioMetric::Bad { bad, total }) => {
                IndicatorMetric::Ratio(RatioMetric::Bad {
                    bad: restrict(bad)?,
                    total: restrict(total)?,
                })
            }
            IndicatorMetric::Ratio(RatioMetric::Raw { raw, kind }) => {
                IndicatorMetric::Ratio(RatioMetric::Raw {
                    raw: restrict(raw)?,
                    kind: *kind,
                })
            }
        };
        Ok(Indicator {
            name: self.name.clone(),
            metric,
        })
    }
}

/// What the SLI measures.
#[derive(Debug, Clone, PartialEq)]
pub enum IndicatorMetric {
    /// `ratioMetric`: good (or bad) over total, or a raw ratio.
    Ratio(RatioMetric),
    /// `thresholdMetric`: one value per slice, compared with the objective's `value` by `op`.
    Threshold(MetricSource),
}

/// `ratioMetric`.
#[derive(Debug, Clone, PartialEq)]
pub enum RatioMetric {
    Good {
        good: MetricSource,
        total: MetricSource,
    },
    Bad {
        bad: MetricSource,
        total: MetricSource,
    },
    /// `raw`: a ratio per slice, of good (`Success`) or bad (`Failure`) events.
    Raw { raw: MetricSource, kind: RawKind },
}

/// `ratioMetric.rawType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawKind {
    Success,
    Failure,
}

/// A `metricSource`: the data source type and its free-form spec (kept as YAML text-free
/// key/values so nines' own source can read it and others can be reported).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSource {
    /// `type` (e.g. `nines`, `Prometheus`); the referenced DataSource's type when only a
    /// `metricSourceRef` is given.
    pub kind: String,
    /// `metricSourceRef`, if any.
    pub reference: Option<String>,
    /// `spec`, as JSON-like values.
    pub spec: BTreeMap<String, SpecValue>,
}

/// A value of a `metricSource.spec` (scalars, lists and maps).
#[derive(Debug, Clone, PartialEq)]
pub enum SpecValue {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    List(Vec<SpecValue>),
    Map(BTreeMap<String, SpecValue>),
}

impl SpecValue {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }
}

/// `timeWindow`.
#[derive(Debug, Clone, PartialEq)]
pub enum TimeWindow {
    /// `isRolling: true`: the last `span` before the instant evaluated.
    Rolling { span: Span },
    /// `isRolling: false`: periods of `span` aligned on `start` in `time_zone`.
    Calendar {
        span: Span,
        start: NaiveDateTime,
        time_zone: Tz,
    },
}

/// `budgetingMethod`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetingMethod {
    /// Good events over all events in the window.
    Occurrences,
    /// Good slices over all slices; a slice is good when its SLI meets `timeSliceTarget`.
    Timeslices,
    /// The mean of the slices' ratios.
    RatioTimeslices,
}

/// Comparison of `op` (`lt`, `lte`, `gt`, `gte`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Lte,
    Gt,
    Gte,
}

impl Op {
    /// Whether `value op threshold` holds.
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Self::Lt => value < threshold,
            Self::Lte => value <= threshold,
            Self::Gt => value > threshold,
            Self::Gte => value >= threshold,
        }
    }
}

/// One `objectives` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Objective {
    /// `displayName`, else `name`, else `objective-<n>`.
    pub name: String,
    /// `target` (0 < target < 1): the share of good events or slices.
    pub target: f64,
    /// `op` and `value` of a threshold SLI (a slice is good when `value op threshold`).
    pub threshold: Option<(Op, f64)>,
    /// `timeSliceTarget` (Timeslices): a slice is good when its ratio is at least this.
    pub time_slice_target: Option<f64>,
    /// `timeSliceWindow` (Timeslices, RatioTimeslices); default one minute.
    pub time_slice_window: Option<Span>,
}

/// An `AlertPolicy` with its conditions resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertPolicy {
    pub name: String,
    /// `alertWhenBreaching`, `alertWhenResolved`, `alertWhenNoData`.
    pub when_breaching: bool,
    pub when_resolved: bool,
    pub when_no_data: bool,
    pub conditions: Vec<AlertCondition>,
    /// `notificationTargets` names (targetRef or inline names).
    pub notification_targets: Vec<String>,
}

/// An `AlertCondition` of kind `burnrate`.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertCondition {
    pub name: String,
    /// `severity` (e.g. `page`, `ticket`).
    pub severity: String,
    pub op: Op,
    /// The burn rate the condition compares with.
    pub threshold: f64,
    /// `lookbackWindow`.
    pub lookback: Span,
    /// `alertAfter`: how long the condition must hold before it fires.
    pub alert_after: Span,
}
