//! OpenSLO v1 documents in, [`Slo`]s out.
//!
//! [`Catalog::add_file`] parses the text of one file (several YAML documents; a document may
//! also be a YAML list of documents, as the OpenSLO go-sdk writes them), checks every document
//! against OpenSLO v1 and keeps the accepted ones by kind, references still by name.
//! [`Catalog::resolve`] follows the references and builds the SLOs nines evaluates.
//! Every refusal is a [`LoadError`] that names the file, the document and the field path
//! (`spec.objectives[0].target`).
//!
//! The rules are the v1 JSON schema's, updated where the schema lags the current spec (the
//! go-sdk and the spec's README): the `RatioTimeslices` budgeting method, `ratioMetric.raw` with
//! `rawType`, a `ratioMetric` without `counter`, inline alert conditions and notification
//! targets, `connectionDetails` of any shape, null `alertPolicies`, alert policies without
//! `alertWhenNoData` / `alertWhenResolved`. Unknown fields are refused except inside the
//! free-form maps (`metricSource.spec`, `connectionDetails`, `labels`, `annotations`).

use std::collections::BTreeMap;
use std::fmt;

use chrono::NaiveDateTime;
use chrono_tz::Tz;
use serde::Deserialize;
use serde::de::{self, DeserializeOwned, MapAccess, Visitor};
use serde_yaml_ng::{Mapping, Value};

use crate::duration::Span;
use crate::model::{
    AlertCondition, AlertPolicy, BudgetingMethod, Indicator, IndicatorMetric, MetricSource,
    Objective, Op, RatioMetric, RawKind, Slo, Source, SpecValue, TimeWindow,
};

/// One refusal: the file, the document (1-based index, and `kind/metadata.name` when known),
/// the field path and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: document {document}{}: {path}: {reason}", name_suffix(.name))]
pub struct LoadError {
    /// The file, as given to [`Catalog::add_file`].
    pub file: String,
    /// 1-based index of the document in the file (a list item counts as a document).
    pub document: usize,
    /// `kind/metadata.name` (e.g. `SLO/web-availability`) when the document has a name.
    pub name: Option<String>,
    /// The field path (`spec.objectives[0].target`), `.` for the document itself, or
    /// `line L column C` for YAML syntax errors.
    pub path: String,
    pub reason: String,
}

fn name_suffix(name: &Option<String>) -> String {
    name.as_ref().map(|n| format!(" ({n})")).unwrap_or_default()
}

/// The seven kinds of OpenSLO v1, in the order [`Catalog::counts`] reports them.
const KINDS: [&str; 7] = [
    "SLO",
    "SLI",
    "Service",
    "DataSource",
    "AlertPolicy",
    "AlertCondition",
    "AlertNotificationTarget",
];

const API_VERSION: &str = "openslo/v1";
const REQUIRED: &str = "is required";
const MAX_DESCRIPTION: usize = 1050;

/// Every accepted document of every file, by kind, with references still by name.
#[derive(Debug, Default, Clone)]
pub struct Catalog {
    slos: Vec<Entry<SloDef>>,
    slis: Vec<Entry<Indicator>>,
    services: Vec<Entry<()>>,
    /// The DataSource's `type`.
    data_sources: Vec<Entry<String>>,
    alert_policies: Vec<Entry<PolicyDef>>,
    alert_conditions: Vec<Entry<AlertCondition>>,
    notification_targets: Vec<Entry<()>>,
}

/// An accepted document.
#[derive(Debug, Clone)]
struct Entry<T> {
    source: Source,
    /// `metadata.name`.
    name: String,
    /// `kind/name`, for messages.
    label: String,
    value: T,
}

