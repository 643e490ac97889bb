//! Cron expressions for recurring campaigns: the five classic fields (minute, hour, day of
//! month, month, day of week) or six with seconds first, each `*`, a number, a range `a-b`, a
//! step `*/n` or `a-b/n`, or a list of those; month and day names (`JAN`, `MON`) are accepted
//! and Sunday is 0 or 7. As in classic cron, when both day fields are restricted a day matching
//! either one is a match. Occurrences are computed on the clock of an IANA zone (`local.rs`), so
//! `0 10 * * MON` is 10:00 on Mondays where the campaign's audience lives, daylight saving time
//! included (a time the clocks skip is not an occurrence that day; one they repeat, once).

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use time::OffsetDateTime;

/// A parsed cron expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    seconds: Vec<u8>,
    minutes: Vec<u8>,
    hours: Vec<u8>,
    days: Vec<u8>,
    months: Vec<u8>,
    weekdays: Vec<u8>,
    days_restricted: bool,
    weekdays_restricted: bool,
    text: String,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
/// How far ahead an occurrence is looked for (a `30 2 30 2 *` never comes).
const HORIZON_DAYS: i32 = 4 * 366;

impl Cron {
    /// Parses a 5- or 6-field expression, saying what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        let (seconds, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 => (fields[0], &fields[1..]),
            n => {
                return Err(format!(
                    "a cron expression has 5 fields (minute hour day month weekday) or 6 with \
                     seconds first, not {n}"
                ));
            }
        };
        let weekdays = field(rest[4], "day of week", 0, 7, &WEEKDAYS, 0)?;
        let weekdays: Vec<u8> = {
            let mut days: Vec<u8> = weekdays.iter().map(|d| d % 7).collect();
            days.sort_unstable();
            days.dedup();
            days
        };
        Ok(Self {
            seconds: field(seconds, "second", 0, 59, &[], 0)?,
            minutes: field(rest[0], "minute", 0, 59, &[], 0)?,
            hours: field(rest[1], "hour", 0, 23, &[], 0)?,
            days: field(rest[2], "day of month", 1, 31, &[], 0)?,
            months: field(rest[3], "month", 1, 12, &MONTHS, 1)?,
            days_restricted: rest[2] != "*",
            weekdays_restricted: rest[4] != "*",
            weekdays,
            text: fields.join(" "),
        })
    }

    /// The expression as written (fields separated by single spaces).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first occurrence strictly after `after` on the clock of `zone`, or `None` when there
    /// is none within four years.
    pub fn next_after(&self, after: OffsetDateTime, zone: &TimeZone) -> Option<OffsetDateTime> {
        let stamp = jiff::Timestamp::from_nanosecond(after.unix_timestamp_nanos()).ok()?;
        let start = stamp.to_zoned(zone.clone());
        let mut date = start.date();
        for _ in 0..HORIZON_DAYS {
            if self.day_matches(date) {
                for &hour in &self.hours {
                    for &minute in &self.minutes {
                        for &second in &self.seconds {
                            let at = DateTime::new(
                                date.year(),
                                date.month(),
                                date.day(),
                                hour as i8,
                                minute as i8,
                                second as i8,
                                0,
                            )
                            .ok()?;
                            let Some(instant) = occurrence(at, zone) else {
                                continue;
                            };
                            if instant > stamp {
                                let nanos = instant.as_nanosecond();
                                return OffsetDateTime::from_unix_timestamp_nanos(nanos).ok();
                            }
                        }
                    }
                }
            }
            date = date.tomorrow().ok()?;
        }
        None
    }

    fn day_matches(&self, date: Date) -> bool {
        if !self.months.contains(&(date.month() as u8)) {
            return false;
        }
        let day = self.days.contains(&(date.day() as u8));
        let weekday = self
            .weekdays
            .contains(&(date.weekday().to_sunday_zero_offset() as u8));
        match (self.days_restricted, self.weekdays_restricted) {
            (true, true) => day || weekday,
            (true, false) => day,
            (false, true) => weekday,
            (false, false) => true,
        }
    }
}

