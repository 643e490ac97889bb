//! `herald sim` as a process, the way demos and operators run it: flags become behaviour, the
//! Graph paths answer over HTTP, receipts are posted signed to `--webhook-url` with
//! `--receipts`, and SIGTERM stops it cleanly.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use bytes::Bytes;

use super::server_webhook::sign;
use crate::{Running, eventually, herald};

async fn body_json(response: reqwest::Response) -> serde_json::Value {
    serde_json::from_slice(&response.bytes().await.expect("body")).expect("JSON body")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[tokio::test]
async fn the_sim_command_serves_graph_paths_with_its_flags() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = herald(&[])
        .args([
            "sim",
            "--addr",
            &addr,
            "--rate-per-sec",
            "5",
            "--token",
            "42=good-token",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn herald sim");
    let client = reqwest::Client::new();
    let base = format!("http://{addr}");
    let up = eventually(Duration::from_secs(20), || async {
        client
            .get(format!("{base}/_sim/stats"))
            .send()
            .await
            .is_ok()
    })
    .await;
    assert!(up, "herald sim did not start");

    let body = r#"{"recipient":{"id":"7"},"messaging_type":"UPDATE","message":{"text":"hi"}}"#;
    let post = |token: &'static str| {
        client
            .post(format!("{base}/v25.0/42/messages?access_token={token}"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let ok = post("good-token").await.expect("post");
    assert_eq!(ok.status(), 200);
    let json = body_json(ok).await;
    assert_eq!(json["recipient_id"], "7");
    let bad = post("bad-token").await.expect("post");
    let json = body_json(bad).await;
    assert_eq!(json["error"]["code"], 190, "{json}");
    // --rate-per-sec 5: the sixth call within a second is throttled.
    let mut codes = Vec::new();
    for _ in 0..6 {
        let answer = body_json(post("good-token").await.expect("post")).await;
        codes.push(answer["error"]["code"].as_u64());
    }
    assert!(codes.contains(&Some(613)), "{codes:?}");

    let pid = i32::try_from(child.id()).expect("pid");
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    let status = child.wait().expect("wait");
    assert!(
        status.success(),
        "herald sim exited with {status} on SIGTERM"
    );
}

/// What a webhook receiver got: each POST's signature header and body.
type Received = Arc<Mutex<Vec<(Option<String>, Bytes)>>>;

/// A webhook receiver on a free port that answers 200 and keeps every POST.
async fn receiver() -> (String, Received) {
    let received = Received::default();
    let keep = Arc::clone(&received);
    let router = axum::Router::new().route(
        "/webhook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let keep = Arc::clone(&keep);
            async move {
                let signature = headers
                    .get("x-hub-signature-256")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                keep.lock().expect("lock").push((signature, body));
                "EVENT_RECEIVED"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/webhook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, received)
}

/// The messaging events of every POST so far, each with whether its signature was right.
fn events(received: &Received, secret: &str) -> Vec<(bool, serde_json::Value)> {
    let posts = received.lock().expect("lock").clone();
    let mut events = Vec::new();
    for (signature, body) in posts {
        let signed = signature.as_deref() == Some(sign(secret, &body).as_str());
        let json: serde_json::Value = serde_json::from_slice(&body).expect("JSON webhook body");
        for entry in json["entry"].as_array().into_iter().flatten() {
            for event in entry["messaging"].as_array().into_iter().flatten() {
                events.push((signed, event.clone()));
            }
        }
    }
    events
}

#[tokio::test]
async fn receipts_flag_posts_signed_delivery_and_read_receipts() {
    let (webhook_url, received) = receiver().await;
    let addr = format!("127.0.0.1:{}", free_port());
    let secret = "receipts-app-secret";
    let sim = herald(&[("HERALD_APP_SECRET", secret)])
        .args(["sim", "--addr", &addr, "--webhook-url", &webhook_url])
        .args([
            "--receipts",
            "--delivery-delay-ms",
            "10",
            "--read-delay-ms",
            "30",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(Running)
        .expect("spawn herald sim");
    let client = reqwest::Client::new();
    let base = format!("http://{addr}");
    let up = eventually(Duration::from_secs(20), || async {
        client
            .get(format!("{base}/_sim/stats"))
            .send()
            .await
            .is_ok()
    })
    .await;
    assert!(up, "herald sim did not start");

    // The page token and its appsecret_proof (the sim requires one when it has an app secret).
    let token = "any-page-token";
    let proof = sign(secret, token.as_bytes());
    let proof = proof.trim_start_matches("sha256=");
    let body = r#"{"recipient":{"id":"24000000000000007"},"messaging_type":"UPDATE","message":{"text":"hi"}}"#;
    let answer = client
        .post(format!(
            "{base}/v25.0/1000000001/messages?access_token={token}&appsecret_proof={proof}"
        ))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("post");
    let answer = body_json(answer).await;
    let mid = answer["message_id"]
        .as_str()
        .expect("a message_id")
        .to_owned();

    let receipted = |events: &[(bool, serde_json::Value)]| {
        let delivered = events.iter().any(|(_, e)| {
            e["delivery"]["mids"]
                .as_array()
                .is_some_and(|mids| mids.iter().any(|m| m == mid.as_str()))
        });
        delivered && events.iter().any(|(_, e)| e["read"]["watermark"].is_i64())
    };
    let both = eventually(Duration::from_secs(20), || {
        let done = receipted(&events(&received, secret));
        async move { done }
    })
    .await;
    let events = events(&received, secret);
    assert!(both, "no delivery and read receipt for {mid}: {events:?}");
    for (signed, event) in &events {
        assert!(*signed, "unsigned or badly signed webhook POST: {event}");
        assert_eq!(event["sender"]["id"], "24000000000000007", "{event}");
        assert_eq!(event["recipient"]["id"], "1000000001", "{event}");
    }
    assert!(sim.terminate().await, "herald sim exits 0 on SIGTERM");
}

#[test]
fn receipts_need_a_webhook_url() {
    let output = herald(&[])
        .args(["sim", "--addr", "127.0.0.1:0", "--receipts"])
        .output()
        .expect("run herald sim");
    assert_eq!(output.status.code(), Some(2), "command-line misuse");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--webhook-url"), "{stderr}");
}
