//! `App`: what every handler shares — the live configuration snapshot, the state mutex, the
//! webhook queue and the shutdown token. It owns how these are reached and replaced, not what the
//! handlers do with them.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::SimConfig;
use crate::events::{self, Event};
use crate::live::Live;
use crate::stats::State;

/// Shared by the accept loop, every connection and the webhook task.
pub(crate) struct App {
    live: RwLock<Arc<Live>>,
    state: Mutex<State>,
    webhook: mpsc::Sender<Event>,
    /// Random per simulator, so message ids differ between runs.
    pub(crate) instance: u32,
    pub(crate) cancel: CancellationToken,
}

impl App {
    /// The app and the receiving end of its webhook queue.
    pub(crate) fn new(
        config: SimConfig,
        cancel: CancellationToken,
    ) -> (Arc<Self>, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel(events::QUEUE);
        let app = Self {
            live: RwLock::new(Arc::new(Live::new(config, HashSet::new()))),
            state: Mutex::new(State::default()),
            webhook: tx,
            instance: rand::random(),
            cancel,
        };
        (Arc::new(app), rx)
    }

    /// The current configuration; cheap (an `Arc` clone under a read lock).
    pub(crate) fn live(&self) -> Arc<Live> {
        Arc::clone(&self.live.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The state; hold the guard briefly and never across an `.await`.
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces the configuration with `change(current)`, keeping revocations, or reports why not.
    pub(crate) fn reconfigure(
        &self,
        change: impl FnOnce(&SimConfig) -> Result<SimConfig, Vec<String>>,
    ) -> Result<(), Vec<String>> {
        let mut live = self.live.write().unwrap_or_else(PoisonError::into_inner);
        let next = change(&live.config)?;
        next.validate()?;
        *live = Arc::new(Live::new(next, live.revoked().clone()));
        Ok(())
    }

    /// From now on every call for the page gets 190/460.
    pub(crate) fn revoke(&self, page_id: &str) {
        let mut live = self.live.write().unwrap_or_else(PoisonError::into_inner);
        let mut revoked = live.revoked().clone();
        revoked.insert(page_id.to_owned());
        *live = Arc::new(Live::new(live.config.clone(), revoked));
    }

    /// Installs a new token for the page and lifts its revocation. Without configured tokens
    /// (any token valid) it only lifts the revocation, so other pages keep working.
    pub(crate) fn restore(&self, page_id: &str, token: &str) {
        let mut live = self.live.write().unwrap_or_else(PoisonError::into_inner);
        let mut config = live.config.clone();
        if !config.tokens.is_empty() {
            config.tokens.insert(page_id.to_owned(), token.to_owned());
        }
        let mut revoked = live.revoked().clone();
        revoked.remove(page_id);
        *live = Arc::new(Live::new(config, revoked));
    }

    /// Queues a webhook event; a full queue drops it and counts the drop.
    pub(crate) fn enqueue(&self, event: Event) -> bool {
        let queued = self.webhook.try_send(event).is_ok();
        if !queued {
            self.state().webhook.events_dropped += 1;
        }
        queued
    }
}
