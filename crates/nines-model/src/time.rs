//! Time windows. All times are nanoseconds since the Unix epoch, UTC.

/// Nanoseconds in one second.
pub const NANOS_PER_SECOND: i64 = 1_000_000_000;
/// Nanoseconds in one minute.
pub const NANOS_PER_MINUTE: i64 = 60 * NANOS_PER_SECOND;
/// Nanoseconds in one day.
pub const NANOS_PER_DAY: i64 = 24 * 60 * NANOS_PER_MINUTE;

/// Nanoseconds in one microsecond.
pub const NANOS_PER_MICRO: i64 = 1_000;

/// Microseconds since the epoch of the instant `t` (nanoseconds), floored: what the tables'
/// timestamp columns hold (Delta Lake's timestamps are microseconds, UTC).
pub fn micros(t: i64) -> i64 {
    t.div_euclid(NANOS_PER_MICRO)
}

/// Start of the minute that contains `t` (floors towards negative infinity).
pub fn minute_start(t: i64) -> i64 {
    t.div_euclid(NANOS_PER_MINUTE) * NANOS_PER_MINUTE
}

/// Days since the Unix epoch of the UTC day that contains `t`.
pub fn day_number(t: i64) -> i64 {
    t.div_euclid(NANOS_PER_DAY)
}

/// `YYYY-MM-DD` of a day number (proleptic Gregorian, UTC), used for partition directories.
pub fn day_string(day: i64) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micros_floor_towards_the_past() {
        assert_eq!(micros(1_700_000_000_123_456_789), 1_700_000_000_123_456);
        assert_eq!(micros(999), 0);
        assert_eq!(
            micros(-1),
            -1,
            "one nanosecond before the epoch is in microsecond -1"
        );
        assert_eq!(
            micros(minute_start(1_700_000_012_345_678_901)),
            1_699_999_980_000_000
        );
    }
    use proptest::prelude::*;

    #[test]
    fn known_days() {
        assert_eq!(day_string(0), "1970-01-01");
        // 2026-11-26T05:33:59Z = 1_795_671_239 s (date -u +%s).
        assert_eq!(
            day_string(day_number(1_795_671_239 * NANOS_PER_SECOND)),
            "2026-11-26"
        );
        assert_eq!(day_string(-1), "1969-12-31");
        assert_eq!(day_string(11_016), "2000-02-29");
    }

    #[test]
    fn minute_floor() {
        assert_eq!(minute_start(0), 0);
        assert_eq!(minute_start(NANOS_PER_MINUTE - 1), 0);
        assert_eq!(minute_start(NANOS_PER_MINUTE), NANOS_PER_MINUTE);
        assert_eq!(minute_start(-1), -NANOS_PER_MINUTE);
    }

    proptest! {
        #[test]
        fn minute_contains_time(t in -10_i64.pow(18)..10_i64.pow(18)) {
            let s = minute_start(t);
            prop_assert!(s <= t && t < s + NANOS_PER_MINUTE);
            prop_assert_eq!(s % NANOS_PER_MINUTE, 0);
        }
    }
}
