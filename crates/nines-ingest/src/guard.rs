//! Per-process memory of what ingest has seen, each bounded: distinct operations per
//! service (the cardinality guard) and versions per service and environment (deploys that
//! telemetry reveals).
//!
//! Both are bounded per service and, in total, by bytes ([`Tracked`]): past the budget the
//! services least recently pushed are forgotten, counted in
//! `nines_ingest_tracked_services_evicted_total{map}`. A forgotten service starts again: its
//! next operations are admitted up to the cap again, and its next version is a baseline.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::Mutex;

use ::metrics::counter;
use nines_proto::v1::{DeployEvent, DeployOutcome, DeploySource, Resource};
use nines_record::RequestLike;

use crate::metrics;

/// The operation a request is stored under once its service has too many distinct ones.
pub use nines_record::OVERFLOW_OPERATION;

/// Versions remembered per (tenant, service, environment).
const VERSIONS_KEPT: usize = 64;

/// Bytes counted for one remembered string beyond its own length (allocation, hash slot).
const ENTRY_OVERHEAD: usize = 64;

/// A map bounded in total by bytes, forgetting its least recently used keys past the budget.
#[derive(Debug)]
pub struct Tracked<K, V> {
    name: &'static str,
    max_bytes: usize,
    bytes: usize,
    tick: u64,
    entries: HashMap<K, (V, usize, u64)>,
}

impl<K: Hash + Eq + Clone, V: Default> Tracked<K, V> {
    pub fn new(name: &'static str, max_bytes: usize) -> Self {
        Self {
            name,
            max_bytes,
            bytes: 0,
            tick: 0,
            entries: HashMap::new(),
        }
    }

    /// The value of `key` (new if absent), marked as just used; `f` returns the bytes it
    /// added to the value. Evicts least recently used keys if over budget afterwards.
    pub fn with<R>(&mut self, key: &K, f: impl FnOnce(&mut V) -> (R, usize)) -> R {
        self.tick += 1;
        let tick = self.tick;
        let entry = match self.entries.get_mut(key) {
            Some(e) => e,
            None => {
                self.bytes += ENTRY_OVERHEAD;
                self.entries
                    .entry(key.clone())
                    .or_insert_with(|| (V::default(), ENTRY_OVERHEAD, tick))
            }
        };
        entry.2 = tick;
        let (out, added) = f(&mut entry.0);
        entry.1 += added;
        self.bytes += added;
        if self.bytes > self.max_bytes {
            self.evict();
        }
        out
    }

    /// Bytes removed from `key`'s value by the caller.
    pub fn shrink(&mut self, key: &K, f: impl FnOnce(&mut V) -> usize) {
        if let Some(e) = self.entries.get_mut(key) {
            let removed = f(&mut e.0).min(e.1);
            e.1 -= removed;
            self.bytes -= removed;
        }
    }

    /// Forgets the least recently used keys until at most 3/4 of the budget is used (one
    /// sort per eviction round, not one per push), always keeping the newest key.
    fn evict(&mut self) {
        let mut by_age: Vec<(u64, K, usize)> = self
            .entries
            .iter()
            .map(|(k, (_, bytes, tick))| (*tick, k.clone(), *bytes))
            .collect();
        by_age.sort_unstable_by_key(|(tick, _, _)| *tick);
        let target = self.max_bytes / 4 * 3;
        let mut evicted = 0_u64;
        for (tick, key, bytes) in by_age {
            if self.bytes <= target || tick == self.tick {
                break;
            }
            self.entries.remove(&key);
            self.bytes -= bytes;
            evicted += 1;
        }
        metrics::tracked_services_evicted(self.name, evicted);
    }

    /// Bytes counted now.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Caps distinct operations per (tenant, service): a bug that puts user ids into routes
/// cannot blow up memory, the rollups or the queries.
#[derive(Debug)]
pub struct OperationGuard {
    max: usize,
    seen: Mutex<Tracked<(String, String), Operations>>,
}

/// One service's admitted operations. Looked up once per request event, so hashed with
/// foldhash rather than SipHash (the set is capped at the guard's `max`, so a client that
/// crafts colliding names slows only its own service's lookups, and only that far).
type Operations = HashSet<String, foldhash::fast::RandomState>;

impl OperationGuard {
    /// At most `max` operations per service, and `max_bytes` of operation names in all.
    pub fn new(max: usize, max_bytes: usize) -> Self {
        Self {
            max,
            seen: Mutex::new(Tracked::new("operations", max_bytes)),
        }
    }

