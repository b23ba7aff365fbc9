//! The safety net for releases (docs/release.md): `nines gate` (the error-budget policy's
//! allow or deny for a deploy) and `nines verdict` (a candidate version against its
//! baseline), and the same answers over HTTP on `nines up`'s admin server (`GET /v1/gate`,
//! `GET /v1/verdict`) for delivery pipelines: Argo Rollouts' web metric provider, Flagger's
//! webhooks, Keptn-style quality gates.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use nines_ingest::Pipeline;
use nines_model::time::NANOS_PER_SECOND;
use nines_proto::v1::{GateDecisionEvent, PushRequest, Resource};
use nines_query::QueryEngine;
use nines_query::release_source::{self, Comparison};
use nines_slo::gate::{self, Standing};
use nines_slo::model::Slo;
use nines_slo::verdict;
use nines_slo::window::rfc3339;
use serde_json::{Value, json};

use crate::config::Config;
use crate::slo_cmd;
use nines_model::clock::now_ns;

/// Exit status of `nines gate` and `nines verdict` when no answer could be given.
pub(crate) const EXIT_ERROR: i32 = 2;
/// Exit status of `nines verdict` when the verdict is inconclusive.
pub(crate) const EXIT_INCONCLUSIVE: i32 = 3;

/// What a gate is asked: may this deploy go out now?
#[derive(Debug, Clone)]
pub(crate) struct GateAsk {
    pub service: String,
    pub environment: String,
    pub labels: Vec<String>,
    /// Seconds since the epoch.
    pub at: i64,
    /// The version asking to go out, when the asker says (recorded, not judged).
    pub version: Option<String>,
    /// Who asks (a pipeline, a person), when the asker says (recorded).
    pub requester: Option<String>,
    /// Whether to record the decision (`gate.record`, unless the asker says not to).
    pub record: bool,
}

/// Records the gate's decisions in `gate_decisions`: each is a push through ingest's
/// pipeline (the same validation, cut and broker acknowledgement as any push, and its own
/// batch id), so the aggregator stores it exactly once like every other fact.
#[derive(Clone)]
pub(crate) struct Recorder {
    pipeline: Pipeline,
    tenant: String,
}

impl Recorder {
    /// A recorder producing to the broker at `bootstrap`.
    pub(crate) fn new(cfg: &Config, bootstrap: &str) -> anyhow::Result<Self> {
        let producer = nines_bus::producer::AckProducer::new(&cfg.bus, bootstrap)?;
        Ok(Self {
            pipeline: Pipeline::new(
                producer,
                cfg.bus.events_topic.clone(),
                cfg.ingest.limits.clone(),
                cfg.bus.max_record_bytes,
                cfg.bus.delivery_timeout,
            ),
            tenant: cfg.gate.tenant.clone(),
        })
    }

    /// The recorder of a command on its own: the configured brokers, or the embedded
    /// broker of a `nines up` on this machine.
    fn of_command(cfg: &Config) -> anyhow::Result<Self> {
        let bootstrap = if cfg.bus.brokers.is_empty() {
            format!("127.0.0.1:{}", cfg.broker.port)
        } else {
            cfg.bus.brokers.clone()
        };
        Self::new(cfg, &bootstrap)
    }

    /// Pushes one decision; done once the broker has it.
    async fn record(
        &self,
        ask: &GateAsk,
        policy: String,
        d: &gate::Decision,
    ) -> anyhow::Result<()> {
        let now = now_ns();
        let event = GateDecisionEvent {
            time_unix_nano: now,
            evaluated_at_unix_nano: ask.at.saturating_mul(NANOS_PER_SECOND),
            allowed: d.allow,
            labels: ask.labels.clone(),
            reasons: d.reasons.clone(),
            override_label: d.override_label.clone().unwrap_or_default(),
            requester: ask.requester.clone().unwrap_or_default(),
            policy,
            ..Default::default()
        };
        let push = PushRequest {
            resource: Some(Resource {
                tenant: String::new(),
                service: ask.service.clone(),
                environment: ask.environment.clone(),
                version: ask.version.clone().unwrap_or_default(),
            }),
            // Ingest gives it a batch id of its own, which the producer's retries keep.
            gate_decisions: vec![event],
            ..Default::default()
        };
        self.pipeline.publish(push, &self.tenant, now).await?;
        Ok(())
    }
}

