//! From webhook bytes to `Event`s (docs/messenger-platform.md §5.3–5.4), with no I/O: every
//! `entry`, and in each every `messaging` and `standby` item (standby when another app owns the
//! thread). A body that is not JSON, not an object, not `object: "page"` or without an `entry`
//! array is poison (`Err` with the reason). Inside a page webhook nothing is fatal: an item of an
//! unknown kind, or missing the fields its kind needs, becomes an ignored event, counted, and the
//! rest of the batch is applied.
//!
//! Meta sends IDs as strings and times as epoch milliseconds; numbers for IDs and numeric
//! strings for times (as some of Meta's own examples show) are accepted too.

use serde_json::Value;

use super::event::{Action, Event, Ignored, PolicyAction};
use crate::fires::Cue;

/// Reads one webhook body. `received_ms` is when the webhook received it: the time given to
/// items without a `timestamp` nor an entry `time`, and what an entry's age is measured from.
/// Every item of an entry older than `max_age_ms` is `Ignored::Stale`.
pub(crate) fn parse(body: &[u8], received_ms: i64, max_age_ms: i64) -> Result<Vec<Event>, String> {
    let value: Value = serde_json::from_slice(body).map_err(|error| {
        let text = error.to_string();
        let text = text.rfind(" at line ").map_or(&*text, |at| &text[..at]);
        format!("not JSON: {text}")
    })?;
    let Value::Object(root) = value else {
        return Err("not a page webhook: the body is not a JSON object".to_owned());
    };
    match root.get("object") {
        Some(Value::String(object)) if object == "page" => {}
        Some(Value::String(object)) => {
            let shown: String = object.chars().take(40).collect();
            return Err(format!("not a page webhook: object is {shown:?}"));
        }
        _ => return Err("not a page webhook: no `object` string".to_owned()),
    }
    let Some(Value::Array(entries)) = root.get("entry") else {
        return Err("not a page webhook: `entry` is missing or not an array".to_owned());
    };
    let mut events = Vec::new();
    let oldest_ms = received_ms.saturating_sub(max_age_ms);
    for entry in entries {
        read_entry(entry, received_ms, oldest_ms, &mut events);
    }
    Ok(events)
}

fn read_entry(entry: &Value, received_ms: i64, oldest_ms: i64, events: &mut Vec<Event>) {
    let Value::Object(entry) = entry else {
        events.push(Event::Ignored(Ignored::Malformed));
        return;
    };
    let page = entry.get("id").and_then(id);
    let entry_ms = entry.get("time").and_then(millis).unwrap_or(received_ms);
    let stale = entry_ms < oldest_ms;
    for list in ["messaging", "standby"] {
        match entry.get(list) {
            None => {}
            Some(Value::Array(items)) if stale => {
                events.extend(items.iter().map(|_| Event::Ignored(Ignored::Stale)));
            }
            Some(Value::Array(items)) => {
                for item in items {
                    events.push(read_item(page.as_deref(), item, entry_ms));
                }
            }
            Some(_) => events.push(Event::Ignored(Ignored::Malformed)),
        }
    }
    // Page feed and other field changes: not Herald's, but counted.
    if let Some(Value::Array(changes)) = entry.get("changes") {
        events.extend(changes.iter().map(|_| Event::Ignored(Ignored::Unknown)));
    }
}

/// One messaging (or standby) item.
fn read_item(entry_page: Option<&str>, item: &Value, entry_ms: i64) -> Event {
    let Value::Object(item) = item else {
        return Event::Ignored(Ignored::Malformed);
    };
    let at_ms = item.get("timestamp").and_then(millis).unwrap_or(entry_ms);
    let sender = item.get("sender").and_then(|s| s.get("id")).and_then(id);
    let recipient = item.get("recipient").and_then(|r| r.get("id")).and_then(id);
    let user = Party {
        page: entry_page.map(str::to_owned).or_else(|| recipient.clone()),
        psid: sender.clone(),
        at_ms,
    };
    if let Some(message) = item.get("message") {
        if message.get("is_echo").and_then(Value::as_bool) == Some(true) {
            // An echo goes from the page (sender) to the person (recipient).
            let Some(page) = entry_page.map(str::to_owned).or(sender) else {
                return Event::Ignored(Ignored::Malformed);
            };
            let job = message
                .get("metadata")
                .and_then(Value::as_str)
                .filter(|metadata| is_job_id(metadata))
                .map(str::to_owned);
            return Event::Echo {
                page,
                mid: text(message, "mid"),
                job,
                at_ms,
            };
        }
        let reference = message.get("referral").and_then(|r| text(r, "ref"));
        let cue = Cue {
            quick_reply: message.get("quick_reply").and_then(|q| text(q, "payload")),
            ..Cue::default()
        }
        .with_text(text(message, "text"));
        return user.inbound_with(Action::Message, reference, text(message, "mid"), cue);
    }
    if let Some(postback) = item.get("postback") {
        let reference = postback.get("referral").and_then(|r| text(r, "ref"));
        let cue = Cue {
            postback: text(postback, "payload"),
            ..Cue::default()
        };
        return user.inbound_with(Action::Postback, reference, text(postback, "mid"), cue);
    }
    if let Some(referral) = item.get("referral") {
        return user.inbound(Action::Referral, text(referral, "ref"), None);
    }
    if let Some(reaction) = item.get("reaction") {
        return user.inbound(Action::Reaction, None, text(reaction, "mid"));
    }
    if let Some(optin) = item.get("optin") {
        return user.optin(optin);
    }
    if let Some(delivery) = item.get("delivery") {
        let Some(watermark_ms) = delivery.get("watermark").and_then(millis) else {
            return Event::Ignored(Ignored::Malformed);
        };
        let mids = match delivery.get("mids") {
            Some(Value::Array(mids)) => mids.iter().filter_map(id).collect(),
            _ => Vec::new(),
        };
        return user.with(|page, psid| Event::Delivered {
            page,
            psid,
            watermark_ms,
            mids,
        });
    }
    if let Some(read) = item.get("read") {
        let Some(watermark_ms) = read.get("watermark").and_then(millis) else {
            return Event::Ignored(Ignored::Malformed);
        };
        return user.with(|page, psid| Event::Read {
            page,
            psid,
            watermark_ms,
        });
    }
    if let Some(policy) = item
        .get("policy_enforcement")
        .or_else(|| item.get("policy-enforcement"))
    {
        let Some(page) = user.page else {
            return Event::Ignored(Ignored::Malformed);
        };
        let action = match policy.get("action").and_then(Value::as_str) {
            Some("warning") => PolicyAction::Warning,
            Some("block") => PolicyAction::Block,
            Some("unblock") => PolicyAction::Unblock,
            _ => PolicyAction::Other,
        };
        return Event::Policy {
            page,
            action,
            reason: text(policy, "reason"),
            at_ms,
        };
    }
    Event::Ignored(Ignored::Unknown)
}

