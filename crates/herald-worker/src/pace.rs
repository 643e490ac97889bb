//! Per-page pacing: one governor limiter per page whose rate is 98 % of the page's ceiling
//! (lowered by any campaign's `rate_per_sec`) divided by the consumers on the send queue, so N
//! workers share the page's per-second limit without talking to each other. The page's two
//! limits are told apart (docs/messenger-platform.md §4.3): a slow-down code halves the rate
//! (additive increase on success brings it back), while the usage headers measure the page's
//! rolling call budget, so above 75 % used the rate shrinks in proportion to what is left, and
//! Meta's regain-access delay pauses the page. A worker that has just started consuming sends
//! nothing until every other worker has counted it. Priority jobs go through a page's limiter
//! before every bulk job but the one already at it, within the same rate. A job that would wait
//! longer than `max_rate_wait` is held back (a retry tier) instead of occupying the worker. It
//! does not send or settle.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use herald_core::ErrorClass;
use herald_core::campaign::Priority;
use herald_graph::Usage;
use herald_telemetry::Metrics;
use tokio_util::sync::CancellationToken;

use herald_core::rates::{PACING_SHARE, PageRates};

/// A worker's limiter may let this share of a second of its rate through at once (at least 2
/// calls), so a wake-up that comes late on a busy machine is caught up instead of lost. It is
/// the other part of the headroom: at most 99 % of the ceiling in any second.
const BURST_SECS: f64 = 0.01;
/// Usage above this share of the page's call budget slows it down (docs/messenger-platform.md
/// §4.3): at 75 % the full rate, at 100 % the trickle.
const USAGE_HIGH: f64 = 0.75;
/// Multiplier on a slow-down code (613, 4, 17, 32, 80001, 80006, HTTP 429).
const CUT_ON_THROTTLE: f64 = 0.5;
/// Share of the ceiling regained per second of good answers.
const GROWTH_PER_SEC: f64 = 0.05;
/// The rate never falls below this share of the ceiling.
const MIN_FACTOR: f64 = 0.02;
/// Cuts closer together than this count once: the answers of calls already in flight all report
/// the same congestion.
const CUT_COOLDOWN: Duration = Duration::from_secs(1);
/// A campaign's `rate_per_sec` keeps lowering its page this long after its last job was seen.
const CAP_MEMORY: Duration = Duration::from_secs(30);
/// A limiter is rebuilt only when the wanted rate moves more than this share.
const REBUILD_THRESHOLD: f64 = 0.02;

/// What a job may do after asking its page's pacer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Admission {
    /// Send now; it waited this long.
    Go(Duration),
    /// Do not wait here: go back to a retry tier for about this long.
    Hold(Duration, &'static str),
    /// The worker is stopping; leave the delivery unsettled.
    Stopped,
}

/// What one Graph answer says about the page's capacity.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Answer<'a> {
    /// `None` when the call succeeded.
    pub(crate) class: Option<ErrorClass>,
    pub(crate) retry_after: Option<Duration>,
    pub(crate) usage: Option<&'a Usage>,
}

/// Every page's pacer, and the fleet size they divide by.
pub(crate) struct Pacers {
    rates: PageRates,
    max_wait: Duration,
    consumers: AtomicU32,
    /// When this worker may send, in milliseconds after `created` (0: at once): it has just
    /// joined, and the others do not count it yet. An atomic, read by every job.
    joining_until_ms: AtomicU64,
    created: Instant,
    pages: Mutex<HashMap<String, Arc<Pacer>>>,
    metrics: Metrics,
}

struct Pacer {
    page_id: String,
    ceiling: f64,
    state: Mutex<RateState>,
    /// FIFO: one job at a time waits on the limiter, so waiters do not all wake per token.
    gate: tokio::sync::Mutex<Gate>,
    /// Bulk jobs queue here first, so at most one of them is in the gate's line: a priority job
    /// that arrives goes through the gate after that one, ahead of every other bulk job.
    bulk_line: tokio::sync::Mutex<()>,
    /// Bulk jobs waiting for a send slot.
    waiting: AtomicUsize,
    /// Priority jobs waiting for a send slot.
    priority_waiting: AtomicUsize,
}

