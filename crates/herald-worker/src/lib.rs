//! The worker: consume `herald.send` with manual acks, hold back what may not be sent now (paused
//! run, halted or throttled page), pace each page to its share of the fleet's limit, send with
//! herald-graph, and settle every job by publishing its next step (result, retry tier, dead
//! letter) and acking only once the broker confirmed it. `run` owns the process-level loop:
//! reconnect after a lost connection, drain on shutdown. It never reads the store (a job that may
//! have been sent already is checked against the send ledger on `herald serve`, `verify.rs`), and
//! it never logs a PSID, a token or message text.
//!
//! ```no_run
//! # async fn demo(settings: herald_worker::WorkerSettings) -> Result<(), herald_worker::WorkerError> {
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let (metrics, health) = (herald_telemetry::Metrics::new(), herald_telemetry::Health::default());
//! herald_worker::run(settings, metrics, health, shutdown).await
//! # }
//! ```

mod announce;
mod context;
mod control;
mod failure;
mod gate;
mod job;
mod ledger;
mod pace;
mod parse;
mod plan;
mod session;
mod settings;
mod settle;
mod tokens;
mod verify;

use std::sync::Arc;

use herald_amqp::AmqpError;
use herald_graph::{BuildError, GraphClient};
use herald_telemetry::{Health, Metrics};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use herald_core::rates::{DEFAULT_PAGE_RATE_PER_SEC, PACING_SHARE, PageRates};
pub use ledger::LedgerSettings;
pub use settings::{Backoff, WorkerSettings};
pub use tokens::PageTokens;

use crate::context::Shared;
use crate::control::Control;
use crate::ledger::Ledger;
use crate::pace::Pacers;
use crate::settle::Unsettled;
use crate::verify::Verifier;

/// Why the worker stopped without being asked to.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The settings cannot work; every problem is listed.
    #[error("invalid worker settings: {}", .0.join("; "))]
    Settings(Vec<String>),
    /// The Graph client cannot be built from the settings.
    #[error("cannot build the Graph API client")]
    Graph(#[from] BuildError),
    /// A broker failure: connecting, declaring, consuming or publishing.
    #[error(transparent)]
    Amqp(#[from] AmqpError),
    /// The broker cancelled a consumer (its queue was deleted).
    #[error("the broker cancelled the consumer (was the queue deleted?)")]
    ConsumerCancelled,
    /// The control log could not be replayed in time.
    #[error("the control log was not replayed within a minute")]
    ControlReplay,
}

impl WorkerError {
    /// True when a new connection may help.
    pub fn is_recoverable(&self) -> bool {
        match self {
            Self::Amqp(error) => error.is_connection_lost() || error.is_retryable(),
            Self::ConsumerCancelled | Self::ControlReplay => true,
            Self::Settings(_) | Self::Graph(_) => false,
        }
    }
}

/// Runs the worker until `shutdown` is cancelled (then drains and returns `Ok`). The first
/// connection must succeed (within `amqp.connect_attempts`); after that a lost connection is
/// re-established for as long as it takes, with unacked jobs redelivered by the broker.
pub async fn run(
    settings: WorkerSettings,
    metrics: Metrics,
    health: Health,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    settings.validate().map_err(WorkerError::Settings)?;
    // Every concurrent send keeps its connection: a smaller idle pool would open and close
    // connections all the time at full concurrency.
    let mut graph = settings.graph.clone();
    graph.max_idle_per_host = graph.max_idle_per_host.max(settings.concurrency);
    let graph = GraphClient::new(graph)?;
    let shared = Arc::new(Shared {
        graph,
        control: Arc::new(Control::new(metrics.clone())),
        pacers: Pacers::new(
            settings.rates.clone(),
            settings.max_rate_wait,
            metrics.clone(),
        ),
        sends: Semaphore::new(settings.concurrency),
        unsettled: Unsettled::default(),
        verifier: Verifier::new(settings.ledger.as_ref().and_then(Ledger::new)),
        metrics,
        settings,
    });
    let mut connected_before = false;
    loop {
        let started = std::time::Instant::now();
        match session::run(&shared, &health, &shutdown).await {
            Ok(()) => return Ok(()),
            Err(error) if !error.is_recoverable() => return Err(error),
            Err(error) if !connected_before && is_connect_failure(&error) => return Err(error),
            Err(error) => {
                warn!(error = %error, "Broker session ended; reconnecting.");
                // A session that failed at once waits before the next try; a long one retries now.
                let pause = if started.elapsed() < shared.settings.reconnect_delay * 5 {
                    shared.settings.reconnect_delay
                } else {
                    std::time::Duration::ZERO
                };
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = shutdown.cancelled() => {
                        info!("Shutdown requested while reconnecting.");
                        return Ok(());
                    }
                }
            }
        }
        connected_before = true;
    }
}

fn is_connect_failure(error: &WorkerError) -> bool {
    matches!(
        error,
        WorkerError::Amqp(AmqpError::Connect { .. } | AmqpError::ConnectTimeout { .. })
    )
}
