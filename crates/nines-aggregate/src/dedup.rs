//! The idempotency window: a push retried with the same `batch_id` (after an ambiguous
//! error or timeout) must not count twice. Each record is keyed by (tenant, batch_id, part);
//! a key seen within the window is a duplicate.
//!
//! The window is bounded by age (relative to the newest record seen) and by entry count, so
//! memory stays bounded whatever clients send. Pure: persistence is the store's job.

use std::collections::{HashMap, VecDeque};

/// Identity of one record of one push.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BatchKey {
    pub tenant: String,
    pub batch_id: String,
    pub part: u32,
}

/// A remembered key, with the offset of the record that carried it and when ingest took it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub key: BatchKey,
    pub offset: i64,
    pub received_at: i64,
}

/// Keys seen recently, oldest first.
#[derive(Debug, Default)]
pub struct DedupWindow {
    max_age_ns: i64,
    max_entries: usize,
    keys: HashMap<BatchKey, i64>,
    order: VecDeque<Seen>,
    newest: i64,
}

impl DedupWindow {
    pub fn new(max_age_ns: i64, max_entries: usize) -> Self {
        Self {
            max_age_ns,
            max_entries: max_entries.max(1),
            ..Default::default()
        }
    }

    /// Records `seen` and answers true if it is new, false if its key is in the window.
    pub fn insert(&mut self, seen: Seen) -> bool {
        if self.keys.contains_key(&seen.key) {
            return false;
        }
        self.newest = self.newest.max(seen.received_at);
        self.keys.insert(seen.key.clone(), seen.received_at);
        self.order.push_back(seen);
        self.evict();
        true
    }

    fn evict(&mut self) {
        let horizon = self.newest.saturating_sub(self.max_age_ns);
        while let Some(front) = self.order.front() {
            if self.order.len() > self.max_entries || front.received_at < horizon {
                let old = self.order.pop_front().expect("front exists");
                self.keys.remove(&old.key);
            } else {
                break;
            }
        }
    }

    /// Number of remembered keys.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The remembered keys, oldest first (what a compacted log keeps).
    pub fn entries(&self) -> impl Iterator<Item = &Seen> {
        self.order.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(id: &str, part: u32, received_at: i64) -> Seen {
        Seen {
            key: BatchKey {
                tenant: "t".into(),
                batch_id: id.into(),
                part,
            },
            offset: received_at,
            received_at,
        }
    }

    #[test]
    fn repeats_within_the_window_are_duplicates() {
        let mut w = DedupWindow::new(100, 10);
        assert!(w.insert(seen("a", 0, 1)));
        assert!(
            w.insert(seen("a", 1, 2)),
            "another part of the same push is new"
        );
        assert!(!w.insert(seen("a", 0, 50)), "a retry is a duplicate");
        let mut other_tenant = seen("a", 0, 3);
        other_tenant.key.tenant = "u".into();
        assert!(w.insert(other_tenant), "keys are per tenant");
    }

    #[test]
    fn window_is_bounded_by_age_and_count() {
        let mut w = DedupWindow::new(100, 3);
        assert!(w.insert(seen("a", 0, 0)));
        assert!(w.insert(seen("b", 0, 150)));
        // "a" (received at 0) is older than 150 - 100: forgotten.
        assert_eq!(w.len(), 1);
        assert!(w.insert(seen("a", 0, 151)));
        assert!(w.insert(seen("c", 0, 152)));
        assert!(w.insert(seen("d", 0, 153)));
        assert_eq!(w.len(), 3, "count bound");
        assert!(
            w.insert(seen("b", 0, 154)),
            "evicted by count, so new again"
        );
    }
}
