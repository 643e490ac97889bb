//! Rendering: the example campaign, `default` with missing attributes, built-in variables, no HTML
//! escaping, Unicode, JSON validity with hostile attribute values, exact bodies, per-user skips.

use serde_json::{Value, json};
use time::macros::datetime;

use super::escape::write_json_str;
use crate::campaign::Campaign;
use crate::limits::check_message_limits;
use crate::skip::SkipReason;
use crate::user::User;

/// A campaign with `extra` top-level lines and the given `[message]` table body.
fn campaign_with(extra: &str, message: &str) -> Campaign {
    let source = format!(
        "id = \"r\"\npage_id = \"1000000001\"\nmessaging_type = \"UPDATE\"\n{extra}\n[message]\n{message}\n"
    );
    Campaign::from_toml(&source).unwrap_or_else(|e| panic!("{e}\n--- in ---\n{source}"))
}

fn campaign(message: &str) -> Campaign {
    campaign_with("", message)
}

fn render(campaign: &Campaign, user: &User) -> Value {
    let body = campaign.render_request(user, "run1:u1").expect("renders");
    serde_json::from_slice(&body).expect("valid JSON")
}

fn text_for(template: &str, user: &User) -> String {
    let message = format!("text = {}", Value::from(template));
    let body = render(&campaign(&message), user);
    body["message"]["text"].as_str().unwrap().to_owned()
}

const DESIGN_TEXT: &str = "Hi {{ first_name | default: 'there' }}, your code is {{ promo_code }}.";

#[test]
fn design_sample_text_with_and_without_attributes() {
    let bare = User::new("u1", "42");
    assert_eq!(text_for(DESIGN_TEXT, &bare), "Hi there, your code is .");
    let full = User::new("u1", "42")
        .with_attr("first_name", "Zoë")
        .with_attr("promo_code", "BR-10");
    assert_eq!(text_for(DESIGN_TEXT, &full), "Hi Zoë, your code is BR-10.");
}

#[test]
fn default_filter_table() {
    let check = |template: &str, user: &User, expected: &str| {
        assert_eq!(text_for(template, user), expected, "{template}");
    };
    let bare = User::new("u1", "42");
    let empty = User::new("u1", "42").with_attr("first_name", "");
    check("{{ first_name | default: \"there\" }}", &bare, "there");
    check("{{ first_name | default: 'there' }}", &empty, "there");
    check("[{{ first_name }}]", &bare, "[]");
    check("[{{ first_name | upcase }}]", &bare, "[]");
    check("{% if first_name %}yes{% else %}no{% endif %}", &bare, "no");
}

#[test]
fn built_in_fields_are_variables() {
    let user = User::new("ext-7", " 42 ").with_last_inbound_at(datetime!(2026-05-01 12:00 UTC));
    let text = "{{ external_id }}|{{ messenger_id }}|{{ psid }}|{{ last_inbound_at }}";
    assert_eq!(
        text_for(text, &user),
        "ext-7| 42 | 42 |2026-05-01T12:00:00Z"
    );
}

