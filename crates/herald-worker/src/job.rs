//! One delivery from start to ack: parse (poison goes to dead), the checks before a send
//! (`gate.rs`), the page's limiter, one Graph call under the concurrency bound, the verdict
//! (`failure.rs` when it failed), then `settle.rs`. Holding a job back never waits here: it goes
//! to a retry tier. Sessions and reconnects are `session.rs`, what the deliveries share
//! `context.rs`.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use herald_amqp::Delivery;
use herald_core::campaign::Priority;
use herald_core::clock::now_ms;
use herald_core::{ResultStatus, SendJob};
use herald_telemetry::Metrics;
use tracing::warn;

use crate::context::{Link, Shared};
use crate::failure::after_error;
use crate::gate::{gate, hold};
use crate::pace::{Admission, Answer};
use crate::parse::parse_job;
use crate::plan::{self, Step};
use crate::settle::Settler;
use crate::verify::{Checked, Verifier};

/// Processes one delivery to its ack (or leaves it unacked when the session stops first).
pub(crate) async fn handle(shared: Arc<Shared>, link: Arc<Link>, delivery: Delivery) {
    let metrics = &shared.metrics;
    metrics.jobs_received.inc();
    let _in_flight = InFlight::new(metrics);
    let headers = delivery.headers();
    let attempts = headers.attempt().unwrap_or(0);
    let deferrals = headers.deferrals().unwrap_or(0);
    let priority = if headers.is_high_priority() {
        Priority::High
    } else {
        Priority::Normal
    };
    // A redelivered job may have been sent by a worker that died before acking it.
    let suspect_since = headers
        .verify_since()
        .or_else(|| delivery.redelivered().then(now_ms));
    let (step, job_id) = match parse_job(delivery.body()) {
        Err(reason) => {
            warn!(reason = %reason, body_bytes = delivery.body().len(),
                "Poison message; dead-lettering it byte for byte.");
            let step = Step::Dead {
                reason,
                code: None,
                attempts,
                result: None,
            };
            (Some(step), None)
        }
        Ok(job) => {
            let step = match shared.unsettled.take(&job.job_id, attempts) {
                Some(step) => Some(step),
                None => {
                    let marks = (attempts, deferrals, priority);
                    decide(&shared, &link, &job, marks, suspect_since).await
                }
            };
            (step, Some(job.job_id))
        }
    };
    if let Some(step) = step {
        let settler = Settler {
            publisher: link.publisher(),
            topology: &shared.settings.topology,
            metrics,
            unsettled: &shared.unsettled,
        };
        let key = job_id.as_deref().map(|id| (id, attempts));
        let high = priority == Priority::High;
        settler.settle(&delivery, step, key, high).await;
    }
}

/// Counts a delivery in `herald_jobs_in_flight` for as long as it lives, however it ends.
struct InFlight<'a>(&'a Metrics);

impl<'a> InFlight<'a> {
    fn new(metrics: &'a Metrics) -> Self {
        metrics.jobs_in_flight.inc();
        Self(metrics)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.jobs_in_flight.dec();
    }
}

/// The job's next step, or `None` when the session stopped before it was sent. `suspect_since`
/// is set when the job may have been sent already (see `verify.rs`).
async fn decide(
    shared: &Shared,
    link: &Link,
    job: &SendJob,
    (attempts, deferrals, priority): (u32, u32, Priority),
    suspect_since: Option<i64>,
) -> Option<Step> {
    let mut unverified = None;
    if let Some(since) = suspect_since {
        match shared
            .verifier
            .check(&shared.metrics, job, attempts, deferrals, since)
            .await
        {
            Checked::Step(step) => return Some(*step),
            Checked::Send(reason) => unverified = reason,
        }
    }
    let marks = (attempts, deferrals, priority);
    let mut step = attempt(shared, link, job, marks, unverified).await?;
    // Without the ledger's word the job is still suspect: a copy that goes back to a retry tier
    // keeps its mark, so it is checked when it comes back.
    if let (Some(since), Some(_)) = (suspect_since, unverified) {
        step.verify_since(since);
    }
    Some(step)
}

/// Gates, paces and sends the job once. `unverified` is set when it may have been sent
/// already and the ledger could not say.
async fn attempt(
    shared: &Shared,
    link: &Link,
    job: &SendJob,
    (attempts, deferrals, priority): (u32, u32, Priority),
    unverified: Option<&'static str>,
) -> Option<Step> {
    if let Some(step) = gate(shared, job, attempts, deferrals) {
        return Some(step);
    }
    match shared
        .pacers
        .admit(&job.page_id, job.rate_per_sec, priority, &link.stop)
        .await
    {
        Admission::Go(_) => {}
        Admission::Hold(wanted, why) => {
            return Some(hold(shared, attempts, deferrals, why, Some(wanted)));
        }
        Admission::Stopped => return None,
    }
    let permit = tokio::select! {
        permit = shared.sends.acquire() => permit.ok()?,
        () = link.stop.cancelled() => return None,
    };
    // Checked again: a halt or pause may have arrived while the job waited for its turn.
    if let Some(step) = gate(shared, job, attempts, deferrals) {
        return Some(step);
    }
    let Some(token) = shared.settings.tokens.get(&job.page_id) else {
        return Some(hold(shared, attempts, deferrals, "no_token", None));
    };
    let calls = attempts.saturating_add(1);
    let body = Bytes::copy_from_slice(job.request.get().as_bytes());
    if let Some(reason) = unverified {
        Verifier::count_unverified(&shared.metrics, reason);
    }
    let (started, started_ms) = (Instant::now(), now_ms());
    let outcome = shared.graph.send(&job.page_id, &token, body, calls).await;
    drop(permit);
    shared
        .metrics
        .send_duration
        .observe(started.elapsed().as_secs_f64());
    Some(match outcome {
        Ok(sent) => {
            let answer = Answer {
                class: None,
                retry_after: None,
                usage: sent.usage.as_ref(),
            };
            shared.pacers.observe(&job.page_id, answer);
            shared
                .metrics
                .send_attempts
                .with_label_values(&["sent"])
                .inc();
            let result = plan::result(job, ResultStatus::Sent, calls, Some(sent.message_id), None);
            Step::Finish(result)
        }
        Err(failed) => {
            let mut step = after_error(shared, link, job, calls, deferrals, &failed, &token).await;
            if failed.may_have_arrived() {
                // Graph may have taken it: the retry is checked against the ledger first.
                step.verify_since(started_ms);
            }
            step
        }
    })
}
