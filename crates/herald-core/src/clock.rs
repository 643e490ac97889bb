//! The wall clock as Herald's wire formats write it: epoch milliseconds.

use time::OffsetDateTime;

/// Now, in epoch milliseconds (`i64::MAX` past the year 292 million).
pub fn now_ms() -> i64 {
    i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// A duration in milliseconds, for arithmetic with epoch milliseconds (`i64::MAX` when longer).
pub fn millis(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
