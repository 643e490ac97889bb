//! The whole story of a store-sourced campaign, end to end, with real processes on SQLite and on
//! PostgreSQL: the simulator posts a signed inbound message to `herald serve` → the PSID is stored
//! with `last_inbound_at` (linked to the customer by the message's `ref`, signed by
//! `herald refs sign`) → `herald campaign send` on `source = "store"`, filter `messenger_id exists`, window
//! enforced → a `herald worker` sends → the simulator posts signed delivery and read receipts →
//! `herald campaign status --json` shows sent 1, delivered 1, read 1 (and the user outside the
//! window skipped).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use herald_amqp::{AmqpSettings, Topology};
use herald_sim::SimConfig;
use herald_store::UserRecord;
use serde_json::Value;
use time::OffsetDateTime;

use super::prometheus::free_port;
use super::store::{Rig, both_backends};
use crate::{Running, broker, eventually, herald, unique_name};

const PAGE: &str = "1000000001";
const PSID: &str = "24000000000000042";
const APP_SECRET: &str = "story-app-secret";
const VERIFY_TOKEN: &str = "story-verify-token";
const API_TOKEN: &str = "story-api-token-0123456789abcdefghij";
const REF_SECRET: &str = "s1=story-ref-secret-0123456789abcdefghij";

const CAMPAIGN: &str = r#"
id = "story"
page_id = "1000000001"
messaging_type = "UPDATE"

[message]
text = "Hi {{ first_name | default: 'there' }}, thanks for writing!"

[segment]
source = "store"
[[segment.filter]]
attribute = "messenger_id"
op = "exists"

[delivery]
rate_per_sec = 50
window = "enforce"
"#;

/// Spawns `herald ARGS` and returns it once its first stdout line (which serve and worker use
/// to say where they listen) has arrived.
fn spawn(env: &[(&str, &str)], args: &[&str]) -> (Running, String) {
    let mut child = herald(env)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn herald");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("first line");
    (Running(child), line.trim().to_owned())
}

async fn the_whole_story(rig: Rig) {
    let Some(connection) = broker().await else {
        return;
    };
    drop(connection);
    let prefix = unique_name("test-story");
    let topology = Topology::new(&prefix).expect("topology");
    let amqp = AmqpSettings {
        url: crate::amqp_addr().into(),
        ..AmqpSettings::default()
    };
    let broker = herald_amqp::connect(&amqp).await.expect("connect");
    topology.declare(&broker).await.expect("declare");

    let port = free_port();
    let serve_url = format!("http://127.0.0.1:{port}");
    let sim = herald_sim::spawn(
        SimConfig {
            app_secret: Some(APP_SECRET.to_owned()),
            webhook_url: Some(format!("{serve_url}/webhook")),
            receipts: true,
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("simulator");
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("campaign.toml"), CAMPAIGN).expect("campaign");
    let graph_url = sim.url();
    let token_var = format!("HERALD_PAGE_TOKEN_{PAGE}");
    let addr = format!("127.0.0.1:{port}");
    let env = [
        ("HERALD_TOPOLOGY_PREFIX", prefix.as_str()),
        ("HERALD_DATABASE_URL", rig.url.expose()),
        ("HERALD_APP_SECRET", APP_SECRET),
        ("HERALD_VERIFY_TOKEN", VERIFY_TOKEN),
        ("HERALD_API_TOKEN", API_TOKEN),
        ("HERALD_REF_SECRET", REF_SECRET),
        ("HERALD_GRAPH_URL", graph_url.as_str()),
        (token_var.as_str(), "story-page-token"),
    ];
    let (serve, listening) = spawn(&env, &["serve", "--addr", &addr]);
    assert_eq!(listening, format!("listening: {serve_url}"));
    let healthy = eventually(Duration::from_secs(30), || async {
        reqwest::get(format!("{serve_url}/readyz"))
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    assert!(healthy, "herald serve never became ready");

    // Two customers imported without a PSID on this page: one of them writes to the page
    // through an m.me link carrying their id as `ref`; the other never does. And one
    // imported with a PSID but a last message three days ago: outside the window.
    let now = OffsetDateTime::now_utc();
    let attributes = |name: &str| BTreeMap::from([("first_name".to_owned(), name.to_owned())]);
    rig.store
        .upsert_users(&[
            UserRecord {
                attributes: attributes("Ana"),
                ..UserRecord::new("cust-42")
            },
            UserRecord {
                attributes: attributes("Bo"),
                ..UserRecord::new("cust-43")
            },
            UserRecord {
                messenger_id: Some("24000000000000099".to_owned()),
                last_inbound_at: Some(now - time::Duration::days(3)),
                attributes: attributes("Cy"),
                page_id: Some(PAGE.to_owned()),
                ..UserRecord::new("cust-44")
            },
        ])
        .await
        .expect("import");
    // The m.me link's ref is minted by `herald refs sign`, as an operator would.
    let minted = crate::herald_ok(
        dir.path(),
        &env,
        &["refs", "sign", "cust-42", "--page", PAGE],
    )
    .await;
    let reference = minted.trim();
    sim.inbound(PAGE, PSID, "hello", Some(reference))
        .expect("the simulator has a webhook");
    let linked = eventually(Duration::from_secs(20), || async {
        let mut users = rig.store.users_for_page(PAGE);
        while let Some(user) = futures_util::StreamExt::next(&mut users).await {
            let user = user.expect("user");
            if user.external_id == "cust-42" {
                return user.messenger_id.as_deref() == Some(PSID)
                    && user.last_inbound_at.is_some();
            }
        }
        false
    })
    .await;
    assert!(linked, "the signed inbound message never reached the store");

    let (worker, _) = spawn(&env, &["worker", "--metrics-addr", "127.0.0.1:0"]);
    let stdout = crate::herald_ok(dir.path(), &env, &["campaign", "send", "campaign.toml"]).await;
    let run_id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("run_id: "))
        .expect("run id")
        .to_owned();

    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let (report, done) = loop {
        let text =
            crate::herald_ok(dir.path(), &env, &["campaign", "status", &run_id, "--json"]).await;
        let report: Value = serde_json::from_str(&text).expect("status JSON");
        let done =
            report["results"]["sent"] == 1 && report["delivered"] == 1 && report["read"] == 1;
        if done || std::time::Instant::now() >= deadline {
            break (report, done);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        done,
        "status never showed sent 1, delivered 1, read 1: {report:#}"
    );
    assert_eq!(report["results"]["skipped"], 1, "{report:#}");
    assert_eq!(report["producer"]["published"], 1, "{report:#}");
    assert_eq!(
        report["producer"]["skipped"]["outside_window"], 1,
        "{report:#}"
    );
    let accepted = sim.messages(PSID);
    assert_eq!(accepted.len(), 1, "one message to the linked PSID");

    assert!(worker.terminate().await, "worker exits 0 on SIGTERM");
    assert!(serve.terminate().await, "serve exits 0 on SIGTERM");
    topology.delete(&broker).await.expect("delete topology");
    let _ = broker.close().await;
    sim.shutdown().await;
}

both_backends!(the_whole_story);
