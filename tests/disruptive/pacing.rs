//! Pacing a page at its limit with real `herald worker` processes: one worker, and a fleet that
//! a fourth worker joins mid-run, keep a page at 97 % or more of its ceiling, and never over
//! 105 % of it in any 1-second span (the simulator answers 613 to any call past that, and none
//! may come); a page whose call budget runs out pauses for the time Graph names and then
//! finishes without a failure; a priority campaign started while a bulk one holds the page at
//! its limit goes out first.
//!
//! They live in this binary, one at a time, because they measure rates: tests running beside
//! them on two cores would make every timer late.

use std::time::{Duration, Instant};

use herald_core::ResultStatus;
use herald_sim::SimConfig;

use herald_tests::eventually;
use herald_tests::worker_rig::{PAGE, Process, Rig, job, sample};

/// The page's ceiling in these tests (`HERALD_PAGE_RATE_PER_SEC_<PAGE>`).
const LIMIT: u32 = 200;
/// The simulator's per-second limit: 105 % of the ceiling, so a 613 is a 1-second span over
/// 105 %.
const SIM_LIMIT: u32 = LIMIT * 105 / 100;

/// How one run went, from the simulator's records.
struct Pacing {
    /// Accepted calls per second from the first accept to the last.
    mean: f64,
    /// The most calls accepted in any 1-second span.
    busiest: u32,
    /// Calls refused with 613.
    throttled: u64,
}

fn sim_config() -> SimConfig {
    SimConfig {
        rate_per_sec: SIM_LIMIT,
        // Graph names a regain delay on every 613; a fast one, so a failing run ends quickly.
        throttle_regain_minutes: 0,
        ..SimConfig::default()
    }
}

fn worker(rig: &Rig) -> Process {
    worker_at(rig, LIMIT)
}

/// A worker that paces `PAGE` at `limit` per second.
fn worker_at(rig: &Rig, limit: u32) -> Process {
    let rate_var = format!("HERALD_PAGE_RATE_PER_SEC_{PAGE}");
    let token_var = format!("HERALD_PAGE_TOKEN_{PAGE}");
    let limit = limit.to_string();
    rig.process(
        &[
            (rate_var.as_str(), limit.as_str()),
            (token_var.as_str(), "page-token"),
        ],
        &[],
    )
}

/// Waits until every worker counts `fleet` consumers on the send queue.
async fn knows_fleet(workers: &[Process], fleet: usize) {
    for worker in workers {
        let knows = eventually(Duration::from_secs(30), || async {
            sample(&worker.metrics().await, "herald_send_consumers") == Some(fleet as f64)
        })
        .await;
        assert!(knows, "a worker never saw {fleet} consumers");
    }
}

/// Publishes `jobs` jobs for `PAGE` with PSIDs from `first_psid`.
async fn publish(rig: &Rig, run: &str, jobs: usize, first_psid: usize) {
    let bodies: Vec<_> = (0..jobs)
        .map(|i| job(run, PAGE, &format!("u{i}"), &format!("{}", first_psid + i)))
        .collect();
    rig.publish(&bodies).await;
}

/// What the simulator saw of `jobs` jobs with PSIDs from `first_psid`.
fn pacing(rig: &Rig, jobs: usize, first_psid: usize) -> Pacing {
    let stats = rig.sim.stats();
    let times: Vec<i64> = (0..jobs)
        .map(|i| rig.sim.messages(&format!("{}", first_psid + i))[0].accepted_at_ms)
        .collect();
    let span_ms = times.iter().max().expect("times") - times.iter().min().expect("times");
    Pacing {
        mean: (jobs - 1) as f64 / (span_ms as f64 / 1000.0),
        busiest: stats.max_per_second[PAGE],
        throttled: stats.rejected.get(&613).copied().unwrap_or(0),
    }
}

/// Stops every worker (each must exit 0) and deletes the rig's topology.
async fn finish(rig: Rig, workers: Vec<Process>) {
    for worker in workers {
        assert!(worker.terminate().await.success());
    }
    rig.cleanup().await;
}

