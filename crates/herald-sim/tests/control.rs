//! Rate limits, scripted recipient outcomes and the `/_sim` observability endpoints over real HTTP.

mod common;

use common::*;
use herald_sim::{PsidOutcome, PsidRule, Stats};
use hyper::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn rate_limit_answers_613_with_usage_and_counts_the_sliding_max() {
    let config = SimConfig {
        rate_per_sec: 3,
        // A budget of 200 calls, and the header on every answer.
        engaged_users: 1,
        usage_header_min_pct: 0,
        ..SimConfig::default()
    };
    let sim = start(config).await;
    let http = Http::new();
    let url = send_url(&sim, "77", "t");
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..10 {
        let (http, url) = (http.clone(), url.clone());
        calls.spawn(async move { http.post_json(&url, &text_to(&format!("p{i}"))).await });
    }
    let replies = calls.join_all().await;
    let ok: Vec<_> = replies
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .collect();
    let limited: Vec<_> = replies
        .iter()
        .filter(|r| r.status != StatusCode::OK)
        .collect();
    // Ten calls within far less than a second: exactly three fit in the window.
    assert_eq!(ok.len(), 3);

    for reply in &limited {
        assert_eq!(reply.graph_error(), (613, None));
        let message = reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            message.contains("Calls to this api have exceeded the rate limit"),
            "{message}"
        );
        let usage: Value =
            serde_json::from_str(reply.header("x-business-use-case-usage").unwrap()).unwrap();
        let entry = &usage["77"][0];
        assert_eq!(entry["type"], "messenger");
        // The per-second limit is not the budget: 10 calls are 5 % of 200, and the page may
        // call again within the second.
        assert!(entry["call_count"].as_u64().unwrap() <= 5, "{usage}");
        assert_eq!(entry["estimated_time_to_regain_access"], 0);
        assert!(reply.header("x-app-usage").is_some());
    }
    for reply in &ok {
        let usage: Value =
            serde_json::from_str(reply.header("x-business-use-case-usage").unwrap()).unwrap();
        assert!(usage["77"][0]["call_count"].as_u64().unwrap() <= 5);
        assert_eq!(usage["77"][0]["estimated_time_to_regain_access"], 0);
    }

    let stats: Stats =
        serde_json::from_slice(&http.get(&format!("{}/_sim/stats", sim.url())).await.body).unwrap();
    assert_eq!(stats.accepted, 3);
    assert_eq!(stats.rejected[&613], 7);
    assert_eq!(stats.accepted_by_page["77"], 3);
    assert_eq!(stats.max_per_second["77"], 3);
    sim.shutdown().await;
}

#[tokio::test]
async fn usage_header_is_absent_while_usage_is_low() {
    let sim = start(SimConfig::default()).await;
    let reply = Http::new()
        .post_json(&send_url(&sim, "1", "t"), &text_to("1"))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply.header("x-business-use-case-usage").is_none(),
        "1 of 20,000,000 is under 10 %"
    );
    sim.shutdown().await;
}

/// The page's call budget: `call_count` is its share used, the header appears from 10 %, every
/// call past 100 % gets 613 with the minutes until old calls leave the window, and a page's
/// own engaged users (set through `/_sim/config`) give it a budget of its own.
#[tokio::test]
async fn a_spent_call_budget_answers_613_until_it_rolls_over() {
    let config = SimConfig {
        rate_per_sec: 10_000,
        // 200 × 1 = 200 calls per 3 minutes.
        engaged_users: 1,
        budget_window_ms: 180_000,
        ..SimConfig::default()
    };
    let sim = start(config).await;
    let http = Http::new();
    let url = send_url(&sim, "77", "t");
    let usage_of = |reply: &Reply| -> Option<(u64, u64)> {
        let usage: Value =
            serde_json::from_str(reply.header("x-business-use-case-usage")?).unwrap();
        let entry = &usage["77"][0];
        Some((
            entry["call_count"].as_u64().unwrap(),
            entry["estimated_time_to_regain_access"].as_u64().unwrap(),
        ))
    };
    let mut seen = Vec::new();
    for n in 1..=200u64 {
        let reply = http.post_json(&url, &text_to(&format!("u{n}"))).await;
        assert_eq!(reply.status, StatusCode::OK, "call {n}");
        seen.push(usage_of(&reply));
    }
    // Calls 1..=19 are under 10 %: no header; call 20 is 10 %, call 150 is 75 %, call 200 is
    // the whole budget and still accepted.
    assert!(seen[..19].iter().all(Option::is_none), "{seen:?}");
    assert_eq!(seen[19], Some((10, 0)));
    assert_eq!(seen[149], Some((75, 0)));
    assert_eq!(seen[199], Some((100, 0)));
    for n in 201..=203 {
        let reply = http.post_json(&url, &text_to(&format!("u{n}"))).await;
        assert_eq!(reply.graph_error(), (613, None), "call {n}");
        // The calls leave the window 3 minutes after they were made: 3 minutes, rounded up.
        let (pct, regain) = usage_of(&reply).expect("usage header on 613");
        assert!(pct >= 100, "{pct}");
        assert_eq!(regain, 3);
    }
    // Another page is not affected; giving page 77 more engaged users lifts its budget.
    let other = http
        .post_json(&send_url(&sim, "78", "t"), &text_to("o1"))
        .await;
    assert_eq!(other.status, StatusCode::OK);
    let config_url = format!("{}/_sim/config", sim.url());
    http.post_json(&config_url, &json!({"page_engaged_users": {"77": 10}}))
        .await;
    let lifted = http.post_json(&url, &text_to("u204")).await;
    assert_eq!(lifted.status, StatusCode::OK);
    assert_eq!(usage_of(&lifted), Some((10, 0)), "204 of 2,000 calls");
    sim.shutdown().await;
}

