//! Carrying out a `Step` on the broker: publish the result, the retry copy or the dead-letter copy,
//! wait for the broker's confirm, and only then ack the delivery. When the publish cannot be
//! confirmed the delivery stays unacked (the broker redelivers it) and the decided step is kept in
//! `Unsettled`, so the redelivered job is settled the same way instead of calling Graph again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use herald_amqp::{AmqpError, Delivery, Headers, Publisher, Topology};
use herald_core::DeliveryResult;
use herald_telemetry::Metrics;
use tracing::{debug, warn};

use crate::plan::Step;

/// Steps kept for redelivered jobs at most; beyond that the oldest guess is simply dropped.
const UNSETTLED_MAX: usize = 10_000;

/// Steps decided for jobs whose delivery could not be settled, by (job id, attempt header).
#[derive(Default)]
pub(crate) struct Unsettled {
    steps: Mutex<HashMap<(String, u32), Step>>,
}

impl Unsettled {
    pub(crate) fn take(&self, job_id: &str, attempts: u32) -> Option<Step> {
        let mut steps = self.steps.lock().unwrap_or_else(|e| e.into_inner());
        if steps.is_empty() {
            return None;
        }
        steps.remove(&(job_id.to_owned(), attempts))
    }

    fn keep(&self, job_id: &str, attempts: u32, step: Step) {
        let mut steps = self.steps.lock().unwrap_or_else(|e| e.into_inner());
        if steps.len() >= UNSETTLED_MAX
            && let Some(key) = steps.keys().next().cloned()
        {
            steps.remove(&key);
        }
        steps.insert((job_id.to_owned(), attempts), step);
    }
}

/// Where and how a step is published; shared by every delivery of a session.
pub(crate) struct Settler<'a> {
    pub(crate) publisher: &'a Publisher,
    pub(crate) topology: &'a Topology,
    pub(crate) metrics: &'a Metrics,
    pub(crate) unsettled: &'a Unsettled,
}

impl Settler<'_> {
    /// Publishes the step, awaits the confirm(s), acks. `key` is (job id, attempt header) for
    /// jobs, `None` for poison; `high_priority`: the job is in the priority lane, and a retry
    /// copy stays in it.
    pub(crate) async fn settle(
        &self,
        delivery: &Delivery,
        step: Step,
        key: Option<(&str, u32)>,
        high_priority: bool,
    ) {
        match self.publish(delivery.body(), &step, high_priority).await {
            Ok(()) => {
                self.count(&step);
                if let Err(error) = delivery.ack().await {
                    // Published but not acked: the broker redelivers it, and the same step is
                    // published again (downstream dedupes on job_id) rather than Graph called again.
                    warn!(error = %error, "Could not ack a settled job; it will be redelivered.");
                    if let Some((job_id, attempts)) = key {
                        self.unsettled.keep(job_id, attempts, step);
                    }
                }
            }
            Err(error) => {
                let lost =
                    error.is_connection_lost() || matches!(error, AmqpError::PublisherClosed);
                warn!(error = %error, "Could not publish a job's next step; leaving it unacked.");
                if let Some((job_id, attempts)) = key {
                    self.unsettled.keep(job_id, attempts, step);
                }
                if !lost {
                    // The channel still works (e.g. an unroutable publish): give the slot back
                    // after a pause instead of holding it until the next reconnect.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let _ = delivery.nack(true).await;
                }
            }
        }
    }

    /// `high_priority`: the job is in the priority lane, and a retry copy stays in it.
    async fn publish(
        &self,
        body: &[u8],
        step: &Step,
        high_priority: bool,
    ) -> Result<(), AmqpError> {
        let topology = self.topology;
        match step {
            Step::Done => Ok(()),
            Step::Finish(result) => self.publish_result(result).await,
            Step::Retry {
                tier,
                attempts,
                deferrals,
                why,
                verify_since,
            } => {
                debug!(tier = %tier, attempts, why, "Job sent to a retry tier.");
                let mut headers = Headers::new()
                    .with_attempt(*attempts)
                    .with_deferrals(*deferrals);
                if let Some(since) = verify_since {
                    headers = headers.with_verify_since(*since);
                }
                if high_priority {
                    headers = headers.with_high_priority();
                }
                let confirm = self
                    .publisher
                    .publish(&topology.retry_exchange(), tier.name(), body, headers)
                    .await?;
                confirm.await
            }
            Step::Dead {
                reason,
                code,
                attempts,
                result,
            } => {
                let mut headers = Headers::new().with_attempt(*attempts).with_reason(reason);
                if let Some(code) = code {
                    headers = headers.with_code(*code);
                }
                let dead = self
                    .publisher
                    .publish(&topology.dead_exchange(), "", body, headers)
                    .await?;
                let reported = match result {
                    Some(result) => self.publish_result(result).await,
                    None => Ok(()),
                };
                dead.await.and(reported)
            }
        }
    }

    async fn publish_result(&self, result: &DeliveryResult) -> Result<(), AmqpError> {
        // A struct of strings, numbers and a timestamp always serialises.
        let body = serde_json::to_vec(result).unwrap_or_default();
        let exchange = self.topology.results_exchange();
        self.publisher
            .publish(&exchange, &result.routing_key(), &body, Headers::new())
            .await?
            .await
    }

    fn count(&self, step: &Step) {
        let metrics = self.metrics;
        match step {
            Step::Done => {}
            Step::Finish(result) => metrics
                .jobs_completed
                .with_label_values(&[result.status.as_str()])
                .inc(),
            Step::Retry { tier, .. } => metrics
                .retries_scheduled
                .with_label_values(&[tier.name()])
                .inc(),
            Step::Dead { result, .. } => {
                let reason = if result.is_some() {
                    "exhausted"
                } else {
                    "poison"
                };
                metrics
                    .jobs_dead_lettered
                    .with_label_values(&[reason])
                    .inc();
                if let Some(result) = result {
                    metrics
                        .jobs_completed
                        .with_label_values(&[result.status.as_str()])
                        .inc();
                }
            }
        }
    }
}
