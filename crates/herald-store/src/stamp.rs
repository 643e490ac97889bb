//! Times in the store: `OffsetDateTime` in the API, epoch milliseconds (`i64`) in every column
//! of both databases, so comparisons and `MAX` behave the same everywhere. Sub-millisecond
//! precision is dropped on the way in.

use time::OffsetDateTime;

use crate::StoreError;

/// Epoch milliseconds (negative before 1970; saturates far outside any real date).
pub(crate) fn to_ms(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos().div_euclid(1_000_000)).unwrap_or(i64::MAX)
}

/// The time `ms` epoch milliseconds stand for.
pub(crate) fn from_ms(ms: i64, what: &'static str) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).map_err(|_| {
        StoreError::Corrupt {
            what,
            value: ms.to_string(),
        }
    })
}

/// `from_ms` for a nullable column.
pub(crate) fn from_opt_ms(
    ms: Option<i64>,
    what: &'static str,
) -> Result<Option<OffsetDateTime>, StoreError> {
    ms.map(|ms| from_ms(ms, what)).transpose()
}

/// Now, in epoch milliseconds.
pub(crate) fn now_ms() -> i64 {
    to_ms(OffsetDateTime::now_utc())
}

/// A counter read from the database as `i64`, as `u64` (negative never happens; read as 0).
pub(crate) fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// A `u64` counter for a BIGINT column (saturating; no counter gets near 2^63).
pub(crate) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn milliseconds_round_trip() {
        let check = |at: OffsetDateTime, ms: i64| {
            assert_eq!(to_ms(at), ms, "{at}");
            assert_eq!(from_ms(ms, "test").expect("in range"), at, "{ms}");
        };
        check(datetime!(1970-01-01 00:00 UTC), 0);
        check(datetime!(2026-11-21 12:00:00.123 UTC), 1_795_262_400_123);
        check(datetime!(1969-12-31 23:59:59.999 UTC), -1);
        assert_eq!(
            to_ms(datetime!(2026-01-01 00:00:00.0009999 UTC)),
            1_767_225_600_000
        );
        assert!(from_ms(i64::MAX, "test").is_err());
    }
}
