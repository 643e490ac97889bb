//! The progress display of `herald run` and `herald demo`: how many of the users published so
//! far have their terminal result, by outcome: on a terminal the bar of `commands/progress.rs`
//! with the counts and the rate, otherwise a structured log line every five seconds.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::Tally;
use crate::commands::progress::{self, Display, Screen};
use herald_core::ResultStatus;
use herald_producer::Progress;

/// Starts the display; `finish` on the returned handle draws the last state.
pub(crate) fn spawn(progress: Arc<Progress>, tally: Arc<Mutex<Tally>>) -> Display {
    progress::spawn_with(move |screen, elapsed, last| {
        Line::read(&progress, &tally).draw(screen, elapsed, last);
    })
}

/// One reading of the counters.
struct Line {
    /// Users with a job or a skipped result confirmed so far: the results to wait for.
    expected: u64,
    done: u64,
    sent: u64,
    failed: u64,
    skipped: u64,
}

impl Line {
    fn read(progress: &Progress, tally: &Mutex<Tally>) -> Self {
        let expected =
            progress.published.load(Ordering::Relaxed) + progress.skipped.load(Ordering::Relaxed);
        let tally = tally.lock().unwrap_or_else(|e| e.into_inner());
        Self {
            expected,
            done: tally.total(),
            sent: tally.count(ResultStatus::Sent),
            failed: tally.count(ResultStatus::Failed) + tally.count(ResultStatus::Dead),
            skipped: tally.count(ResultStatus::Skipped),
        }
    }

    fn draw(&self, screen: &Screen, elapsed: Duration, last: bool) {
        let Self {
            expected,
            done,
            sent,
            failed,
            skipped,
        } = *self;
        let rate = done as f64 / elapsed.as_secs_f64().max(0.001);
        match screen {
            Screen::Bar(_) => screen.bar(
                done,
                expected,
                format!(
                    "results {done}/{expected}  sent {sent}  failed {failed}  skipped {skipped}  \
                     {rate:.0}/s"
                ),
                last,
            ),
            Screen::Log => tracing::info!(
                results = done,
                expected,
                sent,
                failed,
                skipped,
                rate_per_sec = rate as u64,
                "Delivery progress."
            ),
        }
    }
}
