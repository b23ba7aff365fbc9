//! OTLP/gRPC front doors: traces, logs and metrics, on the same port as `nines.v1`.
//!
//! Mapping (docs/otlp.md): SERVER and CONSUMER spans become request events; log records
//! named `deployment` or `incident` become deploy and incident events; metrics are refused.
//! Everything not taken is answered through OTLP `partial_success` (a count and a message
//! naming the first items and why) and counted in
//! `nines_ingest_otlp_items_rejected_total{signal,reason}` — never dropped silently. OTLP
//! has no idempotency key: an export retried after an ambiguous error may count twice.

use std::borrow::Cow;

use nines_proto::v1::{
    Commit, DeployEvent, DeployOutcome, IncidentEvent, PushRequest, RequestEvent, Resource,
};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::metric;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;

use nines_record::{MappedAttribute, MappedEvents, MappedRequest, Text};

use crate::config::Limits;
use crate::validate::{TimeWindow, check_request, check_resource, validate};
use crate::{Error, Result};

/// Rejection messages quoted in one `partial_success.error_message`.
const REASONS_QUOTED: usize = 5;

/// What a mapping kept and what it refused.
#[derive(Debug, PartialEq)]
pub struct Mapped<P = PushRequest> {
    /// One push per OTLP resource with anything valid in it.
    pub pushes: Vec<P>,
    /// Items refused (spans, log records or data points).
    pub rejected: u64,
    /// Why, item by item (`path: reason`), as many as fit in a message.
    pub reasons: Vec<String>,
}

impl<P> Default for Mapped<P> {
    fn default() -> Self {
        Self {
            pushes: Vec::new(),
            rejected: 0,
            reasons: Vec::new(),
        }
    }
}

/// The push of one OTLP resource's spans: the push (its resource) and its request events,
/// kept apart so that the events can borrow the export's bytes.
#[derive(Debug, Default, PartialEq)]
pub struct SpanPush<'a> {
    pub head: PushRequest,
    pub events: MappedEvents<'a>,
}

impl SpanPush<'_> {
    /// The push as prost's type, its request events in it.
    pub fn to_push(&self) -> PushRequest {
        PushRequest {
            requests: self.events.to_events(),
            ..self.head.clone()
        }
    }
}

impl Mapped<SpanPush<'_>> {
    /// The same answer in prost's types (the tests' comparisons, the fuzz target's).
    pub fn to_pushes(&self) -> Mapped {
        Mapped {
            pushes: self.pushes.iter().map(SpanPush::to_push).collect(),
            rejected: self.rejected,
            reasons: self.reasons.clone(),
        }
    }
}

impl<P> Mapped<P> {
    fn reject(&mut self, signal: &'static str, label: &'static str, why: impl FnOnce() -> String) {
        self.rejected += 1;
        crate::metrics::otlp_item_rejected(signal, label);
        if self.reasons.len() < REASONS_QUOTED {
            self.reasons.push(why());
        }
    }

    /// The `partial_success.error_message`: empty when nothing was refused.
    pub fn message(&self, what: &str) -> String {
        if self.rejected == 0 {
            return String::new();
        }
        let more = self.rejected.saturating_sub(self.reasons.len() as u64);
        let mut m = format!(
            "{} {what} rejected: {}",
            self.rejected,
            self.reasons.join("; ")
        );
        if more > 0 {
            m.push_str(&format!("; and {more} more"));
        }
        m
    }
}

/// An attribute's value as the mapping reads it: text borrowed from the wire, or a value
/// prost decoded.
#[derive(Debug, Clone, Copy)]
pub(crate) enum AttrRef<'a> {
    Str(&'a str),
    Value(&'a any_value::Value),
}

impl<'a> AttrRef<'a> {
    /// The value as text (`value_string`), borrowed when it is text already.
    fn text(self) -> Cow<'a, str> {
        match self {
            AttrRef::Str(s) => Cow::Borrowed(s),
            AttrRef::Value(any_value::Value::StringValue(s)) => Cow::Borrowed(s),
            AttrRef::Value(v) => Cow::Owned(value_string(v)),
        }
    }

    /// The value as an integer: an int, a decimal string, or a whole double.
    fn int(self) -> Option<i64> {
        match self {
            AttrRef::Str(s) => s.trim().parse().ok(),
            AttrRef::Value(any_value::Value::StringValue(s)) => s.trim().parse().ok(),
            AttrRef::Value(any_value::Value::IntValue(i)) => Some(*i),
            AttrRef::Value(any_value::Value::DoubleValue(d)) if d.fract() == 0.0 => Some(*d as i64),
            AttrRef::Value(_) => None,
        }
    }
}

