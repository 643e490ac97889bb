//! The processes of one end-to-end run on the real broker (or the test cluster) and PostgreSQL:
//! `herald serve` (webhook, ingest, results, the send ledger), `herald worker`s that check the
//! ledger, and the simulator answering in 50 ms and posting signed echoes to serve. Each process
//! logs to `<dir>/<name>.log`.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use herald_amqp::{AmqpSettings, Topology};
use herald_core::Secret;
use herald_sim::{Latency, SimConfig, SimHandle};
use herald_tests::bench::free_addr;
use herald_tests::{Running, broker, eventually, herald, herald_ok, unique_name, write_campaign};
use serde_json::Value;

pub(crate) const PAGE: &str = "1000000001";
/// Users of a run unless its options say otherwise.
pub(crate) const USERS: u64 = 20_000;
pub(crate) const APP_SECRET: &str = "ledger-app-secret";
const LEDGER_TOKEN: &str = "ledger-token-0123456789abcdefghijklmn";

/// The processes of one run and what they share.
pub(crate) struct Fleet {
    pub(crate) dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    pub(crate) sim: SimHandle,
    serve: Option<Running>,
    serve_addr: String,
    /// `http://host:port` of serve (webhook, API, `/metrics`).
    pub(crate) serve_url: String,
    /// Users of the campaign (`campaign.toml`).
    pub(crate) users: u64,
    workers: Vec<Option<Running>>,
    /// Each worker's `--metrics-addr`, kept across restarts.
    worker_metrics: Vec<String>,
    pub(crate) topology: Topology,
    amqp: AmqpSettings,
    database: Secret,
}

/// The terminal results of a run, from `campaign status`.
#[derive(Debug)]
pub(crate) struct Counts {
    pub(crate) sent: u64,
    pub(crate) failed: u64,
    pub(crate) skipped: u64,
}

/// What a fleet runs on.
pub(crate) struct Options {
    /// The topology prefix starts with this.
    pub(crate) name: &'static str,
    /// A new PostgreSQL schema's URL.
    pub(crate) database: Secret,
    /// The simulator's share of accepted calls whose answer it loses.
    pub(crate) lost_answer_rate: f64,
    /// `HERALD_AMQP_URL` (one URL or a cluster's comma-separated list); the test broker when
    /// `None`.
    pub(crate) amqp_url: Option<String>,
    /// Users of the campaign.
    pub(crate) users: u64,
    /// The campaign's (and the page's) rate per second.
    pub(crate) rate: u32,
    /// Whether the simulator also posts delivery and read receipts.
    pub(crate) receipts: bool,
}

impl Options {
    /// A campaign on the test cluster (`url`) with receipts, of `users` users at `rate` a
    /// second unless the environment variables `users_var` and `rate_var` say otherwise (the
    /// long runs of `scripts/`).
    pub(crate) fn on_cluster(
        name: &'static str,
        database: Secret,
        url: String,
        (users_var, users): (&str, u64),
        (rate_var, rate): (&str, u64),
    ) -> Self {
        let rate = u32::try_from(setting(rate_var, rate)).expect("rate");
        Self {
            amqp_url: Some(url),
            users: setting(users_var, users),
            rate,
            receipts: true,
            ..Self::new(name, database)
        }
    }

    pub(crate) fn new(name: &'static str, database: Secret) -> Self {
        Self {
            name,
            database,
            lost_answer_rate: 0.0,
            amqp_url: None,
            users: USERS,
            rate: 5_000,
            receipts: false,
        }
    }
}

