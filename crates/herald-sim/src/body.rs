//! The Send API request body as the simulator reads it: borrowed serde structs for just the fields
//! the rules in `validate.rs` look at (unknown fields are ignored, as Graph does). Deliberately not
//! shared with herald-graph, so a client serde bug cannot be mirrored here.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, Visitor};

/// The top-level fields of a Send API call (docs/messenger-platform.md §1.2).
#[derive(Deserialize)]
pub(crate) struct SendRequest<'a> {
    #[serde(borrow, default)]
    pub(crate) recipient: Option<Recipient<'a>>,
    #[serde(borrow, default)]
    pub(crate) messaging_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) tag: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) message: Option<Message<'a>>,
    #[serde(borrow, default)]
    pub(crate) sender_action: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) notification_type: Option<Cow<'a, str>>,
}

/// `recipient`: exactly one of these must be set (docs/messenger-platform.md §1.3).
#[derive(Deserialize)]
pub(crate) struct Recipient<'a> {
    #[serde(borrow, default)]
    pub(crate) id: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    pub(crate) user_ref: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    pub(crate) comment_id: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    pub(crate) post_id: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    pub(crate) notification_messages_token: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    pub(crate) one_time_notif_token: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    pub(crate) phone_number: Option<Scalar<'a>>,
}

/// `message` (docs/messenger-platform.md §1.5); `template` is the utility-template lane (§1.6).
#[derive(Deserialize)]
pub(crate) struct Message<'a> {
    #[serde(borrow, default)]
    pub(crate) text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) attachment: Option<Attachment<'a>>,
    #[serde(borrow, default)]
    pub(crate) quick_replies: Option<Vec<QuickReply<'a>>>,
    #[serde(borrow, default)]
    pub(crate) metadata: Option<Cow<'a, str>>,
    #[serde(default)]
    pub(crate) template: Option<IgnoredAny>,
}

#[derive(Deserialize)]
pub(crate) struct Attachment<'a> {
    #[serde(borrow, default, rename = "type")]
    pub(crate) kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) payload: Option<Payload<'a>>,
}

#[derive(Deserialize)]
pub(crate) struct Payload<'a> {
    #[serde(borrow, default)]
    pub(crate) template_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) elements: Option<Vec<Element<'a>>>,
    #[serde(borrow, default)]
    pub(crate) text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) buttons: Option<Vec<Button<'a>>>,
}

#[derive(Deserialize)]
pub(crate) struct Element<'a> {
    #[serde(borrow, default)]
    pub(crate) title: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) subtitle: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) buttons: Option<Vec<Button<'a>>>,
}

#[derive(Deserialize)]
pub(crate) struct Button<'a> {
    #[serde(borrow, default)]
    pub(crate) payload: Option<Scalar<'a>>,
}

#[derive(Deserialize)]
pub(crate) struct QuickReply<'a> {
    #[serde(borrow, default)]
    pub(crate) content_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) title: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) payload: Option<Scalar<'a>>,
}

/// A string that Graph also accepts as a JSON number (ids, payloads).
pub(crate) struct Scalar<'a>(pub(crate) Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl<'de> Visitor<'de> for ScalarVisitor {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Scalar(Cow::Owned(v.to_owned())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Scalar(Cow::Owned(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Scalar(Cow::Owned(v.to_string())))
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}
