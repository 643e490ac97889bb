//! Per-page rate accounting (docs/messenger-platform.md §4), the page's two limits apart:
//! - the per-second limit: a true sliding window of accept instants that both enforces it (at
//!   most `rate` accepts in any 1000 ms span) and yields the highest count ever seen in such a
//!   span;
//! - the rolling call budget, 200 calls × engaged users per window (24 hours, or compressed for
//!   tests): every call counts, its share is what `call_count` in `X-Business-Use-Case-Usage`
//!   reports, and over 100 % every call is refused until enough old calls leave the window.
//!
//! Also scripted 613 bursts and the usage header. Time is passed in, so nothing here reads a
//! clock.

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
    /// Every call of the budget window, accepted or not.
    pub(crate) budget: CallBudget,
    burst_until: Option<Instant>,
}

impl PageWindow {
    pub(crate) fn new(id: &str) -> Self {
        Self {
            id: Arc::from(id),
            recent: VecDeque::new(),
            accepted: 0,
            max_per_second: 0,
            budget: CallBudget::default(),
            burst_until: None,
        }
    }

    /// Counts a call toward the budget and drops accept instants older than the window.
    pub(crate) fn note_call(&mut self, now: Instant, budget_window: Duration) {
        self.budget.note(now, budget_window);
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
}

/// How many slices a budget window is counted in: old calls leave it a slice at a time.
const BUDGET_SLICES: u32 = 240;

/// One page's calls in its rolling budget window, counted per slice of the window.
#[derive(Default)]
pub(crate) struct CallBudget {
    /// (start of the slice, calls in it), oldest first.
    slices: VecDeque<(Instant, u64)>,
    used: u64,
}

impl CallBudget {
    /// Counts one call at `now`, after forgetting calls older than `window`.
    fn note(&mut self, now: Instant, window: Duration) {
        while let Some(&(start, calls)) = self.slices.front() {
            if now.saturating_duration_since(start) < window {
                break;
            }
            self.used -= calls;
            self.slices.pop_front();
        }
        let slice = window / BUDGET_SLICES;
        match self.slices.back_mut() {
            Some((start, calls)) if now.saturating_duration_since(*start) < slice => *calls += 1,
            _ => self.slices.push_back((now, 1)),
        }
        self.used += 1;
    }

    /// Calls in the window, this one included: over `allowance`, the call is refused.
    pub(crate) fn used(&self) -> u64 {
        self.used
    }

    /// The share of `allowance` used, in whole percent (over 100 once exceeded).
    pub(crate) fn percent(&self, allowance: u64) -> u32 {
        let pct = u128::from(self.used) * 100 / u128::from(allowance.max(1));
        u32::try_from(pct).unwrap_or(u32::MAX)
    }

    /// Once over `allowance`: whole minutes (at least 1) until the calls in the window are
    /// under it again, so the next call fits, as `estimated_time_to_regain_access` reports it;
    /// 0 while not over it.
    pub(crate) fn regain_minutes(&self, now: Instant, window: Duration, allowance: u64) -> u32 {
        if self.used <= allowance {
            return 0;
        }
        let mut used = self.used;
        for &(start, calls) in &self.slices {
            used -= calls;
            if used < allowance {
                let left = (start + window).saturating_duration_since(now);
                let minutes = left.as_secs().div_ceil(60).max(1);
                return u32::try_from(minutes).unwrap_or(u32::MAX);
            }
        }
        0
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

    const DAY: Duration = Duration::from_secs(86_400);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Offers calls at the given offsets; returns which were accepted and the page's max.
    fn run(rate: u32, offsets_ms: &[u64]) -> (Vec<bool>, u32) {
        let start = Instant::now();
        let mut page = PageWindow::new("1");
        let accepted = offsets_ms
            .iter()
            .map(|offset| {
                let now = start + ms(*offset);
                page.note_call(now, DAY);
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
    fn bursts_and_the_usage_header() {
        let start = Instant::now();
        let mut page = PageWindow::new("1");
        assert!(page.in_burst(start, Some(ms(100))));
        assert!(page.in_burst(start + ms(99), None));
        assert!(!page.in_burst(start + ms(100), None));
        let header = usage_header("77", 150, 1).unwrap();
        let parsed: serde_json::Value = serde_json::from_slice(header.as_bytes()).unwrap();
        assert_eq!(parsed["77"][0]["call_count"], 150);
        assert_eq!(parsed["77"][0]["type"], "messenger");
        assert_eq!(parsed["77"][0]["estimated_time_to_regain_access"], 1);
    }

    /// (offset in seconds, calls then) into a 10-minute budget window of 100 calls, and what
    /// the budget reads after them: used, percent, minutes to regain access.
    #[test]
    fn the_budget_rolls_over_its_window() {
        let window = Duration::from_secs(600);
        let start = Instant::now();
        let rows: [(u64, u64, u64, u32, u32); 6] = [
            // 50 calls at once: half the allowance.
            (0, 50, 50, 50, 0),
            // 50 more a minute later: all of it, not over it.
            (60, 50, 100, 100, 0),
            // One more is over: the first 50 leave at 600 s, 9 minutes away (rounded up).
            (61, 1, 101, 101, 9),
            // Still over at 599 s: under a minute left still reads 1.
            (599, 1, 102, 102, 1),
            // At 600 s the first slice has left the window.
            (600, 1, 53, 53, 0),
            // A whole window later only the calls of the last window count.
            (1300, 1, 1, 1, 0),
        ];
        let mut budget = CallBudget::default();
        for (offset, calls, used, pct, regain) in rows {
            let now = start + Duration::from_secs(offset);
            for _ in 0..calls {
                budget.note(now, window);
            }
            assert_eq!(budget.used(), used, "at {offset} s");
            assert_eq!(budget.percent(100), pct, "at {offset} s");
            assert_eq!(
                budget.regain_minutes(now, window, 100),
                regain,
                "at {offset} s"
            );
        }
    }
}
