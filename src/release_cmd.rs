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
use nines_query::QueryEngine;
use nines_query::release_source::{self, Comparison};
use nines_slo::gate::{self, Standing};
use nines_slo::model::Slo;
use nines_slo::verdict;
use nines_slo::window::rfc3339;
use serde_json::{Value, json};

use crate::config::Config;
use crate::slo_cmd;

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
    let d = gate::decide(&policy, &ask.labels, &standings);
    metrics::counter!("nines_gate_decisions_total", "decision" => d.decision).increment(1);
    Ok(json!({
        "service": ask.service,
        "environment": ask.environment,
        "labels": ask.labels,
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
    metrics::counter!("nines_verdicts_total", "verdict" => v.outcome.as_str()).increment(1);
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
            let q = [
                ("service", ask.service.clone()),
                ("environment", ask.environment.clone()),
                ("labels", ask.labels.join(",")),
                ("at", rfc3339(ask.at)),
            ];
            remote(s, "/v1/gate", &q).await?
        }
        None => {
            let store = crate::roles::open_store(cfg).await?;
            gate_answer(cfg, &QueryEngine::new(&store).await?, ask).await?
        }
    };
    print(&answer, "decision", json);
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
pub(crate) struct Served(Arc<OnceLock<(Config, QueryEngine)>>);

impl Served {
    /// The routes may answer from now on.
    pub(crate) fn set(&self, cfg: Config, engine: QueryEngine) {
        let _ = self.0.set((cfg, engine));
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
    let Some((cfg, engine)) = served.0.get() else {
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
    };
    match gate_answer(cfg, engine, &ask).await {
        Ok(v) => {
            let held = v["allow"] != Value::Bool(true);
            answer(v, held && strict(&p))
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    }
}

async fn verdict_route(State(served): State<Served>, Query(p): Params) -> Response {
    let Some((cfg, engine)) = served.0.get() else {
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
