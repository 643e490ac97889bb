//! The worker's side of the send ledger, one case per job, against `herald serve` in this
//! process (its store, results consumer and `/ledger`) and the simulator: jobs that may have
//! been sent already (marked `x-herald-verify-since`, or redelivered by the broker) are checked
//! before any Graph call. A recorded result settles the job with no call and no new result; an
//! echo alone gives `sent` with the echoed message id and no call; neither waits out the echo
//! horizon in a retry tier, is checked again, then sent once. Ordinary jobs are never checked.
//! Without a ledger, or with one that does not answer, the jobs are sent and counted. A dead
//! job replayed and then sent ends `sent`, counted once, with both results in its history.

use std::time::Duration;

use futures_util::StreamExt;
use herald_amqp::{AmqpSettings, Consumer, Headers, Publisher, SEND_ROUTING_KEY, Topology};
use herald_core::{DeliveryResult, RESULT_VERSION, ResultStatus};
use herald_sim::{PsidOutcome, PsidRule, SimConfig};
use herald_worker::LedgerSettings;
use time::OffsetDateTime;

use super::server_api_rig::{ApiServer, LEDGER_TOKEN};
use crate::eventually;
use crate::worker_rig::{PAGE, Rig, hours_from_now, job, job_with, settings, spawn};

fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// Publishes `body` to the jobs exchange, marked as possibly sent when `suspect`.
async fn publish(publisher: &Publisher, topology: &Topology, body: &[u8], suspect: bool) {
    let headers = if suspect {
        Headers::new().with_verify_since(now_ms())
    } else {
        Headers::new()
    };
    publisher
        .publish(&topology.jobs_exchange(), SEND_ROUTING_KEY, body, headers)
        .await
        .expect("publish")
        .await
        .expect("confirmed");
}

/// Takes every message off the send queue and gives it back, so the broker redelivers it
/// flagged `redelivered`, as after a worker died holding it.
async fn take_and_give_back(connection: &herald_amqp::Connection, queue: &str, count: usize) {
    let mut consumer = Consumer::start(connection, queue, 100)
        .await
        .expect("consumer");
    let mut taken = Vec::new();
    while taken.len() < count {
        let delivery = tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .expect("a job to take")
            .expect("open")
            .expect("delivery");
        taken.push(delivery);
    }
    for delivery in taken {
        delivery.nack(true).await.expect("requeue");
    }
    let _ = consumer.close().await;
}

fn sample(metrics: &herald_telemetry::Metrics, series: &str) -> f64 {
    let text = metrics.encode();
    crate::worker_rig::sample(&text, series).unwrap_or(0.0)
}