#[test]
fn attributes_pass_through_unescaped_and_json_stays_valid() {
    let check = |value: &str| {
        let user = User::new("u1", "42").with_attr("name", value);
        assert_eq!(text_for("{{ name }}", &user), value, "{value:?}");
    };
    check("<b>Tom & \"Jerry's\"</b>");
    check(r#"back\slash \" \\n"#);
    check("line\nbreak\ttab\r\u{0}\u{1}\u{1f}\u{7f}");
    check("Zoë 🎉 שלום 你好 e\u{301}");
    check("{{ not liquid }}");
}

/// Nested values as `/users/track` stores them (compact JSON text) read as objects and arrays.
#[test]
fn json_attributes_are_objects_and_arrays_in_liquid() {
    let user = User::new("u1", "42")
        .with_attr("prefs", r#"{"color":"green","size":{"shoe":41}}"#)
        .with_attr("colors", r#"["red","blue"]"#)
        .with_attr("note", "[draft] not JSON");
    let text = "{{ prefs.color }} {{ prefs.size.shoe }} \
                {% for c in colors %}{{ c }},{% endfor %} {{ colors.size }} {{ note }}";
    assert_eq!(
        text_for(text, &user),
        "green 41 red,blue, 2 [draft] not JSON"
    );
}

#[test]
fn unicode_is_written_raw_not_as_escapes() {
    let user = User::new("u1", "42").with_attr("name", "Zoë 🎉");
    let c = campaign("text = \"Olá {{ name }}\"");
    let body = String::from_utf8(c.render_request(&user, "run1:u1").unwrap()).unwrap();
    assert!(body.contains("Olá Zoë 🎉"), "{body}");
}

#[test]
fn exact_body_with_metadata_and_header_fields() {
    let user = User::new("u1", "42").with_attr("first_name", "Ana");
    let c = campaign("text = \"Hi {{ first_name }}\"");
    let body = c.render_request(&user, "run1:u1").unwrap();
    assert_eq!(
        String::from_utf8(body).unwrap(),
        r#"{"recipient":{"id":"42"},"messaging_type":"UPDATE","message":{"text":"Hi Ana","metadata":"run1:u1"}}"#
    );
    let source = "id = \"t\"\npage_id = \"1\"\nmessaging_type = \"MESSAGE_TAG\"\n\
                  tag = \"HUMAN_AGENT\"\nnotification_type = \"SILENT_PUSH\"\n[message]\ntext = \"x\"\n";
    let tagged = Campaign::from_toml(source).unwrap();
    let body = tagged.render_request(&user, "run \"2\":u1").unwrap();
    assert_eq!(
        String::from_utf8(body).unwrap(),
        r#"{"recipient":{"id":"42"},"messaging_type":"MESSAGE_TAG","tag":"HUMAN_AGENT","notification_type":"SILENT_PUSH","message":{"text":"x","metadata":"run \"2\":u1"}}"#
    );
}

#[test]
fn nested_structures_literals_and_templates_mix() {
    let message = r#"
text = "Pick one, {{ first_name | default: 'friend' }}"
quick_replies = [
  { content_type = "text", title = "Yes \"please\"", payload = "YES" },
  { content_type = "text", title = "{{ choice }}", payload = 7 },
  { content_type = "user_email" },
]
[message.extra]
flag = true
ratio = 1.5
when = 2026-05-01
"#;
    let user = User::new("u1", "42").with_attr("choice", "Tal\\vez");
    let body = render(&campaign(message), &user);
    assert_eq!(
        body["message"],
        json!({
            "text": "Pick one, friend",
            "quick_replies": [
                { "content_type": "text", "title": "Yes \"please\"", "payload": "YES" },
                { "content_type": "text", "title": "Tal\\vez", "payload": 7 },
                { "content_type": "user_email" },
            ],
            "extra": { "flag": true, "ratio": 1.5, "when": "2026-05-01" },
            "metadata": "run1:u1",
        })
    );
}

#[test]
fn blank_psid_and_render_errors_are_skips() {
    let c = campaign("text = \"{{ n | plus: 1 }}\"");
    for psid in [None, Some(""), Some("   ")] {
        let user = User {
            messenger_id: psid.map(str::to_owned),
            ..User::new("u1", "")
        };
        assert_eq!(c.render_request(&user, "r:u1"), Err(SkipReason::BlankPsid));
    }
    let user = User::new("u1", "42").with_attr("n", "secret-value");
    let Err(SkipReason::RenderError(message)) = c.render_request(&user, "r:u1") else {
        panic!("expected a render error");
    };
    assert!(message.contains("plus"), "{message}");
    assert!(!message.contains("secret-value"), "{message}");
    let user = User::new("u1", "42").with_attr("n", "41");
    assert_eq!(text_for("{{ n | plus: 1 }}", &user), "42");
}

#[test]
fn per_user_limits_name_the_field() {
    let check = |message: &str, user: &User, job_id: &str, path: &str| {
        let c = campaign(message);
        match c.render_request(user, job_id) {
            Err(SkipReason::MessageLimits(violations)) => {
                let paths: Vec<&str> = violations.iter().map(|v| v.path.as_str()).collect();
                assert_eq!(paths, [path], "{message}");
            }
            other => panic!("{message}: expected limits, got {other:?}"),
        }
    };
    let long = User::new("u1", "42").with_attr("v", "x".repeat(2000));
    let short = User::new("u1", "42").with_attr("v", "x");
    check("text = \"{{ v }}\"", &long, "r:u1", "message.text");
    check("text = \"{{ missing }}\"", &short, "r:u1", "message.text");
    check(
        "text = \"ok\"\nquick_replies = [{ content_type = \"text\", title = \"{{ v }}\", payload = \"P\" }]",
        &long,
        "r:u1",
        "message.quick_replies[0].title",
    );
    check(
        "text = \"ok\"",
        &short,
        &"j".repeat(1000),
        "message.metadata",
    );
    let generic = r#"
[message.attachment]
type = "template"
[message.attachment.payload]
template_type = "{{ kind | default: 'generic' }}"
elements = [{ title = "{{ v }}" }]
"#;
    check(
        generic,
        &long,
        "r:u1",
        "message.attachment.payload.elements[0].title",
    );
    // Exactly at the limits is fine.
    let c = campaign("text = \"{{ v }}\"");
    let edge = User::new("u1", "42").with_attr("v", "é".repeat(1999));
    assert!(c.render_request(&edge, &"j".repeat(999)).is_ok());
}

#[test]
fn fast_limits_agree_with_the_full_check() {
    let message = r#"
text = "{{ a }}"
quick_replies = [{ content_type = "text", title = "{{ b }}", payload = "{{ c }}" }]
"#;
    let c = campaign(message);
    for (a, b, c_len) in [
        (1, 1, 1),
        (1999, 20, 1000),
        (2000, 20, 1000),
        (5, 21, 1001),
        (0, 0, 0),
    ] {
        let user = User::new("u1", "42")
            .with_attr("a", "ä".repeat(a))
            .with_attr("b", "b".repeat(b))
            .with_attr("c", "c".repeat(c_len));
        let mut fast = match c.render_request(&user, "r:u1") {
            Ok(_) => Vec::new(),
            Err(SkipReason::MessageLimits(violations)) => violations,
            Err(other) => panic!("{other:?}"),
        };
        let mut full = check_message_limits(&json!({
            "text": "ä".repeat(a),
            "quick_replies": [{ "content_type": "text", "title": "b".repeat(b), "payload": "c".repeat(c_len) }],
            "metadata": "r:u1",
        }));
        fast.sort_by(|x, y| x.path.cmp(&y.path));
        full.sort_by(|x, y| x.path.cmp(&y.path));
        assert_eq!(fast, full, "{a} {b} {c_len}");
    }
}

#[test]
fn escaper_matches_serde_json() {
    let samples = [
        "",
        "plain",
        "quote \" backslash \\ slash /",
        "\u{0}\u{1}\u{8}\u{9}\u{a}\u{b}\u{c}\u{d}\u{1b}\u{1f} \u{7f}",
        "Zoë 🎉 \u{2028}\u{2029}",
    ];
    for sample in samples {
        let mut out = Vec::new();
        write_json_str(&mut out, sample);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            serde_json::to_string(sample).unwrap()
        );
    }
}

#[test]
fn campaigns_render_from_many_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Campaign>();
    let c = campaign(&format!("text = {}", Value::from(DESIGN_TEXT)));
    std::thread::scope(|scope| {
        for i in 0..4 {
            let c = &c;
            scope.spawn(move || {
                let user =
                    User::new(format!("u{i}"), "42").with_attr("first_name", format!("N{i}"));
                let body = render(c, &user);
                assert_eq!(body["message"]["text"], format!("Hi N{i}, your code is ."));
            });
        }
    });
}
