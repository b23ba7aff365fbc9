//! Where an SLO's window lies at an instant: the last `span` for a rolling window, or the
//! calendar period containing the instant, aligned on `startTime` in the window's IANA time
//! zone. Calendar days follow the zone's clock, so a day across a DST change lasts 23 or 25
//! hours; months, quarters and years follow the calendar.
//!
//! Instants are seconds since the Unix epoch (UTC).

use chrono::{DateTime, Duration, LocalResult, Months, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::duration::{Span, Unit};
use crate::model::TimeWindow;

/// A half-open interval of time `[start, end)`, in seconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub start: i64,
    pub end: i64,
}

impl Period {
    pub fn seconds(self) -> i64 {
        self.end - self.start
    }
}

impl TimeWindow {
    /// The window's length, nominal for calendar months (30 days), quarters and years: the
    /// period alert windows are scaled to.
    pub fn nominal_seconds(&self) -> i64 {
        match self {
            Self::Rolling { span } | Self::Calendar { span, .. } => span.nominal_seconds(),
        }
    }

    /// The period the SLO is judged over at instant `at`: `[at - span, at)` for a rolling
    /// window (months, quarters and years at their nominal length), else the whole calendar
    /// period containing `at` (its end may be after `at`).
    pub fn period_at(&self, at: i64) -> Period {
        match self {
            Self::Rolling { span } => Period {
                start: at - span.nominal_seconds(),
                end: at,
            },
            Self::Calendar {
                span,
                start,
                time_zone,
            } => calendar_period(*span, *start, *time_zone, at),
        }
    }

    /// The calendar periods (or, for a rolling window, the single rolling period ending at
    /// `to`) that overlap `[from, to)`, in order.
    pub fn periods_between(&self, from: i64, to: i64) -> Vec<Period> {
        match self {
            Self::Rolling { .. } => vec![self.period_at(to)],
            Self::Calendar { .. } => {
                let mut out = Vec::new();
                let mut p = self.period_at(from);
                loop {
                    out.push(p);
                    if p.end >= to || out.len() > 100_000 {
                        break;
                    }
                    p = self.period_at(p.end);
                }
                out
            }
        }
    }
}

/// The `k`-th boundary after `start` (k may be negative), as an instant.
fn boundary(span: Span, start: NaiveDateTime, tz: Tz, k: i64) -> i64 {
    let local = match span.unit {
        Unit::Minute | Unit::Hour => {
            // Fixed lengths: count in UTC from the start's instant.
            let s = to_instant(tz, start);
            return s + k * span.fixed_seconds().unwrap_or(60);
        }
        Unit::Day | Unit::Week => {
            let days = if span.unit == Unit::Day { 1 } else { 7 };
            start + Duration::days(k * days * i64::from(span.count))
        }
        Unit::Month | Unit::Quarter | Unit::Year => {
            let months = i64::from(span.months().unwrap_or(1)) * k;
            let m = Months::new(u32::try_from(months.unsigned_abs()).unwrap_or(u32::MAX));
            let moved = if months >= 0 {
                start.checked_add_months(m)
            } else {
                start.checked_sub_months(m)
            };
            moved.unwrap_or(start)
        }
    };
    to_instant(tz, local)
}

/// A local time of `tz` as an instant: the earlier of two when the clock went back, and the
/// first instant after the gap when it went forward.
fn to_instant(tz: Tz, local: NaiveDateTime) -> i64 {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.timestamp(),
        LocalResult::None => {
            // In a spring-forward gap: the first valid local time after it.
            let mut probe = local;
            for _ in 0..240 {
                probe += Duration::minutes(1);
                if let LocalResult::Single(t) | LocalResult::Ambiguous(t, _) =
                    tz.from_local_datetime(&probe)
                {
                    return t.timestamp();
                }
            }
            Utc.from_utc_datetime(&local).timestamp()
        }
    }
}

