//! What one messaging item of a webhook means for Herald, as `parse.rs` reads it: an inbound
//! action (the person wrote, tapped or opened the thread), a receipt, a marketing opt-out
//! change, an echo of a page's own message, a policy enforcement on the page, or something
//! counted and ignored. Each event has a metric label (`kind`) and, when it can be applied
//! twice, a dedupe key. Applying events to the store is `apply.rs`.

use sha2::{Digest, Sha256};

use crate::fires::Cue;

/// A user action that opens the 24-hour window (docs/messenger-platform.md §6) and updates the
/// identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// `message` (text, attachments, quick-reply taps).
    Message,
    /// `postback` (a button, Get Started).
    Postback,
    /// `referral` (an `m.me` link with `ref`, an ad, in an existing thread).
    Referral,
    /// `optin` from the Send to Messenger plugin (with its `data-ref`).
    OptIn,
    /// `reaction` to a message (Meta lists reacting among the window-opening actions).
    Reaction,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Self::Message => "message",
            Self::Postback => "postback",
            Self::Referral => "referral",
            Self::OptIn => "optin",
            Self::Reaction => "reaction",
        }
    }
}

/// `messaging_policy_enforcement`'s `action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PolicyAction {
    /// A warning: nothing is blocked yet.
    Warning,
    /// The page can no longer message: halt it.
    Block,
    /// The block is lifted.
    Unblock,
    /// An action this build does not know.
    Other,
}

impl PolicyAction {
    /// Bounded metric label.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Warning => "warning",
            Self::Block => "block",
            Self::Unblock => "unblock",
            Self::Other => "other",
        }
    }
}

/// Why an item is counted and otherwise ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ignored {
    /// A user event without `sender.id` (a guest or plugin user known by `user_ref` only).
    NoSender,
    /// Missing or mistyped fields that the event's kind requires.
    Malformed,
    /// A kind Herald does not use (edits, handovers, account linking, feed changes, ...).
    Unknown,
    /// In an entry older than the dedupe retention: the ingest can no longer tell a replay of
    /// it from a first delivery, so it must not re-fire a policy block or a ref link.
    Stale,
}

/// One event of a webhook body. Times are epoch milliseconds, as Meta sends them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// The person behind `psid` acted on `page`; `reference` (a `ref`) links them to an
    /// external id. `mid` identifies messages and postbacks.
    Inbound {
        action: Action,
        page: String,
        psid: String,
        at_ms: i64,
        reference: Option<String>,
        mid: Option<String>,
        /// What it offers triggered campaigns (payloads, text).
        cue: Cue,
    },
    /// Everything sent to `psid` before `watermark_ms` (and every message in `mids`) was delivered.
    Delivered {
        page: String,
        psid: String,
        watermark_ms: i64,
        mids: Vec<String>,
    },
    /// Everything sent to `psid` up to `watermark_ms` was read.
    Read {
        page: String,
        psid: String,
        watermark_ms: i64,
    },
    /// A marketing-messages stop (`opted_out`) or resume/opt-in (`!opted_out`). Does not open
    /// the window.
    OptChange {
        page: String,
        psid: String,
        opted_out: bool,
        at_ms: i64,
    },
    /// A message the page sent, echoed; `job` when its `metadata` is a Herald job id: proof
    /// that Meta took that job's message, whatever answer the worker got.
    Echo {
        page: String,
        mid: Option<String>,
        job: Option<String>,
        at_ms: i64,
    },
    /// A Checkbox plugin opt-in: a `user_ref` and no PSID, so nothing can be stored by PSID.
    CheckboxOptIn { page: String },
    /// Meta acted on the page under its policies.
    Policy {
        page: String,
        action: PolicyAction,
        reason: Option<String>,
        at_ms: i64,
    },
    /// Counted, never applied.
    Ignored(Ignored),
}

