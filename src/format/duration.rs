//! Durations as written in the configuration file: `26h`, `8d`, `1y6m`.
//!
//! Units: `s` seconds, `h` hours, `d` days, `w` weeks, `m` months (30 days),
//! `y` years (365 days) — the units of retention, grace periods and alert
//! thresholds; there are no minutes, so `m` cannot be misread.

use std::time::Duration;

/// What to write instead of an invalid duration.
pub const HELP: &str = "write a whole number and a unit: s (seconds), h (hours), d (days), w (weeks), \
                        m (months of 30 days) or y (years of 365 days), e.g. \"26h\", \"8d\" or \"1y6m\"";

const HOUR: u64 = 3600;

/// Why a text is not a duration; the message quotes the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DurationError {
    /// Nothing was written.
    #[error("empty duration")]
    Empty,
    /// A character that is neither a digit nor a unit.
    #[error("{text:?} is not a duration (unknown unit {unit:?})")]
    UnknownUnit {
        /// The text given.
        text: String,
        /// The character that is not a unit.
        unit: char,
    },
    /// A unit with no number before it.
    #[error("{text:?} is not a duration (no number before {unit:?})")]
    NoNumber {
        /// The text given.
        text: String,
        /// The unit.
        unit: char,
    },
    /// A number with no unit after it.
    #[error("{text:?} is not a duration (no unit after {number})")]
    NoUnit {
        /// The text given.
        text: String,
        /// The trailing number.
        number: String,
    },
    /// More seconds than fit in 64 bits.
    #[error("{text:?} is too long a duration")]
    TooLong {
        /// The text given.
        text: String,
    },
}

/// Parses `26h`, `8d`, `2w`, `6m`, `1y` or a sequence of them (`1d12h`).
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let owned = || text.to_owned();
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'h' => HOUR,
            'd' => 24 * HOUR,
            'w' => 7 * 24 * HOUR,
            'm' => 30 * 24 * HOUR,
            'y' => 365 * 24 * HOUR,
            _ => {
                return Err(DurationError::UnknownUnit {
                    text: owned(),
                    unit: c,
                });
            }
        };
        if number.is_empty() {
            return Err(DurationError::NoNumber {
                text: owned(),
                unit: c,
            });
        }
        let too_long = || DurationError::TooLong { text: owned() };
        let n: u64 = number.parse().map_err(|_| too_long())?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(too_long)?;
        number.clear();
    }
    if !number.is_empty() {
        return Err(DurationError::NoUnit {
            text: owned(),
            number,
        });
    }
    Ok(Duration::from_secs(total))
}

/// Formats a duration in the largest unit that divides it (`26h`, `8d`, `2w`).
pub fn format(d: Duration) -> String {
    let s = d.as_secs();
    for (unit, len) in [("y", 365 * 24), ("w", 7 * 24), ("d", 24), ("h", 1)] {
        let len = len * HOUR;
        if s >= len && s.is_multiple_of(len) {
            return format!("{}{unit}", s / len);
        }
    }
    format!("{s}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_sequences() {
        assert_eq!(parse("26h").unwrap(), Duration::from_secs(26 * 3600));
        assert_eq!(parse("8d").unwrap(), Duration::from_secs(8 * 86400));
        assert_eq!(parse("2w").unwrap(), Duration::from_secs(14 * 86400));
        assert_eq!(parse("1m").unwrap(), Duration::from_secs(30 * 86400));
        assert_eq!(parse("1y").unwrap(), Duration::from_secs(365 * 86400));
        assert_eq!(parse("1d12h").unwrap(), Duration::from_secs(36 * 3600));
        assert_eq!(parse("0h").unwrap(), Duration::ZERO);
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        for bad in [
            "",
            "12",
            "h",
            "3x",
            "1.5d",
            "-2d",
            "2 d",
            "99999999999999999999y",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(parse("30s").unwrap(), Duration::from_secs(30));
        assert!(
            parse("30x")
                .unwrap_err()
                .to_string()
                .contains("unknown unit 'x'")
        );
    }

    #[test]
    fn formats_in_the_largest_unit() {
        assert_eq!(format(parse("26h").unwrap()), "26h");
        assert_eq!(format(parse("48h").unwrap()), "2d");
        assert_eq!(format(parse("14d").unwrap()), "2w");
        assert_eq!(format(parse("1y").unwrap()), "1y");
    }
}
