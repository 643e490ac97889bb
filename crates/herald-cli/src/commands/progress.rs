//! The progress display of a run: on a terminal, one line on stderr redrawn twice a second with a
//! bar, the rate and an ETA (from bytes of the segment read); otherwise a structured log line
//! every five seconds, which is what a CI log or `kubectl logs` wants.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use herald_producer::Progress;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub(crate) struct Display {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Display {
    /// Stops the display and draws the last state.
    pub(crate) async fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// The producer's display: segment bytes read, jobs and skips confirmed.
pub(crate) fn spawn(progress: Arc<Progress>) -> Display {
    spawn_with(move |elapsed, terminal, last| draw(&progress, elapsed, terminal, last))
}

/// Redraws with `draw(elapsed, terminal, last)` on a timer (twice a second on a terminal, every
/// five seconds otherwise) until `finish`, which draws once more with `last` set.
pub(crate) fn spawn_with<F>(draw: F) -> Display
where
    F: Fn(Duration, bool, bool) + Send + 'static,
{
    let terminal = std::io::stderr().is_terminal();
    let every = if terminal {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(5)
    };
    let (stop, mut stopped) = oneshot::channel();
    let task = tokio::spawn(async move {
        let started = Instant::now();
        let mut ticker = tokio::time::interval(every);
        ticker.tick().await;
        loop {
            let last = tokio::select! {
                _ = ticker.tick() => false,
                _ = &mut stopped => true,
            };
            draw(started.elapsed(), terminal, last);
            if last {
                return;
            }
        }
    });
    Display { stop, task }
}

fn draw(progress: &Progress, elapsed: Duration, terminal: bool, last: bool) {
    let published = progress.published.load(Ordering::Relaxed);
    let skipped = progress.skipped.load(Ordering::Relaxed);
    let (bytes, total) = (
        progress.bytes.load(Ordering::Relaxed),
        progress.total_bytes.load(Ordering::Relaxed),
    );
    let secs = elapsed.as_secs_f64().max(0.001);
    let rate = (published + skipped) as f64 / secs;
    let fraction = if total > 0 {
        (bytes as f64 / total as f64).min(1.0)
    } else {
        0.0
    };
    let eta = if fraction > 0.0 {
        secs * (1.0 - fraction) / fraction
    } else {
        f64::NAN
    };
    if terminal {
        let filled = (fraction * 30.0) as usize;
        let bar = format!("{}{}", "#".repeat(filled), "-".repeat(30 - filled));
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r[{bar}] {:>3.0}%  published {published}  skipped {skipped}  {rate:.0}/s  ETA {}",
            fraction * 100.0,
            if eta.is_finite() {
                format!("{eta:.0}s")
            } else {
                "?".to_owned()
            }
        );
        if last {
            let _ = writeln!(err);
        }
    } else {
        tracing::info!(
            published,
            skipped,
            rate_per_sec = rate as u64,
            percent = (fraction * 100.0) as u64,
            "Run progress."
        );
    }
}