/// The value of the first attribute named `key`, if it has one.
fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

/// [`attr`] as the mapping reads it.
fn attr_ref<'a>(attrs: &'a [KeyValue], key: &str) -> Option<AttrRef<'a>> {
    attr(attrs, key).map(AttrRef::Value)
}

fn attr_str(attrs: &[KeyValue], key: &str) -> Option<String> {
    nonempty(attr_ref(attrs, key)).map(Cow::into_owned)
}

/// An attribute's text, unless it is absent or empty.
fn nonempty(value: Option<AttrRef<'_>>) -> Option<Cow<'_, str>> {
    value.map(AttrRef::text).filter(|s| !s.is_empty())
}

/// An attribute value as text (arrays comma-separated, bytes as hex).
pub(crate) fn value_string(v: &any_value::Value) -> String {
    use any_value::Value as V;
    match v {
        V::StringValue(s) => s.clone(),
        V::BoolValue(b) => b.to_string(),
        V::IntValue(i) => i.to_string(),
        V::DoubleValue(d) => d.to_string(),
        V::BytesValue(b) => Text::hex(b).into_owned(),
        V::ArrayValue(a) => a
            .values
            .iter()
            .filter_map(|v| v.value.as_ref())
            .map(value_string)
            .collect::<Vec<_>>()
            .join(","),
        V::KvlistValue(kv) => kv
            .values
            .iter()
            .map(|kv| {
                let v = kv.value.as_ref().and_then(|v| v.value.as_ref());
                format!("{}={}", kv.key, v.map(value_string).unwrap_or_default())
            })
            .collect::<Vec<_>>()
            .join(","),
        #[allow(unreachable_patterns, reason = "profiling-only variants")]
        _ => String::new(),
    }
}

/// An attribute's decoded value as the text a mapped event keeps ([`value_string`]'s): a
/// string moved, an int's digits made in place.
pub(crate) fn value_text(v: any_value::Value) -> Text<'static> {
    match v {
        any_value::Value::StringValue(s) => Text::Owned(s),
        any_value::Value::IntValue(i) => Text::int(i),
        v => Text::Owned(value_string(&v)),
    }
}

/// service.name, service.version and the environment of an OTLP resource.
fn resource_of(attrs: &[KeyValue]) -> Option<Resource> {
    Some(Resource {
        tenant: String::new(),
        service: attr_str(attrs, "service.name")?,
        environment: attr_str(attrs, "deployment.environment.name")
            .or_else(|| attr_str(attrs, "deployment.environment"))
            .unwrap_or_default(),
        version: attr_str(attrs, "service.version").unwrap_or_default(),
    })
}

/// The resource of an OTLP resource's attributes, checked like a native resource; or the
/// metric label and the reason every item of it is refused.
fn checked_resource(
    attrs: &[KeyValue],
    limits: &Limits,
) -> std::result::Result<Resource, (&'static str, String)> {
    let mut resource = resource_of(attrs).ok_or((
        "no_service",
        "resource attribute service.name is required".to_owned(),
    ))?;
    check_resource(&mut resource, limits).map_err(|e| {
        // Name the OTLP attribute, not the native field.
        let (field, reason) = e.field_and_reason();
        let attribute = match field {
            "resource.service" => "service.name",
            "resource.environment" => "deployment.environment.name",
            "resource.version" => "service.version",
            other => other,
        };
        (
            "invalid",
            format!("resource attribute {attribute}: {reason}"),
        )
    })?;
    Ok(resource)
}

