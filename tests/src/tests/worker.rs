//! The worker's core loop against RabbitMQ and the simulator: one `sent` result per job and one
//! Graph call per user, permanent errors attempted once, transient ones retried through a retry
//! tier, exhausted jobs dead-lettered with a `dead` result, poison dead-lettered byte for byte
//! while the worker keeps going, expired jobs never sent, and the metrics it exports.

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::StreamExt;
use herald_amqp::Consumer;
use herald_core::{ErrorClass, ResultStatus};
use herald_sim::{PsidOutcome, PsidRule, SimConfig};
use herald_telemetry::serve_metrics;

use crate::eventually;
use crate::worker_rig::{OTHER_PAGE, PAGE, Rig, hours_from_now, job, job_with, sample, scrape};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn every_job_gets_one_sent_result_and_every_user_one_call() {
    let Some(mut rig) = Rig::new("test-worker-sent", SimConfig::default()).await else {
        return;
    };
    let worker = rig.spawn(rig.settings());
    let server = serve_metrics(
        "127.0.0.1:0".parse().expect("addr"),
        worker.metrics.clone(),
        worker.health.clone(),
    )
    .await
    .expect("metrics endpoint");
    let ready = eventually(WAIT, || async { worker.health.is_ready() }).await;
    assert!(ready, "the worker never became ready");

    let mut bodies = Vec::new();
    for i in 0..60 {
        let page = if i % 2 == 0 { PAGE } else { OTHER_PAGE };
        bodies.push(job(
            "run-a",
            page,
            &format!("u{i}"),
            &format!("{}", 7_000 + i),
        ));
    }
    rig.publish(&bodies).await;
    assert_eq!(rig.wait_results(60, WAIT).await, 60);

    let by_job = rig.by_job();
    for i in 0..60 {
        let result = &by_job[&format!("run-a:u{i}")];
        assert_eq!(result.status, ResultStatus::Sent, "{result:?}");
        assert_eq!(result.attempts, 1);
        assert!(result.message_id.as_deref().is_some_and(|m| !m.is_empty()));
        assert_eq!(
            (result.campaign_id.as_str(), result.external_id.clone()),
            ("worker-test", format!("u{i}"))
        );
    }
    let stats = rig.sim.stats();
    assert_eq!(stats.accepted, 60);
    assert_eq!(stats.duplicate_recipients.count, 0);
    let recipients = stats.recipients.expect("recipients");
    assert_eq!(recipients.len(), 60);
    assert!(recipients.values().all(|count| *count == 1));
    // The request went through byte for byte: the metadata is the job id.
    let message = &rig.sim.messages("7000")[0];
    assert_eq!(message.body["message"]["metadata"], "run-a:u0");

    // The last result is confirmed just before its delivery is acked and its task ends.
    let url = format!("http://{}/metrics", server.addr);
    let settled = eventually(WAIT, || async {
        sample(&scrape(&url).await, "herald_jobs_in_flight") == Some(0.0)
    })
    .await;
    assert!(settled, "jobs stayed in flight");
    let text = scrape(&url).await;
    let expect = |series: &str, value: f64| {
        assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
    };
    expect("herald_jobs_received_total", 60.0);
    expect("herald_send_attempts_total{outcome=\"sent\"}", 60.0);
    expect("herald_jobs_completed_total{status=\"sent\"}", 60.0);
    expect("herald_broker_connected", 1.0);
    expect("herald_send_consumers", 1.0);
    // 98 % of the default ceiling of 250/s.
    expect(
        &format!("herald_rate_limit_per_second{{page_id=\"{PAGE}\"}}"),
        245.0,
    );
    for name in [
        "herald_send_duration_seconds_count",
        "herald_rate_limit_wait_seconds_count",
        "herald_graph_usage_ratio{page_id=\"1000000001\"}",
    ] {
        assert!(sample(&text, name).is_some(), "{name} missing in\n{text}");
    }
    // Labels only: a sample's value (a histogram sum, say) may contain any digits.
    let labels: Vec<&str> = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| Some(&line[line.find('{')?..=line.rfind('}')?]))
        .collect();
    assert!(
        labels
            .iter()
            .all(|set| !set.contains("7000") && !set.contains("run-a")),
        "no PSID or run id in labels: {labels:?}"
    );
    let ready = reqwest::get(format!("http://{}/readyz", server.addr))
        .await
        .expect("readyz");
    assert_eq!(ready.status().as_u16(), 200);

    worker.stop().await;
    server.abort();
    rig.cleanup().await;
}

