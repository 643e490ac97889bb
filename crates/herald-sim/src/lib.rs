//! A faithful Graph Send API simulator for tests, demos and benchmarks; shares no code with
//! herald-graph (it owns its JSON, so a client serde bug cannot be mirrored by the fake).
//!
//! Graph side: `POST /{version}/{page-id|me}/messages` with Meta's error JSON, token and
//! `appsecret_proof` checks, content limits, per-page rate limits with usage headers, scripted
//! faults and per-recipient outcomes. Control side: `/_sim/stats`, `/_sim/messages`,
//! `/_sim/reset`, `/_sim/config`, `/_sim/pages/{id}/revoke|token`, `/_sim/inbound`, `/_sim/health`.
//! Webhook side: signed delivery/read receipts, message echoes and inbound messages POSTed to
//! `webhook_url`.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let sim = herald_sim::spawn(herald_sim::SimConfig::default(), "127.0.0.1:0".parse().unwrap()).await?;
//! let graph_url = sim.url(); // e.g. http://127.0.0.1:40123, then POST {graph_url}/v25.0/{page}/messages
//! assert_eq!(sim.stats().accepted, 0);
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

mod admin;
mod app;
mod auth;
mod body;
mod config;
mod events;
mod faults;
mod graph_error;
mod http;
mod limits;
mod live;
mod send;
mod server;
mod stats;
mod validate;
mod webhook;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

pub use crate::config::{Latency, PsidMatch, PsidOutcome, PsidRule, SimConfig};
pub use crate::stats::{AcceptedMessage, Duplicates, Stats, WebhookStats};

use crate::app::App;
use crate::events::Item;

/// A running simulator. Dropping it stops the server too; `shutdown` also waits for it.
pub struct SimHandle {
    addr: SocketAddr,
    app: Arc<App>,
    tasks: TaskTracker,
}

/// Binds `addr` (`127.0.0.1:0` picks a free port) and serves in background tasks on the current
/// runtime. Invalid settings are an `InvalidInput` error listing every problem.
pub async fn spawn(config: SimConfig, addr: SocketAddr) -> io::Result<SimHandle> {
    config
        .validate()
        .map_err(|problems| io::Error::new(io::ErrorKind::InvalidInput, problems.join("; ")))?;
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (app, events) = App::new(config, CancellationToken::new());
    let tasks = TaskTracker::new();
    tasks.spawn(webhook::run(Arc::clone(&app), events));
    tasks.spawn(server::serve(listener, Arc::clone(&app)));
    tasks.close();
    info!(%addr, "Graph API simulator listening.");
    Ok(SimHandle { addr, app, tasks })
}

/// Serves until `shutdown` completes (what `herald sim` runs), then stops gracefully.
pub async fn run(
    config: SimConfig,
    addr: SocketAddr,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let sim = spawn(config, addr).await?;
    shutdown.await;
    sim.shutdown().await;
    Ok(())
}

impl SimHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL to use as the Graph URL: `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The same numbers as `GET /_sim/stats`.
    pub fn stats(&self) -> Stats {
        self.app.state().snapshot(true)
    }

    /// Recorded accepted calls for one recipient (the PSID for `recipient.id`), oldest first.
    pub fn messages(&self, recipient: &str) -> Vec<AcceptedMessage> {
        self.app
            .state()
            .messages(Some(recipient), self.app.instance)
    }

    /// From now on every call for the page gets 190 / 460.
    pub fn revoke(&self, page_id: &str) {
        self.app.revoke(page_id);
    }

    /// Installs a new token for the page and lifts a revocation (see `POST /_sim/pages/{id}/token`).
    pub fn set_token(&self, page_id: &str, token: &str) {
        self.app.restore(page_id, token);
    }

    /// The current settings.
    pub fn config(&self) -> SimConfig {
        self.app.live().config.clone()
    }

    /// Changes the settings at run time; nothing changes if the result does not validate.
    pub fn update_config(&self, change: impl FnOnce(&mut SimConfig)) -> Result<(), Vec<String>> {
        self.app.reconfigure(|current| {
            let mut next = current.clone();
            change(&mut next);
            Ok(next)
        })
    }

    /// Clears stats, recorded messages and per-recipient state; keeps the settings.
    pub fn reset(&self) {
        self.app.state().reset();
    }

    /// Queues an inbound user message for the webhook; returns its `mid`, or `None` when no
    /// webhook is configured or the queue is full.
    pub fn inbound(
        &self,
        page_id: &str,
        psid: &str,
        text: &str,
        reference: Option<&str>,
    ) -> Option<String> {
        self.app.live().config.webhook_url.as_ref()?;
        let mid = stats::message_id(self.app.instance, self.app.state().next_mid());
        let item = Item::Message {
            page: Arc::from(page_id),
            psid: psid.to_owned(),
            mid: mid.clone(),
            text: text.to_owned(),
            reference: reference.map(str::to_owned),
            at_ms: http::unix_ms(),
        };
        self.app.enqueue(events::Event::Now(item)).then_some(mid)
    }

    /// Stops accepting, lets in-flight calls finish (held calls are dropped) and waits.
    pub async fn shutdown(self) {
        self.app.cancel.cancel();
        self.tasks.wait().await;
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.app.cancel.cancel();
    }
}