/// A span as the mapping reads it: prost's [`Span`], or one read off the wire
/// ([`crate::otlp_wire`]), whose text lives for `'a`. The rules of docs/otlp.md live in
/// [`map_span_fields`], once.
pub(crate) trait SpanFields<'a> {
    /// `kind` as sent (any int32).
    fn kind(&self) -> i32;
    fn start_time_unix_nano(&self) -> u64;
    fn end_time_unix_nano(&self) -> u64;
    /// Whether `status.code` is ERROR.
    fn status_is_error(&self) -> bool;
    /// The value of the first attribute named `key`, if it has a value.
    fn attr(&self, key: &str) -> Option<AttrRef<'_>>;
    fn trace_id(&self) -> &[u8];
    fn name(&self) -> &str;
    /// The span's name; its attributes as text, in order, appended to `into` (moved or
    /// borrowed where they can be).
    fn into_name_and_attributes(self, into: &mut Vec<MappedAttribute<'a>>) -> Cow<'a, str>;
}

impl<'a> SpanFields<'a> for Span {
    fn kind(&self) -> i32 {
        self.kind
    }
    fn start_time_unix_nano(&self) -> u64 {
        self.start_time_unix_nano
    }
    fn end_time_unix_nano(&self) -> u64 {
        self.end_time_unix_nano
    }
    fn status_is_error(&self) -> bool {
        self.status
            .as_ref()
            .is_some_and(|s| s.code == StatusCode::Error as i32)
    }
    fn attr(&self, key: &str) -> Option<AttrRef<'_>> {
        attr_ref(&self.attributes, key)
    }
    fn trace_id(&self) -> &[u8] {
        &self.trace_id
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn into_name_and_attributes(self, into: &mut Vec<MappedAttribute<'a>>) -> Cow<'a, str> {
        into.extend(self.attributes.into_iter().map(|kv| {
            let value = kv.value.and_then(|v| v.value);
            (
                Cow::Owned(kv.key),
                value.map_or_else(Text::default, value_text),
            )
        }));
        Cow::Owned(self.name)
    }
}

/// A request event from a span, or why not (field within the span, reason).
/// Takes the span by value: its name and attributes move into the event without a copy.
pub fn map_span(span: Span) -> std::result::Result<RequestEvent, (String, String)> {
    let mut attributes = Vec::new();
    map_span_fields(span, &mut attributes).map(|r| r.into_event(attributes))
}

/// The span → request event rules of docs/otlp.md, whichever decoder read the span. The
/// event's attributes are appended to `attributes` (only when it is made).
pub(crate) fn map_span_fields<'a>(
    span: impl SpanFields<'a>,
    attributes: &mut Vec<MappedAttribute<'a>>,
) -> std::result::Result<MappedRequest<'a>, (String, String)> {
    let kind = SpanKind::try_from(span.kind()).unwrap_or(SpanKind::Unspecified);
    if !matches!(kind, SpanKind::Server | SpanKind::Consumer) {
        return Err((
            "kind".into(),
            format!(
                "{} spans are not requests (nines takes SERVER and CONSUMER spans)",
                kind.as_str_name().trim_start_matches("SPAN_KIND_")
            ),
        ));
    }
    let (start_ns, end_ns) = (span.start_time_unix_nano(), span.end_time_unix_nano());
    let start = i64::try_from(start_ns).map_err(|_| {
        (
            "start_time_unix_nano".to_owned(),
            format!("{start_ns} is beyond the year 2262"),
        )
    })?;
    let end = i64::try_from(end_ns).map_err(|_| {
        (
            "end_time_unix_nano".to_owned(),
            format!("{end_ns} is beyond the year 2262"),
        )
    })?;
    if end < start {
        return Err((
            "end_time_unix_nano".into(),
            format!("{end} is before start_time_unix_nano {start}"),
        ));
    }
    let text = |key| nonempty(span.attr(key));
    let int = |key| span.attr(key).and_then(AttrRef::int);
    let method = text("http.request.method").or_else(|| text("http.method"));
    let route = text("http.route");
    // (first, joiner, second): "{method} {route}", else "{rpc.service}/{rpc.method}" (read
    // only when the HTTP names are not both there).
    let parts = match (method, route) {
        (Some(m), Some(r)) => Some((m, ' ', r)),
        _ => text("rpc.service")
            .zip(text("rpc.method"))
            .map(|(s, m)| (s, '/', m)),
    };
    let status_code = int("http.response.status_code")
        .or_else(|| int("http.status_code"))
        .unwrap_or(0);
    let status_code = i32::try_from(status_code).unwrap_or(-1);
    let grpc_failed = int("rpc.grpc.status_code").is_some_and(|c| c != 0);
    let error = status_code >= 500 || grpc_failed || span.status_is_error();
    let trace_id = Text::hex(span.trace_id());
    // A span named as the semantic conventions name it ("GET /orders/{id}") lends its name.
    let operation = parts
        .filter(|(a, joiner, b)| !is_joined(span.name(), a, *joiner, b))
        .map(|(a, joiner, b)| {
            let mut op = String::with_capacity(a.len() + 1 + b.len());
            op.push_str(&a);
            op.push(joiner);
            op.push_str(&b);
            op
        });
    let first = attributes.len();
    let name = span.into_name_and_attributes(attributes);
    Ok(MappedRequest {
        time_unix_nano: start,
        operation: operation.map_or(name, Cow::Owned),
        status_code,
        error,
        duration_nano: end - start,
        trace_id,
        attributes: first..attributes.len(),
    })
}

