//! Reading a `/users/track` request: the three arrays and each object in them, every problem
//! reported by array, index and field. Nothing here touches the store.

use std::collections::BTreeMap;

use herald_core::{IdError, validate_id};
use herald_store::UserRecord;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::TrackError;
use crate::ops::{ErrorKind, OpsError};

/// Objects accepted in one request, all arrays together (Braze allows 75 per array; a bulk
/// loader should use `users import`).
pub const MAX_TRACK_ITEMS: usize = 10_000;
/// The longest event name or product id.
const MAX_NAME_BYTES: usize = 255;

/// A request, read.
pub(super) struct Parsed {
    pub(super) attributes: Vec<AttributeItem>,
    pub(super) actions: Vec<Action>,
    pub(super) events: usize,
    pub(super) purchases: usize,
    pub(super) errors: Vec<TrackError>,
}

/// One good attribute object.
pub(super) struct AttributeItem {
    pub(super) index: usize,
    pub(super) record: UserRecord,
    /// `_update_existing_only: true`.
    pub(super) existing_only: bool,
}

/// One good event or purchase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Action {
    pub(super) external_id: String,
    pub(super) kind: ActionKind,
    pub(super) at: OffsetDateTime,
    /// An event's `properties` object as compact JSON.
    pub(super) properties: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ActionKind {
    Event { name: String },
    Purchase { product_id: String },
}

type ItemError = (Option<String>, String);

/// Reads the request, or says why it is refused as a whole.
pub(super) fn parse(request: &Value, page_id: Option<&str>) -> Result<Parsed, OpsError> {
    if let Some(page) = page_id
        && (page.is_empty() || !page.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(OpsError::invalid(
            ErrorKind::Usage,
            "page_id",
            "a Facebook Page id is digits only",
        ));
    }
    let arrays = arrays_of(request)?;
    let mut parsed = Parsed {
        attributes: Vec::new(),
        actions: Vec::new(),
        events: 0,
        purchases: 0,
        errors: Vec::new(),
    };
    for (name, items) in arrays {
        for (index, item) in items.iter().enumerate() {
            let outcome = match name {
                "attributes" => attribute_of(item, page_id).map(|(record, existing_only)| {
                    parsed.attributes.push(AttributeItem {
                        index,
                        record,
                        existing_only,
                    });
                }),
                "events" => action_of(item, "name").map(|action| {
                    parsed.events += 1;
                    parsed.actions.push(action);
                }),
                _ => action_of(item, "product_id").map(|action| {
                    parsed.purchases += 1;
                    parsed.actions.push(action);
                }),
            };
            if let Err((field, message)) = outcome {
                parsed.errors.push(TrackError {
                    index,
                    input_array: name,
                    path: match field {
                        Some(field) => format!("{name}[{index}].{field}"),
                        None => format!("{name}[{index}]"),
                    },
                    message,
                });
            }
        }
    }
    Ok(parsed)
}

/// The arrays of the request, in the order they are applied, or why it is refused.
pub(super) fn arrays_of(request: &Value) -> Result<Vec<(&'static str, &[Value])>, OpsError> {
    let Value::Object(fields) = request else {
        return Err(OpsError::invalid(
            ErrorKind::Usage,
            "",
            "the body must be a JSON object with `attributes`, `events` or `purchases` arrays",
        ));
    };
    if let Some(key) = fields
        .keys()
        .find(|key| !matches!(key.as_str(), "attributes" | "events" | "purchases"))
    {
        return Err(OpsError::invalid(
            ErrorKind::Usage,
            key,
            "unknown field (expected `attributes`, `events` or `purchases`)",
        ));
    }
    let mut arrays = Vec::new();
    let mut total = 0;
    for name in ["attributes", "events", "purchases"] {
        match fields.get(name) {
            None => {}
            Some(Value::Array(items)) => {
                total += items.len();
                arrays.push((name, items.as_slice()));
            }
            Some(_) => {
                return Err(OpsError::invalid(
                    ErrorKind::Usage,
                    name,
                    "must be an array of objects",
                ));
            }
        }
    }
    if total == 0 {
        return Err(OpsError::invalid(
            ErrorKind::Usage,
            "attributes",
            "nothing to do: send at least one attribute, event or purchase object",
        ));
    }
    if total > MAX_TRACK_ITEMS {
        return Err(OpsError::invalid(
            ErrorKind::Usage,
            "attributes",
            format!(
                "{total} objects; at most {MAX_TRACK_ITEMS} per request (use `users import` for \
                 bulk loads)"
            ),
        ));
    }
    Ok(arrays)
}

