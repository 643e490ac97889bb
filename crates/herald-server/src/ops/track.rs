//! `track`: Braze's `POST /users/track` request shape, `{"attributes": [{"external_id": ..,
//! "messenger_id": .., "first_name": .., ...}, ...]}`. Each object is checked on its own: the
//! good ones are upserted together (one transaction), the bad ones are reported by index with
//! what is wrong, as Braze does. Braze's `events` and `purchases` arrays are refused as a whole
//! rather than silently dropped. Ids must pass `herald_core::validate_id` (at most 256 bytes,
//! no control characters).
//!
//! Values: strings are kept as they are, numbers and booleans as their JSON text (attributes
//! are strings in the store; filters parse numbers and dates when they compare). `null`
//! (Braze's "remove this attribute"), arrays and objects are refused: the store merges
//! attributes and cannot remove one.

use std::collections::BTreeMap;

use herald_core::{IdError, validate_id};
use herald_store::{Store, UserRecord};
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::ops::{ErrorKind, OpsError};

/// Attribute objects accepted in one request (Braze allows 75; a bulk loader should use
/// `users import`).
pub const MAX_TRACK_ITEMS: usize = 10_000;

/// One refused attribute object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrackError {
    /// Its position in `attributes`, from 0.
    pub index: usize,
    /// Always `attributes` (Braze names the array the same way).
    pub input_array: &'static str,
    /// The field at fault, e.g. `attributes[2].external_id`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// What a `/users/track` call did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrackReport {
    /// `success` (every object stored), `partial` (some refused) or `failed` (none stored).
    pub message: &'static str,
    /// Attribute objects stored.
    pub attributes_processed: usize,
    /// The refused objects, by index.
    pub errors: Vec<TrackError>,
}

/// Checks every attribute object of `request` and upserts the good ones. `page_id` ties the
/// `messenger_id`s to a page (then the Messenger identity is linked too). An error only when
/// the request as a whole is wrong or the store fails; refused objects are in the report.
pub async fn track(
    store: &Store,
    request: &Value,
    page_id: Option<&str>,
) -> Result<TrackReport, OpsError> {
    if let Some(page) = page_id
        && (page.is_empty() || !page.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(OpsError::invalid(
            ErrorKind::Usage,
            "page_id",
            "a Facebook Page id is digits only",
        ));
    }
    let items = attributes_of(request)?;
    let mut records = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (index, item) in items.iter().enumerate() {
        match record_of(item, page_id) {
            Ok(record) => records.push(record),
            Err((field, message)) => errors.push(TrackError {
                index,
                input_array: "attributes",
                path: match field {
                    Some(field) => format!("attributes[{index}].{field}"),
                    None => format!("attributes[{index}]"),
                },
                message,
            }),
        }
    }
    if !records.is_empty() {
        store.upsert_users(&records).await?;
    }
    let message = match (records.len(), errors.len()) {
        (_, 0) => "success",
        (0, _) => "failed",
        _ => "partial",
    };
    Ok(TrackReport {
        message,
        attributes_processed: records.len(),
        errors,
    })
}

/// The `attributes` array, or why the request as a whole is refused.
fn attributes_of(request: &Value) -> Result<&[Value], OpsError> {
    let Value::Object(fields) = request else {
        return Err(OpsError::invalid(
            ErrorKind::Usage,
            "",
            "the body must be a JSON object with an `attributes` array",
        ));
    };
    for key in fields.keys() {
        match key.as_str() {
            "attributes" => {}
            "events" | "purchases" => {
                return Err(OpsError::invalid(
                    ErrorKind::Usage,
                    key,
                    "not supported by Herald: send only `attributes`",
                ));
            }
            _ => {
                return Err(OpsError::invalid(
                    ErrorKind::Usage,
                    key,
                    "unknown field (expected `attributes`)",
                ));
            }
        }
    }
    let items = match fields.get("attributes") {
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(OpsError::invalid(
                ErrorKind::Usage,
                "attributes",
                "must be an array of objects",
            ));
        }
        None => {
            return Err(OpsError::invalid(
                ErrorKind::Usage,
                "attributes",
                "is required",
            ));
        }
    };
    if items.is_empty() {
        return Err(OpsError::invalid(
            ErrorKind::Usage,
            "attributes",
            "is empty: send at least one object",
        ));
    }
    if items.len() > MAX_TRACK_ITEMS {
        return Err(OpsError::invalid(
            ErrorKind::Usage,
            "attributes",
            format!(
                "{} objects; at most {MAX_TRACK_ITEMS} per request (use `users import` for bulk loads)",
                items.len()
            ),
        ));
    }
    Ok(items)
}

