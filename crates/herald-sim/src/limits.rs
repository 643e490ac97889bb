//! Per-page rate accounting (docs/messenger-platform.md §4): a true sliding window of accept
//! instants that both enforces the limit (at most `rate` accepts in any 1000 ms span) and yields
//! the highest count ever seen in such a span, scripted 613 bursts, and the
//! `X-Business-Use-Case-Usage` header. Time is passed in, so nothing here reads a clock.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::header::HeaderValue;

const WINDOW: Duration = Duration::from_millis(1000);

/// One page's window and totals.
pub(crate) struct PageWindow {
    pub(crate) id: Arc<str>,
    /// Accept instants younger than `WINDOW`; never longer than the page's rate.
    recent: VecDeque<Instant>,
    pub(crate) accepted: u64,
    pub(crate) max_per_second: u32,
    /// Calls (accepted or not) in the current aligned second, so usage can exceed 100 %.
    second_start: Instant,
    second_calls: u32,
    burst_until: Option<Instant>,
}

impl PageWindow {
    pub(crate) fn new(id: &str, now: Instant) -> Self {
        Self {
            id: Arc::from(id),
            recent: VecDeque::new(),
            accepted: 0,
            max_per_second: 0,
            second_start: now,
            second_calls: 0,
            burst_until: None,
        }
    }

    /// Counts a call toward usage and drops accept instants older than the window.
    pub(crate) fn note_call(&mut self, now: Instant) {
        if now.saturating_duration_since(self.second_start) >= WINDOW {
            self.second_start = now;
            self.second_calls = 0;
        }
        self.second_calls = self.second_calls.saturating_add(1);
        while let Some(&oldest) = self.recent.front() {
            if now.saturating_duration_since(oldest) < WINDOW {
                break;
            }
            self.recent.pop_front();
        }
    }

    /// Whether a scripted 613 burst covers `now`; `start` begins one of that length.
    pub(crate) fn in_burst(&mut self, now: Instant, start: Option<Duration>) -> bool {
        if let Some(length) = start {
            let until = now + length;
            self.burst_until = Some(self.burst_until.map_or(until, |u| u.max(until)));
        }
        self.burst_until.is_some_and(|until| now < until)
    }

    /// Whether one more accept fits in the window (call `note_call` first).
    pub(crate) fn has_room(&self, rate: u32) -> bool {
        self.recent.len() < rate as usize
    }

    pub(crate) fn accept(&mut self, now: Instant) {
        self.recent.push_back(now);
        self.accepted += 1;
        let in_window = u32::try_from(self.recent.len()).unwrap_or(u32::MAX);
        self.max_per_second = self.max_per_second.max(in_window);
    }

    /// Usage of the per-second allowance in percent; above 100 while callers keep hammering.
    pub(crate) fn usage_pct(&self, rate: u32) -> u32 {
        let calls = self
            .second_calls
            .max(u32::try_from(self.recent.len()).unwrap_or(u32::MAX));
        let pct = u64::from(calls) * 100 / u64::from(rate.max(1));
        u32::try_from(pct).unwrap_or(u32::MAX)
    }
}

/// `X-Business-Use-Case-Usage` for one page. CPU and time shares are reported below the call share
/// so that clients taking the maximum of the three see `call_count`.
pub(crate) fn usage_header(page_id: &str, pct: u32, regain_minutes: u32) -> Option<HeaderValue> {
    let page = serde_json::to_string(page_id).ok()?;
    let value = format!(
        r#"{{{page}:[{{"type":"messenger","call_count":{pct},"total_cputime":{},"total_time":{},"estimated_time_to_regain_access":{regain_minutes}}}]}}"#,
        pct / 10,
        pct / 5,
    );
    HeaderValue::from_str(&value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Offers calls at the given offsets; returns which were accepted and the page's max.
    fn run(rate: u32, offsets_ms: &[u64]) -> (Vec<bool>, u32) {
        let start = Instant::now();
        let mut page = PageWindow::new("1", start);
        let accepted = offsets_ms
            .iter()
            .map(|offset| {
                let now = start + ms(*offset);
                page.note_call(now);
                let room = page.has_room(rate);
                if room {
                    page.accept(now);
                }
                room
            })
            .collect();
        (accepted, page.max_per_second)
    }

    #[test]
    fn sliding_window_table() {
        // Three in the same instant, rate 2: the third is refused.
        assert_eq!(run(2, &[0, 0, 0]), (vec![true, true, false], 2));
        // An aligned bucket would allow 4 across 900..1100; the sliding window does not.
        assert_eq!(
            run(2, &[900, 950, 1000, 1050, 1950]),
            (vec![true, true, false, false, true], 2)
        );
        // Exactly 1000 ms later the oldest accept has left the window.
        assert_eq!(run(1, &[0, 999, 1000]), (vec![true, false, true], 1));
        // The max is over any span, not over aligned seconds.
        assert_eq!(run(10, &[100, 600, 1050, 1500, 2400]).1, 3);
    }

    #[test]
    fn usage_and_bursts() {
        let start = Instant::now();
        let mut page = PageWindow::new("1", start);
        for _ in 0..3 {
            page.note_call(start);
        }
        page.accept(start);
        assert_eq!(page.usage_pct(2), 150);
        assert!(page.in_burst(start, Some(ms(100))));
        assert!(page.in_burst(start + ms(99), None));
        assert!(!page.in_burst(start + ms(100), None));
        let header = usage_header("77", 150, 1).unwrap();
        let parsed: serde_json::Value = serde_json::from_slice(header.as_bytes()).unwrap();
        assert_eq!(parsed["77"][0]["call_count"], 150);
        assert_eq!(parsed["77"][0]["type"], "messenger");
        assert_eq!(parsed["77"][0]["estimated_time_to_regain_access"], 1);
    }
}