/// Whether `name` is `a`, `joiner` and `b` put together.
fn is_joined(name: &str, a: &str, joiner: char, b: &str) -> bool {
    name.len() == a.len() + joiner.len_utf8() + b.len()
        && name.starts_with(a)
        && name[a.len()..].starts_with(joiner)
        && name.ends_with(b)
}

/// The span field a request-event field came from (for messages).
fn span_field(event_field: &str) -> String {
    match event_field {
        "time_unix_nano" => "start_time_unix_nano".into(),
        "duration_nano" => "end_time_unix_nano".into(),
        "operation" => "name".into(),
        "status_code" => "attributes[http.response.status_code]".into(),
        other => other.into(),
    }
}

/// What both trace decoders share once a span is read: the resource's check, each span's
/// mapping and checks, and the accounting of what is refused, in the export's order.
pub(crate) struct TraceMapping<'l, 'a> {
    limits: &'l Limits,
    window: TimeWindow,
    out: Mapped<SpanPush<'a>>,
    /// The push of the current resource, or why all of its spans are refused.
    current: std::result::Result<SpanPush<'a>, (&'static str, String)>,
    resource_index: usize,
}

impl<'l, 'a> TraceMapping<'l, 'a> {
    /// A mapping of an export of `spans` spans, refused whole if they are more than
    /// `max_events_per_request`.
    pub(crate) fn new(limits: &'l Limits, now: i64, spans: usize) -> Result<Self> {
        Error::check_count(
            "resource_spans",
            "spans",
            spans,
            limits.max_events_per_request,
        )?;
        Ok(Self {
            limits,
            window: TimeWindow::new(limits, now),
            out: Mapped::default(),
            current: Ok(SpanPush::default()),
            resource_index: 0,
        })
    }

    /// Starts `resource_spans[r]`, whose resource has `attrs`.
    pub(crate) fn resource(&mut self, r: usize, attrs: &[KeyValue]) {
        self.finish_resource();
        self.resource_index = r;
        self.current = checked_resource(attrs, self.limits).map(|resource| SpanPush {
            head: PushRequest {
                resource: Some(resource),
                ..Default::default()
            },
            events: MappedEvents::default(),
        });
    }

    /// `scope_spans[s].spans[k]` of the current resource; `span` is read only if the
    /// resource is taken.
    pub(crate) fn span(&mut self, s: usize, k: usize, span: impl SpanFields<'a>) {
        let r = self.resource_index;
        let path = || format!("resource_spans[{r}].scope_spans[{s}].spans[{k}]");
        let push = match &mut self.current {
            Ok(push) => push,
            Err((label, why)) => {
                self.out
                    .reject("traces", label, || format!("{}: {why}", path()));
                return;
            }
        };
        let events = &mut push.events;
        let attributes_before = events.attributes.len();
        match map_span_fields(span, &mut events.attributes).and_then(|e| {
            check_request(&events.event(&e), self.limits, &self.window)
                .map(|()| e)
                .map_err(|(f, why)| (span_field(&f), why))
        }) {
            Ok(e) => events.requests.push(e),
            Err((field, why)) => {
                events.attributes.truncate(attributes_before);
                let (label, at) = match field.as_str() {
                    "kind" => ("span_kind", "kind"),
                    _ => ("invalid", field.as_str()),
                };
                self.out
                    .reject("traces", label, || format!("{}.{at}: {why}", path()));
            }
        }
    }

