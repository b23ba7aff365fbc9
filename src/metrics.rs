//! The metrics of what `nines up` runs beside the roles (docs/metrics.md, "SLO", "Release",
//! "Report"), and [`register`]: every role describes its metrics and creates each series of
//! a closed label set at zero before it says it is ready, so that `/metrics` shows all of
//! them from the start (docs/metrics.md, column "appears").

use ::metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

use crate::roles::{Plan, Role};

pub(crate) const SLO_OBJECTIVES: &str = "nines_slo_objectives";
pub(crate) const SLO_DEFINITION_ERRORS: &str = "nines_slo_definition_errors";
pub(crate) const SLO_EVALUATIONS: &str = "nines_slo_evaluations_total";
pub(crate) const SLO_EVALUATION_DURATION: &str = "nines_slo_evaluation_duration_seconds";
pub(crate) const SLO_EVALUATION_TIMESTAMP: &str = "nines_slo_evaluation_timestamp_seconds";
pub(crate) const SLO_ALERTMANAGER_POSTS: &str = "nines_slo_alertmanager_posts_total";
pub(crate) const SLO_TARGET: &str = "nines_slo_target";
pub(crate) const SLO_SLI: &str = "nines_slo_sli";
pub(crate) const SLO_BUDGET_REMAINING: &str = "nines_slo_budget_remaining_ratio";
pub(crate) const SLO_BUDGET_CONSUMED: &str = "nines_slo_budget_consumed_ratio";
pub(crate) const SLO_COVERAGE: &str = "nines_slo_coverage_ratio";
pub(crate) const SLO_TIME_TO_EXHAUSTION: &str = "nines_slo_time_to_exhaustion_seconds";
pub(crate) const SLO_STATUS: &str = "nines_slo_status";
pub(crate) const SLO_BURN_RATE: &str = "nines_slo_burn_rate";
pub(crate) const SLO_ALERT_FIRING: &str = "nines_slo_alert_firing";
pub(crate) const GATE_DECISIONS: &str = "nines_gate_decisions_total";
pub(crate) const GATE_DECISIONS_UNRECORDED: &str = "nines_gate_decisions_unrecorded_total";
pub(crate) const CANARY_VERDICTS: &str = "nines_canary_verdicts_total";
pub(crate) const REPORT_RUNS: &str = "nines_report_runs_total";

/// `result` of [`SLO_EVALUATIONS`] and [`REPORT_RUNS`].
pub(crate) const RESULTS: [&str; 2] = ["ok", "error"];
/// `result` of [`SLO_ALERTMANAGER_POSTS`].
pub(crate) const POST_RESULTS: [&str; 3] = ["ok", "refused", "unreachable"];
/// `status` of [`SLO_STATUS`] (`nines_slo::budget::Status::as_str`).
pub(crate) const SLO_STATUSES: [&str; 4] = ["ok", "warning", "exhausted", "no_data"];
/// `decision` of [`GATE_DECISIONS`].
pub(crate) const DECISIONS: [&str; 2] = ["allow", "deny"];
/// `verdict` of [`CANARY_VERDICTS`] (`nines_slo::verdict::Outcome::as_str`).
pub(crate) const VERDICTS: [&str; 3] = ["pass", "fail", "inconclusive"];

/// Counts one SLO objective's evaluation, evaluated or not.
pub(crate) fn slo_evaluated(ok: bool) {
    counter!(SLO_EVALUATIONS, "result" => RESULTS[usize::from(!ok)]).increment(1);
}

/// Counts one scheduled report, written or not.
pub(crate) fn report_run(ok: bool) {
    counter!(REPORT_RUNS, "result" => RESULTS[usize::from(!ok)]).increment(1);
}

/// Describes the metrics of every part `plan` runs and creates their series at zero. The
/// admin server (the recorder) must be up.
pub(crate) fn register(plan: &Plan) {
    let query = plan.query.is_some();
    match plan.role {
        Role::Up => {
            nines_ingest::metrics::register();
            nines_bus::metrics::register();
            nines_pipeline::metrics::register();
            nines_store::metrics::register();
            if query {
                nines_query::metrics::register();
            }
            register_up();
        }
        Role::Ingest => {
            nines_ingest::metrics::register();
            nines_bus::metrics::register();
        }
        Role::Aggregate => {
            nines_pipeline::metrics::register();
            nines_store::metrics::register();
            nines_bus::metrics::register();
        }
        Role::Query => nines_query::metrics::register(),
        // The broker's series are per topic, set by its retention guard.
        Role::Broker => {}
    }
}

/// The live SLO evaluation, the release gate and verdicts, and the scheduled reports.
fn register_up() {
    describe_gauge!(
        SLO_OBJECTIVES,
        "SLO objectives under slo.dir being evaluated."
    );
    gauge!(SLO_OBJECTIVES).increment(0.0);
    describe_gauge!(
        SLO_DEFINITION_ERRORS,
        "SLO definitions under slo.dir refused."
    );
    gauge!(SLO_DEFINITION_ERRORS).increment(0.0);
    describe_counter!(SLO_EVALUATIONS, "Evaluations of one objective, by result.");
    for result in RESULTS {
        counter!(SLO_EVALUATIONS, "result" => result).increment(0);
    }
    describe_histogram!(
        SLO_EVALUATION_DURATION,
        "Time to evaluate every objective once."
    );
    let _ = histogram!(SLO_EVALUATION_DURATION);
    describe_gauge!(
        SLO_EVALUATION_TIMESTAMP,
        "The instant last evaluated, in seconds since the epoch (0: never)."
    );
    gauge!(SLO_EVALUATION_TIMESTAMP).increment(0.0);
    describe_counter!(
        SLO_ALERTMANAGER_POSTS,
        "POSTs of alerts to Alertmanager, by result."
    );
    for result in POST_RESULTS {
        counter!(SLO_ALERTMANAGER_POSTS, "result" => result).increment(0);
    }
    let objective = [
        (SLO_TARGET, "The objective's target."),
        (SLO_SLI, "The SLI over the SLO's period (NaN without data)."),
        (
            SLO_BUDGET_REMAINING,
            "Error budget remaining, unclamped (-0.5: half a budget over).",
        ),
        (SLO_BUDGET_CONSUMED, "Error budget consumed."),
        (SLO_COVERAGE, "Share of the period with data."),
        (
            SLO_TIME_TO_EXHAUSTION,
            "Time to exhaust the budget at the last hour's burn (NaN at no burn).",
        ),
        (SLO_STATUS, "1 for the objective's current status."),
        (SLO_BURN_RATE, "Burn rate over the window."),
        (SLO_ALERT_FIRING, "1 while the alert fires."),
    ];
    for (name, help) in objective {
        describe_gauge!(name, help);
    }
    describe_counter!(GATE_DECISIONS, "Release gate answers, by decision.");
    for decision in DECISIONS {
        counter!(GATE_DECISIONS, "decision" => decision).increment(0);
    }
    describe_counter!(
        GATE_DECISIONS_UNRECORDED,
        "Gate decisions that could not be recorded in gate_decisions."
    );
    counter!(GATE_DECISIONS_UNRECORDED).increment(0);
    describe_counter!(CANARY_VERDICTS, "Canary verdicts, by verdict.");
    for verdict in VERDICTS {
        counter!(CANARY_VERDICTS, "verdict" => verdict).increment(0);
    }
    describe_counter!(REPORT_RUNS, "Scheduled reports, by result.");
    for result in RESULTS {
        counter!(REPORT_RUNS, "result" => result).increment(0);
    }
}
