//! Parsing the example campaign, defaults, JSON documents and round trips; the table of
//! validation problems lives in `problems`.

mod problems;

use time::macros::datetime;

use super::*;
use crate::filter::{Filter, Match, Op, Operand};
use crate::user::Attribute;

/// The smallest campaign file every version must accept (ARCHITECTURE.md, "The campaign file").
const SMALLEST: &str = super::EXAMPLE_TOML;
/// A message a `UTILITY` campaign may send: a template.
const UTILITY_MESSAGE: &str = "[message.template]\nname = \"order_update\"";

#[test]
fn smallest_campaign_parses_as_written() {
    let campaign = Campaign::from_toml(SMALLEST).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(campaign.id(), "welcome-back");
    assert_eq!(campaign.page_id(), "1000000001");
    assert_eq!(campaign.messaging_type(), MessagingType::Update);
    assert_eq!(campaign.tag(), None);
    assert_eq!(campaign.notification_type(), None);
    assert_eq!(
        campaign.message(),
        &serde_json::json!({
            "text": "Hi {{ first_name | default: 'there' }}, your code is {{ promo_code }}."
        })
    );
    assert_eq!(
        campaign.segment().source,
        SegmentSource::File("users.csv".into())
    );
    assert_eq!(campaign.segment().filter.matching, Match::All);
    assert_eq!(
        campaign.segment().filter.filters,
        [Filter::Condition(crate::filter::Condition {
            attribute: Attribute::Other("country".into()),
            op: Op::Eq(Operand::new("BR")),
        })]
    );
    assert_eq!(
        *campaign.delivery(),
        Delivery {
            rate_per_sec: 250,
            max_attempts: 5,
            expires_after: std::time::Duration::from_secs(6 * 3600),
            window: WindowPolicy::Enforce,
            priority: Some(Priority::Normal),
            quiet_hours: None,
            frequency_cap: None,
        }
    );
    assert_eq!(campaign.priority(), Priority::Normal, "UPDATE is bulk");
    let user = User::new("u1", "42")
        .with_attr("country", "BR")
        .with_attr("promo_code", "X1");
    assert!(campaign.matches(&user, datetime!(2026-05-01 0:00 UTC)));
    let body = campaign.render_request(&user, "run1:u1").unwrap();
    assert_eq!(
        String::from_utf8(body).unwrap(),
        r#"{"recipient":{"id":"42"},"messaging_type":"UPDATE","message":{"text":"Hi there, your code is X1.","metadata":"run1:u1"}}"#
    );
}

#[test]
fn defaults_fill_what_the_file_leaves_out() {
    let source =
        "id = \"a\"\npage_id = \"1\"\nmessaging_type = \"RESPONSE\"\n[message]\ntext = \"hi\"\n";
    let campaign = Campaign::from_toml(source).unwrap();
    assert_eq!(*campaign.delivery(), Delivery::default());
    assert_eq!(campaign.delivery().rate_per_sec, 250);
    assert_eq!(campaign.delivery().max_attempts, 5);
    assert_eq!(campaign.delivery().expires_after.as_secs(), 24 * 3600);
    assert_eq!(campaign.delivery().window, WindowPolicy::Enforce);
    assert_eq!(*campaign.segment(), Segment::default());
    assert_eq!(campaign.segment().source, SegmentSource::Unset);
    assert_eq!(
        campaign.priority(),
        Priority::High,
        "RESPONSE answers the person"
    );
}