    fn finish_resource(&mut self) {
        if let Ok(push) = &mut self.current
            && !push.events.requests.is_empty()
        {
            self.out.pushes.push(std::mem::take(push));
        }
    }

    /// What was kept and what was refused.
    pub(crate) fn finish(mut self) -> Mapped<SpanPush<'a>> {
        self.finish_resource();
        self.out
    }
}

/// Maps and validates an OTLP trace export prost has decoded, span by span. The trace door
/// reads the wire itself ([`crate::otlp_wire::map_trace_export`]); this is the reference it
/// is compared with (`otlp_tests`) and the baseline of the hot-path bench.
pub fn map_traces(
    req: ExportTraceServiceRequest,
    limits: &Limits,
    now: i64,
) -> Result<Mapped<SpanPush<'static>>> {
    let total: usize = req
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum();
    let mut mapping = TraceMapping::new(limits, now, total)?;
    for (r, rs) in req.resource_spans.into_iter().enumerate() {
        let attrs = rs.resource.map(|r| r.attributes).unwrap_or_default();
        mapping.resource(r, &attrs);
        for (s, ss) in rs.scope_spans.into_iter().enumerate() {
            for (k, span) in ss.spans.into_iter().enumerate() {
                mapping.span(s, k, span);
            }
        }
    }
    Ok(mapping.finish())
}

/// Parses a time attribute: integer nanoseconds since the epoch, or RFC 3339 text.
fn time_attr(attrs: &[KeyValue], key: &str) -> std::result::Result<Option<i64>, String> {
    match attr(attrs, key) {
        None => Ok(None),
        Some(any_value::Value::IntValue(i)) => Ok(Some(*i)),
        Some(v) => parse_time(&value_string(v)).map(Some).ok_or_else(|| {
            format!("attributes[{key}]: not RFC 3339 or nanoseconds since the epoch")
        }),
    }
}

fn parse_time(text: &str) -> Option<i64> {
    let t = text.trim();
    if let Ok(ns) = t.parse::<i64>() {
        return Some(ns);
    }
    let st = humantime::parse_rfc3339_weak(t).ok()?;
    let d = st.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_nanos()).ok()
}

/// A deploy or incident event from a log record that follows the nines convention.
enum LogEvent {
    Deploy(DeployEvent),
    Incident(IncidentEvent),
}

fn map_log(
    rec: &LogRecord,
    resource: &Resource,
) -> std::result::Result<LogEvent, (&'static str, String)> {
    let a = &rec.attributes;
    let name = if rec.event_name.is_empty() {
        attr_str(a, "event.name").unwrap_or_default()
    } else {
        rec.event_name.clone()
    };
    let time = [rec.time_unix_nano, rec.observed_time_unix_nano]
        .into_iter()
        .find(|t| *t > 0)
        .and_then(|t| i64::try_from(t).ok())
        .unwrap_or(0);
    let invalid = |why: String| ("invalid", why);
    match name.as_str() {
        "deployment" => {
            let outcome = match attr_str(a, "deployment.outcome").as_deref() {
                None | Some("succeeded") => DeployOutcome::Succeeded,
                Some("failed") => DeployOutcome::Failed,
                Some("rolled_back") => DeployOutcome::RolledBack,
                Some(other) => {
                    return Err(invalid(format!(
                        "attributes[deployment.outcome]: {other:?} is not succeeded, failed or rolled_back"
                    )));
                }
            };
            let mut commits = Vec::new();
            if let Some(list) = attr_str(a, "deployment.commits") {
                for (j, item) in list
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .enumerate()
                {
                    let (sha, when) = item.split_once('@').ok_or_else(|| {
                        invalid(format!(
                            "attributes[deployment.commits][{j}]: {item:?} is not sha@time"
                        ))
                    })?;
                    let t = parse_time(when).ok_or_else(|| {
                        invalid(format!(
                            "attributes[deployment.commits][{j}]: {when:?} is not RFC 3339 or nanoseconds"
                        ))
                    })?;
                    commits.push(Commit {
                        sha: sha.to_owned(),
                        time_unix_nano: t,
                    });
                }
            }
            Ok(LogEvent::Deploy(DeployEvent {
                time_unix_nano: time,
                service: resource.service.clone(),
                environment: attr_str(a, "deployment.environment.name")
                    .unwrap_or_else(|| resource.environment.clone()),
                version: attr_str(a, "service.version").unwrap_or_else(|| resource.version.clone()),
                commits,
                outcome: outcome as i32,
                source: 0,
            }))
        }
        "incident" => Ok(LogEvent::Incident(IncidentEvent {
            id: attr_str(a, "incident.id").unwrap_or_default(),
            service: resource.service.clone(),
            opened_at_unix_nano: time_attr(a, "incident.opened_at")
                .map_err(invalid)?
                .unwrap_or(time),
            resolved_at_unix_nano: time_attr(a, "incident.resolved_at")
                .map_err(invalid)?
                .unwrap_or(0),
            severity: attr_str(a, "incident.severity").unwrap_or_default(),
            cause_version: attr_str(a, "incident.cause_version").unwrap_or_default(),
        })),
        "" => Err((
            "not_an_event",
            "not a nines event: set event.name to \"deployment\" or \"incident\"".into(),
        )),
        other => Err((
            "not_an_event",
            format!(
                "not a nines event: event.name {other:?} is neither \"deployment\" nor \"incident\""
            ),
        )),
    }
}