/// Whether an SLO speaks for `service` in `environment`: its `metadata.service`, and its
/// `environment` label when it has one.
fn covers(slo: &Slo, service: &str, environment: &str) -> bool {
    slo.service == service
        && slo
            .labels
            .get("environment")
            .is_none_or(|envs| envs.iter().any(|e| e == environment))
}

/// The SLOs under `slo.dir` (none when it does not exist; refused definitions logged).
fn slos(cfg: &Config) -> anyhow::Result<Vec<Slo>> {
    if !cfg.slo.dir.exists() {
        return Ok(Vec::new());
    }
    slo_cmd::load_and_warn(std::slice::from_ref(&cfg.slo.dir))
}

/// The gate's decision as JSON (docs/release.md gives the shape).
pub(crate) async fn gate_answer(
    cfg: &Config,
    engine: &QueryEngine,
    recorder: Option<&Recorder>,
    ask: &GateAsk,
) -> anyhow::Result<Value> {
    let mine: Vec<Slo> = slos(cfg)?
        .into_iter()
        .filter(|s| covers(s, &ask.service, &ask.environment))
        .collect();
    let mut standings = Vec::new();
    let mut unevaluated = Vec::new();
    for (slo, objective, result) in slo_cmd::evaluate_all(engine, &mine, ask.at).await {
        match result {
            Ok(r) => standings.push(Standing {
                slo: slo.name.clone(),
                objective,
                budget_remaining: r.standing.remaining,
                firing: r
                    .firing
                    .iter()
                    .map(|i| (i.alert.clone(), i.severity.clone()))
                    .collect(),
            }),
            Err(error) => unevaluated.push(json!({
                "slo": slo.name, "objective": objective, "error": error,
            })),
        }
    }
    let policy = gate::policy_for(&cfg.gate.policy, &ask.service, &ask.environment);
    let previous = match policy.max_previous_deploy_excess {
        Some(_) => {
            let window = policy
                .previous_window_seconds()
                .map_err(anyhow::Error::msg)?;
            previous_deploy(engine, &mine, ask, window).await?
        }
        None => None,
    };
    let d = gate::decide(&policy, &ask.labels, &standings, previous.as_ref());
    metrics::counter!(crate::metrics::GATE_DECISIONS, "decision" => d.decision).increment(1);
    let policy_name = format!("{}/{}", policy.service, policy.environment);
    // A decision that cannot be recorded is still the decision: the answer says so, the
    // log and a counter too.
    let recorded = match recorder.filter(|_| ask.record) {
        None => json!(false),
        Some(r) => match r.record(ask, policy_name, &d).await {
            Ok(()) => json!(true),
            Err(e) => {
                metrics::counter!(crate::metrics::GATE_DECISIONS_UNRECORDED).increment(1);
                tracing::warn!(error = format!("{e:#}"), service = %ask.service, "gate decision not recorded");
                json!(format!("not recorded: {e:#}"))
            }
        },
    };
    Ok(json!({
        "service": ask.service,
        "environment": ask.environment,
        "labels": ask.labels,
        "version": ask.version,
        "requester": ask.requester,
        "at": rfc3339(ask.at),
        "allow": d.allow,
        "decision": d.decision,
        "override_label": d.override_label,
        "reasons": d.reasons,
        "policy": policy,
        "slos": standings.iter().map(|s| json!({
            "slo": s.slo,
            "objective": s.objective,
            "budget_remaining": s.budget_remaining,
            "firing": s.firing.iter().map(|(a, sev)| json!({"alert": a, "severity": sev})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "unevaluated": unevaluated,
        "previous_deploy": previous.map(|p| json!({
            "version": p.version,
            "deployed_at": rfc3339(p.deployed_at),
            "window_end": rfc3339(p.window_end),
            "excess_burn": p.excess.iter().map(|(slo, objective, x)| json!({
                "slo": slo, "objective": objective, "excess_burn": x,
            })).collect::<Vec<_>>(),
        })),
        "recorded": recorded,
    }))
}

/// The service's last deploy to the environment before `ask.at` (a failed one shipped
/// nothing), if `ask.at` is inside its window of `window` seconds: what the window so far
/// burned above the 7-day baseline, per objective of `slos` (as `nines deploys` computes it).
async fn previous_deploy(
    engine: &QueryEngine,
    slos: &[Slo],
    ask: &GateAsk,
    window: i64,
) -> anyhow::Result<Option<gate::PreviousDeploy>> {
    use nines_slo::attribution::{BASELINE, window_burn};
    use nines_slo::eval;

    use crate::dora_cmd::MICROS;
    let deploys = nines_query::dora_source::deploys(engine, (ask.at + 1) * MICROS).await?;
    let Some(last) = deploys.iter().rev().find(|d| {
        d.service == ask.service
            && d.environment == ask.environment
            && d.outcome != nines_dora::Outcome::Failed
    }) else {
        return Ok(None);
    };
    let start = last.time / MICROS;
    if ask.at >= start + window {
        return Ok(None);
    }
    let mut wants = Vec::new();
    for slo in slos {
        for objective in &slo.objectives {
            let (from, to) = eval::data_range(slo, objective, ask.at);
            let from = from.min(start - BASELINE);
            wants.push((slo, objective, from, to));
        }
    }
    let read: Vec<_> = wants
        .iter()
        .map(|(slo, objective, from, to)| nines_query::slo_source::Want {
            indicator: &slo.indicator,
            objective,
            from: *from,
            to: *to,
        })
        .collect();
    let series = nines_query::slo_source::series_many(engine, &read).await;
    let mut excess = Vec::new();
    for ((slo, objective, _, _), series) in wants.iter().zip(series) {
        // An objective that cannot be read is in the answer's `unevaluated` already.
        let Ok(series) = series else { continue };
        let prepared = eval::Prepared::new(slo, objective, &series);
        let w = window_burn(&prepared, (start, ask.at));
        excess.push((slo.name.clone(), objective.name.clone(), w.excess));
    }
    Ok(Some(gate::PreviousDeploy {
        version: last.version.clone(),
        deployed_at: start,
        window_end: start + window,
        excess,
    }))
}

/// What a verdict is asked: the candidate against the baseline over `[from, to)`.
#[derive(Debug, Clone)]
pub(crate) struct VerdictAsk {
    pub service: String,
    pub environment: Option<String>,
    pub candidate: String,
    pub baseline: String,
    pub from: i64,
    pub to: i64,
}

impl VerdictAsk {
    /// Refusals of a question as asked (which parameter, why).
    fn check(&self) -> Result<(), String> {
        if self.candidate == self.baseline {
            return Err(format!(
                "candidate, baseline: both are {:?}; compare two versions",
                self.candidate
            ));
        }
        if self.to <= self.from {
            return Err("since, to: the range ends before it starts".into());
        }
        Ok(())
    }
}

/// The verdict as JSON (docs/release.md gives the shape).
pub(crate) async fn verdict_answer(
    cfg: &Config,
    engine: &QueryEngine,
    ask: &VerdictAsk,
) -> anyhow::Result<Value> {
    ask.check().map_err(anyhow::Error::msg)?;
    let criteria = &cfg.verdict;
    let (c, b, minutes) = release_source::samples(
        engine,
        &Comparison {
            service: &ask.service,
            environment: ask.environment.as_deref(),
            candidate: &ask.candidate,
            baseline: &ask.baseline,
            from: ask.from,
            to: ask.to,
        },
        &criteria.quantiles,
    )
    .await?;
    let v = verdict::judge(&c, &b, criteria);
    metrics::counter!(crate::metrics::CANARY_VERDICTS, "verdict" => v.outcome.as_str())
        .increment(1);
    let sample = |s: &verdict::Sample| {
        json!({
            "total": s.total,
            "errors": s.errors,
            "error_ratio": s.error_ratio(),
            "latency_ns": s.quantiles.iter()
                .map(|(q, v)| (format!("p{}", (q * 100.0).round()), json!(v)))
                .collect::<serde_json::Map<_, _>>(),
        })
    };
    Ok(json!({
        "service": ask.service,
        "environment": ask.environment,
        "candidate": ask.candidate,
        "baseline": ask.baseline,
        "from": rfc3339(ask.from),
        "to": rfc3339(ask.to),
        "minutes": minutes,
        "verdict": v.outcome,
        "pass": v.outcome == verdict::Outcome::Pass,
        "reason": v.reason,
        "candidate_sample": sample(&c),
        "baseline_sample": sample(&b),
        "checks": v.checks,
        "criteria": criteria,
    }))
}

/// Columns of the report's tables of gate decisions.
pub(crate) const GATE_COUNT_HEADER: [&str; 5] =
    ["service", "environment", "allowed", "denied", "overridden"];
pub(crate) const GATE_HELD_HEADER: [&str; 8] = [
    "at",
    "service",
    "environment",
    "version",
    "decision",
    "override_label",
    "requester",
    "reasons",
];

/// The gate's recorded decisions about `[from, to)` (by the instant each was evaluated at)
/// for the report: per service and environment how many were allowed, denied and allowed
/// only by an override label; and each denied or overridden one (who, when, why), oldest
/// first.
pub(crate) async fn gate_history(
    engine: &QueryEngine,
    service: Option<&str>,
    (from, to): (i64, i64),
) -> anyhow::Result<Value> {
    let only = service.map_or(String::new(), |s| {
        format!(" AND service = {}", nines_query::sql_string(s))
    });
    let sql = format!(
        "SELECT service, environment, version, decision, override_label, requester, reasons, \
         CAST(to_unixtime(evaluated_at) AS BIGINT) AS at FROM gate_decisions \
         WHERE evaluated_at >= to_timestamp_seconds({from}) \
         AND evaluated_at < to_timestamp_seconds({to}){only} \
         ORDER BY evaluated_at, service, environment, time"
    );
    let (schema, batches) = engine.sql(&sql).await?;
    let text = nines_query::format::render(schema, &batches, nines_query::OutputFormat::Jsonl)?;
    let mut counts: std::collections::BTreeMap<(String, String), [u64; 3]> = Default::default();
    let mut held = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut row: serde_json::Map<String, Value> = serde_json::from_str(line)?;
        let text = |k: &str| {
            row.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let key = (text("service"), text("environment"));
        let denied = text("decision") == "deny";
        let overridden = !denied && !text("override_label").is_empty();
        let c = counts.entry(key).or_default();
        c[usize::from(denied)] += 1;
        c[2] += u64::from(overridden);
        if denied || overridden {
            let at = row.get("at").and_then(Value::as_i64).unwrap_or_default();
            row.insert("at".into(), rfc3339(at).into());
            for k in GATE_HELD_HEADER {
                row.entry(k).or_insert(Value::Null);
            }
            held.push(Value::Object(row));
        }
    }
    let counts: Vec<Value> = counts
        .into_iter()
        .map(|((service, environment), [allowed, denied, overridden])| {
            json!({
                "service": service, "environment": environment,
                "allowed": allowed, "denied": denied, "overridden": overridden,
            })
        })
        .collect();
    Ok(json!({ "counts": counts, "held": held }))
}

/// One line for a terminal: `allow: …` / `deny: …` / `pass: …`.
fn line(answer: &Value, key: &str) -> String {
    let word = answer[key].as_str().unwrap_or("?");
    let why = match &answer["reasons"] {
        Value::Array(rs) => rs
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("; "),
        _ => answer["reason"].as_str().unwrap_or_default().to_owned(),
    };
    match answer["override_label"].as_str() {
        Some(label) => format!("{word} (labelled {label}, despite: {why})"),
        None => format!("{word}: {why}"),
    }
}

/// Prints an answer as `format` asks.
fn print(answer: &Value, key: &str, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(answer).unwrap_or_default()
        );
    } else {
        println!("{}", line(answer, key));
    }
}

/// Asks a running nines (`server` is its admin base URL) instead of reading the tables.
async fn remote(server: &str, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
    let mut url = url::Url::parse(server)
        .with_context(|| format!("--server {server:?} is not a URL"))?
        .join(path)?;
    url.query_pairs_mut()
        .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
    let response = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .build()?
        .get(url.clone())
        .send()
        .await
        .with_context(|| format!("asking {url}"))?;
    let status = response.status();
    let text = response.text().await?;
    let body: Value = serde_json::from_str(&text)
        .with_context(|| format!("{url} answered {status} with something other than JSON"))?;
    if !status.is_success() {
        bail!(
            "{url} answered {status}: {}",
            body["error"].as_str().unwrap_or(&text)
        );
    }
    Ok(body)
}

/// `nines gate`: prints the decision; the exit status is 0 (allow) or 1 (deny).
pub(crate) async fn gate(
    cfg: &Config,
    ask: &GateAsk,
    server: Option<&str>,
    json: bool,
) -> anyhow::Result<i32> {
    let answer = match server {
        Some(s) => {
            let mut q = vec![
                ("service", ask.service.clone()),
                ("environment", ask.environment.clone()),
                ("labels", ask.labels.join(",")),
                ("at", rfc3339(ask.at)),
                ("record", ask.record.to_string()),
            ];
            q.extend(ask.version.clone().map(|v| ("version", v)));
            q.extend(ask.requester.clone().map(|r| ("requester", r)));
            remote(s, "/v1/gate", &q).await?
        }
        None => {
            let store = crate::roles::open_store(cfg).await?;
            let recorder = match cfg.gate.record && ask.record {
                true => Some(Recorder::of_command(cfg)?),
                false => None,
            };
            let engine = QueryEngine::new(&store).await?;
            gate_answer(cfg, &engine, recorder.as_ref(), ask).await?
        }
    };
    print(&answer, "decision", json);
    if let Some(why) = answer["recorded"].as_str() {
        eprintln!("warning: the decision was {why}");
    }
    Ok(if answer["allow"] == Value::Bool(true) {
        0
    } else {
        1
    })
}

/// `nines verdict`: prints the verdict; the exit status is 0 (pass), 1 (fail) or 3
/// (inconclusive).
pub(crate) async fn verdict(
    cfg: &Config,
    ask: &VerdictAsk,
    server: Option<&str>,
    json: bool,
) -> anyhow::Result<i32> {
    let answer = match server {
        Some(s) => {
            let mut q = vec![
                ("service", ask.service.clone()),
                ("candidate", ask.candidate.clone()),
                ("baseline", ask.baseline.clone()),
                ("since", rfc3339(ask.from)),
                ("to", rfc3339(ask.to)),
            ];
            if let Some(e) = &ask.environment {
                q.push(("environment", e.clone()));
            }
            remote(s, "/v1/verdict", &q).await?
        }
        None => {
            let store = crate::roles::open_store(cfg).await?;
            verdict_answer(cfg, &QueryEngine::new(&store).await?, ask).await?
        }
    };
    print(&answer, "verdict", json);
    Ok(match answer["verdict"].as_str() {
        Some("pass") => 0,
        Some("fail") => 1,
        _ => EXIT_INCONCLUSIVE,
    })
}

/// `--since`: an RFC 3339 instant (or `now`), or a duration back from `to` (`1h`, `30m`).
pub(crate) fn parse_since(text: &str, to: i64) -> anyhow::Result<i64> {
    if let Ok(d) = humantime::parse_duration(text) {
        return Ok(to - i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2));
    }
    slo_cmd::parse_instant(text)
        .with_context(|| format!("--since {text:?} is neither a duration (1h) nor an instant"))
}

/// What the HTTP routes answer with: set once `nines up` has opened the store.
#[derive(Clone, Default)]
pub(crate) struct Served(Arc<OnceLock<(Config, QueryEngine, Option<Recorder>)>>);

impl Served {
    /// The routes may answer from now on (recording gate decisions with `recorder`).
    pub(crate) fn set(&self, cfg: Config, engine: QueryEngine, recorder: Option<Recorder>) {
        let _ = self.0.set((cfg, engine, recorder));
    }
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, axum::Json(json!({ "error": message.to_string() }))).into_response()
}