#[tokio::test]
async fn permanent_errors_fail_after_exactly_one_attempt() {
    let sim = SimConfig {
        psid_rules: vec![PsidRule::prefix("551", PsidOutcome::Unavailable)],
        ..SimConfig::default()
    };
    let Some(mut rig) = Rig::new("test-worker-551", sim).await else {
        return;
    };
    let worker = rig.spawn(rig.settings());
    let bodies: Vec<_> = (0..5)
        .map(|i| job("run-p", PAGE, &format!("u{i}"), &format!("551{i}")))
        .chain([job("run-p", PAGE, "ok", "4242")])
        .collect();
    rig.publish(&bodies).await;
    assert_eq!(rig.wait_results(6, WAIT).await, 6);
    let by_job = rig.by_job();
    for i in 0..5 {
        let result = &by_job[&format!("run-p:u{i}")];
        assert_eq!((result.status, result.attempts), (ResultStatus::Failed, 1));
        let error = result.error.as_ref().expect("error");
        assert_eq!(
            (error.code, error.class),
            (Some(551), Some(ErrorClass::DropUser))
        );
        assert!(!error.message.is_empty());
    }
    assert_eq!(by_job["run-p:ok"].status, ResultStatus::Sent);
    let stats = rig.sim.stats();
    assert_eq!(
        stats.rejected.get(&551),
        Some(&5),
        "one call per failed user"
    );
    worker.stop().await;
    rig.cleanup().await;
}

#[tokio::test]
async fn transient_faults_are_retried_through_a_tier_until_sent() {
    let sim = SimConfig {
        psid_rules: vec![PsidRule::prefix("77", PsidOutcome::FailFirst)],
        ..SimConfig::default()
    };
    let Some(mut rig) = Rig::new("test-worker-retry", sim).await else {
        return;
    };
    let worker = rig.spawn(rig.settings());
    let bodies: Vec<_> = (0..5)
        .map(|i| job("run-t", PAGE, &format!("u{i}"), &format!("77{i}")))
        .collect();
    rig.publish(&bodies).await;
    // The first attempt fails (code 2, transient); the retry waits in the 5 s tier.
    assert_eq!(rig.wait_results(5, WAIT).await, 5);
    for result in rig.by_job().values() {
        assert_eq!(
            (result.status, result.attempts),
            (ResultStatus::Sent, 2),
            "{result:?}"
        );
    }
    let stats = rig.sim.stats();
    assert_eq!((stats.accepted, stats.duplicate_recipients.count), (5, 0));
    let text = worker.metrics.encode();
    assert!(
        text.contains("herald_retries_scheduled_total{tier=\"5s\"} 5"),
        "{text}"
    );
    assert!(
        text.contains("herald_send_attempts_total{outcome=\"retry\"} 5"),
        "{text}"
    );
    worker.stop().await;
    rig.cleanup().await;
}

