//! The `herald` binary as the subject: `herald serve` starts, answers `/healthz` and `/readyz`
//! and the admin API on one address, and exits 0 on SIGTERM; its `herald_broker_connected`
//! follows its broker connection through an outage; it refuses to start (exit 64) without the
//! webhook's secrets; `herald users import` prints its counts and the malformed rows' lines,
//! for CSV and JSONL.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use herald_core::Secret;
use herald_store::Store;

use super::server_api_rig::{APP_SECRET, PAGE, TOKEN, VERIFY_TOKEN};
use super::server_webhook::Proxy;
use super::store::users;
use crate::worker_rig::{sample, scrape};
use crate::{Running, broker, eventually, herald, unique_name};

/// Kills the child if the test fails before it exits.
struct Guard(std::process::Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn herald_serve_answers_healthz_and_exits_0_on_sigterm() {
    let Some(connection) = broker().await else {
        return;
    };
    let _ = connection.close().await;
    let prefix = unique_name("test-api-serve");
    let dir = tempfile::tempdir().expect("temp dir");
    let database = format!("sqlite://{}", dir.path().join("herald.db").display());
    let child = herald(&[
        ("HERALD_TOPOLOGY_PREFIX", &prefix),
        ("HERALD_DATABASE_URL", &database),
        ("HERALD_APP_SECRET", APP_SECRET),
        ("HERALD_VERIFY_TOKEN", VERIFY_TOKEN),
        ("HERALD_API_TOKEN", TOKEN),
    ])
    .args(["serve", "--addr", "127.0.0.1:0"])
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .expect("start herald serve");
    let mut child = Guard(child);
    let stdout = child.0.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("first line");
    let url = line
        .trim()
        .strip_prefix("listening: ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();

    let get = |path: &str| {
        let url = format!("{url}{path}");
        async move {
            match reqwest::get(&url).await {
                Ok(response) => response.status().as_u16(),
                Err(_) => 0,
            }
        }
    };
    assert_eq!(get("/healthz").await, 200);
    let ready = eventually(Duration::from_secs(20), || async {
        get("/readyz").await == 200
    })
    .await;
    assert!(ready, "/readyz never said ready (broker connection)");
    assert_eq!(get("/metrics").await, 200);
    assert_eq!(
        get("/dead").await,
        401,
        "the admin API is on the same address"
    );

    let pid = child.0.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "herald serve did not exit within 30 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(0), "{status:?}");

    crate::delete_topology(&prefix).await;
}

#[tokio::test]
async fn herald_serve_reports_its_broker_connection() {
    let Some(mut proxy) = Proxy::start().await else {
        return;
    };
    let prefix = unique_name("test-api-serve-broker");
    let dir = tempfile::tempdir().expect("temp dir");
    let database = format!("sqlite://{}", dir.path().join("herald.db").display());
    let amqp_url = proxy.amqp_url();
    // Without consumers, the webhook's publishing connection is serve's only one.
    let mut child = herald(&[
        ("HERALD_AMQP_URL", &amqp_url),
        ("HERALD_TOPOLOGY_PREFIX", &prefix),
        ("HERALD_DATABASE_URL", &database),
        ("HERALD_APP_SECRET", APP_SECRET),
        ("HERALD_VERIFY_TOKEN", VERIFY_TOKEN),
    ])
    .args([
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--no-ingest",
        "--no-results",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .expect("start herald serve");
    let stdout = child.stdout.take().expect("stdout");
    let serve = Running(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("first line");
    let url = line
        .trim()
        .strip_prefix("listening: ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    let metrics = format!("{url}/metrics");
    let reads = |expected: f64| {
        let metrics = metrics.clone();
        eventually(Duration::from_secs(20), move || {
            let metrics = metrics.clone();
            async move { sample(&scrape(&metrics).await, "herald_broker_connected") == Some(expected) }
        })
    };
    assert!(reads(1.0).await, "connected serve must report 1");
    proxy.cut();
    assert!(
        reads(0.0).await,
        "serve must report 0 while the broker is gone"
    );
    proxy.restart().await;
    assert!(
        reads(1.0).await,
        "serve must report 1 again once reconnected"
    );
    assert!(serve.terminate().await, "serve exits 0 on SIGTERM");

    crate::delete_topology(&prefix).await;
}

#[test]
fn herald_serve_refuses_to_start_without_the_webhook_secrets() {
    for (settings, missing) in [
        (
            vec![],
            "HERALD_APP_SECRET (app_secret) and HERALD_VERIFY_TOKEN",
        ),
        (
            vec![("HERALD_APP_SECRET", APP_SECRET)],
            "HERALD_VERIFY_TOKEN",
        ),
        (
            vec![("HERALD_VERIFY_TOKEN", VERIFY_TOKEN)],
            "HERALD_APP_SECRET",
        ),
    ] {
        let output = herald(&settings)
            .args(["serve", "--addr", "127.0.0.1:0"])
            .output()
            .expect("run herald serve");
        assert_eq!(output.status.code(), Some(64), "{output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(missing), "{stderr}");
        assert!(!stderr.contains(APP_SECRET), "the secret is never printed");
    }
}

#[test]
fn herald_serve_refuses_a_short_api_token_without_printing_it() {
    let output = herald(&[
        ("HERALD_APP_SECRET", APP_SECRET),
        ("HERALD_VERIFY_TOKEN", VERIFY_TOKEN),
        ("HERALD_API_TOKEN", "sh0rt-t0ken"),
    ])
    .args(["serve", "--addr", "127.0.0.1:0"])
    .output()
    .expect("run herald serve");
    assert_eq!(output.status.code(), Some(64), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("HERALD_API_TOKEN"), "{stderr}");
    assert!(
        !stderr.contains("sh0rt-t0ken"),
        "the token is never printed: {stderr}"
    );
}

#[tokio::test]
async fn herald_users_import_prints_counts_and_malformed_lines() {
    let dir = tempfile::tempdir().expect("temp dir");
    let database = format!("sqlite://{}", dir.path().join("herald.db").display());
    let csv = dir.path().join("users.csv");
    std::fs::write(
        &csv,
        "external_id,messenger_id,first_name\nc1,11,Ana\n,12,Nobody\nc3,13,Cy\n",
    )
    .expect("csv");
    let jsonl = dir.path().join("users.jsonl");
    std::fs::write(
        &jsonl,
        "{\"external_id\":\"j1\",\"psid\":\"21\"}\n{broken\n{\"external_id\":\"j3\"}\n",
    )
    .expect("jsonl");
    let import = |file: &std::path::Path, extra: &[&str]| {
        herald(&[("HERALD_DATABASE_URL", &database)])
            .args(["users", "import"])
            .arg(file)
            .args(extra)
            .output()
            .expect("run herald users import")
    };
    for (file, malformed_line) in [(&csv, 3), (&jsonl, 2)] {
        let output = import(file, &[]);
        assert!(output.status.success(), "{output:?}");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stdout.contains("rows: 3\nimported: 2\nmalformed: 1\n"),
            "{stdout}"
        );
        let line = format!("{}:{malformed_line}: ", file.display());
        assert!(stdout.contains(&line), "{line:?} missing: {stdout}");
        assert!(
            !stdout.contains("Nobody"),
            "rows are never echoed: {stdout}"
        );
    }
    let store = Store::connect(&Secret::new(database.clone()))
        .await
        .expect("store");
    let stored = users(&store, PAGE).await;
    assert_eq!(stored.keys().collect::<Vec<_>>(), ["c1", "c3", "j1", "j3"]);
    assert_eq!(stored["c1"].attributes["first_name"], "Ana");
    store.close().await;

    let missing = import(&dir.path().join("nope.csv"), &[]);
    assert_eq!(missing.status.code(), Some(66), "{missing:?}");
    let headless = dir.path().join("headless.csv");
    std::fs::write(&headless, "name,psid\nx,1\n").expect("csv");
    let output = import(&headless, &[]);
    assert_eq!(output.status.code(), Some(65), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("external_id"));
    let output = import(&csv, &["--page", "not-a-page"]);
    assert_eq!(output.status.code(), Some(64), "{output:?}");
}
