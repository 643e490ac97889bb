//! After a failed Graph call: count it, tell the page's pacer, halt the page fleet-wide when
//! Graph refuses its token or the page, and plan the job's next step (a retry tier, a dead
//! letter or a `failed` result, `plan.rs`).

use herald_core::{ErrorClass, SendJob};
use herald_graph::SendError;
use tracing::error;

use crate::announce::halt_page;
use crate::context::{Link, Shared};
use crate::pace::Answer;
use crate::plan::{self, Failure, Step};

/// The next step of `job` after its call number `calls` failed with `failed` (sent with
/// `token`).
pub(crate) async fn after_error(
    shared: &Shared,
    link: &Link,
    job: &SendJob,
    calls: u32,
    deferrals: u32,
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
    let step = plan::after_failure(job, calls, deferrals, failure, &shared.settings.backoff);
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
