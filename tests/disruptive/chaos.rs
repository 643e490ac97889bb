//! The chaos run: one campaign on the 3-node test cluster with three `herald worker`s, `herald
//! serve` on PostgreSQL and the simulator (50 ms answers, delivery and read receipts, echoes),
//! while everything fails:
//! - the producer is SIGKILLed once half the jobs are published, and resumed;
//! - every ~5 s a worker picked at random is SIGKILLed and started again;
//! - at 25 % sent, the node that leads `<prefix>.send` is stopped, and started 8 s later;
//! - at 50 %, `herald serve` is SIGKILLed and started again;
//! - at 70 %, a memory alarm blocks publishing for 4 s.
//!
//! At the end every user was sent exactly once (the simulator's count), the store shows one
//! `sent` result per user, and the run prints each fault's recovery: the time from the fault (or
//! its end) until half a second's worth of sends more were accepted (for the producer: until the
//! resumed run had published everything).
//!
//! CI runs a short version (6,000 users at 300/s); `scripts/chaos` runs it with 30,000 users
//! (`HERALD_CHAOS_USERS`, `HERALD_CHAOS_RATE`).

use std::time::{Duration, Instant};

use crate::cluster::{Alarm, Stopped, cluster_url, ctl};
use crate::fleet::{Fleet, Options};

/// One fault and how the campaign came back from it.
struct Fault {
    what: String,
    /// When it happened (for a fault that lasts: when it ended).
    at: Instant,
    /// Users accepted by the simulator at that moment.
    accepted: u64,
    recovered: Option<Duration>,
}

impl Fault {
    fn new(what: impl Into<String>, accepted: u64) -> Self {
        Self {
            what: what.into(),
            at: Instant::now(),
            accepted,
            recovered: None,
        }
    }
}

/// The cluster node (1..=3) that leads `queue`.
fn leader_of(queue: &str) -> usize {
    let listed = ctl(1, &["list_queues", "name", "leader", "--no-table-headers"]);
    let line = listed
        .lines()
        .find(|line| line.split_whitespace().next() == Some(queue))
        .unwrap_or_else(|| panic!("{queue} not listed:\n{listed}"));
    (1..=3)
        .find(|node| line.contains(&format!("herald-c{node}@localhost")))
        .unwrap_or_else(|| panic!("no leader on the cluster for {queue}: {line}"))
}

#[tokio::test]
async fn a_campaign_survives_everything_failing_at_once() {
    let _serial = crate::SERIAL.lock().await;
    let Some(url) = cluster_url() else {
        return;
    };
    herald_tests::postgres::in_new_schema(|database| async move {
        let options = Options::on_cluster(
            "test-chaos",
            database.clone(),
            url,
            ("HERALD_CHAOS_USERS", 6_000),
            ("HERALD_CHAOS_RATE", 300),
        );
        let (users, rate) = (options.users, options.rate);
        let Some(mut fleet) = Fleet::start(options).await else {
            return;
        };
        let store = herald_store::Store::connect(&database)
            .await
            .expect("store");
        let started = Instant::now();
        let accepted = |fleet: &Fleet| fleet.sim.stats().accepted;

        let (mut producer, run) = fleet.producer(&[]);
        let halfway = fleet.published(&store, &run, 50).await;
        assert!(halfway, "the producer never got halfway");
        producer.kill().expect("SIGKILL");
        producer.wait().expect("reap");
        let record = store.load_run(&run).await.expect("load").expect("run");
        assert!(
            !record.progress.complete,
            "the producer finished before it was killed; grow HERALD_CHAOS_USERS"
        );
        let mut producer_fault = Fault::new(
            "producer SIGKILL at 50 % published, resumed",
            accepted(&fleet),
        );
        let (mut resumed, resumed_run) = fleet.producer(&["--resume", &run]);
        assert_eq!(resumed_run, run, "resume keeps the run id");

        let step = u64::from(rate / 2).max(1);
        let mut faults = Vec::new();
        let (mut node_stopped, mut serve_restarted, mut alarmed) = (false, false, false);
        let mut stopped: Option<(Stopped, Instant)> = None;
        let mut alarm: Option<(Alarm, Instant)> = None;
        let mut last_kill = Instant::now();
        let mut victim = (started.elapsed().subsec_nanos() % 3) as usize;
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let now = accepted(&fleet);
            for fault in faults
                .iter_mut()
                .filter(|f: &&mut Fault| f.recovered.is_none())
            {
                if now >= (fault.accepted + step).min(users) {
                    fault.recovered = Some(fault.at.elapsed());
                }
            }
            if producer_fault.recovered.is_none()
                && let Some(status) = resumed.try_wait().expect("producer status")
            {
                assert!(status.success(), "the resumed producer exited {status}");
                producer_fault.recovered = Some(producer_fault.at.elapsed());
            }
            let faults_done =
                node_stopped && stopped.is_none() && serve_restarted && alarmed && alarm.is_none();
            if now >= users && producer_fault.recovered.is_some() {
                assert!(
                    faults_done,
                    "everyone was sent before every fault happened; grow HERALD_CHAOS_USERS \
                     or lower HERALD_CHAOS_RATE"
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the campaign never finished ({now} of {users})"
            );

            if last_kill.elapsed() >= Duration::from_secs(5) {
                victim = (victim + 1 + (started.elapsed().subsec_nanos() % 2) as usize) % 3;
                fleet.kill_and_restart(victim);
                faults.push(Fault::new(
                    format!("worker {victim} SIGKILL, restarted"),
                    now,
                ));
                last_kill = Instant::now();
            }
            if !node_stopped && now * 4 >= users {
                let node = leader_of(&fleet.topology.send_queue());
                ctl(node, &["stop_app"]);
                stopped = Some((Stopped(node), Instant::now()));
                faults.push(Fault::new(
                    format!("node {node} (send queue leader) stopped"),
                    now,
                ));
                node_stopped = true;
            }
            if stopped
                .as_ref()
                .is_some_and(|(_, at)| at.elapsed() >= Duration::from_secs(8))
            {
                // Dropping it starts the node again.
                stopped = None;
            }
            if !serve_restarted && now * 2 >= users {
                fleet.kill_and_restart_serve().await;
                faults.push(Fault::new("serve SIGKILL, restarted", now));
                serve_restarted = true;
            }
            if !alarmed && now * 10 >= users * 7 {
                alarm = Some((Alarm::raise(), Instant::now()));
                alarmed = true;
            }
            if alarm
                .as_ref()
                .is_some_and(|(_, at)| at.elapsed() >= Duration::from_secs(4))
            {
                alarm = None;
                faults.push(Fault::new("memory alarm for 4 s (from its end)", now));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        fleet.expect_everyone_once(&run).await;
        let counts = fleet.final_counts("chaos", &run, started.elapsed()).await;
        faults.insert(0, producer_fault);
        for fault in &faults {
            let recovered = fault
                .recovered
                .map_or("never".to_owned(), |d| format!("{:.1} s", d.as_secs_f64()));
            eprintln!("  {:<45} recovered in {recovered}", fault.what);
        }
        assert_eq!((counts.failed, counts.skipped), (0, 0), "{counts:?}");
        assert!(
            faults.iter().all(|fault| fault.recovered.is_some()),
            "a fault was never recovered from"
        );
        store.close().await;
        fleet.stop().await;
    })
    .await;
}