type ItemError = (Option<String>, String);

/// One attribute object as a `UserRecord`, or the field at fault and why.
fn record_of(item: &Value, page_id: Option<&str>) -> Result<UserRecord, ItemError> {
    let Value::Object(fields) = item else {
        return Err((None, "must be a JSON object".to_owned()));
    };
    let mut record = UserRecord::default();
    let mut external_id = None;
    let mut attributes = BTreeMap::new();
    for (key, value) in fields {
        let at = |message: &str| (Some(key.clone()), message.to_owned());
        match key.as_str() {
            "external_id" => match value {
                Value::String(id) => match validate_id(id.trim()) {
                    Ok(()) => external_id = Some(id.trim().to_owned()),
                    Err(IdError::Empty) => return Err(at("must not be blank")),
                    Err(other) => return Err(at(&other.to_string())),
                },
                _ => return Err(at("must be a string")),
            },
            "user_alias" | "braze_id" | "email" | "phone" => {
                return Err(at("not supported by Herald: identify users by external_id"));
            }
            "messenger_id" | "psid" => match value {
                Value::String(psid) if psid.trim().is_empty() => {}
                Value::String(psid) if psid.trim().bytes().all(|b| b.is_ascii_digit()) => {
                    validate_id(psid.trim()).map_err(|error| at(&error.to_string()))?;
                    record.messenger_id = Some(psid.trim().to_owned());
                }
                Value::String(_) => return Err(at("must be a page-scoped id (digits)")),
                Value::Null => return Err(at("null is not supported: a PSID cannot be removed")),
                _ => return Err(at("must be a string of digits")),
            },
            "last_inbound_at" => match value {
                Value::String(text) => match OffsetDateTime::parse(text.trim(), &Rfc3339) {
                    Ok(time) => record.last_inbound_at = Some(time),
                    Err(_) => {
                        return Err(at("must be an RFC 3339 time, e.g. 2026-11-21T09:30:00Z"));
                    }
                },
                _ => return Err(at("must be an RFC 3339 time string")),
            },
            _ if key.starts_with('_') => {
                return Err(at(
                    "Braze options (keys starting with `_`) are not supported",
                ));
            }
            _ if key.trim().is_empty() => {
                return Err((None, "an attribute name is blank".to_owned()));
            }
            _ => {
                let text = match value {
                    Value::String(text) => text.clone(),
                    Value::Number(number) => number.to_string(),
                    Value::Bool(flag) => flag.to_string(),
                    Value::Null => {
                        return Err(at(
                            "null is not supported: Herald merges attributes and cannot remove one",
                        ));
                    }
                    Value::Array(_) | Value::Object(_) => {
                        return Err(at(
                            "nested values are not supported: use a string, number or boolean",
                        ));
                    }
                };
                attributes.insert(key.clone(), text);
            }
        }
    }
    let Some(external_id) = external_id else {
        return Err((Some("external_id".to_owned()), "is required".to_owned()));
    };
    record.external_id = external_id;
    record.attributes = attributes;
    record.page_id = record.messenger_id.as_ref().and(page_id.map(str::to_owned));
    Ok(record)
}

#[cfg(test)]
mod tests;
