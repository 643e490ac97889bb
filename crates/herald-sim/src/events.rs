//! Webhook payloads as Meta sends them (docs/messenger-platform.md §5.2-5.4): the `object: page`
//! envelope with batched `entry`/`messaging` arrays, Meta's escaped-unicode JSON, and the
//! `X-Hub-Signature-256` value over the exact bytes, and the `Event`s the Send API and
//! `/_sim/inbound` queue for them. Scheduling and POSTing are in `webhook.rs`.

use std::fmt::Write as _;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// Queue bound; events beyond it are counted as dropped.
pub(crate) const QUEUE: usize = 65_536;

/// What the Send API and `/_sim/inbound` hand to the webhook task.
#[derive(Debug)]
pub(crate) enum Event {
    /// A message was accepted: schedule its receipts and its echo, as configured.
    Accepted {
        page: Arc<str>,
        psid: String,
        mid: String,
        metadata: Option<String>,
        at_ms: i64,
    },
    /// Post this event now.
    Now(Item),
}

/// One messaging event waiting to be posted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item {
    /// A delivery receipt for one accepted message.
    Delivery {
        page: Arc<str>,
        psid: String,
        mid: String,
        at_ms: i64,
    },
    /// A read receipt up to `at_ms`.
    Read {
        page: Arc<str>,
        psid: String,
        at_ms: i64,
    },
    /// The echo of a message the page sent (`is_echo`), with the send's `metadata`.
    Echo {
        page: Arc<str>,
        psid: String,
        mid: String,
        metadata: Option<String>,
        app_id: String,
        at_ms: i64,
    },
    /// A user's message to the page.
    Message {
        page: Arc<str>,
        psid: String,
        mid: String,
        text: String,
        reference: Option<String>,
        at_ms: i64,
    },
}

impl Item {
    fn page(&self) -> &Arc<str> {
        match self {
            Self::Delivery { page, .. }
            | Self::Read { page, .. }
            | Self::Echo { page, .. }
            | Self::Message { page, .. } => page,
        }
    }
}

/// The POST body for a batch: one entry per page, receipts for the same user merged (one
/// delivery with several mids, one read with the highest watermark), escaped like Meta's.
pub(crate) fn envelope(items: &[Item], now_ms: i64) -> Vec<u8> {
    let mut entries: Vec<(Arc<str>, Vec<Value>)> = Vec::new();
    for item in items {
        let index = match entries.iter().position(|(page, _)| page == item.page()) {
            Some(index) => index,
            None => {
                entries.push((Arc::clone(item.page()), Vec::new()));
                entries.len() - 1
            }
        };
        push_event(&mut entries[index].1, item, now_ms);
    }
    let entry: Vec<Value> = entries
        .into_iter()
        .map(|(page, messaging)| json!({"id": &*page, "time": now_ms, "messaging": messaging}))
        .collect();
    let body = json!({"object": "page", "entry": entry});
    meta_escape(&serde_json::to_string(&body).unwrap_or_default())
}

fn push_event(messaging: &mut Vec<Value>, item: &Item, now_ms: i64) {
    let same_user = |event: &Value, key: &str, psid: &str| {
        event.get(key).is_some() && event["sender"]["id"] == psid
    };
    match item {
        Item::Delivery {
            page,
            psid,
            mid,
            at_ms,
        } => {
            if let Some(event) = messaging
                .iter_mut()
                .find(|e| same_user(e, "delivery", psid))
            {
                let delivery = &mut event["delivery"];
                if let Some(mids) = delivery["mids"].as_array_mut() {
                    mids.push(json!(mid));
                }
                let watermark = delivery["watermark"].as_i64().unwrap_or(0).max(*at_ms);
                delivery["watermark"] = json!(watermark);
                return;
            }
            messaging.push(json!({"sender": {"id": psid}, "recipient": {"id": &**page},
                "timestamp": now_ms, "delivery": {"mids": [mid], "watermark": at_ms}}));
        }
        Item::Read { page, psid, at_ms } => {
            if let Some(event) = messaging.iter_mut().find(|e| same_user(e, "read", psid)) {
                let watermark = event["read"]["watermark"].as_i64().unwrap_or(0).max(*at_ms);
                event["read"]["watermark"] = json!(watermark);
                return;
            }
            messaging.push(json!({"sender": {"id": psid}, "recipient": {"id": &**page},
                "timestamp": now_ms, "read": {"watermark": at_ms}}));
        }
        Item::Echo {
            page,
            psid,
            mid,
            metadata,
            app_id,
            at_ms,
        } => {
            // From the page to the person; `app_id` is the app that sent it.
            // Meta writes the app id as a number.
            let app_id = app_id
                .parse::<u64>()
                .map_or_else(|_| json!(app_id), |id| json!(id));
            let mut message = json!({"is_echo": true, "app_id": app_id, "mid": mid});
            if let Some(metadata) = metadata {
                message["metadata"] = json!(metadata);
            }
            messaging.push(json!({"sender": {"id": &**page}, "recipient": {"id": psid},
                "timestamp": at_ms, "message": message}));
        }
        Item::Message {
            page,
            psid,
            mid,
            text,
            reference,
            at_ms,
        } => {
            let mut message = json!({"mid": mid, "text": text});
            if let Some(reference) = reference {
                message["referral"] =
                    json!({"ref": reference, "source": "SHORTLINK", "type": "OPEN_THREAD"});
            }
            messaging.push(json!({"sender": {"id": psid}, "recipient": {"id": &**page},
                "timestamp": at_ms, "message": message}));
        }
    }
}