    /// Picks the operations of `tenant`'s `service` beyond the cap, to be renamed to
    /// [`OVERFLOW_OPERATION`]: their indices in `operations`, ascending.
    pub fn apply(&self, tenant: &str, service: &str, operations: &[&str]) -> Vec<usize> {
        if operations.is_empty() {
            return Vec::new();
        }
        let key = (tenant.to_owned(), service.to_owned());
        let mut seen = self.seen.lock().expect("operation guard lock");
        let renamed = seen.with(&key, |ops| {
            let mut renamed = Vec::new();
            let mut added = 0;
            // The previous event's operation and whether it was renamed: an operation
            // repeated in a run (a push of one route's requests) gets the same answer, as
            // the set changes only by admitting it.
            let mut previous: Option<(&str, bool)> = None;
            for (i, &operation) in operations.iter().enumerate() {
                let rename = match previous {
                    Some((p, rename)) if p == operation => rename,
                    _ if ops.contains(operation) => false,
                    _ if ops.len() < self.max => {
                        added += operation.len() + ENTRY_OVERHEAD;
                        ops.insert(operation.to_owned());
                        false
                    }
                    _ => true,
                };
                if rename {
                    renamed.push(i);
                }
                previous = Some((operation, rename));
            }
            (renamed, added)
        });
        if !renamed.is_empty() {
            counter!(metrics::OPERATIONS_OVERFLOWED).increment(renamed.len() as u64);
        }
        renamed
    }
}

/// Notices a `service.version` not seen before for a service and environment, after the
/// first one (which is the baseline, not a deploy), and makes it a deploy event.
#[derive(Debug)]
pub struct VersionTracker {
    seen: Mutex<Tracked<(String, String, String), VecDeque<String>>>,
}

impl VersionTracker {
    /// At most [`VERSIONS_KEPT`] versions per service, and `max_bytes` of them in all.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            seen: Mutex::new(Tracked::new("versions", max_bytes)),
        }
    }
}

impl VersionTracker {
    /// The telemetry deploy a push of `requests` from `resource` reveals, if any: time = its
    /// earliest request.
    pub fn observe(
        &self,
        resource: Option<&Resource>,
        requests: &[impl RequestLike],
    ) -> Option<DeployEvent> {
        let r = resource?;
        if r.version.is_empty() || requests.is_empty() {
            return None;
        }
        let key = (r.tenant.clone(), r.service.clone(), r.environment.clone());
        let mut seen = self.seen.lock().expect("version tracker lock");
        let baseline = seen.with(&key, |versions| {
            if versions.iter().any(|v| *v == r.version) {
                return (None, 0);
            }
            let baseline = versions.is_empty();
            let mut added = r.version.len() as isize + ENTRY_OVERHEAD as isize;
            if versions.len() == VERSIONS_KEPT {
                let old = versions.pop_front().unwrap_or_default();
                added -= old.len() as isize + ENTRY_OVERHEAD as isize;
            }
            versions.push_back(r.version.clone());
            (Some(baseline), added.max(0) as usize)
        })?;
        if baseline {
            return None;
        }
        counter!(metrics::TELEMETRY_DEPLOYS).increment(1);
        Some(DeployEvent {
            time_unix_nano: requests.iter().map(|e| e.time_unix_nano()).min()?,
            service: r.service.clone(),
            environment: r.environment.clone(),
            version: r.version.clone(),
            commits: Vec::new(),
            outcome: DeployOutcome::Succeeded as i32,
            source: DeploySource::Telemetry as i32,
        })
    }
}

/// A revealed deploy whose push is not stored yet: dropped without [`Revealed::keep`] (an
/// error, or the push's future dropped on a timeout), its version is forgotten, so the
/// retry reveals the deploy again.
#[derive(Debug)]
pub struct Revealed<'a> {
    versions: &'a VersionTracker,
    tenant: String,
    deploy: Option<DeployEvent>,
}

impl Revealed<'_> {
    /// The push was stored: the version stays seen.
    pub fn keep(mut self) {
        self.deploy = None;
    }
}

impl Drop for Revealed<'_> {
    fn drop(&mut self) {
        if let Some(d) = self.deploy.take() {
            self.versions.forget(&self.tenant, &d);
        }
    }
}

