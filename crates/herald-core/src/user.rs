//! `User`: one row of a segment as the producer hands it to filters, the window policy and the
//! renderer. Reading rows from CSV, JSONL or the store is the caller's job, not this file's.
//! `Debug` never prints the PSID or attribute values: users are personal data and end up in logs.

use std::collections::BTreeMap;
use std::fmt;

use time::OffsetDateTime;

/// One user of a segment.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct User {
    /// The user's id in the customer's systems; part of the job id.
    pub external_id: String,
    /// The page-scoped id (PSID) to send to; `None` or blank means "cannot be messaged".
    pub messenger_id: Option<String>,
    /// When the user last wrote to the page, if the source knows it.
    pub last_inbound_at: Option<OffsetDateTime>,
    /// Every other column, as strings (numbers and dates are parsed when compared).
    pub attributes: BTreeMap<String, String>,
}

/// A named attribute of a user: the three built-in fields or any column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribute {
    /// `external_id`.
    ExternalId,
    /// `messenger_id`, or its alias `psid`.
    MessengerId,
    /// `last_inbound_at` (RFC 3339 in files).
    LastInboundAt,
    /// Any other column.
    Other(String),
}

/// The value of an attribute on a particular user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttributeValue<'a> {
    /// A string column, or `external_id` / `messenger_id`.
    Text(&'a str),
    /// `last_inbound_at`.
    Time(OffsetDateTime),
}

impl Attribute {
    /// Maps a name from a campaign file; `psid` is an alias of `messenger_id`.
    pub fn from_name(name: &str) -> Self {
        match name {
            "external_id" => Self::ExternalId,
            "messenger_id" | "psid" => Self::MessengerId,
            "last_inbound_at" => Self::LastInboundAt,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The canonical name (`psid` comes back as `messenger_id`).
    pub fn name(&self) -> &str {
        match self {
            Self::ExternalId => "external_id",
            Self::MessengerId => "messenger_id",
            Self::LastInboundAt => "last_inbound_at",
            Self::Other(name) => name,
        }
    }
}

impl User {
    /// A user with an id and a PSID, no inbound time and no attributes.
    pub fn new(external_id: impl Into<String>, messenger_id: impl Into<String>) -> Self {
        Self {
            external_id: external_id.into(),
            messenger_id: Some(messenger_id.into()),
            ..Self::default()
        }
    }

    /// Adds or replaces one attribute (builder style, handy in tests and `campaign test`).
    pub fn with_attr(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.insert(key.into(), value.into());
        self
    }

    /// Sets `last_inbound_at` (builder style).
    pub fn with_last_inbound_at(mut self, at: OffsetDateTime) -> Self {
        self.last_inbound_at = Some(at);
        self
    }

    /// The PSID if it is present and not blank, trimmed.
    pub fn psid(&self) -> Option<&str> {
        self.messenger_id
            .as_deref()
            .map(str::trim)
            .filter(|psid| !psid.is_empty())
    }

    /// The value of an attribute, `None` when the user does not have it.
    pub fn get(&self, attribute: &Attribute) -> Option<AttributeValue<'_>> {
        match attribute {
            Attribute::ExternalId => Some(AttributeValue::Text(&self.external_id)),
            Attribute::MessengerId => self.messenger_id.as_deref().map(AttributeValue::Text),
            Attribute::LastInboundAt => self.last_inbound_at.map(AttributeValue::Time),
            Attribute::Other(name) => self.attributes.get(name).map(|v| AttributeValue::Text(v)),
        }
    }
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("external_id", &self.external_id)
            .field(
                "messenger_id",
                &self.messenger_id.as_deref().map(short_hash),
            )
            .field("last_inbound_at", &self.last_inbound_at)
            .field("attributes", &self.attributes.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A short, stable FNV-1a hash: enough to tell two PSIDs apart in a log, not to recover one.
fn short_hash(value: &str) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in value.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    format!("#{hash:08x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_psid_and_attribute_values() {
        let user = User::new("u1", "1234567890123456").with_attr("first_name", "Zoë");
        let debug = format!("{user:?}");
        assert!(!debug.contains("1234567890123456"), "{debug}");
        assert!(!debug.contains("Zoë"), "{debug}");
        assert!(debug.contains("first_name"), "{debug}");
        assert!(debug.contains("u1"), "{debug}");
    }

    #[test]
    fn psid_is_trimmed_and_blank_is_none() {
        let check = |psid: Option<&str>, expected: Option<&str>| {
            let user = User {
                messenger_id: psid.map(str::to_owned),
                ..User::default()
            };
            assert_eq!(user.psid(), expected, "{psid:?}");
        };
        check(None, None);
        check(Some(""), None);
        check(Some(" \t "), None);
        check(Some(" 42 "), Some("42"));
    }

    #[test]
    fn attribute_names_and_alias() {
        assert_eq!(Attribute::from_name("psid"), Attribute::MessengerId);
        assert_eq!(Attribute::from_name("psid").name(), "messenger_id");
        assert_eq!(
            Attribute::from_name("country"),
            Attribute::Other("country".into())
        );
        let user = User::new("u1", "42").with_attr("country", "BR");
        assert_eq!(
            user.get(&Attribute::from_name("country")),
            Some(AttributeValue::Text("BR"))
        );
        assert_eq!(user.get(&Attribute::LastInboundAt), None);
        assert_eq!(
            user.get(&Attribute::ExternalId),
            Some(AttributeValue::Text("u1"))
        );
    }
}
