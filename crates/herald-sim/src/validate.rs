//! Send API body validation (docs/messenger-platform.md §1.2-1.5): recipient, messaging_type, tags,
//! message content limits, over the borrowed structs of `body.rs`. It says nothing about tokens,
//! rates or faults.

use std::borrow::Cow;

use serde::Deserialize;

use crate::body::{Attachment, Button, Message, QuickReply, Recipient, Scalar, SendRequest};
use crate::graph_error::GraphError;

/// What the rest of the pipeline needs from a valid body.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Validated<'a> {
    /// The recipient key: the PSID for `recipient.id`, else `<kind>:<value>`.
    pub(crate) recipient: Cow<'a, str>,
    /// Whether the success answer carries `recipient_id` (only for `recipient.id`).
    pub(crate) echo_recipient: bool,
    /// A `sender_action` call: the answer has no `message_id`.
    pub(crate) sender_action: bool,
    /// `message.metadata`, which Meta hands back in the message's echo.
    pub(crate) metadata: Option<String>,
}

const TAGS_RETIRED_2026: [&str; 3] = [
    "CONFIRMED_EVENT_UPDATE",
    "ACCOUNT_UPDATE",
    "POST_PURCHASE_UPDATE",
];
const TAGS_LIVE: [&str; 2] = ["HUMAN_AGENT", "CUSTOMER_FEEDBACK"];
const SENDER_ACTIONS: [&str; 5] = ["typing_on", "typing_off", "mark_seen", "react", "unreact"];

/// Validates a JSON body.
pub(crate) fn validate_json(body: &[u8]) -> Result<Validated<'_>, GraphError> {
    let request: SendRequest<'_> = serde_json::from_slice(body).map_err(parse_error)?;
    check(request)
}

/// Validates a body rebuilt from form fields.
pub(crate) fn validate_value(body: &serde_json::Value) -> Result<Validated<'_>, GraphError> {
    let request = SendRequest::deserialize(body).map_err(parse_error)?;
    check(request)
}

fn parse_error(error: serde_json::Error) -> GraphError {
    GraphError::param(format!("(#100) Invalid parameter: {error}"))
}

