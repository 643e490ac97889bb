//! The Graph side over real HTTP: success shape, versions, tokens, appsecret_proof, validation
//! errors, scripted faults and held calls.

mod common;

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::*;
use hmac::{Hmac, Mac};
use http_body_util::Full;
use hyper::{Request, StatusCode};
use serde_json::{Value, json};
use sha2::Sha256;

fn proof(secret: &str, message: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(message.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn with_tokens(pairs: &[(&str, &str)]) -> SimConfig {
    let tokens: HashMap<String, String> = pairs
        .iter()
        .map(|(page, token)| (page.to_string(), token.to_string()))
        .collect();
    SimConfig {
        tokens,
        ..SimConfig::default()
    }
}

#[tokio::test]
async fn success_shape_paths_and_body_forms() {
    let sim = start(SimConfig::default()).await;
    let http = Http::new();

    let reply = http
        .post_json(&send_url(&sim, "1", "t"), &text_to("42"))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    assert_eq!(body["recipient_id"], "42");
    assert!(
        body["message_id"].as_str().unwrap().starts_with("m_"),
        "{body}"
    );
    assert_eq!(body.as_object().unwrap().len(), 2);
    assert_eq!(reply.header("facebook-api-version"), Some("v25.0"));
    let app_usage: Value = serde_json::from_str(reply.header("x-app-usage").unwrap()).unwrap();
    assert_eq!(
        app_usage,
        json!({"call_count": 0, "total_cputime": 0, "total_time": 0})
    );

    let me = format!("{}/v22.0/me/messages?access_token=t", sim.url());
    let second = http.post_json(&me, &text_to("42")).await.json();
    assert_ne!(
        second["message_id"], body["message_id"],
        "message ids are unique"
    );

    let bearer = Request::post(format!("{}/v26.0/1/messages", sim.url()))
        .header("authorization", "Bearer t")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            serde_json::to_vec(&text_to("43")).unwrap(),
        )))
        .unwrap();
    assert_eq!(http.request(bearer).await.unwrap().status, StatusCode::OK);

    let form = "recipient=%7B%22id%22%3A%2244%22%7D&messaging_type=RESPONSE\
                &message=%7B%22text%22%3A%22hello%22%7D&access_token=t";
    let url = format!("{}/v25.0/1/messages", sim.url());
    let reply = http
        .post(&url, "application/x-www-form-urlencoded", form)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.json()["recipient_id"], "44");
    let recorded = sim.messages("44");
    assert_eq!(recorded[0].body["message"]["text"], "hello");

    let expired = http
        .post_json(
            &format!("{}/v19.0/1/messages?access_token=t", sim.url()),
            &text_to("1"),
        )
        .await;
    assert_eq!(expired.header("facebook-api-version"), Some("v22.0"));
    for bad in [
        "/v99.0/1/messages",
        "/v25/1/messages",
        "/latest/1/messages",
        "/v25.0/1/feed",
    ] {
        let reply = http
            .post_json(&format!("{}{bad}?access_token=t", sim.url()), &text_to("1"))
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(reply.graph_error(), (2500, None), "{bad}");
    }
    assert_eq!(sim.stats().accepted, 5);
    sim.shutdown().await;
}

