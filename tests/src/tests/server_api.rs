//! The admin API of `herald serve`, served in-process (`server_api_rig.rs`): the bearer token
//! (401 without it or when wrong, 503 when none is configured while the webhook still works),
//! every call counted in `herald_api_requests_total` by route template and status,
//! and a run started over the API whose status the API and `herald campaign status --json`
//! report alike. Users are `server_api_users.rs`, control and dead letters
//! `server_api_control.rs`, the OpenAPI document `server_api_openapi.rs`, the `herald serve`
//! process `server_api_cli.rs`.

use std::time::Duration;

use herald_amqp::Headers;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::server_api_rig::{ApiServer, Auth, CAMPAIGN, Options, PAGE, VERIFY_TOKEN, result};
use crate::{eventually, herald};

#[tokio::test]
async fn an_api_call_without_the_token_or_with_a_wrong_one_is_401() {
    let Some(server) = ApiServer::start("test-api-auth").await else {
        return;
    };
    for auth in [
        Auth::Nothing,
        Auth::Header("Bearer wrong-token"),
        Auth::Header("Bearer test-api-token-and-more"),
        Auth::Header("Basic dGVzdDp0ZXN0"),
        Auth::Header("Bearer"),
    ] {
        for (method, path) in [("GET", "/dead"), ("GET", "/campaigns/runs/r1")] {
            let reply = server.send(method, path, auth, None).await;
            assert_eq!(reply.status, 401, "{method} {path}: {}", reply.text);
            assert!(reply.json["error"].is_string(), "{}", reply.text);
            assert!(
                reply.headers.contains_key("www-authenticate"),
                "{:?}",
                reply.headers
            );
        }
    }
    // A refused import or track wrote nothing.
    let csv = "external_id,messenger_id\nu1,111\n".as_bytes().to_vec();
    let refused = server
        .send(
            "POST",
            "/users/import",
            Auth::Nothing,
            Some(("text/csv", csv)),
        )
        .await;
    assert_eq!(refused.status, 401);
    assert_eq!(super::store::users(&server.store, PAGE).await.len(), 0);
    assert_eq!(server.get("/dead").await.status, 200, "the right token");
    let lowercase = format!("bearer {}", super::server_api_rig::TOKEN);
    let lower = server
        .send("GET", "/dead", Auth::Header(&lowercase), None)
        .await;
    assert_eq!(lower.status, 200, "the scheme is case-insensitive");
    // Public: the document, the operations endpoints, the webhook (it has its own checks).
    assert_eq!(
        server
            .send("GET", "/openapi.json", Auth::Nothing, None)
            .await
            .status,
        200
    );
    assert_eq!(
        server
            .send("GET", "/healthz", Auth::Nothing, None)
            .await
            .status,
        200
    );
    let unknown = server.send("GET", "/nope", Auth::Nothing, None).await;
    assert_eq!(unknown.status, 404);
    assert!(unknown.json["error"].is_string(), "{}", unknown.text);
    // Every API call is counted by route template and status, refusals included; the run id in
    // the path never becomes a label.
    let scraped = server
        .send("GET", "/metrics", Auth::Nothing, None)
        .await
        .text;
    let counted = |route: &str, status: u16| {
        let prefix = format!("herald_api_requests_total{{route=\"{route}\",status=\"{status}\"}} ");
        scraped
            .lines()
            .find_map(|line| line.strip_prefix(&prefix)?.parse::<u64>().ok())
    };
    assert_eq!(counted("/dead", 401), Some(5), "{scraped}");
    assert_eq!(
        counted("/campaigns/runs/{run_id}", 401),
        Some(5),
        "{scraped}"
    );
    assert_eq!(counted("/users/import", 401), Some(1), "{scraped}");
    assert_eq!(counted("/dead", 200), Some(2), "{scraped}");
    assert_eq!(counted("/openapi.json", 200), Some(1), "{scraped}");
    assert!(
        !scraped.contains("r1"),
        "a run id in the metrics: {scraped}"
    );
    server.stop().await;
}

