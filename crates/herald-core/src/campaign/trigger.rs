//! Reading `[trigger]`: what makes `herald serve` send a stored campaign to one person, on its
//! own, when that person does something.
//!
//! ```toml
//! [trigger]
//! postback = "GET_STARTED"   # or: event = "order_shipped" | quick_reply = "YES" | ref = "summer"
//!                            #     | keyword = "menu"
//! delay = "1h"               # send this long after the event (default at once)
//! once_per = "7d"            # a person gets it at most once in 7 days (default: once ever;
//!                            # "0s": every time)
//! ```
//!
//! - `event`: the name of an event given to `POST /users/track` (Braze's `events[].name`).
//! - `postback`: a button's or Get Started's `postback.payload`, exactly.
//! - `quick_reply`: a quick reply's `message.quick_reply.payload`, exactly.
//! - `ref`: the `ref` of an m.me link, ad or plugin (`referral.ref`), exactly.
//! - `keyword`: a word or phrase in a message the person wrote, as a whole word, ignoring case.
//!
//! The segment's filters are applied to the person's profile when the message is sent, after
//! the delay; the segment's source is not read. Liquid sees an event's properties as `trigger.<name>`, and a
//! webhook action's payload and ref as `trigger.payload` and `trigger.ref`.

use std::time::Duration;

use serde_json::{Value, json};

use super::check::Checker;
use super::doc::Node;
use crate::duration::{format_duration, parse_duration};
use crate::path::FieldPath;

const TRIGGER_KEYS: [&str; 7] = [
    "event",
    "postback",
    "quick_reply",
    "ref",
    "keyword",
    "delay",
    "once_per",
];
/// The longest `delay`: a fire waits it out as a row in the store, and a message a week after
/// what the person did no longer answers it.
pub const MAX_TRIGGER_DELAY: Duration = Duration::from_secs(7 * 86_400);
/// The longest `once_per`.
const MAX_ONCE_PER: Duration = Duration::from_secs(365 * 86_400);
/// The longest key (Meta's payloads and refs are at most 1,000 characters).
const MAX_KEY_BYTES: usize = 1_000;

/// Why a campaign with a `[trigger]` is not started as a run (`campaign send`, `run`, `POST
/// /campaigns/runs`).
pub const SENT_BY_TRIGGER: &str = "has a [trigger]: it is sent to each person when they act, \
    not to a segment by a run. Save it with `herald campaigns put FILE` (or PUT \
    /campaigns/{id}); `herald serve` then sends it on each matching event";

/// What a triggered campaign waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TriggerKind {
    /// An event of `POST /users/track`.
    Event,
    /// A postback payload.
    Postback,
    /// A quick reply's payload.
    QuickReply,
    /// The `ref` of a referral.
    Ref,
    /// A keyword in a message's text.
    Keyword,
}

/// Every kind, in the order of `TRIGGER_KEYS`.
pub const TRIGGER_KINDS: [TriggerKind; 5] = [
    TriggerKind::Event,
    TriggerKind::Postback,
    TriggerKind::QuickReply,
    TriggerKind::Ref,
    TriggerKind::Keyword,
];

impl TriggerKind {
    /// The key in `[trigger]`, also the kind's name in the store and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Event => "event",
            Self::Postback => "postback",
            Self::QuickReply => "quick_reply",
            Self::Ref => "ref",
            Self::Keyword => "keyword",
        }
    }

    /// The kind named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        TRIGGER_KINDS.into_iter().find(|kind| kind.as_str() == name)
    }
}

/// `[trigger]`: the campaign is sent to one person when they do `kind` with `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    /// What is waited for.
    pub kind: TriggerKind,
    /// The event name, payload or ref, exactly; a keyword in lower case.
    pub key: String,
    /// How long after the event the message is due.
    pub delay: Duration,
    /// `None`: a person gets the campaign once ever; `Some(ZERO)`: on every event; else at
    /// most once in this period.
    pub once_per: Option<Duration>,
}

impl Trigger {
    /// The table as JSON, in the campaign document's shape.
    pub(crate) fn to_json(&self) -> Value {
        let mut out = json!({ self.kind.as_str(): self.key });
        if !self.delay.is_zero() {
            out["delay"] = json!(format_duration(self.delay));
        }
        if let Some(period) = self.once_per {
            out["once_per"] = json!(format_duration(period));
        }
        out
    }
}

