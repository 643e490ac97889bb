//! Segment filters and their evaluation on a `User`: pure functions of the user and a `now`
//! passed in (no clock reads here). Parsing filters out of a campaign file lives in
//! `campaign::segment`; this file owns what an op means.
//!
//! Comparisons (`eq`, `neq`, `in`, `gt`, `gte`, `lt`, `lte`) compare as numbers when both sides
//! parse as finite `f64`, else as dates when both parse as RFC 3339 or `YYYY-MM-DD` (midnight
//! UTC), else as strings (exact, case-sensitive, byte order).

use std::cmp::Ordering;
use std::time::Duration;

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime};

use crate::user::{Attribute, AttributeValue, User};

/// How a group combines its filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Match {
    /// Every filter must match (AND).
    #[default]
    All,
    /// At least one filter must match (OR).
    Any,
}

/// A list of filters combined with `match`; the top level of `segment` is one.
/// An empty group matches every user, whatever its `match`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FilterGroup {
    /// AND or OR.
    pub matching: Match,
    /// The filters, in file order.
    pub filters: Vec<Filter>,
}

/// One entry of a group: a condition on an attribute, or a nested group.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `{ attribute, op, value }`.
    Condition(Condition),
    /// `{ group = { match, filter = [...] } }`.
    Group(FilterGroup),
}

/// A test of one attribute.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// What to look at.
    pub attribute: Attribute,
    /// How to test it.
    pub op: Op,
}

/// A filter operator with its operand, already parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// The attribute is present and not blank (empty or whitespace).
    Exists,
    /// The attribute is missing or blank; the exact negation of `Exists`.
    Blank,
    /// Equal (see the module doc for numbers and dates). A missing attribute is not equal.
    Eq(Operand),
    /// The exact negation of `Eq`: a missing attribute is "not equal".
    Neq(Operand),
    /// Equal to one of the operands.
    In(Vec<Operand>),
    /// The attribute's text contains this substring (case-sensitive).
    Contains(String),
    /// Greater than.
    Gt(Operand),
    /// Greater than or equal.
    Gte(Operand),
    /// Less than.
    Lt(Operand),
    /// Less than or equal.
    Lte(Operand),
    /// The attribute is a date no older than this (future dates count as within).
    Within(Duration),
    /// The attribute is a date strictly older than this.
    OlderThan(Duration),
}

/// The names of the operators, as campaign files spell them.
pub const OP_NAMES: [&str; 12] = [
    "exists",
    "blank",
    "eq",
    "neq",
    "in",
    "contains",
    "gt",
    "gte",
    "lt",
    "lte",
    "within",
    "older_than",
];

/// A comparison value, parsed once when the campaign is loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct Operand {
    text: String,
    number: Option<f64>,
    date: Option<OffsetDateTime>,
}

impl Operand {
    /// Parses the number and date readings of a value up front.
    pub fn new(text: impl Into<String>) -> Self {
        let text = text.into();
        Self {
            number: parse_number(&text),
            date: parse_date(&text),
            text,
        }
    }

    /// The value as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FilterGroup {
    /// Whether the user is in the segment.
    pub fn matches(&self, user: &User, now: OffsetDateTime) -> bool {
        if self.filters.is_empty() {
            return true;
        }
        match self.matching {
            Match::All => self.filters.iter().all(|f| f.matches(user, now)),
            Match::Any => self.filters.iter().any(|f| f.matches(user, now)),
        }
    }
}

impl Filter {
    /// Whether the user passes this filter.
    pub fn matches(&self, user: &User, now: OffsetDateTime) -> bool {
        match self {
            Self::Condition(condition) => condition.matches(user, now),
            Self::Group(group) => group.matches(user, now),
        }
    }
}