impl<T> Entry<T> {
    fn error(&self, path: impl Into<String>, reason: impl Into<String>) -> LoadError {
        LoadError {
            file: self.source.file.clone(),
            document: self.source.document + 1,
            name: Some(self.label.clone()),
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// An SLO document, checked; its indicator and alert policies may still be references.
#[derive(Debug, Clone)]
struct SloDef {
    display_name: Option<String>,
    service: String,
    description: Option<String>,
    labels: BTreeMap<String, Vec<String>>,
    indicator: IndicatorUse,
    window: TimeWindow,
    budgeting: BudgetingMethod,
    objectives: Vec<ObjectiveDef>,
    alert_policies: Vec<PolicyUse>,
}

#[derive(Debug, Clone)]
enum IndicatorUse {
    Inline(Indicator),
    Ref(String),
}

/// An objective before the indicator is known (`op` and `value` matter only for a threshold
/// SLI).
#[derive(Debug, Clone)]
struct ObjectiveDef {
    name: String,
    target: f64,
    op: Option<Op>,
    value: Option<f64>,
    time_slice_target: Option<f64>,
    time_slice_window: Option<Span>,
}

/// An alert policy whose conditions may still be references.
#[derive(Debug, Clone)]
struct PolicyDef {
    name: String,
    when_breaching: bool,
    when_resolved: bool,
    when_no_data: bool,
    conditions: Vec<ConditionUse>,
    notification_targets: Vec<String>,
}

#[derive(Debug, Clone)]
enum ConditionUse {
    Inline(AlertCondition),
    /// `conditionRef`, with its path from the policy's root (`spec.conditions[0].conditionRef`).
    Ref {
        name: String,
        path: String,
    },
}

#[derive(Debug, Clone)]
enum PolicyUse {
    /// An inline policy, at `path` (`spec.alertPolicies[0]`).
    Inline { policy: PolicyDef, path: String },
    /// A policy by name, with the path of the name.
    Ref { name: String, path: String },
}

impl Catalog {
    /// Parses one file's text: several YAML documents, each an OpenSLO document or a YAML list
    /// of them. `file` is used only in messages and [`Source`]. Accepted documents are added;
    /// the errors of the refused ones are returned. A YAML syntax error ends the file (the
    /// documents before it are kept).
    pub fn add_file(&mut self, file: &str, text: &str) -> Vec<LoadError> {
        let mut errors = Vec::new();
        let mut index = 0;
        for document in serde_yaml_ng::Deserializer::from_str(text) {
            let value = match Value::deserialize(document) {
                Ok(value) => value,
                Err(err) => {
                    errors.push(syntax_error(file, index + 1, &err));
                    break;
                }
            };
            let items = match value {
                // An empty document (only comments, or a trailing `---`).
                Value::Null => continue,
                Value::Sequence(items) => items,
                other => vec![other],
            };
            for item in items {
                index += 1;
                if let Err(mut refused) = self.add_document(file, index, item) {
                    errors.append(&mut refused);
                }
            }
        }
        errors
    }

    /// Counts of the documents per kind (inline documents not counted), kinds with none left
    /// out, e.g. `[("SLO", 3), ("SLI", 2)]`.
    pub fn counts(&self) -> Vec<(&'static str, usize)> {
        let counts = [
            self.slos.len(),
            self.slis.len(),
            self.services.len(),
            self.data_sources.len(),
            self.alert_policies.len(),
            self.alert_conditions.len(),
            self.notification_targets.len(),
        ];
        KINDS
            .into_iter()
            .zip(counts)
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// Resolves the references by name: an SLO's `indicatorRef` (an SLI), its alert policies
    /// given by name (`alertPolicyRef`, `targetRef` or a plain name: an AlertPolicy), a
    /// policy's `conditionRef` (an AlertCondition) and a `metricSourceRef` (a DataSource,
    /// whose `type` becomes the metric source's kind when the metricSource has no `type`).
    /// A name is looked up first in the same file, then in the order the files were added.
    ///
    /// Not errors: an SLO's `service` naming no Service, a notification `targetRef` naming no
    /// AlertNotificationTarget, a `metricSourceRef` naming no DataSource when the metricSource
    /// has its own `type`.
    ///
    /// Returns the SLOs whose references all resolve, in the order they were added, and an
    /// error for every broken reference (at the document where it is written; an SLO that
    /// refers by name to a broken SLI or policy gets an error of its own as well).
    pub fn resolve(&self) -> (Vec<Slo>, Vec<LoadError>) {
        let mut errors = Vec::new();
        // References written in the standalone SLIs and policies.
        for sli in &self.slis {
            let mut indicator = sli.value.clone();
            for (path, reason) in self.fill_sources(&mut indicator, "spec", &sli.source.file) {
                errors.push(sli.error(path, reason));
            }
        }
        for policy in &self.alert_policies {
            if let Err(problems) = self.resolve_policy(&policy.value, "", &policy.source.file) {
                errors.extend(
                    problems
                        .into_iter()
                        .map(|(path, reason)| policy.error(path, reason)),
                );
            }
        }
        let mut slos = Vec::new();
        for slo in &self.slos {
            match self.resolve_slo(slo) {
                Ok(resolved) => slos.push(resolved),
                Err(problems) => {
                    errors.extend(
                        problems
                            .into_iter()
                            .map(|(path, reason)| slo.error(path, reason)),
                    );
                }
            }
        }
        (slos, errors)
    }

    fn resolve_slo(&self, entry: &Entry<SloDef>) -> Result<Slo, Problems> {
        let def = &entry.value;
        let file = entry.source.file.as_str();
        let mut problems = Problems::default();
        let indicator = match &def.indicator {
            IndicatorUse::Inline(indicator) => {
                let mut indicator = indicator.clone();
                for (path, reason) in self.fill_sources(&mut indicator, "spec.indicator.spec", file)
                {
                    problems.push(path, reason);
                }
                Some(indicator)
            }
            IndicatorUse::Ref(name) => match find(&self.slis, name, file) {
                None => {
                    problems.push("spec.indicatorRef", format!("no SLI named {name:?}"));
                    None
                }
                Some(sli) => {
                    let mut indicator = sli.value.clone();
                    if self
                        .fill_sources(&mut indicator, "spec", &sli.source.file)
                        .is_empty()
                    {
                        Some(indicator)
                    } else {
                        problems.push(
                            "spec.indicatorRef",
                            format!(
                                "SLI {name:?} has unresolved references (see {})",
                                sli.source
                            ),
                        );
                        None
                    }
                }
            },
        };

        let threshold_sli = indicator
            .as_ref()
            .filter(|i| matches!(i.metric, IndicatorMetric::Threshold(_)))
            .map(|i| i.name.clone());
        let mut objectives = Vec::new();
        for (i, o) in def.objectives.iter().enumerate() {
            let threshold = match (&threshold_sli, o.op, o.value) {
                (None, _, _) => None,
                (Some(_), Some(op), Some(value)) => Some((op, value)),
                (Some(sli), op, value) => {
                    let reason = format!("is required: SLI {sli:?} is a thresholdMetric");
                    if op.is_none() {
                        problems.push(format!("spec.objectives[{i}].op"), reason.clone());
                    }
                    if value.is_none() {
                        problems.push(format!("spec.objectives[{i}].value"), reason);
                    }
                    None
                }
            };
            objectives.push(Objective {
                name: o.name.clone(),
                target: o.target,
                threshold,
                time_slice_target: o.time_slice_target,
                time_slice_window: o.time_slice_window,
            });
        }

        let mut alert_policies = Vec::new();
        for used in &def.alert_policies {
            match used {
                PolicyUse::Inline { policy, path } => {
                    match self.resolve_policy(policy, &format!("{path}."), file) {
                        Ok(policy) => alert_policies.push(policy),
                        Err(more) => problems.0.extend(more.0),
                    }
                }
                PolicyUse::Ref { name, path } => match find(&self.alert_policies, name, file) {
                    None => problems.push(path.clone(), format!("no AlertPolicy named {name:?}")),
                    Some(found) => {
                        match self.resolve_policy(&found.value, "", &found.source.file) {
                            Ok(policy) => alert_policies.push(policy),
                            Err(_) => problems.push(
                                path.clone(),
                                format!(
                                    "AlertPolicy {name:?} has unresolved references (see {})",
                                    found.source
                                ),
                            ),
                        }
                    }
                },
            }
        }

        match indicator {
            Some(indicator) if problems.is_empty() => Ok(Slo {
                name: entry.name.clone(),
                display_name: def.display_name.clone(),
                service: def.service.clone(),
                description: def.description.clone(),
                labels: def.labels.clone(),
                indicator,
                window: def.window.clone(),
                budgeting: def.budgeting,
                objectives,
                alert_policies,
                source: entry.source.clone(),
            }),
            _ => Err(problems),
        }
    }

    /// The policy with its conditions resolved; problems at `prefix` + the path from the
    /// policy's root.
    fn resolve_policy(
        &self,
        def: &PolicyDef,
        prefix: &str,
        file: &str,
    ) -> Result<AlertPolicy, Problems> {
        let mut problems = Problems::default();
        let mut conditions = Vec::new();
        for condition in &def.conditions {
            match condition {
                ConditionUse::Inline(condition) => conditions.push(condition.clone()),
                ConditionUse::Ref { name, path } => {
                    match find(&self.alert_conditions, name, file) {
                        Some(found) => conditions.push(found.value.clone()),
                        None => problems.push(
                            format!("{prefix}{path}"),
                            format!("no AlertCondition named {name:?}"),
                        ),
                    }
                }
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(AlertPolicy {
            name: def.name.clone(),
            when_breaching: def.when_breaching,
            when_resolved: def.when_resolved,
            when_no_data: def.when_no_data,
            conditions,
            notification_targets: def.notification_targets.clone(),
        })
    }

    /// Gives each metric source without a `type` the type of the DataSource its
    /// `metricSourceRef` names; the problems (paths under `prefix`, the SLI spec's path) for
    /// the ones that name none.
    fn fill_sources(
        &self,
        indicator: &mut Indicator,
        prefix: &str,
        file: &str,
    ) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        for (suffix, source) in sources_mut(&mut indicator.metric) {
            if !source.kind.is_empty() {
                continue;
            }
            // A source without a type has a reference (checked when loading).
            let Some(name) = source.reference.as_deref() else {
                continue;
            };
            match find(&self.data_sources, name, file) {
                Some(found) => source.kind = found.value.clone(),
                None => problems.push((
                    format!("{prefix}.{suffix}.metricSourceRef"),
                    format!("no DataSource named {name:?} (and the metricSource has no type)"),
                )),
            }
        }
        problems
    }

    fn add_document(
        &mut self,
        file: &str,
        index: usize,
        value: Value,
    ) -> Result<(), Vec<LoadError>> {
        let Value::Mapping(mut map) = value else {
            let ctx = DocCtx {
                file,
                document: index,
                name: None,
            };
            return Err(vec![ctx.error(
                ".",
                format!(
                    "{} is not a document (a map with apiVersion, kind, metadata and spec)",
                    describe(&value)
                ),
            )]);
        };
        let kind = map.get("kind").and_then(Value::as_str).map(str::to_owned);
        let name = map
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str);
        let label = name.map(|name| match &kind {
            Some(kind) => format!("{kind}/{name}"),
            None => name.to_owned(),
        });
        let ctx = DocCtx {
            file,
            document: index,
            name: label,
        };

        match map.shift_remove("apiVersion") {
            Some(Value::String(v)) if v == API_VERSION => {}
            None => {
                return Err(vec![
                    ctx.error("apiVersion", format!("{REQUIRED} ({API_VERSION})")),
                ]);
            }
            Some(other) => {
                return Err(vec![ctx.error(
                    "apiVersion",
                    format!(
                        "{} is not supported; expected {API_VERSION}",
                        describe(&other)
                    ),
                )]);
            }
        }
        let known = format!("one of {}", KINDS.join(", "));
        let kind = match map.shift_remove("kind") {
            None => return Err(vec![ctx.error("kind", format!("{REQUIRED} ({known})"))]),
            Some(Value::String(kind)) => match KINDS.iter().find(|k| **k == kind) {
                Some(kind) => *kind,
                None => {
                    return Err(vec![
                        ctx.error("kind", format!("unknown kind {kind:?}; expected {known}")),
                    ]);
                }
            },
            Some(other) => {
                return Err(vec![ctx.error(
                    "kind",
                    format!("{} is not a kind; expected {known}", describe(&other)),
                )]);
            }
        };
        let value = Value::Mapping(map);
        let mut problems = Problems::default();
        let source = Source {
            file: file.to_owned(),
            document: index - 1,
        };
        macro_rules! accept {
            ($list:ident, $doc:expr, $check:expr) => {{
                let doc = $doc;
                let meta = check_metadata(doc.metadata, "metadata", &mut problems);
                let value = $check(doc.spec, &meta, &mut problems);
                match value {
                    Some(value) if problems.is_empty() => self.$list.push(Entry {
                        source,
                        label: format!("{kind}/{}", meta.name),
                        name: meta.name,
                        value,
                    }),
                    _ => return Err(problems.into_errors(&ctx)),
                }
            }};
        }
        match kind {
            "SLO" => accept!(slos, typed::<RawDoc<RawSloSpec>>(value, &ctx)?, check_slo),
            "SLI" => accept!(
                slis,
                typed::<RawDoc<RawSliSpec>>(value, &ctx)?,
                |spec, meta: &Meta, p: &mut Problems| {
                    check_sli_spec(spec, "spec", p).map(|metric| Indicator {
                        name: meta.name.clone(),
                        metric,
                    })
                }
            ),
            "Service" => accept!(
                services,
                typed::<RawDoc<RawServiceSpec>>(value, &ctx)?,
                |spec: RawServiceSpec, _: &Meta, p: &mut Problems| {
                    check_description(spec.description.as_deref(), "spec.description", p);
                    Some(())
                }
            ),
            "DataSource" => accept!(
                data_sources,
                typed::<RawDoc<RawDataSourceSpec>>(value, &ctx)?,
                |spec, _: &Meta, p: &mut Problems| { check_data_source(spec, p) }
            ),
            "AlertPolicy" => accept!(
                alert_policies,
                typed::<RawDoc<RawPolicySpec>>(value, &ctx)?,
                |spec, meta: &Meta, p: &mut Problems| {
                    check_policy_spec(spec, "spec", meta.name.clone(), "", p)
                }
            ),
            "AlertCondition" => accept!(
                alert_conditions,
                typed::<RawDoc<RawConditionSpec>>(value, &ctx)?,
                |spec, meta: &Meta, p: &mut Problems| {
                    check_condition_spec(spec, "spec", meta.name.clone(), p)
                }
            ),
            _ => accept!(
                notification_targets,
                typed::<RawDoc<RawTargetSpec>>(value, &ctx)?,
                |spec, _: &Meta, p: &mut Problems| { check_target_spec(spec, "spec", p) }
            ),
        }
        Ok(())
    }
}

/// The entry named `name`: the first in `file`, else the first of all.
fn find<'a, T>(entries: &'a [Entry<T>], name: &str, file: &str) -> Option<&'a Entry<T>> {
    entries
        .iter()
        .find(|e| e.name == name && e.source.file == file)
        .or_else(|| entries.iter().find(|e| e.name == name))
}

/// The metric sources of an SLI, with their paths from the SLI spec.
fn sources_mut(metric: &mut IndicatorMetric) -> Vec<(&'static str, &mut MetricSource)> {
    match metric {
        IndicatorMetric::Threshold(source) => vec![("thresholdMetric.metricSource", source)],
        IndicatorMetric::Ratio(RatioMetric::Good { good, total }) => vec![
            ("ratioMetric.good.metricSource", good),
            ("ratioMetric.total.metricSource", total),
        ],
        IndicatorMetric::Ratio(RatioMetric::Bad { bad, total }) => vec![
            ("ratioMetric.bad.metricSource", bad),
            ("ratioMetric.total.metricSource", total),
        ],
        IndicatorMetric::Ratio(RatioMetric::Raw { raw, .. }) => {
            vec![("ratioMetric.raw.metricSource", raw)]
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Messages

/// The document being read, for its errors.
struct DocCtx<'a> {
    file: &'a str,
    document: usize,
    name: Option<String>,
}

impl DocCtx<'_> {
    fn error(&self, path: impl Into<String>, reason: impl Into<String>) -> LoadError {
        LoadError {
            file: self.file.to_owned(),
            document: self.document,
            name: self.name.clone(),
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// The problems found in one document: (path, reason).
#[derive(Debug, Default)]
struct Problems(Vec<(String, String)>);

impl Problems {
    fn push(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.0.push((path.into(), reason.into()));
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn into_errors(self, ctx: &DocCtx<'_>) -> Vec<LoadError> {
        self.0
            .into_iter()
            .map(|(path, reason)| ctx.error(path, reason))
            .collect()
    }
}

impl IntoIterator for Problems {
    type Item = (String, String);
    type IntoIter = std::vec::IntoIter<(String, String)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

fn syntax_error(file: &str, document: usize, err: &serde_yaml_ng::Error) -> LoadError {
    let message = err.to_string();
    let (path, reason) = match err.location() {
        Some(at) => {
            let suffix = format!(" at line {} column {}", at.line(), at.column());
            let reason = message.replacen(&suffix, "", 1);
            (format!("line {} column {}", at.line(), at.column()), reason)
        }
        None => (".".to_owned(), message),
    };
    LoadError {
        file: file.to_owned(),
        document,
        name: None,
        path,
        reason: format!("YAML syntax error: {reason}"),
    }
}

/// `path.field`, or `field` at the root.
fn join(path: &str, field: &str) -> String {
    if path.is_empty() || path == "." {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

/// A YAML value in a message: strings quoted, others by type.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Sequence(_) => "a list".to_owned(),
        Value::Mapping(_) => "a map".to_owned(),
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

/// Deserializes a document into its typed form; a refusal names the field path.
fn typed<T: DeserializeOwned>(value: Value, ctx: &DocCtx<'_>) -> Result<T, Vec<LoadError>> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let mut path = err.path().to_string();
        let message = err.inner().to_string();
        let mut reason = message.clone();
        for (prefix, missing) in [("missing field `", true), ("unknown field `", false)] {
            if let Some(field) = message
                .strip_prefix(prefix)
                .and_then(|rest| rest.split('`').next())
            {
                if !path.ends_with(&format!(".{field}")) && path != field {
                    path = join(&path, field);
                }
                if missing {
                    reason = REQUIRED.to_owned();
                }
            }
        }
        vec![ctx.error(path, reason)]
    })
}

// ---------------------------------------------------------------------------------------------
// The documents as written

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a document"
)]
struct RawDoc<S> {
    metadata: RawMetadata,
    spec: S,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a map (metadata)"
)]
struct RawMetadata {
    name: String,
    display_name: Option<String>,
    labels: Option<Mapping>,
    annotations: Option<Mapping>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a map (an SLO spec)"
)]
struct RawSloSpec {
    description: Option<String>,
    service: Option<String>,
    indicator: Option<RawIndicator>,
    indicator_ref: Option<String>,
    time_window: Option<Vec<RawTimeWindow>>,
    budgeting_method: Option<String>,
    objectives: Option<Vec<RawObjective>>,
    alert_policies: Option<Vec<RawSloPolicy>>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a map (an inline SLI: metadata and spec)"
)]
struct RawIndicator {
    metadata: RawMetadata,
    spec: RawSliSpec,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a map (duration, isRolling, calendar)"
)]
struct RawTimeWindow {
    duration: Option<String>,
    is_rolling: Option<bool>,
    calendar: Option<RawCalendar>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a map (startTime, timeZone)"
)]
struct RawCalendar {
    start_time: Option<String>,
    time_zone: Option<String>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a map (an objective)"
)]
struct RawObjective {
    display_name: Option<String>,
    name: Option<String>,
    op: Option<String>,
    value: Option<f64>,
    target: Option<f64>,
    target_percent: Option<f64>,
    time_slice_target: Option<f64>,
    time_slice_window: Option<Value>,
    // Composite SLOs (go-sdk): recognised, to be refused with a reason.
    indicator: Option<de::IgnoredAny>,
    indicator_ref: Option<de::IgnoredAny>,
    composite_weight: Option<de::IgnoredAny>,
}

