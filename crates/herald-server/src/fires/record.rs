//! Recording the fires an action causes. An inbound action offers its postback payload, quick
//! reply payload, `ref` and text (`Cue`); the campaigns of its page waiting for one of them
//! (a keyword: found in the text as a whole word) get a fire each, keyed by the event's dedupe
//! key, inside the ingest's transaction. A `/users/track` event fires the campaigns waiting for
//! its name, keyed by a digest of who, what, when and its properties, so a repeated call fires
//! nothing new.

use herald_core::campaign::{TriggerKind, has_keyword};
use herald_store::{Batch, NewFire, Store, StoreError, TriggerEntry};
use sha2::{Digest, Sha256};

/// The longest message text kept for keyword matching (Meta allows 2,000 characters).
const MAX_TEXT_BYTES: usize = 8_192;

/// What an inbound action offers triggered campaigns, besides its `ref`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cue {
    /// A postback's `payload`.
    pub postback: Option<String>,
    /// A quick reply's `payload`.
    pub quick_reply: Option<String>,
    /// A message's text, for keywords.
    pub text: Option<String>,
}

impl Cue {
    /// A message's text, cut to `MAX_TEXT_BYTES` on a character boundary.
    pub fn with_text(mut self, text: Option<String>) -> Self {
        self.text = text.map(|mut text| {
            if text.len() > MAX_TEXT_BYTES {
                let mut end = MAX_TEXT_BYTES;
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text.truncate(end);
            }
            text
        });
        self
    }

    fn is_empty(&self) -> bool {
        self.postback.is_none() && self.quick_reply.is_none() && self.text.is_none()
    }
}

/// The fires an action recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fired {
    /// The kind of each new fire.
    pub new: Vec<&'static str>,
    /// Fires the store had already (the event was delivered before).
    pub repeated: u64,
}

impl Fired {
    fn add(&mut self, kinds: Vec<&'static str>, new: u64) {
        let matched = u64::try_from(kinds.len()).unwrap_or(u64::MAX);
        self.repeated += matched.saturating_sub(new);
        let new = usize::try_from(new).unwrap_or(usize::MAX);
        self.new.extend(kinds.into_iter().take(new));
    }
}

/// Records in `batch` a fire for each campaign of `page` that the action of `psid` (its
/// dedupe key `event_key`, its `ref`, its `cue`) matches.
pub(crate) async fn record_inbound(
    batch: &mut Batch,
    page: &str,
    psid: &str,
    event_key: &str,
    reference: Option<&str>,
    cue: &Cue,
    received_at_ms: i64,
) -> Result<Fired, StoreError> {
    if cue.is_empty() && reference.is_none() {
        return Ok(Fired::default());
    }
    let mut offered: Vec<(&str, &str)> = Vec::new();
    if let Some(payload) = &cue.postback {
        offered.push((TriggerKind::Postback.as_str(), payload));
    }
    if let Some(payload) = &cue.quick_reply {
        offered.push((TriggerKind::QuickReply.as_str(), payload));
    }
    if let Some(reference) = reference {
        offered.push((TriggerKind::Ref.as_str(), reference));
    }
    let entries = batch
        .page_triggers(page, &offered, cue.text.is_some())
        .await?;
    let matched: Vec<TriggerEntry> = entries
        .into_iter()
        .filter(|entry| match TriggerKind::parse(&entry.kind) {
            Some(TriggerKind::Keyword) => cue
                .text
                .as_deref()
                .is_some_and(|text| has_keyword(text, &entry.key)),
            Some(_) => true,
            None => false,
        })
        .collect();
    if matched.is_empty() {
        return Ok(Fired::default());
    }
    let kinds = matched
        .iter()
        .map(|entry| kind_label(&entry.kind))
        .collect();
    let fires: Vec<NewFire> = matched
        .into_iter()
        .map(|entry| NewFire {
            campaign_id: entry.campaign_id,
            event_key: event_key.to_owned(),
            version: entry.version,
            page_id: page.to_owned(),
            external_id: None,
            psid: Some(psid.to_owned()),
            properties: None,
            received_at_ms,
        })
        .collect();
    let new = batch.record_fires(&fires).await?;
    let mut fired = Fired::default();
    fired.add(kinds, new);
    Ok(fired)
}

/// One event of a `/users/track` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TrackedEvent {
    pub(crate) external_id: String,
    pub(crate) name: String,
    /// The event's `time`, epoch milliseconds.
    pub(crate) at_ms: i64,
    /// Its `properties` as compact JSON.
    pub(crate) properties: Option<String>,
}

impl TrackedEvent {
    /// The same event sent again has the same key.
    fn key(&self) -> String {
        let mut hasher = Sha256::new();
        for part in [
            self.external_id.as_bytes(),
            self.name.as_bytes(),
            &self.at_ms.to_be_bytes(),
            self.properties.as_deref().unwrap_or("").as_bytes(),
        ] {
            hasher.update(part);
            hasher.update([0]);
        }
        format!("event:{}", hex::encode(&hasher.finalize()[..16]))
    }
}

/// Records a fire for each campaign waiting for one of `events`' names.
pub(crate) async fn record_events(
    store: &Store,
    events: &[TrackedEvent],
    received_at_ms: i64,
) -> Result<Fired, StoreError> {
    let mut names: Vec<&str> = events.iter().map(|event| event.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let entries = store
        .triggers_for(TriggerKind::Event.as_str(), &names)
        .await?;
    if entries.is_empty() {
        return Ok(Fired::default());
    }
    let mut fires = Vec::new();
    for event in events {
        for entry in entries.iter().filter(|entry| entry.key == event.name) {
            fires.push(NewFire {
                campaign_id: entry.campaign_id.clone(),
                event_key: event.key(),
                version: entry.version,
                page_id: entry.page_id.clone(),
                external_id: Some(event.external_id.clone()),
                psid: None,
                properties: event.properties.clone(),
                received_at_ms,
            });
        }
    }
    let kinds = vec![TriggerKind::Event.as_str(); fires.len()];
    let new = store.record_fires(&fires).await?;
    let mut fired = Fired::default();
    fired.add(kinds, new);
    Ok(fired)
}

fn kind_label(kind: &str) -> &'static str {
    TriggerKind::parse(kind).map_or("unknown", TriggerKind::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_sent_again_has_the_same_key_and_another_event_another() {
        let event = TrackedEvent {
            external_id: "u1".into(),
            name: "order_shipped".into(),
            at_ms: 1_000,
            properties: Some(r#"{"order":"A1"}"#.into()),
        };
        assert_eq!(event.key(), event.clone().key());
        let later = TrackedEvent {
            at_ms: 2_000,
            ..event.clone()
        };
        let other_order = TrackedEvent {
            properties: Some(r#"{"order":"A2"}"#.into()),
            ..event.clone()
        };
        assert_ne!(event.key(), later.key());
        assert_ne!(event.key(), other_order.key());
        assert!(event.key().starts_with("event:") && event.key().len() == 38);
    }

    #[test]
    fn long_texts_are_cut_on_a_character_boundary() {
        let cue = Cue::default().with_text(Some("é".repeat(MAX_TEXT_BYTES)));
        let text = cue.text.unwrap();
        assert!(text.len() <= MAX_TEXT_BYTES && text.chars().all(|c| c == 'é'));
    }
}
