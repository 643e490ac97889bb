//! Workers as tasks of this process (`herald run`, `herald demo`): each is `herald_worker::run`
//! with its own metrics, exactly what `herald worker` runs, one consumer on `<p>.send` each, so
//! they share every page's limit as a fleet of processes would. `trouble` tells the caller when
//! results can no longer all arrive (a page halted, a worker ended).

use std::time::Duration;

use herald_amqp::{AmqpSettings, Topology};
use herald_telemetry::{Health, Metrics};
use herald_worker::{WorkerError, WorkerSettings};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// How often in-process workers re-read the fleet size: cheap on the embedded broker, and short
/// so that workers started together agree on their share of a page's limit at once.
pub(crate) const FLEET_REFRESH: Duration = Duration::from_millis(250);
/// How long the workers get to attach to the send queue.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// Worker settings from the configuration, as `herald worker` composes them, re-reading the
/// fleet size often.
pub(crate) fn worker_settings(
    config: &Config,
    amqp: AmqpSettings,
    topology: Topology,
) -> WorkerSettings {
    let mut settings = crate::commands::worker::worker_settings(config, amqp, topology);
    settings.fleet_refresh = FLEET_REFRESH;
    settings
}

/// Workers running as tasks.
pub(crate) struct Workers {
    count: usize,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<Result<(), WorkerError>>>,
    metrics: Vec<Metrics>,
}

impl Workers {
    pub(crate) fn start(settings: WorkerSettings, count: usize) -> Self {
        let shutdown = CancellationToken::new();
        let mut tasks = Vec::with_capacity(count);
        let mut metrics = Vec::with_capacity(count);
        for _ in 0..count {
            let own = Metrics::new();
            tasks.push(tokio::spawn(herald_worker::run(
                settings.clone(),
                own.clone(),
                Health::default(),
                shutdown.clone(),
            )));
            metrics.push(own);
        }
        Self {
            count,
            shutdown,
            tasks,
            metrics,
        }
    }

    /// Waits until every worker consumes the send queue and has re-read the fleet size since,
    /// so none starts at a share of the limit that is too large.
    pub(crate) async fn ready(
        &self,
        amqp: &AmqpSettings,
        topology: &Topology,
    ) -> Result<(), String> {
        let connection = herald_amqp::connect(amqp)
            .await
            .map_err(|error| error.to_string())?;
        let deadline = tokio::time::Instant::now() + READY_WITHIN;
        let queue = topology.send_queue();
        let attached = loop {
            if let Some(trouble) = self.ended() {
                break Err(trouble);
            }
            // The queue appears when the first worker declares the topology.
            let consumers = connection.consumer_count(&queue).await.unwrap_or(0);
            if consumers as usize >= self.count {
                break Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                break Err(format!(
                    "{consumers} of {} attached within 30 s",
                    self.count
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let _ = connection.close().await;
        attached?;
        tokio::time::sleep(FLEET_REFRESH * 2).await;
        Ok(())
    }

    /// Why results may not all arrive any more, if so: the campaign's page is halted, or a
    /// worker ended.
    pub(crate) fn trouble(&self, page_id: &str) -> Option<String> {
        if let Some(ended) = self.ended() {
            return Some(ended);
        }
        let halted = self
            .metrics
            .iter()
            .any(|m| m.page_halted.with_label_values(&[page_id]).get() == 1);
        halted.then(|| {
            format!(
                "page {page_id} is halted (Graph refused its token or blocked the page; see the \
                 log above)"
            )
        })
    }

    fn ended(&self) -> Option<String> {
        self.tasks
            .iter()
            .any(JoinHandle::is_finished)
            .then(|| "a worker stopped (see the log above)".to_owned())
    }

    /// Every worker's metrics in Prometheus text, one after the other.
    pub(crate) fn metrics_text(&self) -> Vec<String> {
        self.metrics.iter().map(Metrics::encode).collect()
    }

    /// Drains every worker (in-flight sends finish and are acked) and waits for them.
    pub(crate) async fn stop(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => eprintln!("herald: a worker failed: {error}"),
                Err(error) => eprintln!("herald: a worker task failed: {error}"),
            }
        }
    }
}
