//! Validation of a push. Nothing of a batch is stored unless all of it is valid, and the
//! first problem found is reported with the event index, the field and the reason.

use nines_proto::v1::{DeployOutcome, PushRequest, Resource};
use nines_record::RequestLike;

use crate::config::Limits;
use crate::{Error, Result};

/// Environment used when a resource names none.
pub const DEFAULT_ENVIRONMENT: &str = "default";
/// Tenant used when nines runs single-tenant and the resource names none.
pub const DEFAULT_TENANT: &str = "default";

/// Checks `req` against `limits` at time `now_ns` and normalises its resource (defaults for
/// an empty tenant and environment).
pub fn validate(req: &mut PushRequest, limits: &Limits, now_ns: i64) -> Result<()> {
    let requests = std::mem::take(&mut req.requests);
    let result = validate_push(req, &requests, limits, now_ns);
    req.requests = requests;
    result
}

/// [`validate`] for a push whose request events come apart from it (`req.requests` is not
/// looked at): read in place by the native door, or built by OTLP's mapping.
pub fn validate_push(
    req: &mut PushRequest,
    requests: &[impl RequestLike],
    limits: &Limits,
    now_ns: i64,
) -> Result<()> {
    let resource = req.resource.get_or_insert_with(Resource::default);
    check_resource(resource, limits)?;
    let total = requests.len() + req.deploys.len() + req.incidents.len() + req.gate_decisions.len();
    if total == 0 {
        return Err(Error::invalid("requests", "the push carries no events"));
    }
    Error::check_count("requests", "events", total, limits.max_events_per_request)?;
    check_name(&req.batch_id, limits, false).map_err(at(|| "batch_id".into()))?;
    let window = TimeWindow::new(limits, now_ns);
    for (i, e) in requests.iter().enumerate() {
        check_request(e, limits, &window)
            .map_err(|(f, reason)| Error::invalid(format!("requests[{i}].{f}"), reason))?;
    }
    for (i, d) in req.deploys.iter().enumerate() {
        let field = |f: String| at(move || format!("deploys[{i}].{f}"));
        let f = |s: &str| field(s.to_owned());
        window
            .check(d.time_unix_nano)
            .map_err(f("time_unix_nano"))?;
        check_name(&d.service, limits, false).map_err(f("service"))?;
        check_name(&d.environment, limits, false).map_err(f("environment"))?;
        check_name(&d.version, limits, false).map_err(f("version"))?;
        if d.version.is_empty() && resource.version.is_empty() {
            return Err(f("version")(
                "a deploy needs a version (on the event or the resource)".into(),
            ));
        }
        if DeployOutcome::try_from(d.outcome).is_err() {
            return Err(f("outcome")(format!("unknown outcome {}", d.outcome)));
        }
        for (j, c) in d.commits.iter().enumerate() {
            check_name(&c.sha, limits, true).map_err(field(format!("commits[{j}].sha")))?;
            let time = || field(format!("commits[{j}].time_unix_nano"));
            if c.time_unix_nano <= 0 {
                return Err(time()(
                    "must be set (nanoseconds since the Unix epoch)".into(),
                ));
            }
            if c.time_unix_nano > d.time_unix_nano {
                return Err(time()(
                    "a commit cannot be newer than the deploy that ships it".into(),
                ));
            }
        }
    }
    for (i, n) in req.incidents.iter().enumerate() {
        let f = |f: &'static str| at(move || format!("incidents[{i}].{f}"));
        check_name(&n.id, limits, true).map_err(f("id"))?;
        check_name(&n.service, limits, false).map_err(f("service"))?;
        check_name(&n.severity, limits, false).map_err(f("severity"))?;
        check_name(&n.cause_version, limits, false).map_err(f("cause_version"))?;
        window
            .check(n.opened_at_unix_nano)
            .map_err(f("opened_at_unix_nano"))?;
        if n.resolved_at_unix_nano != 0 {
            window
                .check(n.resolved_at_unix_nano)
                .map_err(f("resolved_at_unix_nano"))?;
            if n.resolved_at_unix_nano < n.opened_at_unix_nano {
                return Err(f("resolved_at_unix_nano")(
                    "an incident cannot be resolved before it was opened".into(),
                ));
            }
        }
    }
    for (i, g) in req.gate_decisions.iter().enumerate() {
        let field = |f: String| at(move || format!("gate_decisions[{i}].{f}"));
        let f = |s: &str| field(s.to_owned());
        window
            .check(g.time_unix_nano)
            .map_err(f("time_unix_nano"))?;
        if g.evaluated_at_unix_nano < 0 {
            return Err(f("evaluated_at_unix_nano")(
                "must be 0 (the decision's time) or nanoseconds since the Unix epoch".into(),
            ));
        }
        for (name, value) in [
            ("service", &g.service),
            ("environment", &g.environment),
            ("version", &g.version),
            ("override_label", &g.override_label),
            ("requester", &g.requester),
            ("policy", &g.policy),
        ] {
            check_name(value, limits, false).map_err(f(name))?;
        }
        for (list, values) in [("labels", &g.labels), ("reasons", &g.reasons)] {
            if values.len() > limits.max_attributes {
                return Err(f(list)(format!(
                    "{} entries, more than the limit of {}",
                    values.len(),
                    limits.max_attributes
                )));
            }
            for (j, v) in values.iter().enumerate() {
                check_name(v, limits, true).map_err(field(format!("{list}[{j}]")))?;
            }
        }
    }
    Ok(())
}

