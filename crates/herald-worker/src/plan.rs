//! What happens to a delivery next, decided without network or broker I/O (it reads the clock
//! for a result's `finished_at` and draws the backoff's jitter): a terminal result, a trip
//! through a retry tier, or the dead-letter queue; the backoff between attempts (exponential
//! with full jitter, capped, via backon); and how long a held-back job waits. Carrying a `Step`
//! out on the broker is `settle.rs`.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use herald_amqp::RetryTier;
use herald_core::{DeliveryResult, ErrorClass, ErrorInfo, RESULT_VERSION, ResultStatus, SendJob};
use time::OffsetDateTime;

use crate::settings::Backoff;

/// The next step for one delivery. Every step is settled by publishing (confirmed), then acking.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    /// The job's result is already recorded (the send ledger says so): ack, publish nothing.
    Done,
    /// Publish this terminal result.
    Finish(DeliveryResult),
    /// Republish the job's bytes to a retry tier.
    Retry {
        /// The tier to wait in.
        tier: RetryTier,
        /// Graph calls made so far (the `x-herald-attempt` header of the copy).
        attempts: u32,
        /// Times the job was held back without a call (the `x-herald-deferrals` header).
        deferrals: u32,
        /// Why, a bounded label for logs and metrics.
        why: &'static str,
        /// Since when the job may have been sent (the `x-herald-verify-since` header): the copy
        /// is checked against the send ledger before it is sent.
        verify_since: Option<i64>,
    },
    /// Publish the job's bytes to the dead-letter queue with the reason, and the `dead` result
    /// when the bytes were a job.
    Dead {
        /// The `x-herald-reason` header.
        reason: String,
        /// The Graph code of the last failure, when there was one (`x-herald-code`).
        code: Option<u32>,
        /// Graph calls made.
        attempts: u32,
        /// The `dead` result; `None` for poison, which has no job to report on.
        result: Option<DeliveryResult>,
    },
}

impl Step {
    /// Marks a retry copy as possibly sent since `epoch_ms`; other steps are left as they are.
    pub(crate) fn verify_since(&mut self, epoch_ms: i64) {
        if let Self::Retry { verify_since, .. } = self {
            *verify_since = Some(epoch_ms);
        }
    }
}

/// A failed Graph call, reduced to what the plan needs.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub(crate) class: ErrorClass,
    pub(crate) retry_after: Option<Duration>,
    pub(crate) error: ErrorInfo,
    /// Bounded description for the dead-letter reason: kind and code, never Graph's text.
    pub(crate) summary: String,
}

/// The terminal result of `job`.
pub(crate) fn result(
    job: &SendJob,
    status: ResultStatus,
    attempts: u32,
    message_id: Option<String>,
    error: Option<ErrorInfo>,
) -> DeliveryResult {
    DeliveryResult {
        v: RESULT_VERSION,
        job_id: job.job_id.clone(),
        run_id: job.run_id.clone(),
        campaign_id: job.campaign_id.clone(),
        external_id: job.external_id.clone(),
        page_id: job.page_id.clone(),
        status,
        message_id,
        error,
        attempts,
        finished_at: OffsetDateTime::now_utc(),
    }
}

/// After a failed call. `attempts` counts the call just made. Transient failures wait at least
/// the backoff and at least what Meta asked for; a halted page's job waits without ever being
/// dead-lettered for it (the page, not the job, is at fault).
pub(crate) fn after_failure(
    job: &SendJob,
    attempts: u32,
    deferrals: u32,
    failure: Failure,
    backoff: &Backoff,
) -> Step {
    let wait = |floor: Duration| failure.retry_after.unwrap_or_default().max(floor);
    match failure.class {
        ErrorClass::Retry | ErrorClass::SlowDown if attempts >= job.max_attempts => Step::Dead {
            reason: format!(
                "gave up after {attempts} attempt(s) (max_attempts {}); last error: {}",
                job.max_attempts, failure.summary
            ),
            code: failure.error.code,
            attempts,
            result: Some(result(
                job,
                ResultStatus::Dead,
                attempts,
                None,
                Some(failure.error),
            )),
        },
        ErrorClass::Retry | ErrorClass::SlowDown => {
            let wanted = wait(jittered(backoff, attempts));
            // After a slow-down the whole page pauses for as long (pace.rs): the job is back by
            // the time the pause ends and is held for whatever is left of it. A transient
            // error's Retry-After is a floor.
            let tier = if failure.class == ErrorClass::SlowDown {
                RetryTier::at_most(wanted)
            } else {
                RetryTier::for_delay(wanted)
            };
            Step::Retry {
                tier,
                attempts,
                deferrals,
                why: failure.class.as_str(),
                verify_since: None,
            }
        }
        ErrorClass::HaltPage => Step::Retry {
            tier: RetryTier::for_delay(wait(Duration::ZERO)),
            attempts,
            deferrals,
            why: "halt_page",
            verify_since: None,
        },
        ErrorClass::DropUser | ErrorClass::Invalid => Step::Finish(result(
            job,
            ResultStatus::Failed,
            attempts,
            None,
            Some(failure.error),
        )),
    }
}

/// A job held back without a call (run paused, page halted or throttled, limiter too slow).
/// `wanted` is how long the hold should last when known: the job takes the longest tier within
/// it, so it is back when the page can send again. Otherwise the wait grows with the number of
/// times this job was held: a long pause costs a trip every ten minutes, not every five
/// seconds, and a resume reaches young jobs within seconds.
pub(crate) fn hold(
    attempts: u32,
    deferrals: u32,
    wanted: Option<Duration>,
    why: &'static str,
) -> Step {
    let escalating = Duration::from_secs(match deferrals {
        0..6 => 5,
        6..10 => 30,
        10..15 => 120,
        _ => 600,
    });
    Step::Retry {
        tier: wanted.map_or(RetryTier::for_delay(escalating), RetryTier::at_most),
        attempts,
        deferrals: deferrals.saturating_add(1),
        why,
        verify_since: None,
    }
}

