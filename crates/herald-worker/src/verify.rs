//! Jobs that may have been sent already: a delivery the broker redelivered (its worker died or
//! lost its connection after taking it), a retry after a Graph call whose answer never came, or
//! a job republished by a resumed producer run (both carry `x-herald-verify-since`). Before any
//! Graph call such a job is checked against the send ledger:
//!
//! - a recorded result: the job is finished; ack it, publish nothing;
//! - Meta's echo of the message: it was sent; publish `sent` with the echoed message id;
//! - neither, and the echo horizon has not passed since the possible send: back to a retry tier
//!   (no sending slot held) to be checked again;
//! - neither, after the horizon: it was not sent; claim its send (so that of two copies of one
//!   job only one goes out) and send it, or, when another copy holds the claim, check again
//!   later;
//! - neither, but `serve` says records are still on their way to the store (a queue backlog, or
//!   webhook deliveries Meta will retry): back to a retry tier and checked again, for up to
//!   the ledger's patience (15 min by default); past it the job is sent and counted as a
//!   possible duplicate.
//!
//! Without a ledger the job is sent as before; when the ledger does not answer, the job waits
//! for it for up to the ledger's patience, then is sent. Either call is counted in
//! `herald_possible_duplicate_sends_total` (and logged once per cause).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use herald_core::clock::now_ms;
use herald_core::{ResultStatus, SendJob};
use herald_telemetry::Metrics;
use tracing::{info, warn};

use crate::ledger::{Entry, Ledger, LedgerError};
use crate::plan::{self, Step};

/// The ledger and what has been said about it in the log.
pub(crate) struct Verifier {
    ledger: Option<Ledger>,
    /// True while lookups fail, so the log says it once per outage.
    down: AtomicBool,
    /// True once the missing ledger has been mentioned.
    told_missing: AtomicBool,
    /// True once a send past the ledger's patience has been mentioned.
    told_impatient: AtomicBool,
}

/// What to do with a suspect job.
pub(crate) enum Checked {
    /// The ledger decided: this step, no Graph call.
    Step(Box<Step>),
    /// Send it. `Some(reason)` when that is without the ledger's word (a possible duplicate).
    Send(Option<&'static str>),
}

impl Verifier {
    pub(crate) fn new(ledger: Option<Ledger>) -> Self {
        Self {
            ledger,
            down: AtomicBool::new(false),
            told_missing: AtomicBool::new(false),
            told_impatient: AtomicBool::new(false),
        }
    }

    /// Checks `job`, suspect since `since_ms` (epoch milliseconds).
    pub(crate) async fn check(
        &self,
        metrics: &Metrics,
        job: &SendJob,
        attempts: u32,
        deferrals: u32,
        since_ms: i64,
    ) -> Checked {
        let checks = &metrics.ledger_checks;
        let Some(ledger) = &self.ledger else {
            if !self.told_missing.swap(true, Ordering::Relaxed) {
                warn!(job_id = %job.job_id,
                    "A job that may have been sent already is sent again: no send ledger is \
                     configured. Set HERALD_LEDGER_URL (and HERALD_LEDGER_TOKEN) to herald \
                     serve's API so such jobs are checked first; each such send is counted in \
                     herald_possible_duplicate_sends_total.");
            }
            return Checked::Send(Some("no_ledger"));
        };
        let entry = match ledger.lookup(&job.job_id).await {
            Ok(entry) => {
                if self.down.swap(false, Ordering::Relaxed) {
                    info!("The send ledger answers again.");
                }
                entry
            }
            Err(error) => {
                return self.unavailable(metrics, job, (attempts, deferrals, since_ms), &error);
            }
        };
        match entry {
            Entry::Settled => {
                checks.with_label_values(&["settled"]).inc();
                Checked::Step(Box::new(Step::Done))
            }
            Entry::Echoed(message_id) => {
                checks.with_label_values(&["echoed"]).inc();
                let result = plan::result(job, ResultStatus::Sent, attempts, message_id, None);
                Checked::Step(Box::new(Step::Finish(result)))
            }
            Entry::Unknown => {
                if let Some(left) = still_possible(since_ms, ledger.horizon) {
                    checks.with_label_values(&["wait"]).inc();
                    return Checked::Step(Box::new(wait(
                        metrics, attempts, deferrals, left, since_ms,
                    )));
                }
                match ledger.claim(&job.job_id, &holder()).await {
                    Ok(true) => {
                        checks.with_label_values(&["unknown"]).inc();
                        Checked::Send(None)
                    }
                    // Another copy holds the send (or just settled it): ask again later.
                    Ok(false) => {
                        checks.with_label_values(&["claimed"]).inc();
                        let horizon = ledger.horizon;
                        Checked::Step(Box::new(wait(
                            metrics, attempts, deferrals, horizon, since_ms,
                        )))
                    }
                    Err(error) => {
                        self.unavailable(metrics, job, (attempts, deferrals, since_ms), &error)
                    }
                }
            }
            Entry::Behind => {
                checks.with_label_values(&["behind"]).inc();
                if still_possible(since_ms, ledger.patience).is_some() {
                    let left = still_possible(since_ms, ledger.horizon).unwrap_or(ledger.horizon);
                    return Checked::Step(Box::new(wait(
                        metrics, attempts, deferrals, left, since_ms,
                    )));
                }
                if !self.told_impatient.swap(true, Ordering::Relaxed) {
                    warn!(job_id = %job.job_id, waited_secs = ledger.patience.as_secs(),
                        "A job that may have been sent already is sent again: herald serve's \
                         records stayed behind the whole time it waited. Check serve's results \
                         and ingest consumers (herald_consumer_connected, queue depths); each \
                         such send is counted in herald_possible_duplicate_sends_total.");
                }
                Checked::Send(Some("ledger_behind"))
            }
        }
    }