struct RateState {
    /// Share of the ceiling after slow-down codes (1.0 when none lately).
    factor: f64,
    /// Share of the ceiling the page's call budget leaves (1.0 below 75 % used).
    budget: f64,
    last_cut: Option<Instant>,
    last_growth: Instant,
    /// Recently seen campaign ceilings for this page, with when each was last seen.
    caps: Vec<(u32, Instant)>,
    paused_until: Option<Instant>,
}

struct Gate {
    rate: f64,
    limiter: Option<DefaultDirectRateLimiter>,
}

impl Pacers {
    pub(crate) fn new(rates: PageRates, max_wait: Duration, metrics: Metrics) -> Self {
        Self {
            rates,
            max_wait,
            consumers: AtomicU32::new(1),
            joining_until_ms: AtomicU64::new(0),
            created: Instant::now(),
            pages: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    /// Records the number of consumers on the send queue (this worker included).
    pub(crate) fn set_consumers(&self, consumers: u32) {
        self.consumers.store(consumers.max(1), Ordering::Relaxed);
        self.metrics.send_consumers.set(i64::from(consumers));
    }

    /// This worker has just started consuming: it sends nothing for `settle`, by which time
    /// every other worker has re-read the fleet size and counts it. Without that, a joining
    /// worker's share would come on top of the others' old shares.
    pub(crate) fn joined(&self, settle: Duration) {
        let until = self.created.elapsed() + settle;
        let until_ms = u64::try_from(until.as_millis()).unwrap_or(u64::MAX);
        self.joining_until_ms.store(until_ms, Ordering::Relaxed);
    }

    /// Waits for the page's next send slot, or says why not to wait.
    pub(crate) async fn admit(
        &self,
        page_id: &str,
        campaign_rate: u32,
        priority: Priority,
        stop: &CancellationToken,
    ) -> Admission {
        let until = Duration::from_millis(self.joining_until_ms.load(Ordering::Relaxed));
        if let Some(left) = until.checked_sub(self.created.elapsed()) {
            tokio::select! {
                () = tokio::time::sleep(left) => {}
                () = stop.cancelled() => return Admission::Stopped,
            }
        }
        let pacer = self.pacer(page_id);
        let consumers = self.consumers.load(Ordering::Relaxed);
        let (rate, paused) = pacer.plan(campaign_rate, consumers, Instant::now());
        if let Some(left) = paused {
            return Admission::Hold(left, "page_throttled");
        }
        // A priority job waits only for the priority jobs ahead of it; a bulk job for both.
        let high = priority == Priority::High;
        let (count, others) = if high {
            (&pacer.priority_waiting, None)
        } else {
            (&pacer.waiting, Some(&pacer.priority_waiting))
        };
        let ahead = count.fetch_add(1, Ordering::AcqRel)
            + others.map_or(0, |other| other.load(Ordering::Acquire));
        let _leave = Leave(count);
        let expected = Duration::from_secs_f64((ahead + 1) as f64 / rate);
        if expected > self.max_wait {
            return Admission::Hold(expected, "rate_limited");
        }
        let started = Instant::now();
        let _line = if high {
            None
        } else {
            tokio::select! {
                line = pacer.bulk_line.lock() => Some(line),
                () = stop.cancelled() => return Admission::Stopped,
            }
        };
        let mut gate = tokio::select! {
            gate = pacer.gate.lock() => gate,
            () = stop.cancelled() => return Admission::Stopped,
        };
        // Planned again at the head of the line: while this job queued, the fleet or a slow-down
        // may have changed the rate, and a stale one would undo the change.
        let consumers = self.consumers.load(Ordering::Relaxed);
        let (rate, _) = pacer.plan(campaign_rate, consumers, Instant::now());
        if gate.retune(rate) {
            self.metrics
                .rate_limit_per_second
                .with_label_values(&[page_id])
                .set(rate);
        }
        let Some(limiter) = gate.limiter.as_ref() else {
            return Admission::Hold(self.max_wait, "rate_limited");
        };
        tokio::select! {
            _ = limiter.until_ready() => {}
            () = stop.cancelled() => return Admission::Stopped,
        }
        drop(gate);
        let waited = started.elapsed();
        self.metrics.rate_limit_wait.observe(waited.as_secs_f64());
        match pacer.paused_left(Instant::now()) {
            Some(left) => Admission::Hold(left, "page_throttled"),
            None => Admission::Go(waited),
        }
    }

    /// Adjusts the page's rate after a Graph answer.
    pub(crate) fn observe(&self, page_id: &str, answer: Answer<'_>) {
        if let Some(usage) = answer.usage {
            self.metrics
                .graph_usage_ratio
                .with_label_values(&[page_id])
                .set(usage.ratio);
        }
        self.pacer(page_id).observe(answer, Instant::now());
    }

    fn pacer(&self, page_id: &str) -> Arc<Pacer> {
        let mut pages = self.pages.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pacer) = pages.get(page_id) {
            return pacer.clone();
        }
        pages
            .entry(page_id.to_owned())
            .or_insert_with(|| {
                Arc::new(Pacer {
                    page_id: page_id.to_owned(),
                    ceiling: f64::from(self.rates.ceiling(page_id)),
                    state: Mutex::new(RateState {
                        factor: 1.0,
                        budget: 1.0,
                        last_cut: None,
                        last_growth: Instant::now(),
                        caps: Vec::new(),
                        paused_until: None,
                    }),
                    gate: tokio::sync::Mutex::new(Gate {
                        rate: 0.0,
                        limiter: None,
                    }),
                    bulk_line: tokio::sync::Mutex::new(()),
                    waiting: AtomicUsize::new(0),
                    priority_waiting: AtomicUsize::new(0),
                })
            })
            .clone()
    }
}

impl Pacer {
    /// This worker's rate for the page now, and how long the page stays paused, if it is.
    fn plan(&self, campaign_rate: u32, consumers: u32, now: Instant) -> (f64, Option<Duration>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state
            .caps
            .retain(|(_, seen)| now.duration_since(*seen) < CAP_MEMORY);
        match state
            .caps
            .iter_mut()
            .find(|(rate, _)| *rate == campaign_rate)
        {
            Some(entry) => entry.1 = now,
            None => state.caps.push((campaign_rate, now)),
        }
        let cap = state.caps.iter().map(|(rate, _)| f64::from(*rate));
        let ceiling = cap.fold(self.ceiling, f64::min);
        let rate = share(ceiling, state.factor * state.budget, consumers);
        let paused = state
            .paused_until
            .and_then(|until| until.checked_duration_since(now))
            .filter(|left| !left.is_zero());
        (rate, paused)
    }

