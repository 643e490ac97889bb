//! Records under concurrency, with real processes: two `herald campaign send` started at the same
//! moment on a new default store (`sqlite://herald.db` in their directory) both succeed, and two
//! `herald serve` processes on one results queue and one PostgreSQL store store each result
//! exactly once between them.

use std::process::Stdio;
use std::time::Duration;

use herald_amqp::{AmqpSettings, Publisher, Topology};
use herald_core::{DeliveryResult, RESULT_VERSION, ResultStatus};

use super::prometheus::free_port;
use super::store::{Rig, on_postgres};
use crate::{Running, broker, eventually, herald, unique_name};

/// Pairs of sends started together; one pair in five failed before stores were opened under a
/// lock, so eight pairs all passing is no accident.
const PAIRS: usize = 8;

#[tokio::test]
async fn two_sends_at_once_on_a_new_default_store_both_succeed() {
    let Some(probe) = broker().await else {
        return;
    };
    drop(probe);
    let prefix = unique_name("test-records-sends");
    for pair in 0..PAIRS {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join("campaign.toml"),
            herald_core::campaign::EXAMPLE_TOML,
        )
        .expect("campaign");
        std::fs::write(
            dir.path().join("users.csv"),
            "external_id,messenger_id,first_name,promo_code,country\nu1,1001,Ana,A1,BR\n",
        )
        .expect("segment");
        // No HERALD_DATABASE_URL: both open the default store in their working directory.
        let start = || {
            let mut command = tokio::process::Command::from(herald(&[(
                "HERALD_TOPOLOGY_PREFIX",
                prefix.as_str(),
            )]));
            command
                .args(["campaign", "send", "campaign.toml"])
                .current_dir(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output()
        };
        let (first, second) = tokio::join!(start(), start());
        for output in [first, second] {
            let output = output.expect("run herald campaign send");
            assert!(
                output.status.success(),
                "pair {pair}: {} {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
    crate::delete_topology(&prefix).await;
}

/// Results split between the two serve processes.
const RESULTS: usize = 2_000;

#[tokio::test]
async fn two_serve_processes_store_each_result_once() {
    on_postgres(two_serves).await;
}

async fn two_serves(rig: Rig) {
    let Some(connection) = broker().await else {
        return;
    };
    let prefix = unique_name("test-records-serves");
    let topology = Topology::new(&prefix).expect("topology");
    let amqp = AmqpSettings {
        url: crate::amqp_addr().into(),
        ..AmqpSettings::default()
    };
    let connection = {
        drop(connection);
        herald_amqp::connect(&amqp).await.expect("connect")
    };
    topology.declare(&connection).await.expect("declare");
    let database = rig.url.expose().to_owned();
    let serves: Vec<(Running, String)> = (0..2)
        .map(|_| {
            let addr = format!("127.0.0.1:{}", free_port());
            let child = herald(&[
                ("HERALD_TOPOLOGY_PREFIX", prefix.as_str()),
                ("HERALD_DATABASE_URL", database.as_str()),
                ("HERALD_APP_SECRET", "records-app-secret"),
                ("HERALD_VERIFY_TOKEN", "records-verify-token"),
            ])
            .args(["serve", "--addr", &addr, "--no-ingest"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn herald serve");
            (Running(child), format!("http://{addr}/metrics"))
        })
        .collect();
    // Both consumers attached before the results arrive, or the first takes them all.
    let client = reqwest::Client::new();
    for (_, metrics) in &serves {
        let attached = || async {
            let text = match client.get(metrics).send().await {
                Ok(response) => response.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            text.contains("herald_consumer_connected{consumer=\"results\"} 1")
        };
        assert!(
            eventually(Duration::from_secs(30), attached).await,
            "serve's results consumer never attached"
        );
    }
    let publisher = Publisher::open(&connection, 512).await.expect("publisher");
    let exchange = topology.results_exchange();
    let results = (0..RESULTS).map(|i| {
        let result = DeliveryResult {
            v: RESULT_VERSION,
            job_id: format!("two:u{i}"),
            run_id: "two".to_owned(),
            campaign_id: "records".to_owned(),
            external_id: format!("u{i}"),
            page_id: "1000000001".to_owned(),
            status: ResultStatus::Sent,
            message_id: Some(format!("m_two_{i}")),
            error: None,
            attempts: 1,
            finished_at: time::OffsetDateTime::now_utc(),
        };
        serde_json::to_vec(&result).expect("json")
    });
    crate::publish_all(&publisher, &exchange, "sent.test", results).await;
    let _ = publisher.close().await;

    let store = &rig.store;
    let total = || async { store.run_status("two").await.map_or(0, |s| s.total) };
    assert!(
        eventually(Duration::from_secs(60), || async {
            total().await == RESULTS as u64
        })
        .await,
        "stored {} of {RESULTS}",
        total().await
    );
    // Each process stored a share, and the shares add up to exactly one record per result.
    // (A process counts a batch just after its commit: give the last count a moment.)
    let shares = || async {
        let mut shares = Vec::new();
        for (_, metrics) in &serves {
            let text = match client.get(metrics).send().await {
                Ok(response) => response.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            let value = |line_start: &str| -> u64 {
                text.lines()
                    .find_map(|line| line.strip_prefix(line_start)?.trim().parse().ok())
                    .unwrap_or(0)
            };
            shares.push((
                value("herald_results_recorded_total{status=\"sent\"}"),
                value("herald_results_duplicates_total"),
            ));
        }
        shares
    };
    let counted = |shares: &[(u64, u64)]| shares.iter().map(|(stored, _)| stored).sum::<u64>();
    eventually(Duration::from_secs(10), || async {
        counted(&shares().await) >= RESULTS as u64
    })
    .await;
    let shares = shares().await;
    let stored: u64 = shares.iter().map(|(stored, _)| stored).sum();
    assert_eq!(stored, RESULTS as u64, "{shares:?}");
    assert!(shares.iter().all(|(stored, _)| *stored > 0), "{shares:?}");
    assert!(
        shares.iter().all(|(_, duplicates)| *duplicates == 0),
        "{shares:?}"
    );
    for (serve, _) in serves {
        assert!(serve.terminate().await, "serve exits 0 on SIGTERM");
    }
    topology.delete(&connection).await.expect("cleanup");
    let _ = connection.close().await;
}
