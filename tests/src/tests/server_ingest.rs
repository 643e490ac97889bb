//! The ingest end to end: signed webhooks POSTed over real HTTP, published by the webhook and
//! consumed by `run_ingest` into SQLite and PostgreSQL (`both_backends!`). Every event kind lands
//! where it should, a webhook delivered twice changes nothing twice, poison goes to `<p>.dead`
//! while the next body is still ingested, and a policy block halts the page on the control log.
//! The rig (`Pipeline`) also runs `run_results`: its tests are in `server_ingest/results.rs`, the
//! real simulator's in `server_ingest/sim.rs`.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use herald_amqp::{Consumer, Headers, Publisher, StreamOffset};
use herald_core::signed_ref::RefKeys;
use herald_core::{
    ControlAction, ControlMessage, DeliveryResult, RESULT_VERSION, ResultStatus, Secret, User,
};
use herald_server::ConsumeError;
use herald_server::ingest::IngestKeys;
use herald_store::{OPTED_OUT_ATTRIBUTE, Store};
use herald_telemetry::Metrics;
use reqwest::StatusCode;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::server_webhook::{APP_SECRET, PAGE, Rig as Web};
use super::store::{Rig, both_backends, on_sqlite, users};
use crate::eventually;

mod batches;
mod refs;
mod results;
mod sim;

both_backends!(
    every_event_kind_lands_in_the_store,
    a_webhook_delivered_twice_changes_nothing_twice,
);

/// The events' time: an hour ago (fixed for the whole test run). Recent, since the ingest
/// ignores entries older than its dedupe retention.
fn t1() -> i64 {
    static AT: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *AT.get_or_init(|| {
        let now = OffsetDateTime::now_utc().unix_timestamp() * 1000;
        now - 3_600_000
    })
}

/// When the campaign's messages were sent.
fn t0() -> i64 {
    t1() - 3_600_000
}
const WAIT: Duration = Duration::from_secs(20);
/// `HERALD_REF_SECRET` of the ingest under test.
const REF_SECRET: &str = "t1=test-ref-secret-0123456789abcdefghij";

/// The ref keys the ingest under test verifies with.
fn ref_keys() -> RefKeys {
    RefKeys::parse(&Secret::new(REF_SECRET)).expect("test ref keys")
}

/// The secrets of the ingest under test: the webhook rig's app secret and `ref_keys()`.
fn keys() -> IngestKeys {
    IngestKeys {
        app_secret: Secret::new(APP_SECRET),
        refs: Some(ref_keys()),
    }
}

/// A ref signed for `external_id` on PAGE, valid for a day from the test events' time.
fn signed(external_id: &str) -> String {
    ref_keys()
        .sign(PAGE, external_id, at(t1()) + time::Duration::days(1))
        .expect("sign")
}

/// The webhook rig plus `run_ingest` and `run_results` on `store`.
struct Pipeline {
    web: Web,
    store: Store,
    metrics: Metrics,
    shutdown: CancellationToken,
    consumers: Vec<JoinHandle<Result<(), ConsumeError>>>,
}

impl Pipeline {
    async fn new(name: &str, store: Store) -> Option<Self> {
        let web = Web::new(name).await?;
        let metrics = Metrics::new();
        let shutdown = CancellationToken::new();
        let ingest = tokio::spawn(herald_server::ingest::run_ingest(
            store.clone(),
            keys(),
            web.amqp.clone(),
            web.topology.clone(),
            metrics.clone(),
            shutdown.clone(),
        ));
        let results = tokio::spawn(herald_server::results::run_results(
            store.clone(),
            web.amqp.clone(),
            web.topology.clone(),
            metrics.clone(),
            shutdown.clone(),
        ));
        Some(Self {
            web,
            store,
            metrics,
            shutdown,
            consumers: vec![ingest, results],
        })
    }

