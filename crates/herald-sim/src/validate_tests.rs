//! Table tests for `validate.rs`: one row per rule of docs/messenger-platform.md §1.2-1.5.

use serde_json::{Value, json};

use super::*;

/// `Ok(recipient key)` or `Err(fragment of the error message)`; every error is code 100.
fn check(body: Value, expected: Result<&str, &str>) {
    let bytes = serde_json::to_vec(&body).unwrap();
    let actual = validate_json(&bytes);
    match (&actual, expected) {
        (Ok(v), Ok(recipient)) => assert_eq!(v.recipient, recipient, "{body}"),
        (Err(e), Err(fragment)) => {
            assert_eq!(e.code, 100, "{body}");
            assert!(
                e.message.contains(fragment),
                "{body}: {} lacks {fragment}",
                e.message
            );
        }
        _ => panic!("{body}: got {actual:?}, expected {expected:?}"),
    }
}

fn text(text: &str) -> Value {
    json!({"recipient": {"id": "42"}, "messaging_type": "UPDATE", "message": {"text": text}})
}

fn with_message(message: Value) -> Value {
    json!({"recipient": {"id": "42"}, "messaging_type": "RESPONSE", "message": message})
}

fn generic(elements: usize, title: &str, buttons: usize) -> Value {
    let button = json!({"type": "postback", "title": "Go", "payload": "P"});
    let element = json!({"title": title, "subtitle": "s", "buttons": vec![button; buttons]});
    with_message(json!({"attachment": {"type": "template",
        "payload": {"template_type": "generic", "elements": vec![element; elements]}}}))
}

fn button_template(text: &str, buttons: usize) -> Value {
    let button = json!({"type": "web_url", "title": "Open", "url": "https://example.com"});
    with_message(json!({"attachment": {"type": "template",
        "payload": {"template_type": "button", "text": text, "buttons": vec![button; buttons]}}}))
}

fn quick_replies(n: usize, title: &str) -> Value {
    let reply = json!({"content_type": "text", "title": title, "payload": "P"});
    with_message(json!({"text": "pick", "quick_replies": vec![reply; n]}))
}

#[test]
fn recipient_rules() {
    check(text("hi"), Ok("42"));
    check(
        json!({"recipient": {"id": 42}, "messaging_type": "UPDATE", "message": {"text": "x"}}),
        Ok("42"),
    );
    check(
        json!({"messaging_type": "UPDATE", "message": {"text": "x"}}),
        Err("recipient is required"),
    );
    check(
        json!({"recipient": {}, "messaging_type": "UPDATE", "message": {"text": "x"}}),
        Err("exactly one"),
    );
    check(
        json!({"recipient": {"id": "1", "user_ref": "u"}, "messaging_type": "UPDATE", "message": {"text": "x"}}),
        Err("exactly one"),
    );
    check(
        json!({"recipient": {"user_ref": "u"}, "messaging_type": "UPDATE", "message": {"text": "x"}}),
        Ok("user_ref:u"),
    );
}

#[test]
fn messaging_type_and_tag_rules() {
    let send = |messaging_type: Option<&str>, tag: Option<&str>| {
        let mut body = text("hi");
        if let Some(kind) = messaging_type {
            body["messaging_type"] = json!(kind);
        } else {
            body.as_object_mut().unwrap().remove("messaging_type");
        }
        if let Some(tag) = tag {
            body["tag"] = json!(tag);
        }
        body
    };
    check(send(None, None), Err("messaging_type is required"));
    check(
        send(Some("PROMO"), None),
        Err("messaging_type must be one of"),
    );
    check(send(Some("RESPONSE"), None), Ok("42"));
    check(
        send(Some("UPDATE"), Some("HUMAN_AGENT")),
        Err("only be used with"),
    );
    check(send(Some("MESSAGE_TAG"), None), Err("tag is required"));
    check(send(Some("MESSAGE_TAG"), Some("HUMAN_AGENT")), Ok("42"));
    for retired in [
        "CONFIRMED_EVENT_UPDATE",
        "ACCOUNT_UPDATE",
        "POST_PURCHASE_UPDATE",
    ] {
        check(
            send(Some("MESSAGE_TAG"), Some(retired)),
            Err("no longer supported"),
        );
    }
    for retired in [
        "SHIPPING_UPDATE",
        "ISSUE_RESOLUTION",
        "APPOINTMENT_UPDATE",
        "GAME_EVENT",
    ] {
        check(
            send(Some("MESSAGE_TAG"), Some(retired)),
            Err("tag must be one of"),
        );
    }
    check(
        send(Some("UTILITY"), None),
        Err("message[template] is required"),
    );
    let utility = json!({"recipient": {"id": "42"}, "messaging_type": "UTILITY",
        "message": {"template": {"name": "order", "language": {"code": "en_US"}, "components": []}}});
    check(utility, Ok("42"));
}

#[test]
fn content_rules() {
    check(with_message(json!({})), Err("cannot be empty"));
    check(
        json!({"recipient": {"id": "42"}, "messaging_type": "UPDATE"}),
        Err("either message or state"),
    );
    check(text(&"a".repeat(1999)), Ok("42"));
    check(text(&"a".repeat(2000)), Err("message[text]"));
    // 1999 characters of 3 bytes each: bytes are not characters.
    check(text(&"€".repeat(1999)), Ok("42"));
    check(
        with_message(json!({"text": "x", "metadata": "m".repeat(999)})),
        Ok("42"),
    );
    check(
        with_message(json!({"text": "x", "metadata": "m".repeat(1000)})),
        Err("message[metadata]"),
    );
    check(quick_replies(13, &"t".repeat(20)), Ok("42"));
    check(quick_replies(14, "t"), Err("more than 13"));
    check(
        quick_replies(1, &"t".repeat(21)),
        Err("quick_replies][title]"),
    );
    check(generic(10, &"t".repeat(80), 3), Ok("42"));
    check(generic(11, "t", 1), Err("1 to 10"));
    check(generic(1, &"t".repeat(81), 1), Err("elements][title]"));
    check(generic(1, "t", 4), Err("0 to 3"));
    check(button_template(&"b".repeat(640), 3), Ok("42"));
    check(button_template(&"b".repeat(641), 1), Err("payload][text]"));
    check(button_template("b", 4), Err("1 to 3"));
    check(button_template("b", 0), Err("1 to 3"));
    check(
        with_message(json!({"attachment": {"type": "sticker", "payload": {}}})),
        Err("type"),
    );
    let image = json!({"attachment": {"type": "image", "payload": {"url": "https://x/y.png"}}});
    check(with_message(image), Ok("42"));
}

#[test]
fn sender_actions_and_form_values() {
    let action = json!({"recipient": {"id": "42"}, "sender_action": "typing_on"});
    let bytes = serde_json::to_vec(&action).unwrap();
    assert!(validate_json(&bytes).unwrap().sender_action);
    check(
        json!({"recipient": {"id": "42"}, "sender_action": "dance"}),
        Err("sender_action"),
    );
    let form =
        json!({"recipient": {"id": "7"}, "messaging_type": "UPDATE", "message": {"text": "x"}});
    assert_eq!(validate_value(&form).unwrap().recipient, "7");
    check(json!({"recipient": "42"}), Err("Invalid parameter"));
}
