//! The idempotency window: a push retried with the same `batch_id` (after an ambiguous
//! error or timeout) must not count twice. Each record is keyed by (tenant, batch_id, part,
//! content fingerprint); a key seen within the window is a duplicate. The same batch_id with
//! other content is another batch, stored: ingest answered it OK, and dropping it here would
//! lose acknowledged events.
//!
//! What the window guarantees, exactly (the property test checks it against a plain list):
//! - **Time is the aggregator's.** A key is stamped with the time the aggregator saw it
//!   (`seen_at`, never earlier than any key before it), so no ingest clock, fast or slow,
//!   shortens the window. A retry seen within `max_age` of the original is a duplicate.
//! - **Per tenant.** Each tenant keeps its newest `max_per_tenant` keys of the partition; one
//!   tenant's traffic never pushes out another's keys.
//! - **Bounded by bytes.** Past `max_bytes` (all tenants of the partition), the oldest keys go
//!   first, each counted in [`DedupWindow::evicted_early`]: a retry of one of those is stored
//!   again, and the counter says it could be.
//! - A key never seen (or forgotten by the rules above) is never a duplicate.
//!
//! Pure: persistence is the store's job, and the clock is the caller's.

use std::collections::{HashMap, VecDeque};

pub use nines_model::flush::{BatchKey, Seen};

/// Bytes counted per remembered key beyond its strings: the map slot and the queue slot.
const ENTRY_OVERHEAD: usize = 2 * std::mem::size_of::<Seen>();

fn entry_bytes(s: &Seen) -> usize {
    ENTRY_OVERHEAD + 2 * (s.key.tenant.len() + s.key.batch_id.len())
}

/// Keys seen recently, per tenant, oldest first.
#[derive(Debug, Default)]
pub struct DedupWindow {
    max_age_ns: i64,
    max_per_tenant: usize,
    max_bytes: usize,
    keys: HashMap<BatchKey, i64>,
    tenants: HashMap<String, VecDeque<Seen>>,
    bytes: usize,
    newest: i64,
    next_sweep: i64,
    evicted_early: u64,
}

impl DedupWindow {
    pub fn new(max_age_ns: i64, max_per_tenant: usize, max_bytes: usize) -> Self {
        Self {
            max_age_ns,
            max_per_tenant: max_per_tenant.max(1),
            max_bytes,
            next_sweep: i64::MIN,
            ..Default::default()
        }
    }

    /// Records `seen` and answers true if it is new, false if its key is in the window.
    /// `seen.seen_at` is raised to the newest time already seen, if earlier.
    pub fn insert(&mut self, mut seen: Seen) -> bool {
        seen.seen_at = seen.seen_at.max(self.newest);
        self.newest = seen.seen_at;
        let horizon = self.horizon();
        if let Some(queue) = self.tenants.get_mut(&seen.key.tenant) {
            self.bytes -= expire(queue, &mut self.keys, horizon);
        }
        if self.newest >= self.next_sweep {
            self.sweep(horizon);
        }
        if self.keys.contains_key(&seen.key) {
            return false;
        }
        self.bytes += entry_bytes(&seen);
        self.keys.insert(seen.key.clone(), seen.seen_at);
        let queue = self.tenants.entry(seen.key.tenant.clone()).or_default();
        queue.push_back(seen);
        while queue.len() > self.max_per_tenant {
            let old = queue.pop_front().expect("longer than the bound");
            self.keys.remove(&old.key);
            self.bytes -= entry_bytes(&old);
        }
        while self.bytes > self.max_bytes && self.keys.len() > 1 {
            self.evict_oldest();
        }
        true
    }

    fn horizon(&self) -> i64 {
        self.newest.saturating_sub(self.max_age_ns)
    }

    /// Expires old keys of every tenant (those of the tenant being inserted expire at once;
    /// the others every eighth of the window, so idle tenants do not hold memory).
    fn sweep(&mut self, horizon: i64) {
        for queue in self.tenants.values_mut() {
            self.bytes -= expire(queue, &mut self.keys, horizon);
        }
        self.tenants.retain(|_, q| !q.is_empty());
        self.next_sweep = self.newest.saturating_add((self.max_age_ns / 8).max(1));
    }

    /// Drops the oldest key of all tenants (the byte bound).
    fn evict_oldest(&mut self) {
        let Some(tenant) = self
            .tenants
            .iter()
            .filter_map(|(t, q)| q.front().map(|s| (s.seen_at, t)))
            .min()
            .map(|(_, t)| t.clone())
        else {
            return;
        };
        let queue = self.tenants.get_mut(&tenant).expect("found above");
        let old = queue.pop_front().expect("has a front");
        self.keys.remove(&old.key);
        self.bytes -= entry_bytes(&old);
        self.evicted_early += 1;
    }

    /// Number of remembered keys (expired ones not yet swept included).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Keys forgotten before their time because of the byte bound, since creation.
    pub fn evicted_early(&self) -> u64 {
        self.evicted_early
    }

    /// The keys in the window, oldest first (what a compacted log keeps).
    pub fn entries(&self) -> Vec<&Seen> {
        let horizon = self.horizon();
        let mut all: Vec<&Seen> = self
            .tenants
            .values()
            .flatten()
            .filter(|s| s.seen_at >= horizon)
            .collect();
        all.sort_by_key(|s| (s.seen_at, s.offset));
        all
    }
}

