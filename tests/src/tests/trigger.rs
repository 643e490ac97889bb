//! Stored campaigns and API-triggered sends through `herald serve`'s API, with RabbitMQ, a
//! worker and the simulator: a campaign saved under its id keeps its versions; a trigger for
//! three recipients (one without a PSID) sends two messages rendered with their trigger
//! properties and gives the third a `skipped` result, the dispatch shows each outcome, and the
//! same call again with its `Idempotency-Key` sends nothing more; a trigger the broker fails
//! midway is finished by its retry with the key, and no recipient gets two jobs.

use std::time::Duration;

use futures_util::StreamExt;
use herald_sim::SimConfig;
use serde_json::{Value, json};

use super::broker_roles::rabbitmqctl;
use super::server_api_rig::{ApiServer, Auth, Options, TOKEN};
use crate::eventually;
use crate::worker_rig::{PAGE, Rig};

const WAIT: Duration = Duration::from_secs(60);

fn document(text: &str) -> Value {
    json!({
        "id": "order-shipped", "page_id": PAGE, "messaging_type": "UPDATE",
        "message": {"text": text},
        "delivery": {"window": "off"},
    })
}

async fn put(server: &ApiServer, body: &Value) -> (u16, Value) {
    let bytes = serde_json::to_vec(body).expect("json");
    let reply = server
        .send(
            "PUT",
            "/campaigns/order-shipped",
            Auth::Token,
            Some(("application/json", bytes)),
        )
        .await;
    (reply.status, reply.json)
}