    /// POSTs a signed page webhook with `entries`; it must be accepted.
    async fn post(&self, entries: Value) {
        let body = serde_json::to_vec(&json!({"object": "page", "entry": entries})).expect("json");
        assert_eq!(self.web.post_signed(&body).await, StatusCode::OK);
    }

    /// Waits until the ingest settled `count` bodies in all (processed or poison).
    async fn ingested(&self, count: u64) {
        let settled = || {
            let get = |outcome| {
                self.metrics
                    .consumer_messages
                    .with_label_values(&["ingest", outcome])
                    .get()
            };
            get("processed") + get("poison")
        };
        assert!(
            eventually(WAIT, || async { settled() >= count }).await,
            "the ingest settled {} of {count} bodies",
            settled()
        );
        assert_eq!(settled(), count);
    }

    /// ingest_events{kind, outcome}.
    fn events(&self, kind: &str, outcome: &str) -> u64 {
        self.metrics
            .ingest_events
            .with_label_values(&[kind, outcome])
            .get()
    }

    /// Every user on PAGE, by PSID.
    async fn by_psid(&self) -> BTreeMap<String, User> {
        users(&self.store, PAGE)
            .await
            .into_values()
            .filter_map(|user| Some((user.messenger_id.clone()?, user)))
            .collect()
    }

    /// Publishes raw bytes to `<p>.results` with `routing_key`, confirmed.
    async fn publish_result(&self, body: &[u8], routing_key: &str) {
        let publisher = Publisher::open(&self.web.connection, 16)
            .await
            .expect("publisher");
        let exchange = self.web.topology.results_exchange();
        publisher
            .publish(&exchange, routing_key, body, Headers::new())
            .await
            .expect("publish")
            .await
            .expect("confirmed");
        let _ = publisher.close().await;
    }

    /// The dead-lettered messages so far: (body, reason).
    async fn dead(&self) -> Vec<(Vec<u8>, String)> {
        let queue = self.web.topology.dead_queue();
        let mut consumer = Consumer::start(&self.web.connection, &queue, 100)
            .await
            .expect("consume dead");
        let mut dead = Vec::new();
        while let Ok(Some(Ok(delivery))) =
            tokio::time::timeout(Duration::from_millis(500), consumer.next()).await
        {
            let reason = delivery.headers().reason().unwrap_or_default();
            dead.push((delivery.body().to_vec(), reason));
        }
        // Closing the channel puts them back.
        let _ = consumer.close().await;
        dead
    }

    async fn stop(self) {
        self.shutdown.cancel();
        for consumer in self.consumers {
            consumer
                .await
                .expect("consumer task")
                .expect("consumer stopped cleanly");
        }
        self.web.cleanup().await;
    }
}

/// One page entry holding `items`.
fn entry(items: Vec<Value>) -> Value {
    json!({"id": PAGE, "time": t1(), "messaging": items})
}

/// An item from the person `psid` at `at`: `{key: value}` plus sender, recipient, timestamp.
fn user_item(psid: &str, at: i64, key: &str, value: Value) -> Value {
    json!({"sender": {"id": psid}, "recipient": {"id": PAGE}, "timestamp": at, key: value})
}

/// A message from `psid`; `link_to` puts a signed ref for that external id on it.
fn message(psid: &str, at: i64, mid: &str, link_to: Option<&str>) -> Value {
    message_with_ref(psid, at, mid, link_to.map(signed).as_deref())
}

/// A message from `psid` carrying `reference` as it is (signed or not).
fn message_with_ref(psid: &str, at: i64, mid: &str, reference: Option<&str>) -> Value {
    let mut message = json!({"mid": mid, "text": "hello"});
    if let Some(reference) = reference {
        message["referral"] =
            json!({"ref": reference, "source": "SHORTLINK", "type": "OPEN_THREAD"});
    }
    user_item(psid, at, "message", message)
}

fn marketing(psid: &str, at: i64, status: Option<&str>) -> Value {
    let mut optin = json!({"type": "notification_messages", "title": "Deals",
        "notification_messages_token": "tok", "payload": "p"});
    if let Some(status) = status {
        optin["notification_messages_status"] = json!(status);
    }
    user_item(psid, at, "optin", optin)
}

