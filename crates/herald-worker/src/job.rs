//! One delivery from start to ack: parse (poison goes to dead), expiry and control checks, the
//! page's limiter, one Graph call under the concurrency bound, the verdict, then `settle`. Holding a
//! job back never waits here: it goes to a retry tier. Sessions and reconnects are `session.rs`,
//! what the deliveries share `context.rs`.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use herald_amqp::{Delivery, Publisher, Topology};
use herald_core::campaign::Priority;
use herald_core::clock::now_ms;
use herald_core::{ControlAction, ControlMessage, ErrorClass, ResultStatus, SendJob};
use herald_graph::SendError;
use herald_telemetry::Metrics;
use time::OffsetDateTime;
use tracing::{error, info, warn};

use crate::context::{Link, Shared};
use crate::control::RunGate;
use crate::pace::{Admission, Answer};
use crate::parse::parse_job;
use crate::plan::{self, Failure, Step};
use crate::settle::{Settler, deferrals};
use crate::verify::{Checked, Verifier};

/// Processes one delivery to its ack (or leaves it unacked when the session stops first).
pub(crate) async fn handle(shared: Arc<Shared>, link: Arc<Link>, delivery: Delivery) {
    let metrics = &shared.metrics;
    metrics.jobs_received.inc();
    let _in_flight = InFlight::new(metrics);
    let headers = delivery.headers();
    let attempts = headers.attempt().unwrap_or(0);
    let held = deferrals(&headers);
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
                    let marks = (attempts, held, priority);
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
        settler.settle(&delivery, step, key).await;
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
    (attempts, held, priority): (u32, u32, Priority),
    suspect_since: Option<i64>,
) -> Option<Step> {
    let mut unverified = None;
    if let Some(since) = suspect_since {
        match shared
            .verifier
            .check(&shared.metrics, job, attempts, held, since)
            .await
        {
            Checked::Step(step) => return Some(*step),
            Checked::Send(reason) => unverified = reason,
        }
    }
    let marks = (attempts, held, priority);
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
    (attempts, held, priority): (u32, u32, Priority),
    unverified: Option<&'static str>,
) -> Option<Step> {
    if let Some(step) = gate(shared, job, attempts, held) {
        return Some(step);
    }
    match shared
        .pacers
        .admit(&job.page_id, job.rate_per_sec, priority, &link.stop)
        .await
    {
        Admission::Go(_) => {}
        Admission::Hold(wanted, why) => {
            return Some(hold(shared, attempts, held, why, Some(wanted)));
        }
        Admission::Stopped => return None,
    }
    let permit = tokio::select! {
        permit = shared.sends.acquire() => permit.ok()?,
        () = link.stop.cancelled() => return None,
    };
    // Checked again: a halt or pause may have arrived while the job waited for its turn.
    if let Some(step) = gate(shared, job, attempts, held) {
        return Some(step);
    }
    let Some(token) = shared.settings.tokens.get(&job.page_id) else {
        return Some(hold(shared, attempts, held, "no_token", None));
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
            let mut step = after_error(shared, link, job, calls, held, &failed, &token).await;
            if failed.may_have_arrived() {
                // Graph may have taken it: the retry is checked against the ledger first.
                step.verify_since(started_ms);
            }
            step
        }
    })
}

