//! The checks before a send and what a job does when it may not go now: expired (`expired`
//! result), its user's 24-hour window closed (`skipped`, `outside_window`), run cancelled
//! (`cancelled`), run paused, page halted or without a token, not due yet or inside its user's
//! quiet hours (held back in a retry tier, without counting an attempt).

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
    let due = due_at(job, now);
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
        let why = if job.not_before.is_some_and(|at| at >= due) {
            "not_due"
        } else {
            "quiet_hours"
        };
        return Some(hold(shared, attempts, deferrals, why, Some(wait)));
    }
    None
}

/// When the job may be sent, if not now: its `not_before`, moved to the end of its user's quiet
/// hours when it falls inside them.
fn due_at(job: &SendJob, now: OffsetDateTime) -> Option<OffsetDateTime> {
    let due = job.not_before.filter(|due| *due > now).unwrap_or(now);
    let due = job
        .quiet_hours
        .as_ref()
        .and_then(|quiet| quiet.end_after(due))
        .unwrap_or(due);
    (due > now).then_some(due)
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

#[cfg(test)]
mod tests {
    use herald_core::local::{LocalTime, QuietHours};
    use time::macros::datetime;

    use super::*;

    fn job(not_before: Option<OffsetDateTime>, quiet: Option<(&str, &str)>) -> SendJob {
        let mut job: SendJob = serde_json::from_str(
            r#"{"v":1,"job_id":"r:u","run_id":"r","campaign_id":"c","page_id":"1","external_id":"u","request":{},"rate_per_sec":250,"max_attempts":5,"not_after":"2030-01-01T00:00:00Z","enqueued_at":"2026-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        job.not_before = not_before;
        job.quiet_hours = quiet.map(|(start, end)| {
            let quiet = QuietHours::new(
                LocalTime::parse(start).unwrap(),
                LocalTime::parse(end).unwrap(),
            );
            quiet.unwrap().for_job("Europe/Paris")
        });
        job
    }

    /// (not_before, quiet hours in Paris, due): quiet hours move a due time to their end,
    /// whether the job is due now or later.
    #[test]
    fn a_job_is_due_after_its_time_and_outside_quiet_hours() {
        let now = datetime!(2026-12-07 21:00 UTC); // 22:00 in Paris
        let night = Some(("21:00", "08:00"));
        for (not_before, quiet, due) in [
            (None, None, None),
            (Some(datetime!(2026-12-07 20:00 UTC)), None, None),
            (
                Some(datetime!(2026-12-07 21:30 UTC)),
                None,
                Some(datetime!(2026-12-07 21:30 UTC)),
            ),
            (None, night, Some(datetime!(2026-12-08 07:00 UTC))),
            (None, Some(("08:00", "21:00")), None),
            (
                Some(datetime!(2026-12-08 12:00 UTC)),
                night,
                Some(datetime!(2026-12-08 12:00 UTC)),
            ),
        ] {
            assert_eq!(
                due_at(&job(not_before, quiet), now),
                due,
                "{not_before:?} {quiet:?}"
            );
        }
    }
}
