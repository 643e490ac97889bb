//! Nothing sent twice, with real processes on PostgreSQL: three `herald worker`s, `herald serve`
//! (webhook, ingest, results, the send ledger) and the simulator answering in 50 ms and posting
//! signed echoes of every message to serve. Workers are killed with SIGKILL mid-run and
//! restarted, the simulator loses answers after accepting, the producer is killed and resumed;
//! the simulator must see every user exactly once and the store show one `sent` result each.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use herald_amqp::{AmqpSettings, Topology};
use herald_core::Secret;
use herald_sim::{Latency, SimConfig, SimHandle};
use herald_tests::bench::free_addr;
use herald_tests::{Running, broker, eventually, herald, herald_ok, unique_name, write_campaign};
use serde_json::Value;

const PAGE: &str = "1000000001";
const USERS: u64 = 20_000;
const APP_SECRET: &str = "ledger-app-secret";
const LEDGER_TOKEN: &str = "ledger-token-0123456789abcdefghijklmn";

/// The processes of one run and what they share.
struct Fleet {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    sim: SimHandle,
    serve: Option<Running>,
    workers: Vec<Option<Running>>,
    topology: Topology,
    database: Secret,
}

impl Fleet {
    async fn start(name: &str, database: Secret, lost_answer_rate: f64) -> Option<Self> {
        drop(broker().await?);
        let prefix = unique_name(name);
        let topology = Topology::new(&prefix).expect("topology");
        let serve_addr = free_addr();
        let serve_url = format!("http://{serve_addr}");
        let sim = herald_sim::spawn(
            SimConfig {
                latency: Latency::Fixed { ms: 50 },
                // Well above what the workers send: this run is about duplicates, not pacing.
                rate_per_sec: 100_000,
                app_secret: Some(APP_SECRET.to_owned()),
                webhook_url: Some(format!("{serve_url}/webhook")),
                echoes: true,
                echo_delay_ms: 200,
                lost_answer_rate,
                record_bodies: false,
                ..SimConfig::default()
            },
            "127.0.0.1:0".parse().expect("addr"),
        )
        .await
        .expect("simulator");
        let env = [
            ("HERALD_TOPOLOGY_PREFIX", prefix.as_str()),
            ("HERALD_DATABASE_URL", database.expose()),
            ("HERALD_APP_SECRET", APP_SECRET),
            ("HERALD_VERIFY_TOKEN", "ledger-verify-token"),
            ("HERALD_LEDGER_TOKEN", LEDGER_TOKEN),
            ("HERALD_LEDGER_URL", serve_url.as_str()),
            ("HERALD_GRAPH_URL", sim.url().as_str()),
            (&format!("HERALD_PAGE_TOKEN_{PAGE}"), "ledger-page-token"),
            ("HERALD_PAGE_RATE_PER_SEC", "5000"),
        ]
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .to_vec();
        let mut fleet = Self {
            dir: tempfile::tempdir().expect("temp dir"),
            env,
            sim,
            serve: None,
            workers: Vec::new(),
            topology,
            database,
        };
        fleet.serve = Some(fleet.spawn("serve", &["serve", "--addr", &serve_addr]));
        let ready = eventually(Duration::from_secs(60), || async {
            reqwest::get(format!("{serve_url}/readyz"))
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
        assert!(ready, "herald serve never became ready");
        for n in 0..3 {
            let worker = fleet.worker(n);
            fleet.workers.push(Some(worker));
        }
        let extra = "[delivery]\nrate_per_sec = 5000\n";
        write_campaign(fleet.dir.path(), ("ledger", PAGE), USERS, 5_000_000, extra);
        Some(fleet)
    }

    fn env(&self) -> Vec<(&str, &str)> {
        self.env
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
            .collect()
    }

    /// `herald ARGS`, its log in `<dir>/<name>.log`, once its first stdout line is out.
    fn spawn(&self, name: &str, args: &[&str]) -> Running {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{name}.log")))
            .expect("log file");
        let mut child = herald(&self.env())
            .args(args)
            .current_dir(self.dir.path())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn herald");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("first line");
        Running(child)
    }

    fn worker(&self, n: usize) -> Running {
        self.spawn(
            &format!("worker-{n}"),
            &["worker", "--metrics-addr", "127.0.0.1:0"],
        )
    }

    /// SIGKILL worker `n`, then start a new one in its place.
    fn kill_and_restart(&mut self, n: usize) {
        if let Some(mut worker) = self.workers[n].take() {
            worker.0.kill().expect("SIGKILL");
            worker.0.wait().expect("reap");
        }
        self.workers[n] = Some(self.worker(n));
    }

    async fn herald_ok(&self, args: &[&str]) -> String {
        herald_ok(self.dir.path(), &self.env(), args).await
    }

    async fn status(&self, run_id: &str) -> Value {
        let text = self
            .herald_ok(&["campaign", "status", run_id, "--json"])
            .await;
        serde_json::from_str(&text).expect("status JSON")
    }

    /// Waits until `campaign status` shows every user sent, then a little longer for anything
    /// still in a retry tier to come back, and checks that nobody was sent twice.
    async fn expect_everyone_once(&self, run_id: &str) {
        let deadline = Instant::now() + Duration::from_secs(300);
        let report = loop {
            let report = self.status(run_id).await;
            if report["results"]["sent"] == USERS || Instant::now() >= deadline {
                break report;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        assert_eq!(report["results"]["sent"], USERS, "{report:#}");
        // A held copy of a job comes back after the shortest retry tier (5 s) at most.
        tokio::time::sleep(Duration::from_secs(7)).await;
        let stats = self.sim.stats();
        eprintln!(
            "accepted {}, lost answers {}, users sent twice {}",
            stats.accepted, stats.lost_answers, stats.duplicate_recipients.count
        );
        assert_eq!(
            stats.duplicate_recipients.count, 0,
            "users sent twice: {:?}",
            stats.duplicate_recipients.psids
        );
        assert_eq!(stats.accepted, USERS, "one accepted call per user");
        let report = self.status(run_id).await;
        assert_eq!(report["results"]["sent"], USERS, "{report:#}");
        assert_eq!(report["results"]["total"], USERS, "{report:#}");
    }

    async fn stop(mut self) {
        for worker in self.workers.iter_mut().filter_map(Option::take) {
            assert!(worker.terminate(), "a worker did not exit 0 on SIGTERM");
        }
        if let Some(serve) = self.serve.take() {
            assert!(serve.terminate(), "serve did not exit 0 on SIGTERM");
        }
        let amqp = AmqpSettings {
            url: herald_tests::amqp_addr().into(),
            ..AmqpSettings::default()
        };
        let connection = herald_amqp::connect(&amqp).await.expect("connect");
        self.topology.delete(&connection).await.expect("cleanup");
        let _ = connection.close().await;
        drop(self.database);
        self.sim.shutdown().await;
    }
}

fn run_id(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("run_id: "))
        .expect("run_id line")
        .to_owned()
}

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
        let Some(mut fleet) = Fleet::start("test-ledger-kill", database, 0.0).await else {
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
        let Some(mut fleet) = Fleet::start("test-ledger-lost", database, 0.02).await else {
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
        let Some(fleet) = Fleet::start("test-ledger-resume", database.clone(), 0.0).await else {
            return;
        };
        let store = herald_store::Store::connect(&database)
            .await
            .expect("store");
        let mut producer = herald(&fleet.env())
            .args(["campaign", "send", "campaign.toml"])
            .current_dir(fleet.dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn producer");
        let mut first = String::new();
        BufReader::new(producer.stdout.take().expect("stdout"))
            .read_line(&mut first)
            .expect("run id line");
        let run = run_id(&first);
        let halfway = eventually(Duration::from_secs(120), || async {
            store
                .load_run(&run)
                .await
                .ok()
                .flatten()
                .is_some_and(|record| record.progress.published * 2 >= USERS)
        })
        .await;
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