fn sent(run: &str, user: &str, mid: &str, finished_ms: i64) -> DeliveryResult {
    DeliveryResult {
        v: RESULT_VERSION,
        job_id: format!("{run}:{user}"),
        run_id: run.to_owned(),
        campaign_id: "welcome-back".to_owned(),
        external_id: user.to_owned(),
        page_id: PAGE.to_owned(),
        status: ResultStatus::Sent,
        message_id: Some(mid.to_owned()),
        error: None,
        attempts: 1,
        finished_at: at(finished_ms),
    }
}

fn at(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).expect("a time")
}

async fn every_event_kind_lands_in_the_store(rig: Rig) {
    let Some(pipeline) = Pipeline::new("test-ingest-kinds", rig.store.clone()).await else {
        return;
    };
    let store = &pipeline.store;
    // Two messages a campaign sent, to 201 and 202.
    for (user, psid, mid) in [("ext-a", "201", "m_sent_a"), ("ext-b", "202", "m_sent_b")] {
        let result = sent("r1", user, mid, t0());
        assert!(
            store
                .record_result(&result, Some(psid))
                .await
                .expect("record")
        );
    }
    let items = vec![
        message("201", t1(), "m_1", Some("ext-a")),
        user_item(
            "202",
            t1() + 1,
            "postback",
            json!({"mid": "m_2", "title": "Go", "payload": "GO"}),
        ),
        user_item(
            "203",
            t1() + 2,
            "referral",
            json!({"ref": signed("ext-c"), "source": "SHORTLINK", "type": "OPEN_THREAD"}),
        ),
        user_item("204", t1() + 3, "optin", json!({"ref": signed("ext-d")})),
        user_item(
            "205",
            t1() + 4,
            "reaction",
            json!({"reaction": "love", "action": "react", "mid": "m_sent_b"}),
        ),
        // A first marketing opt-in does not open the window.
        marketing("206", t1() + 5, None),
        marketing("201", t1() + 10, Some("STOP NOTIFICATIONS")),
        // By watermark (sent before it), and by mid with a watermark older than the send.
        user_item(
            "201",
            t1() + 11,
            "delivery",
            json!({"watermark": t0() + 1_000}),
        ),
        user_item(
            "202",
            t1() + 12,
            "delivery",
            json!({"watermark": t0() - 60_000, "mids": ["m_sent_b"]}),
        ),
        user_item("201", t1() + 13, "read", json!({"watermark": t0() + 2_000})),
        json!({"sender": {"id": PAGE}, "recipient": {"id": "201"}, "timestamp": t0(),
            "message": {"is_echo": true, "mid": "m_sent_a", "metadata": "r1:ext-a", "text": "Hi"}}),
        json!({"sender": {"id": PAGE}, "recipient": {"id": "201"}, "timestamp": t1() + 14,
            "message": {"is_echo": true, "mid": "m_human", "text": "a human replied"}}),
        json!({"recipient": {"id": PAGE}, "timestamp": t1() + 15,
            "optin": {"ref": "ext-e", "user_ref": "UR-1"}}),
        user_item(
            "201",
            t1() + 16,
            "message_edit",
            json!({"mid": "m_1", "text": "edited"}),
        ),
    ];
    let standby =
        json!({"id": PAGE, "time": t1(), "standby": [message("207", t1() + 20, "m_7", None)]});
    pipeline.post(json!([entry(items), standby])).await;
    pipeline.ingested(1).await;

    let users = users(store, PAGE).await;
    let ext = |id: &str| users.get(id).unwrap_or_else(|| panic!("{id} in {users:?}"));
    assert_eq!(ext("ext-a").messenger_id.as_deref(), Some("201"));
    assert_eq!(ext("ext-a").last_inbound_at, Some(at(t1())));
    assert_eq!(ext("ext-a").attributes[OPTED_OUT_ATTRIBUTE], "true");
    assert_eq!(ext("ext-c").messenger_id.as_deref(), Some("203"));
    assert_eq!(ext("ext-c").last_inbound_at, Some(at(t1() + 2)));
    assert_eq!(ext("ext-d").messenger_id.as_deref(), Some("204"));
    assert!(
        !users.contains_key("ext-e"),
        "a checkbox user_ref is not a PSID"
    );
    let by_psid = pipeline.by_psid().await;
    for (psid, ms) in [("202", t1() + 1), ("205", t1() + 4), ("207", t1() + 20)] {
        assert_eq!(by_psid[psid].last_inbound_at, Some(at(ms)), "{psid}");
    }
    assert_eq!(
        by_psid["206"].last_inbound_at, None,
        "opting in opens no window"
    );
    assert_eq!(by_psid["206"].attributes[OPTED_OUT_ATTRIBUTE], "false");
    let status = store.run_status("r1").await.expect("status");
    assert_eq!((status.delivered, status.read), (2, 1), "{status:?}");

    for (kind, outcome, count) in [
        ("message", "applied", 2),
        ("postback", "applied", 1),
        ("referral", "applied", 1),
        ("optin", "applied", 1),
        ("reaction", "applied", 1),
        ("opt_in", "applied", 1),
        ("opt_out", "applied", 1),
        ("delivery", "applied", 2),
        ("read", "applied", 1),
        ("echo", "applied", 1),
        ("echo_other", "ignored", 1),
        ("checkbox_optin", "ignored", 1),
        ("unknown", "ignored", 1),
    ] {
        assert_eq!(pipeline.events(kind, outcome), count, "{kind} {outcome}");
    }
    // Our job's echo is the send ledger's proof; a human's is not stored.
    let echo = pipeline.store.echo_of("r1:ext-a").await.expect("echo_of");
    assert_eq!(echo.and_then(|e| e.message_id).as_deref(), Some("m_sent_a"));

    // Resume, in a later webhook: applied in time order.
    pipeline
        .post(json!([entry(vec![marketing(
            "201",
            t1() + 30,
            Some("resume_notifications")
        )])]))
        .await;
    pipeline.ingested(2).await;
    assert!(!store.is_opted_out(PAGE, "201").await.expect("read"));
    // The opt change does not touch the window either.
    let users = super::store::users(store, PAGE).await;
    assert_eq!(users["ext-a"].last_inbound_at, Some(at(t1())));
    pipeline.stop().await;
}

