//! `herald dead list` and `herald dead replay` on a dead-letter queue filled by a real worker:
//! listing loses nothing, filters by run and Graph code, and replay puts the exact job bytes back
//! on the send queue with the attempt count reset.

use std::time::Duration;

use herald_core::ResultStatus;
use herald_sim::{PsidOutcome, PsidRule, SimConfig};

use super::worker::take;
use crate::worker_rig::{PAGE, Rig, hours_from_now, job_with};
use crate::{eventually, herald};

fn dead(rig: &Rig, args: &[&str]) -> String {
    let output = herald(&[("HERALD_TOPOLOGY_PREFIX", &rig.prefix)])
        .arg("dead")
        .args(args)
        .output()
        .expect("run herald dead");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "herald dead {args:?}: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test]
async fn dead_jobs_are_listed_without_loss_and_replayed_by_run_and_code() {
    let sim = SimConfig {
        psid_rules: vec![
            PsidRule::prefix(
                "2",
                PsidOutcome::Error {
                    code: 2,
                    subcode: None,
                },
            ),
            PsidRule::prefix(
                "1200",
                PsidOutcome::Error {
                    code: 1200,
                    subcode: None,
                },
            ),
        ],
        ..SimConfig::default()
    };
    let Some(mut rig) = Rig::new("test-worker-deadcli", sim).await else {
        return;
    };
    let worker = rig.spawn(rig.settings());
    let once = |run: &str, user: &str, psid: &str| {
        job_with(run, PAGE, user, psid, 1, 250, hours_from_now(1))
    };
    let x1 = once("run-x", "u1", "2001");
    let x2 = once("run-x", "u2", "12001");
    let y1 = once("run-y", "u1", "2002");
    rig.publish(&[x1.clone(), x2.clone(), y1.clone(), b"{oops".to_vec()])
        .await;
    assert_eq!(rig.wait_results(3, Duration::from_secs(30)).await, 3);
    assert_eq!(rig.count(ResultStatus::Dead), 3);
    worker.stop().await;
    let queue = rig.topology.dead_queue();
    let count = || async { rig.connection.message_count(&queue).await.unwrap_or(0) };
    assert!(eventually(Duration::from_secs(10), || async { count().await == 4 }).await);

    let listed = dead(&rig, &["list"]);
    assert_eq!(listed.lines().count(), 4, "{listed}");
    assert!(
        listed.contains("run-x:u1\tattempts=1\tcode=2\tgave up after 1 attempt(s)"),
        "{listed}"
    );
    assert!(
        listed.contains("run-x:u2\tattempts=1\tcode=1200\t"),
        "{listed}"
    );
    assert!(
        listed.contains("(poison)\tattempts=0\tcode=-\tnot JSON"),
        "{listed}"
    );
    assert!(
        eventually(Duration::from_secs(10), || async { count().await == 4 }).await,
        "list lost nothing"
    );
    assert_eq!(dead(&rig, &["list", "--run", "run-x"]).lines().count(), 2);

    let replayed = dead(&rig, &["replay", "--run", "run-x", "--code", "2"]);
    assert!(replayed.contains("replayed run-x:u1"), "{replayed}");
    assert!(
        replayed.contains("replayed: 1") && replayed.contains("kept: 3"),
        "{replayed}"
    );
    let back = take(&rig, &rig.topology.send_queue(), 1).await;
    assert_eq!(
        back[0].0, x1,
        "the exact job bytes are back on the send queue"
    );
    assert_eq!(back[0].1.attempt(), None, "attempts start over");
    assert!(eventually(Duration::from_secs(10), || async { count().await == 3 }).await);

    let rest = dead(&rig, &["replay", "--run", "run-y"]);
    assert!(rest.contains("replayed: 1"), "{rest}");
    assert_eq!(take(&rig, &rig.topology.send_queue(), 1).await[0].0, y1);
    let remaining = dead(&rig, &["list"]);
    assert_eq!(
        remaining.lines().count(),
        2,
        "x2 and the poison stay: {remaining}"
    );
    rig.cleanup().await;
}