/// `[schedule]` and quiet hours: read, written back the same, and each user's zone taken from
/// the attribute the file names (a value that is no zone falls back to the default).
#[test]
fn schedules_and_quiet_hours_read_and_round_trip() {
    let source = SMALLEST.to_owned()
        + "[schedule]\nlocal_time = \"10:00\"\ntimezone_attribute = \"tz\"\n\
           default_timezone = \"America/Sao_Paulo\"\n";
    let source = source.replacen(
        "priority = \"normal\"",
        "priority = \"normal\"\nquiet_hours = { start = \"21:00\", end = \"08:00\" }\n\
         frequency_cap = { max = 2, per = \"7d\" }",
        1,
    );
    let campaign = Campaign::from_toml(&source).unwrap_or_else(|e| panic!("{e}"));
    let schedule = campaign.schedule();
    assert_eq!(
        schedule.local_time.map(|t| t.to_string()).as_deref(),
        Some("10:00")
    );
    assert_eq!(schedule.timezone_attribute, "tz");
    let quiet = campaign.delivery().quiet_hours.expect("quiet hours");
    assert_eq!(
        (quiet.start.to_string(), quiet.end.to_string()),
        ("21:00".into(), "08:00".into())
    );
    let cap = campaign.delivery().frequency_cap.expect("cap");
    assert_eq!((cap.max, cap.per.as_secs()), (2, 7 * 86_400));
    let again = Campaign::from_json(&campaign.to_json().to_string()).unwrap();
    assert_eq!(again, campaign, "JSON round trip");
    let tokyo = User::new("u", "1").with_attr("tz", "Asia/Tokyo");
    assert_eq!(campaign.user_zone(&tokyo).0, "Asia/Tokyo");
    let nowhere = User::new("u", "1").with_attr("tz", "Atlantis/Capital");
    assert_eq!(campaign.user_zone(&nowhere).0, "America/Sao_Paulo");
    assert_eq!(
        campaign.user_zone(&User::new("u", "1")).0,
        "America/Sao_Paulo"
    );
    assert_eq!(
        Campaign::from_toml(SMALLEST).unwrap().user_zone(&tokyo).0,
        "UTC"
    );

    for (from, to, path) in [
        (
            "local_time = \"10:00\"",
            "local_time = \"25:00\"",
            "schedule.local_time",
        ),
        (
            "\"America/Sao_Paulo\"",
            "\"Mars/Base\"",
            "schedule.default_timezone",
        ),
        (
            "local_time = \"10:00\"",
            "send_later = true",
            "schedule.send_later",
        ),
        ("end = \"08:00\"", "end = \"21:00\"", "delivery.quiet_hours"),
        (
            "end = \"08:00\"",
            "stop = \"08:00\"",
            "delivery.quiet_hours.end",
        ),
        ("max = 2", "max = 0", "delivery.frequency_cap.max"),
        ("per = \"7d\"", "per = \"1s\"", "delivery.frequency_cap.per"),
        (
            "per = \"7d\"",
            "per = \"often\"",
            "delivery.frequency_cap.per",
        ),
        (
            "local_time = \"10:00\"",
            "cron = \"0 25 * * *\"",
            "schedule.cron",
        ),
        (
            "local_time = \"10:00\"",
            "send_at = \"tomorrow\"",
            "schedule.send_at",
        ),
        (
            "local_time = \"10:00\"",
            "timezone = \"Moon/Base\"",
            "schedule.timezone",
        ),
        (
            "local_time = \"10:00\"",
            "send_at = \"2026-12-24T10:00:00Z\"\ncron = \"0 10 * * *\"",
            "schedule.cron",
        ),
    ] {
        let wrong = source.replacen(from, to, 1);
        let error = Campaign::from_toml(&wrong).unwrap_err().to_string();
        assert!(error.contains(path), "{to}: {error}");
    }
}

