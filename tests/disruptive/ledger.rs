//! Nothing sent twice, with real processes on PostgreSQL: three `herald worker`s, `herald serve`
//! (webhook, ingest, results, the send ledger) and the simulator answering in 50 ms and posting
//! signed echoes of every message to serve. Workers are killed with SIGKILL mid-run and
//! restarted, the simulator loses answers after accepting, the producer is killed and resumed;
//! the simulator must see every user exactly once and the store show one `sent` result each.

use std::time::Duration;

use herald_tests::eventually;

use crate::fleet::{Fleet, Options, USERS, run_id};

/// Sends the campaign; kills a worker (SIGKILL) once 30 % and another once 60 % of the users
/// were accepted, restarting each at once.
async fn send_killing_workers(fleet: &mut Fleet) {
    let run = run_id(
        &fleet
            .herald_ok(&["campaign", "send", "campaign.toml"])
            .await,
    );
    for (share, worker) in [(30, 0), (60, 1)] {
        let reached = eventually(Duration::from_secs(120), || {
            let accepted = fleet.sim.stats().accepted;
            async move { accepted * 100 >= USERS * share }
        })
        .await;
        assert!(reached, "the run never reached {share} %");
        assert!(
            fleet.sim.stats().accepted < USERS,
            "finished before the kill; grow USERS"
        );
        fleet.kill_and_restart(worker);
    }
    fleet.expect_everyone_once(&run).await;
}

#[tokio::test]
async fn workers_killed_mid_run_send_nobody_twice() {
    let _serial = crate::SERIAL.lock().await;
    herald_tests::postgres::in_new_schema(|database| async move {
        let Some(mut fleet) = Fleet::start(Options::new("test-ledger-kill", database)).await else {
            return;
        };
        send_killing_workers(&mut fleet).await;
        fleet.stop().await;
    })
    .await;
}

#[tokio::test]
async fn lost_answers_and_killed_workers_send_nobody_twice() {
    let _serial = crate::SERIAL.lock().await;
    herald_tests::postgres::in_new_schema(|database| async move {
        let Some(mut fleet) = Fleet::start(Options {
            lost_answer_rate: 0.02,
            ..Options::new("test-ledger-lost", database)
        })
        .await
        else {
            return;
        };
        send_killing_workers(&mut fleet).await;
        assert!(
            fleet.sim.stats().lost_answers > 100,
            "the simulator lost too few answers to prove anything"
        );
        fleet.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_killed_and_resumed_producer_sends_nobody_twice() {
    let _serial = crate::SERIAL.lock().await;
    herald_tests::postgres::in_new_schema(|database| async move {
        let Some(fleet) = Fleet::start(Options::new("test-ledger-resume", database.clone())).await
        else {
            return;
        };
        let store = herald_store::Store::connect(&database)
            .await
            .expect("store");
        let (mut producer, run) = fleet.producer(&[]);
        let halfway = fleet.published(&store, &run, 50).await;
        assert!(halfway, "the producer never got halfway");
        let record = store.load_run(&run).await.expect("load").expect("run");
        assert!(
            !record.progress.complete,
            "finished before it could be killed; grow USERS"
        );
        producer.kill().expect("SIGKILL");
        producer.wait().expect("reap");
        let resumed = fleet
            .herald_ok(&["campaign", "send", "campaign.toml", "--resume", &run])
            .await;
        assert_eq!(run_id(&resumed), run, "resume keeps the run id");
        fleet.expect_everyone_once(&run).await;
        store.close().await;
        fleet.stop().await;
    })
    .await;
}
