//! A real Prometheus (Debian's `prometheus`, installed by the test command) scraping real
//! `herald worker` processes and a real `herald serve`: the send counters it collects, read
//! back with PromQL over its HTTP API, match what the simulator accepted and refused, and the
//! results serve stored match the jobs. This is the check that the metrics
//! are scrapeable and mean what the dashboards and alerts (deploy/) assume.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use herald_sim::{PsidOutcome, PsidRule, SimConfig};
use serde_json::Value;

use crate::worker_rig::{PAGE, Process, Rig, job};

/// A Prometheus server on a free port of 127.0.0.1, scraping `targets` every second.
pub(crate) struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts `prometheus` (or `None` when it is missing outside CI).
    pub(crate) fn start(targets: &[String]) -> Option<Self> {
        if Command::new("prometheus")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            assert!(
                std::env::var_os("CI").is_none(),
                "prometheus is not installed; scripts/test installs it (ensure_deploy_tools)"
            );
            eprintln!("skipping: prometheus is not installed");
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let list: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n\
             scrape_configs:\n  - job_name: herald\n    static_configs:\n      - targets: [{}]\n",
            list.join(", ")
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("config");
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn prometheus");
        Some(Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        })
    }

    /// The value of an instant PromQL query that yields one sample (`None` when it yields
    /// none, or Prometheus does not answer yet).
    pub(crate) async fn scalar(&self, query: &str) -> Option<f64> {
        let url = reqwest::Url::parse_with_params(
            &format!("{}/api/v1/query", self.url),
            [("query", query)],
        )
        .expect("query URL");
        let response = reqwest::get(url).await.ok()?;
        let body: Value = serde_json::from_slice(&response.bytes().await.ok()?).ok()?;
        let result = body["data"]["result"].as_array()?;
        let [sample] = result.as_slice() else {
            return None;
        };
        sample["value"][1].as_str()?.parse().ok()
    }

    /// Waits (up to 30 s) until `query` reads `expected`, and returns what it read last
    /// (Prometheus scrapes every second).
    pub(crate) async fn wait_for(&self, query: &str, expected: f64) -> Option<f64> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let last = self.scalar(query).await;
            if last == Some(expected) || Instant::now() >= deadline {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// `http://host:port/metrics` → `host:port`.
pub(crate) fn target(metrics_url: &str) -> String {
    metrics_url
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_counts_what_the_simulator_accepted() {
    // PSIDs starting 551 are unreachable (a drop-user error): counted as failed sends.
    let sim = SimConfig {
        psid_rules: vec![PsidRule::prefix("551", PsidOutcome::Unavailable)],
        ..SimConfig::default()
    };
    let Some(rig) = Rig::new("test-prom", sim).await else {
        return;
    };
    let token_var = format!("HERALD_PAGE_TOKEN_{PAGE}");
    let env = [(token_var.as_str(), "page-token")];
    let workers: Vec<Process> = (0..2).map(|_| rig.process(&env, &[])).collect();
    let mut targets: Vec<String> = workers.iter().map(|w| target(&w.metrics_url)).collect();
    // `herald serve` runs the results consumer, so it (not this test) reads <p>.results.store.
    let dir = tempfile::tempdir().expect("temp dir");
    let database = format!("sqlite://{}", dir.path().join("herald.db").display());
    let serve_addr = format!("127.0.0.1:{}", free_port());
    let serve = crate::herald(&[
        ("HERALD_TOPOLOGY_PREFIX", rig.prefix.as_str()),
        ("HERALD_DATABASE_URL", database.as_str()),
        ("HERALD_APP_SECRET", "prometheus-test-secret"),
        ("HERALD_VERIFY_TOKEN", "prometheus-test-verify"),
    ])
    .args(["serve", "--addr", &serve_addr])
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .map(crate::Running)
    .expect("spawn herald serve");
    targets.push(serve_addr);
    let Some(prometheus) = Prometheus::start(&targets) else {
        rig.cleanup().await;
        return;
    };
    const SENT: usize = 60;
    const UNREACHABLE: usize = 7;
    let mut jobs: Vec<Vec<u8>> = (0..SENT)
        .map(|i| job("r-prom", PAGE, &format!("u{i}"), &format!("{}", 7000 + i)))
        .collect();
    jobs.extend(
        (0..UNREACHABLE).map(|i| job("r-prom", PAGE, &format!("x{i}"), &format!("551{i}"))),
    );
    rig.publish(&jobs).await;
    let total = SENT + UNREACHABLE;
    let up = prometheus
        .wait_for("count(up{job=\"herald\"} == 1)", targets.len() as f64)
        .await;
    assert_eq!(up, Some(3.0), "both workers and serve are scraped");
    // What HeraldBrokerDisconnected reads: serve reports its own connection, as workers do.
    let connected = prometheus
        .wait_for("count(herald_broker_connected == 1)", targets.len() as f64)
        .await;
    assert_eq!(
        connected,
        Some(3.0),
        "both workers and serve report a live broker connection"
    );
    let recorded = prometheus
        .wait_for("sum(herald_results_recorded_total)", total as f64)
        .await;
    assert_eq!(
        recorded,
        Some(total as f64),
        "serve stored one result per job"
    );
    let stats = rig.sim.stats();
    assert_eq!(stats.accepted, SENT as u64);
    let sent = prometheus
        .wait_for(
            "sum(herald_send_attempts_total{outcome=\"sent\"})",
            stats.accepted as f64,
        )
        .await;
    assert_eq!(
        sent,
        Some(stats.accepted as f64),
        "sent = accepted by Graph"
    );
    let refused: u64 = stats.rejected.values().sum();
    let failed = prometheus
        .wait_for(
            "sum(herald_send_attempts_total{outcome!=\"sent\"})",
            refused as f64,
        )
        .await;
    assert_eq!(
        failed,
        Some(refused as f64),
        "failed attempts = refused by Graph"
    );
    let completed = prometheus
        .wait_for("sum(herald_jobs_completed_total)", total as f64)
        .await;
    assert_eq!(completed, Some(total as f64), "one outcome per job");

    drop(prometheus);
    for worker in workers {
        assert!(worker.terminate().await.success());
    }
    assert!(serve.terminate().await, "serve exits 0 on SIGTERM");
    rig.cleanup().await;
}
