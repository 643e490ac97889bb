//! `track`: Braze's `POST /users/track` as Braze clients send it:
//! `{"attributes": [...], "events": [...], "purchases": [...]}`, each array optional but one
//! of them given. Each object is checked on its own: the good ones are stored together (one
//! transaction), the bad ones are reported by array and index with what is wrong, as Braze
//! does, and the answer has Braze's shape (`message`, `attributes_processed`,
//! `events_processed`, `purchases_processed`, `errors`). Ids must pass
//! `herald_core::validate_id` (at most 256 bytes, no control characters).
//!
//! - **Attributes**: Braze's standard attributes (`email`, `phone`, `first_name`, `dob`,
//!   `country`, `language`, `time_zone`, ...) and custom ones are stored as attributes.
//!   Strings are kept as they are, numbers and booleans as their JSON text, arrays and
//!   objects as their compact JSON (Liquid then sees `{{ prefs.color }}`, and a filter's
//!   `contains` matches an array's elements). `null` (Braze's "remove this attribute") is
//!   refused: the store merges attributes and cannot remove one. `_update_existing_only: true`
//!   skips (and reports) an object whose user does not exist yet.
//! - **Events** (`name`, `time`) and **purchases** (`product_id`, `time`): the user's count and
//!   latest time per name become attributes (`events.<name>.count`, `events.<name>.last_at`,
//!   `purchases.count`, `purchases.last_at`, `purchases.<product_id>.count` and `.last_at`),
//!   usable in segment filters such as `purchases.last_at within 30d` (`counters.rs`). Their
//!   properties are not stored, but an event's `properties` (an object) reach the campaigns
//!   it triggers as `trigger`. A user named only by an event or a purchase is created.
//! - **Triggers**: each event fires the stored campaigns whose `[trigger]` waits for its name
//!   (`crate::fires`), once per event even when the same call is made twice; an event whose
//!   `time` is more than a day from now fires nothing (`fires::MAX_EVENT_SKEW_MS`).

mod counters;
mod request;

use std::collections::BTreeMap;

use herald_store::{Store, UserRecord};
use serde::Serialize;
use serde_json::Value;

use crate::fires::{Fired, TrackedEvent, record_events};
use crate::ops::OpsError;
use herald_core::clock::now_ms;
use request::ActionKind;

pub use request::MAX_TRACK_ITEMS;

/// One refused object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrackError {
    /// Its position in its array, from 0.
    pub index: usize,
    /// `attributes`, `events` or `purchases` (Braze's names).
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
    /// Events counted.
    pub events_processed: usize,
    /// Purchases counted.
    pub purchases_processed: usize,
    /// The refused objects, by array and index.
    pub errors: Vec<TrackError>,
    /// Triggered campaigns the events fired (not part of Braze's answer).
    #[serde(skip)]
    pub fired: Fired,
}

/// Checks every object of `request` and stores the good ones. `page_id` ties the
/// `messenger_id`s to a page (then the Messenger identity is linked too). An error only when
/// the request as a whole is wrong or the store fails; refused objects are in the report.
pub async fn track(
    store: &Store,
    request: &Value,
    page_id: Option<&str>,
) -> Result<TrackReport, OpsError> {
    let parsed = request::parse(request, page_id)?;
    let mut errors = parsed.errors;
    let mut ids: Vec<&str> = parsed
        .attributes
        .iter()
        .filter(|item| item.existing_only)
        .map(|item| item.record.external_id.as_str())
        .chain(
            parsed
                .actions
                .iter()
                .map(|action| action.external_id.as_str()),
        )
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let stored = store.user_attributes(&ids).await?;
    let mut records: Vec<UserRecord> = Vec::with_capacity(parsed.attributes.len());
    for item in parsed.attributes {
        if item.existing_only && !stored.contains_key(&item.record.external_id) {
            errors.push(TrackError {
                index: item.index,
                input_array: "attributes",
                path: format!("attributes[{}]._update_existing_only", item.index),
                message: "the user does not exist, and _update_existing_only is true".to_owned(),
            });
            continue;
        }
        records.push(item.record);
    }
    let attributes_processed = records.len();
    let (events_processed, purchases_processed) = (parsed.events, parsed.purchases);
    let mut counted: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for action in &parsed.actions {
        let before = stored.get(&action.external_id);
        let user = counted.entry(action.external_id.clone()).or_default();
        counters::apply(action, before, user);
    }
    records.extend(
        counted
            .into_iter()
            .map(|(external_id, attributes)| UserRecord {
                attributes,
                ..UserRecord::new(external_id)
            }),
    );
    if !records.is_empty() {
        store.upsert_users(&records).await?;
    }
    // After the profiles are stored, so a fire's send sees what this call wrote.
    let events: Vec<TrackedEvent> = parsed
        .actions
        .into_iter()
        .filter_map(|action| match action.kind {
            ActionKind::Event { name } => Some(TrackedEvent {
                external_id: action.external_id,
                name,
                at_ms: i64::try_from(action.at.unix_timestamp_nanos() / 1_000_000)
                    .unwrap_or(i64::MAX),
                properties: action.properties,
            }),
            ActionKind::Purchase { .. } => None,
        })
        .collect();
    let fired = record_events(store, &events, now_ms()).await?;
    errors.sort_by_key(|error| (error.input_array, error.index));
    let processed = attributes_processed + events_processed + purchases_processed;
    let message = match (processed, errors.len()) {
        (_, 0) => "success",
        (0, _) => "failed",
        _ => "partial",
    };
    Ok(TrackReport {
        message,
        attributes_processed,
        events_processed,
        purchases_processed,
        errors,
        fired,
    })
}

#[cfg(test)]
mod tests;
