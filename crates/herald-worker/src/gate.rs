//! The checks before a send and what a job does when it may not go now: expired (`expired`
//! result), run cancelled (`cancelled`), run paused, page halted or without a token (held back
//! in a retry tier, without counting an attempt).

use herald_core::{ResultStatus, SendJob};
use time::OffsetDateTime;
use tracing::error;

use crate::context::Shared;
use crate::control::RunGate;
use crate::plan::{self, Step};

/// Why the job cannot be sent now, if it cannot: expired, cancelled, paused, page halted.
pub(crate) fn gate(shared: &Shared, job: &SendJob, attempts: u32, deferrals: u32) -> Option<Step> {
    if job.not_after <= OffsetDateTime::now_utc() {
        return Some(finish(job, ResultStatus::Expired, attempts));
    }
    match shared.control.run_gate(&job.run_id) {
        RunGate::Cancelled => return Some(finish(job, ResultStatus::Cancelled, attempts)),
        RunGate::Paused => return Some(hold(shared, attempts, deferrals, "run_paused", None)),
        RunGate::Open => {}
    }
    if shared.control.is_halted(&job.page_id) {
        return Some(hold(shared, attempts, deferrals, "page_halted", None));
    }
    if shared.settings.tokens.get(&job.page_id).is_none() {
        if shared.control.missing_token(&job.page_id) {
            error!(page_id = %job.page_id, variable = %format!("HERALD_PAGE_TOKEN_{}", job.page_id),
                "No access token for this page; its jobs wait in the retry tiers. Set the \
                 variable (or add the page to the tokens file) and send SIGHUP.");
        }
        return Some(hold(shared, attempts, deferrals, "no_token", None));
    }
    None
}

pub(crate) fn hold(
    shared: &Shared,
    attempts: u32,
    deferrals: u32,
    why: &'static str,
    wanted: Option<std::time::Duration>,
) -> Step {
    shared.metrics.jobs_held.with_label_values(&[why]).inc();
    plan::hold(attempts, deferrals, wanted, why)
}

pub(crate) fn finish(job: &SendJob, status: ResultStatus, attempts: u32) -> Step {
    Step::Finish(plan::result(job, status, attempts, None, None))
}
