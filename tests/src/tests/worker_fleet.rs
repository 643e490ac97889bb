//! Fairness between pages: a slow or halted page never starves another page's jobs (pacing a
//! page at its limit is `tests/disruptive/pacing.rs`).

use std::time::{Duration, Instant};

use herald_core::ResultStatus;
use herald_sim::SimConfig;

use crate::eventually;
use crate::worker_rig::{OTHER_PAGE, PAGE, Rig, job, sample};

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
