//! A worker when the broker drops every connection mid-run: it reconnects, replays the control
//! log, takes the redelivered jobs, and every job gets its result with no user sent twice (a job
//! whose send finished while the connection was down is settled from memory, not sent again).

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

use futures_util::StreamExt;
use herald_amqp::{AmqpSettings, Consumer, Headers, Publisher, SEND_ROUTING_KEY, Topology};
use herald_core::DeliveryResult;
use herald_sim::{Latency, SimConfig};
use herald_tests::{broker, eventually, herald, unique_name};

const PAGES: [&str; 2] = ["1000000001", "1000000002"];

#[tokio::test]
async fn a_worker_survives_the_broker_dropping_its_connections() {
    let _serial = crate::SERIAL.lock().await;
    let Some(connection) = broker().await else {
        return;
    };
    drop(connection);
    const JOBS: usize = 3_000;
    let sim = SimConfig {
        latency: Latency::Fixed { ms: 20 },
        ..SimConfig::default()
    };
    let sim = herald_sim::spawn(sim, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("simulator");
    let prefix = unique_name("test-worker-reconnect");
    let topology = Topology::new(&prefix).expect("topology");
    let settings = AmqpSettings {
        url: herald_tests::amqp_addr().into(),
        ..AmqpSettings::default()
    };
    let amqp = herald_amqp::connect(&settings).await.expect("connect");
    topology.declare(&amqp).await.expect("declare");
    let publisher = Publisher::open(&amqp, 1024).await.expect("publisher");
    let mut confirms = Vec::new();
    for i in 0..JOBS {
        let body = job(PAGES[i % 2], i);
        let confirm = publisher
            .publish(
                &topology.jobs_exchange(),
                SEND_ROUTING_KEY,
                &body,
                Headers::new(),
            )
            .await
            .expect("publish");
        confirms.push(confirm);
    }
    for confirm in confirms {
        confirm.await.expect("confirmed");
    }
    drop(publisher);
    let _ = amqp.close().await;

    let graph_url = sim.url();
    let tokens: Vec<String> = PAGES
        .iter()
        .map(|p| format!("HERALD_PAGE_TOKEN_{p}"))
        .collect();
    let mut child = herald(&[
        ("HERALD_TOPOLOGY_PREFIX", &prefix),
        ("HERALD_GRAPH_URL", &graph_url),
        (&tokens[0], "token"),
        (&tokens[1], "token"),
    ])
    .args([
        "worker",
        "--metrics-addr",
        "127.0.0.1:0",
        "--concurrency",
        "20",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn worker");
    let going = eventually(Duration::from_secs(60), || {
        let accepted = sim.stats().accepted;
        async move { accepted >= 500 }
    })
    .await;
    assert!(going, "the worker never got going");
    assert!(
        sim.stats().accepted < JOBS as u64,
        "finished before the disruption; grow JOBS"
    );
    crate::close_all_connections();

    let observer = herald_amqp::connect(&settings).await.expect("reconnect");
    let mut results = Consumer::start(&observer, &topology.results_store_queue(), 1000)
        .await
        .expect("results consumer");
    let mut jobs = BTreeSet::new();
    let mut duplicates = 0;
    while jobs.len() < JOBS {
        let delivery = tokio::time::timeout(Duration::from_secs(60), results.next())
            .await
            .expect("results keep coming after the reconnect")
            .expect("consumer open")
            .expect("delivery");
        let result: DeliveryResult = serde_json::from_slice(delivery.body()).expect("result");
        assert_eq!(result.status.as_str(), "sent", "{result:?}");
        if !jobs.insert(result.job_id) {
            duplicates += 1;
        }
        delivery.ack().await.expect("ack");
    }
    let stats = sim.stats();
    eprintln!(
        "after the reconnect: {duplicates} duplicate result(s), {} accepted, {} users sent twice",
        stats.accepted, stats.duplicate_recipients.count
    );
    assert_eq!(stats.duplicate_recipients.count, 0, "a user was sent twice");
    assert_eq!(stats.accepted, JOBS as u64);

    let pid = child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    assert!(killed.expect("kill").success());
    let status = child.wait().expect("wait");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("stderr");
    assert!(status.success(), "worker exit {status}:\n{stderr}");
    assert!(
        stderr.contains("reconnecting"),
        "the disruption was not noticed:\n{stderr}"
    );
    let _ = results.close().await;
    topology.delete(&observer).await.expect("cleanup");
    let _ = observer.close().await;
    sim.shutdown().await;
}

fn job(page: &str, i: usize) -> Vec<u8> {
    let job_id = format!("run-reconnect:u{i}");
    let now = time::OffsetDateTime::now_utc();
    let rfc = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .expect("format")
    };
    serde_json::to_vec(&serde_json::json!({
        "v": 1, "job_id": job_id, "run_id": "run-reconnect", "campaign_id": "reconnect",
        "page_id": page, "external_id": format!("u{i}"),
        "request": {"recipient": {"id": format!("{}", 4_000_000 + i)}, "messaging_type": "UPDATE",
                    "message": {"text": "Hi", "metadata": job_id}},
        "rate_per_sec": 250, "max_attempts": 5,
        "not_after": rfc(now + time::Duration::hours(1)), "enqueued_at": rfc(now),
    }))
    .expect("job")
}
