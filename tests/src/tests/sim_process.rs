//! `herald sim` as a process, the way demos and operators run it: flags become behaviour, the
//! Graph paths answer over HTTP, and SIGTERM stops it cleanly.

use std::process::Stdio;
use std::time::Duration;

use crate::{eventually, herald};

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