/// Checks one request event. On failure: (field within the event, e.g. `duration_nano` or
/// `attributes[2].key`, and the reason). OTLP uses it span by span.
pub fn check_request(
    e: &impl RequestLike,
    limits: &Limits,
    window: &TimeWindow,
) -> std::result::Result<(), (String, String)> {
    // The field's name is allocated only on failure: the valid path allocates nothing.
    let named = |f: &'static str| move |reason: String| (f.to_owned(), reason);
    window
        .check(e.time_unix_nano())
        .map_err(named("time_unix_nano"))?;
    check_name(e.operation(), limits, true).map_err(named("operation"))?;
    let duration = e.duration_nano();
    if duration < 0 {
        return Err(named("duration_nano")(format!(
            "must be >= 0, got {duration}"
        )));
    }
    if duration > limits.max_duration.as_nanos() as i64 {
        return Err(named("duration_nano")(format!(
            "{duration} ns is longer than the limit of {:?}",
            limits.max_duration
        )));
    }
    if !(0..=999).contains(&e.status_code()) {
        return Err(named("status_code")(format!(
            "must be 0 (unknown) or an HTTP-style code 1..=999, got {}",
            e.status_code()
        )));
    }
    if e.trace_id().len() > limits.max_name_bytes {
        return Err(named("trace_id")(format!(
            "{} bytes, more than the limit of {}",
            e.trace_id().len(),
            limits.max_name_bytes
        )));
    }
    check_attributes(e, limits).map_err(|(suffix, reason)| (format!("attributes{suffix}"), reason))
}

/// Checks a resource and fills the default environment.
pub fn check_resource(r: &mut Resource, limits: &Limits) -> Result<()> {
    let named = |f: &'static str| at(move || f.to_owned());
    check_name(&r.service, limits, true).map_err(named("resource.service"))?;
    check_name(&r.environment, limits, false).map_err(named("resource.environment"))?;
    check_name(&r.version, limits, false).map_err(named("resource.version"))?;
    check_name(&r.tenant, limits, false).map_err(named("resource.tenant"))?;
    if r.environment.is_empty() {
        r.environment = DEFAULT_ENVIRONMENT.into();
    }
    if r.tenant.is_empty() {
        r.tenant = DEFAULT_TENANT.into();
    }
    Ok(())
}

/// A rejection reason; the caller names the field (built only on failure, so the valid path
/// allocates nothing per event).
type Reason = std::result::Result<(), String>;

/// Attaches the field name, computed lazily, to a reason.
fn at(field: impl FnOnce() -> String) -> impl FnOnce(String) -> Error {
    move |reason| Error::invalid(field(), reason)
}