impl Event {
    /// Bounded metric label.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Inbound { action, .. } => action.as_str(),
            Self::Delivered { .. } => "delivery",
            Self::Read { .. } => "read",
            Self::OptChange {
                opted_out: true, ..
            } => "opt_out",
            Self::OptChange {
                opted_out: false, ..
            } => "opt_in",
            Self::Echo { job: Some(_), .. } => "echo",
            Self::Echo { job: None, .. } => "echo_other",
            Self::CheckboxOptIn { .. } => "checkbox_optin",
            Self::Policy { .. } => "policy_enforcement",
            Self::Ignored(Ignored::NoSender) => "no_sender",
            Self::Ignored(Ignored::Malformed) => "malformed",
            Self::Ignored(Ignored::Unknown) => "unknown",
            Self::Ignored(Ignored::Stale) => "stale",
        }
    }

    /// Which order the event belongs to: events with the same key are applied in the order
    /// Meta sent them. That is the (page, PSID) the event is about (its relinks and opt changes
    /// must stay in order), or the page alone for page-wide events (a policy unblock must
    /// follow its block).
    pub(crate) fn order_key(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let (page, psid) = match self {
            Self::Inbound { page, psid, .. }
            | Self::Delivered { page, psid, .. }
            | Self::Read { page, psid, .. }
            | Self::OptChange { page, psid, .. } => (page.as_str(), Some(psid.as_str())),
            Self::Echo { page, .. } | Self::CheckboxOptIn { page } | Self::Policy { page, .. } => {
                (page.as_str(), None)
            }
            Self::Ignored(_) => ("", None),
        };
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (page, psid).hash(&mut hasher);
        hasher.finish()
    }

    /// The key `seen_event` remembers, so that a webhook delivered twice is applied once: the
    /// `mid` for messages, postbacks and echoes; (page, PSID, kind, watermark) for receipts,
    /// plus a digest of `mids` when present; (page, PSID, kind, timestamp) otherwise. `None`
    /// for events that write nothing.
    pub(crate) fn dedupe_key(&self) -> Option<String> {
        match self {
            Self::Inbound {
                action: action @ (Action::Message | Action::Postback),
                mid: Some(mid),
                ..
            } => Some(format!("{}:{mid}", action.as_str())),
            Self::Inbound {
                action,
                page,
                psid,
                at_ms,
                ..
            } => Some(format!("{}:{page}:{psid}:{at_ms}", action.as_str())),
            Self::Delivered {
                page,
                psid,
                watermark_ms,
                mids,
            } => Some(match mids_digest(mids) {
                Some(digest) => format!("delivery:{page}:{psid}:{watermark_ms}:{digest}"),
                None => format!("delivery:{page}:{psid}:{watermark_ms}"),
            }),
            Self::Read {
                page,
                psid,
                watermark_ms,
            } => Some(format!("read:{page}:{psid}:{watermark_ms}")),
            Self::OptChange {
                page, psid, at_ms, ..
            } => Some(format!("{}:{page}:{psid}:{at_ms}", self.kind())),
            Self::Echo { mid, .. } => mid.as_ref().map(|mid| format!("echo:{mid}")),
            Self::Policy {
                page,
                action,
                at_ms,
                ..
            } => Some(format!("policy:{page}:{at_ms}:{}", action.as_str())),
            Self::CheckboxOptIn { .. } | Self::Ignored(_) => None,
        }
    }
}

/// A short digest of a receipt's `mids`, in order: two receipts with the same watermark but
/// other messages are different receipts.
fn mids_digest(mids: &[String]) -> Option<String> {
    if mids.is_empty() {
        return None;
    }
    let mut hasher = Sha256::new();
    for mid in mids {
        hasher.update(mid.as_bytes());
        hasher.update([0]);
    }
    Some(hex::encode(&hasher.finalize()[..8]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inbound(action: Action, mid: Option<&str>) -> Event {
        Event::Inbound {
            action,
            page: "P".into(),
            psid: "U".into(),
            at_ms: 7,
            reference: None,
            mid: mid.map(str::to_owned),
            cue: Cue::default(),
        }
    }

    #[test]
    fn dedupe_keys() {
        let check = |event: Event, expected: Option<&str>| {
            assert_eq!(event.dedupe_key().as_deref(), expected, "{event:?}");
        };
        check(inbound(Action::Message, Some("m_1")), Some("message:m_1"));
        check(inbound(Action::Postback, Some("m_2")), Some("postback:m_2"));
        check(inbound(Action::Postback, None), Some("postback:P:U:7"));
        // A reaction's mid is the message reacted to, so it is not the key.
        check(
            inbound(Action::Reaction, Some("m_3")),
            Some("reaction:P:U:7"),
        );
        check(inbound(Action::Referral, None), Some("referral:P:U:7"));
        let delivered = |mids: &[&str]| Event::Delivered {
            page: "P".into(),
            psid: "U".into(),
            watermark_ms: 9,
            mids: mids.iter().map(|m| (*m).to_owned()).collect(),
        };
        check(delivered(&[]), Some("delivery:P:U:9"));
        let one = delivered(&["m_a"]).dedupe_key().unwrap();
        let two = delivered(&["m_a", "m_b"]).dedupe_key().unwrap();
        assert!(one.starts_with("delivery:P:U:9:") && one != two);
        assert_eq!(delivered(&["m_a"]).dedupe_key().unwrap(), one);
        let read = Event::Read {
            page: "P".into(),
            psid: "U".into(),
            watermark_ms: 9,
        };
        check(read, Some("read:P:U:9"));
        let opt = |opted_out| Event::OptChange {
            page: "P".into(),
            psid: "U".into(),
            opted_out,
            at_ms: 5,
        };
        check(opt(true), Some("opt_out:P:U:5"));
        check(opt(false), Some("opt_in:P:U:5"));
        let echo = |mid: Option<&str>| Event::Echo {
            page: "P".into(),
            mid: mid.map(str::to_owned),
            job: Some("r:u".into()),
            at_ms: 5,
        };
        check(echo(Some("m_e")), Some("echo:m_e"));
        check(echo(None), None);
        check(Event::CheckboxOptIn { page: "P".into() }, None);
        check(Event::Ignored(Ignored::Unknown), None);
    }
}