/// `sha256=<lowercase hex HMAC-SHA256(app_secret, body)>`.
pub(crate) fn signature(app_secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(app_secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Meta escapes non-ASCII as `\uXXXX` (lowercase hex, UTF-16) and `/` as `\/`. Both only occur
/// inside JSON strings, so rewriting the serialised text keeps it valid JSON, and a receiver that
/// re-serialises instead of hashing the raw bytes gets a different signature.
fn meta_escape(json: &str) -> Vec<u8> {
    let mut out = String::with_capacity(json.len() + 16);
    for ch in json.chars() {
        match ch {
            '/' => out.push_str("\\/"),
            ch if ch.is_ascii() => out.push(ch),
            ch => {
                let mut units = [0u16; 2];
                for unit in ch.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> Arc<str> {
        Arc::from("100")
    }

    #[test]
    fn batches_merge_per_page_and_user() {
        let other: Arc<str> = Arc::from("200");
        let items = [
            Item::Delivery {
                page: page(),
                psid: "1".into(),
                mid: "m_a".into(),
                at_ms: 10,
            },
            Item::Delivery {
                page: page(),
                psid: "1".into(),
                mid: "m_b".into(),
                at_ms: 20,
            },
            Item::Read {
                page: page(),
                psid: "1".into(),
                at_ms: 20,
            },
            Item::Delivery {
                page: other,
                psid: "2".into(),
                mid: "m_c".into(),
                at_ms: 30,
            },
        ];
        let body: Value = serde_json::from_slice(&envelope(&items, 99)).unwrap();
        assert_eq!(body["object"], "page");
        let entries = body["entry"].as_array().unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0]["id"], "100");
        assert_eq!(entries[0]["time"], 99);
        let first = &entries[0]["messaging"];
        assert_eq!(
            first[0]["delivery"],
            json!({"mids": ["m_a", "m_b"], "watermark": 20})
        );
        assert_eq!(first[0]["sender"]["id"], "1");
        assert_eq!(first[0]["recipient"]["id"], "100");
        assert_eq!(first[1]["read"], json!({"watermark": 20}));
        assert_eq!(
            entries[1]["messaging"][0]["delivery"]["mids"],
            json!(["m_c"])
        );
    }

    #[test]
    fn escaping_matches_meta() {
        let item = Item::Message {
            page: page(),
            psid: "1".into(),
            mid: "m_x".into(),
            text: "äöå 😀 a/b".into(),
            reference: Some("camp".into()),
            at_ms: 5,
        };
        let raw = envelope(&[item], 6);
        let text = std::str::from_utf8(&raw).unwrap();
        assert!(text.is_ascii());
        assert!(
            text.contains(r"\u00e4\u00f6\u00e5 \ud83d\ude00 a\/b"),
            "{text}"
        );
        let body: Value = serde_json::from_slice(&raw).unwrap();
        let message = &body["entry"][0]["messaging"][0]["message"];
        assert_eq!(message["text"], "äöå 😀 a/b");
        assert_eq!(message["referral"]["ref"], "camp");
    }

    #[test]
    fn signature_is_hmac_of_the_bytes() {
        // RFC 4231 test case 2.
        let sig = signature("Jefe", b"what do ya want for nothing?");
        assert_eq!(
            sig,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
