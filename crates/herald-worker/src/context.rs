//! What the deliveries share: `Shared`, for every delivery of every session (settings, the
//! Graph client, metrics, control state, pacers, the concurrency bound, the verifier), and
//! `Link`, for the deliveries of one broker connection (its publishers and stop signal). The
//! job pipeline that uses them is `job.rs`; sessions that build them are `session.rs`.

use std::sync::Arc;

use herald_amqp::Publisher;
use herald_graph::GraphClient;
use herald_telemetry::Metrics;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::WorkerSettings;
use crate::control::Control;
use crate::pace::Pacers;
use crate::settle::Unsettled;
use crate::verify::Verifier;

/// What every delivery of every session shares.
pub(crate) struct Shared {
    pub(crate) settings: WorkerSettings,
    pub(crate) graph: GraphClient,
    pub(crate) metrics: Metrics,
    pub(crate) control: Arc<Control>,
    pub(crate) pacers: Pacers,
    pub(crate) sends: Semaphore,
    pub(crate) unsettled: Unsettled,
    pub(crate) verifier: Verifier,
}

/// What the deliveries of one broker connection share.
pub(crate) struct Link {
    /// Confirmed publishers on channels of their own, used in turn: a publisher's confirms wait
    /// behind everything queued on its channel, so one deep channel makes every ack late.
    pub(crate) publishers: Vec<Arc<Publisher>>,
    pub(crate) turn: std::sync::atomic::AtomicUsize,
    /// Cancelled when the session ends: jobs not yet sending give up and stay unacked.
    pub(crate) stop: CancellationToken,
}

impl Link {
    /// The next publisher in turn.
    pub(crate) fn publisher(&self) -> &Publisher {
        let turn = self.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        &self.publishers[turn % self.publishers.len()]
    }
}