/// An `alertPolicies` item: a plain name (the v1 schema's form) or a map (`alertPolicyRef`,
/// `targetRef`, or an inline AlertPolicy).
enum RawSloPolicy {
    Name(String),
    Map(Box<RawSloPolicyMap>),
}

impl<'de> Deserialize<'de> for RawSloPolicy {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PolicyVisitor;
        impl<'de> Visitor<'de> for PolicyVisitor {
            type Value = RawSloPolicy;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an AlertPolicy name, {alertPolicyRef: name} or an inline AlertPolicy")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawSloPolicy, E> {
                Ok(RawSloPolicy::Name(v.to_owned()))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawSloPolicy, A::Error> {
                RawSloPolicyMap::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|map| RawSloPolicy::Map(Box::new(map)))
            }
        }
        deserializer.deserialize_any(PolicyVisitor)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSloPolicyMap {
    alert_policy_ref: Option<String>,
    target_ref: Option<String>,
    kind: Option<String>,
    metadata: Option<RawMetadata>,
    spec: Option<RawPolicySpec>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a map (an SLI spec)"
)]
struct RawSliSpec {
    description: Option<String>,
    threshold_metric: Option<RawMetric>,
    ratio_metric: Option<RawRatio>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a map (metricSource)"
)]
struct RawMetric {
    metric_source: RawMetricSource,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a map (metricSourceRef, type, spec)"
)]
struct RawMetricSource {
    metric_source_ref: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    spec: Option<Value>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a map (a ratioMetric)"
)]
struct RawRatio {
    // Whether the good/bad/total series are counters: nines reads counts per slice either way.
    #[serde(rename = "counter")]
    _counter: Option<bool>,
    good: Option<RawMetric>,
    bad: Option<RawMetric>,
    total: Option<RawMetric>,
    raw_type: Option<String>,
    raw: Option<RawMetric>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a map (a Service spec)"
)]
struct RawServiceSpec {
    description: Option<String>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a map (a DataSource spec)"
)]
struct RawDataSourceSpec {
    description: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    connection_details: Option<Value>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a map (an AlertPolicy spec)"
)]
struct RawPolicySpec {
    description: Option<String>,
    alert_when_no_data: Option<bool>,
    alert_when_resolved: Option<bool>,
    alert_when_breaching: Option<bool>,
    conditions: Option<Vec<RawConditionItem>>,
    notification_targets: Option<Vec<RawTargetItem>>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a map (conditionRef, or an inline AlertCondition)"
)]
struct RawConditionItem {
    condition_ref: Option<String>,
    // v1alpha's `operator: and`, still in the v1 spec cases: accepted and ignored.
    #[serde(rename = "operator")]
    _operator: Option<de::IgnoredAny>,
    kind: Option<String>,
    metadata: Option<RawMetadata>,
    spec: Option<RawConditionSpec>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a map (targetRef, or an inline AlertNotificationTarget)"
)]
struct RawTargetItem {
    target_ref: Option<String>,
    kind: Option<String>,
    metadata: Option<RawMetadata>,
    spec: Option<RawTargetSpec>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a map (an AlertCondition spec)"
)]
struct RawConditionSpec {
    description: Option<String>,
    severity: Option<String>,
    condition: Option<RawCondition>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a map (kind, op, threshold, lookbackWindow, alertAfter)"
)]
struct RawCondition {
    kind: Option<String>,
    op: Option<String>,
    threshold: Option<f64>,
    lookback_window: Option<String>,
    alert_after: Option<String>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a map (an AlertNotificationTarget spec)"
)]
struct RawTargetSpec {
    description: Option<String>,
    target: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Checks: each pushes its problems and returns what it could build

/// `metadata`, checked.
struct Meta {
    name: String,
    display_name: Option<String>,
    labels: BTreeMap<String, Vec<String>>,
}

fn check_metadata(raw: RawMetadata, path: &str, p: &mut Problems) -> Meta {
    check_name(&raw.name, &join(path, "name"), p);
    if raw.display_name.as_deref() == Some("") {
        p.push(join(path, "displayName"), "must not be empty");
    }
    let labels = check_labels(raw.labels, &join(path, "labels"), p);
    // Annotations are free-form key/values: accepted as written, not kept.
    let _ = raw.annotations;
    Meta {
        name: raw.name,
        display_name: raw.display_name,
        labels,
    }
}

/// A name as the v1 schema has it: `^[a-z0-9][a-z0-9.|/\\-]*$`, at most 255 characters.
fn check_name(name: &str, path: &str, p: &mut Problems) {
    let mut chars = name.chars();
    let valid = name.len() <= 255
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || ".|/\\-".contains(c));
    if !valid {
        p.push(
            path,
            format!(
                "{name:?} is not a valid name (lowercase letters, digits and . | / \\ -, starting with a letter or digit, at most 255 characters)"
            ),
        );
    }
}

