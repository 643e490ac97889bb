//! Stored campaigns and API-triggered sends through `herald serve`'s API, with RabbitMQ, a
//! worker and the simulator: a campaign saved under its id keeps its versions; a trigger for
//! three recipients (one without a PSID) sends two messages rendered with their trigger
//! properties and gives the third a `skipped` result, the dispatch shows each outcome, and the
//! same call again with its `Idempotency-Key` sends nothing more.

use std::time::Duration;

use herald_sim::SimConfig;
use serde_json::{Value, json};

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