/// The page and person a user event is about.
struct Party {
    page: Option<String>,
    psid: Option<String>,
    at_ms: i64,
}

impl Party {
    /// `build(page, psid)`, or why the event cannot be about a PSID.
    fn with(self, build: impl FnOnce(String, String) -> Event) -> Event {
        match (self.page, self.psid) {
            (Some(page), Some(psid)) => build(page, psid),
            (None, _) => Event::Ignored(Ignored::Malformed),
            (Some(_), None) => Event::Ignored(Ignored::NoSender),
        }
    }

    fn inbound(self, action: Action, reference: Option<String>, mid: Option<String>) -> Event {
        self.inbound_with(action, reference, mid, Cue::default())
    }

    /// An inbound action with what it offers triggered campaigns.
    fn inbound_with(
        self,
        action: Action,
        reference: Option<String>,
        mid: Option<String>,
        cue: Cue,
    ) -> Event {
        let at_ms = self.at_ms;
        self.with(|page, psid| Event::Inbound {
            action,
            page,
            psid,
            at_ms,
            reference,
            mid,
            cue,
        })
    }

    /// Marketing messages (`type: notification_messages`) set the opt-out state; the Send to
    /// Messenger plugin is an inbound action (with its `ref`); the Checkbox plugin has a
    /// `user_ref` and no PSID.
    fn optin(self, optin: &Value) -> Event {
        let at_ms = self.at_ms;
        match optin.get("type").and_then(Value::as_str) {
            Some("notification_messages") => {
                let status = optin
                    .get("notification_messages_status")
                    .and_then(Value::as_str);
                let Some(opted_out) = marketing_opt_out(status) else {
                    return Event::Ignored(Ignored::Unknown);
                };
                self.with(|page, psid| Event::OptChange {
                    page,
                    psid,
                    opted_out,
                    at_ms,
                })
            }
            Some("one_time_notif_req") => Event::Ignored(Ignored::Unknown),
            _ if self.psid.is_none() && optin.get("user_ref").is_some() => match self.page {
                Some(page) => Event::CheckboxOptIn { page },
                None => Event::Ignored(Ignored::Malformed),
            },
            _ => {
                let reference = text(optin, "ref");
                self.inbound(Action::OptIn, reference, None)
            }
        }
    }
}

/// `notification_messages_status`, case- and separator-insensitively: stop → opted out;
/// resume, or no status (a first opt-in) → not opted out; anything else → `None`.
fn marketing_opt_out(status: Option<&str>) -> Option<bool> {
    let Some(status) = status else {
        return Some(false);
    };
    let folded: String = status
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect();
    match folded.as_str() {
        "STOPNOTIFICATIONS" | "STOP" => Some(true),
        "RESUMENOTIFICATIONS" | "RESUME" => Some(false),
        _ => None,
    }
}

/// Whether an echo's `metadata` is a Herald job id (`<run_id>:<external_id>`, as the producer
/// sets it on every message).
fn is_job_id(metadata: &str) -> bool {
    metadata
        .split_once(':')
        .is_some_and(|(run, user)| !run.trim().is_empty() && !user.trim().is_empty())
}

/// A non-empty string field.
fn text(object: &Value, key: &str) -> Option<String> {
    object
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .map(str::to_owned)
}

/// An ID: a non-empty string, or a non-negative integer written as a number.
fn id(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) if n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

/// The latest time accepted: 9999-12-31T23:59:59.999Z.
const MAX_MS: i64 = 253_402_300_799_999;

/// Epoch milliseconds: an integer, or a string of digits, between 1970 and 9999.
fn millis(value: &Value) -> Option<i64> {
    let ms = match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }?;
    (0..=MAX_MS).contains(&ms).then_some(ms)
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