    fn paused_left(&self, now: Instant) -> Option<Duration> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state
            .paused_until
            .and_then(|until| until.checked_duration_since(now))
            .filter(|left| !left.is_zero())
    }

    fn observe(&self, answer: Answer<'_>, now: Instant) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let regain = answer.usage.and_then(|usage| usage.regain_access);
        let throttled = answer.class == Some(ErrorClass::SlowDown);
        if throttled {
            state.cut(CUT_ON_THROTTLE, now);
        } else if answer.class.is_none() {
            state.grow(now);
        }
        match answer.usage {
            // Out of budget: the pause below waits for it, and Graph's regain time is when the
            // page has its budget back, so nothing is slowed after the pause.
            Some(usage) if usage.regain_access.is_some_and(|d| !d.is_zero()) => state.budget = 1.0,
            Some(usage) => state.budget = budget_share(usage.ratio),
            // Graph leaves the headers out while usage is low.
            None if answer.class.is_none() => state.budget = 1.0,
            None => {}
        }
        let pause = if throttled {
            answer.retry_after.max(regain)
        } else {
            regain
        };
        if let Some(pause) = pause {
            let until = now + pause;
            if state.paused_until.is_none_or(|current| current < until) {
                tracing::warn!(page_id = %self.page_id, pause_secs = pause.as_secs(),
                    "Graph asked this page to slow down; pausing its sends.");
                state.paused_until = Some(until);
            }
        }
    }
}

impl RateState {
    fn cut(&mut self, by: f64, now: Instant) {
        if self
            .last_cut
            .is_some_and(|last| now.duration_since(last) < CUT_COOLDOWN)
        {
            return;
        }
        self.factor = (self.factor * by).max(MIN_FACTOR);
        self.last_cut = Some(now);
        self.last_growth = now;
    }

