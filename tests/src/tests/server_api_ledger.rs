//! `GET /ledger/{job_id}` over HTTP, answers checked against `openapi.json`: a job the store
//! has never heard of is not settled; one with a result, or with only Meta's echo (its answer
//! was lost), is settled, and the entry says which; a `dead` result alone does not settle a job
//! (a replayed dead job is meant to be sent). The workers' ledger token opens this route and no
//! other. While a result waits in the results queue, "no record" is not `current`: the worker
//! must ask again, not send.

use std::time::Duration;

use herald_amqp::Headers;
use herald_core::{DeliveryResult, RESULT_VERSION, ResultStatus};
use time::OffsetDateTime;

use super::server_api_openapi::{conform, document};
use super::server_api_rig::{ApiServer, Auth, LEDGER_TOKEN, Options, PAGE};
use crate::eventually;

#[tokio::test]
async fn the_ledger_says_whether_a_job_went_out() {
    let Some(server) = ApiServer::start("test-api-ledger").await else {
        return;
    };
    let doc = document();
    let path = "/ledger/{job_id}";

    let unknown = server.get("/ledger/r1:nobody").await;
    assert_eq!(unknown.status, 200, "{}", unknown.text);
    conform(&doc, "GET", path, &unknown);
    assert_eq!(unknown.json["settled"], false);
    assert_eq!(unknown.json["current"], true, "nothing is on its way");

    let result = sent_result("u1");
    server
        .store
        .record_result(&result, Some("101"))
        .await
        .expect("record");
    let sent = server.get("/ledger/r1:u1").await;
    conform(&doc, "GET", path, &sent);
    assert_eq!(sent.json["settled"], true);
    assert_eq!(sent.json["result"]["status"], "sent");
    assert_eq!(sent.json["echo"], serde_json::Value::Null);

    let now = OffsetDateTime::now_utc();
    let mut batch = server.store.batch().await.expect("batch");
    batch
        .record_echo("r1:u2", PAGE, Some("m_u2"), now)
        .await
        .expect("echo");
    batch.commit().await.expect("commit");
    let echoed = server.get("/ledger/r1:u2").await;
    conform(&doc, "GET", path, &echoed);
    assert_eq!(echoed.json["settled"], true);
    assert_eq!(echoed.json["result"], serde_json::Value::Null);
    assert_eq!(echoed.json["echo"]["message_id"], "m_u2");

    let dead = DeliveryResult {
        job_id: "r1:u3".to_owned(),
        external_id: "u3".to_owned(),
        status: ResultStatus::Dead,
        message_id: None,
        ..result.clone()
    };
    server
        .store
        .record_result(&dead, Some("103"))
        .await
        .expect("record");
    let replayable = server.get("/ledger/r1:u3").await;
    conform(&doc, "GET", path, &replayable);
    assert_eq!(replayable.json["result"]["status"], "dead");
    assert_eq!(replayable.json["settled"], false);

    let bearer = format!("Bearer {LEDGER_TOKEN}");
    let by_worker = server
        .send("GET", "/ledger/r1:u1", Auth::Header(&bearer), None)
        .await;
    assert_eq!(by_worker.status, 200, "{}", by_worker.text);
    assert_eq!(by_worker.json["settled"], true);
    for path in ["/dead", "/campaigns/runs/r1"] {
        let refused = server.send("GET", path, Auth::Header(&bearer), None).await;
        assert_eq!(refused.status, 401, "{path}: {}", refused.text);
    }
    server.stop().await;
}

/// Of two copies of one suspect job, the first to claim its send gets it (and gets it again
/// on a retried request); the other does not, and nobody does once the job is settled.
#[tokio::test]
async fn only_one_holder_may_claim_a_send() {
    let Some(server) = ApiServer::start("test-api-ledger-claim").await else {
        return;
    };
    let doc = document();
    let path = "/ledger/{job_id}/claim";
    let bearer = format!("Bearer {LEDGER_TOKEN}");
    let claim = |job: &'static str, holder: &'static str| {
        let (server, bearer) = (&server, &bearer);
        async move {
            let uri = format!("/ledger/{job}/claim?holder={holder}");
            server.send("POST", &uri, Auth::Header(bearer), None).await
        }
    };
    let first = claim("r1:u7", "worker-a").await;
    assert_eq!(first.status, 200, "{}", first.text);
    conform(&doc, "POST", path, &first);
    assert_eq!(first.json["granted"], true, "{}", first.text);
    let other = claim("r1:u7", "worker-b").await;
    assert_eq!(other.json["granted"], false, "{}", other.text);
    assert_eq!(other.json["settled"], false, "{}", other.text);
    let again = claim("r1:u7", "worker-a").await;
    assert_eq!(
        again.json["granted"], true,
        "a retried claim: {}",
        again.text
    );

    server
        .store
        .record_result(&sent_result("u8"), Some("108"))
        .await
        .expect("record");
    let settled = claim("r1:u8", "worker-a").await;
    assert_eq!(settled.json["granted"], false, "{}", settled.text);
    assert_eq!(settled.json["settled"], true, "{}", settled.text);

    let nameless = server
        .send(
            "POST",
            "/ledger/r1:u9/claim?holder=",
            Auth::Header(&bearer),
            None,
        )
        .await;
    assert_eq!(nameless.status, 400, "{}", nameless.text);
    conform(&doc, "POST", path, &nameless);
    server.stop().await;
}

/// A result the worker published but the store has not taken yet (here: serve runs no results
/// consumer) makes "no record" not current; once a consumer stores it, the job is settled.
#[tokio::test]
async fn a_result_still_queued_makes_the_ledger_say_wait() {
    let options = Options {
        results: false,
        ..Options::default()
    };
    let Some(server) = ApiServer::start_with("test-api-ledger-queued", options).await else {
        return;
    };
    let result = sent_result("u9");
    let bytes = serde_json::to_vec(&result).expect("json");
    server
        .publish(
            &server.topology.results_exchange(),
            "sent.api-test",
            &bytes,
            Headers::new(),
        )
        .await;
    let waiting = server.get("/ledger/r1:u9").await;
    conform(&document(), "GET", "/ledger/{job_id}", &waiting);
    assert_eq!(waiting.json["settled"], false, "{}", waiting.text);
    assert_eq!(waiting.json["current"], false, "{}", waiting.text);

    let consumer = ApiServer::start_with(
        "test-api-ledger-queued",
        Options {
            prefix: Some(server.topology.prefix().to_owned()),
            ..Options::default()
        },
    )
    .await
    .expect("second server");
    let settled = eventually(Duration::from_secs(30), || async {
        consumer.get("/ledger/r1:u9").await.json["settled"] == true
    })
    .await;
    assert!(settled, "{}", consumer.get("/ledger/r1:u9").await.text);
    consumer.stop().await;
    server.stop().await;
}

fn sent_result(user: &str) -> DeliveryResult {
    let now = OffsetDateTime::now_utc();
    DeliveryResult {
        v: RESULT_VERSION,
        job_id: format!("r1:{user}"),
        run_id: "r1".to_owned(),
        campaign_id: "api-test".to_owned(),
        external_id: user.to_owned(),
        page_id: PAGE.to_owned(),
        status: ResultStatus::Sent,
        message_id: Some(format!("m_{user}")),
        error: None,
        attempts: 1,
        finished_at: now,
    }
}