fn check(what: &str, pacing: &Pacing) {
    let Pacing {
        mean,
        busiest,
        throttled,
    } = pacing;
    eprintln!(
        "{what} at a {LIMIT}/s limit: mean {mean:.1}/s ({:.1} %), busiest second {busiest}, \
         613s {throttled}",
        mean * 100.0 / f64::from(LIMIT)
    );
    assert_eq!(*throttled, 0, "{what}: a second over 105 % of the ceiling");
    assert!(
        *mean >= f64::from(LIMIT) * 0.97,
        "{what}: mean {mean:.1}/s is under 97 % of {LIMIT}/s"
    );
}

#[tokio::test]
async fn one_worker_keeps_a_page_at_its_limit() {
    let _serial = crate::SERIAL.lock().await;
    const JOBS: usize = 3_000;
    let Some(mut rig) = Rig::new("test-pacing-one", sim_config()).await else {
        return;
    };
    let workers = vec![worker(&rig)];
    knows_fleet(&workers, 1).await;
    publish(&rig, "run-pace-1", JOBS, 100_000).await;
    assert_eq!(rig.wait_results(JOBS, Duration::from_secs(120)).await, JOBS);
    assert_eq!(rig.count(ResultStatus::Sent), JOBS);
    check("one worker", &pacing(&rig, JOBS, 100_000));
    finish(rig, workers).await;
}

#[tokio::test]
async fn a_fleet_keeps_a_page_at_its_limit_while_a_worker_joins() {
    let _serial = crate::SERIAL.lock().await;
    const JOBS: usize = 4_000;
    let Some(mut rig) = Rig::new("test-pacing-fleet", sim_config()).await else {
        return;
    };
    let mut workers: Vec<_> = (0..3).map(|_| worker(&rig)).collect();
    // Every worker must know the fleet is three before the first job, or it would take it all.
    knows_fleet(&workers, 3).await;
    publish(&rig, "run-pace-3", JOBS, 200_000).await;
    let joined = eventually(Duration::from_secs(60), || {
        let accepted = rig.sim.stats().accepted;
        async move { accepted >= JOBS as u64 / 3 }
    })
    .await;
    assert!(joined, "the fleet never sent a third of the jobs");
    workers.push(worker(&rig));
    assert_eq!(rig.wait_results(JOBS, Duration::from_secs(120)).await, JOBS);
    assert_eq!(rig.count(ResultStatus::Sent), JOBS);
    assert_eq!(rig.sim.stats().duplicate_recipients.count, 0);
    check(
        "three workers, a fourth joining",
        &pacing(&rig, JOBS, 200_000),
    );
    finish(rig, workers).await;
}

/// A budget of 200 × 2 = 400 calls per 60 s: the page sends 400 of 600 jobs at its limit, then
/// its calls get 613 with a regain time of 1 minute (rounded up to whole minutes, from when the
/// first calls leave the window). The worker pauses the page for it, jobs wait in the retry
/// tiers, and the rest go out once the page regains access, with no failed or dead result.
#[tokio::test]
async fn a_spent_call_budget_pauses_the_page_until_it_regains_access() {
    let _serial = crate::SERIAL.lock().await;
    const JOBS: usize = 600;
    let config = SimConfig {
        engaged_users: 2,
        budget_window_ms: 60_000,
        ..sim_config()
    };
    let Some(mut rig) = Rig::new("test-pacing-budget", config).await else {
        return;
    };
    let workers = vec![worker(&rig)];
    knows_fleet(&workers, 1).await;
    let started = Instant::now();
    publish(&rig, "run-pace-budget", JOBS, 300_000).await;
    assert_eq!(rig.wait_results(JOBS, Duration::from_secs(300)).await, JOBS);
    let took = started.elapsed();
    assert_eq!(rig.count(ResultStatus::Sent), JOBS, "{:?}", rig.seen.last());
    let stats = rig.sim.stats();
    let throttled = stats.rejected.get(&613).copied().unwrap_or(0);
    eprintln!("budget of 400 calls per 60 s: {JOBS} sent in {took:?}, 613s {throttled}");
    assert!(throttled >= 1, "the budget never ran out");
    // Calls go on only after the pause: a handful of 613s (the calls in flight), not one per
    // job for a minute.
    assert!(
        throttled <= 50,
        "{throttled} calls refused: the page was not paused"
    );
    assert!(
        took >= Duration::from_secs(60),
        "the rest went out before the budget rolled over ({took:?})"
    );
    let metrics = workers[0].metrics().await;
    assert!(
        sample(
            &metrics,
            "herald_jobs_held_total{reason=\"page_throttled\"}"
        )
        .is_some_and(|n| n > 0.0),
        "jobs waited in a retry tier while the page was paused:\n{metrics}"
    );
    finish(rig, workers).await;
}

