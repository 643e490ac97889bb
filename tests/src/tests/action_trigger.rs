//! Triggered campaigns through a real `herald serve` process on each store (SQLite, then
//! PostgreSQL), with RabbitMQ, a worker and the simulator:
//! - an API trigger for three recipients, one without a PSID, sends two messages with their
//!   trigger properties and skips the third; the same call with its `Idempotency-Key`
//!   sends nothing more;
//! - a postback payload in a signed webhook fires its campaign once, though Meta delivers the
//!   webhook twice, rendered with the person's stored profile; a quick reply's payload, a
//!   keyword in a message (any case, a whole word: "menus" is not "menu") and an m.me link's
//!   `ref` fire theirs; a frequency cap stops the keyword's second send;
//! - a `/users/track` event fires a campaign with `delay = "5s"`: nothing before 5 s, then
//!   the message, rendered with the event's properties; the same call made twice fires once;
//! - `once_per = "1h"` stops a second event's send inside the hour; an event two days old
//!   fires nothing;
//! - a delayed campaign's segment filter is read when the delay is over: a cart bought
//!   during it is not reminded of; a campaign deleted during its delay sends nothing;
//! - the campaign's days (`GET /campaigns/{id}/days`, `herald campaign status ID`) and the
//!   trigger metrics count what happened, and the answer matches the OpenAPI document.

use std::process::Stdio;
use std::time::Duration;

use herald_core::Secret;
use herald_sim::SimConfig;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::server_api_openapi::{conform, document};
use super::server_api_rig::{Reply, reply_of};
use crate::bench::free_addr;
use crate::worker_rig::{PAGE, Rig};
use crate::{Running, broker, eventually, herald, herald_ok, sign_webhook};

const APP_SECRET: &str = "action-trigger-app-secret";
const API_TOKEN: &str = "action-trigger-api-token-0123456789abc";
const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn api_triggers_postbacks_and_events_send_once_on_both_stores() {
    if broker().await.is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let sqlite = format!("sqlite://{}", dir.path().join("herald.db").display());
    scenario(Secret::new(sqlite)).await;
    crate::postgres::in_new_schema(scenario).await;
}

/// `herald serve` as a process, and a client of its API.
struct Serve {
    url: String,
    client: reqwest::Client,
    _process: Running,
}

impl Serve {
    async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(API_TOKEN);
        if let Some(body) = body {
            request = request.json(body);
        }
        reply_of(request.send().await.expect("request")).await
    }

    /// POSTs a webhook body signed as Meta signs it.
    async fn webhook(&self, body: &Value) -> u16 {
        let bytes = serde_json::to_vec(body).expect("json");
        self.client
            .post(format!("{}/webhook", self.url))
            .header("content-type", "application/json")
            .header("x-hub-signature-256", sign_webhook(APP_SECRET, &bytes))
            .body(bytes)
            .send()
            .await
            .expect("webhook")
            .status()
            .as_u16()
    }
}

fn campaign(id: &str, messaging_type: &str, text: &str, trigger: Value) -> Value {
    json!({
        "id": id, "page_id": PAGE, "messaging_type": messaging_type,
        "message": {"text": text},
        "delivery": {"window": if messaging_type == "RESPONSE" { "enforce" } else { "off" }},
        "trigger": trigger,
    })
}

