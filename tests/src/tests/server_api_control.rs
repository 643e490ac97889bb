//! Control and dead letters over the admin API: pause, resume and cancel published by the API
//! reach a real worker running on the same topology (it holds, sends, cancels), the store's run
//! state follows and a forbidden change is refused before anything is published; dead letters
//! are listed and replayed byte for byte. The rigs are `server_api.rs` and `worker_rig.rs`.

use std::time::Duration;

use futures_util::StreamExt;
use herald_amqp::{Consumer, Headers};
use herald_core::ResultStatus;
use herald_sim::SimConfig;
use herald_store::NewRun;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::server_api_rig::{ApiServer, Options};
use crate::eventually;
use crate::worker_rig::{PAGE, Rig, job, sample};

#[tokio::test]
async fn pause_resume_and_cancel_over_the_api_reach_a_running_worker() {
    let Some(mut rig) = Rig::new("test-api-control", SimConfig::default()).await else {
        return;
    };
    // The rig reads results itself, so this server runs no consumer.
    let options = Options {
        ingest: false,
        results: false,
        prefix: Some(rig.prefix.clone()),
        ..Options::default()
    };
    let server = ApiServer::start_with("unused", options)
        .await
        .expect("broker is up");
    server
        .store
        .create_run(&NewRun {
            run_id: "run-p".into(),
            campaign_id: "worker-test".into(),
            document: "{}".into(),
            segment: "store".into(),
            started_at: OffsetDateTime::now_utc(),
        })
        .await
        .expect("create run");
    let worker = rig.spawn(rig.settings());
    let applied = |action: &'static str| {
        let metrics = worker.metrics.clone();
        move || {
            let series = format!("herald_control_commands_total{{action=\"{action}\"}}");
            let seen = sample(&metrics.encode(), &series);
            async move { seen }
        }
    };

    let paused = server.post("/campaigns/runs/run-p/pause", "", "").await;
    assert_eq!(paused.status, 200, "{}", paused.text);
    assert_eq!(
        paused.json,
        json!({"action": "pause_run", "run_id": "run-p", "state": "paused"})
    );
    let seen = applied("pause_run");
    assert!(
        eventually(Duration::from_secs(10), || async {
            seen().await == Some(1.0)
        })
        .await
    );
    let bodies: Vec<Vec<u8>> = (0..3)
        .map(|i| job("run-p", PAGE, &format!("u{i}"), &format!("{}", 940_000 + i)))
        .collect();
    rig.publish(&bodies).await;
    let held = eventually(Duration::from_secs(10), || async {
        sample(
            &worker.metrics.encode(),
            "herald_jobs_held_total{reason=\"run_paused\"}",
        )
        .is_some_and(|n| n >= 3.0)
    })
    .await;
    assert!(held, "the paused run's jobs were not held");
    assert_eq!(rig.sim.stats().accepted, 0);
    let status = server.get("/campaigns/runs/run-p").await;
    assert_eq!(status.json["state"], "paused", "{}", status.text);

    let resumed = server.post("/campaigns/runs/run-p/resume", "", "").await;
    assert_eq!(resumed.json["state"], "running", "{}", resumed.text);
    assert_eq!(rig.wait_results(3, Duration::from_secs(60)).await, 3);
    assert_eq!(rig.count(ResultStatus::Sent), 3);

    let cancelled = server.post("/campaigns/runs/run-p/cancel", "", "").await;
    assert_eq!(cancelled.json["state"], "cancelled", "{}", cancelled.text);
    let seen = applied("cancel_run");
    assert!(
        eventually(Duration::from_secs(10), || async {
            seen().await == Some(1.0)
        })
        .await
    );
    rig.publish(&[job("run-p", PAGE, "late", "949999")]).await;
    assert_eq!(rig.wait_results(4, Duration::from_secs(30)).await, 4);
    assert_eq!(rig.seen[3].status, ResultStatus::Cancelled);

    // Cancelled is final: a resume is refused and not published.
    let refused = server.post("/campaigns/runs/run-p/resume", "", "").await;
    assert_eq!(refused.status, 409, "{}", refused.text);
    assert!(
        refused.json["error"]
            .as_str()
            .is_some_and(|e| e.contains("cancelled"))
    );
    // A run the store does not know still gets the command (workers act on run ids).
    let unknown = server
        .post("/campaigns/runs/run-elsewhere/pause", "", "")
        .await;
    assert_eq!(unknown.status, 200, "{}", unknown.text);
    assert_eq!(unknown.json["state"], Value::Null);
    let seen = applied("pause_run");
    assert!(
        eventually(Duration::from_secs(10), || async {
            seen().await == Some(2.0)
        })
        .await
    );
    assert_eq!(
        applied("resume_run")().await,
        Some(1.0),
        "the refused resume was not sent"
    );
    let page = server.post("/pages/not-a-page/resume", "", "").await;
    assert_eq!(page.status, 422, "{}", page.text);
    let page = server.post(&format!("/pages/{PAGE}/resume"), "", "").await;
    assert_eq!(
        page.json,
        json!({"action": "resume_page", "page_id": PAGE, "state": null})
    );
    worker.stop().await;
    server.stop().await;
    rig.cleanup().await;
}