/// Removes the keys of `queue` older than `horizon`; returns the bytes they took.
fn expire(queue: &mut VecDeque<Seen>, keys: &mut HashMap<BatchKey, i64>, horizon: i64) -> usize {
    let mut freed = 0;
    while queue.front().is_some_and(|s| s.seen_at < horizon) {
        let old = queue.pop_front().expect("has a front");
        keys.remove(&old.key);
        freed += entry_bytes(&old);
    }
    freed
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn seen(tenant: &str, id: &str, part: u32, at: i64) -> Seen {
        Seen {
            key: BatchKey {
                tenant: tenant.into(),
                batch_id: id.into(),
                part,
                fingerprint: 7,
            },
            offset: at,
            seen_at: at,
        }
    }

    #[test]
    fn repeats_within_the_window_are_duplicates() {
        let mut w = DedupWindow::new(100, 10, usize::MAX);
        assert!(w.insert(seen("t", "a", 0, 1)));
        assert!(
            w.insert(seen("t", "a", 1, 2)),
            "another part of the same push is new"
        );
        assert!(!w.insert(seen("t", "a", 0, 50)), "a retry is a duplicate");
        assert!(w.insert(seen("u", "a", 0, 3)), "keys are per tenant");
        let mut other_content = seen("t", "a", 0, 4);
        other_content.key.fingerprint = 8;
        assert!(
            w.insert(other_content),
            "the same id with other content is new"
        );
    }

    #[test]
    fn window_is_bounded_by_age_and_count_per_tenant() {
        let mut w = DedupWindow::new(100, 3, usize::MAX);
        assert!(w.insert(seen("t", "a", 0, 0)));
        assert!(w.insert(seen("t", "b", 0, 150)));
        // "a" (seen at 0) is older than 150 - 100: forgotten.
        assert!(w.insert(seen("t", "a", 0, 151)));
        assert!(w.insert(seen("t", "c", 0, 152)));
        assert!(w.insert(seen("t", "d", 0, 153)));
        assert!(
            w.insert(seen("t", "b", 0, 154)),
            "evicted by the tenant's count, so new again"
        );
        // Another tenant's traffic does not push out t's keys.
        for i in 0..50 {
            assert!(w.insert(seen("noisy", &format!("n{i}"), 0, 155)));
        }
        assert!(!w.insert(seen("t", "d", 0, 156)), "still remembered");
        assert_eq!(w.evicted_early(), 0);
    }

    #[test]
    fn an_earlier_clock_does_not_shorten_the_window() {
        let mut w = DedupWindow::new(100, 10, usize::MAX);
        assert!(w.insert(seen("t", "a", 0, 1_000)));
        // The aggregator's clock steps back: the key is stamped at 1,000, not 10.
        assert!(w.insert(seen("t", "b", 0, 10)));
        assert!(!w.insert(seen("t", "b", 0, 1_099)), "b counts from 1,000");
        assert!(w.insert(seen("t", "b", 0, 1_101)), "and expires 100 later");
    }

    #[test]
    fn the_byte_bound_evicts_oldest_first_and_counts_it() {
        let per_key = entry_bytes(&seen("t", "k00", 0, 0));
        let mut w = DedupWindow::new(1_000_000, 1_000, 10 * per_key);
        for i in 0..15 {
            assert!(w.insert(seen(
                if i % 2 == 0 { "t" } else { "u" },
                &format!("k{i:02}"),
                0,
                i
            )));
        }
        assert_eq!(w.len(), 10);
        assert_eq!(w.evicted_early(), 5);
        // k00..k04 are gone (new again), k05..k14 remain.
        assert!(!w.insert(seen("u", "k05", 0, 20)));
        assert!(w.insert(seen("t", "k00", 0, 21)));
    }

    /// The specification as a plain list: the live keys, in the order they were seen.
    #[derive(Default)]
    struct Model {
        live: Vec<(BatchKey, i64)>,
        newest: i64,
    }

    impl Model {
        fn insert(&mut self, key: BatchKey, at: i64, max_age: i64, per_tenant: usize) -> bool {
            self.newest = self.newest.max(at);
            let horizon = self.newest - max_age;
            self.live.retain(|(_, t)| *t >= horizon);
            if self.live.iter().any(|(k, _)| *k == key) {
                return false;
            }
            let tenant = key.tenant.clone();
            self.live.push((key, self.newest));
            while self.live.iter().filter(|(k, _)| k.tenant == tenant).count() > per_tenant {
                let first = self
                    .live
                    .iter()
                    .position(|(k, _)| k.tenant == tenant)
                    .expect("over the bound");
                self.live.remove(first);
            }
            true
        }
    }

    proptest! {
        #[test]
        fn the_window_answers_as_the_model(
            ops in prop::collection::vec((0..3_u8, 0..12_u8, 0..2_u8, 0..3_u32, -30..60_i64), 1..300),
            max_age in 1..200_i64,
            per_tenant in 1..8_usize,
        ) {
            let mut w = DedupWindow::new(max_age, per_tenant, usize::MAX);
            let mut m = Model::default();
            let mut clock = 0_i64;
            for (i, (tenant, id, fp, part, step)) in ops.into_iter().enumerate() {
                // The clock mostly advances and sometimes steps back.
                clock += step;
                let key = BatchKey {
                    tenant: format!("t{tenant}"),
                    batch_id: format!("b{id}"),
                    part,
                    fingerprint: u128::from(fp),
                };
                let expected = m.insert(key.clone(), clock, max_age, per_tenant);
                let got = w.insert(Seen { key, offset: i as i64, seen_at: clock });
                prop_assert_eq!(got, expected, "insert {}", i);
            }
            // The same keys are live, with the same times.
            let flat = |k: &BatchKey, t: i64| (t, k.tenant.clone(), k.batch_id.clone(), k.part, k.fingerprint);
            let mut expected: Vec<_> = m.live.iter().map(|(k, t)| flat(k, *t)).collect();
            let mut got: Vec<_> = w.entries().into_iter().map(|s| flat(&s.key, s.seen_at)).collect();
            expected.sort();
            got.sort();
            prop_assert_eq!(got, expected);
        }
    }
}
