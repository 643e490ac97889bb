//! The progress display of a run: on a terminal, an indicatif bar on stderr redrawn twice a
//! second with the counts, the rate and an ETA (from bytes of the segment read); otherwise a
//! structured log line every five seconds, which is what a CI log or `kubectl logs` wants.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use herald_producer::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
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

/// Where a reading goes: a redrawn bar on a terminal, a log line otherwise.
pub(crate) enum Screen {
    /// indicatif's bar on stderr: `pos` of `len`, the counts in its message, an ETA.
    Bar(ProgressBar),
    /// A structured log line each time.
    Log,
}

impl Screen {
    /// Shows `pos` of `len` with `message` on the bar; the last reading leaves the line drawn.
    pub(crate) fn bar(&self, pos: u64, len: u64, message: String, last: bool) {
        if let Self::Bar(bar) = self {
            bar.set_length(len.max(1));
            bar.set_position(pos.min(len));
            bar.set_message(message);
            if last {
                bar.finish();
            }
        }
    }
}

/// The producer's display: segment bytes read, jobs and skips confirmed.
pub(crate) fn spawn(progress: Arc<Progress>) -> Display {
    spawn_with(move |screen, elapsed, last| draw(&progress, screen, elapsed, last))
}

/// Redraws with `draw(screen, elapsed, last)` on a timer (twice a second on a terminal, every
/// five seconds otherwise) until `finish`, which draws once more with `last` set.
pub(crate) fn spawn_with<F>(draw: F) -> Display
where
    F: Fn(&Screen, Duration, bool) + Send + 'static,
{
    let terminal = std::io::stderr().is_terminal();
    let (every, screen) = if terminal {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(BAR_TEMPLATE)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("#>-");
        bar.set_style(style);
        (Duration::from_millis(500), Screen::Bar(bar))
    } else {
        (Duration::from_secs(5), Screen::Log)
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
            draw(&screen, started.elapsed(), last);
            if last {
                return;
            }
        }
    });
    Display { stop, task }
}

/// The bar's layout: `[####>-----]  42%  <counts>  ETA 12s`.
const BAR_TEMPLATE: &str = "[{bar:30}] {percent:>3}%  {msg}  ETA {eta}";

fn draw(progress: &Progress, screen: &Screen, elapsed: Duration, last: bool) {
    let published = progress.published.load(Ordering::Relaxed);
    let skipped = progress.skipped.load(Ordering::Relaxed);
    let (bytes, total) = (
        progress.bytes.load(Ordering::Relaxed),
        progress.total_bytes.load(Ordering::Relaxed),
    );
    let rate = (published + skipped) as f64 / elapsed.as_secs_f64().max(0.001);
    match screen {
        Screen::Bar(_) => screen.bar(
            bytes,
            total,
            format!("published {published}  skipped {skipped}  {rate:.0}/s"),
            last,
        ),
        Screen::Log => {
            let percent = bytes
                .saturating_mul(100)
                .checked_div(total)
                .map_or(0, |p| p.min(100));
            tracing::info!(
                published,
                skipped,
                rate_per_sec = rate as u64,
                percent,
                "Run progress."
            );
        }
    }
}