/// The backoff cap after `attempts` calls (1-based): `min_delay` doubled per call, capped.
pub(crate) fn backoff_cap(backoff: &Backoff, attempts: u32) -> Duration {
    ExponentialBuilder::default()
        .with_min_delay(backoff.min_delay)
        .with_max_delay(backoff.max_delay)
        .with_factor(2.0)
        .without_max_times()
        .build()
        .nth(attempts.saturating_sub(1).min(64) as usize)
        .unwrap_or(backoff.max_delay)
}

/// Full jitter: uniform between zero and the cap, so a burst of failures spreads out.
fn jittered(backoff: &Backoff, attempts: u32) -> Duration {
    backoff_cap(backoff, attempts).mul_f64(rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(max_attempts: u32) -> SendJob {
        let mut job: SendJob = serde_json::from_str(
            r#"{"v":1,"job_id":"r:u1","run_id":"r","campaign_id":"c","page_id":"1","external_id":"u1","request":{},"rate_per_sec":250,"max_attempts":5,"not_after":"2030-01-01T00:00:00Z","enqueued_at":"2026-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        job.max_attempts = max_attempts;
        job
    }

    fn failure(class: ErrorClass, retry_after_secs: Option<u64>) -> Failure {
        Failure {
            class,
            retry_after: retry_after_secs.map(Duration::from_secs),
            error: ErrorInfo {
                code: Some(2),
                subcode: None,
                class: Some(class),
                message: "x".into(),
                fbtrace_id: None,
            },
            summary: "graph code 2".into(),
        }
    }

    /// (kind, tier, attempts, status) of a step.
    fn shape(step: &Step) -> (&'static str, Option<RetryTier>, u32, Option<ResultStatus>) {
        match step {
            Step::Done => ("done", None, 0, None),
            Step::Finish(r) => ("finish", None, r.attempts, Some(r.status)),
            Step::Retry { tier, attempts, .. } => ("retry", Some(*tier), *attempts, None),
            Step::Dead {
                attempts, result, ..
            } => ("dead", None, *attempts, result.as_ref().map(|r| r.status)),
        }
    }

    #[test]
    fn each_class_leads_to_its_step() {
        let backoff = Backoff::default();
        let check = |max: u32, attempts: u32, f: Failure, expected| {
            let step = after_failure(&job(max), attempts, 0, f.clone(), &backoff);
            assert_eq!(shape(&step), expected, "{:?} at {attempts}/{max}", f.class);
        };
        use ErrorClass::*;
        use RetryTier::*;
        check(
            5,
            1,
            failure(Retry, None),
            ("retry", Some(FiveSeconds), 1, None),
        );
        check(
            5,
            5,
            failure(Retry, None),
            ("dead", None, 5, Some(ResultStatus::Dead)),
        );
        check(
            5,
            7,
            failure(SlowDown, None),
            ("dead", None, 7, Some(ResultStatus::Dead)),
        );
        // Meta's regain-access delay wins over a shorter backoff; the page pauses as long, so
        // the job takes the longest tier within it.
        check(
            5,
            1,
            failure(SlowDown, Some(60)),
            ("retry", Some(ThirtySeconds), 1, None),
        );
        // A transient error's Retry-After is a floor.
        check(
            5,
            1,
            failure(Retry, Some(60)),
            ("retry", Some(TwoMinutes), 1, None),
        );
        check(
            5,
            1,
            failure(DropUser, None),
            ("finish", None, 1, Some(ResultStatus::Failed)),
        );
        check(
            5,
            1,
            failure(Invalid, None),
            ("finish", None, 1, Some(ResultStatus::Failed)),
        );
        // A halted page never dead-letters the job, even past max_attempts.
        check(
            2,
            9,
            failure(HaltPage, None),
            ("retry", Some(FiveSeconds), 9, None),
        );
    }

    #[test]
    fn backoff_doubles_from_the_minimum_up_to_the_cap() {
        let backoff = Backoff {
            min_delay: Duration::from_secs(5),
            max_delay: Duration::from_secs(60),
        };
        let caps: Vec<u64> = (1..=6)
            .map(|n| backoff_cap(&backoff, n).as_secs())
            .collect();
        assert_eq!(caps, [5, 10, 20, 40, 60, 60]);
        assert_eq!(backoff_cap(&backoff, 0).as_secs(), 5);
        assert_eq!(backoff_cap(&backoff, u32::MAX).as_secs(), 60);
    }

    #[test]
    fn holds_grow_with_the_number_of_holds_unless_the_wait_is_known() {
        let check = |deferrals: u32, wanted: Option<u64>, expected: RetryTier| {
            let step = hold(3, deferrals, wanted.map(Duration::from_secs), "paused");
            let Step::Retry {
                tier,
                attempts,
                deferrals: after,
                ..
            } = step
            else {
                panic!("hold is a retry");
            };
            assert_eq!(
                (tier, attempts, after),
                (expected, 3, deferrals + 1),
                "{deferrals}"
            );
        };
        check(0, None, RetryTier::FiveSeconds);
        check(5, None, RetryTier::FiveSeconds);
        check(6, None, RetryTier::ThirtySeconds);
        check(12, None, RetryTier::TwoMinutes);
        check(40, None, RetryTier::TenMinutes);
        check(40, Some(3), RetryTier::FiveSeconds);
        check(0, Some(100), RetryTier::ThirtySeconds);
        check(0, Some(120), RetryTier::TwoMinutes);
    }
}