impl Fleet {
    pub(crate) async fn start(options: Options) -> Option<Self> {
        drop(broker().await?);
        let Options {
            name,
            database,
            lost_answer_rate,
            amqp_url,
            users,
            rate,
            receipts,
        } = options;
        let amqp_url = amqp_url.unwrap_or_else(herald_tests::amqp_addr);
        let amqp = AmqpSettings {
            url: Secret::new(amqp_url.clone()),
            ..AmqpSettings::default()
        };
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
                receipts,
                lost_answer_rate,
                // Meta keeps retrying a refused webhook delivery for hours; three tries over
                // 1.4 s would lose echoes across a broker failover.
                webhook_retries: 10,
                record_bodies: false,
                ..SimConfig::default()
            },
            "127.0.0.1:0".parse().expect("addr"),
        )
        .await
        .expect("simulator");
        let env = [
            ("HERALD_AMQP_URL", amqp_url.as_str()),
            ("HERALD_TOPOLOGY_PREFIX", prefix.as_str()),
            ("HERALD_DATABASE_URL", database.expose()),
            ("HERALD_APP_SECRET", APP_SECRET),
            ("HERALD_VERIFY_TOKEN", "ledger-verify-token"),
            ("HERALD_LEDGER_TOKEN", LEDGER_TOKEN),
            ("HERALD_LEDGER_URL", serve_url.as_str()),
            ("HERALD_GRAPH_URL", sim.url().as_str()),
            (&format!("HERALD_PAGE_TOKEN_{PAGE}"), "ledger-page-token"),
            ("HERALD_PAGE_RATE_PER_SEC", rate.to_string().as_str()),
        ]
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .to_vec();
        let mut fleet = Self {
            dir: logs_dir(),
            env,
            sim,
            serve: None,
            serve_addr: serve_addr.to_string(),
            serve_url: serve_url.clone(),
            users,
            workers: Vec::new(),
            worker_metrics: (0..3).map(|_| free_addr()).collect(),
            topology,
            amqp,
            database,
        };
        fleet.start_serve().await;
        for n in 0..3 {
            let worker = fleet.worker(n);
            fleet.workers.push(Some(worker));
        }
        let extra = format!("[delivery]\nrate_per_sec = {rate}\n");
        write_campaign(fleet.dir.path(), ("ledger", PAGE), users, 5_000_000, &extra);
        Some(fleet)
    }

    /// Starts serve and waits until it is ready.
    async fn start_serve(&mut self) {
        let addr = self.serve_addr.clone();
        self.serve = Some(self.spawn("serve", &["serve", "--addr", &addr]));
        let url = self.serve_url.clone();
        let ready = eventually(Duration::from_secs(60), || async {
            reqwest::get(format!("{url}/readyz"))
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
        assert!(ready, "herald serve never became ready");
    }

    /// SIGKILLs serve and starts it again on the same address.
    pub(crate) async fn kill_and_restart_serve(&mut self) {
        if let Some(mut serve) = self.serve.take() {
            serve.0.kill().expect("SIGKILL");
            serve.0.wait().expect("reap");
        }
        self.start_serve().await;
    }

    pub(crate) fn env(&self) -> Vec<(&str, &str)> {
        self.env
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
            .collect()
    }

    /// `herald ARGS`, its log in `<dir>/<name>.log`, once its first stdout line is out.
    pub(crate) fn spawn(&self, name: &str, args: &[&str]) -> Running {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{name}.log")))
            .expect("log file");
        Running(self.launch(args, Stdio::from(log)).0)
    }

    /// `herald ARGS` in the fleet's directory with its environment, once its first stdout line
    /// (returned) is out.
    fn launch(&self, args: &[&str], stderr: Stdio) -> (std::process::Child, String) {
        let mut child = herald(&self.env())
            .args(args)
            .current_dir(self.dir.path())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn herald");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("first line");
        (child, line)
    }

    pub(crate) fn worker(&self, n: usize) -> Running {
        let addr = &self.worker_metrics[n];
        self.spawn(&format!("worker-{n}"), &["worker", "--metrics-addr", addr])
    }

    /// Worker `n`'s `/metrics` text (empty when it does not answer).
    pub(crate) async fn worker_metrics(&self, n: usize) -> String {
        scrape(&format!("http://{}/metrics", self.worker_metrics[n])).await
    }

    /// Serve's `/metrics` text (empty when it does not answer).
    pub(crate) async fn serve_metrics(&self) -> String {
        scrape(&format!("{}/metrics", self.serve_url)).await
    }

    /// The running serve and workers, each as (name, pid).
    pub(crate) fn processes(&self) -> Vec<(String, u32)> {
        let serve = self
            .serve
            .iter()
            .map(|serve| ("serve".to_owned(), serve.0.id()));
        let workers = self.workers.iter().enumerate().filter_map(|(n, worker)| {
            let worker = worker.as_ref()?;
            Some((format!("worker-{n}"), worker.0.id()))
        });
        serve.chain(workers).collect()
    }

    /// SIGTERMs worker `n` and forgets it; whether it exited 0 (within 90 s).
    pub(crate) async fn terminate_worker(&mut self, n: usize) -> bool {
        match self.workers[n].take() {
            Some(worker) => worker.terminate().await,
            None => true,
        }
    }

    /// SIGKILL worker `n`, then start a new one in its place.
    pub(crate) fn kill_and_restart(&mut self, n: usize) {
        if let Some(mut worker) = self.workers[n].take() {
            worker.0.kill().expect("SIGKILL");
            worker.0.wait().expect("reap");
        }
        self.workers[n] = Some(self.worker(n));
    }

    /// `herald campaign send campaign.toml EXTRA` in the background, once it printed its run id.
    pub(crate) fn producer(&self, extra: &[&str]) -> (std::process::Child, String) {
        let mut args = vec!["campaign", "send", "campaign.toml"];
        args.extend_from_slice(extra);
        let (producer, first) = self.launch(&args, Stdio::null());
        (producer, run_id(&first))
    }

    /// Waits (up to 2 min) until run `run` has published `percent` % of the users; false if
    /// it never does.
    pub(crate) async fn published(
        &self,
        store: &herald_store::Store,
        run: &str,
        percent: u64,
    ) -> bool {
        eventually(Duration::from_secs(120), || async {
            store
                .load_run(run)
                .await
                .ok()
                .flatten()
                .is_some_and(|record| record.progress.published * 100 >= self.users * percent)
        })
        .await
    }

    pub(crate) async fn herald_ok(&self, args: &[&str]) -> String {
        herald_ok(self.dir.path(), &self.env(), args).await
    }

    pub(crate) async fn status(&self, run_id: &str) -> Value {
        let text = self
            .herald_ok(&["campaign", "status", run_id, "--json"])
            .await;
        serde_json::from_str(&text).expect("status JSON")
    }

    /// Waits until `campaign status` shows every user sent, then a little longer for anything
    /// still in a retry tier to come back, and checks that nobody was sent twice.
    pub(crate) async fn expect_everyone_once(&self, run_id: &str) {
        let deadline = Instant::now() + Duration::from_secs(300);
        let report = loop {
            let report = self.status(run_id).await;
            if report["results"]["sent"] == self.users || Instant::now() >= deadline {
                break report;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        assert_eq!(report["results"]["sent"], self.users, "{report:#}");
        // A held copy of a job comes back after the shortest retry tier (5 s) at most.
        tokio::time::sleep(Duration::from_secs(7)).await;
        let stats = self.sim.stats();
        eprintln!(
            "accepted {}, lost answers {}, users sent twice {}",
            stats.accepted, stats.lost_answers, stats.duplicate_recipients.count
        );
        eprintln!(
            "echo webhook: {:?}; running workers' ledger counters: {:?}",
            stats.webhook,
            self.ledger_counters().await
        );
        assert_eq!(
            stats.duplicate_recipients.count, 0,
            "users sent twice: {:?}",
            stats.duplicate_recipients.psids
        );
        assert_eq!(stats.accepted, self.users, "one accepted call per user");
        let report = self.status(run_id).await;
        assert_eq!(report["results"]["sent"], self.users, "{report:#}");
        assert_eq!(report["results"]["total"], self.users, "{report:#}");
    }

    /// Prints run `run`'s final counts, after `expect_everyone_once`: users, sent, failed,
    /// skipped, lost, duplicate sends at the simulator and users without exactly one result.
    pub(crate) async fn final_counts(&self, label: &str, run: &str, took: Duration) -> Counts {
        let report = self.status(run).await;
        let results = &report["results"];
        let count = |status: &str| results[status].as_u64().unwrap_or(0);
        let counts = Counts {
            sent: count("sent"),
            failed: count("failed"),
            skipped: count("skipped"),
        };
        let users = self.users;
        eprintln!(
            "{label}: {users} users in {:.1} s: sent {}, failed {}, skipped {}, lost {}, \
             duplicate sends {}, users with != 1 result {}",
            took.as_secs_f64(),
            counts.sent,
            counts.failed,
            counts.skipped,
            users.saturating_sub(counts.sent + counts.failed + counts.skipped),
            self.sim.stats().duplicate_recipients.count,
            users - count("total").min(users)
        );
        counts
    }

    /// The running workers' send-ledger counters, summed per series.
    async fn ledger_counters(&self) -> std::collections::BTreeMap<String, f64> {
        let mut sums = std::collections::BTreeMap::new();
        for n in 0..self.workers.len() {
            for line in self.worker_metrics(n).await.lines() {
                let counted = [
                    "herald_ledger_checks_total",
                    "herald_possible_duplicate_sends_total",
                ]
                .iter()
                .any(|name| line.starts_with(name));
                if let (true, Some((series, value))) = (counted, line.rsplit_once(' ')) {
                    *sums.entry(series.to_owned()).or_insert(0.0) += value.parse().unwrap_or(0.0);
                }
            }
        }
        sums
    }

    pub(crate) async fn stop(mut self) {
        for worker in self.workers.iter_mut().filter_map(Option::take) {
            assert!(
                worker.terminate().await,
                "a worker did not exit 0 on SIGTERM"
            );
        }
        if let Some(serve) = self.serve.take() {
            assert!(serve.terminate().await, "serve did not exit 0 on SIGTERM");
        }
        let connection = herald_amqp::connect(&self.amqp).await.expect("connect");
        self.topology.delete(&connection).await.expect("cleanup");
        let _ = connection.close().await;
        drop(self.database);
        self.sim.shutdown().await;
    }
}

/// The number in environment variable `name`, else `default`.
fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// The run's directory (campaign, segment, each process's log): removed afterwards unless
/// `HERALD_KEEP_LOGS` is set, then printed.
fn logs_dir() -> tempfile::TempDir {
    let mut dir = tempfile::tempdir().expect("temp dir");
    if std::env::var_os("HERALD_KEEP_LOGS").is_some() {
        dir.disable_cleanup(true);
        eprintln!("logs kept in {}", dir.path().display());
    }
    dir
}

pub(crate) fn run_id(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("run_id: "))
        .expect("run_id line")
        .to_owned()
}

async fn scrape(url: &str) -> String {
    match reqwest::get(url).await {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// The value of an unlabelled sample in Prometheus text, if present.
pub(crate) fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}