/// Two workers keep a page at a 100/s limit with a 20,000-job bulk campaign; once it is
/// sending, 200 jobs of a priority campaign are published. Each worker's limiter serves them
/// before its waiting bulk jobs, so all 200 are accepted by Graph within 3 s of their publish
/// (2.04 s at 98/s is the least it can take), the page stays under its limit throughout, and
/// the bulk campaign goes on afterwards.
#[tokio::test]
async fn a_priority_campaign_jumps_a_bulk_one_at_the_page_limit() {
    let _serial = crate::SERIAL.lock().await;
    const LIMIT: u32 = 100;
    const BULK: usize = 20_000;
    const URGENT: usize = 200;
    let config = SimConfig {
        rate_per_sec: LIMIT * 105 / 100,
        ..sim_config()
    };
    let Some(rig) = Rig::new("test-pacing-priority", config).await else {
        return;
    };
    let workers: Vec<_> = (0..2).map(|_| worker_at(&rig, LIMIT)).collect();
    knows_fleet(&workers, 2).await;
    publish(&rig, "run-bulk", BULK, 400_000).await;
    let at_limit = eventually(Duration::from_secs(60), || {
        let accepted = rig.sim.stats().accepted;
        async move { accepted >= u64::from(LIMIT) * 2 }
    })
    .await;
    assert!(at_limit, "the bulk campaign never got going");
    let bodies: Vec<_> = (0..URGENT)
        .map(|i| {
            job(
                "run-urgent",
                PAGE,
                &format!("v{i}"),
                &format!("{}", 900_000 + i),
            )
        })
        .collect();
    let published_ms = herald_core::clock::now_ms();
    rig.publish_priority(&bodies).await;
    let all_sent = eventually(Duration::from_secs(30), || {
        let sent = (0..URGENT)
            .filter(|i| !rig.sim.messages(&format!("{}", 900_000 + i)).is_empty())
            .count();
        async move { sent == URGENT }
    })
    .await;
    assert!(all_sent, "the priority campaign was not sent within 30 s");
    let last_ms = (0..URGENT)
        .map(|i| rig.sim.messages(&format!("{}", 900_000 + i))[0].accepted_at_ms)
        .max()
        .expect("times");
    let took = Duration::from_millis(u64::try_from(last_ms - published_ms).unwrap_or(0));
    let before = rig.sim.stats().accepted;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stats = rig.sim.stats();
    let bulk_after = stats.accepted - before;
    let throttled = stats.rejected.get(&613).copied().unwrap_or(0);
    eprintln!(
        "{URGENT} priority jobs behind a {BULK}-job bulk campaign at {LIMIT}/s: all sent \
         {took:?} after their publish; busiest second {}, 613s {throttled}, bulk sent \
         {bulk_after} in the next 2 s",
        stats.max_per_second[PAGE]
    );
    assert!(
        took <= Duration::from_secs(3),
        "the priority campaign took {took:?}"
    );
    assert_eq!(throttled, 0, "a second over 105 % of the page limit");
    assert!(bulk_after > 0, "the bulk campaign stopped");
    finish(rig, workers).await;
}
