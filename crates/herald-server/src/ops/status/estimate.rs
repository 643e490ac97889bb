//! The current rate and the ETA of a run, from its results of the last `RATE_WINDOW`. Each
//! comes with its basis in words, and is `None` ("unknown") when there is nothing honest to
//! say: no results yet, a single one, a producer still publishing (the number of jobs is not
//! known yet), a paused run, or no progress at all lately.
//!
//! Only results a worker decided count (sent, failed, dead, expired, cancelled): `skipped`
//! results come from the producer at its own pace, before any sending, and would inflate the
//! rate.

use std::time::Duration;

use herald_store::{RecentResults, RunRecord, RunState};
use serde::Serialize;
use time::OffsetDateTime;

/// How far back the rate looks.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);

/// Results per second lately.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rate {
    /// Results per second; `None` when unknown.
    pub per_sec: Option<f64>,
    /// How far back it looks, in seconds.
    pub window_secs: u64,
    /// Results (other than skipped) that finished in the window.
    pub results_in_window: u64,
    /// How it was measured, or why it is unknown.
    pub basis: String,
}

/// When every published job should have its result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Eta {
    /// Seconds from `as_of`; `None` when unknown. 0 when every published job has its result.
    pub seconds: Option<u64>,
    /// The time, when known.
    #[serde(with = "time::serde::rfc3339::option")]
    pub at: Option<OffsetDateTime>,
    /// How it was estimated, or why it is unknown.
    pub basis: String,
}

/// The rate of the last `RATE_WINDOW`. `worker_results` counts every non-skipped result of the
/// run so far; `recent` those of the window.
pub(crate) fn rate(now: OffsetDateTime, worker_results: u64, recent: &RecentResults) -> Rate {
    let window_secs = RATE_WINDOW.as_secs();
    let (per_sec, basis) = match recent.first_finished_at {
        _ if worker_results == 0 => (None, "no results yet".to_owned()),
        None => (Some(0.0), format!("no results in the last {window_secs} s")),
        // Sending began inside the window: measure from the first result, not the window's start.
        Some(first) if recent.count >= worker_results => {
            let span = (now - first).as_seconds_f64();
            if recent.count < 2 || span < 1.0 {
                (None, "too few results to measure yet".to_owned())
            } else {
                (
                    Some(recent.count as f64 / span),
                    format!("{} results in the last {span:.0} s", recent.count),
                )
            }
        }
        Some(_) => (
            Some(recent.count as f64 / RATE_WINDOW.as_secs_f64()),
            format!("{} results in the last {window_secs} s", recent.count),
        ),
    };
    Rate {
        per_sec,
        window_secs,
        results_in_window: recent.count,
        basis,
    }
}

