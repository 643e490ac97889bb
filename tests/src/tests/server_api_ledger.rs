//! `GET /ledger/{job_id}` over HTTP, answers checked against `openapi.json`: a job the store
//! has never heard of is not settled; one with a result, or with only Meta's echo (its answer
//! was lost), is settled, and the entry says which; a `dead` result alone does not settle a job
//! (a replayed dead job is meant to be sent). The workers' ledger token opens this route and no
//! other.

use herald_core::{DeliveryResult, RESULT_VERSION, ResultStatus};
use time::OffsetDateTime;

use super::server_api_openapi::{conform, document};
use super::server_api_rig::{ApiServer, Auth, LEDGER_TOKEN, PAGE};

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

    let now = OffsetDateTime::now_utc();
    let result = DeliveryResult {
        v: RESULT_VERSION,
        job_id: "r1:u1".to_owned(),
        run_id: "r1".to_owned(),
        campaign_id: "api-test".to_owned(),
        external_id: "u1".to_owned(),
        page_id: PAGE.to_owned(),
        status: ResultStatus::Sent,
        message_id: Some("m_u1".to_owned()),
        error: None,
        attempts: 1,
        finished_at: now,
    };
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
