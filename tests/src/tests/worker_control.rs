//! Control across the fleet: a revoked token halts its page in every worker process while another
//! page keeps sending, `herald campaign resume --page` lifts it; pause, resume and cancel given
//! before a worker starts are honoured by it (the control log is replayed from its start).

use std::time::Duration;

use herald_core::ResultStatus;
use herald_sim::SimConfig;

use crate::worker_rig::{OTHER_PAGE, PAGE, Rig, job, sample};
use crate::{eventually, herald};

/// Runs `herald campaign ARGS` on the rig's topology; it must succeed.
fn campaign(rig: &Rig, args: &[&str]) -> String {
    let output = herald(&[("HERALD_TOPOLOGY_PREFIX", &rig.prefix)])
        .arg("campaign")
        .args(args)
        .output()
        .expect("run herald campaign");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "herald campaign {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test]
async fn a_revoked_token_halts_its_page_in_every_worker_while_another_page_keeps_sending() {
    const PER_PAGE: usize = 300;
    let Some(mut rig) = Rig::new("test-worker-revoke", SimConfig::default()).await else {
        return;
    };
    let vars: Vec<(String, &str)> = vec![
        (format!("HERALD_PAGE_TOKEN_{PAGE}"), "token-a"),
        (format!("HERALD_PAGE_TOKEN_{OTHER_PAGE}"), "token-b"),
        ("HERALD_PAGE_RATE_PER_SEC".to_owned(), "50"),
    ];
    let env: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let workers = [rig.process(&env, &[]), rig.process(&env, &[])];
    for worker in &workers {
        let ready = eventually(Duration::from_secs(30), || async {
            sample(&worker.metrics().await, "herald_send_consumers") == Some(2.0)
        })
        .await;
        assert!(ready, "a worker never saw the other");
    }
    let mut bodies = Vec::new();
    for i in 0..PER_PAGE {
        bodies.push(job(
            "run-a",
            PAGE,
            &format!("a{i}"),
            &format!("{}", 700_000 + i),
        ));
        bodies.push(job(
            "run-b",
            OTHER_PAGE,
            &format!("b{i}"),
            &format!("{}", 800_000 + i),
        ));
    }
    rig.publish(&bodies).await;
    let started = eventually(Duration::from_secs(30), || {
        let sent = rig
            .sim
            .stats()
            .accepted_by_page
            .get(PAGE)
            .copied()
            .unwrap_or(0);
        async move { sent >= 40 }
    })
    .await;
    assert!(started, "the page never got going");
    rig.sim.revoke(PAGE);

    let halted = format!("herald_page_halted{{page_id=\"{PAGE}\"}}");
    for worker in &workers {
        let stopped = eventually(Duration::from_secs(10), || async {
            sample(&worker.metrics().await, &halted) == Some(1.0)
        })
        .await;
        assert!(stopped, "a worker did not halt the page");
    }
    let frozen = rig.sim.stats().accepted_by_page[PAGE];
    // The other page finishes while the halted one waits.
    let other_done = eventually(Duration::from_secs(60), || {
        let sent = rig
            .sim
            .stats()
            .accepted_by_page
            .get(OTHER_PAGE)
            .copied()
            .unwrap_or(0);
        async move { sent == PER_PAGE as u64 }
    })
    .await;
    assert!(other_done, "the other page stopped too");
    let stats = rig.sim.stats();
    assert_eq!(
        stats.accepted_by_page[PAGE], frozen,
        "the halted page kept sending"
    );
    let refusals = stats.rejected.get(&190).copied().unwrap_or(0);
    assert!(refusals <= 20, "{refusals} calls refused after the revoke");

    // The token works again; an operator resumes the page for the whole fleet.
    rig.sim.set_token(PAGE, "token-a");
    let said = campaign(&rig, &["resume", "--page", PAGE]);
    assert!(
        said.contains(&format!("resume_page: page {PAGE}")),
        "{said}"
    );
    assert_eq!(
        rig.wait_results(2 * PER_PAGE, Duration::from_secs(90))
            .await,
        2 * PER_PAGE
    );
    assert_eq!(rig.count(ResultStatus::Sent), 2 * PER_PAGE);
    assert_eq!(rig.by_job().len(), 2 * PER_PAGE);
    assert_eq!(rig.sim.stats().duplicate_recipients.count, 0);
    for worker in &workers {
        assert_eq!(sample(&worker.metrics().await, &halted), Some(0.0));
    }
    for worker in workers {
        assert!(worker.terminate().await.success());
    }
    rig.cleanup().await;
}

#[tokio::test]
async fn pause_resume_and_cancel_reach_a_worker_started_after_them() {
    let Some(mut rig) = Rig::new("test-worker-control", SimConfig::default()).await else {
        return;
    };
    assert!(campaign(&rig, &["pause", "run-paused"]).contains("pause_run: run run-paused"));
    assert!(campaign(&rig, &["cancel", "run-gone"]).contains("cancel_run: run run-gone"));
    let mut bodies = Vec::new();
    for (run, base) in [
        ("run-paused", 910_000),
        ("run-gone", 920_000),
        ("run-open", 930_000),
    ] {
        for i in 0..5 {
            bodies.push(job(run, PAGE, &format!("u{i}"), &format!("{}", base + i)));
        }
    }
    rig.publish(&bodies).await;
    let worker = rig.spawn(rig.settings());
    assert_eq!(rig.wait_results(10, Duration::from_secs(30)).await, 10);
    let runs = |status| {
        let mut runs: Vec<_> = rig
            .seen
            .iter()
            .filter(|r| r.status == status)
            .map(|r| r.run_id.clone())
            .collect();
        runs.dedup();
        runs
    };
    assert_eq!(runs(ResultStatus::Sent), ["run-open"]);
    assert_eq!(runs(ResultStatus::Cancelled), ["run-gone"]);
    assert!(rig.seen.iter().all(|r| r.run_id != "run-paused"));
    let held = eventually(Duration::from_secs(10), || async {
        sample(
            &worker.metrics.encode(),
            "herald_jobs_held_total{reason=\"run_paused\"}",
        )
        .is_some_and(|n| n >= 5.0)
    })
    .await;
    assert!(held, "the paused run's jobs were not held");
    assert_eq!(rig.sim.stats().accepted, 5, "only the open run was sent");

    // A resume reaches the running worker; a cancel after that is final.
    campaign(&rig, &["resume", "run-paused"]);
    assert_eq!(rig.wait_results(15, Duration::from_secs(60)).await, 15);
    assert_eq!(rig.count(ResultStatus::Sent), 10);
    campaign(&rig, &["cancel", "run-open"]);
    let applied = eventually(Duration::from_secs(10), || async {
        sample(
            &worker.metrics.encode(),
            "herald_control_commands_total{action=\"cancel_run\"}",
        ) == Some(2.0)
    })
    .await;
    assert!(applied, "the running worker never read the cancel");
    rig.publish(&[job("run-open", PAGE, "late", "939999")])
        .await;
    assert_eq!(rig.wait_results(16, Duration::from_secs(30)).await, 16);
    assert_eq!(rig.seen[15].status, ResultStatus::Cancelled);
    assert_eq!(rig.by_job().len(), 16);
    worker.stop().await;
    rig.cleanup().await;
}

#[tokio::test]
async fn resume_needs_a_run_or_a_page() {
    let output = herald(&[])
        .args(["campaign", "resume"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2), "clap usage error");
    let output = herald(&[])
        .args(["campaign", "resume", "--page", "not-a-page"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(64));
}
