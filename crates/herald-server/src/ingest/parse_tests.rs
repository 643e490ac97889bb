//! `parse` against the payload shapes of docs/messenger-platform.md §5.3–5.4, one table row per
//! shape.

use serde_json::{Value, json};

use super::parse;
use crate::fires::Cue;
use crate::ingest::event::{Action, Event, Ignored, PolicyAction};

const PAGE: &str = "1000000001";
const PSID: &str = "2000000001";
const FALLBACK: i64 = 1_000;
/// Entries of any age are read.
const NO_MAX_AGE: i64 = i64::MAX;

/// One page webhook whose only entry holds `items` under `messaging`.
fn body(items: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"object": "page", "entry": [
        {"id": PAGE, "time": 1_458_692_752_000_i64, "messaging": items}
    ]}))
    .unwrap()
}

/// A user event: sender = PSID, recipient = page, timestamp 1458692752478.
fn from_user(key: &str, value: Value) -> Value {
    json!({"sender": {"id": PSID}, "recipient": {"id": PAGE}, "timestamp": 1_458_692_752_478_i64, key: value})
}

fn inbound(action: Action, reference: Option<&str>, mid: Option<&str>) -> Event {
    Event::Inbound {
        action,
        page: PAGE.into(),
        psid: PSID.into(),
        at_ms: 1_458_692_752_478,
        reference: reference.map(str::to_owned),
        mid: mid.map(str::to_owned),
        cue: Cue::default(),
    }
}

fn opt(opted_out: bool) -> Event {
    Event::OptChange {
        page: PAGE.into(),
        psid: PSID.into(),
        opted_out,
        at_ms: 1_458_692_752_478,
    }
}

/// `event` offering `cue` to triggered campaigns.
fn cued(
    event: Event,
    postback: Option<&str>,
    quick_reply: Option<&str>,
    text: Option<&str>,
) -> Event {
    let Event::Inbound {
        action,
        page,
        psid,
        at_ms,
        reference,
        mid,
        ..
    } = event
    else {
        panic!("not an inbound action");
    };
    let cue = Cue {
        postback: postback.map(str::to_owned),
        quick_reply: quick_reply.map(str::to_owned),
        text: text.map(str::to_owned),
    };
    Event::Inbound {
        action,
        page,
        psid,
        at_ms,
        reference,
        mid,
        cue,
    }
}

fn check(item: Value, expected: Event) {
    let events = parse(&body(json!([item.clone()])), FALLBACK, NO_MAX_AGE).expect("a page webhook");
    assert_eq!(events, [expected], "{item}");
}

