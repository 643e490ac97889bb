//! The checks before a send and what a job does when it may not go now: expired (`expired`
//! result), its user's 24-hour window closed (`skipped`, `outside_window`), run cancelled
//! (`cancelled`), run paused, page halted or without a token, or not due yet (held back in a
//! retry tier, without counting an attempt).

use herald_core::{ResultStatus, SendJob, SkipReason};
use time::OffsetDateTime;
use tracing::error;

use crate::context::Shared;
use crate::control::RunGate;
use crate::plan::{self, Step};

/// Why the job cannot be sent now, if it cannot: expired, its user's window closed (or closing
/// before the job is due), cancelled, paused, page halted or without a token, not due yet.
pub(crate) fn gate(shared: &Shared, job: &SendJob, attempts: u32, deferrals: u32) -> Option<Step> {
    let now = OffsetDateTime::now_utc();
    if job.not_after <= now {
        return Some(finish(job, ResultStatus::Expired, attempts));
    }
    let due = job.not_before.filter(|due| *due > now);
    if let Some(closes) = job.window_closes_at
        && closes <= due.unwrap_or(now)
    {
        let error = SkipReason::OutsideWindow.to_error_info();
        let result = plan::result(job, ResultStatus::Skipped, attempts, None, Some(error));
        return Some(Step::Finish(result));
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
    if let Some(due) = due {
        // The largest retry tier within the wait: a job due in 9 hours makes about a dozen
        // trips through the broker, and holds no sending slot meanwhile.
        let wait = std::time::Duration::try_from(due - now).unwrap_or_default();
        return Some(hold(shared, attempts, deferrals, "not_due", Some(wait)));
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
