//! Recording the fires an action causes. An inbound action offers its postback payload, quick
//! reply payload, `ref` and text (`Cue`); the campaigns of its page waiting for one of them
//! (a keyword: found in the text as a whole word) get a fire each, keyed by the event's dedupe
//! key, inside the ingest's transaction; the ingest reads the campaigns waiting on the pages of
//! a whole batch of events at once, and each event is matched in memory. A `/users/track` event fires the campaigns waiting for
//! its name, keyed by a digest of who, what, when and its properties, so a repeated call fires
//! nothing new.

use herald_core::campaign::{TriggerKind, has_keyword};
use herald_store::{Batch, NewFire, Store, StoreError, TriggerEntry};
use herald_telemetry::Metrics;
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

    /// Whether it offers nothing (a `ref` aside).
    pub(crate) fn is_empty(&self) -> bool {
        self.postback.is_none() && self.quick_reply.is_none() && self.text.is_none()
    }
}

/// A tracked event whose `time` is further than this from when Herald received it (either
/// way) fires no campaign; its profile counters still count. A backfill of old history must
/// not send a campaign for each past event, and a fire's dedupe key lives 35 days, so an old
/// call made again after that would fire again.
pub const MAX_EVENT_SKEW_MS: i64 = 24 * 3600 * 1000;

/// The fires an action recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fired {
    /// The kind of each new fire.
    pub new: Vec<&'static str>,
    /// Fires the store had already (the event was delivered before).
    pub repeated: u64,
    /// Fires not recorded because the event's `time` is more than `MAX_EVENT_SKEW_MS` from
    /// its receipt.
    pub stale: u64,
}

impl Fired {
    /// Counts these fires in `metrics` (fired by kind, skipped as `duplicate` or
    /// `stale_event`); whether any is new, i.e. the dispatcher has work.
    pub(crate) fn observe(&self, metrics: &Metrics) -> bool {
        for kind in &self.new {
            metrics.trigger_fired.with_label_values(&[kind]).inc();
        }
        for (reason, count) in [("duplicate", self.repeated), ("stale_event", self.stale)] {
            if count > 0 {
                metrics
                    .trigger_skipped
                    .with_label_values(&[reason])
                    .inc_by(count);
            }
        }
        !self.new.is_empty()
    }

    fn add(&mut self, kinds: Vec<&'static str>, new: u64) {
        let matched = u64::try_from(kinds.len()).unwrap_or(u64::MAX);
        self.repeated += matched.saturating_sub(new);
        let new = usize::try_from(new).unwrap_or(usize::MAX);
        self.new.extend(kinds.into_iter().take(new));
    }
}

/// An inbound action of `psid` on `page`: its dedupe key, its `ref` and what it offers.
pub(crate) struct InboundAction<'a> {
    pub(crate) page: &'a str,
    pub(crate) psid: &'a str,
    pub(crate) event_key: &'a str,
    pub(crate) reference: Option<&'a str>,
    pub(crate) cue: &'a Cue,
}

impl InboundAction<'_> {
    /// What Liquid sees as `trigger`: `payload` (a postback's or quick reply's) and `ref`, as
    /// a JSON object; the person's text is not kept.
    fn properties(&self) -> Option<String> {
        let mut properties = serde_json::Map::new();
        let payload = self.cue.postback.as_ref().or(self.cue.quick_reply.as_ref());
        if let Some(payload) = payload {
            properties.insert("payload".to_owned(), payload.clone().into());
        }
        if let Some(reference) = self.reference {
            properties.insert("ref".to_owned(), reference.into());
        }
        (!properties.is_empty()).then(|| serde_json::Value::Object(properties).to_string())
    }

    /// Whether `entry` waits for this action.
    fn fires(&self, entry: &TriggerEntry) -> bool {
        if entry.page_id != self.page {
            return false;
        }
        let key = Some(entry.key.as_str());
        match TriggerKind::parse(&entry.kind) {
            Some(TriggerKind::Postback) => self.cue.postback.as_deref() == key,
            Some(TriggerKind::QuickReply) => self.cue.quick_reply.as_deref() == key,
            Some(TriggerKind::Ref) => self.reference == key,
            Some(TriggerKind::Keyword) => self
                .cue
                .text
                .as_deref()
                .is_some_and(|text| has_keyword(text, &entry.key)),
            Some(TriggerKind::Event) | None => false,
        }
    }
}

