//! `herald serve --admin-addr`: the public address answers only what Meta and the load balancer
//! need (`/webhook`, `/healthz`, `/readyz`); the admin API, `/metrics` and `/openapi.json` are
//! on the admin address alone.

use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;

use crate::bench::free_addr;
use crate::{Running, broker, eventually, herald, unique_name};

const APP_SECRET: &str = "admin-addr-app-secret";
const API_TOKEN: &str = "admin-addr-api-token-0123456789abcdef";

#[tokio::test]
async fn the_admin_api_and_metrics_leave_the_public_address() {
    let Some(probe) = broker().await else {
        return;
    };
    drop(probe);
    let prefix = unique_name("test-admin-addr");
    let dir = tempfile::tempdir().expect("temp dir");
    let database = format!("sqlite://{}", dir.path().join("herald.db").display());
    let (public, admin) = (free_addr(), free_addr());
    let serve = herald(&[
        ("HERALD_TOPOLOGY_PREFIX", prefix.as_str()),
        ("HERALD_DATABASE_URL", database.as_str()),
        ("HERALD_APP_SECRET", APP_SECRET),
        ("HERALD_VERIFY_TOKEN", "admin-addr-verify-token"),
        ("HERALD_API_TOKEN", API_TOKEN),
    ])
    .args(["serve", "--addr", &public, "--admin-addr", &admin])
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("start herald serve");
    let serve = Running(serve);
    let client = reqwest::Client::new();
    let get = |addr: &str, path: &str| {
        let request = client
            .get(format!("http://{addr}{path}"))
            .bearer_auth(API_TOKEN);
        async move { request.send().await.map(|r| r.status()).ok() }
    };
    assert!(
        eventually(Duration::from_secs(30), || async {
            get(&public, "/readyz").await == Some(StatusCode::OK)
                && get(&admin, "/readyz").await == Some(StatusCode::OK)
        })
        .await,
        "serve never became ready on both addresses"
    );

    let body = br#"{"object":"page","entry":[]}"#;
    let post = |addr: &str| {
        client
            .post(format!("http://{addr}/webhook"))
            .header("x-hub-signature-256", crate::sign_webhook(APP_SECRET, body))
            .body(&body[..])
            .send()
    };
    let answer = |response: reqwest::Result<reqwest::Response>| response.expect("POST").status();
    assert_eq!(answer(post(&public).await), StatusCode::OK);
    assert_eq!(answer(post(&admin).await), StatusCode::NOT_FOUND);
    for path in ["/healthz", "/readyz"] {
        assert_eq!(get(&public, path).await, Some(StatusCode::OK), "{path}");
        assert_eq!(get(&admin, path).await, Some(StatusCode::OK), "{path}");
    }
    for path in ["/metrics", "/openapi.json", "/campaigns/runs/nope", "/dead"] {
        assert_eq!(
            get(&public, path).await,
            Some(StatusCode::NOT_FOUND),
            "{path} on the public address"
        );
    }
    assert_eq!(get(&admin, "/metrics").await, Some(StatusCode::OK));
    assert_eq!(get(&admin, "/openapi.json").await, Some(StatusCode::OK));
    let run = client
        .get(format!("http://{admin}/campaigns/runs/nope"))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .expect("GET");
    let text = run.text().await.expect("body");
    assert!(
        text.contains("nope"),
        "the admin API answered about the run: {text}"
    );
    assert!(serve.terminate().await, "serve exits 0 on SIGTERM");
    crate::delete_topology(&prefix).await;
}
