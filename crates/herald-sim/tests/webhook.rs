//! The webhook side over real HTTP: signed receipts for accepted messages, inbound messages on
//! demand, retries of failed POSTs. A tiny local receiver verifies the HMAC itself.

mod common;

use std::time::Duration;

use common::*;
use herald_sim::{PsidOutcome, PsidRule};
use hmac::{Hmac, Mac};
use hyper::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;

const SECRET: &str = "webhook-secret";
const WAIT: Duration = Duration::from_secs(10);

/// Checks `X-Hub-Signature-256` over the raw bytes and returns the parsed body.
fn verified(post: &Received) -> Value {
    let header = post
        .headers
        .get("x-hub-signature-256")
        .expect("signed")
        .to_str()
        .unwrap();
    let hex_sig = header.strip_prefix("sha256=").expect("sha256= prefix");
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&post.body);
    mac.verify_slice(&hex::decode(hex_sig).unwrap())
        .expect("signature matches the raw body");
    serde_json::from_slice(&post.body).unwrap()
}

/// Every messaging event of every entry of every POST, with its entry's page id.
fn events(posts: &[Received]) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for post in posts {
        let body = verified(post);
        assert_eq!(body["object"], "page");
        for entry in body["entry"].as_array().unwrap() {
            assert!(entry["time"].as_i64().unwrap() > 0);
            for event in entry["messaging"].as_array().unwrap() {
                out.push((entry["id"].as_str().unwrap().to_owned(), event.clone()));
            }
        }
    }
    out
}

fn webhook_config(receiver: &Receiver) -> SimConfig {
    SimConfig {
        app_secret: Some(SECRET.into()),
        webhook_url: Some(receiver.url()),
        receipts: true,
        delivery_delay_ms: 10,
        read_delay_ms: 30,
        webhook_backoff_ms: 20,
        ..SimConfig::default()
    }
}