async fn a_webhook_delivered_twice_changes_nothing_twice(rig: Rig) {
    let Some(pipeline) = Pipeline::new("test-ingest-twice", rig.store.clone()).await else {
        return;
    };
    // The person follows a link with ref ext-1, then one with ref ext-2; then Meta redelivers
    // the first webhook. Applied again, it would link the PSID back to ext-1.
    let first = json!([entry(vec![message("301", t1(), "m_A", Some("ext-1"))])]);
    let second = json!([entry(vec![
        message("301", t1() + 60_000, "m_B", Some("ext-2")),
        user_item("301", t1() + 60_001, "read", json!({"watermark": t1()})),
    ])]);
    pipeline.post(first.clone()).await;
    pipeline.post(second.clone()).await;
    pipeline.ingested(2).await;
    pipeline.post(first).await;
    pipeline.ingested(3).await;

    let users = users(&pipeline.store, PAGE).await;
    assert_eq!(users["ext-2"].messenger_id.as_deref(), Some("301"));
    assert_eq!(
        users["ext-1"].messenger_id, None,
        "the redelivery relinked the PSID"
    );
    assert_eq!(users["ext-2"].last_inbound_at, Some(at(t1() + 60_000)));
    assert_eq!(pipeline.events("message", "applied"), 2);
    assert_eq!(pipeline.events("message", "duplicate"), 1);
    // The second one again: its receipt too counts once.
    pipeline.post(second).await;
    pipeline.ingested(4).await;
    assert_eq!(pipeline.events("message", "duplicate"), 2);
    assert_eq!(pipeline.events("read", "applied"), 1);
    assert_eq!(pipeline.events("read", "duplicate"), 1);
    pipeline.stop().await;
}