/// `send_at` and `cron`: read, written back the same, and the next start computed on the
/// schedule's zone.
#[test]
fn starts_later_read_and_round_trip() {
    let now = datetime!(2026-12-07 09:00 UTC);
    let cron = SMALLEST.to_owned()
        + "[schedule]\ncron = \"0 10 * * MON\"\ntimezone = \"America/Sao_Paulo\"\n";
    let campaign = Campaign::from_toml(&cron).unwrap_or_else(|e| panic!("{e}"));
    assert!(campaign.schedule().starts_later());
    assert_eq!(
        campaign.schedule().next_start(now),
        Some(datetime!(2026-12-07 13:00 UTC))
    );
    assert_eq!(
        Campaign::from_json(&campaign.to_json().to_string()).unwrap(),
        campaign
    );
    let once = SMALLEST.to_owned() + "[schedule]\nsend_at = \"2026-12-24T10:00:00-03:00\"\n";
    let campaign = Campaign::from_toml(&once).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        campaign.schedule().next_start(now),
        Some(datetime!(2026-12-24 13:00 UTC))
    );
    assert_eq!(
        campaign
            .schedule()
            .next_start(datetime!(2026-12-25 00:00 UTC)),
        None
    );
    assert_eq!(
        Campaign::from_json(&campaign.to_json().to_string()).unwrap(),
        campaign
    );
    assert!(
        !Campaign::from_toml(SMALLEST)
            .unwrap()
            .schedule()
            .starts_later()
    );
}

/// `[trigger]`: each kind read and written back the same; every wrong shape reported.
#[test]
fn triggers_read_and_round_trip() {
    for (table, kind, key, delay, once_per) in [
        (
            "postback = \"GET_STARTED\"",
            TriggerKind::Postback,
            "GET_STARTED",
            0,
            None,
        ),
        (
            "event = \"order_shipped\"\ndelay = \"1h\"\nonce_per = \"7d\"",
            TriggerKind::Event,
            "order_shipped",
            3600,
            Some(7 * 86_400),
        ),
        (
            "quick_reply = \"YES\"\nonce_per = \"0s\"",
            TriggerKind::QuickReply,
            "YES",
            0,
            Some(0),
        ),
        (
            "ref = \"summer sale\"",
            TriggerKind::Ref,
            "summer sale",
            0,
            None,
        ),
        (
            "keyword = \" Menu \"",
            TriggerKind::Keyword,
            "menu",
            0,
            None,
        ),
    ] {
        let source = format!("{SMALLEST}[trigger]\n{table}\n");
        let campaign = Campaign::from_toml(&source).unwrap_or_else(|e| panic!("{table}: {e}"));
        let trigger = campaign.trigger().expect("a trigger");
        assert_eq!(trigger.kind, kind, "{table}");
        assert_eq!(trigger.key, key, "{table}");
        assert_eq!(trigger.delay.as_secs(), delay, "{table}");
        assert_eq!(trigger.once_per.map(|p| p.as_secs()), once_per, "{table}");
        let again = Campaign::from_json(&campaign.to_json().to_string()).unwrap();
        assert_eq!(again, campaign, "{table}: JSON round trip");
    }
    assert!(Campaign::from_toml(SMALLEST).unwrap().trigger().is_none());
    for (table, path, words) in [
        ("delay = \"1h\"", "trigger", "needs what to wait for"),
        (
            "event = \"a\"\npostback = \"b\"",
            "trigger",
            "not event and postback",
        ),
        ("event = \"  \"", "trigger.event", "must not be blank"),
        (
            "event = \"a\"\ndelay = \"8d\"",
            "trigger.delay",
            "at most 7d",
        ),
        ("event = \"a\"\nonce_per = \"soon\"", "trigger.once_per", ""),
        ("event = \"a\"\nwhen = \"now\"", "trigger.when", "unknown"),
        ("event = 3", "trigger.event", "expected a string"),
    ] {
        let source = format!("{SMALLEST}[trigger]\n{table}\n");
        let error = Campaign::from_toml(&source).unwrap_err().to_string();
        assert!(
            error.contains(path) && error.contains(words),
            "{table}: {error}"
        );
    }
    let scheduled = format!(
        "{SMALLEST}[schedule]\nsend_at = \"2026-12-24T10:00:00Z\"\n[trigger]\nevent = \"a\"\n"
    );
    let error = Campaign::from_toml(&scheduled).unwrap_err().to_string();
    assert!(error.contains("do not apply"), "{error}");
}