/// Appsecret proof for token `t`, as a query suffix.
fn proof_query() -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(b"t");
    format!(
        "&appsecret_proof={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

#[tokio::test]
async fn receipts_arrive_signed_for_accepted_messages() {
    let receiver = Receiver::start(0).await;
    let sim = start(webhook_config(&receiver)).await;
    let http = Http::new();
    let url = send_url(&sim, "900", "t") + &proof_query();
    let mut mids = Vec::new();
    for psid in ["u1", "u1", "u2"] {
        let reply = http.post_json(&url, &text_to(psid)).await;
        assert_eq!(reply.status, StatusCode::OK);
        mids.push(reply.json()["message_id"].as_str().unwrap().to_owned());
    }

    let delivered = |events: &[(String, Value)]| -> Vec<String> {
        events
            .iter()
            .filter_map(|(_, e)| e["delivery"]["mids"].as_array())
            .flatten()
            .map(|m| m.as_str().unwrap().to_owned())
            .collect()
    };
    let reads = |events: &[(String, Value)]| {
        events
            .iter()
            .filter(|(_, e)| e.get("read").is_some())
            .count()
    };
    eventually(WAIT, || {
        let events = events(&receiver.posts());
        delivered(&events).len() == 3 && reads(&events) >= 2
    })
    .await;

    let events = events(&receiver.posts());
    let mut got = delivered(&events);
    got.sort();
    mids.sort();
    assert_eq!(got, mids, "each accepted message is delivered exactly once");
    let at_ms = |psid: &str| {
        sim.messages(psid)
            .iter()
            .map(|m| m.accepted_at_ms)
            .max()
            .unwrap()
    };
    for (page, event) in &events {
        assert_eq!(page, "900");
        assert_eq!(event["recipient"]["id"], "900");
        let psid = event["sender"]["id"].as_str().unwrap();
        assert!(["u1", "u2"].contains(&psid));
        assert!(event["timestamp"].as_i64().unwrap() > 0);
        if let Some(delivery) = event.get("delivery") {
            assert!(delivery["watermark"].as_i64().unwrap() <= at_ms(psid));
        } else {
            assert!(event["read"]["watermark"].as_i64().unwrap() <= at_ms(psid));
        }
    }
    let post = &receiver.posts()[0];
    assert_eq!(
        post.headers.get("content-type").unwrap(),
        "application/json"
    );
    eventually(WAIT, || {
        sim.stats().webhook.posts_ok as usize == receiver.posts().len()
    })
    .await;
    assert_eq!(sim.stats().webhook.posts_failed, 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn inbound_messages_are_posted_on_demand() {
    let receiver = Receiver::start(0).await;
    let sim = start(webhook_config(&receiver)).await;
    let http = Http::new();
    let inbound =
        json!({"page_id": "900", "psid": "u7", "text": "Olá / hi", "ref": "spring-promo"});
    let reply = http
        .post_json(&format!("{}/_sim/inbound", sim.url()), &inbound)
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    let mid = reply.json()["mid"].as_str().unwrap().to_owned();

    eventually(WAIT, || !receiver.posts().is_empty()).await;
    let post = &receiver.posts()[0];
    let raw = std::str::from_utf8(&post.body).unwrap();
    assert!(raw.contains(r"Ol\u00e1 \/ hi"), "escaped like Meta: {raw}");
    let events = events(&receiver.posts());
    let (page, event) = &events[0];
    assert_eq!(page, "900");
    assert_eq!(event["sender"]["id"], "u7");
    assert_eq!(event["recipient"]["id"], "900");
    assert_eq!(event["message"]["mid"], mid.as_str());
    assert_eq!(event["message"]["text"], "Olá / hi");
    assert_eq!(event["message"]["referral"]["ref"], "spring-promo");

    let via_handle = sim.inbound("900", "u8", "second", None).expect("queued");
    eventually(WAIT, || receiver.posts().len() == 2).await;
    let events = self::events(&receiver.posts());
    assert_eq!(events[1].1["message"]["mid"], via_handle.as_str());
    sim.shutdown().await;
}

#[tokio::test]
async fn failed_posts_are_retried_with_backoff() {
    let receiver = Receiver::start(2).await;
    let sim = start(webhook_config(&receiver)).await;
    sim.inbound("900", "u9", "retry me", None).expect("queued");
    eventually(WAIT, || sim.stats().webhook.posts_ok == 1).await;
    let posts = receiver.posts();
    assert_eq!(posts.len(), 3, "two failures, then success");
    assert_eq!(
        posts[0].body, posts[2].body,
        "retries resend the same bytes"
    );
    let webhook = sim.stats().webhook;
    assert_eq!(
        (
            webhook.posts_failed,
            webhook.posts_dropped,
            webhook.events_sent
        ),
        (2, 0, 1)
    );

    let reset = sim.update_config(|c| c.webhook_retries = 0);
    assert!(reset.is_ok());
    let receiver_down = Receiver::start(usize::MAX).await;
    sim.update_config(|c| c.webhook_url = Some(receiver_down.url()))
        .unwrap();
    sim.inbound("900", "u9", "dropped", None).expect("queued");
    eventually(WAIT, || sim.stats().webhook.posts_dropped == 1).await;
    sim.shutdown().await;
}

/// With echoes on, every accepted message comes back as a signed `is_echo` event from the page
/// to the person, carrying the send's `metadata`, the app id and the `mid` the answer gave; and
/// a lost answer (by PSID rule or by probability) still counts as accepted and is echoed,
/// though the client got no answer.
#[tokio::test]
async fn echoes_carry_the_metadata_even_when_the_answer_is_lost() {
    let receiver = Receiver::start(0).await;
    let sim = start(SimConfig {
        receipts: false,
        echoes: true,
        echo_delay_ms: 10,
        psid_rules: vec![PsidRule::prefix("lost", PsidOutcome::LoseAnswer)],
        ..webhook_config(&receiver)
    })
    .await;
    let http = Http::new();
    let url = send_url(&sim, "900", "t") + &proof_query();
    let send = |psid: &str, metadata: &str| {
        let mut body = text_to(psid);
        body["message"]["metadata"] = json!(metadata);
        let request = hyper::Request::post(url.as_str())
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(
                serde_json::to_vec(&body).unwrap(),
            )))
            .unwrap();
        http.request(request)
    };
    let answered = send("u1", "run1:u1").await.expect("an answer");
    assert_eq!(answered.status, StatusCode::OK);
    let mid = answered.json()["message_id"].as_str().unwrap().to_owned();
    assert!(
        send("lost-1", "run1:lost-1").await.is_err(),
        "the answer is lost"
    );

    let echoes = || -> Vec<Value> {
        events(&receiver.posts())
            .into_iter()
            .map(|(_, event)| event)
            .filter(|event| event["message"]["is_echo"] == true)
            .collect()
    };
    eventually(WAIT, || echoes().len() == 2).await;
    let echoes = echoes();
    let by_metadata = |metadata: &str| {
        echoes
            .iter()
            .find(|e| e["message"]["metadata"] == metadata)
            .unwrap_or_else(|| panic!("no echo for {metadata}: {echoes:?}"))
            .clone()
    };
    let first = by_metadata("run1:u1");
    assert_eq!(first["sender"]["id"], "900", "an echo comes from the page");
    assert_eq!(first["recipient"]["id"], "u1");
    assert_eq!(first["message"]["mid"], mid.as_str());
    assert!(first["message"]["app_id"].is_u64(), "{first}");
    let lost = by_metadata("run1:lost-1");
    assert_eq!(lost["recipient"]["id"], "lost-1");
    let stats = sim.stats();
    assert_eq!((stats.accepted, stats.lost_answers), (2, 1));
    assert!(
        !events(&receiver.posts())
            .iter()
            .any(|(_, e)| e.get("delivery").is_some()),
        "receipts stay off"
    );
    sim.shutdown().await;
}