fn check_labels(
    raw: Option<Mapping>,
    path: &str,
    p: &mut Problems,
) -> BTreeMap<String, Vec<String>> {
    let mut labels = BTreeMap::new();
    for (key, value) in raw.unwrap_or_default() {
        let Some(key) = scalar_string(&key) else {
            p.push(
                path,
                format!("label keys are strings, not {}", describe(&key)),
            );
            continue;
        };
        let values = match value {
            Value::Null => Vec::new(),
            Value::Sequence(items) => items
                .iter()
                .filter_map(|item| {
                    let s = scalar_string(item);
                    if s.is_none() {
                        p.push(
                            join(path, &key),
                            format!(
                                "a label value is a string or a list of strings, not a list of {}",
                                describe(item)
                            ),
                        );
                    }
                    s
                })
                .collect(),
            other => match scalar_string(&other) {
                Some(s) => vec![s],
                None => {
                    p.push(
                        join(path, &key),
                        format!(
                            "a label value is a string or a list of strings, not {}",
                            describe(&other)
                        ),
                    );
                    continue;
                }
            },
        };
        labels.insert(key, values);
    }
    labels
}

fn scalar_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn check_description(description: Option<&str>, path: &str, p: &mut Problems) {
    if let Some(d) = description {
        let n = d.chars().count();
        if n > MAX_DESCRIPTION {
            p.push(
                path,
                format!("is {n} characters long; at most {MAX_DESCRIPTION} are allowed"),
            );
        }
    }
}

