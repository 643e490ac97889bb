//! Human durations as campaign files write them (`"30m"`, `"24h"`, `"7d"`, `"2w"`, `"1h30m"`):
//! parsing to `std::time::Duration` and back. Calendar units (months, years) are deliberately
//! absent: their length depends on the date, and a filter's cut-off must not.

use std::time::Duration;

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The string is empty or only whitespace.
    #[error("a duration cannot be empty; write e.g. \"30m\", \"24h\", \"7d\"")]
    Empty,
    /// A number is not followed by a unit, or something else is off in the string.
    #[error(
        "`{0}` is not a duration; write a number and a unit (s, m, h, d, w), e.g. \"24h\" or \"1h30m\""
    )]
    Malformed(String),
    /// The unit is not one of s, m, h, d, w.
    #[error("unknown unit `{unit}` in duration `{input}`; use s, m, h, d or w")]
    UnknownUnit {
        /// The whole input.
        input: String,
        /// The offending unit.
        unit: String,
    },
    /// The value does not fit in a `Duration`.
    #[error("duration `{0}` is too large")]
    Overflow(String),
}

const UNITS: [(&str, u64); 5] = [
    ("w", 7 * 24 * 3600),
    ("d", 24 * 3600),
    ("h", 3600),
    ("m", 60),
    ("s", 1),
];

/// Parses one or more `<integer><unit>` pairs, units `s`, `m`, `h`, `d` (24 h), `w` (7 d).
/// `"0s"` is a valid zero; callers that need a positive duration check it themselves.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let text = input.trim();
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    let malformed = || DurationError::Malformed(input.to_owned());
    let overflow = || DurationError::Overflow(input.to_owned());
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(malformed());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| overflow())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        if unit_len == 0 {
            return Err(malformed());
        }
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let Some(&(_, secs)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(DurationError::UnknownUnit {
                input: input.to_owned(),
                unit: unit.to_owned(),
            });
        };
        let part = number.checked_mul(secs).ok_or_else(overflow)?;
        total = total.checked_add(part).ok_or_else(overflow)?;
    }
    Ok(Duration::from_secs(total))
}

/// Writes a duration the way `parse_duration` reads it, largest units first (`"1d6h"`, `"0s"`).
/// Sub-second parts are dropped: campaign durations are whole seconds.
pub fn format_duration(duration: Duration) -> String {
    let mut secs = duration.as_secs();
    if secs == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (name, size) in UNITS {
        if secs >= size {
            out.push_str(&(secs / size).to_string());
            out.push_str(name);
            secs %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit_and_combinations() {
        let check = |input: &str, secs: u64| {
            assert_eq!(
                parse_duration(input),
                Ok(Duration::from_secs(secs)),
                "{input}"
            );
        };
        check("45s", 45);
        check("30m", 30 * 60);
        check("24h", 24 * 3600);
        check("7d", 7 * 86_400);
        check("2w", 14 * 86_400);
        check("1h30m", 5400);
        check(" 6h ", 6 * 3600);
        check("0s", 0);
        check("1d1s", 86_401);
    }

    #[test]
    fn rejects_bad_input() {
        let check = |input: &str, expected: DurationError| {
            assert_eq!(parse_duration(input), Err(expected), "{input}");
        };
        check("", DurationError::Empty);
        check("   ", DurationError::Empty);
        check("24", DurationError::Malformed("24".into()));
        check("h", DurationError::Malformed("h".into()));
        check("-5m", DurationError::Malformed("-5m".into()));
        check("1.5h", DurationError::Malformed("1.5h".into()));
        check("1h 30m", DurationError::Malformed("1h 30m".into()));
        check(
            "3mo",
            DurationError::UnknownUnit {
                input: "3mo".into(),
                unit: "mo".into(),
            },
        );
        check(
            "5y",
            DurationError::UnknownUnit {
                input: "5y".into(),
                unit: "y".into(),
            },
        );
        check(
            "99999999999999999999s",
            DurationError::Overflow("99999999999999999999s".into()),
        );
        check(
            "9999999999999999w",
            DurationError::Overflow("9999999999999999w".into()),
        );
    }

    #[test]
    fn formats_round_trip() {
        for (secs, text) in [
            (0, "0s"),
            (59, "59s"),
            (3600, "1h"),
            (86_400 + 6 * 3600, "1d6h"),
            (14 * 86_400, "2w"),
            (5400, "1h30m"),
        ] {
            let duration = Duration::from_secs(secs);
            assert_eq!(format_duration(duration), text);
            assert_eq!(parse_duration(text), Ok(duration));
        }
    }
}