#[tokio::test]
async fn without_a_configured_token_the_admin_api_refuses_everything_but_the_webhook_works() {
    let options = Options {
        token: None,
        ..Options::default()
    };
    let Some(server) = ApiServer::start_with("test-api-notoken", options).await else {
        return;
    };
    for auth in [Auth::Nothing, Auth::Token, Auth::Header("Bearer ")] {
        let reply = server.send("GET", "/dead", auth, None).await;
        assert_eq!(reply.status, 503, "{}", reply.text);
        assert!(
            reply.json["error"]
                .as_str()
                .is_some_and(|e| e.contains("HERALD_API_TOKEN")),
            "{}",
            reply.text
        );
    }
    let handshake =
        format!("/webhook?hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=42");
    let reply = server.send("GET", &handshake, Auth::Nothing, None).await;
    assert_eq!((reply.status, reply.text.as_str()), (200, "42"));
    server.stop().await;
}

#[tokio::test]
async fn a_run_started_over_the_api_shows_its_status_there_and_in_the_cli() {
    let Some(server) = ApiServer::start("test-api-run").await else {
        return;
    };
    let segment = server.dir.path().join("users.csv");
    let users = "external_id,messenger_id,first_name\nu1,101,Ana\nu2,102,Bo\nu3,103,Cy\nu4,,Di\n";
    std::fs::write(&segment, users).expect("segment");
    // The same users in the store: results are matched to PSIDs there, receipts by PSID.
    let imported = server.post("/users/import", "text/csv", users).await;
    assert_eq!(imported.json["imported"], 4, "{}", imported.text);
    let path = format!("/campaigns/runs?segment={}", segment.display());

    // A bad document is refused with every problem, and nothing is created.
    let bad = CAMPAIGN
        .replace("\"UPDATE\"", "\"SOMETIMES\"")
        .replace("1000000001", "page");
    let refused = server.post(&path, "application/toml", &bad).await;
    assert_eq!(refused.status, 422, "{}", refused.text);
    let problems = refused.json["problems"].as_array().expect("problems");
    let fields: Vec<&str> = problems.iter().filter_map(|p| p["path"].as_str()).collect();
    assert!(
        fields.contains(&"messaging_type") && fields.contains(&"page_id"),
        "{fields:?}"
    );
    assert!(
        problems.iter().all(|p| p["line"].is_u64()),
        "TOML problems carry lines"
    );
    let json_doc = json!({"id": "x", "page_id": PAGE, "messaging_type": "UPDATE"});
    let missing = server.post_json(&path, &json_doc).await;
    assert_eq!(missing.status, 422, "{}", missing.text);
    let other = server.post(&path, "text/plain", CAMPAIGN).await;
    assert_eq!(other.status, 415, "{}", other.text);
    let nowhere = "/campaigns/runs?segment=/no/such/users.csv";
    let lost = server.post(nowhere, "application/toml", CAMPAIGN).await;
    assert_eq!(lost.status, 422, "{}", lost.text);
    assert!(lost.text.contains("segment.file"), "{}", lost.text);

    let started = server.post(&path, "application/toml", CAMPAIGN).await;
    assert_eq!(started.status, 202, "{}", started.text);
    let run_id = started.json["run_id"].as_str().expect("run_id").to_owned();
    assert_eq!(started.json["campaign_id"], "api-test");
    let location = started.headers["location"].to_str().expect("location");
    assert_eq!(location, format!("/campaigns/runs/{run_id}"));

    // The producer publishes in the background; the results consumer records the skipped user.
    let published = eventually(Duration::from_secs(30), || async {
        let status = server.get(location).await.json;
        status["producer"]["complete"] == true && status["results"]["skipped"] == 1
    })
    .await;
    assert!(published, "{}", server.get(location).await.text);
    let status = server.get(location).await.json;
    assert_eq!(status["producer"]["published"], 3);
    assert_eq!(status["producer"]["skipped"]["blank_psid"], 1, "{status}");
    assert_eq!(status["pending"], 3);
    assert_eq!(
        status["rate"]["per_sec"],
        Value::Null,
        "no worker result yet"
    );
    assert_eq!(status["eta"]["seconds"], Value::Null);
    let jobs = crate::drain(&server.connection, &server.topology.send_queue()).await;
    assert_eq!(jobs.len(), 3, "one job per user with a PSID");

    // Workers' results: two sent (delivered, one read), one failed with Graph code 551.
    let now = OffsetDateTime::now_utc();
    let ago = |s: i64| now - time::Duration::seconds(s);
    for body in [
        result(&run_id, "u1", "sent", None, ago(10)),
        result(&run_id, "u2", "sent", None, ago(6)),
        result(&run_id, "u3", "failed", Some(551), ago(2)),
    ] {
        let key = format!("{}.api-test", body["status"].as_str().expect("status"));
        let bytes = serde_json::to_vec(&body).expect("json");
        server
            .publish(
                &server.topology.results_exchange(),
                &key,
                &bytes,
                Headers::new(),
            )
            .await;
    }
    let recorded = eventually(Duration::from_secs(30), || async {
        server.get(location).await.json["results"]["total"] == 4
    })
    .await;
    assert!(recorded, "{}", server.get(location).await.text);
    server
        .store
        .mark_delivered(PAGE, "101", now, &[])
        .await
        .expect("delivered");
    server
        .store
        .mark_delivered(PAGE, "102", now, &[])
        .await
        .expect("delivered");
    server
        .store
        .mark_read(PAGE, "101", now)
        .await
        .expect("read");
    let status = server.get(location).await.json;
    assert_eq!(status["state"], "running");
    assert_eq!(
        status["results"],
        json!({"total": 4, "sent": 2, "failed": 1, "dead": 0, "expired": 0, "skipped": 1,
            "cancelled": 0})
    );
    assert_eq!(
        (status["delivered"].clone(), status["read"].clone()),
        (json!(2), json!(1))
    );
    assert_eq!(
        status["top_errors"],
        json!([{"code": 551, "subcode": null, "count": 1}])
    );
    assert_eq!(status["pending"], 0);
    let rate = status["rate"]["per_sec"]
        .as_f64()
        .expect("a rate from 3 results");
    assert!(
        rate > 0.1 && rate < 0.5,
        "3 results over about 10 s: {status}"
    );
    assert_eq!(status["eta"]["seconds"], 0, "{status}");

    // The CLI reads the same store and prints the same object.
    let output = herald(&[("HERALD_DATABASE_URL", &server.database_url)])
        .args(["campaign", "status", &run_id, "--json"])
        .output()
        .expect("run herald campaign status");
    assert!(output.status.success(), "{output:?}");
    let mut cli: Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    let mut api = server.get(location).await.json;
    for report in [&mut cli, &mut api] {
        let object = report.as_object_mut().expect("object");
        for changing in ["as_of", "rate", "eta"] {
            assert!(object.remove(changing).is_some(), "{changing} missing");
        }
    }
    assert_eq!(cli, api, "the CLI and the API give the same report");
    let table = herald(&[("HERALD_DATABASE_URL", &server.database_url)])
        .args(["campaign", "status", &run_id])
        .output()
        .expect("run herald campaign status");
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    for line in [
        "  sent       2",
        "delivered    2",
        "read         1",
        "top errors   551 ×1",
    ] {
        assert!(table.contains(line), "{line:?} missing:\n{table}");
    }
    let unknown = herald(&[("HERALD_DATABASE_URL", &server.database_url)])
        .args(["campaign", "status", "r-nope", "--json"])
        .output()
        .expect("run herald campaign status");
    assert_eq!(unknown.status.code(), Some(66), "{unknown:?}");
    assert_eq!(server.get("/campaigns/runs/r-nope").await.status, 404);
    server.stop().await;
}