type Params = Query<HashMap<String, String>>;

/// `strict=true`: a deny, fail or inconclusive answer is `412 Precondition Failed` (for
/// webhooks that only read the status, as Flagger's do); otherwise every answer is `200`.
fn strict(p: &HashMap<String, String>) -> bool {
    p.get("strict").is_some_and(|v| v == "true" || v == "1")
}

fn answer(v: Value, held: bool) -> Response {
    let status = if held {
        StatusCode::PRECONDITION_FAILED
    } else {
        StatusCode::OK
    };
    (status, axum::Json(v)).into_response()
}

async fn gate_route(State(served): State<Served>, Query(p): Params) -> Response {
    let Some((cfg, engine, recorder)) = served.0.get() else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "nines is starting");
    };
    let Some(service) = p.get("service").filter(|s| !s.is_empty()) else {
        return error(StatusCode::BAD_REQUEST, "service: required");
    };
    let at = match p.get("at").filter(|s| !s.is_empty()) {
        Some(t) => match slo_cmd::parse_instant(t) {
            Ok(t) => t,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("at: {e:#}")),
        },
        None => slo_cmd::now(),
    };
    let record = match p.get("record").map(String::as_str) {
        None | Some("" | "true" | "1") => true,
        Some("false" | "0") => false,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("record: {other:?} is neither true nor false"),
            );
        }
    };
    let given = |k: &str| p.get(k).filter(|s| !s.is_empty()).cloned();
    let ask = GateAsk {
        service: service.clone(),
        environment: p
            .get("environment")
            .cloned()
            .unwrap_or_else(|| "default".into()),
        labels: p
            .get("labels")
            .map(|l| {
                l.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
        at,
        version: given("version"),
        requester: given("requester"),
        record,
    };
    match gate_answer(cfg, engine, recorder.as_ref(), &ask).await {
        Ok(v) => {
            let held = v["allow"] != Value::Bool(true);
            answer(v, held && strict(&p))
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    }
}

async fn verdict_route(State(served): State<Served>, Query(p): Params) -> Response {
    let Some((cfg, engine, _)) = served.0.get() else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "nines is starting");
    };
    let required = |k: &str| p.get(k).filter(|s| !s.is_empty()).cloned();
    let (Some(service), Some(candidate), Some(baseline)) = (
        required("service"),
        required("candidate"),
        required("baseline"),
    ) else {
        return error(
            StatusCode::BAD_REQUEST,
            "service, candidate and baseline: required",
        );
    };
    let to = match p.get("to").filter(|s| !s.is_empty()) {
        Some(t) => match slo_cmd::parse_instant(t) {
            Ok(t) => t,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("to: {e:#}")),
        },
        None => slo_cmd::now(),
    };
    let from = match parse_since(p.get("since").map_or("1h", String::as_str), to) {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("since: {e:#}")),
    };
    let ask = VerdictAsk {
        service,
        environment: required("environment"),
        candidate,
        baseline,
        from,
        to,
    };
    if let Err(e) = ask.check() {
        return error(StatusCode::BAD_REQUEST, e);
    }
    match verdict_answer(cfg, engine, &ask).await {
        Ok(v) => {
            let held = v["verdict"] != "pass";
            answer(v, held && strict(&p))
        }
        // The question was sound: reading the tables failed.
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    }
}

/// `GET /v1/gate` and `GET /v1/verdict` (and POST, for webhooks that post: the body is
/// ignored, the question is in the query), answering once `served` is set.
pub(crate) fn routes(served: Served) -> Router {
    Router::new()
        .route("/v1/gate", get(gate_route).post(gate_route))
        .route("/v1/verdict", get(verdict_route).post(verdict_route))
        .with_state(served)
}