#[tokio::test]
async fn exhausted_jobs_are_dead_lettered_with_a_dead_result() {
    let sim = SimConfig {
        psid_rules: vec![PsidRule::prefix(
            "2",
            PsidOutcome::Error {
                code: 2,
                subcode: None,
            },
        )],
        ..SimConfig::default()
    };
    let Some(mut rig) = Rig::new("test-worker-dead", sim).await else {
        return;
    };
    let worker = rig.spawn(rig.settings());
    let body = job_with("run-d", PAGE, "u1", "2001", 2, 250, hours_from_now(1));
    rig.publish(std::slice::from_ref(&body)).await;
    assert_eq!(rig.wait_results(1, WAIT).await, 1);
    let result = &rig.seen[0];
    assert_eq!((result.status, result.attempts), (ResultStatus::Dead, 2));
    assert_eq!(result.error.as_ref().and_then(|e| e.code), Some(2));
    assert_eq!(
        rig.sim.stats().rejected.get(&2),
        Some(&2),
        "exactly max_attempts calls"
    );

    let dead = take(&rig, &rig.topology.dead_queue(), 1).await;
    assert_eq!(dead[0].0, body, "the dead copy is the job byte for byte");
    let headers = &dead[0].1;
    assert_eq!(headers.attempt(), Some(2));
    let reason = headers.reason().expect("reason header");
    assert!(
        reason.contains("max_attempts 2") && reason.contains("graph error 2"),
        "{reason}"
    );
    worker.stop().await;
    rig.cleanup().await;
}

#[tokio::test]
async fn poison_goes_to_dead_byte_for_byte_and_the_worker_keeps_going() {
    let Some(mut rig) = Rig::new("test-worker-poison", SimConfig::default()).await else {
        return;
    };
    let worker = rig.spawn(rig.settings());
    let poison: Vec<Vec<u8>> = vec![
        b"this is not JSON \xff".to_vec(),
        br#"{"v":2,"job_id":"future"}"#.to_vec(),
        br#"{"v":1,"job_id":"r:u"}"#.to_vec(),
    ];
    let mut bodies = poison.clone();
    bodies.push(job("run-g", PAGE, "good", "9001"));
    rig.publish(&bodies).await;
    assert_eq!(rig.wait_results(1, WAIT).await, 1);
    assert_eq!(
        rig.seen[0].status,
        ResultStatus::Sent,
        "the good job after the poison is sent"
    );

    let dead = take(&rig, &rig.topology.dead_queue(), 3).await;
    let bytes: BTreeSet<Vec<u8>> = dead.iter().map(|(body, _)| body.clone()).collect();
    assert_eq!(bytes, poison.into_iter().collect::<BTreeSet<_>>());
    for (body, headers) in &dead {
        let reason = headers.reason().expect("reason");
        let wanted = match body.first() {
            Some(b't') => "not JSON",
            _ if body.starts_with(br#"{"v":2"#) => "unknown SendJob version 2",
            _ => "missing field",
        };
        assert!(reason.contains(wanted), "{reason}");
    }
    let counted = eventually(WAIT, || async {
        let text = worker.metrics.encode();
        sample(&text, "herald_jobs_dead_lettered_total{reason=\"poison\"}") == Some(3.0)
    })
    .await;
    assert!(counted, "{}", worker.metrics.encode());
    worker.stop().await;
    rig.cleanup().await;
}

#[tokio::test]
async fn expired_jobs_become_expired_results_without_a_call() {
    let Some(mut rig) = Rig::new("test-worker-expired", SimConfig::default()).await else {
        return;
    };
    let worker = rig.spawn(rig.settings());
    let body = job_with("run-e", PAGE, "late", "5005", 5, 250, hours_from_now(-1));
    rig.publish(&[body]).await;
    assert_eq!(rig.wait_results(1, WAIT).await, 1);
    assert_eq!(
        (rig.seen[0].status, rig.seen[0].attempts),
        (ResultStatus::Expired, 0)
    );
    assert_eq!(rig.sim.stats().accepted, 0);
    worker.stop().await;
    rig.cleanup().await;
}

/// Takes `count` messages from `queue` (acking them): body and headers.
pub(crate) async fn take(
    rig: &Rig,
    queue: &str,
    count: usize,
) -> Vec<(Vec<u8>, herald_amqp::Headers)> {
    let mut consumer = Consumer::start(&rig.connection, queue, 100)
        .await
        .expect("consumer");
    let mut taken = Vec::new();
    while taken.len() < count {
        let delivery = tokio::time::timeout(WAIT, consumer.next())
            .await
            .expect("a message in time")
            .expect("consumer open")
            .expect("delivery");
        taken.push((delivery.body().to_vec(), delivery.headers()));
        delivery.ack().await.expect("ack");
    }
    let _ = consumer.close().await;
    taken
}