#[tokio::test]
async fn tokens_are_checked_per_page_and_can_be_revoked() {
    let sim = start(with_tokens(&[("1", "tok-1"), ("2", "tok-2")])).await;
    let http = Http::new();
    let send = |page: &str, token: &str| {
        let (http, url) = (http.clone(), send_url(&sim, page, token));
        async move { http.post_json(&url, &text_to("42")).await }
    };
    assert_eq!(send("1", "tok-1").await.status, StatusCode::OK);
    let me = http
        .post_json(
            &format!("{}/v25.0/me/messages?access_token=tok-2", sim.url()),
            &text_to("9"),
        )
        .await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(
        sim.messages("9")[0].page_id,
        "2",
        "`me` resolves to the token's page"
    );
    for (page, token) in [("1", "tok-2"), ("1", ""), ("3", "tok-1"), ("1", "nope")] {
        let reply = send(page, token).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        assert_eq!(reply.graph_error(), (190, None), "{page} {token}");
        assert_eq!(reply.json()["error"]["type"], "OAuthException");
    }

    let revoke = http
        .post(
            &format!("{}/_sim/pages/1/revoke", sim.url()),
            "application/json",
            "",
        )
        .await;
    assert_eq!(revoke.status, StatusCode::OK);
    assert_eq!(send("1", "tok-1").await.graph_error(), (190, Some(460)));
    assert_eq!(
        send("2", "tok-2").await.status,
        StatusCode::OK,
        "other pages unaffected"
    );

    let restore = http
        .post_json(
            &format!("{}/_sim/pages/1/token", sim.url()),
            &json!({"token": "tok-new"}),
        )
        .await;
    assert_eq!(restore.status, StatusCode::OK);
    assert_eq!(send("1", "tok-new").await.status, StatusCode::OK);
    assert_eq!(send("1", "tok-1").await.graph_error(), (190, None));

    sim.revoke("2");
    assert_eq!(send("2", "tok-2").await.graph_error(), (190, Some(460)));
    assert_eq!(sim.stats().rejected[&190], 7);
    sim.shutdown().await;
}

