//! Each user's own clock: a time of day (`LocalTime`, `"10:00"`), quiet hours (`QuietHours`,
//! `21:00`–`08:00`), IANA time zones, and when a send is due in a zone. The zone rules are the
//! ones bundled with this build (jiff's copy of the IANA database), not the machine's, so every
//! Herald process agrees on them and nothing here reads a file.
//!
//! Daylight saving time: a local time that does not exist on a day (the clocks jump over it) is
//! taken as the same time after the jump; one that happens twice is the first of the two.

use std::sync::LazyLock;

use jiff::Timestamp;
use jiff::civil::Time;
use jiff::tz::{TimeZone, TimeZoneDatabase};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The zone database, read once from the build.
static ZONES: LazyLock<TimeZoneDatabase> = LazyLock::new(TimeZoneDatabase::bundled);

/// A time of day as campaign files write it: `"HH:MM"`, or `"HH:MM:SS"` to the second, 24-hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LocalTime {
    hour: u8,
    minute: u8,
    second: u8,
}

/// Quiet hours in the user's local time: from `start` (included) to `end` (excluded), across
/// midnight when `end` is earlier than `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QuietHours {
    pub start: LocalTime,
    pub end: LocalTime,
}

/// Quiet hours as a job carries them to the worker, with the user's zone, so the worker holds a
/// job that comes due inside them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobQuietHours {
    /// `"HH:MM"`.
    pub start: String,
    /// `"HH:MM"`.
    pub end: String,
    /// The user's IANA zone.
    pub timezone: String,
}

impl LocalTime {
    /// Parses `"HH:MM"` or `"HH:MM:SS"` (00:00 to 23:59:59).
    pub fn parse(text: &str) -> Result<Self, String> {
        let wrong = || {
            format!("must be a time of day as \"HH:MM\" or \"HH:MM:SS\" (24-hour), got {text:?}")
        };
        let parts: Vec<&str> = text.split(':').collect();
        if !(2..=3).contains(&parts.len()) || parts.iter().any(|part| part.len() != 2) {
            return Err(wrong());
        }
        let number = |part: &str, max: u8| match part.parse::<u8>() {
            Ok(n) if n <= max && part.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
            _ => Err(wrong()),
        };
        Ok(Self {
            hour: number(parts[0], 23)?,
            minute: number(parts[1], 59)?,
            second: parts.get(2).map_or(Ok(0), |part| number(part, 59))?,
        })
    }

    fn civil(self) -> Time {
        Time::constant(self.hour as i8, self.minute as i8, self.second as i8, 0)
    }
}

impl std::fmt::Display for LocalTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:02}:{:02}", self.hour, self.minute)?;
        if self.second > 0 {
            write!(f, ":{:02}", self.second)?;
        }
        Ok(())
    }
}

impl QuietHours {
    /// `start` and `end` must differ.
    pub fn new(start: LocalTime, end: LocalTime) -> Result<Self, String> {
        if start == end {
            return Err("start and end must differ".to_owned());
        }
        Ok(Self { start, end })
    }

    /// As a job carries them, for a user in `timezone`.
    pub fn for_job(self, timezone: &str) -> JobQuietHours {
        JobQuietHours {
            start: self.start.to_string(),
            end: self.end.to_string(),
            timezone: timezone.to_owned(),
        }
    }

    /// When the quiet hours that `at` falls in end, in `zone`; `None` when `at` is not quiet.
    pub fn end_after(self, at: OffsetDateTime, zone: &TimeZone) -> Option<OffsetDateTime> {
        let local = stamp(at).to_zoned(zone.clone());
        let now = local.time();
        let (start, end) = (self.start.civil(), self.end.civil());
        let quiet = if start < end {
            start <= now && now < end
        } else {
            now >= start || now < end
        };
        if !quiet {
            return None;
        }
        // The end today if it is still ahead, else tomorrow's.
        let mut date = local.date();
        if now >= end {
            date = date.tomorrow().ok()?;
        }
        let ends = date.to_datetime(end).to_zoned(zone.clone()).ok()?;
        Some(offset(ends.timestamp()))
    }
}

impl JobQuietHours {
    /// When the quiet hours that `at` falls in end; `None` when `at` is not quiet (or the
    /// job's fields do not parse, which a job from this producer never has).
    pub fn end_after(&self, at: OffsetDateTime) -> Option<OffsetDateTime> {
        let quiet = QuietHours::new(
            LocalTime::parse(&self.start).ok()?,
            LocalTime::parse(&self.end).ok()?,
        )
        .ok()?;
        quiet.end_after(at, &zone(&self.timezone)?)
    }
}

/// The IANA zone called `name` (e.g. `America/Sao_Paulo`, `UTC`), if the database has it.
pub fn zone(name: &str) -> Option<TimeZone> {
    ZONES.get(name.trim()).ok()
}