/// Maps and validates an OTLP log export, record by record.
pub fn map_logs(req: ExportLogsServiceRequest, limits: &Limits, now: i64) -> Result<Mapped> {
    let total: usize = req
        .resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len())
        .sum();
    Error::check_count(
        "resource_logs",
        "log records",
        total,
        limits.max_events_per_request,
    )?;
    let mut out = Mapped::default();
    for (r, rl) in req.resource_logs.into_iter().enumerate() {
        let attrs = rl.resource.map(|r| r.attributes).unwrap_or_default();
        let resource = checked_resource(&attrs, limits);
        let mut push = PushRequest {
            resource: resource.clone().ok(),
            ..Default::default()
        };
        for (s, sl) in rl.scope_logs.iter().enumerate() {
            for (k, rec) in sl.log_records.iter().enumerate() {
                let path = || format!("resource_logs[{r}].scope_logs[{s}].log_records[{k}]");
                let resource = match &resource {
                    Ok(resource) => resource,
                    Err((label, why)) => {
                        out.reject("logs", label, || format!("{}: {why}", path()));
                        continue;
                    }
                };
                match map_log(rec, resource) {
                    Ok(ev) => {
                        // Validate the event alone, so one bad record refuses only itself.
                        let mut single = PushRequest {
                            resource: Some(resource.clone()),
                            ..Default::default()
                        };
                        match ev {
                            LogEvent::Deploy(d) => single.deploys.push(d),
                            LogEvent::Incident(i) => single.incidents.push(i),
                        }
                        match validate(&mut single, limits, now) {
                            Ok(()) => {
                                push.deploys.append(&mut single.deploys);
                                push.incidents.append(&mut single.incidents);
                            }
                            Err(e) => out.reject("logs", "invalid", || {
                                // `deploys[0].version` of the single event → the log record's
                                // path, then `.version`.
                                let (field, reason) = e.field_and_reason();
                                let within = field.split_once("].").map_or(field, |(_, f)| f);
                                format!("{}.{within}: {reason}", path())
                            }),
                        }
                    }
                    Err((label, why)) => out.reject("logs", label, || format!("{}: {why}", path())),
                }
            }
        }
        if !push.deploys.is_empty() || !push.incidents.is_empty() {
            out.pushes.push(push);
        }
    }
    Ok(out)
}

/// Metrics are not stored: every data point is refused, by metric name.
pub fn map_metrics(req: &ExportMetricsServiceRequest) -> Mapped {
    let mut out = Mapped::default();
    for rm in &req.resource_metrics {
        for sm in &rm.scope_metrics {
            for m in &sm.metrics {
                let points = match &m.data {
                    Some(metric::Data::Gauge(g)) => g.data_points.len(),
                    Some(metric::Data::Sum(s)) => s.data_points.len(),
                    Some(metric::Data::Histogram(h)) => h.data_points.len(),
                    Some(metric::Data::ExponentialHistogram(h)) => h.data_points.len(),
                    Some(metric::Data::Summary(s)) => s.data_points.len(),
                    None => 0,
                };
                for _ in 0..points.max(1) {
                    out.reject("metrics", "not_stored", || {
                        format!(
                            "metric {:?}: nines derives request SLIs from SERVER/CONSUMER spans \
                             and does not store metrics",
                            m.name
                        )
                    });
                }
            }
        }
    }
    out
}