#[tokio::test]
async fn poison_goes_to_dead_and_the_next_body_is_still_ingested() {
    on_sqlite(|rig| async move {
        let Some(pipeline) = Pipeline::new("test-ingest-poison", rig.store.clone()).await else {
            return;
        };
        // The webhook publishes whatever is correctly signed; the ingest judges it.
        for poison in [&b"{oops"[..], br#"{"object":"instagram","entry":[]}"#] {
            assert_eq!(pipeline.web.post_signed(poison).await, StatusCode::OK);
        }
        pipeline
            .post(json!([entry(vec![message(
                "401",
                t1(),
                "m_after",
                Some("ext-after")
            )])]))
            .await;
        pipeline.ingested(3).await;
        let users = users(&pipeline.store, PAGE).await;
        assert_eq!(users["ext-after"].messenger_id.as_deref(), Some("401"));
        let poisoned = |outcome| {
            pipeline
                .metrics
                .consumer_messages
                .with_label_values(&["ingest", outcome])
                .get()
        };
        assert_eq!((poisoned("poison"), poisoned("processed")), (2, 1));
        let dead = pipeline.dead().await;
        assert_eq!(dead.len(), 2, "{dead:?}");
        assert_eq!(dead[0].0, b"{oops", "dead-lettered byte for byte");
        assert!(dead[0].1.starts_with("not JSON"), "{}", dead[0].1);
        assert!(dead[1].1.contains("instagram"), "{}", dead[1].1);
        pipeline.stop().await;
    })
    .await;
}

/// The broker is not trusted with where a body came from: one published to `<p>.events` by
/// anyone but the webhook, without the app secret's signature of it, changes nothing.
#[tokio::test]
async fn a_body_published_around_the_webhook_is_refused() {
    on_sqlite(|rig| async move {
        let Some(pipeline) = Pipeline::new("test-ingest-forged", rig.store.clone()).await else {
            return;
        };
        let body = |psid: &str, external_id: &str| {
            let item = message(psid, t1(), &format!("m_{psid}"), Some(external_id));
            serde_json::to_vec(&json!({"object": "page", "entry": [entry(vec![item])]}))
                .expect("json")
        };
        let genuine = crate::webhook_message(APP_SECRET, body("401", "ext-ok"));
        let unsigned = (body("402", "victim-1"), Headers::new());
        let forged = crate::webhook_message("not-the-app-secret", body("403", "victim-2"));
        // Signed, then altered on the way: the attacker's PSID in a genuine envelope.
        let (altered, headers) = crate::webhook_message(APP_SECRET, body("404", "victim-3"));
        let altered = (
            String::from_utf8(altered)
                .expect("utf-8")
                .replace("\"404\"", "\"405\"")
                .into_bytes(),
            headers,
        );
        let publisher = Publisher::open(&pipeline.web.connection, 16)
            .await
            .expect("publisher");
        let exchange = pipeline.web.topology.events_exchange();
        let messages = [unsigned, forged, altered, genuine];
        crate::publish_all_with(&publisher, &exchange, "webhook", messages).await;
        let _ = publisher.close().await;
        pipeline.ingested(4).await;

        let users = users(&pipeline.store, PAGE).await;
        assert_eq!(users["ext-ok"].messenger_id.as_deref(), Some("401"));
        let by_psid = pipeline.by_psid().await;
        for psid in ["402", "403", "404", "405"] {
            assert!(
                !by_psid.contains_key(psid),
                "{psid} was ingested: {by_psid:?}"
            );
        }
        let dead = pipeline.dead().await;
        let reasons: Vec<&str> = dead.iter().map(|(_, reason)| reason.as_str()).collect();
        assert_eq!(reasons.len(), 3, "{reasons:?}");
        assert!(
            reasons[0].contains("not published by Herald's webhook"),
            "{reasons:?}"
        );
        for reason in &reasons[1..] {
            assert!(reason.contains("does not match the body"), "{reasons:?}");
        }
        assert!(
            !reasons.iter().any(|reason| reason.contains(APP_SECRET)),
            "the secret leaked: {reasons:?}"
        );
        pipeline.stop().await;
    })
    .await;
}

