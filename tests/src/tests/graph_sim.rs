//! The Send API client against the simulator over real HTTP: every error class, usage headers,
//! timeouts and the simulator's 1-second-window accounting. Neither side shares code with the
//! other, so an agreement here is an agreement on Meta's documented behaviour
//! (docs/messenger-platform.md), not on a shared bug.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use herald_core::{ErrorClass, Secret};
use herald_graph::{GraphClient, GraphSettings, SendError};
use herald_sim::{PsidOutcome, PsidRule, SimConfig, SimHandle};

const PAGE: &str = "1000000001";
const TOKEN: &str = "EAAB-test-page-token";

async fn sim(config: SimConfig) -> SimHandle {
    herald_sim::spawn(config, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("simulator")
}

fn client(sim: &SimHandle, app_secret: Option<&str>) -> GraphClient {
    GraphClient::new(GraphSettings {
        graph_url: sim.url(),
        app_secret: app_secret.map(Secret::from),
        request_timeout: Duration::from_millis(500),
        ..GraphSettings::default()
    })
    .expect("client")
}

fn body(psid: &str, text: &str) -> Bytes {
    let body = serde_json::json!({
        "recipient": {"id": psid},
        "messaging_type": "UPDATE",
        "message": {"text": text, "metadata": "run:user"},
    });
    Bytes::from(serde_json::to_vec(&body).expect("json"))
}

async fn send(client: &GraphClient, psid: &str) -> Result<herald_graph::Sent, SendError> {
    client
        .send(PAGE, &Secret::from(TOKEN), body(psid, "hello"), 1)
        .await
}

fn class(result: &Result<herald_graph::Sent, SendError>) -> Option<ErrorClass> {
    result.as_ref().err().map(|e| e.verdict().class)
}

#[tokio::test]
async fn a_send_is_accepted_byte_for_byte() {
    let sim = sim(SimConfig::default()).await;
    let client = client(&sim, None);
    let sent = send(&client, "111").await.expect("sent");
    assert!(!sent.message_id.is_empty());
    assert_eq!(sent.recipient_id.as_deref(), Some("111"));
    let recorded = sim.messages("111");
    assert_eq!(recorded.len(), 1);
    assert_eq!(
        recorded[0].message_id.as_deref(),
        Some(sent.message_id.as_str())
    );
    assert_eq!(recorded[0].body["message"]["metadata"], "run:user");
    sim.shutdown().await;
}

#[tokio::test]
async fn each_psid_outcome_lands_in_its_class() {
    let rules = vec![
        PsidRule::prefix("551", PsidOutcome::Unavailable),
        PsidRule::prefix("2018278", PsidOutcome::OutsideWindow),
        PsidRule::prefix("2018001", PsidOutcome::NoMatchingUser),
        PsidRule::prefix("1545041", PsidOutcome::NotAvailable),
        PsidRule::prefix("190", PsidOutcome::TokenRevoked),
        PsidRule::prefix(
            "368",
            PsidOutcome::Error {
                code: 368,
                subcode: None,
            },
        ),
        PsidRule::prefix(
            "613",
            PsidOutcome::Error {
                code: 613,
                subcode: None,
            },
        ),
        PsidRule::prefix(
            "100",
            PsidOutcome::Error {
                code: 100,
                subcode: None,
            },
        ),
        PsidRule::prefix("2", PsidOutcome::FailFirst),
    ];
    let sim = sim(SimConfig {
        psid_rules: rules,
        ..SimConfig::default()
    })
    .await;
    let client = client(&sim, None);
    let table = [
        ("5510001", Some(ErrorClass::DropUser)),
        ("20182780001", Some(ErrorClass::DropUser)),
        ("20180010001", Some(ErrorClass::DropUser)),
        ("15450410001", Some(ErrorClass::DropUser)),
        ("1900001", Some(ErrorClass::HaltPage)),
        ("3680001", Some(ErrorClass::HaltPage)),
        ("6130001", Some(ErrorClass::SlowDown)),
        ("1000001", Some(ErrorClass::Invalid)),
        ("20001", Some(ErrorClass::Retry)),
        ("20001", None),
        ("999", None),
    ];
    for (psid, expected) in table {
        assert_eq!(class(&send(&client, psid).await), expected, "psid {psid}");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn server_faults_and_transient_codes_are_retried() {
    let sim = sim(SimConfig {
        fail_rate: 1.0,
        ..SimConfig::default()
    })
    .await;
    let client = client(&sim, None);
    for _ in 0..5 {
        assert_eq!(class(&send(&client, "1").await), Some(ErrorClass::Retry));
    }
    sim.update_config(|c| {
        c.fail_rate = 0.0;
        c.transient_rate = 1.0;
    })
    .expect("config");
    let result = send(&client, "1").await;
    assert_eq!(class(&result), Some(ErrorClass::Retry));
    assert_eq!(result.err().and_then(|e| e.code()), Some(2));
    sim.shutdown().await;
}

#[tokio::test]
async fn a_held_request_times_out_as_retry() {
    let sim = sim(SimConfig {
        timeout_rate: 1.0,
        timeout_hold_ms: 5_000,
        ..SimConfig::default()
    })
    .await;
    let client = client(&sim, None);
    let result = send(&client, "1").await;
    assert!(
        matches!(result, Err(SendError::Timeout { .. })),
        "{result:?}"
    );
    assert_eq!(class(&result), Some(ErrorClass::Retry));
    sim.shutdown().await;
}

#[tokio::test]
async fn tokens_and_appsecret_proofs_are_checked() {
    let tokens = HashMap::from([(PAGE.to_owned(), TOKEN.to_owned())]);
    let config = SimConfig {
        tokens,
        app_secret: Some("app-secret".into()),
        ..SimConfig::default()
    };
    let sim = sim(config).await;
    assert!(
        send(&client(&sim, Some("app-secret")), "1").await.is_ok(),
        "right token and proof"
    );
    let without_proof = send(&client(&sim, None), "1").await;
    assert_eq!(class(&without_proof), Some(ErrorClass::Invalid));
    assert_eq!(
        class(&send(&client(&sim, Some("wrong-secret")), "1").await),
        Some(ErrorClass::Invalid)
    );
    let wrong_token = client(&sim, Some("app-secret"))
        .send(PAGE, &Secret::from("other"), body("1", "x"), 1)
        .await;
    assert_eq!(class(&wrong_token), Some(ErrorClass::HaltPage));
    assert_eq!(wrong_token.err().and_then(|e| e.code()), Some(190));
    sim.revoke(PAGE);
    assert_eq!(
        class(&send(&client(&sim, Some("app-secret")), "1").await),
        Some(ErrorClass::HaltPage)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn content_over_meta_limits_is_invalid() {
    let sim = sim(SimConfig::default()).await;
    let client = client(&sim, None);
    let long = "x".repeat(2000);
    let result = client
        .send(PAGE, &Secret::from(TOKEN), body("1", &long), 1)
        .await;
    assert_eq!(class(&result), Some(ErrorClass::Invalid));
    assert_eq!(result.err().and_then(|e| e.code()), Some(100));
    let ok = client
        .send(PAGE, &Secret::from(TOKEN), body("1", &"é".repeat(1999)), 1)
        .await;
    assert!(
        ok.is_ok(),
        "1999 characters (3998 bytes) are within the limit: {ok:?}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn over_the_page_rate_the_client_sees_613_with_the_budget_usage_and_the_window_is_counted() {
    const RATE: u32 = 40;
    let sim = sim(SimConfig {
        rate_per_sec: RATE,
        // A call budget of 200, so 50 calls are a quarter of it.
        engaged_users: 1,
        ..SimConfig::default()
    })
    .await;
    let client = client(&sim, None);
    let mut accepted = 0;
    let mut highest_usage: f64 = 0.0;
    let mut throttled = None;
    for i in 0..(RATE + 10) {
        match send(&client, &format!("{i}")).await {
            Ok(sent) => {
                accepted += 1;
                highest_usage = highest_usage.max(sent.usage.map_or(0.0, |u| u.ratio));
            }
            Err(error) => throttled = Some(error),
        }
    }
    // All 50 calls fit in well under a second on loopback; if the machine stalled past the
    // window boundary, more are accepted, never more than RATE in any one second.
    let stats = sim.stats();
    assert!(accepted >= RATE, "accepted {accepted}");
    assert_eq!(
        stats.max_per_second.get(PAGE).copied(),
        Some(RATE),
        "highest 1-second window"
    );
    // The usage headers report the call budget (from 10 % of it on ordinary answers), not
    // the per-second limit.
    assert!(
        (0.2..=0.25).contains(&highest_usage),
        "usage headers on ordinary answers ({highest_usage})"
    );
    let error = throttled.expect("some calls were throttled");
    assert_eq!(error.code(), Some(613));
    assert_eq!(error.verdict().class, ErrorClass::SlowDown);
    let usage = error.usage().expect("usage header with the 613");
    assert!(
        (0.2..=0.25).contains(&usage.ratio),
        "a per-second 613 reports the budget's use ({})",
        usage.ratio
    );
    assert!(
        usage.regain_access.is_none_or(|d| d.is_zero()),
        "the per-second limit names no regain time: {usage:?}"
    );
    assert_eq!(
        stats.rejected.get(&613).copied(),
        Some(u64::from(RATE + 10 - accepted))
    );
    sim.shutdown().await;
}