    fn grow(&mut self, now: Instant) {
        let elapsed = now.duration_since(self.last_growth);
        if elapsed >= Duration::from_secs(1) {
            self.factor = (self.factor + GROWTH_PER_SEC * elapsed.as_secs_f64()).min(1.0);
            self.last_growth = now;
        }
    }
}

impl Gate {
    /// Rebuilds the limiter when the wanted rate moved; true when it did. A new limiter starts
    /// with its burst spent, so a rebuild never lets extra sends through.
    fn retune(&mut self, rate: f64) -> bool {
        let moved = (rate - self.rate).abs() > self.rate * REBUILD_THRESHOLD;
        if self.limiter.is_some() && !moved {
            return false;
        }
        let period = Duration::from_secs_f64(1.0 / rate).max(Duration::from_nanos(1));
        let burst = burst(rate);
        self.limiter =
            Quota::with_period(period).map(|quota| RateLimiter::direct(quota.allow_burst(burst)));
        if let Some(limiter) = &self.limiter {
            let _ = limiter.check_n(burst);
        }
        self.rate = rate;
        true
    }
}

/// The burst of a limiter at `rate`: `BURST_SECS` of it, at least 2 calls.
fn burst(rate: f64) -> NonZeroU32 {
    let calls = (rate * BURST_SECS).floor().clamp(2.0, f64::from(u32::MAX)) as u32;
    NonZeroU32::new(calls).unwrap_or(NonZeroU32::MIN)
}

/// This worker's share of a page: ceiling × headroom × factor ÷ consumers, never below a
/// trickle.
fn share(ceiling: f64, factor: f64, consumers: u32) -> f64 {
    (ceiling * PACING_SHARE * factor / f64::from(consumers.max(1))).max(0.01)
}

/// The share of the ceiling left by a page's call budget `used` (1.0 = all of it): all of it
/// up to 75 %, then in proportion to what is left, down to the trickle at 100 %.
fn budget_share(used: f64) -> f64 {
    if used <= USAGE_HIGH {
        1.0
    } else {
        ((1.0 - used) / (1.0 - USAGE_HIGH)).clamp(MIN_FACTOR, 1.0)
    }
}