/// (messaging type, `priority` line, lane): the file's word wins, else the messaging type's.
#[test]
fn priority_follows_the_file_then_the_messaging_type() {
    for (messaging_type, line, expected) in [
        ("RESPONSE", "", Priority::High),
        ("UTILITY", "", Priority::High),
        ("UPDATE", "", Priority::Normal),
        ("UPDATE", "priority = \"high\"", Priority::High),
        ("RESPONSE", "priority = \"normal\"", Priority::Normal),
    ] {
        let source = format!(
            "id = \"a\"\npage_id = \"1\"\nmessaging_type = \"{messaging_type}\"\n\
             [message]\ntext = \"hi\"\n[delivery]\n{line}\n"
        );
        let source = if messaging_type == "UTILITY" {
            source.replace("[message]\ntext = \"hi\"", UTILITY_MESSAGE)
        } else {
            source
        };
        let campaign = Campaign::from_toml(&source).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(campaign.priority(), expected, "{messaging_type} {line}");
        let again = Campaign::from_json(&campaign.to_json().to_string()).unwrap();
        assert_eq!(again, campaign, "{messaging_type} {line}: JSON round trip");
    }
    let wrong = SMALLEST.replacen("priority = \"normal\"", "priority = \"urgent\"", 1);
    let error = Campaign::from_toml(&wrong).unwrap_err().to_string();
    assert!(error.contains("delivery.priority"), "{error}");
}

#[test]
fn segment_file_can_be_overridden() {
    let mut campaign = Campaign::from_toml(SMALLEST).unwrap();
    campaign.set_segment_file("other.jsonl");
    assert_eq!(
        campaign.segment().source,
        SegmentSource::File("other.jsonl".into())
    );
}

const BASE: &str = r#"id = "welcome-back"
page_id = "1000000001"
messaging_type = "UPDATE"

[message]
text = "Hi {{ first_name | default: 'there' }}"
quick_replies = [
  { content_type = "text", title = "Yes", payload = "YES" },
  { content_type = "text", title = "No", payload = "NO" },
]

[segment]
file = "users.csv"
match = "all"
[[segment.filter]]
attribute = "country"
op = "eq"
value = "BR"
[[segment.filter]]
attribute = "age"
op = "gte"
value = 18
[[segment.filter]]
group = { match = "any", filter = [
  { attribute = "plan", op = "in", value = ["pro", "team"] },
  { attribute = "last_inbound_at", op = "within", value = "7d" },
] }

[delivery]
rate_per_sec = 250
max_attempts = 5
expires_after = "6h"
window = "enforce"
"#;

#[test]
fn base_document_is_valid() {
    let campaign = Campaign::from_toml(BASE).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(campaign.segment().filter.filters.len(), 3);
}

const JSON: &str = r#"{
  "id": "welcome-back",
  "page_id": "1000000001",
  "messaging_type": "MESSAGE_TAG",
  "tag": "HUMAN_AGENT",
  "notification_type": "NO_PUSH",
  "message": { "text": "Hi {{ first_name | default: \"there\" }}" },
  "segment": {
    "source": "store",
    "match": "any",
    "filter": [
      { "attribute": "psid", "op": "exists" },
      { "group": { "filter": [ { "attribute": "age", "op": "lt", "value": 18.5 } ] } }
    ]
  },
  "delivery": { "rate_per_sec": 10, "max_attempts": 20, "expires_after": "1h30m", "window": "off" }
}"#;

#[test]
fn json_documents_parse_like_toml() {
    let campaign = Campaign::from_json(JSON).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(campaign.tag(), Some(MessageTag::HumanAgent));
    assert_eq!(campaign.notification_type(), Some(NotificationType::NoPush));
    assert_eq!(campaign.segment().source, SegmentSource::Store);
    assert_eq!(campaign.segment().filter.matching, Match::Any);
    assert_eq!(campaign.delivery().expires_after.as_secs(), 5400);
    assert_eq!(campaign.delivery().window, WindowPolicy::Off);
    let under_age = User::new("u", "1").with_attr("age", "17");
    assert!(campaign.matches(&under_age, datetime!(2026-05-01 0:00 UTC)));
}

