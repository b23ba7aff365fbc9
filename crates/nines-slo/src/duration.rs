//! OpenSLO's duration shorthand (`^[1-9][0-9]*[mhdwMQY]$`): minutes, hours, days and weeks
//! are fixed lengths; months, quarters and years are calendar units, whose length depends on
//! where they start.

use std::fmt;

/// A duration shorthand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Span {
    pub count: u32,
    pub unit: Unit,
}

/// The unit of a [`Span`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Unit {
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

impl Unit {
    fn letter(self) -> char {
        match self {
            Self::Minute => 'm',
            Self::Hour => 'h',
            Self::Day => 'd',
            Self::Week => 'w',
            Self::Month => 'M',
            Self::Quarter => 'Q',
            Self::Year => 'Y',
        }
    }
}

impl Span {
    pub const fn minutes(count: u32) -> Self {
        Self {
            count,
            unit: Unit::Minute,
        }
    }

    /// The length in seconds of a fixed-length span (m, h, d, w); `None` for M, Q, Y. A day
    /// is 24 h here: calendar windows in a time zone with DST use [`crate::window`].
    pub fn fixed_seconds(self) -> Option<i64> {
        let unit = match self.unit {
            Unit::Minute => 60,
            Unit::Hour => 3_600,
            Unit::Day => 86_400,
            Unit::Week => 7 * 86_400,
            Unit::Month | Unit::Quarter | Unit::Year => return None,
        };
        Some(i64::from(self.count) * unit)
    }

    /// The nominal length in seconds (a month is 30 days, a quarter 90, a year 365): for
    /// scaling alert windows to a period, never for placing a calendar window.
    pub fn nominal_seconds(self) -> i64 {
        self.fixed_seconds().unwrap_or_else(|| {
            let days = match self.unit {
                Unit::Month => 30,
                Unit::Quarter => 90,
                _ => 365,
            };
            i64::from(self.count) * days * 86_400
        })
    }

    /// Whether the span is a whole number of calendar months (M, Q, Y).
    pub fn months(self) -> Option<u32> {
        match self.unit {
            Unit::Month => Some(self.count),
            Unit::Quarter => Some(self.count * 3),
            Unit::Year => Some(self.count * 12),
            _ => None,
        }
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.count, self.unit.letter())
    }
}

impl std::str::FromStr for Span {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{s:?} is not a duration shorthand (a positive integer and one of m, h, d, w, M, Q, Y, e.g. 28d)"
            )
        };
        let mut chars = s.chars();
        let last = chars.next_back().ok_or_else(bad)?;
        let digits = chars.as_str();
        if digits.is_empty()
            || digits.starts_with('0')
            || !digits.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        let count: u32 = digits.parse().map_err(|_| bad())?;
        let unit = match last {
            'm' => Unit::Minute,
            'h' => Unit::Hour,
            'd' => Unit::Day,
            'w' => Unit::Week,
            'M' => Unit::Month,
            'Q' => Unit::Quarter,
            'Y' => Unit::Year,
            _ => return Err(bad()),
        };
        Ok(Self { count, unit })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorthand_parses_and_prints() {
        for (s, secs) in [
            ("5m", Some(300)),
            ("1h", Some(3600)),
            ("28d", Some(28 * 86_400)),
            ("1w", Some(604_800)),
            ("1M", None),
            ("1Q", None),
            ("1Y", None),
        ] {
            let span: Span = s.parse().unwrap();
            assert_eq!(span.to_string(), s);
            assert_eq!(span.fixed_seconds(), secs, "{s}");
        }
        assert_eq!("1Q".parse::<Span>().unwrap().months(), Some(3));
    }

    #[test]
    fn bad_shorthands_are_refused() {
        for s in ["", "d", "0d", "01d", "1.5h", "1s", "-1d", "1 d", "30D"] {
            assert!(s.parse::<Span>().is_err(), "{s:?}");
        }
    }
}
