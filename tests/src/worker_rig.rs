//! The worker tests' rig: a unique topology on the real broker, an in-process simulator, workers
//! run in-process (`herald_worker::run`) or as real `herald worker` processes, jobs built as
//! SendJob v1 bytes, and the results read back from `<p>.results.store`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use herald_amqp::{AmqpSettings, Connection, Consumer, Headers, Publisher, Topology};
use herald_core::{DeliveryResult, ResultStatus, Secret};
use herald_graph::GraphSettings;
use herald_sim::{SimConfig, SimHandle};
use herald_telemetry::{Health, Metrics};
use herald_worker::{PageTokens, WorkerError, WorkerSettings};
use time::OffsetDateTime;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{broker, herald, unique_name};

/// The page most tests send for.
pub const PAGE: &str = "1000000001";
/// A second page.
pub const OTHER_PAGE: &str = "1000000002";

pub struct Rig {
    pub prefix: String,
    pub topology: Topology,
    pub amqp: AmqpSettings,
    pub connection: Connection,
    pub publisher: Publisher,
    pub sim: SimHandle,
    results: Option<Consumer>,
    /// Every result read so far, in arrival order.
    pub seen: Vec<DeliveryResult>,
}

/// A worker running in this process.
pub struct InProcess {
    pub metrics: Metrics,
    pub health: Health,
    pub tokens: PageTokens,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), WorkerError>>,
}

/// A `herald worker` process.
pub struct Process {
    pub child: Child,
    pub metrics_url: String,
}