fn check(request: SendRequest<'_>) -> Result<Validated<'_>, GraphError> {
    let (recipient, echo_recipient) = recipient_key(request.recipient)?;
    if let Some(kind) = &request.notification_type
        && !matches!(kind.as_ref(), "REGULAR" | "SILENT_PUSH" | "NO_PUSH")
    {
        return Err(GraphError::param(
            "(#100) Param notification_type must be one of {REGULAR, SILENT_PUSH, NO_PUSH}",
        ));
    }
    if let Some(action) = &request.sender_action {
        if request.message.is_some() {
            return Err(GraphError::param(
                "(#100) Must send either message or state",
            ));
        }
        if !SENDER_ACTIONS.contains(&action.as_ref()) {
            return Err(GraphError::param(
                "(#100) Param sender_action must be one of {typing_on, typing_off, mark_seen, \
                 react, unreact}",
            ));
        }
        return Ok(Validated {
            recipient,
            echo_recipient,
            sender_action: true,
            metadata: None,
        });
    }
    let Some(message) = request.message else {
        return Err(GraphError::param(
            "(#100) Must send either message or state",
        ));
    };
    let utility = check_messaging_type(request.messaging_type.as_deref(), request.tag.as_deref())?;
    check_message(&message, utility)?;
    Ok(Validated {
        recipient,
        echo_recipient,
        sender_action: false,
        metadata: message.metadata.as_deref().map(str::to_owned),
    })
}

fn recipient_key(recipient: Option<Recipient<'_>>) -> Result<(Cow<'_, str>, bool), GraphError> {
    let Some(r) = recipient else {
        return Err(GraphError::param(
            "(#100) The parameter recipient is required",
        ));
    };
    let kinds = [
        ("id", r.id),
        ("user_ref", r.user_ref),
        ("comment_id", r.comment_id),
        ("post_id", r.post_id),
        ("notification_messages_token", r.notification_messages_token),
        ("one_time_notif_token", r.one_time_notif_token),
        ("phone_number", r.phone_number),
    ];
    let mut found = None;
    for (kind, value) in kinds {
        let Some(Scalar(value)) = value.filter(|v| !v.0.is_empty()) else {
            continue;
        };
        if found.is_some() {
            return Err(GraphError::param(
                "(#100) Param recipient must contain exactly one recipient identifier",
            ));
        }
        found = Some((kind, value));
    }
    match found {
        Some(("id", psid)) => Ok((psid, true)),
        Some((kind, value)) => Ok((Cow::Owned(format!("{kind}:{value}")), false)),
        None => Err(GraphError::param(
            "(#100) Param recipient must contain exactly one recipient identifier",
        )),
    }
}

/// Returns whether the call is a utility-template send.
fn check_messaging_type(
    messaging_type: Option<&str>,
    tag: Option<&str>,
) -> Result<bool, GraphError> {
    let Some(messaging_type) = messaging_type else {
        return Err(GraphError::param(
            "(#100) The parameter messaging_type is required",
        ));
    };
    if !matches!(
        messaging_type,
        "RESPONSE" | "UPDATE" | "MESSAGE_TAG" | "UTILITY"
    ) {
        return Err(GraphError::param(
            "(#100) Param messaging_type must be one of {RESPONSE, UPDATE, MESSAGE_TAG, UTILITY}",
        ));
    }
    match (messaging_type, tag) {
        ("MESSAGE_TAG", None) => Err(GraphError::param(
            "(#100) The parameter tag is required when messaging_type is MESSAGE_TAG",
        )),
        ("MESSAGE_TAG", Some(tag)) if TAGS_RETIRED_2026.contains(&tag) => Err(GraphError::param(
            format!("(#100) The message tag {tag} is no longer supported"),
        )),
        ("MESSAGE_TAG", Some(tag)) if !TAGS_LIVE.contains(&tag) => Err(GraphError::param(
            "(#100) Param tag must be one of {HUMAN_AGENT, CUSTOMER_FEEDBACK}",
        )),
        ("MESSAGE_TAG", Some(_)) => Ok(false),
        (_, Some(_)) => Err(GraphError::param(
            "(#100) Param tag can only be used with messaging_type MESSAGE_TAG",
        )),
        (kind, None) => Ok(kind == "UTILITY"),
    }
}

fn check_message(message: &Message<'_>, utility: bool) -> Result<(), GraphError> {
    let contents = [
        message.text.is_some(),
        message.attachment.is_some(),
        message.template.is_some(),
    ];
    match contents.iter().filter(|present| **present).count() {
        0 => {
            return Err(GraphError::param(
                "(#100) Message cannot be empty, must provide valid attachment or text",
            ));
        }
        1 => {}
        _ => {
            return Err(GraphError::param(
                "(#100) Only one of message[text], message[attachment] or message[template] can be set",
            ));
        }
    }
    if utility != message.template.is_some() {
        return Err(GraphError::param(
            "(#100) message[template] is required with, and only with, messaging_type UTILITY",
        ));
    }
    if let Some(text) = &message.text {
        at_most(text, 1999, "message[text]")?;
    }
    if let Some(metadata) = &message.metadata {
        at_most(metadata, 999, "message[metadata]")?;
    }
    if let Some(replies) = &message.quick_replies {
        check_quick_replies(replies)?;
    }
    if let Some(attachment) = &message.attachment {
        check_attachment(attachment)?;
    }
    Ok(())
}

fn check_quick_replies(replies: &[QuickReply<'_>]) -> Result<(), GraphError> {
    if replies.len() > 13 {
        return Err(GraphError::param(
            "(#100) Param message[quick_replies] has more than 13 items",
        ));
    }
    for reply in replies {
        match reply.content_type.as_deref() {
            Some("text") => match &reply.title {
                Some(title) => at_most(title, 20, "message[quick_replies][title]")?,
                None => {
                    return Err(GraphError::param(
                        "(#100) Param message[quick_replies][title] is required for text quick replies",
                    ));
                }
            },
            Some("user_phone_number" | "user_email") => {}
            _ => {
                return Err(GraphError::param(
                    "(#100) Param message[quick_replies][content_type] must be one of {text, \
                     user_phone_number, user_email}",
                ));
            }
        }
        if let Some(payload) = &reply.payload {
            at_most(&payload.0, 1000, "message[quick_replies][payload]")?;
        }
    }
    Ok(())
}

fn check_attachment(attachment: &Attachment<'_>) -> Result<(), GraphError> {
    let kind = attachment.kind.as_deref().unwrap_or("");
    if !matches!(kind, "image" | "audio" | "video" | "file" | "template") {
        return Err(GraphError::param(
            "(#100) Param message[attachment][type] must be one of {image, audio, video, file, template}",
        ));
    }
    let Some(payload) = &attachment.payload else {
        return Err(GraphError::param(
            "(#100) The parameter message[attachment][payload] is required",
        ));
    };
    match (kind, payload.template_type.as_deref()) {
        ("template", Some("generic")) => {
            let elements = payload.elements.as_deref().unwrap_or_default();
            if elements.is_empty() || elements.len() > 10 {
                return Err(GraphError::param(
                    "(#100) Param message[attachment][payload][elements] must have 1 to 10 items",
                ));
            }
            for element in elements {
                let Some(title) = &element.title else {
                    return Err(GraphError::param(
                        "(#100) Param message[attachment][payload][elements][title] is required",
                    ));
                };
                at_most(title, 80, "message[attachment][payload][elements][title]")?;
                if let Some(subtitle) = &element.subtitle {
                    at_most(
                        subtitle,
                        80,
                        "message[attachment][payload][elements][subtitle]",
                    )?;
                }
                check_buttons(element.buttons.as_deref().unwrap_or_default(), 0)?;
            }
        }
        ("template", Some("button")) => {
            let Some(text) = &payload.text else {
                return Err(GraphError::param(
                    "(#100) The parameter message[attachment][payload][text] is required",
                ));
            };
            at_most(text, 640, "message[attachment][payload][text]")?;
            check_buttons(payload.buttons.as_deref().unwrap_or_default(), 1)?;
        }
        ("template", None) => {
            return Err(GraphError::param(
                "(#100) The parameter message[attachment][payload][template_type] is required",
            ));
        }
        _ => {}
    }
    Ok(())
}

fn check_buttons(buttons: &[Button<'_>], min: usize) -> Result<(), GraphError> {
    if buttons.len() < min || buttons.len() > 3 {
        return Err(GraphError::param(format!(
            "(#100) Param buttons must have {min} to 3 items, got {}",
            buttons.len()
        )));
    }
    for button in buttons {
        if let Some(payload) = &button.payload {
            at_most(&payload.0, 1000, "buttons[payload]")?;
        }
    }
    Ok(())
}

/// Meta counts characters (code points), not bytes.
fn at_most(value: &str, max_chars: usize, name: &str) -> Result<(), GraphError> {
    let chars = value.chars().count();
    if chars > max_chars {
        return Err(GraphError::param(format!(
            "(#100) Length of param {name} must be at most {max_chars} characters, got {chars}"
        )));
    }
    Ok(())
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
