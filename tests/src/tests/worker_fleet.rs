//! Rate limiting across the fleet and fairness between pages: three real `herald worker`
//! processes keep one page within its limit at nearly full speed, and a slow or halted page never
//! starves another page's jobs.

use std::time::{Duration, Instant};

use herald_core::ResultStatus;
use herald_sim::SimConfig;

use super::worker_rig::{OTHER_PAGE, PAGE, Rig, job, sample};
use crate::eventually;

#[tokio::test]
async fn three_worker_processes_share_one_pages_limit() {
    const JOBS: usize = 3_000;
    // The simulator allows 300/s, so only the workers keep the page at 100/s.
    let Some(mut rig) = Rig::new("test-worker-fleet", SimConfig::default()).await else {
        return;
    };
    let rate_var = format!("HERALD_PAGE_RATE_PER_SEC_{PAGE}");
    let token_var = format!("HERALD_PAGE_TOKEN_{PAGE}");
    let env = [
        (rate_var.as_str(), "100"),
        (token_var.as_str(), "page-token"),
    ];
    let workers: Vec<_> = (0..3).map(|_| rig.process(&env, &[])).collect();
    // Every worker must know the fleet is three before the first job, or it would take it all.
    for worker in &workers {
        let knows = eventually(Duration::from_secs(30), || async {
            sample(&worker.metrics().await, "herald_send_consumers") == Some(3.0)
        })
        .await;
        assert!(knows, "a worker never saw three consumers");
    }
    let bodies: Vec<_> = (0..JOBS)
        .map(|i| {
            job(
                "run-fleet",
                PAGE,
                &format!("u{i}"),
                &format!("{}", 100_000 + i),
            )
        })
        .collect();
    rig.publish(&bodies).await;
    assert_eq!(rig.wait_results(JOBS, Duration::from_secs(120)).await, JOBS);
    assert_eq!(rig.count(ResultStatus::Sent), JOBS);
    assert_eq!(rig.by_job().len(), JOBS);

    let stats = rig.sim.stats();
    assert_eq!(
        (stats.accepted, stats.duplicate_recipients.count),
        (JOBS as u64, 0)
    );
    let peak = stats.max_per_second[PAGE];
    let times: Vec<i64> = (0..JOBS)
        .map(|i| rig.sim.messages(&format!("{}", 100_000 + i))[0].accepted_at_ms)
        .collect();
    let span_ms = times.iter().max().expect("times") - times.iter().min().expect("times");
    let mean = (JOBS - 1) as f64 / (span_ms as f64 / 1000.0);
    eprintln!("fleet of 3 at 100/s: highest 1 s window {peak}, mean {mean:.1}/s");
    assert!(peak <= 105, "highest 1-second window {peak} > 105");
    assert!(mean >= 90.0, "mean rate {mean:.1}/s < 90");

    for worker in workers {
        let status = worker.terminate();
        assert!(status.success(), "worker exited with {status}");
    }
    rig.cleanup().await;
}

#[tokio::test]
async fn a_slow_page_does_not_starve_another_pages_jobs() {
    let Some(mut rig) = Rig::new("test-worker-slow-page", SimConfig::default()).await else {
        return;
    };
    let mut settings = rig.settings();
    settings.rates.pages.insert(PAGE.to_owned(), 2);
    let worker = rig.spawn(settings);
    // The slow page's jobs are first in the queue, far more than the prefetch.
    let mut bodies: Vec<_> = (0..300)
        .map(|i| {
            job(
                "run-slow",
                PAGE,
                &format!("s{i}"),
                &format!("{}", 300_000 + i),
            )
        })
        .collect();
    bodies.extend((0..20).map(|i| {
        job(
            "run-fast",
            OTHER_PAGE,
            &format!("f{i}"),
            &format!("{}", 400_000 + i),
        )
    }));
    let started = Instant::now();
    rig.publish(&bodies).await;
    let fast_done = eventually(Duration::from_secs(20), || {
        let accepted = rig.sim.stats().accepted_by_page.get(OTHER_PAGE).copied();
        async move { accepted == Some(20) }
    })
    .await;
    let elapsed = started.elapsed();
    assert!(fast_done, "the other page's jobs were starved");
    let slow_sent = rig
        .sim
        .stats()
        .accepted_by_page
        .get(PAGE)
        .copied()
        .unwrap_or(0);
    let allowed = 2.0 * elapsed.as_secs_f64() + 2.0;
    assert!(
        (slow_sent as f64) <= allowed,
        "{slow_sent} sent for a 2/s page in {elapsed:?}"
    );
    let text = worker.metrics.encode();
    assert!(
        sample(&text, "herald_jobs_held_total{reason=\"rate_limited\"}").is_some_and(|n| n > 0.0),
        "the slow page's surplus went back to a retry tier:\n{text}"
    );
    rig.wait_results(20, Duration::from_secs(5)).await;
    worker.stop().await;
    rig.cleanup().await;
}

#[tokio::test]
async fn a_halted_page_holds_its_jobs_and_resumes_when_its_token_is_replaced() {
    let Some(mut rig) = Rig::new("test-worker-halt", SimConfig::default()).await else {
        return;
    };
    rig.sim.revoke(PAGE);
    let worker = rig.spawn(rig.settings());
    let mut bodies: Vec<_> = (0..30)
        .map(|i| job("run-h", PAGE, &format!("h{i}"), &format!("{}", 500_000 + i)))
        .collect();
    bodies.extend((0..20).map(|i| {
        job(
            "run-o",
            OTHER_PAGE,
            &format!("o{i}"),
            &format!("{}", 600_000 + i),
        )
    }));
    rig.publish(&bodies).await;
    assert_eq!(rig.wait_results(20, Duration::from_secs(30)).await, 20);
    assert!(
        rig.seen
            .iter()
            .all(|r| r.page_id == OTHER_PAGE && r.status == ResultStatus::Sent)
    );
    let halted = format!("herald_page_halted{{page_id=\"{PAGE}\"}}");
    assert_eq!(sample(&worker.metrics.encode(), &halted), Some(1.0));
    let refused = rig.sim.stats().rejected.get(&190).copied().unwrap_or(0);
    assert!(
        (1..=16).contains(&refused),
        "calls after the halt: {refused} refusals of 190"
    );

    // A new token: the sim accepts the page again, the worker reloads (as on SIGHUP).
    rig.sim.set_token(PAGE, "fresh-token");
    let tokens = [(PAGE, "fresh-token"), (OTHER_PAGE, "test-page-token")]
        .into_iter()
        .map(|(page, token)| (page.to_owned(), herald_core::Secret::new(token)))
        .collect();
    assert_eq!(worker.tokens.replace(tokens), [PAGE]);
    assert_eq!(rig.wait_results(50, Duration::from_secs(60)).await, 50);
    assert_eq!(rig.count(ResultStatus::Sent), 50);
    assert_eq!(sample(&worker.metrics.encode(), &halted), Some(0.0));
    assert_eq!(rig.sim.stats().duplicate_recipients.count, 0);
    worker.stop().await;
    rig.cleanup().await;
}