/// A body whose entries are older than the dedupe retention (a replay of an old delivery) changes
/// nothing: no policy block re-fires, no ref links, and each item is counted as stale.
#[tokio::test]
async fn an_old_body_replayed_fires_nothing() {
    on_sqlite(|rig| async move {
        let Some(pipeline) = Pipeline::new("test-ingest-stale", rig.store.clone()).await else {
            return;
        };
        let eight_days_ago = t1() - 8 * 24 * 3_600_000;
        let old = json!({"id": PAGE, "time": eight_days_ago, "messaging": [
            {"recipient": {"id": PAGE}, "timestamp": eight_days_ago,
             "policy_enforcement": {"action": "block", "reason": "spam"}},
            message("701", eight_days_ago, "m_701", Some("ext-old")),
        ]});
        pipeline.post(json!([old])).await;
        pipeline
            .post(json!([entry(vec![message(
                "702",
                t1(),
                "m_702",
                Some("ext-new")
            )])]))
            .await;
        pipeline.ingested(2).await;
        assert_eq!(pipeline.events("stale", "ignored"), 2);
        assert_eq!(
            pipeline
                .metrics
                .policy_enforcement
                .with_label_values(&["block"])
                .get(),
            0,
            "the old block did not fire again"
        );
        let users = users(&pipeline.store, PAGE).await;
        assert!(!users.contains_key("ext-old"), "{users:?}");
        assert_eq!(users["ext-new"].messenger_id.as_deref(), Some("702"));
        pipeline.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_policy_block_halts_the_page_on_the_control_log() {
    on_sqlite(|rig| async move {
        let Some(pipeline) = Pipeline::new("test-ingest-policy", rig.store.clone()).await else {
            return;
        };
        let policy = |at: i64, action: &str| {
            json!({"recipient": {"id": PAGE}, "timestamp": at,
                "policy_enforcement": {"action": action, "reason": "spam"}})
        };
        pipeline
            .post(json!([entry(vec![
                policy(t1(), "warning"),
                policy(t1() + 1, "block")
            ])]))
            .await;
        pipeline
            .post(json!([entry(vec![policy(t1() + 2, "unblock")])]))
            .await;
        pipeline.ingested(2).await;
        let counted = |action| {
            pipeline
                .metrics
                .policy_enforcement
                .with_label_values(&[action])
                .get()
        };
        assert_eq!(
            (counted("warning"), counted("block"), counted("unblock")),
            (1, 1, 1)
        );

        let connection = &pipeline.web.connection;
        let queue = pipeline.web.topology.control_log_queue();
        let mut log = Consumer::start_stream(connection, &queue, 10, StreamOffset::First)
            .await
            .expect("control log");
        let mut seen = Vec::new();
        while seen.len() < 2 {
            let next = tokio::time::timeout(WAIT, log.next()).await;
            let delivery = next
                .expect("a control message")
                .expect("open")
                .expect("delivery");
            let message = ControlMessage::from_slice(delivery.body()).expect("a control message");
            delivery.ack().await.expect("ack");
            seen.push((message.action, message.page_id.clone()));
        }
        let page = Some(PAGE.to_owned());
        assert_eq!(
            seen,
            [
                (ControlAction::HaltPage, page.clone()),
                (ControlAction::ResumePage, page)
            ]
        );
        let _ = log.close().await;
        pipeline.stop().await;
    })
    .await;
}