#[tokio::test]
async fn suspect_jobs_are_checked_against_the_ledger_before_any_call() {
    let Some(server) = ApiServer::start("test-worker-ledger").await else {
        return;
    };
    let sim = herald_sim::spawn(SimConfig::default(), "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("simulator");
    let run = "ledger-run";
    // A result already stored for `done`, only Meta's echo for `echoed`.
    let now = OffsetDateTime::now_utc();
    let stored = DeliveryResult {
        v: RESULT_VERSION,
        job_id: format!("{run}:done"),
        run_id: run.to_owned(),
        campaign_id: "worker-test".to_owned(),
        external_id: "done".to_owned(),
        page_id: PAGE.to_owned(),
        status: ResultStatus::Sent,
        message_id: Some("m_first".to_owned()),
        error: None,
        attempts: 1,
        finished_at: now,
    };
    server
        .store
        .record_result(&stored, Some("7100"))
        .await
        .expect("record");
    let mut batch = server.store.batch().await.expect("batch");
    batch
        .record_echo(&format!("{run}:echoed"), PAGE, Some("m_echoed"), now)
        .await
        .expect("echo");
    batch.commit().await.expect("commit");

    let publisher = Publisher::open(&server.connection, 64)
        .await
        .expect("publisher");
    let topology = &server.topology;
    publish(
        &publisher,
        topology,
        &job(run, PAGE, "again", "7104"),
        false,
    )
    .await;
    take_and_give_back(&server.connection, &topology.send_queue(), 1).await;
    // Two copies of one suspect job (a hold republished before a crash): one is sent.
    for (user, psid, suspect) in [
        ("done", "7100", true),
        ("echoed", "7101", true),
        ("fresh", "7102", true),
        ("plain", "7103", false),
        ("twin", "7105", true),
        ("twin", "7105", true),
    ] {
        publish(&publisher, topology, &job(run, PAGE, user, psid), suspect).await;
    }

    let amqp = AmqpSettings {
        url: crate::amqp_addr().into(),
        ..AmqpSettings::default()
    };
    let mut worker_settings = settings(&amqp, topology, &sim);
    let mut ledger = LedgerSettings::new(server.url.clone(), Some(LEDGER_TOKEN.into()));
    ledger.horizon = Duration::from_secs(1);
    worker_settings.ledger = Some(ledger);
    let worker = spawn(worker_settings);

    let shown = |job: &'static str| {
        let store = server.store.clone();
        async move {
            store
                .delivery_history(&format!("{run}:{job}"))
                .await
                .expect("history")
                .into_iter()
                .find(|entry| entry.shown)
        }
    };
    let all_sent = eventually(Duration::from_secs(60), || async {
        let mut sent = 0;
        for job in ["echoed", "fresh", "plain", "again", "twin"] {
            sent += usize::from(shown(job).await.is_some_and(|e| e.status == "sent"));
        }
        sent == 5
    })
    .await;
    assert!(all_sent, "not every job ended sent");
    // Whatever else was still on its way (the twin's second copy) has arrived by now.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let done = server
        .store
        .delivery_history(&format!("{run}:done"))
        .await
        .expect("history");
    assert_eq!(done.len(), 1, "the settled job got no new result: {done:?}");
    let echoed = shown("echoed").await.expect("echoed");
    assert_eq!(echoed.message_id.as_deref(), Some("m_echoed"));
    let stats = sim.stats();
    let recipients = stats.recipients.clone().unwrap_or_default();
    for psid in ["7100", "7101"] {
        assert!(!recipients.contains_key(psid), "{psid} was sent: {stats:?}");
    }
    for psid in ["7102", "7103", "7104", "7105"] {
        assert_eq!(recipients.get(psid), Some(&1), "{psid}: {stats:?}");
    }
    let metrics = &worker.metrics;
    let checks = |outcome: &str| {
        sample(
            metrics,
            &format!("herald_ledger_checks_total{{outcome=\"{outcome}\"}}"),
        )
    };
    // `fresh`, `again` (the redelivered one) and one twin waited once and were found unknown
    // (and claimed) once. The other twin either found the claim taken (`claimed`) and, back
    // from its retry tier, the job settled; or, looking after the first twin's result was
    // recorded, found it settled at once. Which one is a matter of timing; neither calls Graph
    // (7105 got one message, above).
    assert_eq!(
        (checks("echoed"), checks("unknown"), checks("unavailable")),
        (1.0, 3.0, 0.0)
    );
    // `done`, and the losing twin.
    let settled = eventually(Duration::from_secs(30), || async {
        checks("settled") >= 2.0
    })
    .await;
    assert!(settled, "{}", metrics.encode());
    worker.stop().await;
    sim.shutdown().await;
    server.stop().await;
}