/// A counter summed over the days of a `/campaigns/{id}/days` answer (a test running across
/// midnight UTC sees two days).
fn total(days: &Value, path: &[&str]) -> u64 {
    let days = days["days"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    days.iter()
        .map(|day| {
            path.iter()
                .fold(day, |value, key| &value[*key])
                .as_u64()
                .unwrap_or(0)
        })
        .sum()
}

fn event(external_id: &str, at: OffsetDateTime, order: &str) -> Value {
    json!({"events": [{
        "external_id": external_id, "name": "order_shipped",
        "time": at.format(&Rfc3339).expect("time"),
        "properties": {"order_id": order},
    }]})
}

/// Waits for `psid`'s first message, which must read `text` and have been accepted by Graph
/// no sooner than `delay_ms` after `event_ms` (the event that fired it).
async fn delayed_message(rig: &Rig, psid: &str, text: &str, event_ms: i64, delay_ms: i64) {
    let sent = eventually(WAIT, || async { !rig.sim.messages(psid).is_empty() }).await;
    assert!(sent, "{psid}: the delayed message never came");
    let message = &rig.sim.messages(psid)[0];
    assert_eq!(message.body["message"]["text"], text);
    assert!(
        message.accepted_at_ms >= event_ms + delay_ms,
        "{psid}: sent {} ms after the event, before its {delay_ms} ms delay",
        message.accepted_at_ms - event_ms
    );
}

async fn scenario(database: Secret) {
    let Some(rig) = Rig::new("test-actions", SimConfig::default()).await else {
        return;
    };
    let worker = rig.spawn(rig.settings());
    let dir = tempfile::tempdir().expect("dir");
    let addr = free_addr();
    let env = [
        ("HERALD_DATABASE_URL", database.expose()),
        ("HERALD_TOPOLOGY_PREFIX", rig.prefix.as_str()),
        ("HERALD_APP_SECRET", APP_SECRET),
        ("HERALD_VERIFY_TOKEN", "action-trigger-verify"),
        ("HERALD_API_TOKEN", API_TOKEN),
    ];
    let log = std::fs::File::create(dir.path().join("serve.log")).expect("log");
    let process = herald(&env)
        .args(["serve", "--addr", &addr])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start serve");
    let serve = Serve {
        url: format!("http://{addr}"),
        client: reqwest::Client::new(),
        _process: Running(process),
    };
    let ready = eventually(WAIT, || async {
        let reply = serve
            .client
            .get(format!("{}/readyz", serve.url))
            .send()
            .await;
        reply.is_ok_and(|r| r.status().is_success())
    })
    .await;
    assert!(ready, "herald serve never became ready");

    let users = "external_id,messenger_id,first_name\nu1,601,Ana\nu2,602,Bo\nu3,603,Cy\n\
                 u4,604,Di\nu5,605,Ed\nu6,606,Fa\nu7,607,Gus\nu8,,Hal\nu9,609,Ivy\n\
                 u10,610,Jo\n";
    let imported = serve
        .client
        .post(format!("{}/users/import?page_id={PAGE}", serve.url))
        .bearer_auth(API_TOKEN)
        .header("content-type", "text/csv")
        .body(users)
        .send()
        .await
        .expect("import");
    assert_eq!(imported.status(), 200);
    let welcome = campaign(
        "welcome",
        "RESPONSE",
        "Welcome {{ first_name }}",
        json!({"postback": "GET_STARTED"}),
    );
    let shipped = campaign(
        "shipped",
        "UPDATE",
        "Order {{ trigger.order_id }} shipped",
        json!({"event": "order_shipped", "delay": "5s", "once_per": "1h"}),
    );
    let yes = campaign(
        "yes",
        "RESPONSE",
        "Yes, {{ first_name }} ({{ trigger.payload }})",
        json!({"quick_reply": "YES"}),
    );
    // Every time (`once_per = "0s"`), but at most once a day by its frequency cap.
    let mut menu = campaign(
        "menu",
        "RESPONSE",
        "The menu",
        json!({"keyword": "Menu", "once_per": "0s"}),
    );
    menu["delivery"]["frequency_cap"] = json!({"max": 1, "per": "24h"});
    let summer = campaign(
        "summer",
        "RESPONSE",
        "Summer sale ({{ trigger.ref }})",
        json!({"ref": "summer-26"}),
    );
    // Reminds of a cart still open 4 s after it was left; `gone` is deleted before its delay.
    let mut cart = campaign(
        "cart",
        "UPDATE",
        "{{ first_name }}, your cart",
        json!({"event": "cart_left", "delay": "4s"}),
    );
    cart["segment"] = json!({"filter": [{"attribute": "cart", "op": "eq", "value": "open"}]});
    let gone = campaign(
        "gone",
        "UPDATE",
        "Never sent",
        json!({"event": "cart_left", "delay": "4s"}),
    );
    let receipt = json!({"id": "receipt", "page_id": PAGE, "messaging_type": "UPDATE",
        "message": {"text": "{{ first_name }}, receipt {{ trigger.order_id }}"},
        "delivery": {"window": "off"}});
    for (id, document) in [
        ("receipt", &receipt),
        ("welcome", &welcome),
        ("shipped", &shipped),
        ("yes", &yes),
        ("menu", &menu),
        ("summer", &summer),
        ("cart", &cart),
        ("gone", &gone),
    ] {
        let put = serve
            .call("PUT", &format!("/campaigns/{id}"), Some(document))
            .await;
        assert_eq!(put.status, 200, "{}", put.text);
    }
    // A triggered campaign is not started as a run.
    let run = serve.call("POST", "/campaigns/runs", Some(&shipped)).await;
    assert_eq!(run.status, 422, "{}", run.text);
    assert!(run.text.contains("[trigger]"), "{}", run.text);

    // An API trigger for three recipients, one without a PSID: two messages with their
    // properties and one `skipped`; the same call with its key again publishes nothing.
    let recipients = json!({"recipients": [
        {"external_user_id": "u6", "trigger_properties": {"order_id": "R-6"}},
        {"external_user_id": "u7", "trigger_properties": {"order_id": "R-7"}},
        {"external_user_id": "u8", "trigger_properties": {"order_id": "R-8"}},
    ]});
    let mut dispatch = Value::Null;
    for expected in [201, 200] {
        let answer = serve
            .client
            .post(format!("{}/campaigns/receipt/trigger", serve.url))
            .bearer_auth(API_TOKEN)
            .header("idempotency-key", "receipts-1")
            .json(&recipients)
            .send()
            .await
            .expect("trigger");
        assert_eq!(answer.status().as_u16(), expected);
        let body: Value = answer.json().await.expect("dispatch");
        if expected == 201 {
            assert_eq!(body["published"], 2, "{body}");
            assert_eq!(body["skipped"]["blank_psid"], 1, "{body}");
            dispatch = body;
        } else {
            assert_eq!(body["dispatch_id"], dispatch["dispatch_id"], "{body}");
            assert_eq!(body["published"], 0, "{body}");
        }
    }
    let receipts = eventually(WAIT, || async {
        !rig.sim.messages("606").is_empty() && !rig.sim.messages("607").is_empty()
    })
    .await;
    assert!(receipts, "the API trigger sent nothing");
    for (psid, text) in [("606", "Fa, receipt R-6"), ("607", "Gus, receipt R-7")] {
        assert_eq!(rig.sim.messages(psid)[0].body["message"]["text"], text);
    }

    // A postback, delivered twice by Meta: one message, with the stored profile.
    let now_ms =
        i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).expect("now");
    let postback = json!({"object": "page", "entry": [{"id": PAGE, "time": now_ms,
        "messaging": [{"sender": {"id": "601"}, "recipient": {"id": PAGE}, "timestamp": now_ms,
            "postback": {"mid": "m_get_started_1", "title": "Get Started",
                "payload": "GET_STARTED"}}]}]});
    assert_eq!(serve.webhook(&postback).await, 200);
    assert_eq!(serve.webhook(&postback).await, 200);
    let welcomed = eventually(WAIT, || async { !rig.sim.messages("601").is_empty() }).await;
    assert!(welcomed, "the postback sent nothing");
    assert_eq!(
        rig.sim.messages("601")[0].body["message"]["text"],
        "Welcome Ana"
    );

    // A quick reply, a keyword inside a message, an m.me link's ref: each its campaign, once.
    let item = |psid: &str, key: &str, value: Value| json!({"sender": {"id": psid}, "recipient": {"id": PAGE}, "timestamp": now_ms, key: value});
    let actions = json!({"object": "page", "entry": [{"id": PAGE, "time": now_ms, "messaging": [
        item("603", "message", json!({"mid": "m_yes", "text": "Yes",
            "quick_reply": {"payload": "YES"}})),
        item("604", "message", json!({"mid": "m_menu", "text": "show me the MENU, please"})),
        item("605", "referral", json!({"ref": "summer-26", "source": "SHORTLINK",
            "type": "OPEN_THREAD"})),
        item("602", "message", json!({"mid": "m_menus", "text": "menus?"})),
    ]}]});
    assert_eq!(serve.webhook(&actions).await, 200);
    let answered = eventually(WAIT, || async {
        ["603", "604", "605"]
            .iter()
            .all(|psid| !rig.sim.messages(psid).is_empty())
    })
    .await;
    assert!(answered, "a quick reply, keyword or ref sent nothing");
    for (psid, text) in [
        ("603", "Yes, Cy (YES)"),
        ("604", "The menu"),
        ("605", "Summer sale (summer-26)"),
    ] {
        assert_eq!(rig.sim.messages(psid)[0].body["message"]["text"], text);
    }
    // The keyword again: its frequency cap skips it.
    let again = json!({"object": "page", "entry": [{"id": PAGE, "time": now_ms, "messaging": [
        item("604", "message", json!({"mid": "m_menu_2", "text": "menu"})),
    ]}]});
    assert_eq!(serve.webhook(&again).await, 200);
    let capped = eventually(WAIT, || async {
        let days = serve.call("GET", "/campaigns/menu/days", None).await;
        total(&days.json, &["skipped", "frequency_cap"]) == 1
    })
    .await;
    let menu_days = serve.call("GET", "/campaigns/menu/days", None).await;
    assert!(capped, "{}", menu_days.text);
    assert_eq!(total(&menu_days.json, &["fired"]), 2, "{}", menu_days.text);

    // An event with a 5 s delay, the same call made twice: one message, not before 5 s.
    let sent_at = OffsetDateTime::now_utc();
    let first = event("u2", sent_at, "A-7");
    for _ in 0..2 {
        let tracked = serve.call("POST", "/users/track", Some(&first)).await;
        assert_eq!(tracked.status, 200, "{}", tracked.text);
    }
    // Two carts left open; during the delay one is bought and `gone` is deleted.
    let serve = &serve;
    let track = |body: Value| async move {
        let tracked = serve.call("POST", "/users/track", Some(&body)).await;
        assert_eq!(tracked.status, 200, "{}", tracked.text);
    };
    track(json!({"attributes": [{"external_id": "u9", "cart": "open"},
        {"external_id": "u10", "cart": "open"}]}))
    .await;
    let cart_ms = herald_core::clock::now_ms();
    track(json!({"events": [
        {"external_id": "u9", "name": "cart_left", "time": sent_at.format(&Rfc3339).expect("time")},
        {"external_id": "u10", "name": "cart_left", "time": sent_at.format(&Rfc3339).expect("time")},
    ]}))
    .await;
    track(json!({"attributes": [{"external_id": "u10", "cart": "bought"}]})).await;
    let deleted = serve.call("DELETE", "/campaigns/gone", None).await;
    assert!(deleted.status < 300, "{} {}", deleted.status, deleted.text);
    // Not before the delay: the first message's acceptance by Graph is 5 s after the event.
    let sent_ms = i64::try_from(sent_at.unix_timestamp_nanos() / 1_000_000).expect("ms");
    delayed_message(&rig, "602", "Order A-7 shipped", sent_ms, 5_000).await;
    delayed_message(&rig, "609", "Ivy, your cart", cart_ms, 4_000).await;
    let cart_days = eventually(WAIT, || async {
        let days = serve.call("GET", "/campaigns/cart/days", None).await;
        total(&days.json, &["filtered"]) == 1 && total(&days.json, &["published"]) == 1
    })
    .await;
    let days = serve.call("GET", "/campaigns/cart/days", None).await;
    assert!(
        cart_days,
        "the bought cart was not filtered out: {}",
        days.text
    );

    // Another order inside the hour: `once_per` sends nothing.
    let second = event("u2", sent_at + time::Duration::seconds(1), "A-8");
    let tracked = serve.call("POST", "/users/track", Some(&second)).await;
    assert_eq!(tracked.status, 200, "{}", tracked.text);
    // An order of two days ago (a backfill): counted, but it fires nothing.
    let old = event("u3", sent_at - time::Duration::days(2), "A-1");
    let tracked = serve.call("POST", "/users/track", Some(&old)).await;
    assert_eq!(tracked.status, 200, "{}", tracked.text);
    assert_eq!(tracked.json["events_processed"], 1, "{}", tracked.text);

    // The days: both events fired, one published, one skipped by `once_per`.
    let counted = eventually(WAIT, || async {
        let days = serve.call("GET", "/campaigns/shipped/days", None).await;
        let days = &days.json;
        total(days, &["fired"]) == 2
            && total(days, &["skipped", "once_per"]) == 1
            && total(days, &["results", "sent"]) == 1
    })
    .await;
    let days = serve.call("GET", "/campaigns/shipped/days", None).await;
    assert!(counted, "{}", days.text);
    assert_eq!(
        (
            total(&days.json, &["published"]),
            total(&days.json, &["pending"])
        ),
        (1, 0)
    );
    assert!(
        days.json["days"][0]["run_id"]
            .as_str()
            .is_some_and(|r| r.starts_with("shipped@"))
    );
    conform(&document(), "get", "/campaigns/{campaign_id}/days", &days);
    let welcome_days = serve.call("GET", "/campaigns/welcome/days", None).await;
    assert_eq!(
        total(&welcome_days.json, &["fired"]),
        1,
        "{}",
        welcome_days.text
    );
    assert_eq!(total(&welcome_days.json, &["published"]), 1);
    let table = herald_ok(dir.path(), &env, &["campaign", "status", "shipped"]).await;
    assert!(
        table.contains("trigger: event \"order_shipped\""),
        "{table}"
    );
    assert!(table.contains("once_per=1"), "{table}");

    // The metrics: fires by kind, skips by reason, the latency to enqueue and to send. They
    // follow the store by moments (a result's latency is observed when serve records it, the
    // gauges every dispatcher pass), so they are read until they agree or `WAIT` is over.
    let expected = [
        "herald_trigger_fired_total{kind=\"postback\"} 1",
        "herald_trigger_fired_total{kind=\"event\"} 6",
        "herald_trigger_fired_total{kind=\"quick_reply\"} 1",
        "herald_trigger_fired_total{kind=\"keyword\"} 2",
        "herald_trigger_skipped_total{reason=\"frequency_cap\"} 1",
        "herald_trigger_fired_total{kind=\"ref\"} 1",
        "herald_trigger_skipped_total{reason=\"once_per\"} 1",
        "herald_trigger_skipped_total{reason=\"duplicate\"} 1",
        "herald_trigger_skipped_total{reason=\"stale_event\"} 1",
        "herald_trigger_skipped_total{reason=\"campaign_deleted\"} 2",
        "herald_trigger_skipped_total{reason=\"filtered\"} 1",
        "herald_trigger_enqueued_total 6",
        "herald_trigger_latency_seconds_count{stage=\"enqueued\"} 6",
        "herald_trigger_latency_seconds_count{stage=\"sent\"} 6",
        "herald_trigger_pending 0",
        "herald_trigger_waiting 0",
    ];
    let read_metrics = || async {
        serve
            .client
            .get(format!("{}/metrics", serve.url))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    };
    eventually(WAIT, || async {
        let metrics = read_metrics().await;
        expected.iter().all(|line| metrics.contains(line))
    })
    .await;
    let metrics = read_metrics().await;
    for line in expected {
        assert!(metrics.contains(line), "no {line:?} in\n{metrics}");
    }

    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(rig.sim.messages("601").len(), 1, "the postback sent twice");
    assert_eq!(
        rig.sim.messages("602").len(),
        1,
        "once_per or the repeated call sent twice"
    );
    assert!(
        rig.sim.messages("610").is_empty(),
        "the bought cart was reminded of"
    );
    for psid in ["603", "604", "605", "606", "607", "609"] {
        assert_eq!(rig.sim.messages(psid).len(), 1, "{psid} was sent twice");
    }
    worker.stop().await;
    rig.cleanup().await;
}