fn check_name(value: &str, limits: &Limits, required: bool) -> Reason {
    if required && value.chars().all(char::is_whitespace) {
        return Err("is required and must not be empty".into());
    }
    if value.len() > limits.max_name_bytes {
        return Err(format!(
            "{} bytes, more than the limit of {}",
            value.len(),
            limits.max_name_bytes
        ));
    }
    if has_control(value) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

/// Checks attributes; on failure returns (suffix of the field, reason), e.g. ("[2].key", …).
fn check_attributes(
    e: &impl RequestLike,
    limits: &Limits,
) -> std::result::Result<(), (String, String)> {
    if e.attribute_count() > limits.max_attributes {
        return Err((
            String::new(),
            format!(
                "{} attributes, more than the limit of {}",
                e.attribute_count(),
                limits.max_attributes
            ),
        ));
    }
    for (j, (key, value)) in e.attributes().enumerate() {
        if key.is_empty() {
            return Err((format!("[{j}].key"), "must not be empty".into()));
        }
        for (part, v) in [("key", key), ("value", value)] {
            if v.len() > limits.max_attribute_bytes {
                return Err((
                    format!("[{j}].{part}"),
                    format!(
                        "{} bytes, more than the limit of {}",
                        v.len(),
                        limits.max_attribute_bytes
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Whether `s` holds a control character, as `char::is_control` (U+0000–U+001F and
/// U+007F–U+009F) tells, without decoding it a char at a time: every name and operation of
/// every event goes through here (`check_name` was a tenth of the native door's own work,
/// BENCHMARKS.md). In UTF-8 the first two ranges are single bytes and the third is `c2`
/// followed by `80`–`9f`.
fn has_control(s: &str) -> bool {
    let bytes = s.as_bytes();
    // No early exit: the fold runs over whole vectors.
    let ascii = bytes
        .iter()
        .fold(false, |found, &b| found | (b < 0x20) | (b == 0x7f));
    ascii || (!s.is_ascii() && bytes.windows(2).any(|w| w[0] == 0xc2 && w[1] < 0xa0))
}

/// The accepted range of event times around now.
#[derive(Debug, Clone, Copy)]
pub struct TimeWindow {
    oldest: i64,
    newest: i64,
}

impl TimeWindow {
    pub fn new(limits: &Limits, now: i64) -> Self {
        Self {
            oldest: now.saturating_sub(limits.max_event_age.as_nanos() as i64),
            newest: now.saturating_add(limits.max_event_ahead.as_nanos() as i64),
        }
    }

    pub fn check(&self, t: i64) -> Reason {
        if t <= 0 {
            return Err("must be set (nanoseconds since the Unix epoch)".into());
        }
        if t < self.oldest {
            return Err(format!(
                "{t} is older than the accepted window (max_event_age)"
            ));
        }
        if t > self.newest {
            return Err(format!(
                "{t} is further in the future than the accepted window (max_event_ahead)"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nines_proto::v1::{Attribute, DeployEvent, GateDecisionEvent, IncidentEvent, RequestEvent};

    const NOW: i64 = 1_795_671_239_000_000_000;

    fn base() -> PushRequest {
        PushRequest {
            resource: Some(Resource {
                service: "checkout".into(),
                ..Default::default()
            }),
            requests: vec![RequestEvent {
                time_unix_nano: NOW - 1_000,
                operation: "GET /".into(),
                status_code: 200,
                duration_nano: 5_000_000,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    /// Applies `edit` to a valid push and checks the outcome: `None` = valid, or the exact
    /// message of the rejection.
    fn check(edit: impl FnOnce(&mut PushRequest), expected: Option<&str>) {
        let mut req = base();
        edit(&mut req);
        let got = validate(&mut req, &Limits::default(), NOW)
            .err()
            .map(|e| e.to_string());
        assert_eq!(got.as_deref(), expected);
    }

    #[test]
    fn control_characters_are_found_as_char_is_control_finds_them() {
        let mut controls = 0;
        for c in (0..=0x10ffff).filter_map(char::from_u32) {
            for s in [
                c.to_string(),
                format!("a{c}"),
                format!("é{c}ü"),
                format!("{c}\u{a0}"),
            ] {
                assert_eq!(has_control(&s), c.is_control(), "{s:?}");
            }
            controls += usize::from(c.is_control());
        }
        // U+0000–U+001F and U+007F–U+009F.
        assert_eq!(controls, 32 + 33);
        assert!(!has_control("GET /items/{id} ¡ \u{a0}\u{c2}"));
    }

    #[test]
    fn valid_push_gets_defaults() {
        let mut req = base();
        validate(&mut req, &Limits::default(), NOW).unwrap();
        let r = req.resource.unwrap();
        assert_eq!(
            (r.tenant.as_str(), r.environment.as_str()),
            ("default", "default")
        );
    }

    #[test]
    fn gate_decisions_are_checked_field_by_field() {
        let decision = || GateDecisionEvent {
            time_unix_nano: NOW,
            allowed: false,
            labels: vec!["hotfix".into()],
            reasons: vec!["SLO a/b: error budget exhausted (-3.0 % left)".into()],
            ..Default::default()
        };
        check(|r| r.gate_decisions = vec![decision()], None);
        // A push of decisions alone is a push.
        check(
            |r| {
                r.requests.clear();
                r.gate_decisions = vec![decision(), decision()];
            },
            None,
        );
        check(
            |r| {
                let mut d = decision();
                d.reasons.push(String::new());
                r.gate_decisions = vec![decision(), d];
            },
            Some("gate_decisions[1].reasons[1]: is required and must not be empty"),
        );
        check(
            |r| {
                let mut d = decision();
                d.labels = (0..33).map(|i| format!("l{i}")).collect();
                r.gate_decisions = vec![d];
            },
            Some("gate_decisions[0].labels: 33 entries, more than the limit of 32"),
        );
        check(
            |r| {
                let mut d = decision();
                d.requester = "ci\njob".into();
                r.gate_decisions = vec![d];
            },
            Some("gate_decisions[0].requester: must not contain control characters"),
        );
        check(
            |r| {
                let mut d = decision();
                d.evaluated_at_unix_nano = -1;
                r.gate_decisions = vec![d];
            },
            Some(
                "gate_decisions[0].evaluated_at_unix_nano: must be 0 (the decision's time) or \
                 nanoseconds since the Unix epoch",
            ),
        );
        check(
            |r| {
                let mut d = decision();
                d.time_unix_nano = 0;
                r.gate_decisions = vec![d];
            },
            Some(
                "gate_decisions[0].time_unix_nano: must be set (nanoseconds since the Unix epoch)",
            ),
        );
    }

    #[test]
    fn rejections_name_the_field() {
        check(
            |r| r.resource.as_mut().unwrap().service.clear(),
            Some("resource.service: is required and must not be empty"),
        );
        check(
            |r| r.resource = None,
            Some("resource.service: is required and must not be empty"),
        );
        check(
            |r| r.requests[0].duration_nano = -5,
            Some("requests[0].duration_nano: must be >= 0, got -5"),
        );
        check(
            |r| r.requests[0].operation = "  ".into(),
            Some("requests[0].operation: is required and must not be empty"),
        );
        check(
            |r| r.requests[0].time_unix_nano = NOW + 2 * 3600 * 1_000_000_000,
            Some(
                "requests[0].time_unix_nano: 1795678439000000000 is further in the future than \
                 the accepted window (max_event_ahead)",
            ),
        );
        check(
            |r| r.requests[0].time_unix_nano = 0,
            Some("requests[0].time_unix_nano: must be set (nanoseconds since the Unix epoch)"),
        );
        check(
            |r| r.requests[0].status_code = 1000,
            Some(
                "requests[0].status_code: must be 0 (unknown) or an HTTP-style code 1..=999, got 1000",
            ),
        );
        check(
            |r| r.requests.clear(),
            Some("requests: the push carries no events"),
        );
        check(
            |r| {
                r.deploys.push(DeployEvent {
                    time_unix_nano: NOW,
                    ..Default::default()
                })
            },
            Some("deploys[0].version: a deploy needs a version (on the event or the resource)"),
        );
        check(
            |r| {
                r.incidents.push(IncidentEvent {
                    id: "INC-1".into(),
                    opened_at_unix_nano: NOW,
                    resolved_at_unix_nano: NOW - 1,
                    ..Default::default()
                })
            },
            Some(
                "incidents[0].resolved_at_unix_nano: an incident cannot be resolved before it \
                 was opened",
            ),
        );
        check(
            |r| {
                r.requests[0].attributes = (0..33)
                    .map(|i| Attribute {
                        key: format!("k{i}"),
                        value: "v".into(),
                    })
                    .collect()
            },
            Some("requests[0].attributes: 33 attributes, more than the limit of 32"),
        );
        check(
            |r| {
                r.requests[0].attributes = vec![
                    Attribute {
                        key: "region".into(),
                        value: "eu".into(),
                    },
                    Attribute {
                        key: String::new(),
                        value: "x".into(),
                    },
                ]
            },
            Some("requests[0].attributes[1].key: must not be empty"),
        );
        check(
            |r| {
                r.requests[0].attributes = vec![Attribute {
                    key: "blob".into(),
                    value: "x".repeat(1025),
                }]
            },
            Some("requests[0].attributes[0].value: 1025 bytes, more than the limit of 1024"),
        );
        check(
            |r| {
                r.deploys.push(DeployEvent {
                    time_unix_nano: NOW,
                    version: "v2".into(),
                    commits: vec![nines_proto::v1::Commit {
                        sha: "abc".into(),
                        time_unix_nano: NOW + 1,
                    }],
                    ..Default::default()
                })
            },
            Some(
                "deploys[0].commits[0].time_unix_nano: a commit cannot be newer than the deploy \
                 that ships it",
            ),
        );
    }
}