impl Rig {
    /// `None` when there is no broker (and `CI` is unset).
    pub async fn new(name: &str, sim: SimConfig) -> Option<Self> {
        drop(broker().await?);
        let prefix = unique_name(name);
        let topology = Topology::new(&prefix).expect("topology");
        let amqp = AmqpSettings {
            url: crate::amqp_addr().into(),
            ..AmqpSettings::default()
        };
        // The rig's own connection (idle for most of a test); workers get `amqp`.
        let connection = herald_amqp::connect(&crate::test_amqp())
            .await
            .expect("connect");
        topology.declare(&connection).await.expect("declare");
        let publisher = Publisher::open(&connection, 1024).await.expect("publisher");
        let sim = herald_sim::spawn(sim, "127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("simulator");
        Some(Self {
            prefix,
            topology,
            amqp,
            connection,
            publisher,
            sim,
            results: None,
            seen: Vec::new(),
        })
    }

    /// Worker settings for this rig: tokens for both pages, small limits, the simulator.
    pub fn settings(&self) -> WorkerSettings {
        settings(&self.amqp, &self.topology, &self.sim)
    }

    /// Starts a worker in this process.
    pub fn spawn(&self, settings: WorkerSettings) -> InProcess {
        spawn(settings)
    }

    /// Starts a `herald worker` process on this rig's topology and simulator.
    pub fn process(&self, env: &[(&str, &str)], args: &[&str]) -> Process {
        let graph_url = self.sim.url();
        let mut settings = vec![
            ("HERALD_TOPOLOGY_PREFIX", self.prefix.as_str()),
            ("HERALD_GRAPH_URL", graph_url.as_str()),
            ("HERALD_LOG", "info"),
        ];
        settings.extend_from_slice(env);
        let mut child = herald(&settings)
            .args(["worker", "--metrics-addr", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn herald worker");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("metrics line");
        let metrics_url = line
            .trim()
            .strip_prefix("metrics: ")
            .unwrap_or_else(|| panic!("first line names the metrics address: {line:?}"))
            .to_owned();
        Process { child, metrics_url }
    }

    /// Publishes jobs to `<p>.jobs` and waits for every confirm.
    pub async fn publish(&self, bodies: &[Vec<u8>]) {
        self.publish_to(bodies, herald_amqp::SEND_ROUTING_KEY, Headers::new())
            .await;
    }

    /// Publishes jobs to the priority lane, as the producer does for a `priority = "high"`
    /// campaign, and waits for every confirm.
    pub async fn publish_priority(&self, bodies: &[Vec<u8>]) {
        let headers = Headers::new().with_high_priority();
        self.publish_to(bodies, herald_amqp::PRIORITY_ROUTING_KEY, headers)
            .await;
    }

    async fn publish_to(&self, bodies: &[Vec<u8>], routing_key: &str, headers: Headers) {
        let mut confirms = Vec::with_capacity(bodies.len());
        for body in bodies {
            let confirm = self
                .publisher
                .publish(
                    &self.topology.jobs_exchange(),
                    routing_key,
                    body,
                    headers.clone(),
                )
                .await
                .expect("publish");
            confirms.push(confirm);
        }
        for confirm in confirms {
            confirm.await.expect("confirmed");
        }
    }

    /// Reads results until `count` arrived (or `timeout`); returns how many have arrived.
    pub async fn wait_results(&mut self, count: usize, timeout: Duration) -> usize {
        if self.results.is_none() {
            let queue = self.topology.results_store_queue();
            let consumer = Consumer::start(&self.connection, &queue, 1000)
                .await
                .expect("results consumer");
            self.results = Some(consumer);
        }
        let consumer = self.results.as_mut().expect("started");
        let deadline = tokio::time::Instant::now() + timeout;
        while self.seen.len() < count {
            match tokio::time::timeout_at(deadline, consumer.next()).await {
                Ok(Some(Ok(delivery))) => {
                    let result: DeliveryResult =
                        serde_json::from_slice(delivery.body()).expect("DeliveryResult v1");
                    assert_eq!(
                        delivery.routing_key(),
                        result.routing_key(),
                        "routing key is <status>.<campaign_id>"
                    );
                    delivery.ack().await.expect("ack");
                    self.seen.push(result);
                }
                Ok(other) => panic!("results consumer ended: {other:?}"),
                Err(_) => break,
            }
        }
        self.seen.len()
    }

    /// Results so far by job id; panics on a job with two results.
    pub fn by_job(&self) -> BTreeMap<String, DeliveryResult> {
        let mut by_job = BTreeMap::new();
        for result in &self.seen {
            let previous = by_job.insert(result.job_id.clone(), result.clone());
            assert!(
                previous.is_none(),
                "two results for {}: {previous:?} and {result:?}",
                result.job_id
            );
        }
        by_job
    }

    pub fn count(&self, status: ResultStatus) -> usize {
        self.seen.iter().filter(|r| r.status == status).count()
    }

    /// Deletes the topology and stops the simulator.
    pub async fn cleanup(self) {
        if let Some(consumer) = self.results {
            let _ = consumer.close().await;
        }
        self.topology
            .delete(&self.connection)
            .await
            .expect("delete topology");
        let _ = self.connection.close().await;
        self.sim.shutdown().await;
    }
}

/// Worker settings on `topology` sending to `sim`: tokens for both pages, small limits.
pub fn settings(amqp: &AmqpSettings, topology: &Topology, sim: &SimHandle) -> WorkerSettings {
    let tokens: BTreeMap<String, Secret> = [PAGE, OTHER_PAGE]
        .iter()
        .map(|page| ((*page).to_owned(), Secret::new("test-page-token")))
        .collect();
    let mut amqp = amqp.clone();
    amqp.prefetch = 64;
    let graph = GraphSettings {
        graph_url: sim.url(),
        request_timeout: Duration::from_secs(5),
        ..GraphSettings::default()
    };
    let mut settings = WorkerSettings::new(amqp, topology.clone(), graph, PageTokens::new(tokens));
    settings.concurrency = 16;
    settings.shutdown_grace = Duration::from_secs(10);
    settings
}

/// Starts a worker in this process.
pub fn spawn(settings: WorkerSettings) -> InProcess {
    let (metrics, health, shutdown) = (Metrics::new(), Health::default(), CancellationToken::new());
    let tokens = settings.tokens.clone();
    let task = tokio::spawn(herald_worker::run(
        settings,
        metrics.clone(),
        health.clone(),
        shutdown.clone(),
    ));
    InProcess {
        metrics,
        health,
        tokens,
        shutdown,
        task,
    }
}

impl InProcess {
    /// Asks the worker to drain and waits for it; it must stop cleanly.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task
            .await
            .expect("worker task")
            .expect("worker stopped cleanly");
    }
}

impl Process {
    pub async fn metrics(&self) -> String {
        scrape(&self.metrics_url).await
    }

    /// SIGTERM, then the exit status. The wait yields to the runtime: the simulator the worker
    /// is still calling while it drains runs on this test's runtime, and a blocking wait would
    /// stall those calls until the worker's grace period ran out.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(status.success());
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // A test that panicked must not leave its worker running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GETs a metrics URL and returns the text (empty on failure).
pub async fn scrape(url: &str) -> String {
    match reqwest::get(url).await {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// The value of one sample (`name{labels} value`) in Prometheus text, if present.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

/// The `max_attempts` of the jobs `job` builds.
pub const MAX_ATTEMPTS: u32 = 5;

/// One SendJob v1 as published by the producer: recipient `psid`, expiring in an hour.
pub fn job(run: &str, page: &str, external_id: &str, psid: &str) -> Vec<u8> {
    job_with(
        run,
        page,
        external_id,
        psid,
        MAX_ATTEMPTS,
        250,
        hours_from_now(1),
    )
}

pub fn hours_from_now(hours: i64) -> OffsetDateTime {
    OffsetDateTime::now_utc() + time::Duration::hours(hours)
}

pub fn job_with(
    run: &str,
    page: &str,
    external_id: &str,
    psid: &str,
    max_attempts: u32,
    rate_per_sec: u32,
    not_after: OffsetDateTime,
) -> Vec<u8> {
    let job_id = format!("{run}:{external_id}");
    let rfc = |t: OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .expect("format")
    };
    let request = serde_json::json!({
        "recipient": {"id": psid},
        "messaging_type": "UPDATE",
        "message": {"text": "Hi there", "metadata": job_id},
    });
    serde_json::to_vec(&serde_json::json!({
        "v": 1,
        "job_id": job_id,
        "run_id": run,
        "campaign_id": "worker-test",
        "page_id": page,
        "external_id": external_id,
        "request": request,
        "rate_per_sec": rate_per_sec,
        "max_attempts": max_attempts,
        "not_after": rfc(not_after),
        "enqueued_at": rfc(OffsetDateTime::now_utc()),
    }))
    .expect("job JSON")
}
