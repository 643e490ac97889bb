//! Reading `[schedule]`, `delivery.quiet_hours` and `delivery.frequency_cap` out of a campaign
//! document: when each user's job is due in their own time zone, and how often one user may be
//! reached.
//!
//! ```toml
//! [schedule]
//! send_at = "2026-12-24T10:00:00-03:00"   # or: cron = "0 10 * * MON" (+ timezone = "...")
//! local_time = "10:00"                 # each user's next 10:00
//! timezone_attribute = "time_zone"     # the attribute holding the user's IANA zone (Braze's)
//! default_timezone = "America/Sao_Paulo"   # for users without a valid one (default UTC)
//!
//! [delivery]
//! quiet_hours = { start = "21:00", end = "08:00" }   # in the user's local time
//! frequency_cap = { max = 1, per = "24h" }           # from this page, any campaign
//! ```

use super::check::Checker;
use super::doc::Node;
use std::time::Duration;

use super::spec::{FrequencyCap, Schedule};
use crate::cron::Cron;
use crate::duration::parse_duration;
use crate::local::{self, LocalTime, QuietHours};
use crate::path::FieldPath;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The shortest and the longest frequency-cap period.
const MIN_CAP_PERIOD: Duration = Duration::from_secs(60);
const MAX_CAP_PERIOD: Duration = Duration::from_secs(90 * 86_400);
const SCHEDULE_KEYS: [&str; 6] = [
    "send_at",
    "cron",
    "timezone",
    "local_time",
    "timezone_attribute",
    "default_timezone",
];
const QUIET_KEYS: [&str; 2] = ["start", "end"];
const CAP_KEYS: [&str; 2] = ["max", "per"];

/// `[schedule]`; absent means "due at once, zones from `time_zone`, else UTC".
pub(crate) fn schedule(checker: &mut Checker<'_>, node: Option<&Node>) -> Option<Schedule> {
    let defaults = Schedule::default();
    let Some(node) = node else {
        return Some(defaults);
    };
    let mut fields = checker.table(node, FieldPath::root().key("schedule"))?;
    let local_time = match fields.get("local_time") {
        None => Some(None),
        Some(node) => time_of_day(checker, node, &fields.at("local_time")).map(Some),
    };
    let timezone_attribute = match fields.get("timezone_attribute") {
        None => Some(defaults.timezone_attribute.clone()),
        Some(node) => {
            let path = fields.at("timezone_attribute");
            match checker.string(node, &path) {
                Some(name) if !name.trim().is_empty() => Some(name.trim().to_owned()),
                Some(_) => {
                    checker.data(&path, node, "must name an attribute");
                    None
                }
                None => None,
            }
        }
    };
    let default_timezone = match fields.get("default_timezone") {
        None => Some(defaults.default_timezone.clone()),
        Some(node) => zone_name(checker, node, &fields.at("default_timezone")),
    };
    let timezone = match fields.get("timezone") {
        None => Some(defaults.timezone.clone()),
        Some(node) => zone_name(checker, node, &fields.at("timezone")),
    };
    let send_at = match fields.get("send_at") {
        None => Some(None),
        Some(node) => {
            let path = fields.at("send_at");
            checker.string(node, &path).and_then(|text| {
                match OffsetDateTime::parse(text.trim(), &Rfc3339) {
                    Ok(at) => Some(Some(at)),
                    Err(_) => {
                        let message =
                            "must be an RFC 3339 time, e.g. \"2026-12-24T10:00:00-03:00\"";
                        checker.data(&path, node, message);
                        None
                    }
                }
            })
        }
    };
    let cron = match fields.get("cron") {
        None => Some(None),
        Some(node) => {
            let path = fields.at("cron");
            checker
                .string(node, &path)
                .and_then(|text| match Cron::parse(text) {
                    Ok(cron) => Some(Some(cron)),
                    Err(message) => {
                        checker.data(&path, node, message);
                        None
                    }
                })
        }
    };
    if let (Some(Some(_)), Some(Some(_)), Some(node)) = (&send_at, &cron, fields.get("cron")) {
        let message = "`send_at` (one run) and `cron` (a run per occurrence) exclude each other";
        checker.data(&fields.at("cron"), node, message);
    }
    fields.finish(checker, &SCHEDULE_KEYS);
    Some(Schedule {
        send_at: send_at?,
        cron: cron?,
        timezone: timezone?,
        local_time: local_time?,
        timezone_attribute: timezone_attribute?,
        default_timezone: default_timezone?,
    })
}

/// `quiet_hours = { start = "HH:MM", end = "HH:MM" }`.
pub(crate) fn quiet_hours(
    checker: &mut Checker<'_>,
    node: &Node,
    path: FieldPath,
) -> Option<QuietHours> {
    let mut fields = checker.table(node, path.clone())?;
    let start = fields
        .required(checker, "start")
        .and_then(|n| time_of_day(checker, n, &fields.at("start")));
    let end = fields
        .required(checker, "end")
        .and_then(|n| time_of_day(checker, n, &fields.at("end")));
    fields.finish(checker, &QUIET_KEYS);
    match QuietHours::new(start?, end?) {
        Ok(quiet) => Some(quiet),
        Err(message) => {
            checker.data(&path, node, message);
            None
        }
    }
}

/// `frequency_cap = { max = N, per = "24h" }`: `max` 1 to 1000, `per` 1 minute to 90 days.
pub(crate) fn frequency_cap(
    checker: &mut Checker<'_>,
    node: &Node,
    path: FieldPath,
) -> Option<FrequencyCap> {
    let mut fields = checker.table(node, path)?;
    let max = fields.required(checker, "max").and_then(|n| {
        let at = fields.at("max");
        let value = checker.integer(n, &at)?;
        match u32::try_from(value) {
            Ok(max) if (1..=1000).contains(&max) => Some(max),
            _ => {
                checker.data(&at, n, format!("must be between 1 and 1000, got {value}"));
                None
            }
        }
    });
    let per = fields.required(checker, "per").and_then(|n| {
        let at = fields.at("per");
        let text = checker.string(n, &at)?;
        match parse_duration(text) {
            Ok(per) if per >= MIN_CAP_PERIOD && per <= MAX_CAP_PERIOD => Some(per),
            Ok(_) => {
                checker.data(&at, n, "must be between 1m and 90d");
                None
            }
            Err(error) => {
                checker.data(&at, n, error.to_string());
                None
            }
        }
    });
    fields.finish(checker, &CAP_KEYS);
    Some(FrequencyCap {
        max: max?,
        per: per?,
    })
}

fn zone_name(checker: &mut Checker<'_>, node: &Node, path: &FieldPath) -> Option<String> {
    let name = checker.string(node, path)?;
    if local::zone(name).is_some() {
        return Some(name.trim().to_owned());
    }
    let message =
        format!("{name:?} is not an IANA time zone (e.g. \"America/Sao_Paulo\", \"UTC\")");
    checker.data(path, node, message);
    None
}

fn time_of_day(checker: &mut Checker<'_>, node: &Node, path: &FieldPath) -> Option<LocalTime> {
    let text = checker.string(node, path)?;
    match LocalTime::parse(text) {
        Ok(at) => Some(at),
        Err(message) => {
            checker.data(path, node, message);
            None
        }
    }
}
