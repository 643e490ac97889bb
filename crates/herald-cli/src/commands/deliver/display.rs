//! The progress display of `herald run` and `herald demo`: how many of the users published so
//! far have their terminal result, by outcome. On a terminal one line on stderr redrawn twice a
//! second, with a bar, the rate and an ETA; otherwise a structured log line every five seconds,
//! like the producer's display in `commands/progress.rs`.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::Tally;
use crate::commands::progress::{self, Display};
use herald_core::ResultStatus;
use herald_producer::Progress;

/// Width of the bar in characters.
const BAR: usize = 30;

/// Starts the display; `finish` on the returned handle draws the last state.
pub(crate) fn spawn(progress: Arc<Progress>, tally: Arc<Mutex<Tally>>) -> Display {
    progress::spawn_with(move |elapsed, terminal, last| {
        Line::read(&progress, &tally).draw(elapsed, terminal, last);
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

    fn draw(&self, elapsed: Duration, terminal: bool, last: bool) {
        let Self {
            expected,
            done,
            sent,
            failed,
            skipped,
        } = *self;
        let fraction = if expected > 0 {
            (done as f64 / expected as f64).min(1.0)
        } else {
            0.0
        };
        let secs = elapsed.as_secs_f64().max(0.001);
        let rate = done as f64 / secs;
        if !terminal {
            tracing::info!(
                results = done,
                expected,
                sent,
                failed,
                skipped,
                rate_per_sec = rate as u64,
                "Delivery progress."
            );
            return;
        }
        let eta = if rate > 0.0 && expected >= done {
            format!("{:.0}s", (expected - done) as f64 / rate)
        } else {
            "?".to_owned()
        };
        let filled = (fraction * BAR as f64) as usize;
        let bar = format!("{}{}", "#".repeat(filled), "-".repeat(BAR - filled));
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r[{bar}] {:>3.0}%  results {done}/{expected}  sent {sent}  failed {failed}  \
             skipped {skipped}  {rate:.0}/s  ETA {eta}   ",
            fraction * 100.0
        );
        if last {
            let _ = writeln!(err);
        }
    }
}