fn calendar_period(span: Span, start: NaiveDateTime, tz: Tz, at: i64) -> Period {
    let origin = boundary(span, start, tz, 0);
    let nominal = span.nominal_seconds().max(60);
    let mut k = (at - origin).div_euclid(nominal);
    // The estimate is off by at most a few periods (DST hours, month lengths): walk to it.
    while boundary(span, start, tz, k) > at {
        k -= 1;
    }
    while boundary(span, start, tz, k + 1) <= at {
        k += 1;
    }
    Period {
        start: boundary(span, start, tz, k),
        end: boundary(span, start, tz, k + 1),
    }
}

/// An instant as RFC 3339 UTC text, for messages and reports.
pub fn rfc3339(at: i64) -> String {
    DateTime::<Utc>::from_timestamp(at, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| at.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp()
    }

    fn calendar(span: &str, start: &str, tz: &str) -> TimeWindow {
        TimeWindow::Calendar {
            span: span.parse().unwrap(),
            start: NaiveDateTime::parse_from_str(start, "%Y-%m-%d %H:%M:%S").unwrap(),
            time_zone: tz.parse().unwrap(),
        }
    }

    #[test]
    fn a_rolling_window_ends_at_the_instant() {
        let w = TimeWindow::Rolling {
            span: "28d".parse().unwrap(),
        };
        let p = w.period_at(1_000_000_000);
        assert_eq!(p.end - p.start, 28 * 86_400);
        assert_eq!(p.end, 1_000_000_000);
    }

    #[test]
    fn days_across_dst_in_new_york_last_23_and_25_hours() {
        // 2026-03-08: clocks go from 02:00 to 03:00 EST→EDT; 2026-11-01: back from 02:00 to 01:00.
        let w = calendar("1d", "2026-01-01 00:00:00", "America/New_York");
        let spring = w.period_at(at("2026-03-08T12:00:00Z"));
        assert_eq!(spring.start, at("2026-03-08T05:00:00Z"), "midnight EST");
        assert_eq!(spring.end, at("2026-03-09T04:00:00Z"), "midnight EDT");
        assert_eq!(spring.seconds(), 23 * 3_600);
        let fall = w.period_at(at("2026-11-01T12:00:00Z"));
        assert_eq!(fall.start, at("2026-11-01T04:00:00Z"));
        assert_eq!(fall.end, at("2026-11-02T05:00:00Z"));
        assert_eq!(fall.seconds(), 25 * 3_600);
    }

    #[test]
    fn weeks_months_and_quarters_align_on_the_start() {
        // Weeks from Monday 2022-01-03 09:00 in Berlin (CET, UTC+1 in winter).
        let w = calendar("1w", "2022-01-03 09:00:00", "Europe/Berlin");
        let p = w.period_at(at("2022-01-20T00:00:00Z"));
        assert_eq!(p.start, at("2022-01-17T08:00:00Z"));
        assert_eq!(p.end, at("2022-01-24T08:00:00Z"));
        // Months from the 1st in UTC: February 2024 has 29 days.
        let m = calendar("1M", "2024-01-01 00:00:00", "Etc/UTC");
        let feb = m.period_at(at("2024-02-15T00:00:00Z"));
        assert_eq!(
            (feb.start, feb.end),
            (at("2024-02-01T00:00:00Z"), at("2024-03-01T00:00:00Z"))
        );
        // Quarters from January: Q2 of 2024 runs April to June.
        let q = calendar("1Q", "2024-01-01 00:00:00", "Etc/UTC");
        let q2 = q.period_at(at("2024-05-20T10:00:00Z"));
        assert_eq!(
            (q2.start, q2.end),
            (at("2024-04-01T00:00:00Z"), at("2024-07-01T00:00:00Z"))
        );
        // An instant before the start belongs to an earlier period.
        let before = m.period_at(at("2023-12-31T23:59:59Z"));
        assert_eq!(before.start, at("2023-12-01T00:00:00Z"));
    }

    #[test]
    fn periods_between_cover_a_range() {
        let m = calendar("1M", "2024-01-01 00:00:00", "Etc/UTC");
        let ps = m.periods_between(at("2024-01-10T00:00:00Z"), at("2024-03-02T00:00:00Z"));
        assert_eq!(ps.len(), 3);
        assert_eq!(ps[2].start, at("2024-03-01T00:00:00Z"));
    }
}