impl VersionTracker {
    /// Holds `deploy`, just revealed by `observe`, until its push is stored.
    pub fn pending(&self, tenant: &str, deploy: DeployEvent) -> Revealed<'_> {
        Revealed {
            versions: self,
            tenant: tenant.to_owned(),
            deploy: Some(deploy),
        }
    }

    /// Forgets the version `deploy` revealed (its push was not stored; the retry reveals it).
    pub fn forget(&self, tenant: &str, deploy: &DeployEvent) {
        let key = (
            tenant.to_owned(),
            deploy.service.clone(),
            deploy.environment.clone(),
        );
        self.seen
            .lock()
            .expect("version tracker lock")
            .shrink(&key, |versions| {
                let before = versions.len();
                versions.retain(|v| *v != deploy.version);
                (before - versions.len()) * (deploy.version.len() + ENTRY_OVERHEAD)
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nines_proto::v1::{PushRequest, RequestEvent};

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

    fn observe(t: &VersionTracker, p: &PushRequest) -> Option<DeployEvent> {
        t.observe(p.resource.as_ref(), &p.requests)
    }

    #[test]
    fn operations_beyond_the_cap_overflow() {
        let guard = OperationGuard::new(2, 1 << 20);
        let renamed = guard.apply("t", "a", &["x", "y", "z", "x", "w"]);
        assert_eq!(renamed, [2, 4]);
        // Another service has its own budget.
        assert!(guard.apply("t", "b", &["z", "w"]).is_empty());
        // The first two stay admitted; the third is over the cap again.
        assert_eq!(guard.apply("t", "a", &["y", "w", "x"]), [1]);
    }

    #[test]
    fn an_operation_repeated_in_a_run_gets_its_first_answer() {
        let guard = OperationGuard::new(2, 1 << 20);
        let ops = ["x", "x", "y", "y", "z", "z", "z", "x", "w", "w", "y"];
        // By hand: x and y fill the cap; z (three times) and w (twice) are over it.
        assert_eq!(guard.apply("t", "a", &ops), [4, 5, 6, 8, 9]);
        // Each admitted name is counted once in the budget, however often it came.
        let seen = guard.seen.lock().expect("lock");
        assert_eq!(seen.bytes(), ENTRY_OVERHEAD + 2 * (1 + ENTRY_OVERHEAD));
    }

    #[test]
    fn a_new_version_after_the_baseline_is_one_deploy() {
        let t = VersionTracker::new(1 << 20);
        assert!(observe(&t, &push("a", "1.0", &["x"])).is_none(), "baseline");
        assert!(observe(&t, &push("a", "1.0", &["x"])).is_none());
        let d = observe(&t, &push("a", "1.1", &["x", "y"])).expect("deploy");
        assert_eq!((d.version.as_str(), d.time_unix_nano), ("1.1", 1_000));
        assert_eq!(d.source, DeploySource::Telemetry as i32);
        // Interleaved old and new versions (a rolling deploy) reveal nothing more.
        assert!(observe(&t, &push("a", "1.0", &["x"])).is_none());
        assert!(observe(&t, &push("a", "1.1", &["x"])).is_none());
    }

    #[test]
    fn services_past_the_byte_budget_are_forgotten_oldest_first() {
        // Each service remembers one 1,000-byte operation: about 1,128 bytes with overheads.
        let guard = OperationGuard::new(10, 20_000);
        let op = "x".repeat(1_000);
        for i in 0..100 {
            assert!(
                guard
                    .apply("t", &format!("s{i}"), &[op.as_str()])
                    .is_empty()
            );
        }
        let seen = guard.seen.lock().unwrap();
        assert!(seen.bytes() <= 20_000, "{} bytes", seen.bytes());
        // Evicting down to 3/4 of the budget keeps between 13 and 17 services, the newest.
        assert!((13..=17).contains(&seen.len()), "{} services", seen.len());
        assert!(seen.entries.contains_key(&("t".into(), "s99".into())));
        assert!(!seen.entries.contains_key(&("t".into(), "s0".into())));
    }

    #[test]
    fn a_forgotten_service_starts_again_from_a_baseline() {
        let t = VersionTracker::new(300);
        assert!(observe(&t, &push("a", "1.0", &["x"])).is_none(), "baseline");
        // Two other services push the first out of the 300-byte budget.
        assert!(observe(&t, &push("b", "1.0", &["x"])).is_none());
        assert!(observe(&t, &push("c", "1.0", &["x"])).is_none());
        assert!(
            observe(&t, &push("a", "1.1", &["x"])).is_none(),
            "a new baseline"
        );
        assert!(observe(&t, &push("a", "1.2", &["x"])).is_some());
    }

    #[test]
    fn a_deploy_whose_push_is_not_stored_is_revealed_again() {
        let t = VersionTracker::new(1 << 20);
        assert!(observe(&t, &push("a", "1.0", &["x"])).is_none(), "baseline");
        // The push's future is dropped (a timeout) before it is stored.
        let d = observe(&t, &push("a", "1.1", &["x"])).expect("deploy");
        drop(t.pending("t", d));
        let d = observe(&t, &push("a", "1.1", &["x"])).expect("revealed again");
        // This time it is stored.
        t.pending("t", d).keep();
        assert!(
            observe(&t, &push("a", "1.1", &["x"])).is_none(),
            "seen for good"
        );
    }
}