fn check_op(op: &str, path: &str, p: &mut Problems) -> Option<Op> {
    match op {
        "lt" => Some(Op::Lt),
        "lte" => Some(Op::Lte),
        "gt" => Some(Op::Gt),
        "gte" => Some(Op::Gte),
        _ => {
            p.push(path, format!("{op:?} is not one of lt, lte, gt, gte"));
            None
        }
    }
}

fn check_span(s: &str, path: &str, p: &mut Problems) -> Option<Span> {
    s.parse()
        .map_err(|reason: String| p.push(path, reason))
        .ok()
}

fn check_finite(x: f64, path: &str, p: &mut Problems) -> Option<f64> {
    if x.is_finite() {
        Some(x)
    } else {
        p.push(path, format!("{x} is not a finite number"));
        None
    }
}

fn check_slo(spec: RawSloSpec, meta: &Meta, p: &mut Problems) -> Option<SloDef> {
    check_description(spec.description.as_deref(), "spec.description", p);
    let service = match spec.service {
        Some(service) => {
            check_name(&service, "spec.service", p);
            Some(service)
        }
        None => {
            p.push("spec.service", REQUIRED);
            None
        }
    };
    let indicator = match (spec.indicator, spec.indicator_ref) {
        (Some(_), Some(_)) => {
            p.push(
                "spec",
                "has both indicator and indicatorRef; give exactly one",
            );
            None
        }
        (None, None) => {
            p.push(
                "spec.indicator",
                "is required (an inline SLI), or indicatorRef (the name of an SLI)",
            );
            None
        }
        (Some(inline), None) => {
            let meta = check_metadata(inline.metadata, "spec.indicator.metadata", p);
            check_sli_spec(inline.spec, "spec.indicator.spec", p).map(|metric| {
                IndicatorUse::Inline(Indicator {
                    name: meta.name,
                    metric,
                })
            })
        }
        (None, Some(name)) => {
            check_name(&name, "spec.indicatorRef", p);
            Some(IndicatorUse::Ref(name))
        }
    };
    let window = check_window(spec.time_window, p);
    let budgeting = match spec.budgeting_method.as_deref() {
        None => {
            p.push(
                "spec.budgetingMethod",
                format!("{REQUIRED} (Occurrences, Timeslices or RatioTimeslices)"),
            );
            None
        }
        Some("Occurrences") => Some(BudgetingMethod::Occurrences),
        Some("Timeslices") => Some(BudgetingMethod::Timeslices),
        Some("RatioTimeslices") => Some(BudgetingMethod::RatioTimeslices),
        Some(other) => {
            p.push(
                "spec.budgetingMethod",
                format!("{other:?} is not one of Occurrences, Timeslices, RatioTimeslices"),
            );
            None
        }
    };
    let raw_objectives = spec.objectives.unwrap_or_default();
    if raw_objectives.is_empty() {
        p.push("spec.objectives", "is required (at least one objective)");
    }
    // An inline threshold SLI needs `op` and `value` on each objective (for an SLI by
    // reference this is checked when resolving).
    let threshold_sli = matches!(
        &indicator,
        Some(IndicatorUse::Inline(Indicator {
            metric: IndicatorMetric::Threshold(_),
            ..
        }))
    );
    let objectives: Vec<ObjectiveDef> = raw_objectives
        .into_iter()
        .enumerate()
        .filter_map(|(i, o)| {
            check_objective(
                o,
                &format!("spec.objectives[{i}]"),
                i + 1,
                budgeting,
                threshold_sli,
                p,
            )
        })
        .collect();
    let mut alert_policies = Vec::new();
    for (i, item) in spec
        .alert_policies
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        if let Some(used) = check_slo_policy(item, &format!("spec.alertPolicies[{i}]"), p) {
            alert_policies.push(used);
        }
    }
    Some(SloDef {
        display_name: meta.display_name.clone(),
        service: service?,
        description: spec.description,
        labels: meta.labels.clone(),
        indicator: indicator?,
        window: window?,
        budgeting: budgeting?,
        objectives,
        alert_policies,
    })
}