#[cfg(feature = "server")]
mod server {
    use std::time::Instant;

    use bytes::Bytes;
    use futures::future::BoxFuture;
    use futures::future::join_all;
    use opentelemetry_proto::tonic::collector::logs::v1::{
        ExportLogsPartialSuccess, ExportLogsServiceResponse,
    };
    use opentelemetry_proto::tonic::collector::metrics::v1::{
        ExportMetricsPartialSuccess, ExportMetricsServiceResponse,
    };
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTracePartialSuccess, ExportTraceServiceResponse,
    };
    use tonic::{Request, Response, Status};

    use super::*;
    use crate::auth::Auth;
    use crate::door::{Door, Method, WireLimits, prost_decode};
    use crate::otlp_wire::{TraceExportBytes, map_trace_export};
    use crate::service::{Pipeline, account};
    use crate::wire::{self, Shape, WireError};
    use nines_model::clock::now_ns;
    use nines_record::RequestLike;

    /// Publishes every push (its head and request events) as `tenant`; fails if any fails
    /// (the sender retries).
    async fn publish_all<E: RequestLike + Sync>(
        pipeline: &Pipeline,
        pushes: Vec<(PushRequest, Vec<E>)>,
        tenant: &str,
        now: i64,
    ) -> Result<()> {
        let started = Instant::now();
        let (heads, events): (Vec<_>, Vec<_>) = pushes.into_iter().unzip();
        let results = join_all(
            heads
                .into_iter()
                .zip(&events)
                .map(|(head, requests)| pipeline.publish_events(head, requests, tenant, now)),
        )
        .await;
        for r in results {
            account(&r, started);
            r?;
        }
        Ok(())
    }

    fn otlp_error(e: Error) -> Status {
        crate::metrics::push_rejected(e.reject_reason());
        Status::from(e)
    }

    /// OTLP `TraceService`, `LogsService` and `MetricsService`.
    #[derive(Debug, Clone)]
    pub struct Otlp {
        pipeline: Pipeline,
        auth: Auth,
    }

    impl Otlp {
        pub fn new(pipeline: Pipeline, auth: Auth) -> Self {
            Self { pipeline, auth }
        }

        /// The three doors (traces, logs, metrics), each scanning its body before decoding.
        pub fn doors(
            self,
            limits: WireLimits,
        ) -> (Door<OtlpTraces>, Door<OtlpLogs>, Door<OtlpMetrics>) {
            (
                Door::new(OtlpTraces(self.clone()), limits),
                Door::new(OtlpLogs(self.clone()), limits),
                Door::new(OtlpMetrics(self), limits),
            )
        }
    }

    /// `TraceService/Export` behind a [`Door`].
    #[derive(Debug, Clone)]
    pub struct OtlpTraces(Otlp);
    /// `LogsService/Export` behind a [`Door`].
    #[derive(Debug, Clone)]
    pub struct OtlpLogs(Otlp);
    /// `MetricsService/Export` behind a [`Door`].
    #[derive(Debug, Clone)]
    pub struct OtlpMetrics(Otlp);

    /// One `Method` impl per OTLP signal; a macro keeps the three identical but for names.
    macro_rules! otlp_method {
        ($ty:ident, $export:ident, $req:ty, $resp:ty, $service:literal, $shape:expr, $field:literal, $what:literal, $decode:expr) => {
            impl Method for $ty {
                type Req = $req;
                type Resp = $resp;
                const SERVICE: &'static str = $service;
                const PATH: &'static str = concat!("/", $service, "/Export");
                const EVENTS_FIELD: &'static str = $field;
                const EVENTS_NAME: &'static str = $what;

                fn shape() -> &'static Shape {
                    $shape
                }

                fn decode(message: Bytes) -> std::result::Result<$req, WireError> {
                    $decode(message)
                }

                fn call(
                    &self,
                    request: Request<$req>,
                ) -> BoxFuture<'static, Result<Response<$resp>, Status>> {
                    let otlp = self.0.clone();
                    Box::pin(async move { otlp.$export(request).await })
                }
            }
        };
    }
    otlp_method!(
        OtlpTraces,
        export_traces,
        TraceExportBytes,
        ExportTraceServiceResponse,
        "opentelemetry.proto.collector.trace.v1.TraceService",
        &wire::TRACES,
        "resource_spans",
        "spans",
        |message| Ok::<_, WireError>(TraceExportBytes(message))
    );
    otlp_method!(
        OtlpLogs,
        export_logs,
        ExportLogsServiceRequest,
        ExportLogsServiceResponse,
        "opentelemetry.proto.collector.logs.v1.LogsService",
        &wire::LOGS,
        "resource_logs",
        "log records",
        prost_decode
    );
    otlp_method!(
        OtlpMetrics,
        export_metrics,
        ExportMetricsServiceRequest,
        ExportMetricsServiceResponse,
        "opentelemetry.proto.collector.metrics.v1.MetricsService",
        &wire::METRICS,
        "resource_metrics",
        "data points",
        prost_decode
    );

    impl Otlp {
        /// `TraceService/Export`: the spans are read off the wire by `otlp_wire`.
        async fn export_traces(
            &self,
            request: Request<TraceExportBytes>,
        ) -> Result<Response<ExportTraceServiceResponse>, Status> {
            let tenant = self.auth.tenant_of(&request).map_err(otlp_error)?;
            let now = now_ns();
            let mut mapped = map_trace_export(&request.get_ref().0, self.pipeline.limits(), now)
                .map_err(otlp_error)?;
            let (heads, events): (Vec<_>, Vec<_>) = std::mem::take(&mut mapped.pushes)
                .into_iter()
                .map(|p| (p.head, p.events))
                .unzip();
            let pushes = heads.into_iter().zip(&events).map(|(h, e)| (h, e.joined()));
            publish_all(&self.pipeline, pushes.collect(), &tenant, now)
                .await
                .map_err(Status::from)?;
            Ok(Response::new(ExportTraceServiceResponse {
                partial_success: (mapped.rejected > 0).then(|| ExportTracePartialSuccess {
                    rejected_spans: mapped.rejected as i64,
                    error_message: mapped.message("spans"),
                }),
            }))
        }

        /// `LogsService/Export`.
        async fn export_logs(
            &self,
            request: Request<ExportLogsServiceRequest>,
        ) -> Result<Response<ExportLogsServiceResponse>, Status> {
            let tenant = self.auth.tenant_of(&request).map_err(otlp_error)?;
            let now = now_ns();
            let mut mapped =
                map_logs(request.into_inner(), self.pipeline.limits(), now).map_err(otlp_error)?;
            let pushes = std::mem::take(&mut mapped.pushes)
                .into_iter()
                .map(|mut p| {
                    let requests: Vec<RequestEvent> = std::mem::take(&mut p.requests);
                    (p, requests)
                })
                .collect();
            publish_all(&self.pipeline, pushes, &tenant, now)
                .await
                .map_err(Status::from)?;
            Ok(Response::new(ExportLogsServiceResponse {
                partial_success: (mapped.rejected > 0).then(|| ExportLogsPartialSuccess {
                    rejected_log_records: mapped.rejected as i64,
                    error_message: mapped.message("log records"),
                }),
            }))
        }

        /// `MetricsService/Export`: refused, data point by data point.
        async fn export_metrics(
            &self,
            request: Request<ExportMetricsServiceRequest>,
        ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
            self.auth.tenant_of(&request).map_err(otlp_error)?;
            let mapped = map_metrics(request.get_ref());
            Ok(Response::new(ExportMetricsServiceResponse {
                partial_success: (mapped.rejected > 0).then(|| ExportMetricsPartialSuccess {
                    rejected_data_points: mapped.rejected as i64,
                    error_message: mapped.message("data points"),
                }),
            }))
        }
    }
}
#[cfg(feature = "server")]
pub use server::{Otlp, OtlpLogs, OtlpMetrics, OtlpTraces};