/// Whether `text` holds `keyword` (lower case, from `Trigger::key`) as a whole word or phrase,
/// ignoring case: bounded by the text's ends or by characters that are not letters or digits.
pub fn has_keyword(text: &str, keyword: &str) -> bool {
    if keyword.is_empty() {
        return false;
    }
    let text = text.to_lowercase();
    let mut from = 0;
    while let Some(found) = text[from..].find(keyword) {
        let start = from + found;
        let end = start + keyword.len();
        let before = text[..start].chars().next_back();
        let after = text[end..].chars().next();
        let bounded = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric());
        if bounded(before) && bounded(after) {
            return true;
        }
        from = start + text[start..].chars().next().map_or(1, char::len_utf8);
    }
    false
}

/// `[trigger]`; `Some(None)` when absent, `None` after reporting a problem.
pub(crate) fn trigger(checker: &mut Checker<'_>, node: Option<&Node>) -> Option<Option<Trigger>> {
    let Some(node) = node else {
        return Some(None);
    };
    let mut fields = checker.table(node, FieldPath::root().key("trigger"))?;
    let mut found: Vec<(TriggerKind, String)> = Vec::new();
    let mut ok = true;
    for kind in TRIGGER_KINDS {
        let Some(value) = fields.get(kind.as_str()) else {
            continue;
        };
        let path = fields.at(kind.as_str());
        match checker.string(value, &path) {
            Some(text) if text.trim().is_empty() => {
                checker.data(&path, value, "must not be blank");
                ok = false;
            }
            Some(text) if text.len() > MAX_KEY_BYTES || text.chars().any(char::is_control) => {
                let message = format!("at most {MAX_KEY_BYTES} bytes, without control characters");
                checker.data(&path, value, message);
                ok = false;
            }
            Some(text) => {
                let key = match kind {
                    TriggerKind::Keyword => text.trim().to_lowercase(),
                    TriggerKind::Event => text.trim().to_owned(),
                    _ => text.to_owned(),
                };
                found.push((kind, key));
            }
            None => ok = false,
        }
    }
    let delay = match fields.get("delay") {
        None => Some(Duration::ZERO),
        Some(value) => period(checker, value, &fields.at("delay"), MAX_TRIGGER_DELAY, "7d"),
    };
    let once_per = match fields.get("once_per") {
        None => Some(None),
        Some(value) => {
            period(checker, value, &fields.at("once_per"), MAX_ONCE_PER, "365d").map(Some)
        }
    };
    let path = fields.path.clone();
    fields.finish(checker, &TRIGGER_KEYS);
    if found.len() > 1 {
        let names: Vec<&str> = found.iter().map(|(kind, _)| kind.as_str()).collect();
        let message = format!(
            "one of event, postback, quick_reply, ref or keyword, not {}",
            names.join(" and ")
        );
        checker.data(&path, node, message);
        return None;
    }
    if found.is_empty() && ok {
        let message = "needs what to wait for: event, postback, quick_reply, ref or keyword";
        checker.usage(&path, node, message);
        return None;
    }
    let (kind, key) = found.pop()?;
    Some(Some(Trigger {
        kind,
        key,
        delay: delay?,
        once_per: once_per?,
    }))
}

fn period(
    checker: &mut Checker<'_>,
    node: &Node,
    path: &FieldPath,
    max: Duration,
    max_text: &str,
) -> Option<Duration> {
    let text = checker.string(node, path)?;
    match parse_duration(text) {
        Ok(period) if period <= max => Some(period),
        Ok(_) => {
            checker.data(path, node, format!("must be at most {max_text}"));
            None
        }
        Err(error) => {
            checker.data(path, node, error.to_string());
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::has_keyword;

    #[test]
    fn keywords_match_whole_words_ignoring_case() {
        assert!(has_keyword("Menu", "menu"));
        assert!(has_keyword("show me the MENU please", "menu"));
        assert!(has_keyword("menu!", "menu"));
        assert!(has_keyword("what's on the menu, then", "the menu"));
        assert!(has_keyword("ÉTÉ soldes", "été"));
        assert!(!has_keyword("menus", "menu"));
        assert!(!has_keyword("submenu", "menu"));
        assert!(!has_keyword("", "menu"));
        assert!(!has_keyword("menu", ""));
        assert!(has_keyword("submenu then menu", "menu"));
    }
}