fn check_window(raw: Option<Vec<RawTimeWindow>>, p: &mut Problems) -> Option<TimeWindow> {
    let path = "spec.timeWindow";
    let mut windows = match raw {
        None => {
            p.push(path, format!("{REQUIRED} (a list of one window)"));
            return None;
        }
        Some(windows) if windows.len() != 1 => {
            p.push(
                path,
                format!("has {} items; exactly one is required", windows.len()),
            );
            return None;
        }
        Some(windows) => windows,
    };
    let window = windows.remove(0);
    let path = "spec.timeWindow[0]";
    let span = match &window.duration {
        Some(duration) => check_span(duration, &join(path, "duration"), p),
        None => {
            p.push(join(path, "duration"), REQUIRED);
            None
        }
    };
    match (window.is_rolling.unwrap_or(false), window.calendar) {
        (true, Some(_)) => {
            p.push(
                join(path, "calendar"),
                "is only for calendar windows (isRolling: false)",
            );
            None
        }
        (true, None) => Some(TimeWindow::Rolling { span: span? }),
        (false, None) => {
            p.push(
                join(path, "calendar"),
                "is required (startTime and timeZone) when isRolling is false or absent",
            );
            None
        }
        (false, Some(calendar)) => {
            let path = join(path, "calendar");
            let start = match calendar.start_time {
                Some(s) => {
                    let start = parse_start(&s);
                    if start.is_none() {
                        p.push(
                            join(&path, "startTime"),
                            format!("{s:?} is not a date and time YYYY-MM-DD HH:MM:SS"),
                        );
                    }
                    start
                }
                None => {
                    p.push(join(&path, "startTime"), REQUIRED);
                    None
                }
            };
            let time_zone = match calendar.time_zone {
                Some(z) => {
                    let tz = z.parse::<Tz>().ok();
                    if tz.is_none() {
                        p.push(
                            join(&path, "timeZone"),
                            format!("{z:?} is not an IANA time zone name (such as Etc/UTC or America/New_York)"),
                        );
                    }
                    tz
                }
                None => {
                    p.push(join(&path, "timeZone"), REQUIRED);
                    None
                }
            };
            Some(TimeWindow::Calendar {
                span: span?,
                start: start?,
                time_zone: time_zone?,
            })
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS`, exactly.
fn parse_start(s: &str) -> Option<NaiveDateTime> {
    let shape = s.len() == 19
        && s.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            10 => b == b' ',
            13 | 16 => b == b':',
            _ => b.is_ascii_digit(),
        });
    if !shape {
        return None;
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").ok()
}

fn check_objective(
    o: RawObjective,
    path: &str,
    n: usize,
    method: Option<BudgetingMethod>,
    threshold_sli: bool,
    p: &mut Problems,
) -> Option<ObjectiveDef> {
    for (field, present) in [
        ("indicator", o.indicator.is_some()),
        ("indicatorRef", o.indicator_ref.is_some()),
        ("compositeWeight", o.composite_weight.is_some()),
    ] {
        if present {
            p.push(
                join(path, field),
                "composite SLOs (an indicator per objective) are not supported",
            );
        }
    }
    if o.display_name.as_deref() == Some("") {
        p.push(join(path, "displayName"), "must not be empty");
    }
    let name = o
        .display_name
        .clone()
        .filter(|n| !n.is_empty())
        .or_else(|| o.name.clone().filter(|n| !n.is_empty()))
        .unwrap_or_else(|| format!("objective-{n}"));
    let op =
        o.op.as_deref()
            .and_then(|op| check_op(op, &join(path, "op"), p));
    let value = o
        .value
        .and_then(|v| check_finite(v, &join(path, "value"), p));
    if threshold_sli {
        for (field, given) in [("op", o.op.is_some()), ("value", o.value.is_some())] {
            if !given {
                p.push(
                    join(path, field),
                    "is required with a thresholdMetric indicator",
                );
            }
        }
    }
    let target = match (o.target, o.target_percent) {
        (Some(_), Some(_)) => {
            p.push(path, "has both target and targetPercent; give one");
            None
        }
        (None, None) => {
            p.push(
                join(path, "target"),
                format!("{REQUIRED} (or targetPercent)"),
            );
            None
        }
        (Some(t), None) => {
            if t > 0.0 && t < 1.0 {
                Some(t)
            } else {
                p.push(
                    join(path, "target"),
                    format!("{t} is not a fraction between 0 and 1 (0 < target < 1)"),
                );
                None
            }
        }
        (None, Some(pct)) => {
            if pct > 0.0 && pct < 100.0 {
                Some(pct / 100.0)
            } else {
                p.push(
                    join(path, "targetPercent"),
                    format!(
                        "{pct} is not a percentage between 0 and 100 (0 < targetPercent < 100)"
                    ),
                );
                None
            }
        }
    };
    let time_slice_target = match o.time_slice_target {
        Some(x) if x > 0.0 && x <= 1.0 => Some(x),
        Some(x) => {
            p.push(
                join(path, "timeSliceTarget"),
                format!("{x} is not a fraction in (0, 1]"),
            );
            None
        }
        None => {
            if method == Some(BudgetingMethod::Timeslices) {
                p.push(
                    join(path, "timeSliceTarget"),
                    "is required with budgetingMethod Timeslices",
                );
            }
            None
        }
    };
    let window_path = join(path, "timeSliceWindow");
    let time_slice_window = match o.time_slice_window {
        None | Some(Value::Null) => {
            if let Some(m @ (BudgetingMethod::Timeslices | BudgetingMethod::RatioTimeslices)) =
                method
            {
                p.push(
                    &window_path,
                    format!("is required with budgetingMethod {m:?}"),
                );
            }
            None
        }
        Some(Value::String(s)) => check_span(&s, &window_path, p),
        // A bare number is minutes (the v1 spec's README).
        Some(Value::Number(n)) => match n
            .as_u64()
            .and_then(|m| u32::try_from(m).ok())
            .filter(|m| *m > 0)
        {
            Some(minutes) => Some(Span::minutes(minutes)),
            None => {
                p.push(
                    &window_path,
                    format!("{n} is not a whole positive number of minutes"),
                );
                None
            }
        },
        Some(other) => {
            p.push(
                &window_path,
                format!(
                    "{} is not a duration shorthand (such as 1m or 5m) or a number of minutes",
                    describe(&other)
                ),
            );
            None
        }
    };
    Some(ObjectiveDef {
        name,
        target: target?,
        op,
        value,
        time_slice_target,
        time_slice_window,
    })
}

fn check_slo_policy(item: RawSloPolicy, path: &str, p: &mut Problems) -> Option<PolicyUse> {
    let map = match item {
        RawSloPolicy::Name(name) => {
            check_name(&name, path, p);
            return Some(PolicyUse::Ref {
                name,
                path: path.to_owned(),
            });
        }
        RawSloPolicy::Map(map) => *map,
    };
    let inline = map.kind.is_some() || map.metadata.is_some() || map.spec.is_some();
    let reference = match (map.alert_policy_ref, map.target_ref) {
        (Some(_), Some(_)) => {
            p.push(path, "has both alertPolicyRef and targetRef; give one");
            return None;
        }
        (Some(name), None) => Some((name, join(path, "alertPolicyRef"))),
        (None, Some(name)) => Some((name, join(path, "targetRef"))),
        (None, None) => None,
    };
    match (reference, inline) {
        (Some(_), true) => {
            p.push(path, "give either alertPolicyRef or an inline AlertPolicy (kind, metadata, spec), not both");
            None
        }
        (Some((name, ref_path)), false) => {
            check_name(&name, &ref_path, p);
            Some(PolicyUse::Ref {
                name,
                path: ref_path,
            })
        }
        (None, false) => {
            p.push(
                path,
                "needs alertPolicyRef or an inline AlertPolicy (kind, metadata, spec)",
            );
            None
        }
        (None, true) => {
            check_inline_kind(map.kind.as_deref(), "AlertPolicy", path, p);
            let meta = inline_metadata(map.metadata, path, p);
            let Some(spec) = map.spec else {
                p.push(join(path, "spec"), REQUIRED);
                return None;
            };
            let policy = check_policy_spec(
                spec,
                &join(path, "spec"),
                meta?.name,
                &format!("{path}."),
                p,
            )?;
            Some(PolicyUse::Inline {
                policy,
                path: path.to_owned(),
            })
        }
    }
}

fn check_inline_kind(kind: Option<&str>, expected: &str, path: &str, p: &mut Problems) {
    match kind {
        None => p.push(join(path, "kind"), format!("{REQUIRED} ({expected})")),
        Some(k) if k == expected => {}
        Some(k) => p.push(join(path, "kind"), format!("{k:?} is not {expected}")),
    }
}

fn inline_metadata(raw: Option<RawMetadata>, path: &str, p: &mut Problems) -> Option<Meta> {
    match raw {
        Some(raw) => Some(check_metadata(raw, &join(path, "metadata"), p)),
        None => {
            p.push(join(path, "metadata"), REQUIRED);
            None
        }
    }
}

/// An AlertPolicy spec at `path`; `root` is the prefix of the policy's root in the document
/// (empty for an AlertPolicy document), so that condition references keep paths relative to
/// the policy's root.
fn check_policy_spec(
    spec: RawPolicySpec,
    path: &str,
    name: String,
    root: &str,
    p: &mut Problems,
) -> Option<PolicyDef> {
    check_description(spec.description.as_deref(), &join(path, "description"), p);
    let conditions_path = join(path, "conditions");
    let raw_conditions = spec.conditions.unwrap_or_default();
    match raw_conditions.len() {
        0 => p.push(&conditions_path, format!("{REQUIRED} (one condition)")),
        1 => {}
        n => p.push(
            &conditions_path,
            format!("has {n} conditions; OpenSLO v1 allows exactly one"),
        ),
    }
    let mut conditions = Vec::new();
    for (i, item) in raw_conditions.into_iter().enumerate() {
        let item_path = format!("{conditions_path}[{i}]");
        let inline = item.kind.is_some() || item.metadata.is_some() || item.spec.is_some();
        match (item.condition_ref, inline) {
            (Some(_), true) => p.push(
                &item_path,
                "give either conditionRef or an inline AlertCondition (kind, metadata, spec), not both",
            ),
            (Some(name), false) => {
                let ref_path = join(&item_path, "conditionRef");
                check_name(&name, &ref_path, p);
                let relative = ref_path.strip_prefix(root).unwrap_or(&ref_path).to_owned();
                conditions.push(ConditionUse::Ref { name, path: relative });
            }
            (None, false) => p.push(&item_path, "needs conditionRef or an inline AlertCondition (kind, metadata, spec)"),
            (None, true) => {
                check_inline_kind(item.kind.as_deref(), "AlertCondition", &item_path, p);
                let meta = inline_metadata(item.metadata, &item_path, p);
                match item.spec {
                    None => p.push(join(&item_path, "spec"), REQUIRED),
                    Some(spec) => {
                        let name = meta.map(|m| m.name).unwrap_or_default();
                        if let Some(condition) = check_condition_spec(spec, &join(&item_path, "spec"), name, p) {
                            conditions.push(ConditionUse::Inline(condition));
                        }
                    }
                }
            }
        }
    }
    let targets_path = join(path, "notificationTargets");
    let raw_targets = spec.notification_targets.unwrap_or_default();
    if raw_targets.is_empty() {
        p.push(
            &targets_path,
            format!("{REQUIRED} (at least one targetRef or inline AlertNotificationTarget)"),
        );
    }
    let mut notification_targets = Vec::new();
    for (i, item) in raw_targets.into_iter().enumerate() {
        let item_path = format!("{targets_path}[{i}]");
        let inline = item.kind.is_some() || item.metadata.is_some() || item.spec.is_some();
        match (item.target_ref, inline) {
            (Some(_), true) => p.push(
                &item_path,
                "give either targetRef or an inline AlertNotificationTarget (kind, metadata, spec), not both",
            ),
            (Some(name), false) => {
                check_name(&name, &join(&item_path, "targetRef"), p);
                notification_targets.push(name);
            }
            (None, false) => p.push(&item_path, "needs targetRef or an inline AlertNotificationTarget (kind, metadata, spec)"),
            (None, true) => {
                check_inline_kind(item.kind.as_deref(), "AlertNotificationTarget", &item_path, p);
                let meta = inline_metadata(item.metadata, &item_path, p);
                match item.spec {
                    None => p.push(join(&item_path, "spec"), REQUIRED),
                    Some(spec) => {
                        check_target_spec(spec, &join(&item_path, "spec"), p);
                    }
                }
                if let Some(meta) = meta {
                    notification_targets.push(meta.name);
                }
            }
        }
    }
    Some(PolicyDef {
        name,
        when_breaching: spec.alert_when_breaching.unwrap_or(false),
        when_resolved: spec.alert_when_resolved.unwrap_or(false),
        when_no_data: spec.alert_when_no_data.unwrap_or(false),
        conditions,
        notification_targets,
    })
}

fn check_condition_spec(
    spec: RawConditionSpec,
    path: &str,
    name: String,
    p: &mut Problems,
) -> Option<AlertCondition> {
    check_description(spec.description.as_deref(), &join(path, "description"), p);
    let severity = match spec.severity {
        None => {
            p.push(join(path, "severity"), REQUIRED);
            None
        }
        Some(s) if s.is_empty() => {
            p.push(join(path, "severity"), "must not be empty");
            None
        }
        Some(s) => Some(s),
    };
    let path = join(path, "condition");
    let Some(c) = spec.condition else {
        p.push(&path, REQUIRED);
        return None;
    };
    // `kind` defaults to burnrate (the v1 README), the only kind there is.
    if let Some(kind) = c.kind.as_deref().filter(|k| *k != "burnrate") {
        p.push(
            join(&path, "kind"),
            format!("{kind:?} is not supported; the only condition kind is burnrate"),
        );
    }
    let op = match &c.op {
        Some(op) => check_op(op, &join(&path, "op"), p),
        None => {
            p.push(
                join(&path, "op"),
                format!("{REQUIRED} (lt, lte, gt or gte)"),
            );
            None
        }
    };
    let threshold = match c.threshold {
        Some(t) => check_finite(t, &join(&path, "threshold"), p),
        None => {
            p.push(join(&path, "threshold"), REQUIRED);
            None
        }
    };
    let mut span = |value: &Option<String>, field: &str| match value {
        Some(s) => check_span(s, &join(&path, field), p),
        None => {
            p.push(join(&path, field), REQUIRED);
            None
        }
    };
    let lookback = span(&c.lookback_window, "lookbackWindow");
    let alert_after = span(&c.alert_after, "alertAfter");
    Some(AlertCondition {
        name,
        severity: severity?,
        op: op?,
        threshold: threshold?,
        lookback: lookback?,
        alert_after: alert_after?,
    })
}

fn check_target_spec(spec: RawTargetSpec, path: &str, p: &mut Problems) -> Option<()> {
    check_description(spec.description.as_deref(), &join(path, "description"), p);
    match spec.target.as_deref() {
        None => p.push(join(path, "target"), REQUIRED),
        Some("") => p.push(join(path, "target"), "must not be empty"),
        Some(_) => {}
    }
    Some(())
}

fn check_data_source(spec: RawDataSourceSpec, p: &mut Problems) -> Option<String> {
    check_description(spec.description.as_deref(), "spec.description", p);
    match spec.connection_details {
        None => p.push("spec.connectionDetails", REQUIRED),
        Some(Value::Mapping(_) | Value::Sequence(_)) => {}
        Some(other) => p.push(
            "spec.connectionDetails",
            format!(
                "is a map or a list of the connection's fields, not {}",
                describe(&other)
            ),
        ),
    }
    match spec.kind {
        None => {
            p.push("spec.type", REQUIRED);
            None
        }
        Some(kind) if kind.is_empty() => {
            p.push("spec.type", "must not be empty");
            None
        }
        Some(kind) => Some(kind),
    }
}

fn check_sli_spec(spec: RawSliSpec, path: &str, p: &mut Problems) -> Option<IndicatorMetric> {
    check_description(spec.description.as_deref(), &join(path, "description"), p);
    match (spec.threshold_metric, spec.ratio_metric) {
        (Some(_), Some(_)) => {
            p.push(
                path,
                "has both thresholdMetric and ratioMetric; give exactly one",
            );
            None
        }
        (None, None) => {
            p.push(path, "needs thresholdMetric or ratioMetric");
            None
        }
        (Some(threshold), None) => check_source(
            threshold.metric_source,
            &join(path, "thresholdMetric.metricSource"),
            p,
        )
        .map(IndicatorMetric::Threshold),
        (None, Some(ratio)) => {
            check_ratio(ratio, &join(path, "ratioMetric"), p).map(IndicatorMetric::Ratio)
        }
    }
}

fn check_ratio(ratio: RawRatio, path: &str, p: &mut Problems) -> Option<RatioMetric> {
    let source = |metric: RawMetric, field: &str, p: &mut Problems| {
        check_source(
            metric.metric_source,
            &join(path, &format!("{field}.metricSource")),
            p,
        )
    };
    if let Some(raw) = ratio.raw {
        if ratio.good.is_some() || ratio.bad.is_some() || ratio.total.is_some() {
            p.push(path, "raw cannot be combined with good, bad or total");
            return None;
        }
        let kind = match ratio.raw_type.as_deref() {
            Some("success") => Some(RawKind::Success),
            Some("failure") => Some(RawKind::Failure),
            Some(other) => {
                p.push(
                    join(path, "rawType"),
                    format!("{other:?} is not success or failure"),
                );
                None
            }
            None => {
                p.push(
                    join(path, "rawType"),
                    format!("{REQUIRED} with raw (success or failure)"),
                );
                None
            }
        };
        let raw = source(raw, "raw", p);
        return Some(RatioMetric::Raw {
            raw: raw?,
            kind: kind?,
        });
    }
    if ratio.raw_type.is_some() {
        p.push(join(path, "rawType"), "is only used with raw");
    }
    let numerator = match (ratio.good, ratio.bad) {
        (Some(_), Some(_)) => {
            p.push(path, "has both good and bad; give exactly one (with total)");
            return None;
        }
        (None, None) => {
            p.push(
                path,
                "needs good or bad (with total), or raw (with rawType)",
            );
            return None;
        }
        (Some(good), None) => (true, source(good, "good", p)),
        (None, Some(bad)) => (false, source(bad, "bad", p)),
    };
    let total = match ratio.total {
        Some(total) => source(total, "total", p),
        None => {
            p.push(join(path, "total"), format!("{REQUIRED} with good or bad"));
            None
        }
    };
    match numerator {
        (true, good) => Some(RatioMetric::Good {
            good: good?,
            total: total?,
        }),
        (false, bad) => Some(RatioMetric::Bad {
            bad: bad?,
            total: total?,
        }),
    }
}

fn check_source(raw: RawMetricSource, path: &str, p: &mut Problems) -> Option<MetricSource> {
    if let Some(name) = &raw.metric_source_ref {
        check_name(name, &join(path, "metricSourceRef"), p);
    }
    if raw.kind.as_deref() == Some("") {
        p.push(join(path, "type"), "must not be empty");
    }
    if raw.kind.is_none() && raw.metric_source_ref.is_none() {
        p.push(path, "needs type or metricSourceRef (a DataSource)");
    }
    let spec_path = join(path, "spec");
    let spec = match raw.spec {
        Some(Value::Mapping(map)) => spec_map(map, &spec_path, p),
        None => {
            p.push(
                &spec_path,
                format!("{REQUIRED} (a map of the data source's query fields)"),
            );
            return None;
        }
        Some(other) => {
            p.push(
                &spec_path,
                format!(
                    "is a map of the data source's query fields, not {}",
                    describe(&other)
                ),
            );
            return None;
        }
    };
    Some(MetricSource {
        kind: raw.kind.unwrap_or_default(),
        reference: raw.metric_source_ref,
        spec,
    })
}

fn spec_map(map: Mapping, path: &str, p: &mut Problems) -> BTreeMap<String, SpecValue> {
    let mut out = BTreeMap::new();
    for (key, value) in map {
        match scalar_string(&key) {
            Some(key) => {
                let value = spec_value(value, &join(path, &key), p);
                out.insert(key, value);
            }
            None => p.push(path, format!("keys are strings, not {}", describe(&key))),
        }
    }
    out
}

fn spec_value(value: Value, path: &str, p: &mut Problems) -> SpecValue {
    match value {
        Value::Null => SpecValue::Null,
        Value::Bool(b) => SpecValue::Bool(b),
        Value::Number(n) => SpecValue::Number(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => SpecValue::String(s),
        Value::Sequence(items) => SpecValue::List(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| spec_value(item, &format!("{path}[{i}]"), p))
                .collect(),
        ),
        Value::Mapping(map) => SpecValue::Map(spec_map(map, path, p)),
        Value::Tagged(tagged) => spec_value(tagged.value, path, p),
    }
}
