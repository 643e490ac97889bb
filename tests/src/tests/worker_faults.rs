//! A hostile Graph API: transient errors, dropped connections and 613 bursts at random, and
//! users whose sends fail for good. Every job still ends with exactly one terminal result, no user
//! is sent twice, and a permanent error is answered once per user.

use std::time::Duration;

use herald_core::{ErrorClass, ResultStatus};
use herald_sim::{PsidOutcome, PsidRule, SimConfig};
use herald_worker::Backoff;

use crate::worker_rig::{MAX_ATTEMPTS, OTHER_PAGE, PAGE, Rig, job};

#[tokio::test]
async fn under_random_faults_every_job_ends_once_and_no_user_is_sent_twice() {
    const JOBS: usize = 400;
    let sim = SimConfig {
        // No `fail_rate`: the 5xx answers are covered by the classifier's table; this test is about
        // every job ending once under transient codes, timeouts and 613 bursts.
        transient_rate: 0.1,
        timeout_rate: 0.01,
        timeout_hold_ms: 500,
        throttle_rate: 0.02,
        throttle_burst_ms: 200,
        throttle_regain_minutes: 0,
        psid_rules: vec![PsidRule::prefix("551", PsidOutcome::Unavailable)],
        ..SimConfig::default()
    };
    let Some(mut rig) = Rig::new("test-worker-faults", sim).await else {
        return;
    };
    let mut settings = rig.settings();
    // Every retry waits in the 5 s tier, so the test stays short.
    settings.backoff = Backoff {
        min_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(5),
    };
    let worker = rig.spawn(settings);
    let psid = |i: usize| {
        if i.is_multiple_of(20) {
            format!("551{i}")
        } else {
            format!("{}", 1_000_000 + i)
        }
    };
    let bodies: Vec<_> = (0..JOBS)
        .map(|i| {
            let page = if i % 2 == 0 { PAGE } else { OTHER_PAGE };
            job("run-faults", page, &format!("u{i}"), &psid(i))
        })
        .collect();
    rig.publish(&bodies).await;
    assert_eq!(rig.wait_results(JOBS, Duration::from_secs(120)).await, JOBS);
    let by_job = rig.by_job();
    assert_eq!(by_job.len(), JOBS, "one result per job");

    let stats = rig.sim.stats();
    let recipients = stats.recipients.clone().expect("recipients");
    assert_eq!(stats.duplicate_recipients.count, 0, "a user was sent twice");
    let (mut retried, mut answered_551, mut dead) = (0, 0_u64, 0);
    for i in 0..JOBS {
        let result = &by_job[&format!("run-faults:u{i}")];
        let error = result.error.as_ref();
        let code = error.and_then(|e| e.code);
        match result.status {
            ResultStatus::Sent => {
                assert_ne!(i % 20, 0, "a 551 user was sent: {result:?}");
                assert_eq!(recipients.get(&psid(i)), Some(&1));
                retried += usize::from(result.attempts > 1);
            }
            ResultStatus::Failed if code == Some(551) => {
                assert_eq!(i % 20, 0, "{result:?}");
                answered_551 += 1;
            }
            // Five retryable failures in a row (transient code 2, timeouts, 613 bursts) use up
            // max_attempts: the job is dead-lettered with a `dead` result, never sent.
            ResultStatus::Dead => {
                let class = error.and_then(|e| e.class);
                assert!(
                    matches!(class, Some(ErrorClass::Retry | ErrorClass::SlowDown)),
                    "{result:?}"
                );
                assert_eq!(result.attempts, MAX_ATTEMPTS, "{result:?}");
                assert_eq!(
                    recipients.get(&psid(i)),
                    None,
                    "a dead job's user was sent: {result:?}"
                );
                dead += 1;
            }
            other => panic!("unexpected {other:?}: {result:?}"),
        }
    }
    assert!(
        answered_551 > (JOBS / 40) as u64,
        "{answered_551} users answered 551"
    );
    assert_eq!(
        stats.rejected.get(&551),
        Some(&answered_551),
        "a permanent error is met once per user, never retried"
    );
    assert!(retried > 10, "faults were injected and retried ({retried})");
    assert!(dead < JOBS / 20, "{dead} jobs exhausted their attempts");
    assert!(
        stats.rejected.contains_key(&613),
        "no 613 burst happened: {:?}",
        stats.rejected
    );
    eprintln!(
        "faults: {retried} jobs needed retries; sim: {} 5xx, {} timeouts, rejected {:?}",
        stats.server_errors, stats.timeouts, stats.rejected
    );
    worker.stop().await;
    rig.cleanup().await;
}
