//! `freshness`: whether the store has caught up with what this serve was handed, so the send
//! ledger can tell "the store has no record of this job" from "its record is still on its way".
//!
//! A job's result travels worker → `results.store` queue → results consumer → store, and Meta's
//! echo of its message travels Meta → webhook → events queue → ingest → store. Under load, or
//! after a broker node is lost, either can take longer than a worker's echo horizon. The ledger
//! therefore says a lookup is *current* only when:
//! - the webhook has refused no delivery lately (Meta holds a refused delivery and retries it
//!   later, so an echo may still be on its way from Meta: `REFUSAL_MEMORY`), and serve did not
//!   start lately (whatever Meta sent while it was down was refused too);
//! - both queues hold no ready message (everything published before the check has reached a
//!   consumer), checked on a broker connection kept for the purpose, one check at a time shared
//!   by the lookups waiting for it;
//! - every delivery this process's consumers held when the check began is committed (waited for,
//!   up to `BARRIER_WAIT`).
//!
//! What it cannot see: a batch another `serve` process holds uncommitted at that moment (its
//! commit takes milliseconds, far less than the horizon the worker already waited).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_amqp::Connection;
use herald_core::clock::now_ms;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::ops::Broker;

/// How long after the webhook refused a delivery lookups are not current.
const REFUSAL_MEMORY: Duration = Duration::from_secs(30);
/// Longest wait for the deliveries in hand to be committed. With the queue check, a lookup
/// stays well inside a worker's ledger timeout (5 s by default).
const BARRIER_WAIT: Duration = Duration::from_secs(1);
/// How long a delivery may take from the broker to the consumer loop, which numbers it.
const HANDOVER_GAP: Duration = Duration::from_millis(100);
/// Longest wait for the broker to answer the queue check.
const PROBE_WAIT: Duration = Duration::from_millis(500);

/// The deliveries one consumer holds (received, not yet acked), numbered in arrival order.
pub struct InFlight {
    state: Mutex<Open>,
    /// The lowest number still open (or the next to be given when none is).
    low: watch::Sender<u64>,
}

struct Open {
    next: u64,
    open: BTreeSet<u64>,
}

/// One delivery in hand; dropping it (acked, or given back with its session) closes it.
pub(crate) struct Ticket {
    seq: u64,
    owner: Arc<InFlight>,
}

impl InFlight {
    /// A tracker with nothing in hand.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(Open {
                next: 0,
                open: BTreeSet::new(),
            }),
            low: watch::Sender::new(0),
        })
    }

    /// Opens a ticket for a delivery just received.
    pub(crate) fn open(self: &Arc<Self>) -> Ticket {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let seq = state.next;
        state.next += 1;
        state.open.insert(seq);
        Ticket {
            seq,
            owner: self.clone(),
        }
    }

    fn close(&self, seq: u64) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        state.open.remove(&seq);
        let low = state.open.first().copied().unwrap_or(state.next);
        // Waiters wake only when the low mark moves, not on every delivery.
        self.low.send_if_modified(|current| {
            let moved = *current != low;
            *current = low;
            moved
        });
    }

    /// A mark that `passed` waits for: every delivery received before now is numbered below it.
    fn mark(&self) -> u64 {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .next
    }

    /// Waits (up to `within`) until every delivery numbered below `mark` is closed.
    async fn passed(&self, mark: u64, within: Duration) -> bool {
        let mut low = self.low.subscribe();
        matches!(
            tokio::time::timeout(within, low.wait_for(|low| *low >= mark)).await,
            Ok(Ok(_))
        )
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.owner.close(self.seq);
    }
}

/// When the webhook last refused a delivery.
#[derive(Debug, Default)]
pub struct Refusals {
    /// Epoch milliseconds; 0: never.
    last_ms: AtomicI64,
}

impl Refusals {
    pub(crate) fn note(&self) {
        self.last_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// True when the last refusal is less than `memory` ago.
    fn within(&self, memory: Duration) -> bool {
        let last = self.last_ms.load(Ordering::Relaxed);
        let memory = herald_core::clock::millis(memory);
        last > 0 && now_ms().saturating_sub(last) < memory
    }
}

/// What the ledger consults before it says "no record".
#[derive(Clone)]
pub struct Freshness {
    results: Arc<InFlight>,
    ingest: Arc<InFlight>,
    refusals: Arc<Refusals>,
    /// The queue check, shared by concurrent lookups.
    probe: Arc<tokio::sync::Mutex<Probe>>,
}

impl Freshness {
    /// Freshness of a serve whose webhook notes its refusals in `refusals`.
    pub fn new(refusals: Arc<Refusals>) -> Self {
        Self {
            results: InFlight::new(),
            ingest: InFlight::new(),
            refusals,
            probe: Arc::new(tokio::sync::Mutex::new(Probe::default())),
        }
    }

