//! Per-process memory of what ingest has seen, each bounded: distinct operations per
//! service (the cardinality guard) and versions per service and environment (deploys that
//! telemetry reveals).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;

use metrics::counter;
use nines_proto::v1::{DeployEvent, DeployOutcome, DeploySource, PushRequest};

/// The operation a request is stored under once its service has too many distinct ones.
pub const OVERFLOW_OPERATION: &str = "__overflow__";

/// Versions remembered per (tenant, service, environment).
const VERSIONS_KEPT: usize = 64;

/// Caps distinct operations per (tenant, service): a bug that puts user ids into routes
/// cannot blow up memory, the rollups or the queries.
#[derive(Debug)]
pub struct OperationGuard {
    max: usize,
    seen: Mutex<HashMap<(String, String), HashSet<String>>>,
}

impl OperationGuard {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Renames operations beyond the cap to [`OVERFLOW_OPERATION`]; returns how many.
    pub fn apply(&self, req: &mut PushRequest) -> u64 {
        let Some(r) = req.resource.as_ref() else {
            return 0;
        };
        if req.requests.is_empty() {
            return 0;
        }
        let key = (r.tenant.clone(), r.service.clone());
        let mut seen = self.seen.lock().expect("operation guard lock");
        let ops = seen.entry(key).or_default();
        let mut overflowed = 0;
        for e in &mut req.requests {
            if ops.contains(e.operation.as_str()) {
                continue;
            }
            if ops.len() < self.max {
                ops.insert(e.operation.clone());
            } else {
                e.operation = OVERFLOW_OPERATION.to_owned();
                overflowed += 1;
            }
        }
        if overflowed > 0 {
            counter!("nines_ingest_operations_overflowed_total").increment(overflowed);
        }
        overflowed
    }
}

/// Notices a `service.version` not seen before for a service and environment, after the
/// first one (which is the baseline, not a deploy), and makes it a deploy event.
#[derive(Debug, Default)]
pub struct VersionTracker {
    seen: Mutex<HashMap<(String, String, String), VecDeque<String>>>,
}

impl VersionTracker {
    /// The telemetry deploy `req` reveals, if any: time = its earliest request.
    pub fn observe(&self, req: &PushRequest) -> Option<DeployEvent> {
        let r = req.resource.as_ref()?;
        if r.version.is_empty() || req.requests.is_empty() {
            return None;
        }
        let key = (r.tenant.clone(), r.service.clone(), r.environment.clone());
        let mut seen = self.seen.lock().expect("version tracker lock");
        let versions = seen.entry(key).or_default();
        if versions.iter().any(|v| *v == r.version) {
            return None;
        }
        let baseline = versions.is_empty();
        if versions.len() == VERSIONS_KEPT {
            versions.pop_front();
        }
        versions.push_back(r.version.clone());
        if baseline {
            return None;
        }
        counter!("nines_ingest_telemetry_deploys_total").increment(1);
        Some(DeployEvent {
            time_unix_nano: req.requests.iter().map(|e| e.time_unix_nano).min()?,
            service: r.service.clone(),
            environment: r.environment.clone(),
            version: r.version.clone(),
            commits: Vec::new(),
            outcome: DeployOutcome::Succeeded as i32,
            source: DeploySource::Telemetry as i32,
        })
    }
}

impl VersionTracker {
    /// Forgets the version `deploy` revealed (its push was not stored; the retry reveals it).
    pub fn forget(&self, tenant: &str, deploy: &DeployEvent) {
        let key = (
            tenant.to_owned(),
            deploy.service.clone(),
            deploy.environment.clone(),
        );
        if let Some(versions) = self
            .seen
            .lock()
            .expect("version tracker lock")
            .get_mut(&key)
        {
            versions.retain(|v| *v != deploy.version);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nines_proto::v1::{RequestEvent, Resource};

    fn push(service: &str, version: &str, ops: &[&str]) -> PushRequest {
        PushRequest {
            resource: Some(Resource {
                tenant: "t".into(),
                service: service.into(),
                environment: "prod".into(),
                version: version.into(),
            }),
            requests: ops
                .iter()
                .enumerate()
                .map(|(i, op)| RequestEvent {
                    time_unix_nano: 1_000 + i as i64,
                    operation: (*op).into(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn operations_beyond_the_cap_overflow() {
        let guard = OperationGuard::new(2);
        let mut p = push("a", "", &["x", "y", "z", "x", "w"]);
        assert_eq!(guard.apply(&mut p), 2);
        let ops: Vec<&str> = p.requests.iter().map(|e| e.operation.as_str()).collect();
        assert_eq!(ops, ["x", "y", "__overflow__", "x", "__overflow__"]);
        // Another service has its own budget.
        assert_eq!(guard.apply(&mut push("b", "", &["z", "w"])), 0);
    }

    #[test]
    fn a_new_version_after_the_baseline_is_one_deploy() {
        let t = VersionTracker::default();
        assert!(t.observe(&push("a", "1.0", &["x"])).is_none(), "baseline");
        assert!(t.observe(&push("a", "1.0", &["x"])).is_none());
        let d = t.observe(&push("a", "1.1", &["x", "y"])).expect("deploy");
        assert_eq!((d.version.as_str(), d.time_unix_nano), ("1.1", 1_000));
        assert_eq!(d.source, DeploySource::Telemetry as i32);
        // Interleaved old and new versions (a rolling deploy) reveal nothing more.
        assert!(t.observe(&push("a", "1.0", &["x"])).is_none());
        assert!(t.observe(&push("a", "1.1", &["x"])).is_none());
    }
}
