//! The loop the ingest and results consumers share: connect, declare the topology, consume one
//! queue with manual acks, and settle each delivery (a few at once): ack after the store commit
//! (and after any control message it produced is confirmed), dead-letter poison byte for byte
//! with `x-herald-reason`, and on a store failure keep the delivery unacked, back off and try it
//! again, for as long as it takes. A lost connection is re-opened; only a broker failure that
//! reconnecting cannot fix (refused login, topology mismatch) ends the loop. What a delivery
//! means is the `Handler`'s business (`ingest.rs`, `results.rs`).

use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use herald_amqp::{AmqpError, AmqpSettings, Consumer, Delivery, Headers, Publisher, Topology};
use herald_core::ControlMessage;
use herald_store::StoreError;
use herald_telemetry::Metrics;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// First pause after a store failure; it doubles up to `STORE_BACKOFF_MAX`.
const STORE_BACKOFF_MIN: Duration = Duration::from_millis(200);
const STORE_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// First pause before reconnecting; doubles up to `RECONNECT_MAX`.
const RECONNECT_MIN: Duration = Duration::from_secs(1);
const RECONNECT_MAX: Duration = Duration::from_secs(30);
/// A session that lasted this long resets the reconnect pause.
const HEALTHY_SESSION: Duration = Duration::from_secs(60);

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

/// What to do with one delivery.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Applied: publish these control messages (confirmed), then ack.
    Done(Vec<ControlMessage>),
    /// Not something this consumer can read: dead-letter it with this reason, then ack.
    Poison(String),
    /// The store failed: keep it unacked, back off, handle it again.
    Retry(StoreError),
}

/// One consumer's meaning of a delivery.
pub(crate) trait Handler: Send + Sync {
    /// `ingest` or `results`: the `consumer` metric label and log field.
    const NAME: &'static str;

    /// Deliveries handled at once (each is one store transaction or a few; concurrent commits
    /// are what makes PostgreSQL fast). Capped by the prefetch.
    const CONCURRENCY: usize;

    /// The queue it reads.
    fn queue(topology: &Topology) -> String;

    /// Handles one delivery. `again` is true when it may have been handled before, partly or
    /// fully (the broker redelivered it, or a store failure interrupted the previous try):
    /// dedupe must then not skip work that the interrupted try may not have finished.
    fn handle(
        &self,
        body: &[u8],
        headers: &Headers,
        again: bool,
    ) -> impl Future<Output = Outcome> + Send;
}

/// Runs `handler` on its queue until `shutdown` (then `Ok`), reconnecting when the connection
/// is lost or cannot be opened.
pub(crate) async fn run<H: Handler>(
    handler: H,
    amqp: AmqpSettings,
    topology: Topology,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> Result<(), ConsumeError> {
    let session = Session {
        handler: &handler,
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
}

struct Session<'a, H> {
    handler: &'a H,
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
        let publisher = Publisher::open(connection, self.amqp.confirm_window).await?;
        let queue = H::queue(self.topology);
        let mut consumer = Consumer::start(connection, &queue, self.amqp.prefetch).await?;
        self.metrics
            .consumer_connected
            .with_label_values(&[H::NAME])
            .set(1);
        info!(consumer = H::NAME, queue = %queue, "Consuming.");
        // Up to `H::CONCURRENCY` deliveries are settled at once, each acked on its own.
        let mut in_flight = FuturesUnordered::new();
        let ended = loop {
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => break Ok(()),
                Some(settled) = in_flight.next(), if !in_flight.is_empty() => {
                    if let Err(error) = settled {
                        break Err(Ended::from(error));
                    }
                }
                next = consumer.next(), if in_flight.len() < H::CONCURRENCY => match next {
                    Some(Ok(delivery)) => in_flight.push(self.settle(&publisher, delivery)),
                    Some(Err(error)) => break Err(error.into()),
                    None => break Err(Ended::Cancelled),
                },
            }
        };
        if ended.is_ok() {
            // Store writes under way finish and are acked; one backing off gives up unacked.
            let _ = consumer.stop().await;
            while let Some(settled) = in_flight.next().await {
                if let Err(error) = settled {
                    warn!(consumer = H::NAME, error = %error,
                        "A message could not be settled at shutdown; the broker redelivers it.");
                }
            }
            drop(in_flight);
            let _ = consumer.close().await;
            let _ = publisher.close().await;
            info!(consumer = H::NAME, "Consumer stopped.");
        }
        ended
    }

    /// Handles one delivery to its ack. Returns `Ok` without acking when shutdown interrupts a
    /// store back-off: the broker redelivers it to the next consumer.
    async fn settle(&self, publisher: &Publisher, delivery: Delivery) -> Result<(), AmqpError> {
        let headers = delivery.headers();
        let mut backoff = STORE_BACKOFF_MIN;
        let mut tries = 0_u32;
        loop {
            let again = delivery.redelivered() || tries > 0;
            match self.handler.handle(delivery.body(), &headers, again).await {
                Outcome::Done(control) => {
                    for message in &control {
                        let exchange = self.topology.control_exchange();
                        let headers = Headers::new();
                        publisher
                            .publish(&exchange, "", &message.to_vec(), headers)
                            .await?
                            .await?;
                    }
                    delivery.ack().await?;
                    self.count("processed");
                    return Ok(());
                }
                Outcome::Poison(reason) => {
                    warn!(consumer = H::NAME, reason = %reason, body_bytes = delivery.body().len(),
                        "Poison message; dead-lettering it byte for byte.");
                    let headers = headers.clone().with_reason(&reason);
                    let exchange = self.topology.dead_exchange();
                    publisher
                        .publish(&exchange, "", delivery.body(), headers)
                        .await?
                        .await?;
                    delivery.ack().await?;
                    self.count("poison");
                    return Ok(());
                }
                Outcome::Retry(failure) => {
                    tries += 1;
                    self.metrics
                        .consumer_store_errors
                        .with_label_values(&[H::NAME])
                        .inc();
                    error!(consumer = H::NAME, error = %failure, cause = %causes(&failure), tries,
                        retry_in_ms = backoff.as_millis() as u64,
                        "Store failed; the message stays unacked and is tried again.");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = self.shutdown.cancelled() => return Ok(()),
                    }
                    backoff = (backoff * 2).min(STORE_BACKOFF_MAX);
                }
            }
        }
    }

    fn count(&self, outcome: &str) {
        self.metrics
            .consumer_messages
            .with_label_values(&[H::NAME, outcome])
            .inc();
    }
}

/// The error's sources, joined: sqlx's own explanation lives there.
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = String::new();
    let mut next = error.source();
    while let Some(cause) = next {
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
}
