//! A worker process's life: SIGTERM mid-run drains in-flight sends, acks them and exits 0, and a
//! second worker finishes the rest with nothing lost or sent twice; SIGHUP re-reads the tokens
//! file and a page halted for a bad token resumes with the new one.

use std::collections::HashMap;
use std::time::Duration;

use herald_core::ResultStatus;
use herald_sim::{Latency, SimConfig};

use crate::eventually;
use crate::worker_rig::{PAGE, Rig, job, sample};

#[tokio::test]
async fn sigterm_mid_run_loses_nothing_and_sends_nobody_twice() {
    const JOBS: usize = 600;
    let sim = SimConfig {
        latency: Latency::Fixed { ms: 100 },
        ..SimConfig::default()
    };
    let Some(mut rig) = Rig::new("test-worker-sigterm", sim).await else {
        return;
    };
    let token = format!("HERALD_PAGE_TOKEN_{PAGE}");
    let env = [(token.as_str(), "page-token")];
    let first = rig.process(&env, &["--concurrency", "20"]);
    let bodies: Vec<_> = (0..JOBS)
        .map(|i| {
            job(
                "run-term",
                PAGE,
                &format!("u{i}"),
                &format!("{}", 2_000_000 + i),
            )
        })
        .collect();
    rig.publish(&bodies).await;
    rig.wait_results(100, Duration::from_secs(30)).await;
    let status = first.terminate().await;
    assert!(status.success(), "SIGTERM exit status {status}");
    let after_first = rig.wait_results(JOBS, Duration::from_secs(1)).await;
    assert!(after_first < JOBS, "finished before the SIGTERM; grow JOBS");

    let second = rig.process(&env, &[]);
    assert_eq!(rig.wait_results(JOBS, Duration::from_secs(60)).await, JOBS);
    assert_eq!(rig.by_job().len(), JOBS, "one result per job");
    assert_eq!(rig.count(ResultStatus::Sent), JOBS);
    let stats = rig.sim.stats();
    assert_eq!(
        (stats.accepted, stats.duplicate_recipients.count),
        (JOBS as u64, 0)
    );
    assert!(second.terminate().await.success());
    rig.cleanup().await;
}

#[tokio::test]
async fn sighup_rereads_the_tokens_file_and_resumes_a_page_halted_for_its_token() {
    let sim = SimConfig {
        tokens: HashMap::from([(PAGE.to_owned(), "new-token".to_owned())]),
        ..SimConfig::default()
    };
    let Some(mut rig) = Rig::new("test-worker-sighup", sim).await else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("tokens");
    std::fs::write(&file, format!("# page tokens\n{PAGE}=old-token\n")).expect("tokens file");
    let path = file.to_str().expect("utf-8");
    let worker = rig.process(&[("HERALD_TOKENS_FILE", path)], &[]);
    let bodies: Vec<_> = (0..10)
        .map(|i| {
            job(
                "run-hup",
                PAGE,
                &format!("u{i}"),
                &format!("{}", 3_000_000 + i),
            )
        })
        .collect();
    rig.publish(&bodies).await;
    let halted = format!("herald_page_halted{{page_id=\"{PAGE}\"}}");
    let stopped = eventually(Duration::from_secs(20), || async {
        sample(&worker.metrics().await, &halted) == Some(1.0)
    })
    .await;
    assert!(stopped, "the bad token did not halt the page");
    assert_eq!(rig.sim.stats().accepted, 0);

    // SIGHUP reloads at once (the file's new modification time would be noticed within 5 s).
    std::fs::write(&file, format!("{PAGE}=new-token\n")).expect("tokens file");
    let pid = worker.child.id().to_string();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status();
    assert!(hup.expect("kill").success());
    assert_eq!(rig.wait_results(10, Duration::from_secs(60)).await, 10);
    assert_eq!(rig.count(ResultStatus::Sent), 10);
    assert_eq!(sample(&worker.metrics().await, &halted), Some(0.0));
    assert!(worker.terminate().await.success());
    rig.cleanup().await;
}
