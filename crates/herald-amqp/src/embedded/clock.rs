//! The embedded broker's clock: one thread per broker that dead-letters messages whose queue TTL
//! has passed (the retry tiers), sleeping until the next expiry or until a publish to a TTL
//! queue wakes it. A thread rather than a task, so the broker works from any runtime, or from
//! several: the producer and the workers of `herald run` may live on different ones.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::Core;

/// The longest sleep: it bounds how long the thread outlives a dropped broker.
const IDLE: Duration = Duration::from_millis(500);

/// Starts the clock of `core`; it ends on its own once the broker is dropped.
pub(crate) fn spawn(core: &Arc<Core>) {
    let weak = Arc::downgrade(core);
    let spawned = std::thread::Builder::new()
        .name("herald-embedded-clock".into())
        .spawn(move || run(&weak));
    if let Err(error) = spawned {
        tracing::error!(error = %error,
            "Cannot start the embedded broker's clock thread; retry tiers will not expire.");
    }
}

fn run(weak: &Weak<Core>) {
    while let Some(core) = weak.upgrade() {
        let next = core.with(|state| {
            state.tick = false;
            state.expire(Instant::now())
        });
        let state = core.lock();
        // A publish to a TTL queue since the expiry pass may have an earlier deadline.
        if state.tick {
            continue;
        }
        let wait = next
            .map_or(IDLE, |at| at.saturating_duration_since(Instant::now()))
            .min(IDLE);
        if wait.is_zero() {
            continue;
        }
        let (state, _) = core
            .tick
            .wait_timeout(state, wait)
            .unwrap_or_else(|e| e.into_inner());
        drop(state);
        // `core` is dropped here, so a broker nobody else holds goes away.
    }
}
