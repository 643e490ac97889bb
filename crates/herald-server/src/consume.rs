//! The loop the ingest and results consumers share: connect, declare the topology, consume one
//! queue with manual acks, and store what the deliveries say in batches. A lost connection is
//! re-opened; only a broker failure that reconnecting cannot fix (refused login, topology
//! mismatch) ends the loop. What a delivery means is the `Handler`'s business (`ingest.rs`,
//! `results.rs`, the trait in `handler.rs`); the lanes that batch its writes are `lane.rs`.
//!
//! The flow of one delivery:
//! - `Handler::read` turns its bytes into items (a result, the events of a webhook body), or
//!   says why it is poison: then it is dead-lettered byte for byte with `x-herald-reason` and
//!   acked.
//! - Each item goes to the lane its `Handler::lane_key` picks. A lane writes what is queued in it
//!   as one store transaction (up to `BATCH_MAX` items), so items with the same key are written
//!   in the order their deliveries arrived, and different keys proceed in parallel.
//! - When every item of a delivery is committed (and any control message the items produced is
//!   confirmed by the broker), the delivery is acked. Acks of a batch go out together, and the
//!   broker port coalesces them into `multiple` acks.
//! - A store failure keeps the whole batch unacked; the lane backs off and writes it again, for
//!   as long as it takes. A failure that can never succeed (the database refuses the data) is
//!   narrowed down by halving the batch: the refused item's delivery is dead-lettered with the
//!   reason, the others are stored.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use herald_amqp::{AmqpError, AmqpSettings, Consumer, Delivery, Publisher, Topology};
use herald_telemetry::Metrics;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::handler::{Entry, Handler, Pending};
use crate::lane::Lane;

/// First pause before reconnecting; doubles up to `RECONNECT_MAX`.
const RECONNECT_MIN: Duration = Duration::from_secs(1);
const RECONNECT_MAX: Duration = Duration::from_secs(30);
/// A session that lasted this long resets the reconnect pause.
const HEALTHY_SESSION: Duration = Duration::from_secs(60);
/// Deliveries the broker may hand this consumer before it acks any: enough to fill every lane's
/// next batch while the current one commits.
const PREFETCH: u16 = 2_000;

/// Why a consumer stopped without being asked to. Carries no secret (broker errors never hold
/// the URL).
#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    /// A broker failure that reconnecting cannot fix: refused credentials, an invalid URL, a
    /// queue declared with other arguments.
    #[error("the {consumer} consumer stopped: {error}")]
    Broker {
        /// `ingest` or `results`.
        consumer: &'static str,
        /// The broker's failure.
        error: AmqpError,
    },
}

/// What a consumer runs on: the broker, its names, the metrics and the shutdown signal.
pub(crate) struct Wiring {
    pub(crate) amqp: AmqpSettings,
    pub(crate) topology: Topology,
    pub(crate) metrics: Metrics,
    pub(crate) shutdown: CancellationToken,
}

/// Runs `handler` on its queue until `shutdown` (then `Ok`), reconnecting when the connection
/// is lost or cannot be opened.
pub(crate) async fn run<H: Handler>(handler: H, wiring: Wiring) -> Result<(), ConsumeError> {
    let Wiring {
        amqp,
        topology,
        metrics,
        shutdown,
    } = wiring;
    let session = Session {
        handler: Arc::new(handler),
        amqp: &amqp,
        topology: &topology,
        metrics: &metrics,
        shutdown: &shutdown,
    };
    let connected = metrics.consumer_connected.with_label_values(&[H::NAME]);
    let mut pause = RECONNECT_MIN;
    loop {
        let started = std::time::Instant::now();
        let ended = session.run().await;
        connected.set(0);
        match ended {
            Ok(()) => return Ok(()),
            Err(Ended::Broker(error)) if !(error.is_connection_lost() || error.is_retryable()) => {
                error!(consumer = H::NAME, error = %error, "Consumer stopped: the broker refused it.");
                return Err(ConsumeError::Broker {
                    consumer: H::NAME,
                    error,
                });
            }
            Err(ended) => {
                if started.elapsed() >= HEALTHY_SESSION {
                    pause = RECONNECT_MIN;
                }
                warn!(consumer = H::NAME, error = %ended, retry_in_ms = pause.as_millis() as u64,
                    "Consumer lost the broker; reconnecting.");
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = shutdown.cancelled() => return Ok(()),
                }
                pause = (pause * 2).min(RECONNECT_MAX);
            }
        }
    }
}

/// How a session ended, when not by shutdown.
#[derive(Debug, thiserror::Error)]
enum Ended {
    #[error(transparent)]
    Broker(#[from] AmqpError),
    /// The broker cancelled the consumer (its queue was deleted); the next session re-declares it.
    #[error("the broker cancelled the consumer (was the queue deleted?)")]
    Cancelled,
    /// A lane task panicked: a bug, logged; the session starts over.
    #[error("a store lane failed: {0}")]
    Lane(String),
}

struct Session<'a, H> {
    handler: Arc<H>,
    amqp: &'a AmqpSettings,
    topology: &'a Topology,
    metrics: &'a Metrics,
    shutdown: &'a CancellationToken,
}