/// Decrements the waiting count however `admit` returns.
struct Leave<'a>(&'a AtomicUsize);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fleet_shares_the_lowest_ceiling() {
        let check = |ceiling: f64, factor: f64, consumers: u32, expected: f64| {
            let got = share(ceiling, factor, consumers);
            assert!(
                (got - expected).abs() < 1e-9,
                "{ceiling} {factor} {consumers}: {got}"
            );
        };
        check(250.0, 1.0, 1, 245.0);
        check(100.0, 1.0, 3, 98.0 / 3.0);
        check(100.0, 0.5, 0, 49.0);
        check(1.0, 0.02, 10, 0.01);
    }

    #[test]
    fn throttling_cuts_once_per_burst_and_success_grows_back_slowly() {
        let t0 = Instant::now();
        let sec = |n: f64| t0 + Duration::from_secs_f64(n);
        let pacer = Pacers::new(
            PageRates::default(),
            Duration::from_secs(10),
            Metrics::new(),
        )
        .pacer("1");
        let factor = || pacer.state.lock().unwrap().factor;
        let (rate, paused) = pacer.plan(100, 2, t0);
        assert_eq!(
            (rate, paused),
            (49.0, None),
            "campaign cap 100 of ceiling 250, 2 consumers, 98 %"
        );
        let throttle = Answer {
            class: Some(ErrorClass::SlowDown),
            retry_after: None,
            usage: None,
        };
        pacer.observe(throttle, sec(0.0));
        pacer.observe(throttle, sec(0.5));
        assert_eq!(factor(), 0.5, "answers within a second count once");
        pacer.observe(throttle, sec(1.5));
        assert_eq!(factor(), 0.25);
        let ok = Answer {
            class: None,
            retry_after: None,
            usage: None,
        };
        pacer.observe(ok, sec(2.0));
        assert_eq!(factor(), 0.25, "growth waits a second after a cut");
        pacer.observe(ok, sec(3.5));
        assert!((factor() - 0.35).abs() < 1e-9, "{}", factor());
        let busy = Usage {
            ratio: 0.9,
            regain_access: Some(Duration::from_secs(60)),
        };
        let high = Answer {
            class: None,
            retry_after: None,
            usage: Some(&busy),
        };
        pacer.observe(high, sec(4.0));
        assert!(
            (factor() - 0.35).abs() < 1e-9,
            "usage is not a slow-down code"
        );
        let (_, paused) = pacer.plan(100, 1, sec(4.0));
        assert_eq!(
            paused,
            Some(Duration::from_secs(60)),
            "regain access pauses the page"
        );
        assert_eq!(pacer.plan(100, 1, sec(64.0)).1, None);
    }

    #[test]
    fn a_campaign_cap_lowers_its_page_until_forgotten() {
        let t0 = Instant::now();
        let pacer = Pacers::new(
            PageRates::default(),
            Duration::from_secs(10),
            Metrics::new(),
        )
        .pacer("1");
        assert_eq!(pacer.plan(250, 1, t0).0, 245.0);
        assert_eq!(pacer.plan(40, 1, t0).0, 39.2);
        assert_eq!(pacer.plan(250, 1, t0 + Duration::from_secs(5)).0, 39.2);
        assert_eq!(pacer.plan(250, 1, t0 + Duration::from_secs(31)).0, 245.0);
    }

    /// (call budget used, share of the ceiling left): the budget only slows a page once it
    /// is three quarters spent, and then in proportion to what is left.
    #[test]
    fn the_call_budget_slows_a_page_as_it_runs_out() {
        for (used, left) in [
            (0.0, 1.0),
            (0.75, 1.0),
            (0.8, 0.8),
            (0.9, 0.4),
            (0.995, 0.02),
            (1.2, 0.02),
        ] {
            let got = budget_share(used);
            assert!((got - left).abs() < 1e-9, "{used}: {got}");
        }
        let pacer = Pacers::new(
            PageRates::default(),
            Duration::from_secs(10),
            Metrics::new(),
        )
        .pacer("1");
        let t0 = Instant::now();
        let usage = Usage {
            ratio: 0.9,
            regain_access: None,
        };
        let answer = |usage| Answer {
            class: None,
            retry_after: None,
            usage,
        };
        pacer.observe(answer(Some(&usage)), t0);
        assert!((pacer.plan(250, 1, t0).0 - 98.0).abs() < 1e-9, "0.4 × 245");
        pacer.observe(answer(None), t0);
        assert_eq!(pacer.plan(250, 1, t0).0, 245.0, "no header: low usage");
    }

    /// Twenty bulk jobs queue at a page's limiter (about 100/s), then three priority ones
    /// arrive: they go through right after the bulk job already at the limiter (and at most
    /// one more that was on its way), not after the other waiting ones.
    #[tokio::test]
    async fn priority_jobs_pass_the_waiting_bulk_jobs() {
        let rates = PageRates {
            default_ceiling: 100,
            ..PageRates::default()
        };
        let pacers = Arc::new(Pacers::new(rates, Duration::from_secs(10), Metrics::new()));
        let order = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let admit = |name: &'static str, priority: Priority| {
            let (pacers, order, stop) = (pacers.clone(), order.clone(), stop.clone());
            tokio::spawn(async move {
                let admission = pacers.admit("1", 1_000, priority, &stop).await;
                assert!(matches!(admission, Admission::Go(_)), "{admission:?}");
                order.lock().unwrap().push(name);
            })
        };
        let mut tasks: Vec<_> = (0..20).map(|_| admit("bulk", Priority::Normal)).collect();
        tokio::time::sleep(Duration::from_millis(30)).await;
        let done_before = order.lock().unwrap().len();
        tasks.extend((0..3).map(|_| admit("priority", Priority::High)));
        for task in tasks {
            task.await.unwrap();
        }
        let order = order.lock().unwrap();
        let last_priority = order.iter().rposition(|name| *name == "priority").unwrap();
        assert!(
            last_priority <= done_before + 2 + 2,
            "{done_before} bulk jobs went before the priority ones arrived: {order:?}"
        );
    }
}