#[tokio::test]
async fn appsecret_proof_missing_wrong_and_both_valid_forms() {
    let config = SimConfig {
        app_secret: Some("app-secret".into()),
        ..SimConfig::default()
    };
    let sim = start(config).await;
    let http = Http::new();
    let send = |query: String| {
        let (http, url) = (
            http.clone(),
            format!("{}/v25.0/1/messages?{query}", sim.url()),
        );
        async move { http.post_json(&url, &text_to("42")).await }
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();

    let missing = send("access_token=tok".into()).await;
    assert_eq!(missing.graph_error(), (100, None));
    let error = &missing.json()["error"];
    assert_eq!(error["type"], "GraphMethodException");
    assert_eq!(
        error["message"],
        "API calls from the server require an appsecret_proof argument"
    );

    let wrong = send(format!(
        "access_token=tok&appsecret_proof={}",
        proof("other", "tok")
    ))
    .await;
    assert_eq!(wrong.graph_error(), (100, None));
    assert_eq!(
        wrong.json()["error"]["message"],
        "Invalid appsecret_proof provided in the API argument"
    );

    let classic = send(format!(
        "access_token=tok&appsecret_proof={}",
        proof("app-secret", "tok")
    ))
    .await;
    assert_eq!(classic.status, StatusCode::OK);
    let stamped = proof("app-secret", &format!("tok|{now}"));
    let timed = send(format!(
        "access_token=tok&appsecret_proof={stamped}&appsecret_time={now}"
    ))
    .await;
    assert_eq!(timed.status, StatusCode::OK);
    let old = now - 600;
    let stale = proof("app-secret", &format!("tok|{old}"));
    let expired = send(format!(
        "access_token=tok&appsecret_proof={stale}&appsecret_time={old}"
    ))
    .await;
    assert_eq!(expired.graph_error(), (100, None));
    sim.shutdown().await;
}

#[tokio::test]
async fn each_validation_error_is_code_100() {
    let sim = start(SimConfig::default()).await;
    let http = Http::new();
    let url = send_url(&sim, "1", "t");
    let quick = json!({"content_type": "text", "title": "t", "payload": "p"});
    let element =
        json!({"title": "t", "buttons": [{"type": "postback", "title": "b", "payload": "p"}]});
    let button = json!({"type": "postback", "title": "b", "payload": "p"});
    let bad: Vec<Value> = vec![
        json!({"messaging_type": "UPDATE", "message": {"text": "x"}}),
        json!({"recipient": {}, "messaging_type": "UPDATE", "message": {"text": "x"}}),
        json!({"recipient": {"id": "1", "user_ref": "u"}, "messaging_type": "UPDATE", "message": {"text": "x"}}),
        json!({"recipient": {"id": "1"}, "message": {"text": "x"}}),
        json!({"recipient": {"id": "1"}, "messaging_type": "UPDATE", "tag": "HUMAN_AGENT", "message": {"text": "x"}}),
        json!({"recipient": {"id": "1"}, "messaging_type": "MESSAGE_TAG", "message": {"text": "x"}}),
        json!({"recipient": {"id": "1"}, "messaging_type": "MESSAGE_TAG", "tag": "ACCOUNT_UPDATE", "message": {"text": "x"}}),
        json!({"recipient": {"id": "1"}, "messaging_type": "MESSAGE_TAG", "tag": "SHIPPING_UPDATE", "message": {"text": "x"}}),
        json!({"recipient": {"id": "1"}, "messaging_type": "UPDATE", "message": {}}),
        json!({"recipient": {"id": "1"}, "messaging_type": "UPDATE", "message": {"text": "é".repeat(2000)}}),
        json!({"recipient": {"id": "1"}, "messaging_type": "UPDATE", "message": {"text": "x", "quick_replies": vec![quick; 14]}}),
        json!({"recipient": {"id": "1"}, "messaging_type": "UPDATE",
            "message": {"text": "x", "quick_replies": [{"content_type": "text", "title": "t".repeat(21)}]}}),
        json!({"recipient": {"id": "1"}, "messaging_type": "UPDATE", "message": {"attachment": {"type": "template",
            "payload": {"template_type": "generic", "elements": vec![element.clone(); 11]}}}}),
        json!({"recipient": {"id": "1"}, "messaging_type": "UPDATE", "message": {"attachment": {"type": "template",
            "payload": {"template_type": "generic", "elements": [{"title": "t".repeat(81)}]}}}}),
        json!({"recipient": {"id": "1"}, "messaging_type": "UPDATE", "message": {"attachment": {"type": "template",
            "payload": {"template_type": "generic", "elements": [{"title": "t", "subtitle": "s".repeat(81)}]}}}}),
        json!({"recipient": {"id": "1"}, "messaging_type": "UPDATE", "message": {"attachment": {"type": "template",
            "payload": {"template_type": "button", "text": "t", "buttons": vec![button.clone(); 4]}}}}),
        json!({"recipient": {"id": "1"}, "messaging_type": "UPDATE", "message": {"attachment": {"type": "template",
            "payload": {"template_type": "button", "text": "t".repeat(641), "buttons": [button]}}}}),
        json!({"recipient": {"id": "1"}, "messaging_type": "UPDATE", "message": {"text": "x", "metadata": "m".repeat(1000)}}),
    ];
    for body in &bad {
        let reply = http.post_json(&url, body).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(reply.graph_error(), (100, None), "{body}");
    }
    let not_json = http.post(&url, "application/json", "{not json").await;
    assert_eq!(not_json.graph_error(), (100, None));
    let stats = sim.stats();
    assert_eq!(stats.accepted, 0);
    assert_eq!(stats.rejected[&100], bad.len() as u64 + 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn runtime_faults_from_the_config_endpoint() {
    let sim = start(SimConfig::default()).await;
    let http = Http::new();
    let url = send_url(&sim, "1", "t");
    let config_url = format!("{}/_sim/config", sim.url());

    let set = http
        .post_json(&config_url, &json!({"transient_rate": 1.0}))
        .await;
    assert_eq!(set.status, StatusCode::OK);
    let reply = http.post_json(&url, &text_to("1")).await;
    assert_eq!(reply.graph_error(), (2, None));
    assert_eq!(reply.json()["error"]["is_transient"], true);

    http.post_json(
        &config_url,
        &json!({"transient_rate": 0.0, "fail_rate": 1.0}),
    )
    .await;
    for _ in 0..12 {
        let reply = http.post_json(&url, &text_to("1")).await;
        assert!(reply.status.is_server_error(), "{:?}", reply.status);
        if !reply.body.is_empty() {
            assert!(matches!(reply.graph_error(), (1 | 2, None)));
        }
    }
    assert_eq!(sim.stats().server_errors, 12);

    let burst = json!({"fail_rate": 0.0, "throttle_rate": 1.0, "throttle_burst_ms": 60_000,
        "throttle_regain_minutes": 2});
    http.post_json(&config_url, &burst).await;
    let throttled = http.post_json(&url, &text_to("1")).await;
    assert_eq!(throttled.graph_error(), (613, None));
    let usage: Value =
        serde_json::from_str(throttled.header("x-business-use-case-usage").unwrap()).unwrap();
    assert_eq!(usage["1"][0]["estimated_time_to_regain_access"], 2);
    assert!(usage["1"][0]["call_count"].as_u64().unwrap() >= 100);
    http.post_json(&config_url, &json!({"throttle_rate": 0.0}))
        .await;
    let still = http.post_json(&url, &text_to("1")).await;
    assert_eq!(
        still.graph_error(),
        (613, None),
        "a burst outlives the roll that started it"
    );

    let slow = json!({"latency": {"kind": "fixed", "ms": 60}});
    http.post_json(&config_url, &slow).await;
    let started = tokio::time::Instant::now();
    let other_page = http
        .post_json(&send_url(&sim, "2", "t"), &text_to("1"))
        .await;
    assert_eq!(other_page.status, StatusCode::OK);
    assert!(
        started.elapsed() >= Duration::from_millis(60),
        "latency is applied"
    );
    let none = http
        .post_json(&config_url, &json!({"latency": {"kind": "none"}}))
        .await;
    assert_eq!(none.status, StatusCode::OK);
    assert_eq!(none.json()["latency"], json!({"kind": "none"}));

    let invalid = http
        .post_json(&config_url, &json!({"fail_rate": 2.0}))
        .await;
    assert_eq!(invalid.status, StatusCode::BAD_REQUEST);
    let unknown = http
        .post_json(&config_url, &json!({"no_such_setting": 1}))
        .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    let unchanged = sim.config();
    assert_eq!(
        (unchanged.fail_rate, unchanged.throttle_regain_minutes),
        (0.0, 2),
        "no partial apply"
    );

    http.post_json(
        &config_url,
        &json!({"fail_rate": 0.0, "app_secret": "s3cret", "tokens": {"1": "t"}}),
    )
    .await;
    let shown = http.get(&config_url).await.json();
    assert_eq!(shown["app_secret"], "***");
    assert_eq!(shown["tokens"]["1"], "***");
    sim.shutdown().await;
}

#[tokio::test]
async fn held_calls_outlast_the_client_timeout() {
    let config = SimConfig {
        timeout_rate: 1.0,
        timeout_hold_ms: 30_000,
        ..SimConfig::default()
    };
    let sim = start(config).await;
    let http = Http::new();
    let started = tokio::time::Instant::now();
    let (url, body) = (send_url(&sim, "1", "t"), text_to("1"));
    let call = http.post_json(&url, &body);
    let outcome = tokio::time::timeout(Duration::from_millis(300), call).await;
    assert!(
        outcome.is_err(),
        "the simulator must not answer a held call"
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    eventually(Duration::from_secs(5), || sim.stats().timeouts == 1).await;
    assert_eq!(sim.stats().accepted, 0);

    // A second held call is still open; shutdown must not wait for its 30 s.
    let request = Request::post(send_url(&sim, "1", "t"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            serde_json::to_vec(&text_to("1")).unwrap(),
        )))
        .unwrap();
    let http2 = http.clone();
    let pending = tokio::spawn(async move { http2.request(request).await });
    eventually(Duration::from_secs(5), || sim.stats().timeouts == 2).await;
    tokio::time::timeout(Duration::from_secs(5), sim.shutdown())
        .await
        .expect("prompt shutdown");
    let answer = pending.await.expect("task");
    assert!(
        answer.is_err(),
        "the held call ends without an answer: {answer:?}"
    );
}
