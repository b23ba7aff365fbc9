//! One `sli_1m` cell: the additive summary of request events for a key and minute.

use nines_model::LatencySketch;

/// Additive request summary. Two rollups of the same key add up to the rollup of all events.
#[derive(Debug, Clone, Default)]
pub struct Rollup {
    pub total: i64,
    /// Events with `error = true` (failures from the service's side).
    pub errors: i64,
    /// Events that are not errors with a 4xx status (the caller's fault; not against the SLO).
    pub client_errors: i64,
    pub duration_sum_ns: i64,
    pub duration_max_ns: i64,
    pub sketch: LatencySketch,
}

impl Rollup {
    /// Adds one request event.
    pub fn add(&mut self, error: bool, status_code: i32, duration_ns: i64) {
        self.total += 1;
        if error {
            self.errors += 1;
        } else if (400..500).contains(&status_code) {
            self.client_errors += 1;
        }
        self.duration_sum_ns = self.duration_sum_ns.saturating_add(duration_ns);
        self.duration_max_ns = self.duration_max_ns.max(duration_ns);
        self.sketch.add(duration_ns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_errors_and_client_errors_apart() {
        let mut r = Rollup::default();
        r.add(false, 200, 10);
        r.add(true, 500, 30);
        r.add(false, 404, 20);
        r.add(true, 429, 5); // flagged error wins over the 4xx class
        assert_eq!((r.total, r.errors, r.client_errors), (4, 2, 1));
        assert_eq!((r.duration_sum_ns, r.duration_max_ns), (65, 30));
        assert_eq!(r.sketch.count(), 4);
    }
}