/// The first moment at or after `now` when the clock in `zone` shows `at`.
pub fn next_local(now: OffsetDateTime, at: LocalTime, zone: &TimeZone) -> OffsetDateTime {
    let local = stamp(now).to_zoned(zone.clone());
    let mut date = local.date();
    for _ in 0..3 {
        if let Ok(due) = date.to_datetime(at.civil()).to_zoned(zone.clone())
            && due.timestamp() >= local.timestamp()
        {
            return offset(due.timestamp());
        }
        match date.tomorrow() {
            Ok(next) => date = next,
            Err(_) => break,
        }
    }
    now
}

fn stamp(at: OffsetDateTime) -> Timestamp {
    let nanos = at.unix_timestamp_nanos();
    Timestamp::from_nanosecond(nanos).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn offset(at: Timestamp) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(at.as_nanosecond())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn at(text: &str) -> LocalTime {
        LocalTime::parse(text).unwrap()
    }

    #[test]
    fn times_of_day_parse_strictly() {
        assert_eq!(at("10:00").to_string(), "10:00");
        assert_eq!(at("23:59").to_string(), "23:59");
        assert_eq!(at("10:00:30").to_string(), "10:00:30");
        assert_eq!(at("10:00:00").to_string(), "10:00");
        for wrong in [
            "24:00", "9:00", "10:60", "10", "10:00:60", "ab:cd", "+1:00", "", "1:2:3:4",
        ] {
            assert!(LocalTime::parse(wrong).is_err(), "{wrong}");
        }
        assert!(QuietHours::new(at("21:00"), at("21:00")).is_err());
    }

    /// (now UTC, zone, local time, due UTC): each user's next 10:00, today if still ahead.
    #[test]
    fn the_next_local_time_in_each_zone() {
        let now = datetime!(2026-12-07 12:00 UTC);
        for (zone_name, due) in [
            // 09:00 in São Paulo (UTC-3): 10:00 is an hour away.
            ("America/Sao_Paulo", datetime!(2026-12-07 13:00 UTC)),
            // 21:00 in Tokyo (UTC+9): 10:00 is tomorrow.
            ("Asia/Tokyo", datetime!(2026-12-08 01:00 UTC)),
            // 17:30 in Kolkata (UTC+5:30): tomorrow.
            ("Asia/Kolkata", datetime!(2026-12-08 04:30 UTC)),
            ("UTC", datetime!(2026-12-08 10:00 UTC)),
        ] {
            let zone = zone(zone_name).unwrap();
            assert_eq!(next_local(now, at("10:00"), &zone), due, "{zone_name}");
        }
        let utc = zone("UTC").unwrap();
        let exactly = datetime!(2026-12-07 10:00 UTC);
        assert_eq!(next_local(exactly, at("10:00"), &utc), exactly);
        assert!(zone("Mars/Olympus_Mons").is_none());
    }

    #[test]
    fn daylight_saving_gaps_move_forward() {
        // New York springs forward on 2027-03-14: 02:30 does not exist, 03:30 EDT is taken.
        let zone = zone("America/New_York").unwrap();
        let now = datetime!(2027-03-14 05:00 UTC);
        assert_eq!(
            next_local(now, at("02:30"), &zone),
            datetime!(2027-03-14 07:30 UTC)
        );
    }

    #[test]
    fn quiet_hours_end_when_they_end() {
        let paris = zone("Europe/Paris").unwrap(); // UTC+1 in December
        let night = QuietHours::new(at("21:00"), at("08:00")).unwrap();
        let check = |utc: OffsetDateTime, expected: Option<OffsetDateTime>| {
            assert_eq!(night.end_after(utc, &paris), expected, "{utc}");
        };
        // 22:00 local: quiet until 08:00 tomorrow (07:00 UTC).
        check(
            datetime!(2026-12-07 21:00 UTC),
            Some(datetime!(2026-12-08 07:00 UTC)),
        );
        // 03:00 local: quiet until 08:00 today.
        check(
            datetime!(2026-12-07 02:00 UTC),
            Some(datetime!(2026-12-07 07:00 UTC)),
        );
        // 08:00 and 20:59 local are not quiet.
        check(datetime!(2026-12-07 07:00 UTC), None);
        check(datetime!(2026-12-07 19:59 UTC), None);
        let lunch = QuietHours::new(at("12:00"), at("14:00")).unwrap();
        assert_eq!(
            lunch.end_after(datetime!(2026-12-07 12:30 UTC), &paris),
            Some(datetime!(2026-12-07 13:00 UTC))
        );
        let job = night.for_job("Europe/Paris");
        assert_eq!(
            job.end_after(datetime!(2026-12-07 21:00 UTC)),
            Some(datetime!(2026-12-08 07:00 UTC))
        );
    }
}