async fn after_error(
    shared: &Shared,
    link: &Link,
    job: &SendJob,
    calls: u32,
    held: u32,
    failed: &SendError,
    token: &herald_core::Secret,
) -> Step {
    let verdict = failed.verdict();
    let code_label = failed
        .code()
        .map_or_else(|| failed.kind().to_owned(), |code| code.to_string());
    let metrics = &shared.metrics;
    metrics.graph_errors.with_label_values(&[&code_label]).inc();
    let answer = Answer {
        class: Some(verdict.class),
        retry_after: verdict.retry_after,
        usage: failed.usage(),
    };
    shared.pacers.observe(&job.page_id, answer);
    let summary = match (failed.code(), failed.subcode()) {
        (Some(code), Some(subcode)) => format!("graph error {code}/{subcode}"),
        (Some(code), None) => format!("graph error {code}"),
        (None, _) => failed.kind().to_owned(),
    };
    if verdict.class == ErrorClass::HaltPage {
        // A token replaced while this call was in flight is not the token that failed.
        if shared.settings.tokens.get(&job.page_id).as_ref() == Some(token) {
            halt_page(shared, link, &job.page_id, &summary).await;
        }
    }
    let failure = Failure {
        class: verdict.class,
        retry_after: verdict.retry_after,
        error: failed.error_info(),
        summary,
    };
    let step = plan::after_failure(job, calls, held, failure, &shared.settings.backoff);
    let outcome = match (&step, verdict.class) {
        (_, ErrorClass::HaltPage) => "halt",
        (Step::Retry { .. }, _) => "retry",
        (Step::Done | Step::Finish(_) | Step::Dead { .. }, _) => "give_up",
    };
    metrics.send_attempts.with_label_values(&[outcome]).inc();
    if verdict.class == ErrorClass::Invalid {
        error!(job_id = %job.job_id, page_id = %job.page_id, error = %failed,
            "Graph rejected the request itself; check the campaign and the app settings.");
    }
    step
}

/// Halts the page here and, the first time, tells the fleet through the control exchange.
async fn halt_page(shared: &Shared, link: &Link, page_id: &str, summary: &str) {
    if !shared.control.halt(page_id, summary) {
        return;
    }
    error!(
        page_id,
        reason = summary,
        "Page halted: Graph refuses this page's token or the page is blocked. Replace the token \
         and send SIGHUP, or run `herald campaign resume --page {page_id}`."
    );
    let message = ControlMessage::for_page(ControlAction::HaltPage, page_id, Some(summary.into()));
    announce(link.publisher(), &shared.settings.topology, &message).await;
}

/// Publishes a control message and waits for its confirm; a failure is logged, the local state
/// stands either way.
pub(crate) async fn announce(publisher: &Publisher, topology: &Topology, message: &ControlMessage) {
    let exchange = topology.control_exchange();
    let published = match publisher
        .publish(
            &exchange,
            "",
            &message.to_vec(),
            herald_amqp::Headers::new(),
        )
        .await
    {
        Ok(confirm) => confirm.await,
        Err(error) => Err(error),
    };
    match published {
        Ok(()) => info!(
            action = message.action.as_str(),
            page_id = message.page_id.as_deref(),
            "Control command announced to the fleet."
        ),
        Err(error) => warn!(error = %error, action = message.action.as_str(),
            "Could not announce a control command; only this worker acts on it."),
    }
}

/// Why the job cannot be sent now, if it cannot: expired, cancelled, paused, page halted.
fn gate(shared: &Shared, job: &SendJob, attempts: u32, held: u32) -> Option<Step> {
    if job.not_after <= OffsetDateTime::now_utc() {
        return Some(finish(job, ResultStatus::Expired, attempts));
    }
    match shared.control.run_gate(&job.run_id) {
        RunGate::Cancelled => return Some(finish(job, ResultStatus::Cancelled, attempts)),
        RunGate::Paused => return Some(hold(shared, attempts, held, "run_paused", None)),
        RunGate::Open => {}
    }
    if shared.control.is_halted(&job.page_id) {
        return Some(hold(shared, attempts, held, "page_halted", None));
    }
    if shared.settings.tokens.get(&job.page_id).is_none() {
        if shared.control.missing_token(&job.page_id) {
            error!(page_id = %job.page_id, variable = %format!("HERALD_PAGE_TOKEN_{}", job.page_id),
                "No access token for this page; its jobs wait in the retry tiers. Set the \
                 variable (or add the page to the tokens file) and send SIGHUP.");
        }
        return Some(hold(shared, attempts, held, "no_token", None));
    }
    None
}

fn hold(
    shared: &Shared,
    attempts: u32,
    held: u32,
    why: &'static str,
    wanted: Option<std::time::Duration>,
) -> Step {
    shared.metrics.jobs_held.with_label_values(&[why]).inc();
    plan::hold(attempts, held, wanted, why)
}

fn finish(job: &SendJob, status: ResultStatus, attempts: u32) -> Step {
    Step::Finish(plan::result(job, status, attempts, None, None))
}
