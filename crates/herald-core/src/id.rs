//! Identifiers from outside (a user's `external_id`, a PSID) are checked where they enter:
//! segment rows, user imports and `/users/track`. An id is non-empty, at most `MAX_ID_BYTES`
//! bytes of UTF-8, and holds no control character (NUL included: PostgreSQL cannot store it,
//! and a line break would split a log line or a CSV export).
//!
//! 256 bytes is far below what the stores can index: a PostgreSQL btree entry may hold about
//! 2,700 bytes, and ids sit in composite keys (page, PSID) and in job ids
//! (`<run id>:<external id>`). Meta's PSIDs are digits, about 16 of them.

/// The longest id accepted, in bytes.
pub const MAX_ID_BYTES: usize = 256;

/// Why an id is refused. The messages never repeat the id: ids are personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Nothing, or only spaces.
    #[error("is empty")]
    Empty,
    /// Longer than `MAX_ID_BYTES`.
    #[error("is {len} bytes long; an id may be at most {MAX_ID_BYTES} bytes")]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// A control character (NUL, a line break, a tab, ...).
    #[error("contains a control character (such as NUL, a tab or a line break)")]
    Control,
}

/// Checks an id as it arrives (after any trimming the caller does).
pub fn validate_id(id: &str) -> Result<(), IdError> {
    if id.trim().is_empty() {
        return Err(IdError::Empty);
    }
    if id.len() > MAX_ID_BYTES {
        return Err(IdError::TooLong { len: id.len() });
    }
    if id.chars().any(char::is_control) {
        return Err(IdError::Control);
    }
    Ok(())
}

/// `<prefix><yyyymmddhhmmss>-<6 hex>` (UTC): sortable by creation time, unique without
/// coordination. Run ids use `r`, schedule ids `s`.
pub fn time_id(prefix: char) -> String {
    use std::hash::{BuildHasher, Hasher};
    let now = time::OffsetDateTime::now_utc();
    let mut hasher = std::hash::RandomState::new().build_hasher();
    hasher.write_i128(now.unix_timestamp_nanos());
    hasher.write_u32(std::process::id());
    format!(
        "{prefix}{:04}{:02}{:02}{:02}{:02}{:02}-{:06x}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        hasher.finish() & 0xff_ffff
    )
}

/// Whether `id` has the shape `time_id(prefix)` gives (`s20261207093000-a1b2c3`), so it
/// cannot be a campaign id that happens to start with the same letter.
pub fn is_time_id(id: &str, prefix: char) -> bool {
    let Some(rest) = id.strip_prefix(prefix) else {
        return false;
    };
    let bytes = rest.as_bytes();
    bytes.len() == 21
        && bytes[..14].iter().all(u8::is_ascii_digit)
        && bytes[14] == b'-'
        && bytes[15..].iter().all(u8::is_ascii_hexdigit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_ids_are_told_from_other_ids() {
        assert!(is_time_id(&time_id('s'), 's'));
        assert!(is_time_id("s20261207093000-a1b2c3", 's'));
        assert!(!is_time_id("s20261207093000-a1b2c3", 'r'));
        assert!(!is_time_id("shipped", 's'));
        assert!(!is_time_id("s20261207093000a1b2c3x", 's'));
    }

    #[test]
    fn ids_are_non_empty_bounded_and_free_of_control_characters() {
        assert_eq!(validate_id("u1"), Ok(()));
        assert_eq!(validate_id("名前-ü 1"), Ok(()));
        assert_eq!(validate_id(&"x".repeat(MAX_ID_BYTES)), Ok(()));
        assert_eq!(validate_id(""), Err(IdError::Empty));
        assert_eq!(validate_id("  "), Err(IdError::Empty));
        assert_eq!(
            validate_id(&"é".repeat(129)),
            Err(IdError::TooLong { len: 258 })
        );
        for bad in ["a\0b", "a\nb", "a\tb", "a\u{7f}", "a\u{85}b", "\u{1b}[31m"] {
            assert_eq!(validate_id(bad), Err(IdError::Control), "{bad:?}");
        }
    }

    #[test]
    fn the_message_never_repeats_the_id() {
        let secret = "person@example.com\0";
        let message = validate_id(secret).expect_err("refused").to_string();
        assert!(!message.contains("person"), "{message}");
    }
}