    /// The ledger did not answer: wait for it a little, then send without its word.
    fn unavailable(
        &self,
        metrics: &Metrics,
        job: &SendJob,
        (attempts, deferrals, since_ms): (u32, u32, i64),
        error: &LedgerError,
    ) -> Checked {
        metrics
            .ledger_checks
            .with_label_values(&["unavailable"])
            .inc();
        let Some(ledger) = &self.ledger else {
            return Checked::Send(Some("no_ledger"));
        };
        if !self.down.swap(true, Ordering::Relaxed) {
            warn!(error = %error, job_id = %job.job_id,
                "The send ledger does not answer; jobs that may have been sent already \
                 wait for it (up to 15 min by default), then are sent anyway and counted in \
                 herald_possible_duplicate_sends_total. Check that herald serve is up \
                 at HERALD_LEDGER_URL.");
        }
        if still_possible(since_ms, ledger.patience).is_some() {
            let left = still_possible(since_ms, ledger.horizon).unwrap_or(ledger.horizon);
            return Checked::Step(Box::new(wait(metrics, attempts, deferrals, left, since_ms)));
        }
        Checked::Send(Some("ledger_unavailable"))
    }

    /// Counts a Graph call made for a suspect job without the ledger's word.
    pub(crate) fn count_unverified(metrics: &Metrics, reason: &'static str) {
        metrics
            .possible_duplicate_sends
            .with_label_values(&[reason])
            .inc();
    }
}

/// A claim holder name no other copy of a job uses: this process and a counter.
fn holder() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{}-{}-{n}", std::process::id(), now_ms())
}

/// Back to a retry tier for `left`, still suspect since `since_ms`.
fn wait(metrics: &Metrics, attempts: u32, deferrals: u32, left: Duration, since_ms: i64) -> Step {
    metrics.jobs_held.with_label_values(&["ledger_wait"]).inc();
    let mut step = plan::hold(attempts, deferrals, Some(left), "ledger_wait");
    step.verify_since(since_ms);
    step
}

/// The time left before an echo of a send at `since_ms` can no longer be on its way.
fn still_possible(since_ms: i64, horizon: Duration) -> Option<Duration> {
    let elapsed_ms = now_ms().saturating_sub(since_ms).max(0);
    let horizon_ms = herald_core::clock::millis(horizon);
    let left = horizon_ms.saturating_sub(elapsed_ms);
    (left > 0).then(|| Duration::from_millis(left.unsigned_abs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_send_is_possible_until_the_horizon_has_passed() {
        let horizon = Duration::from_secs(10);
        let left = still_possible(now_ms() - 4_000, horizon).expect("within");
        assert!((5_900..=6_000).contains(&left.as_millis()), "{left:?}");
        assert_eq!(still_possible(now_ms() - 10_001, horizon), None);
        // A clock ahead of ours never makes the wait longer than the horizon.
        let ahead = still_possible(now_ms() + 60_000, horizon).expect("within");
        assert!(ahead <= horizon);
    }
}