#[tokio::test]
async fn dead_letters_are_listed_and_replayed_over_the_api() {
    let Some(server) = ApiServer::start("test-api-dead").await else {
        return;
    };
    let dead = |attempts: i64, code: i64, reason: &str| {
        Headers::new()
            .with_attempt(u32::try_from(attempts).expect("attempts"))
            .with_reason(reason)
            .with_code(u32::try_from(code).expect("code"))
    };
    let x1 = job("run-x", PAGE, "u1", "2001");
    let y1 = job("run-y", PAGE, "u1", "2002");
    let exchange = server.topology.dead_exchange();
    server
        .publish(&exchange, "", &x1, dead(5, 2, "gave up after 5 attempt(s)"))
        .await;
    server
        .publish(
            &exchange,
            "",
            &y1,
            dead(5, 1200, "gave up after 5 attempt(s)"),
        )
        .await;
    server
        .publish(
            &exchange,
            "",
            b"{oops",
            Headers::new().with_reason("not JSON"),
        )
        .await;

    let listed = server.get("/dead").await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    assert_eq!(listed.json["total"], 3);
    assert_eq!(
        listed.json["messages"],
        json!([
            {"job_id": "run-x:u1", "run_id": "run-x", "attempts": 5, "code": 2,
             "reason": "gave up after 5 attempt(s)"},
            {"job_id": "run-y:u1", "run_id": "run-y", "attempts": 5, "code": 1200,
             "reason": "gave up after 5 attempt(s)"},
            {"job_id": null, "run_id": null, "attempts": null, "code": null,
             "reason": "not JSON"},
        ])
    );
    let by_run = server.get("/dead?run_id=run-x").await;
    assert_eq!(by_run.json["messages"].as_array().map(Vec::len), Some(1));
    let by_code = server.get("/dead?code=1200").await;
    assert_eq!(by_code.json["messages"][0]["job_id"], "run-y:u1");
    let bad = server.get("/dead?code=two").await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    assert!(bad.json["error"].is_string());
    let queue = server.topology.dead_queue();
    let count = || async { server.connection.message_count(&queue).await.unwrap_or(0) };
    assert!(
        eventually(Duration::from_secs(10), || async { count().await == 3 }).await,
        "listing lost nothing"
    );

    let not_json = server
        .post("/dead/replay", "application/json", "run-x")
        .await;
    assert_eq!(not_json.status, 400, "{}", not_json.text);
    let unknown_field = server
        .post_json("/dead/replay", &json!({"run": "run-x"}))
        .await;
    assert_eq!(unknown_field.status, 400, "{}", unknown_field.text);
    let replayed = server
        .post_json("/dead/replay", &json!({"run_id": "run-x", "code": 2}))
        .await;
    assert_eq!(replayed.status, 200, "{}", replayed.text);
    assert_eq!(
        replayed.json,
        json!({"replayed": ["run-x:u1"], "kept": 2, "truncated": false})
    );
    let back = take_send(&server, 1).await;
    assert_eq!(
        back[0].0, x1,
        "the exact job bytes are back on the send queue"
    );
    assert_eq!(back[0].1.attempt(), None, "attempts start over");
    assert!(eventually(Duration::from_secs(10), || async { count().await == 2 }).await);
    // No body: every job (the poison stays).
    let rest = server.post("/dead/replay", "", "").await;
    assert_eq!(rest.json["replayed"], json!(["run-y:u1"]), "{}", rest.text);
    assert_eq!(take_send(&server, 1).await[0].0, y1);
    assert!(eventually(Duration::from_secs(10), || async { count().await == 1 }).await);
    server.stop().await;
}

/// Takes `n` messages from the server's send queue, with their headers.
async fn take_send(server: &ApiServer, n: usize) -> Vec<(Vec<u8>, Headers)> {
    let queue = server.topology.send_queue();
    let mut consumer = Consumer::start(&server.connection, &queue, 100)
        .await
        .expect("consumer");
    let mut taken = Vec::new();
    while taken.len() < n {
        let delivery = tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .expect("a message in time")
            .expect("consumer open")
            .expect("delivery");
        taken.push((delivery.body().to_vec(), delivery.headers()));
        delivery.ack().await.expect("ack");
    }
    let _ = consumer.close().await;
    taken
}