    /// The results consumer's deliveries in hand.
    pub fn results(&self) -> Arc<InFlight> {
        self.results.clone()
    }

    /// The ingest consumer's deliveries in hand.
    pub fn ingest(&self) -> Arc<InFlight> {
        self.ingest.clone()
    }

    /// True when everything handed to this serve before now is in the store (see the module
    /// docs for what that means and what it cannot see).
    pub(crate) async fn current(&self, broker: &Broker) -> bool {
        if self.refusals.within(REFUSAL_MEMORY) {
            return false;
        }
        if !self.queues_empty(broker).await {
            return false;
        }
        // What the broker handed the consumers before the check may still be on its way into
        // their loops (the socket, lapin's buffer): give it a moment to get a ticket.
        tokio::time::sleep(HANDOVER_GAP).await;
        let (results, ingest) = (self.results.mark(), self.ingest.mark());
        let (results, ingest) = tokio::join!(
            self.results.passed(results, BARRIER_WAIT),
            self.ingest.passed(ingest, BARRIER_WAIT)
        );
        results && ingest
    }

    /// True when both record queues held no ready message at a check that began after this
    /// call did; false when the broker cannot say. Concurrent lookups share checks: whoever
    /// holds the probe checks for everyone who arrived before it began.
    async fn queues_empty(&self, broker: &Broker) -> bool {
        let arrived = Instant::now();
        let mut probe = self.probe.lock().await;
        if let Some((began, empty)) = probe.last
            && began >= arrived
        {
            return empty;
        }
        let began = Instant::now();
        let empty = probe.check(broker).await;
        probe.last = Some((began, empty));
        empty
    }
}

/// The broker connection the queue check uses, and its last answer.
#[derive(Default)]
struct Probe {
    connection: Option<Connection>,
    /// When the last check began, and whether both queues were empty.
    last: Option<(Instant, bool)>,
}

impl Probe {
    async fn check(&mut self, broker: &Broker) -> bool {
        if self
            .connection
            .as_ref()
            .is_none_or(|connection| !connection.is_connected())
        {
            self.connection = tokio::time::timeout(PROBE_WAIT, herald_amqp::connect(&broker.amqp))
                .await
                .ok()
                .and_then(Result::ok);
        }
        let Some(connection) = self.connection.as_ref() else {
            return false;
        };
        let queues = [
            broker.topology.results_store_queue(),
            broker.topology.events_ingest_queue(),
        ];
        for queue in &queues {
            match tokio::time::timeout(PROBE_WAIT, connection.message_count(queue)).await {
                Ok(Ok(0)) => {}
                Ok(Ok(_)) => return false,
                _ => {
                    self.connection = None;
                    return false;
                }
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_remembered_for_a_while() {
        let refusals = Refusals::default();
        assert!(!refusals.within(Duration::from_secs(30)));
        refusals.note();
        assert!(refusals.within(Duration::from_secs(30)));
        refusals.last_ms.store(now_ms() - 31_000, Ordering::Relaxed);
        assert!(!refusals.within(Duration::from_secs(30)));
    }

    /// On tokio's paused clock: a wait that cannot succeed runs its whole minute at once.
    #[tokio::test(start_paused = true)]
    async fn a_mark_is_passed_when_every_earlier_delivery_is_closed() {
        let minute = Duration::from_secs(60);
        let tracker = InFlight::new();
        let first = tracker.open();
        let second = tracker.open();
        let mark = tracker.mark();
        let later = tracker.open();
        let started = tokio::time::Instant::now();
        assert!(!tracker.passed(mark, minute).await);
        assert_eq!(started.elapsed(), minute, "waited its whole time");
        drop(second);
        assert!(!tracker.passed(mark, minute).await);
        let closed = tokio::time::Instant::now();
        // The wait ends when the last earlier delivery closes, not at its deadline.
        let waiting = tracker.passed(mark, minute);
        let closing = async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(first);
        };
        let (passed, ()) = tokio::join!(waiting, closing);
        assert!(passed);
        assert_eq!(closed.elapsed(), Duration::from_secs(5));
        // A delivery received after the mark does not hold it back.
        assert!(tracker.passed(mark, minute).await);
        drop(later);
        assert!(tracker.passed(tracker.mark(), Duration::ZERO).await);
    }
}