#[tokio::test]
async fn psid_rules_script_each_outcome() {
    let config = SimConfig {
        psid_rules: vec![
            PsidRule::prefix("551", PsidOutcome::Unavailable),
            PsidRule::exact(["w1", "w2"], PsidOutcome::OutsideWindow),
            PsidRule::prefix("nm", PsidOutcome::NoMatchingUser),
            PsidRule::prefix("na", PsidOutcome::NotAvailable),
            PsidRule::prefix("rv", PsidOutcome::TokenRevoked),
            PsidRule::prefix("ff", PsidOutcome::FailFirst),
            PsidRule::prefix(
                "ab",
                PsidOutcome::Error {
                    code: 368,
                    subcode: None,
                },
            ),
        ],
        ..SimConfig::default()
    };
    let sim = start(config).await;
    let http = Http::new();
    let url = send_url(&sim, "1", "t");
    let send = |psid: &str| {
        let (http, url, body) = (http.clone(), url.clone(), text_to(psid));
        async move { http.post_json(&url, &body).await }
    };
    let table = [
        ("5519", (551, None), "FacebookApiException"),
        ("w2", (10, Some(2018278)), "OAuthException"),
        ("nm1", (100, Some(2018001)), "OAuthException"),
        ("na1", (200, Some(1545041)), "OAuthException"),
        ("rv1", (190, Some(460)), "OAuthException"),
        ("ab1", (368, None), "OAuthException"),
    ];
    for (psid, expected, kind) in table {
        let reply = send(psid).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{psid}");
        assert_eq!(reply.graph_error(), expected, "{psid}");
        assert_eq!(reply.json()["error"]["type"], kind, "{psid}");
    }
    assert_eq!(
        send("w3").await.status,
        StatusCode::OK,
        "exact lists match exactly"
    );

    let first = send("ff1").await;
    assert_eq!(first.graph_error(), (2, None));
    assert_eq!(first.json()["error"]["is_transient"], true);
    assert_eq!(send("ff1").await.status, StatusCode::OK);
    assert_eq!(send("ff1").await.status, StatusCode::OK);
    assert_eq!(send("ff2").await.graph_error(), (2, None), "per recipient");
    sim.shutdown().await;
}

#[tokio::test]
async fn stats_messages_duplicates_and_reset() {
    let sim = start(SimConfig::default()).await;
    let http = Http::new();
    let url = send_url(&sim, "5", "t");
    let mut sent = Vec::new();
    for psid in ["a", "b", "a"] {
        let body = json!({"recipient": {"id": psid}, "messaging_type": "RESPONSE",
            "message": {"text": format!("to {psid}"), "metadata": "run-1:ext"}});
        let reply = http.post_json(&url, &body).await.json();
        sent.push((psid, body, reply["message_id"].as_str().unwrap().to_owned()));
    }
    http.post_json(&url, &json!({"recipient": {"id": "x"}}))
        .await;

    let stats = http.get(&format!("{}/_sim/stats", sim.url())).await.json();
    assert_eq!(stats["accepted"], 3);
    assert_eq!(stats["rejected"]["100"], 1);
    assert_eq!(stats["recipients"], json!({"a": 2, "b": 1}));
    assert_eq!(
        stats["duplicate_recipients"],
        json!({"count": 1, "psids": ["a"]})
    );
    assert_eq!(stats["accepted_by_page"], json!({"5": 3}));
    assert_eq!(stats["max_per_second"]["5"], 3);
    let summary = http
        .get(&format!("{}/_sim/stats?summary=1", sim.url()))
        .await
        .json();
    assert!(summary.get("recipients").is_none());
    assert_eq!(summary["duplicate_recipients"]["count"], 1);

    let listed = http
        .get(&format!("{}/_sim/messages?recipient=a", sim.url()))
        .await
        .json();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    for (entry, (_, body, mid)) in listed.iter().zip(sent.iter().filter(|(p, ..)| *p == "a")) {
        assert_eq!(&entry["body"], body);
        assert_eq!(entry["page_id"], "5");
        assert_eq!(entry["message_id"], mid.as_str());
        assert!(entry["accepted_at"].as_str().unwrap().contains('T'));
    }
    assert_eq!(sim.messages("b").len(), 1);
    let all = http
        .get(&format!("{}/_sim/messages", sim.url()))
        .await
        .json();
    let order: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["recipient"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["a", "b", "a"], "all recipients, oldest first");

    let reset = http
        .post(&format!("{}/_sim/reset", sim.url()), "application/json", "")
        .await;
    assert_eq!(reset.status, StatusCode::OK);
    let stats = sim.stats();
    assert_eq!(
        (
            stats.accepted,
            stats.rejected.len(),
            stats.max_per_second.len()
        ),
        (0, 0, 0)
    );
    assert!(sim.messages("a").is_empty());
    let after = http.post_json(&url, &text_to("a")).await.json();
    assert!(
        !sent
            .iter()
            .any(|(.., mid)| after["message_id"] == mid.as_str()),
        "ids stay unique"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn record_bodies_off_keeps_counts_only() {
    let sim = start(SimConfig {
        record_bodies: false,
        ..SimConfig::default()
    })
    .await;
    let http = Http::new();
    for _ in 0..2 {
        assert_eq!(
            http.post_json(&send_url(&sim, "1", "t"), &text_to("q"))
                .await
                .status,
            StatusCode::OK
        );
    }
    let stats = sim.stats();
    assert_eq!((stats.accepted, stats.unrecorded), (2, 2));
    assert_eq!(stats.duplicate_recipients.psids, vec!["q".to_owned()]);
    assert!(sim.messages("q").is_empty());
    sim.shutdown().await;
}
