//! The latency sketch stored in `sli_1m.latency_sketch`.
//!
//! A DDSketch (relative-error quantile sketch) from `sketches-ddsketch`, serialized in
//! DataDog's Java-compatible binary encoding, so other tools can read the column too.
//! Sketches merge exactly: the quantiles of a merged sketch are those of one sketch fed all
//! the values, which is what makes percentiles re-aggregatable across any grouping.

use sketches_ddsketch::{Config, DDSketch};

/// Relative accuracy of quantiles: a returned quantile is within this fraction of the true
/// value at the same rank (`rank = floor(q * (n - 1))`).
pub const RELATIVE_ACCURACY: f64 = 0.01;

/// Why a serialized sketch could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SketchError {
    #[error("latency sketch bytes do not decode: {0}")]
    Decode(String),
    #[error("latency sketches with different parameters cannot be merged")]
    Incompatible,
}

/// A mergeable latency distribution over durations in nanoseconds.
#[derive(Clone)]
pub struct LatencySketch {
    inner: DDSketch,
}

impl std::fmt::Debug for LatencySketch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencySketch")
            .field("count", &self.count())
            .field("p50", &self.quantile(0.5))
            .field("max", &self.inner.max())
            .finish()
    }
}

impl Default for LatencySketch {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencySketch {
    /// An empty sketch with nines' standard parameters (1% relative accuracy).
    pub fn new() -> Self {
        Self {
            inner: DDSketch::new(Config::defaults()),
        }
    }

    /// Records one duration in nanoseconds (negative values are recorded as zero).
    pub fn add(&mut self, duration_ns: i64) {
        self.inner.add(duration_ns.max(0) as f64);
    }

    /// Adds every value of `other` into `self`.
    pub fn merge(&mut self, other: &LatencySketch) -> Result<(), SketchError> {
        self.inner
            .merge(&other.inner)
            .map_err(|_| SketchError::Incompatible)
    }

    /// Number of recorded values.
    pub fn count(&self) -> u64 {
        self.inner.count() as u64
    }

    /// The `q`-quantile (0 ≤ q ≤ 1) in nanoseconds, or `None` when empty or `q` is out of range.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        self.inner.quantile(q).ok().flatten()
    }

    /// Estimated number of values ≤ `threshold_ns`, exact up to the sketch's bucket width
    /// (values within [`RELATIVE_ACCURACY`] of the threshold may fall on either side).
    pub fn count_at_most(&self, threshold_ns: f64) -> u64 {
        let n = self.count();
        if n == 0 {
            return 0;
        }
        // Values by rank are non-decreasing: find the first rank whose value exceeds the
        // threshold by bisection over ranks.
        let (mut lo, mut hi) = (0_u64, n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.value_at_rank(mid, n) <= threshold_ns {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    fn value_at_rank(&self, rank: u64, n: u64) -> f64 {
        if rank + 1 >= n {
            return self.inner.max().unwrap_or(0.0);
        }
        // The sketch maps q to rank floor(q * (n - 1)); aim at the middle of the rank.
        let q = (rank as f64 + 0.5) / (n - 1) as f64;
        self.quantile(q.min(1.0)).unwrap_or(0.0)
    }

    /// Serializes the sketch (DataDog's Java-compatible DDSketch encoding).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.inner.to_java_bytes()
    }

    /// Reads a sketch written by [`LatencySketch::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SketchError> {
        let inner =
            DDSketch::from_java_bytes(bytes).map_err(|e| SketchError::Decode(e.to_string()))?;
        Ok(Self { inner })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The exact value at the rank the sketch uses for `q`.
    fn exact(sorted: &[i64], q: f64) -> f64 {
        sorted[(q * (sorted.len() - 1) as f64) as usize] as f64
    }

    fn within(estimate: f64, truth: f64) -> bool {
        (estimate - truth).abs() <= truth * RELATIVE_ACCURACY + 1e-6
    }

    #[test]
    fn empty_sketch() {
        let s = LatencySketch::new();
        assert_eq!(s.count(), 0);
        assert_eq!(s.quantile(0.5), None);
        assert_eq!(s.count_at_most(1e9), 0);
    }

    #[test]
    fn round_trip_keeps_quantiles() {
        let mut s = LatencySketch::new();
        for v in [1_000_i64, 2_000_000, 35_000_000, 35_000_001, 9_000_000_000] {
            s.add(v);
        }
        let back = LatencySketch::from_bytes(&s.to_bytes()).unwrap();
        assert_eq!(back.count(), 5);
        for q in [0.0, 0.25, 0.5, 0.75, 1.0] {
            assert_eq!(back.quantile(q), s.quantile(q), "q={q}");
        }
        // A decoded sketch still merges with a fresh one.
        let mut fresh = LatencySketch::new();
        fresh.merge(&back).unwrap();
        assert_eq!(fresh.count(), 5);
    }

    #[test]
    fn garbage_does_not_decode() {
        assert!(LatencySketch::from_bytes(&[0xff, 0x13, 0x37]).is_err());
    }

    #[test]
    fn count_at_most_on_known_values() {
        let mut s = LatencySketch::new();
        // 100 values at 10ms, 50 at 100ms, 10 at 1s.
        for _ in 0..100 {
            s.add(10_000_000);
        }
        for _ in 0..50 {
            s.add(100_000_000);
        }
        for _ in 0..10 {
            s.add(1_000_000_000);
        }
        assert_eq!(s.count_at_most(5e6), 0);
        assert_eq!(s.count_at_most(50e6), 100);
        assert_eq!(s.count_at_most(500e6), 150);
        assert_eq!(s.count_at_most(2e9), 160);
    }

    proptest! {
        /// Merging sketches of parts gives the quantiles of the whole, within the accuracy.
        #[test]
        fn merged_quantiles_match_exact(
            parts in proptest::collection::vec(
                proptest::collection::vec(1_000_i64..10_000_000_000, 1..200), 1..6),
            q in 0.0_f64..=1.0,
        ) {
            let mut merged = LatencySketch::new();
            let mut all = Vec::new();
            for part in &parts {
                let mut s = LatencySketch::new();
                for &v in part { s.add(v); }
                let s = LatencySketch::from_bytes(&s.to_bytes()).unwrap();
                merged.merge(&s).unwrap();
                all.extend_from_slice(part);
            }
            all.sort_unstable();
            prop_assert_eq!(merged.count(), all.len() as u64);
            let est = merged.quantile(q).unwrap();
            prop_assert!(within(est, exact(&all, q)), "q={} est={} exact={}", q, est, exact(&all, q));
        }
    }
}