impl std::fmt::Display for Cron {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// The instant a civil time names in `zone`: none in a gap, the first in a fold.
fn occurrence(at: DateTime, zone: &TimeZone) -> Option<jiff::Timestamp> {
    let ambiguous = zone.to_ambiguous_zoned(at);
    match ambiguous.offset() {
        jiff::tz::AmbiguousOffset::Gap { .. } => None,
        _ => ambiguous.earlier().ok().map(|zoned| zoned.timestamp()),
    }
}

/// The values of one field, sorted. `names` spell values from `name_base` (`JAN` = 1).
fn field(
    text: &str,
    what: &str,
    min: u8,
    max: u8,
    names: &[&str],
    name_base: u8,
) -> Result<Vec<u8>, String> {
    let wrong = |why: &str| format!("{what} {text:?}: {why}");
    let value = |part: &str| -> Result<u8, String> {
        let upper = part.to_ascii_uppercase();
        if let Some(index) = names.iter().position(|name| *name == upper) {
            return Ok(index as u8 + name_base);
        }
        match part.parse::<u8>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(wrong(&format!("values are {min} to {max}"))),
        }
    };
    let mut values = Vec::new();
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step: u8 = step
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| wrong("a step is a number from 1"))?;
                (range, step)
            }
            None => (item, 1),
        };
        let (low, high) = match range {
            "*" => (min, max),
            _ => match range.split_once('-') {
                Some((low, high)) => (value(low)?, value(high)?),
                None if step > 1 => (value(range)?, max),
                None => {
                    let single = value(range)?;
                    (single, single)
                }
            },
        };
        if low > high {
            return Err(wrong("a range goes from low to high"));
        }
        values.extend((low..=high).step_by(usize::from(step)));
    }
    values.sort_unstable();
    values.dedup();
    Ok(values)
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::local::zone;

    fn next(expression: &str, after: OffsetDateTime, zone_name: &str) -> Option<OffsetDateTime> {
        Cron::parse(expression)
            .unwrap()
            .next_after(after, &zone(zone_name).unwrap())
    }

    /// (expression, after, zone, next): computed by hand from a calendar.
    #[test]
    fn next_occurrences() {
        let monday_nine_utc = datetime!(2026-12-07 09:00 UTC); // a Monday
        for (expression, zone_name, expected) in [
            ("0 10 * * MON", "UTC", datetime!(2026-12-07 10:00 UTC)),
            (
                "0 10 * * 1",
                "America/Sao_Paulo",
                datetime!(2026-12-07 13:00 UTC),
            ),
            // 10:00 in Tokyo is 01:00 UTC: today's has passed, next Monday's.
            (
                "0 10 * * MON",
                "Asia/Tokyo",
                datetime!(2026-12-14 01:00 UTC),
            ),
            ("*/15 * * * *", "UTC", datetime!(2026-12-07 09:15 UTC)),
            ("30 8 1 * *", "UTC", datetime!(2027-01-01 08:30 UTC)),
            ("0 0 1 JAN *", "UTC", datetime!(2027-01-01 00:00 UTC)),
            ("*/5 * * * * *", "UTC", datetime!(2026-12-07 09:00:05 UTC)),
            // Day of month or day of week: the 8th (a Tuesday) comes before Friday.
            ("0 12 8 * FRI", "UTC", datetime!(2026-12-08 12:00 UTC)),
            ("0 9 * * SUN", "UTC", datetime!(2026-12-13 09:00 UTC)),
            ("0 9 * * 7", "UTC", datetime!(2026-12-13 09:00 UTC)),
        ] {
            assert_eq!(
                next(expression, monday_nine_utc, zone_name),
                Some(expected),
                "{expression} in {zone_name}"
            );
        }
        assert_eq!(next("0 0 30 2 *", monday_nine_utc, "UTC"), None, "never");
    }

    #[test]
    fn daylight_saving_skips_and_repeats_are_handled() {
        // New York: 02:30 does not exist on 2027-03-14, so that day has no occurrence.
        let after = datetime!(2027-03-13 12:00 UTC);
        assert_eq!(
            next("30 2 * * *", after, "America/New_York"),
            Some(datetime!(2027-03-15 06:30 UTC))
        );
        // 01:30 happens twice on 2026-11-01: once (the first, EDT).
        let after = datetime!(2026-11-01 04:00 UTC);
        assert_eq!(
            next("30 1 * * *", after, "America/New_York"),
            Some(datetime!(2026-11-01 05:30 UTC))
        );
    }

    #[test]
    fn wrong_expressions_say_why() {
        for (expression, says) in [
            ("0 10 * *", "5 fields"),
            ("60 * * * *", "minute"),
            ("0 24 * * *", "hour"),
            ("0 0 0 * *", "day of month"),
            ("0 0 * 13 *", "month"),
            ("0 0 * * 8", "day of week"),
            ("*/0 * * * *", "step"),
            ("5-1 * * * *", "low to high"),
            ("0 10 * * FUNDAY", "day of week"),
        ] {
            let error = Cron::parse(expression).unwrap_err();
            assert!(error.contains(says), "{expression}: {error}");
        }
        assert_eq!(
            Cron::parse("0  10 * *  MON").unwrap().as_str(),
            "0 10 * * MON"
        );
    }
}
