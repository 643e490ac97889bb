//! Meta's content limits on a Send API `message` object (docs/messenger-platform.md §1.5): text
//! length, metadata, quick replies, generic and button templates, buttons. One walk (`visit`) knows
//! the rules; `check_message_limits` applies them to a whole rendered message, and `text_limits`
//! hands the per-string rules to the renderer so a per-user render only measures the strings Liquid
//! changed. Lengths are counted in Unicode scalar values (`char`s); Meta does not say which unit it
//! counts, so a string near a limit may still be refused by Graph.

use serde_json::Value;

use crate::path::FieldPath;

/// One broken limit, with the path of the offending field (`message.quick_replies[3].title`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitViolation {
    /// Where, e.g. `message.attachment.payload.elements[10]`.
    pub path: String,
    /// What is wrong, in words (never the field's content).
    pub message: String,
}

/// The message of a violation for a required string that rendered empty.
pub(crate) const EMPTY: &str = "must not be empty";

/// A length rule for one string field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TextLimit {
    /// Fewest characters allowed (1 for fields Graph refuses when empty).
    pub(crate) min: usize,
    /// Most characters allowed.
    pub(crate) max: usize,
    /// Meta's rule in words, for the message.
    pub(crate) rule: &'static str,
}

const TEXT: TextLimit = TextLimit {
    min: 1,
    max: 1999,
    rule: "fewer than 2000",
};
const METADATA: TextLimit = TextLimit {
    min: 0,
    max: 999,
    rule: "fewer than 1000",
};
const QUICK_REPLY_TITLE: TextLimit = TextLimit {
    min: 1,
    max: 20,
    rule: "at most 20",
};
const PAYLOAD: TextLimit = TextLimit {
    min: 0,
    max: 1000,
    rule: "at most 1000",
};
const ELEMENT_TEXT: TextLimit = TextLimit {
    min: 0,
    max: 80,
    rule: "at most 80",
};
const ELEMENT_TITLE: TextLimit = TextLimit {
    min: 1,
    max: 80,
    rule: "at most 80",
};
const BUTTON_TEMPLATE_TEXT: TextLimit = TextLimit {
    min: 1,
    max: 640,
    rule: "at most 640",
};
const BUTTON_TITLE: TextLimit = TextLimit {
    min: 0,
    max: 20,
    rule: "at most 20",
};

impl TextLimit {
    /// Checks a measured length; `None` when it fits.
    pub(crate) fn check(&self, path: &str, chars: usize) -> Option<LimitViolation> {
        let message = if chars < self.min {
            EMPTY.to_owned()
        } else if chars > self.max {
            format!(
                "is {chars} characters; Meta allows {} characters",
                self.rule
            )
        } else {
            return None;
        };
        Some(LimitViolation {
            path: path.to_owned(),
            message,
        })
    }
}