impl<H: Handler> Session<'_, H> {
    /// One connection's life; `Ok` on shutdown.
    async fn run(&self) -> Result<(), Ended> {
        let connection = tokio::select! {
            connection = herald_amqp::connect(self.amqp) => connection?,
            () = self.shutdown.cancelled() => return Ok(()),
        };
        let result = self.consume(&connection).await;
        if connection.is_connected() {
            let _ = connection.close().await;
        }
        result
    }

    async fn consume(&self, connection: &herald_amqp::Connection) -> Result<(), Ended> {
        self.topology.declare(connection).await?;
        let publisher = Arc::new(Publisher::open(connection, self.amqp.confirm_window).await?);
        let queue = H::queue(self.topology);
        let prefetch = PREFETCH.max(self.amqp.prefetch);
        let mut consumer = Consumer::start(connection, &queue, prefetch).await?;
        self.metrics
            .consumer_connected
            .with_label_values(&[H::NAME])
            .set(1);
        info!(consumer = H::NAME, queue = %queue, lanes = self.handler.lanes(), "Consuming.");
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Arc<Pending>>();
        let mut lanes = Vec::new();
        let mut lane_tasks = JoinSet::new();
        for _ in 0..self.handler.lanes().max(1) {
            let (tx, lane) = Lane::new(
                self.handler.clone(),
                publisher.clone(),
                self.topology.control_exchange(),
                self.metrics.clone(),
                done_tx.clone(),
                self.shutdown.clone(),
            );
            lanes.push(tx);
            lane_tasks.spawn(lane.run());
        }
        drop(done_tx);
        // Acks and dead letters under way.
        let mut settling = FuturesUnordered::new();
        let ended = loop {
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => break Ok(()),
                Some(lane) = lane_tasks.join_next() => break Err(lane_ended(lane)),
                Some(pending) = done_rx.recv() => settling.push(self.settle(&publisher, pending)),
                Some(settled) = settling.next(), if !settling.is_empty() => {
                    if let Err(error) = settled {
                        break Err(Ended::from(error));
                    }
                }
                next = consumer.next() => match next {
                    Some(Ok(delivery)) => {
                        if let Some(pending) = self.dispatch(&lanes, delivery) {
                            settling.push(self.settle(&publisher, pending));
                        }
                    }
                    Some(Err(error)) => break Err(error.into()),
                    None => break Err(Ended::Cancelled),
                },
            }
        };
        if ended.is_ok() {
            // Writes under way finish and are acked; a lane backing off gives up unacked.
            let _ = consumer.stop().await;
            drop(lanes);
            while let Some(lane) = lane_tasks.join_next().await {
                if let Ok(Err(error)) = lane {
                    warn!(consumer = H::NAME, error = %error,
                        "A batch could not be settled at shutdown; the broker redelivers it.");
                }
            }
            while let Some(pending) = done_rx.recv().await {
                settling.push(self.settle(&publisher, pending));
            }
            while let Some(settled) = settling.next().await {
                if let Err(error) = settled {
                    warn!(consumer = H::NAME, error = %error,
                        "A message could not be settled at shutdown; the broker redelivers it.");
                }
            }
            drop(settling);
            let _ = consumer.close().await;
            // Every lane is gone, so this is the last handle.
            if let Ok(publisher) = Arc::try_unwrap(publisher) {
                let _ = publisher.close().await;
            }
            info!(consumer = H::NAME, "Consumer stopped.");
        }
        ended
    }

    /// Reads a delivery and queues its items in their lanes. Returns it when it can be settled
    /// at once (poison, or nothing to store).
    fn dispatch(
        &self,
        lanes: &[mpsc::UnboundedSender<Entry<H::Item>>],
        delivery: Delivery,
    ) -> Option<Arc<Pending>> {
        let ticket = self.handler.in_flight().open();
        let items = match self.handler.read(delivery.body(), &delivery.headers()) {
            Ok(items) => items,
            Err(reason) => return Some(Pending::new(delivery, 0, Some(reason), ticket)),
        };
        if items.is_empty() {
            return Some(Pending::new(delivery, 0, None, ticket));
        }
        let pending = Pending::new(delivery, items.len(), None, ticket);
        let again = pending.redelivered();
        for item in items {
            let lane = (H::lane_key(&item) % lanes.len() as u64) as usize;
            // A lane only ends with the session, which then drops this delivery unacked.
            let _ = lanes[lane].send(Entry::new(item, again, pending.clone()));
        }
        None
    }

    /// Acks a delivery whose items are all stored, or dead-letters it (then acks) when it is
    /// poison.
    async fn settle(&self, publisher: &Publisher, pending: Arc<Pending>) -> Result<(), AmqpError> {
        let delivery = &pending.delivery;
        match pending.poison_reason() {
            None => {
                delivery.ack().await?;
                self.count("processed");
            }
            Some(reason) => {
                warn!(consumer = H::NAME, reason = %reason, body_bytes = delivery.body().len(),
                    "Poison message; dead-lettering it byte for byte.");
                let headers = delivery.headers().with_reason(&reason);
                let exchange = self.topology.dead_exchange();
                publisher
                    .publish(&exchange, "", delivery.body(), headers)
                    .await?
                    .await?;
                delivery.ack().await?;
                self.count("poison");
            }
        }
        Ok(())
    }

    fn count(&self, outcome: &str) {
        self.metrics
            .consumer_messages
            .with_label_values(&[H::NAME, outcome])
            .inc();
    }
}

/// Why a lane task ended while the session was running.
fn lane_ended(ended: Result<Result<(), AmqpError>, tokio::task::JoinError>) -> Ended {
    match ended {
        Ok(Ok(())) => Ended::Lane("a lane stopped early".to_owned()),
        Ok(Err(error)) => Ended::Broker(error),
        Err(panic) => {
            error!(error = %panic, "A store lane panicked; restarting the consumer.");
            Ended::Lane(panic.to_string())
        }
    }
}