/// Records in `batch` a fire for each campaign of `triggers` (the campaigns waiting on the
/// batch's pages) that `action` matches.
pub(crate) async fn record_inbound(
    batch: &mut Batch,
    triggers: &[TriggerEntry],
    action: &InboundAction<'_>,
    received_at_ms: i64,
) -> Result<Fired, StoreError> {
    let matched: Vec<&TriggerEntry> = triggers.iter().filter(|e| action.fires(e)).collect();
    if matched.is_empty() {
        return Ok(Fired::default());
    }
    let kinds = matched
        .iter()
        .map(|entry| kind_label(&entry.kind))
        .collect();
    let properties = action.properties();
    let fires: Vec<NewFire> = matched
        .into_iter()
        .map(|entry| NewFire {
            campaign_id: entry.campaign_id.clone(),
            event_key: action.event_key.to_owned(),
            version: entry.version,
            page_id: action.page.to_owned(),
            external_id: None,
            psid: Some(action.psid.to_owned()),
            properties: properties.clone(),
            received_at_ms,
            due_at_ms: received_at_ms.saturating_add(entry.delay_ms),
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
    /// Whether its `time` is more than `MAX_EVENT_SKEW_MS` from `received_at_ms`.
    fn is_stale(&self, received_at_ms: i64) -> bool {
        self.at_ms.abs_diff(received_at_ms) > MAX_EVENT_SKEW_MS.unsigned_abs()
    }

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
    let mut fired = Fired::default();
    for event in events {
        let matching = entries.iter().filter(|entry| entry.key == event.name);
        if event.is_stale(received_at_ms) {
            fired.stale += u64::try_from(matching.count()).unwrap_or(u64::MAX);
            continue;
        }
        for entry in matching {
            fires.push(NewFire {
                campaign_id: entry.campaign_id.clone(),
                event_key: event.key(),
                version: entry.version,
                page_id: entry.page_id.clone(),
                external_id: Some(event.external_id.clone()),
                psid: None,
                properties: event.properties.clone(),
                received_at_ms,
                due_at_ms: received_at_ms.saturating_add(entry.delay_ms),
            });
        }
    }
    let kinds = vec![TriggerKind::Event.as_str(); fires.len()];
    let new = store.record_fires(&fires).await?;
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
    fn an_event_a_day_from_its_receipt_either_way_is_stale() {
        let received = 10 * MAX_EVENT_SKEW_MS;
        let at = |at_ms| TrackedEvent {
            external_id: "u1".into(),
            name: "order_shipped".into(),
            at_ms,
            properties: None,
        };
        for fresh in [
            received,
            received - MAX_EVENT_SKEW_MS,
            received + MAX_EVENT_SKEW_MS,
        ] {
            assert!(!at(fresh).is_stale(received), "{fresh}");
        }
        for stale in [
            received - MAX_EVENT_SKEW_MS - 1,
            received + MAX_EVENT_SKEW_MS + 1,
            i64::MIN,
            i64::MAX,
        ] {
            assert!(at(stale).is_stale(received), "{stale}");
        }
    }

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

    /// Each kind matches its own part of the action, exactly (a keyword as a whole word), and
    /// only on the campaign's page; an event is never a webhook action.
    #[test]
    fn an_action_fires_the_campaigns_waiting_for_it() {
        let cue = Cue {
            postback: None,
            quick_reply: Some("YES".into()),
            text: Some("Yes, show me the Menu".into()),
        };
        let action = InboundAction {
            page: "1",
            psid: "601",
            event_key: "message:m1",
            reference: Some("summer"),
            cue: &cue,
        };
        let entry = |page: &str, kind: &str, key: &str| TriggerEntry {
            campaign_id: "c".into(),
            version: 1,
            page_id: page.into(),
            kind: kind.into(),
            key: key.into(),
            delay_ms: 0,
        };
        for (kind, key, fires) in [
            ("quick_reply", "YES", true),
            ("quick_reply", "yes", false),
            ("postback", "YES", false),
            ("ref", "summer", true),
            ("ref", "summer-26", false),
            ("keyword", "menu", true),
            ("keyword", "me the", true),
            ("keyword", "men", false),
            ("event", "YES", false),
        ] {
            assert_eq!(action.fires(&entry("1", kind, key)), fires, "{kind} {key}");
        }
        assert!(
            !action.fires(&entry("2", "quick_reply", "YES")),
            "another page"
        );
        assert_eq!(
            action.properties().as_deref(),
            Some(r#"{"payload":"YES","ref":"summer"}"#)
        );
    }

    #[test]
    fn long_texts_are_cut_on_a_character_boundary() {
        let cue = Cue::default().with_text(Some("é".repeat(MAX_TEXT_BYTES)));
        let text = cue.text.unwrap();
        assert!(text.len() <= MAX_TEXT_BYTES && text.chars().all(|c| c == 'é'));
    }
}