/// What the walk asks the caller to verify.
enum Check<'a> {
    /// A string (or number) field with a length rule.
    Text(FieldPath, &'a Value, TextLimit),
    /// A list that must exist with a length in `min..=max`.
    List(FieldPath, &'a Value, usize, usize),
    /// A field Graph requires that is absent.
    Missing(FieldPath),
}

/// Every limit the message breaks, in document order; empty when it is fine.
pub fn check_message_limits(message: &Value) -> Vec<LimitViolation> {
    let mut out = Vec::new();
    visit(message, &mut |check| {
        let violation = match check {
            Check::Text(path, value, limit) => match text_len(value) {
                Some(chars) => limit.check(path.as_str(), chars),
                None => Some(LimitViolation {
                    path: path.into_string(),
                    message: "must be a string".to_owned(),
                }),
            },
            Check::List(path, value, min, max) => match value.as_array().map(Vec::len) {
                Some(len) if (min..=max).contains(&len) => None,
                Some(len) => Some(LimitViolation {
                    path: path.into_string(),
                    message: format!("has {len} entries; Meta allows {min} to {max}"),
                }),
                None => Some(LimitViolation {
                    path: path.into_string(),
                    message: "must be a list".to_owned(),
                }),
            },
            Check::Missing(path) => Some(LimitViolation {
                path: path.into_string(),
                message: "is required".to_owned(),
            }),
        };
        out.extend(violation);
    });
    out
}

/// The length rule of every string field the walk checks, keyed by path.
pub(crate) fn text_limits(message: &Value) -> Vec<(String, TextLimit)> {
    let mut out = Vec::new();
    visit(message, &mut |check| {
        if let Check::Text(path, _, limit) = check {
            out.push((path.into_string(), limit));
        }
    });
    out
}

fn text_len(value: &Value) -> Option<usize> {
    match value {
        Value::String(text) => Some(text.chars().count()),
        Value::Number(number) => Some(number.to_string().len()),
        _ => None,
    }
}

fn visit<'a>(message: &'a Value, check: &mut dyn FnMut(Check<'a>)) {
    let root = FieldPath::root().key("message");
    if let Some(text) = message.get("text") {
        check(Check::Text(root.key("text"), text, TEXT));
    }
    if let Some(metadata) = message.get("metadata") {
        check(Check::Text(root.key("metadata"), metadata, METADATA));
    }
    if let Some(replies) = message.get("quick_replies") {
        let path = root.key("quick_replies");
        check(Check::List(path.clone(), replies, 0, 13));
        for (i, reply) in replies.as_array().into_iter().flatten().enumerate() {
            let path = path.index(i);
            let content_type = reply.get("content_type").and_then(Value::as_str);
            if content_type.is_none_or(|t| t == "text") {
                text_field(reply, &path, "title", QUICK_REPLY_TITLE, true, check);
            }
            text_field(reply, &path, "payload", PAYLOAD, false, check);
        }
    }
    let Some(attachment) = message.get("attachment") else {
        return;
    };
    if attachment.get("type").and_then(Value::as_str) != Some("template") {
        return;
    }
    let Some(payload) = attachment.get("payload") else {
        return;
    };
    let path = root.key("attachment").key("payload");
    match payload.get("template_type").and_then(Value::as_str) {
        Some("generic") => {
            let Some(elements) = payload.get("elements") else {
                return check(Check::Missing(path.key("elements")));
            };
            check(Check::List(path.key("elements"), elements, 1, 10));
            for (i, element) in elements.as_array().into_iter().flatten().enumerate() {
                let path = path.key("elements").index(i);
                text_field(element, &path, "title", ELEMENT_TITLE, true, check);
                text_field(element, &path, "subtitle", ELEMENT_TEXT, false, check);
                buttons(element, &path, 0, check);
            }
        }
        Some("button") => {
            text_field(payload, &path, "text", BUTTON_TEMPLATE_TEXT, true, check);
            if payload.get("buttons").is_none() {
                check(Check::Missing(path.key("buttons")));
            }
            buttons(payload, &path, 1, check);
        }
        _ => buttons(payload, &path, 0, check),
    }
}

fn text_field<'a>(
    parent: &'a Value,
    path: &FieldPath,
    key: &str,
    limit: TextLimit,
    required: bool,
    check: &mut dyn FnMut(Check<'a>),
) {
    match parent.get(key) {
        Some(value) => check(Check::Text(path.key(key), value, limit)),
        None if required => check(Check::Missing(path.key(key))),
        None => {}
    }
}

/// `buttons` of an element or a template: at most 3, titles of 20, postback payloads of 1000.
fn buttons<'a>(parent: &'a Value, path: &FieldPath, min: usize, check: &mut dyn FnMut(Check<'a>)) {
    let Some(buttons) = parent.get("buttons") else {
        return;
    };
    let path = path.key("buttons");
    check(Check::List(path.clone(), buttons, min, 3));
    for (i, button) in buttons.as_array().into_iter().flatten().enumerate() {
        let path = path.index(i);
        text_field(button, &path, "title", BUTTON_TITLE, false, check);
        if button.get("type").and_then(Value::as_str) == Some("postback") {
            text_field(button, &path, "payload", PAYLOAD, false, check);
        }
    }
}

#[cfg(test)]
mod tests;
