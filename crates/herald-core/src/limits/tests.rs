//! Meta's content limits, one row per rule and edge (at the limit, one past it).

use serde_json::{Value, json};

use super::*;

fn s(n: usize) -> String {
    "é".repeat(n)
}

fn quick_replies(n: usize) -> Value {
    (0..n)
        .map(|i| json!({ "content_type": "text", "title": format!("r{i}"), "payload": "P" }))
        .collect()
}

fn buttons(n: usize) -> Value {
    (0..n)
        .map(|i| json!({ "type": "postback", "title": format!("b{i}"), "payload": "P" }))
        .collect()
}

fn generic(elements: Value) -> Value {
    json!({ "attachment": { "type": "template", "payload": { "template_type": "generic", "elements": elements } } })
}

fn button_template(text: Value, buttons: Value) -> Value {
    json!({ "attachment": { "type": "template", "payload": { "template_type": "button", "text": text, "buttons": buttons } } })
}

/// Each row: a message and the paths it breaks, in order (empty: fine).
#[test]
fn limits_table() {
    let check = |message: Value, expected: &[&str]| {
        let violations = check_message_limits(&message);
        let paths: Vec<&str> = violations.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(paths, expected, "{message}\n{violations:#?}");
    };
    // text: fewer than 2000 characters (counted as chars, not bytes), not empty.
    check(json!({ "text": s(1999) }), &[]);
    check(json!({ "text": s(2000) }), &["message.text"]);
    check(json!({ "text": "" }), &["message.text"]);
    check(json!({ "text": 5 }), &[]);
    check(json!({ "text": ["a"] }), &["message.text"]);
    // metadata: fewer than 1000.
    check(json!({ "text": "a", "metadata": s(999) }), &[]);
    check(
        json!({ "text": "a", "metadata": s(1000) }),
        &["message.metadata"],
    );
    // quick replies: at most 13, text titles at most 20 and required, payload at most 1000.
    check(
        json!({ "text": "a", "quick_replies": quick_replies(13) }),
        &[],
    );
    check(
        json!({ "text": "a", "quick_replies": quick_replies(14) }),
        &["message.quick_replies"],
    );
    check(
        json!({ "text": "a", "quick_replies": "x" }),
        &["message.quick_replies"],
    );
    check(
        json!({ "text": "a", "quick_replies": [{ "content_type": "text", "title": s(20), "payload": s(1000) }] }),
        &[],
    );
    check(
        json!({ "text": "a", "quick_replies": [{ "content_type": "text", "title": s(21), "payload": "P" }] }),
        &["message.quick_replies[0].title"],
    );
    check(
        json!({ "text": "a", "quick_replies": [{ "content_type": "text", "payload": s(1001) }] }),
        &[
            "message.quick_replies[0].title",
            "message.quick_replies[0].payload",
        ],
    );
    check(
        json!({ "text": "a", "quick_replies": [{ "content_type": "user_email" }] }),
        &[],
    );
    // generic template: 1 to 10 elements, title (required) and subtitle at most 80, 3 buttons.
    let element = |title: usize, subtitle: usize, n: usize| json!({ "title": s(title), "subtitle": s(subtitle), "buttons": buttons(n) });
    check(generic(json!([element(80, 80, 3)])), &[]);
    check(generic((0..10).map(|_| element(1, 1, 1)).collect()), &[]);
    check(
        generic((0..11).map(|_| element(1, 1, 1)).collect()),
        &["message.attachment.payload.elements"],
    );
    check(generic(json!([])), &["message.attachment.payload.elements"]);
    check(
        generic(json!([element(81, 1, 1)])),
        &["message.attachment.payload.elements[0].title"],
    );
    check(
        generic(json!([element(1, 81, 1)])),
        &["message.attachment.payload.elements[0].subtitle"],
    );
    check(
        generic(json!([element(1, 1, 4)])),
        &["message.attachment.payload.elements[0].buttons"],
    );
    check(
        generic(json!([{ "subtitle": "x" }])),
        &["message.attachment.payload.elements[0].title"],
    );
    check(
        json!({ "attachment": { "type": "template", "payload": { "template_type": "generic" } } }),
        &["message.attachment.payload.elements"],
    );
    // button template: text at most 640, 1 to 3 buttons.
    check(button_template(json!(s(640)), buttons(3)), &[]);
    check(
        button_template(json!(s(641)), buttons(1)),
        &["message.attachment.payload.text"],
    );
    check(
        button_template(json!("a"), buttons(0)),
        &["message.attachment.payload.buttons"],
    );
    check(
        button_template(json!("a"), buttons(4)),
        &["message.attachment.payload.buttons"],
    );
    // buttons: title at most 20, postback payload at most 1000 (other types: no payload rule).
    check(
        button_template(
            json!("a"),
            json!([
                { "type": "postback", "title": s(21), "payload": s(1001) },
                { "type": "web_url", "title": "ok", "url": "https://example.com", "payload": s(2000) },
            ]),
        ),
        &[
            "message.attachment.payload.buttons[0].title",
            "message.attachment.payload.buttons[0].payload",
        ],
    );
    // Non-template attachments and unknown template types are left to Graph.
    check(
        json!({ "attachment": { "type": "image", "payload": { "url": "https://x" } } }),
        &[],
    );
    check(
        json!({ "attachment": { "type": "template", "payload": { "template_type": "media", "buttons": buttons(4) } } }),
        &["message.attachment.payload.buttons"],
    );
}

#[test]
fn messages_say_what_and_how_much() {
    let violations = check_message_limits(&json!({ "text": s(2001) }));
    assert_eq!(
        violations,
        [LimitViolation {
            path: "message.text".into(),
            message: "is 2001 characters; Meta allows fewer than 2000 characters".into(),
        }]
    );
    let violations =
        check_message_limits(&json!({ "text": "a", "quick_replies": quick_replies(14) }));
    assert_eq!(violations[0].message, "has 14 entries; Meta allows 0 to 13");
}

#[test]
fn text_limits_cover_every_checked_string() {
    let message = json!({
        "text": "a",
        "quick_replies": [{ "content_type": "text", "title": "t", "payload": "p" }],
        "attachment": { "type": "template", "payload": { "template_type": "button", "text": "x", "buttons": buttons(1) } },
    });
    let mut paths: Vec<String> = text_limits(&message).into_iter().map(|(p, _)| p).collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "message.attachment.payload.buttons[0].payload",
            "message.attachment.payload.buttons[0].title",
            "message.attachment.payload.text",
            "message.quick_replies[0].payload",
            "message.quick_replies[0].title",
            "message.text",
        ]
    );
}