async fn trigger(server: &ApiServer, key: &str, body: &Value) -> (u16, Value) {
    let reply = reqwest::Client::new()
        .post(format!("{}/campaigns/order-shipped/trigger", server.url))
        .bearer_auth(TOKEN)
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .expect("trigger");
    let status = reply.status().as_u16();
    (status, reply.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_trigger_sends_each_recipient_their_message_once() {
    let Some(rig) = Rig::new("test-trigger", SimConfig::default()).await else {
        return;
    };
    let options = Options {
        prefix: Some(rig.prefix.clone()),
        ..Options::default()
    };
    let Some(server) = ApiServer::start_with("test-trigger", options).await else {
        return;
    };
    let worker = rig.spawn(rig.settings());
    let users = "external_id,messenger_id,first_name\nu1,601,Ana\nu2,602,Bo\nu3,,Cy\n";
    let imported = server
        .post(&format!("/users/import?page_id={PAGE}"), "text/csv", users)
        .await;
    assert_eq!(imported.status, 200, "{}", imported.text);

    // Saved, then changed: two versions, the first still there.
    let (status, v1) = put(&server, &document("Hi {{ first_name }}")).await;
    assert_eq!((status, v1["version"].as_i64()), (200, Some(1)), "{v1}");
    let text = "Hi {{ first_name }}, order {{ trigger.order_id }} has shipped";
    let (status, v2) = put(&server, &document(text)).await;
    assert_eq!((status, v2["version"].as_i64()), (200, Some(2)), "{v2}");
    let (_, again) = put(&server, &document(text)).await;
    assert_eq!(
        again["version"], 2,
        "an unchanged document is not a new version"
    );
    let first = server.get("/campaigns/order-shipped?version=1").await;
    assert!(
        first.json["document"]
            .as_str()
            .is_some_and(|d| !d.contains("trigger"))
    );
    let wrong_id = put(
        &server,
        &json!({"id": "other", "page_id": PAGE,
        "messaging_type": "UPDATE", "message": {"text": "x"}}),
    )
    .await;
    assert_eq!(wrong_id.0, 422, "{}", wrong_id.1);

    let request = json!({"recipients": [
        {"external_user_id": "u1", "trigger_properties": {"order_id": "A-1"}},
        {"external_user_id": "u2", "trigger_properties": {"order_id": "B-2"}},
        {"external_user_id": "u3", "trigger_properties": {"order_id": "C-3"}},
    ]});
    let (status, dispatch) = trigger(&server, "ship-42", &request).await;
    assert_eq!(status, 201, "{dispatch}");
    assert_eq!(dispatch["published"], 2, "{dispatch}");
    assert_eq!(dispatch["skipped"]["blank_psid"], 1, "{dispatch}");
    assert_eq!(dispatch["version"], 2);
    let dispatch_id = dispatch["dispatch_id"].as_str().expect("id").to_owned();

    let sent = eventually(WAIT, || async {
        !rig.sim.messages("601").is_empty() && !rig.sim.messages("602").is_empty()
    })
    .await;
    assert!(sent, "the two recipients with a PSID were not sent to");
    for (psid, text) in [
        ("601", "Hi Ana, order A-1 has shipped"),
        ("602", "Hi Bo, order B-2 has shipped"),
    ] {
        let body = &rig.sim.messages(psid)[0].body;
        assert_eq!(body["message"]["text"], text, "{body}");
    }

    // The same call with its key: the same dispatch, nothing published.
    let (status, repeat) = trigger(&server, "ship-42", &request).await;
    assert_eq!(status, 200, "{repeat}");
    assert_eq!(repeat["dispatch_id"], dispatch_id.as_str());
    assert_eq!(repeat["published"], 0);

    let path = format!("/campaigns/dispatches/{dispatch_id}");
    let outcomes = eventually(WAIT, || async {
        server.get(&path).await.json["recipients"]
            .as_array()
            .is_some_and(|r| r.len() == 3)
    })
    .await;
    assert!(outcomes, "{}", server.get(&path).await.text);
    let status = server.get(&path).await.json;
    let by_user: Vec<(String, String)> = status["recipients"]
        .as_array()
        .expect("recipients")
        .iter()
        .map(|r| {
            (
                r["external_user_id"].as_str().unwrap_or("").to_owned(),
                r["status"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        by_user,
        [
            ("u1".to_owned(), "sent".to_owned()),
            ("u2".to_owned(), "sent".to_owned()),
            ("u3".to_owned(), "skipped".to_owned()),
        ]
    );
    assert!(
        status["recipients"][2]["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("blank_psid")),
        "{status}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(rig.sim.stats().accepted, 2, "a repeat or a skip was sent");

    // Bad recipients: every problem, nothing published; a deleted campaign is not triggered.
    let bad = json!({"recipients": [{"external_user_id": ""},
        {"external_user_id": "u1", "trigger_properties": "A-1"}]});
    let (status, refused) = trigger(&server, "bad", &bad).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(
        refused["problems"].as_array().map(Vec::len),
        Some(2),
        "{refused}"
    );
    let deleted = server
        .send("DELETE", "/campaigns/order-shipped", Auth::Token, None)
        .await;
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    let (status, gone) = trigger(&server, "after-delete", &request).await;
    assert_eq!(status, 404, "{gone}");
    worker.stop().await;
    server.stop().await;
    rig.cleanup().await;
}

/// A trigger the broker fails midway (its priority queue deleted under a serve already
/// connected, so the jobs come back unroutable after the skipped results were confirmed)
/// answers 503 and keeps what was confirmed; the same call with its key finishes that dispatch
/// (the serve connects again and declares the queue): one dispatch, each recipient one job or
/// one skip, and a job published twice only with the workers' ledger check on a copy.
#[tokio::test]
async fn a_failed_trigger_is_finished_by_its_retry_and_sends_no_one_twice() {
    const HALF: usize = 10;
    let Some(server) = ApiServer::start("test-trigger-refused").await else {
        return;
    };
    // u1..u10 have no PSID (a skipped result each), u11..u20 do (a job each).
    let mut users = String::from("external_id,messenger_id\nwarm,6999\n");
    for i in 1..=2 * HALF {
        let psid = if i > HALF {
            (7000 + i).to_string()
        } else {
            String::new()
        };
        users.push_str(&format!("u{i},{psid}\n"));
    }
    let imported = server
        .post(&format!("/users/import?page_id={PAGE}"), "text/csv", &users)
        .await;
    assert_eq!(imported.status, 200, "{}", imported.text);
    let (status, saved) = put(&server, &document("Your order shipped")).await;
    assert_eq!(status, 200, "{saved}");
    let warm = json!({"recipients": [{"external_user_id": "warm"}]});
    let (status, warmed) = trigger(&server, "warm", &warm).await;
    assert_eq!(status, 201, "the serve's broker link is open: {warmed}");
    let queue = server.topology.priority_queue();
    if !rabbitmqctl(&["delete_queue", &queue]) {
        assert!(std::env::var_os("CI").is_none(), "rabbitmqctl unavailable");
        server.stop().await;
        return;
    }

    let request = json!({"recipients": (1..=2 * HALF)
        .map(|i| json!({"external_user_id": format!("u{i}")}))
        .collect::<Vec<_>>()});
    let (status, failed) = trigger(&server, "refused-1", &request).await;
    assert_eq!(status, 503, "{failed}");
    let (status, finished) = trigger(&server, "refused-1", &request).await;
    assert_eq!(status, 200, "the key's dispatch, finished: {finished}");
    assert_eq!(finished["published"], HALF, "{finished}");
    let dispatch_id = finished["dispatch_id"].as_str().expect("id").to_owned();
    let (status, repeat) = trigger(&server, "refused-1", &request).await;
    assert_eq!(status, 200, "{repeat}");
    assert_eq!(
        (repeat["dispatch_id"].as_str(), repeat["published"].as_u64()),
        (Some(dispatch_id.as_str()), Some(0)),
        "{repeat}"
    );
    let record = server.store.load_run(&dispatch_id).await.expect("load");
    let record = record.expect("the dispatch's run");
    assert!(record.progress.complete, "{record:?}");
    assert_eq!(record.progress.published, HALF as u64, "{record:?}");
    assert_eq!(
        record.progress.skipped.get("blank_psid"),
        Some(&(HALF as u64))
    );
    assert_eq!(record.producer_stopped, None);
    let path = format!("/campaigns/dispatches/{dispatch_id}");
    let skips = eventually(WAIT, || async {
        server.get(&path).await.json["recipients"]
            .as_array()
            .is_some_and(|r| r.len() == HALF)
    })
    .await;
    assert!(skips, "{}", server.get(&path).await.text);

    // The jobs: u11..u20 of the one dispatch.
    let mut copies: std::collections::BTreeMap<String, Vec<bool>> = Default::default();
    let mut consumer = herald_amqp::Consumer::start(&server.connection, &queue, 100)
        .await
        .expect("consume");
    let wait = Duration::from_millis(500);
    while let Ok(Some(delivery)) = tokio::time::timeout(wait, consumer.next()).await {
        let delivery = delivery.expect("delivery");
        let job: Value = serde_json::from_slice(delivery.body()).expect("job");
        let id = job["job_id"].as_str().expect("job id").to_owned();
        let checked = delivery.headers().verify_since().is_some();
        copies.entry(id).or_default().push(checked);
        delivery.ack().await.expect("ack");
    }
    let _ = consumer.close().await;
    let mut expected: Vec<String> = (HALF + 1..=2 * HALF)
        .map(|i| format!("{dispatch_id}:u{i}"))
        .collect();
    expected.sort();
    let ids: Vec<String> = copies.keys().cloned().collect();
    assert_eq!(ids, expected, "one dispatch, every recipient with a PSID");
    for (id, marks) in &copies {
        assert!(
            marks.len() == 1 || marks.iter().any(|checked| *checked),
            "{id} published {} times without the ledger check",
            marks.len()
        );
    }
    server.stop().await;
}

/// `herald campaigns put|list|get|delete` on a store of its own: versions by change, the
/// document back as saved, a bad file refused with its problems.
#[tokio::test]
async fn the_cli_saves_lists_and_deletes_stored_campaigns() {
    let dir = tempfile::tempdir().expect("dir");
    let database = format!("sqlite://{}", dir.path().join("herald.db").display());
    let env = [("HERALD_DATABASE_URL", database.as_str())];
    let campaign = herald_core::campaign::EXAMPLE_TOML;
    std::fs::write(dir.path().join("c.toml"), campaign).expect("write");
    let put = ["campaigns", "put", "c.toml"];
    let saved = crate::herald_ok(dir.path(), &env, &put).await;
    assert!(
        saved.contains("campaign_id: welcome-back\nversion: 1"),
        "{saved}"
    );
    assert!(
        crate::herald_ok(dir.path(), &env, &put)
            .await
            .contains("version: 1")
    );
    let changed = campaign.replace("rate_per_sec = 250", "rate_per_sec = 100");
    std::fs::write(dir.path().join("c.toml"), changed).expect("write");
    assert!(
        crate::herald_ok(dir.path(), &env, &put)
            .await
            .contains("version: 2")
    );
    let listed = crate::herald_ok(dir.path(), &env, &["campaigns", "list"]).await;
    assert!(listed.starts_with("welcome-back  version 2"), "{listed}");
    let first = ["campaigns", "get", "welcome-back", "1"];
    let first = crate::herald_ok(dir.path(), &env, &first).await;
    assert!(first.contains("rate_per_sec = 250"), "{first}");
    crate::herald_ok(dir.path(), &env, &["campaigns", "delete", "welcome-back"]).await;
    let listed = crate::herald_ok(dir.path(), &env, &["campaigns", "list"]).await;
    assert!(listed.contains("no stored campaigns"), "{listed}");
    std::fs::write(dir.path().join("bad.toml"), "id = \"x\"\n").expect("write");
    let refused = crate::herald(&env)
        .args(["campaigns", "put", "bad.toml"])
        .current_dir(dir.path())
        .output()
        .expect("run");
    assert_eq!(refused.status.code(), Some(64), "{refused:?}");
}