impl Condition {
    /// Whether the user's attribute passes the op.
    pub fn matches(&self, user: &User, now: OffsetDateTime) -> bool {
        let value = user.get(&self.attribute);
        let ordering = |operand: &Operand| value.and_then(|v| compare(v, operand));
        match &self.op {
            Op::Exists => value.is_some_and(|v| !is_blank(v)),
            Op::Blank => value.is_none_or(is_blank),
            Op::Eq(operand) => ordering(operand) == Some(Ordering::Equal),
            Op::Neq(operand) => ordering(operand) != Some(Ordering::Equal),
            Op::In(operands) => operands
                .iter()
                .any(|operand| ordering(operand) == Some(Ordering::Equal)),
            Op::Contains(needle) => value.is_some_and(|v| match v {
                AttributeValue::Text(text) => match json_array(text) {
                    // An array (as `/users/track` stores one): one of its elements is the value.
                    Some(items) => items.iter().any(|item| match item {
                        serde_json::Value::String(item) => item == needle,
                        other => serde_json::from_str::<serde_json::Value>(needle)
                            .is_ok_and(|value| value == *other),
                    }),
                    None => text.contains(needle.as_str()),
                },
                AttributeValue::Time(at) => format_time(at).contains(needle.as_str()),
            }),
            Op::Gt(operand) => ordering(operand) == Some(Ordering::Greater),
            Op::Gte(operand) => ordering(operand).is_some_and(Ordering::is_ge),
            Op::Lt(operand) => ordering(operand) == Some(Ordering::Less),
            Op::Lte(operand) => ordering(operand).is_some_and(Ordering::is_le),
            Op::Within(age) => value
                .and_then(as_time)
                .is_some_and(|at| cutoff(now, *age).is_none_or(|cut| at >= cut)),
            Op::OlderThan(age) => value
                .and_then(as_time)
                .is_some_and(|at| cutoff(now, *age).is_some_and(|cut| at < cut)),
        }
    }
}

/// `now - age`, or `None` when that is before the earliest representable date.
fn cutoff(now: OffsetDateTime, age: Duration) -> Option<OffsetDateTime> {
    let age = time::Duration::try_from(age).ok()?;
    now.checked_sub(age)
}

fn is_blank(value: AttributeValue<'_>) -> bool {
    match value {
        AttributeValue::Text(text) => text.trim().is_empty(),
        AttributeValue::Time(_) => false,
    }
}

fn as_time(value: AttributeValue<'_>) -> Option<OffsetDateTime> {
    match value {
        AttributeValue::Text(text) => parse_date(text),
        AttributeValue::Time(at) => Some(at),
    }
}

fn compare(value: AttributeValue<'_>, operand: &Operand) -> Option<Ordering> {
    match value {
        AttributeValue::Text(text) => {
            if let (Some(want), Some(have)) = (operand.number, parse_number(text)) {
                return have.partial_cmp(&want);
            }
            if let Some(want) = operand.date
                && let Some(have) = parse_date(text)
            {
                return Some(have.cmp(&want));
            }
            Some(text.cmp(operand.text.as_str()))
        }
        AttributeValue::Time(at) => match operand.date {
            Some(want) => Some(at.cmp(&want)),
            None => Some(format_time(at).as_str().cmp(operand.text.as_str())),
        },
    }
}

fn format_time(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

fn parse_number(text: &str) -> Option<f64> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|number| number.is_finite())
}

/// RFC 3339, or a bare `YYYY-MM-DD` taken as midnight UTC.
pub(crate) fn parse_date(text: &str) -> Option<OffsetDateTime> {
    let text = text.trim();
    if let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) {
        return Some(at);
    }
    Date::parse(text, format_description!("[year]-[month]-[day]"))
        .ok()
        .map(|date| date.midnight().assume_utc())
}

#[cfg(test)]
mod tests;

/// The elements of an attribute text that is a JSON array.
fn json_array(text: &str) -> Option<Vec<serde_json::Value>> {
    if !text.trim_start().starts_with('[') {
        return None;
    }
    match serde_json::from_str(text).ok()? {
        serde_json::Value::Array(items) => Some(items),
        _ => None,
    }
}
