//! `GET /dead` in pages over a real dead-letter queue: more messages than a page (jobs, poison,
//! identical copies of both), read page by page with `next`, come back each exactly once, with
//! or without a filter, and all of them stay in the queue. Bad paging parameters are 400.

use std::collections::BTreeMap;
use std::time::Duration;

use herald_amqp::{Headers, Publisher};
use serde_json::Value;

use super::server_api_rig::{ApiServer, PAGE};
use crate::eventually;
use crate::worker_rig::job;

/// Every message of every page, as `job id|reason`, and the number of pages.
async fn all_pages(server: &ApiServer, query: &str) -> (Vec<String>, usize) {
    let (mut seen, mut pages, mut after) = (Vec::new(), 0, None::<String>);
    loop {
        let path = match &after {
            Some(after) => format!("/dead?{query}&after={after}"),
            None => format!("/dead?{query}"),
        };
        let reply = server.get(&path).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text);
        pages += 1;
        for message in reply.json["messages"].as_array().expect("messages") {
            let id = message["job_id"].as_str().unwrap_or("(poison)");
            seen.push(format!(
                "{id}|{}",
                message["reason"].as_str().expect("reason")
            ));
        }
        match &reply.json["next"] {
            Value::String(next) => after = Some(next.clone()),
            Value::Null => return (seen, pages),
            other => panic!("next: {other}"),
        }
        assert!(pages < 100, "paging never ends");
    }
}

fn counted(items: &[String]) -> BTreeMap<&str, usize> {
    let mut counts = BTreeMap::new();
    for item in items {
        *counts.entry(item.as_str()).or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn dead_letters_page_through_every_message_exactly_once_and_lose_none() {
    let Some(server) = ApiServer::start("test-api-dead-pages").await else {
        return;
    };
    let publisher = Publisher::open(&server.connection, 256)
        .await
        .expect("publisher");
    let exchange = server.topology.dead_exchange();
    let mut expected = Vec::new();
    let mut confirms = Vec::new();
    let mut put = |body: Vec<u8>, reason: String, id: Option<String>| {
        expected.push(format!("{}|{reason}", id.as_deref().unwrap_or("(poison)")));
        (body, Headers::new().with_reason(&reason))
    };
    let mut messages = Vec::new();
    for n in 0..230 {
        let run = if n % 2 == 0 { "run-a" } else { "run-b" };
        let user = format!("u{n:03}");
        let id = format!("{run}:{user}");
        messages.push(put(
            job(run, PAGE, &user, "2001"),
            "gave up".into(),
            Some(id),
        ));
    }
    for _ in 0..5 {
        let id = "run-a:copied".to_owned();
        messages.push(put(
            job("run-a", PAGE, "copied", "2001"),
            "copy".into(),
            Some(id),
        ));
    }
    for n in 0..15 {
        messages.push(put(
            format!("{{oops {n}").into_bytes(),
            format!("poison {n}"),
            None,
        ));
    }
    for _ in 0..3 {
        messages.push(put(b"{same".to_vec(), "same poison".into(), None));
    }
    for (body, headers) in messages {
        let confirm = publisher
            .publish(&exchange, "", &body, headers)
            .await
            .expect("publish");
        confirms.push(confirm);
    }
    for confirm in confirms {
        confirm.await.expect("confirmed");
    }
    publisher.close().await.expect("close publisher");
    let queue = server.topology.dead_queue();
    let count = || async { server.connection.message_count(&queue).await.unwrap_or(0) };
    assert!(eventually(Duration::from_secs(10), || async { count().await == 253 }).await);

    let first = server.get("/dead").await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.json["messages"].as_array().map(Vec::len), Some(100));
    assert_eq!(
        (first.json["total"].clone(), first.json["matching"].clone()),
        (253.into(), 253.into())
    );
    assert!(first.json["next"].is_string(), "{}", first.text);

    for limit in [40, 1000] {
        let (seen, pages) = all_pages(&server, &format!("limit={limit}")).await;
        assert_eq!(seen.len(), 253, "limit {limit}");
        assert_eq!(
            counted(&seen),
            counted(&expected),
            "limit {limit}: each exactly once"
        );
        assert_eq!(pages, 253_usize.div_ceil(limit), "limit {limit}");
    }
    // The five identical copies come first in run-a (`copied` < `u000`) and straddle the
    // boundary of the first two pages.
    let (seen, pages) = all_pages(&server, "run_id=run-a&limit=3").await;
    assert_eq!(pages, 40);
    let run_a: Vec<String> = expected
        .iter()
        .filter(|e| e.starts_with("run-a:"))
        .cloned()
        .collect();
    assert_eq!(seen.len(), 120);
    assert_eq!(counted(&seen), counted(&run_a));

    for bad in [
        "/dead?limit=0",
        "/dead?limit=1001",
        "/dead?after=nonsense",
        "/dead?page=2",
    ] {
        let refused = server.get(bad).await;
        assert_eq!(refused.status, 400, "{bad}: {}", refused.text);
        assert!(refused.json["error"].is_string(), "{bad}");
    }
    assert!(
        eventually(Duration::from_secs(10), || async { count().await == 253 }).await,
        "paging lost nothing"
    );
    server.stop().await;
}