#[tokio::test]
async fn without_a_ledger_suspect_jobs_are_sent_and_counted() {
    let Some(mut rig) = Rig::new("test-worker-no-ledger", SimConfig::default()).await else {
        return;
    };
    // One worker with no ledger, then one whose ledger does not answer.
    let closed = crate::bench::free_addr();
    for (n, ledger) in [(0, None), (1, Some(format!("http://{closed}")))] {
        let run = format!("unverified-{n}");
        let bodies: Vec<Vec<u8>> = (0..4)
            .map(|i| {
                job(
                    &run,
                    PAGE,
                    &format!("u{i}"),
                    &format!("{}", 7200 + n * 10 + i),
                )
            })
            .collect();
        for body in &bodies {
            publish(&rig.publisher, &rig.topology, body, true).await;
        }
        let mut worker_settings = rig.settings();
        // A ledger that does not answer is waited for (here 3 s), then passed over.
        worker_settings.ledger = ledger.map(|url| LedgerSettings {
            horizon: Duration::from_secs(1),
            patience: Duration::from_secs(3),
            ..LedgerSettings::new(url, None)
        });
        let worker = rig.spawn(worker_settings);
        let expected = 4 * (n + 1);
        assert_eq!(
            rig.wait_results(expected, Duration::from_secs(30)).await,
            expected
        );
        let reason = if n == 0 {
            "no_ledger"
        } else {
            "ledger_unavailable"
        };
        let counted = sample(
            &worker.metrics,
            &format!("herald_possible_duplicate_sends_total{{reason=\"{reason}\"}}"),
        );
        assert_eq!(counted, 4.0, "{reason}");
        worker.stop().await;
    }
    assert_eq!(rig.count(ResultStatus::Sent), 8);
    assert_eq!(rig.sim.stats().accepted, 8);
    rig.cleanup().await;
}

#[tokio::test]
async fn a_replayed_dead_job_that_is_sent_ends_sent_with_both_results_in_its_history() {
    let Some(server) = ApiServer::start("test-worker-replay").await else {
        return;
    };
    // The first call for this person fails with a transient error; the job may try once only.
    let sim = SimConfig {
        psid_rules: vec![PsidRule::prefix("7300", PsidOutcome::FailFirst)],
        ..SimConfig::default()
    };
    let sim = herald_sim::spawn(sim, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("simulator");
    let (run, job_id) = ("replay-run", "replay-run:u1");
    let body = job_with(run, PAGE, "u1", "7300", 1, 250, hours_from_now(1));
    let publisher = Publisher::open(&server.connection, 64)
        .await
        .expect("publisher");
    publish(&publisher, &server.topology, &body, false).await;
    let amqp = AmqpSettings {
        url: crate::amqp_addr().into(),
        ..AmqpSettings::default()
    };
    let mut worker_settings = settings(&amqp, &server.topology, &sim);
    worker_settings.ledger = Some(LedgerSettings::new(
        server.url.clone(),
        Some(LEDGER_TOKEN.into()),
    ));
    let worker = spawn(worker_settings);
    let shows = |status: &'static str| {
        let store = server.store.clone();
        async move {
            store
                .delivery_history(job_id)
                .await
                .expect("history")
                .iter()
                .any(|entry| entry.shown && entry.status == status)
        }
    };
    assert!(
        eventually(Duration::from_secs(30), || shows("dead")).await,
        "the job never ended dead"
    );

    let replayed = server
        .post_json("/dead/replay", &serde_json::json!({}))
        .await;
    assert_eq!(replayed.status, 200, "{}", replayed.text);
    assert_eq!(replayed.json["replayed"], serde_json::json!([job_id]));
    assert!(
        eventually(Duration::from_secs(30), || shows("sent")).await,
        "the replayed job never showed sent"
    );
    let history = server
        .store
        .delivery_history(job_id)
        .await
        .expect("history");
    let statuses: Vec<(&str, bool)> = history
        .iter()
        .map(|entry| (entry.status.as_str(), entry.shown))
        .collect();
    assert_eq!(statuses.len(), 2, "{history:?}");
    assert!(statuses.contains(&("dead", false)), "{history:?}");
    assert!(statuses.contains(&("sent", true)), "{history:?}");
    let status = server.store.run_status(run).await.expect("status");
    assert_eq!(
        (status.total, status.counts.sent, status.counts.dead),
        (1, 1, 0)
    );
    assert_eq!(sim.stats().accepted, 1);
    worker.stop().await;
    sim.shutdown().await;
    server.stop().await;
}