/// One attribute object as a `UserRecord` with its `_update_existing_only`, or the field at
/// fault and why.
pub(super) fn attribute_of(
    item: &Value,
    page_id: Option<&str>,
) -> Result<(UserRecord, bool), ItemError> {
    let fields = object(item)?;
    let mut record = UserRecord::default();
    let mut existing_only = false;
    let mut attributes = BTreeMap::new();
    for (key, value) in fields {
        let at = |message: &str| (Some(key.clone()), message.to_owned());
        match key.as_str() {
            "external_id" => {}
            "user_alias" | "braze_id" => {
                return Err(at("not supported by Herald: identify users by external_id"));
            }
            "_update_existing_only" => match value {
                Value::Bool(flag) => existing_only = *flag,
                _ => return Err(at("must be true or false")),
            },
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
            "last_inbound_at" => record.last_inbound_at = Some(time_of(value).map_err(|m| at(&m))?),
            _ if key.starts_with('_') => {
                return Err(at(
                    "unknown Braze option (Herald reads `_update_existing_only`)",
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
                    // Kept as compact JSON: Liquid and `contains` read it as the array or object.
                    Value::Array(_) | Value::Object(_) => value.to_string(),
                };
                attributes.insert(key.clone(), text);
            }
        }
    }
    record.external_id = external_id(fields)?;
    record.attributes = attributes;
    record.page_id = record.messenger_id.as_ref().and(page_id.map(str::to_owned));
    Ok((record, existing_only))
}

/// An event (`name_key` = `name`) or a purchase (`product_id`): who, what and when. Other
/// fields (`app_id`, `properties`, `price`, `currency`, `quantity`) are read by Braze, not
/// stored by Herald.
pub(super) fn action_of(item: &Value, name_key: &str) -> Result<Action, ItemError> {
    let fields = object(item)?;
    let external_id = external_id(fields)?;
    let at = |field: &str, message: String| (Some(field.to_owned()), message);
    let name = match fields.get(name_key) {
        Some(Value::String(name)) if !name.trim().is_empty() => name.trim().to_owned(),
        Some(Value::String(_)) => return Err(at(name_key, "must not be blank".to_owned())),
        Some(_) => return Err(at(name_key, "must be a string".to_owned())),
        None => return Err(at(name_key, "is required".to_owned())),
    };
    if name.len() > MAX_NAME_BYTES || name.chars().any(char::is_control) {
        let message = format!("at most {MAX_NAME_BYTES} bytes, no control characters");
        return Err(at(name_key, message));
    }
    let when = match fields.get("time") {
        Some(value) => time_of(value).map_err(|message| at("time", message))?,
        None => return Err(at("time", "is required".to_owned())),
    };
    let properties = match fields.get("properties") {
        None | Some(Value::Null) => None,
        Some(value @ Value::Object(_)) => Some(value.to_string()),
        Some(_) => return Err(at("properties", "must be an object".to_owned())),
    };
    let kind = if name_key == "name" {
        ActionKind::Event { name }
    } else {
        ActionKind::Purchase { product_id: name }
    };
    Ok(Action {
        external_id,
        kind,
        at: when,
        properties,
    })
}

fn object(item: &Value) -> Result<&Map<String, Value>, ItemError> {
    match item {
        Value::Object(fields) => Ok(fields),
        _ => Err((None, "must be a JSON object".to_owned())),
    }
}

fn external_id(fields: &Map<String, Value>) -> Result<String, ItemError> {
    let at = |message: &str| (Some("external_id".to_owned()), message.to_owned());
    match fields.get("external_id") {
        Some(Value::String(id)) => match validate_id(id.trim()) {
            Ok(()) => Ok(id.trim().to_owned()),
            Err(IdError::Empty) => Err(at("must not be blank")),
            Err(other) => Err(at(&other.to_string())),
        },
        Some(_) => Err(at("must be a string")),
        None => Err(at("is required")),
    }
}

fn time_of(value: &Value) -> Result<OffsetDateTime, String> {
    let wrong = || "must be an RFC 3339 time, e.g. 2026-11-21T09:30:00Z".to_owned();
    match value {
        Value::String(text) => OffsetDateTime::parse(text.trim(), &Rfc3339).map_err(|_| wrong()),
        _ => Err(wrong()),
    }
}