#[test]
fn every_kind_of_item() {
    check(
        from_user("message", json!({"mid": "m_1", "text": "hi"})),
        cued(
            inbound(Action::Message, None, Some("m_1")),
            None,
            None,
            Some("hi"),
        ),
    );
    check(
        from_user(
            "message",
            json!({"mid": "m_2", "text": "Red", "quick_reply": {"payload": "RED"}}),
        ),
        cued(
            inbound(Action::Message, None, Some("m_2")),
            None,
            Some("RED"),
            Some("Red"),
        ),
    );
    check(
        from_user(
            "message",
            json!({"mid": "m_3", "text": "hi",
                "referral": {"ref": "ext-42", "source": "SHORTLINK", "type": "OPEN_THREAD"}}),
        ),
        cued(
            inbound(Action::Message, Some("ext-42"), Some("m_3")),
            None,
            None,
            Some("hi"),
        ),
    );
    check(
        from_user(
            "message",
            json!({"mid": "m_4", "attachments": [{"type": "image", "payload": {"url": "u"}}]}),
        ),
        inbound(Action::Message, None, Some("m_4")),
    );
    check(
        from_user(
            "postback",
            json!({"mid": "m_5", "title": "Get Started", "payload": "GO",
                "referral": {"ref": "ext-7", "source": "SHORTLINK", "type": "OPEN_THREAD"}}),
        ),
        cued(
            inbound(Action::Postback, Some("ext-7"), Some("m_5")),
            Some("GO"),
            None,
            None,
        ),
    );
    check(
        from_user("postback", json!({"title": "Buy", "payload": "BUY"})),
        cued(
            inbound(Action::Postback, None, None),
            Some("BUY"),
            None,
            None,
        ),
    );
    check(
        from_user(
            "referral",
            json!({"ref": "ext-9", "source": "SHORTLINK", "type": "OPEN_THREAD"}),
        ),
        inbound(Action::Referral, Some("ext-9"), None),
    );
    check(
        from_user(
            "referral",
            json!({"source": "ADS", "type": "OPEN_THREAD", "ad_id": "1"}),
        ),
        inbound(Action::Referral, None, None),
    );
    check(
        from_user("optin", json!({"ref": "ext-11"})),
        inbound(Action::OptIn, Some("ext-11"), None),
    );
    check(
        from_user(
            "reaction",
            json!({"reaction": "love", "emoji": "❤", "action": "react", "mid": "m_6"}),
        ),
        inbound(Action::Reaction, None, Some("m_6")),
    );
    check(
        from_user(
            "delivery",
            json!({"mids": ["m_a", "m_b"], "watermark": 1_458_668_856_253_i64}),
        ),
        Event::Delivered {
            page: PAGE.into(),
            psid: PSID.into(),
            watermark_ms: 1_458_668_856_253,
            mids: vec!["m_a".into(), "m_b".into()],
        },
    );
    check(
        from_user("delivery", json!({"watermark": 1_458_668_856_253_i64})),
        Event::Delivered {
            page: PAGE.into(),
            psid: PSID.into(),
            watermark_ms: 1_458_668_856_253,
            mids: vec![],
        },
    );
    check(
        from_user("read", json!({"watermark": 1_458_668_856_253_i64})),
        Event::Read {
            page: PAGE.into(),
            psid: PSID.into(),
            watermark_ms: 1_458_668_856_253,
        },
    );
    check(
        json!({"sender": {"id": PAGE}, "recipient": {"id": PSID}, "timestamp": 1,
            "message": {"is_echo": true, "app_id": 123, "metadata": "r20261121143242-375ddc:u1",
                "mid": "m_e", "text": "Hi"}}),
        Event::Echo {
            page: PAGE.into(),
            mid: Some("m_e".into()),
            job: Some("r20261121143242-375ddc:u1".into()),
            at_ms: 1,
        },
    );
    check(
        json!({"sender": {"id": PAGE}, "recipient": {"id": PSID}, "timestamp": 1,
            "message": {"is_echo": true, "mid": "m_h", "text": "a human in Page Inbox"}}),
        Event::Echo {
            page: PAGE.into(),
            mid: Some("m_h".into()),
            job: None,
            at_ms: 1,
        },
    );
    check(
        json!({"recipient": {"id": PAGE}, "timestamp": 1_458_692_752_478_i64,
            "optin": {"ref": "ext-12", "user_ref": "UR"}}),
        Event::CheckboxOptIn { page: PAGE.into() },
    );
    check(
        json!({"recipient": {"id": PAGE}, "timestamp": 1_458_692_752_478_i64,
            "policy_enforcement": {"action": "block", "reason": "spam"}}),
        Event::Policy {
            page: PAGE.into(),
            action: PolicyAction::Block,
            reason: Some("spam".into()),
            at_ms: 1_458_692_752_478,
        },
    );
    check(
        json!({"recipient": {"id": PAGE}, "timestamp": 5,
            "policy-enforcement": {"action": "unblock"}}),
        Event::Policy {
            page: PAGE.into(),
            action: PolicyAction::Unblock,
            reason: None,
            at_ms: 5,
        },
    );
}

#[test]
fn marketing_opt_ins_match_any_spelling() {
    let optin = |status: Option<&str>| {
        let mut value = json!({"type": "notification_messages", "payload": "p",
            "notification_messages_token": "T", "title": "Deals"});
        if let Some(status) = status {
            value["notification_messages_status"] = json!(status);
        }
        from_user("optin", value)
    };
    for stop in [
        "STOP NOTIFICATIONS",
        "STOP_NOTIFICATIONS",
        "stop notifications",
        "Stop-Notifications",
        "STOP",
    ] {
        check(optin(Some(stop)), opt(true));
    }
    for resume in ["RESUME NOTIFICATIONS", "RESUME_NOTIFICATIONS", "resume"] {
        check(optin(Some(resume)), opt(false));
    }
    // A first opt-in carries no status: the person asked for marketing messages.
    check(optin(None), opt(false));
    check(optin(Some("PAUSE")), Event::Ignored(Ignored::Unknown));
}

#[test]
fn what_cannot_be_used_is_counted_not_fatal() {
    let ignored = |kind| Event::Ignored(kind);
    // A guest user known only by user_ref.
    check(
        json!({"sender": {"user_ref": "UR"}, "recipient": {"id": PAGE}, "timestamp": 1,
            "postback": {"title": "t", "payload": "p"}}),
        ignored(Ignored::NoSender),
    );
    check(
        from_user("delivery", json!({"mids": ["m"]})),
        ignored(Ignored::Malformed),
    );
    check(
        from_user("read", json!({"watermark": "soon"})),
        ignored(Ignored::Malformed),
    );
    check(
        from_user("read", json!({"watermark": -5})),
        ignored(Ignored::Malformed),
    );
    check(
        from_user("read", json!({"watermark": i64::MAX})),
        ignored(Ignored::Malformed),
    );
    check(
        from_user("message_edit", json!({"mid": "m", "text": "x"})),
        ignored(Ignored::Unknown),
    );
    check(
        from_user("pass_thread_control", json!({"new_owner_app_id": "1"})),
        ignored(Ignored::Unknown),
    );
    check(
        from_user(
            "optin",
            json!({"type": "one_time_notif_req", "payload": "p"}),
        ),
        ignored(Ignored::Unknown),
    );
    check(json!("not an object"), ignored(Ignored::Malformed));
}

