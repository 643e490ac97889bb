//! The real simulator posting signed webhooks (an inbound message, then delivery and read
//! receipts of a send it accepted) through the webhook into the store; and a consumer refused
//! by the broker ends with an error instead of retrying forever.

use herald_core::Secret;
use herald_telemetry::Metrics;
use reqwest::StatusCode;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::{PAGE, Pipeline, WAIT, ref_keys, sent};
use crate::eventually;
use crate::tests::server_webhook::{APP_SECRET, sign};
use crate::tests::store::{on_sqlite, users};

/// A simulator configuration that signs with the webhook's app secret and posts to it.
fn posting_to(pipeline: &Pipeline) -> herald_sim::SimConfig {
    herald_sim::SimConfig {
        app_secret: Some(APP_SECRET.to_owned()),
        webhook_url: Some(pipeline.web.webhook_url()),
        ..herald_sim::SimConfig::default()
    }
}

async fn simulator(config: herald_sim::SimConfig) -> herald_sim::SimHandle {
    herald_sim::spawn(config, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("simulator")
}

/// The simulator's Send API URL for PAGE, with a token and its `appsecret_proof`.
fn send_url(sim: &herald_sim::SimHandle) -> String {
    let token = "page-token";
    let proof = sign(APP_SECRET, token.as_bytes());
    let proof = proof.trim_start_matches("sha256=");
    format!(
        "{}/v25.0/{PAGE}/messages?access_token={token}&appsecret_proof={proof}",
        sim.url()
    )
}

#[tokio::test]
async fn the_simulator_posts_to_the_webhook_and_the_store_follows() {
    on_sqlite(|rig| async move {
        let Some(pipeline) = Pipeline::new("test-ingest-sim", rig.store.clone()).await else {
            return;
        };
        let sim = simulator(herald_sim::SimConfig {
            receipts: true,
            delivery_delay_ms: 50,
            read_delay_ms: 150,
            ..posting_to(&pipeline)
        })
        .await;
        let http = reqwest::Client::new();
        // A person writes to the page through the link carrying their external id.
        let inbound = http
            .post(format!("{}/_sim/inbound", sim.url()))
            .header("content-type", "application/json")
            .body(
                json!({"page_id": PAGE, "psid": "601", "text": "hi there", "ref": ref_keys()
                    .sign(PAGE, "ext-sim", time::OffsetDateTime::now_utc() + time::Duration::days(1))
                    .expect("sign")})
                    .to_string(),
            )
            .send()
            .await
            .expect("inbound");
        assert_eq!(inbound.status(), StatusCode::ACCEPTED);
        let linked = || async {
            let users = users(&pipeline.store, PAGE).await;
            users
                .get("ext-sim")
                .is_some_and(|user| user.messenger_id.as_deref() == Some("601"))
        };
        assert!(
            eventually(WAIT, linked).await,
            "the inbound message never reached the store"
        );
        let user = users(&pipeline.store, PAGE)
            .await
            .remove("ext-sim")
            .expect("user");
        let last = user.last_inbound_at.expect("last_inbound_at");
        assert!((OffsetDateTime::now_utc() - last).abs() < time::Duration::minutes(5));

        // A send the simulator accepts; its signed delivery and read receipts follow.
        let url = send_url(&sim);
        let request = json!({"recipient": {"id": "601"}, "messaging_type": "RESPONSE",
            "message": {"text": "welcome", "metadata": "r6:ext-sim"}});
        let answer = http
            .post(url)
            .header("content-type", "application/json")
            .body(request.to_string())
            .send()
            .await
            .expect("send")
            .bytes()
            .await
            .expect("graph answer");
        let answer: Value = serde_json::from_slice(&answer).expect("graph JSON");
        let mid = answer["message_id"].as_str().expect("message_id");
        let now_ms = i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
            .expect("ms");
        let result = sent("r6", "ext-sim", mid, now_ms);
        let body = serde_json::to_vec(&result).expect("json");
        pipeline.publish_result(&body, &result.routing_key()).await;
        let receipts = || async {
            let status = pipeline.store.run_status("r6").await.expect("status");
            (status.total, status.delivered, status.read) == (1, 1, 1)
        };
        assert!(eventually(WAIT, receipts).await, "receipts never applied");
        assert!(
            sim.stats().webhook.posts_ok >= 2,
            "{:?}",
            sim.stats().webhook
        );
        sim.shutdown().await;
        pipeline.stop().await;
    })
    .await;
}

/// The simulator echoes what it accepts; the ingest stores the echo of each Herald job (job id
/// from `metadata` → message id), also for a send whose answer was lost: the ledger's proof
/// that the message went out. An echo without a job id is counted, not stored.
#[tokio::test]
async fn echoes_of_our_jobs_reach_the_store_even_when_the_answer_was_lost() {
    on_sqlite(|rig| async move {
        let Some(pipeline) = Pipeline::new("test-ingest-echo", rig.store.clone()).await else {
            return;
        };
        let sim = simulator(herald_sim::SimConfig {
            echoes: true,
            echo_delay_ms: 20,
            psid_rules: vec![herald_sim::PsidRule::prefix(
                "lost",
                herald_sim::PsidOutcome::LoseAnswer,
            )],
            ..posting_to(&pipeline)
        })
        .await;
        let url = send_url(&sim);
        let http = reqwest::Client::new();
        let send = |psid: &str, metadata: Option<&str>| {
            let mut message = json!({"text": "welcome"});
            if let Some(metadata) = metadata {
                message["metadata"] = json!(metadata);
            }
            let body = json!({"recipient": {"id": psid}, "messaging_type": "UPDATE",
                "message": message});
            http.post(&url)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
        };
        let answered = send("701", Some("r7:u1")).await.expect("an answer");
        let answer: Value =
            serde_json::from_slice(&answered.bytes().await.expect("body")).expect("graph JSON");
        let mid = answer["message_id"]
            .as_str()
            .expect("message_id")
            .to_owned();
        assert!(
            send("lost-702", Some("r7:u2")).await.is_err(),
            "the answer is lost"
        );
        send("703", None).await.expect("a human's send");

        let echoed = || async {
            let store = &pipeline.store;
            let first = store.echo_of("r7:u1").await.expect("echo_of");
            let lost = store.echo_of("r7:u2").await.expect("echo_of");
            first.is_some() && lost.is_some()
        };
        assert!(eventually(WAIT, echoed).await, "echoes never stored");
        let first = pipeline
            .store
            .echo_of("r7:u1")
            .await
            .expect("echo")
            .expect("some");
        assert_eq!(first.message_id.as_deref(), Some(mid.as_str()));
        assert_eq!(first.page_id, PAGE);
        let lost = pipeline
            .store
            .echo_of("r7:u2")
            .await
            .expect("echo")
            .expect("some");
        assert!(
            lost.message_id.is_some(),
            "the lost answer's message id is known from its echo"
        );
        assert!(
            eventually(WAIT, || async {
                pipeline.events("echo_other", "ignored") == 1
            })
            .await,
            "the echo without a job id is counted"
        );
        assert_eq!(pipeline.events("echo", "applied"), 2);
        assert_eq!(sim.stats().lost_answers, 1);
        sim.shutdown().await;
        pipeline.stop().await;
    })
    .await;
}

/// The consumers stop with an error, not a retry loop, when the broker refuses them.
#[tokio::test]
async fn refused_credentials_end_the_consumer_with_an_error() {
    on_sqlite(|rig| async move {
        if crate::broker().await.is_none() {
            return;
        }
        let topology = herald_amqp::Topology::new(&crate::unique_name("test-ingest-refused"))
            .expect("topology");
        let amqp = herald_amqp::AmqpSettings {
            url: Secret::new(crate::amqp_addr().replacen("amqp://", "amqp://nobody:wrong@", 1)),
            ..herald_amqp::AmqpSettings::default()
        };
        let ended = tokio::time::timeout(
            WAIT,
            herald_server::ingest::run_ingest(
                rig.store.clone(),
                herald_server::ingest::IngestKeys {
                    app_secret: Secret::new(APP_SECRET),
                    refs: None,
                },
                amqp,
                topology,
                Metrics::new(),
                CancellationToken::new(),
            ),
        )
        .await
        .expect("the consumer gave up");
        let error = ended.expect_err("refused");
        let shown = error.to_string();
        assert!(shown.contains("ingest consumer"), "{shown}");
        assert!(!shown.contains("wrong"), "the password leaked: {shown}");
    })
    .await;
}