#[test]
fn json_problems_have_paths_but_no_lines() {
    let check = |from: &str, to: &str, path: &str, code: u8| {
        let source = JSON.replacen(from, to, 1);
        let errors = Campaign::from_json(&source).unwrap_err();
        let problems = errors.problems();
        assert_eq!(problems.len(), 1, "{errors}");
        assert_eq!(problems[0].path, path, "{errors}");
        assert_eq!(problems[0].line_col, None);
        assert_eq!(errors.exit_code(), code, "{errors}");
    };
    check(
        "\"max_attempts\": 20",
        "\"max_attempts\": 30",
        "delivery.max_attempts",
        EXIT_DATA,
    );
    check(
        "\"max_attempts\": 20",
        "\"max_attempts\": null",
        "delivery.max_attempts",
        EXIT_USAGE,
    );
    check(
        "\"window\": \"off\"",
        "\"window\": \"off\", \"x\": 1",
        "delivery.x",
        EXIT_USAGE,
    );
    check(
        "\"match\": \"any\"",
        "\"match\": [\"any\"]",
        "segment.match",
        EXIT_USAGE,
    );
    check(
        "\"op\": \"lt\", \"value\": 18.5",
        "\"op\": \"lt\"",
        "segment.filter[1].group.filter[0].value",
        EXIT_DATA,
    );
    check(
        "\"filter\": [ { \"attribute\": \"age\", \"op\": \"lt\", \"value\": 18.5 } ]",
        "\"filter\": []",
        "segment.filter[1].group.filter",
        EXIT_DATA,
    );
    check(
        "\"HUMAN_AGENT\"",
        "\"CONFIRMED_EVENT_UPDATE\"",
        "tag",
        EXIT_DATA,
    );
    check(
        "\"message\": { \"text\"",
        "\"message\": { \"quick_replies\": 3, \"text\"",
        "message.quick_replies",
        EXIT_DATA,
    );
}

#[test]
fn to_json_round_trips() {
    for campaign in [
        Campaign::from_toml(SMALLEST).unwrap(),
        Campaign::from_toml(BASE).unwrap(),
        Campaign::from_json(JSON).unwrap(),
    ] {
        let json = campaign.to_json().to_string();
        let again = Campaign::from_json(&json).unwrap_or_else(|e| panic!("{e}\n{json}"));
        assert_eq!(again, campaign, "{json}");
    }
}

#[test]
fn customer_feedback_and_human_agent_are_accepted() {
    for tag in ["HUMAN_AGENT", "CUSTOMER_FEEDBACK"] {
        let source = BASE.replacen(
            "messaging_type = \"UPDATE\"",
            &format!("messaging_type = \"MESSAGE_TAG\"\ntag = \"{tag}\""),
            1,
        );
        let campaign = Campaign::from_toml(&source).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(campaign.tag().map(MessageTag::as_str), Some(tag));
    }
}

#[test]
fn groups_can_be_written_as_table_headers() {
    let source = r#"id = "g"
page_id = "1"
messaging_type = "UTILITY"
[message.template]
name = "order_update"
[segment]
source = "store"
[[segment.filter]]
[segment.filter.group]
match = "any"
[[segment.filter.group.filter]]
attribute = "country"
op = "eq"
value = "BR"
[[segment.filter.group.filter]]
attribute = "signed_up"
op = "older_than"
value = "2w"
"#;
    let campaign = Campaign::from_toml(source).unwrap_or_else(|e| panic!("{e}"));
    let now = datetime!(2026-05-01 0:00 UTC);
    let [Filter::Group(group)] = campaign.segment().filter.filters.as_slice() else {
        panic!("one group expected");
    };
    assert_eq!(group.matching, Match::Any);
    assert!(campaign.matches(&User::new("u", "1").with_attr("country", "BR"), now));
    assert!(campaign.matches(
        &User::new("u", "1").with_attr("signed_up", "2026-01-01"),
        now
    ));
    assert!(!campaign.matches(
        &User::new("u", "1").with_attr("signed_up", "2026-04-30"),
        now
    ));
}