/// The ETA of `pending` jobs at `rate`, for the run as `record` says it is.
pub(crate) fn eta(now: OffsetDateTime, record: &RunRecord, pending: u64, rate: &Rate) -> Eta {
    let unknown = |basis: String| Eta {
        seconds: None,
        at: None,
        basis,
    };
    if !record.progress.complete {
        if record.state == RunState::Cancelled {
            return unknown("cancelled while the producer was publishing".to_owned());
        }
        if record.producer_stopped.is_some() {
            return unknown(format!(
                "the producer stopped after {} jobs; the rest is sent once the run is resumed",
                record.progress.published
            ));
        }
        return unknown(format!(
            "the producer is still publishing ({} jobs so far)",
            record.progress.published
        ));
    }
    if pending == 0 {
        return Eta {
            seconds: Some(0),
            at: Some(now),
            basis: "every published job has its result".to_owned(),
        };
    }
    match (record.state, rate.per_sec) {
        (RunState::Paused, _) => unknown(format!("paused with {pending} jobs pending")),
        (_, None) => unknown(format!("rate unknown ({})", rate.basis)),
        (_, Some(per_sec)) if per_sec <= 0.0 => unknown(format!(
            "{pending} jobs pending and {}: paused, halted page or no workers?",
            rate.basis
        )),
        (_, Some(per_sec)) => {
            let seconds = (pending as f64 / per_sec).ceil() as u64;
            Eta {
                seconds: Some(seconds),
                at: Some(now + Duration::from_secs(seconds)),
                basis: format!("{pending} jobs pending at {per_sec:.1}/s"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use herald_store::RunProgress;
    use time::macros::datetime;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2026-11-21 12:00:00 UTC);

    fn recent(count: u64, first_secs_ago: Option<i64>) -> RecentResults {
        let at = first_secs_ago.map(|s| NOW - time::Duration::seconds(s));
        RecentResults {
            count,
            first_finished_at: at,
            last_finished_at: at.map(|_| NOW),
        }
    }

    #[test]
    fn rate_is_measured_over_the_window_or_since_sending_began() {
        let check = |total: u64, window: RecentResults, expected: Option<f64>, basis: &str| {
            let rate = rate(NOW, total, &window);
            assert_eq!(rate.per_sec, expected, "{rate:?}");
            assert!(rate.basis.contains(basis), "{rate:?}");
            assert_eq!(rate.results_in_window, window.count);
        };
        check(0, recent(0, None), None, "no results yet");
        check(
            10,
            recent(0, None),
            Some(0.0),
            "no results in the last 60 s",
        );
        // Everything happened inside the window: measured since the first result.
        check(
            20,
            recent(20, Some(10)),
            Some(2.0),
            "20 results in the last 10 s",
        );
        check(1, recent(1, Some(5)), None, "too few");
        check(5, recent(5, Some(0)), None, "too few");
        // Older results exist: the whole window counts.
        check(
            500,
            recent(120, Some(59)),
            Some(2.0),
            "120 results in the last 60 s",
        );
    }

    fn record(state: RunState, complete: bool, published: u64) -> RunRecord {
        RunRecord {
            run_id: "r1".into(),
            campaign_id: "c".into(),
            document: "{}".into(),
            segment: "users.csv".into(),
            state,
            started_at: NOW,
            updated_at: NOW,
            progress: RunProgress {
                published,
                complete,
                ..RunProgress::default()
            },
            producer_stopped: None,
        }
    }

    #[test]
    fn eta_is_unknown_unless_there_is_a_basis() {
        let at = |per_sec: Option<f64>| Rate {
            per_sec,
            window_secs: 60,
            results_in_window: 0,
            basis: "basis".into(),
        };
        let check = |record: RunRecord, pending: u64, rate: Rate, expected: Option<u64>, basis| {
            let eta = eta(NOW, &record, pending, &rate);
            assert_eq!(eta.seconds, expected, "{eta:?}");
            assert!(eta.basis.contains(basis), "{eta:?}");
            assert_eq!(
                eta.at,
                expected.map(|s| NOW + Duration::from_secs(s)),
                "{eta:?}"
            );
        };
        use RunState::*;
        check(
            record(Running, false, 10),
            10,
            at(Some(5.0)),
            None,
            "still publishing",
        );
        check(
            record(Cancelled, false, 10),
            10,
            at(Some(5.0)),
            None,
            "cancelled",
        );
        let stopped = RunRecord {
            producer_stopped: Some("the broker connection was lost".into()),
            ..record(Running, false, 10)
        };
        check(stopped, 10, at(Some(5.0)), None, "stopped after 10 jobs");
        check(
            record(Running, true, 10),
            0,
            at(None),
            Some(0),
            "every published job",
        );
        check(record(Paused, true, 10), 4, at(Some(5.0)), None, "paused");
        check(record(Running, true, 10), 4, at(None), None, "rate unknown");
        check(
            record(Running, true, 10),
            4,
            at(Some(0.0)),
            None,
            "no workers",
        );
        check(
            record(Running, true, 100),
            25,
            at(Some(2.0)),
            Some(13),
            "25 jobs pending",
        );
    }
}