#[test]
fn all_entries_all_items_and_standby() {
    let raw = json!({"object": "page", "entry": [
        {"id": PAGE, "time": 10, "messaging": [
            from_user("message", json!({"mid": "m_1"})),
            from_user("read", json!({"watermark": 3})),
        ]},
        {"id": "1000000002", "time": 20, "standby": [
            {"sender": {"id": "9"}, "recipient": {"id": "1000000002"},
             "message": {"mid": "m_2"}},
        ]},
        {"id": PAGE, "time": 30, "changes": [{"field": "feed", "value": {}}]},
        "junk",
    ]});
    let events = parse(&serde_json::to_vec(&raw).unwrap(), FALLBACK, NO_MAX_AGE).unwrap();
    let kinds: Vec<&str> = events.iter().map(Event::kind).collect();
    assert_eq!(
        kinds,
        ["message", "read", "message", "unknown", "malformed"],
        "{events:?}"
    );
    // No timestamp: the entry's time.
    assert_eq!(
        events[2],
        Event::Inbound {
            action: Action::Message,
            page: "1000000002".into(),
            psid: "9".into(),
            at_ms: 20,
            reference: None,
            mid: Some("m_2".into()),
            cue: Cue::default(),
        }
    );
}

#[test]
fn ids_and_times_in_other_shapes() {
    // Numeric IDs, string timestamps (Meta's own examples write them so), no entry id.
    let raw = json!({"object": "page", "entry": [{"messaging": [
        {"sender": {"id": 2_000_000_001_u64}, "recipient": {"id": 1_000_000_001_u64},
         "timestamp": "1458692752478", "message": {"mid": "m"}}
    ]}]});
    let events = parse(&serde_json::to_vec(&raw).unwrap(), FALLBACK, NO_MAX_AGE).unwrap();
    assert_eq!(events, [inbound(Action::Message, None, Some("m"))]);
    // Neither a timestamp nor an entry time: the time the webhook received it.
    let raw = json!({"object": "page", "entry": [{"id": PAGE, "messaging": [
        {"sender": {"id": PSID}, "referral": {"ref": "r"}}
    ]}]});
    let events = parse(&serde_json::to_vec(&raw).unwrap(), FALLBACK, NO_MAX_AGE).unwrap();
    assert!(matches!(
        events[..],
        [Event::Inbound {
            at_ms: FALLBACK,
            ..
        }]
    ));
}

#[test]
fn poison() {
    let check = |raw: &[u8], expected: &str| {
        let reason = parse(raw, FALLBACK, NO_MAX_AGE).expect_err("poison");
        assert!(reason.starts_with(expected), "{reason}");
        assert!(!reason.contains("line"), "{reason}");
    };
    check(b"{oops", "not JSON");
    check(b"", "not JSON");
    check(b"[1]", "not a page webhook: the body is not a JSON object");
    check(
        br#"{"object":"instagram","entry":[]}"#,
        "not a page webhook: object is \"instagram\"",
    );
    check(br#"{"entry":[]}"#, "not a page webhook: no `object`");
    check(br#"{"object":"page"}"#, "not a page webhook: `entry`");
    check(
        br#"{"object":"page","entry":{}}"#,
        "not a page webhook: `entry`",
    );
    // An empty batch is a page webhook with nothing in it.
    assert_eq!(
        parse(br#"{"object":"page","entry":[]}"#, FALLBACK, NO_MAX_AGE).unwrap(),
        []
    );
}

#[test]
fn meta_escaped_unicode_reads_back() {
    let raw = br#"{"object":"page","entry":[{"id":"1","time":1,"messaging":[{"sender":{"id":"2"},"recipient":{"id":"1"},"timestamp":3,"message":{"mid":"m","text":"\u00e4\u00f6\u00e5 a\/b","referral":{"ref":"\u00e4x"}}}]}]}"#;
    let events = parse(raw, FALLBACK, NO_MAX_AGE).unwrap();
    assert!(matches!(
        &events[..],
        [Event::Inbound { reference: Some(r), .. }] if r == "äx"
    ));
}

#[test]
fn entries_older_than_the_max_age_are_stale() {
    const DAY: i64 = 24 * 3600 * 1000;
    let received = 1_458_692_752_000 + 10 * DAY;
    let entry = |time: i64| {
        json!({"id": PAGE, "time": time, "messaging": [
            from_user("message", json!({"mid": "m1", "text": "hi"})),
            from_user("optin", json!({"type": "notification_messages",
                "notification_messages_status": "STOP_NOTIFICATIONS"})),
        ]})
    };
    let raw = json!({"object": "page", "entry": [
        entry(received - 8 * DAY),
        entry(received - 6 * DAY),
    ]});
    let events = parse(&serde_json::to_vec(&raw).unwrap(), received, 7 * DAY).unwrap();
    let kinds: Vec<&str> = events.iter().map(Event::kind).collect();
    assert_eq!(
        kinds,
        ["stale", "stale", "message", "opt_out"],
        "{events:?}"
    );
}
