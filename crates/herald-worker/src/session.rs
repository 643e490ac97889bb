//! One broker connection's life: connect, declare the topology, replay the control log, consume
//! the priority lane and the send queue (one task per delivery, tracked), re-read the fleet
//! size, react to replaced tokens; then either drain gracefully on shutdown or give up the
//! connection when it is lost.
//! Reconnecting is the caller's loop (`lib.rs`).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use herald_amqp::{Connection, Consumer, Publisher, StreamOffset};
use herald_core::{ControlAction, ControlMessage};
use herald_telemetry::Health;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::WorkerError;
use crate::announce::announce;
use crate::context::{Link, Shared};
use crate::control;
use crate::job::handle;

/// How long replaying the control log may take before the session is abandoned.
const CONTROL_REPLAY_TIMEOUT: Duration = Duration::from_secs(60);
/// Publisher channels per session (see `Link::publishers`).
const PUBLISHER_CHANNELS: usize = 4;
/// How long closing a channel may take at shutdown.
const CHANNEL_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Control messages the stream consumer may hold unacked.
const CONTROL_PREFETCH: u16 = 256;

/// Runs one session until shutdown (`Ok`) or until the connection fails (`Err`).
pub(crate) async fn run(
    shared: &Arc<Shared>,
    health: &Health,
    shutdown: &CancellationToken,
) -> Result<(), WorkerError> {
    let settings = &shared.settings;
    let connection = herald_amqp::connect(&settings.amqp).await?;
    shared.metrics.broker_connected.set(1);
    let blocked = herald_telemetry::metrics::follow_flag(
        connection.blocked(),
        shared.metrics.broker_blocked.clone(),
    );
    let result = consume(shared, &connection, health, shutdown).await;
    health.set_ready(false);
    blocked.abort();
    shared.metrics.broker_blocked.set(0);
    shared.metrics.broker_connected.set(0);
    if connection.is_connected() && !*connection.blocked().borrow() {
        bounded(async {
            let _ = connection.close().await;
        })
        .await;
    }
    result
}

/// Runs one step of closing down for at most `CHANNEL_CLOSE_TIMEOUT`. During a memory or disk
/// alarm the broker stops reading a connection that published, so a cancel or close frame may
/// never be answered; a worker told to stop must stop anyway (its unacked jobs go back to the
/// queue when the process exits).
async fn bounded(step: impl std::future::Future<Output = ()>) {
    if tokio::time::timeout(CHANNEL_CLOSE_TIMEOUT, step)
        .await
        .is_err()
    {
        warn!(
            timeout_secs = CHANNEL_CLOSE_TIMEOUT.as_secs(),
            "The broker did not answer while closing (a resource alarm?); going on without it."
        );
    }
}

async fn consume(
    shared: &Arc<Shared>,
    connection: &Connection,
    health: &Health,
    shutdown: &CancellationToken,
) -> Result<(), WorkerError> {
    let settings = &shared.settings;
    let topology = &settings.topology;
    topology.declare(connection).await?;
    let mut publishers = Vec::with_capacity(PUBLISHER_CHANNELS);
    for _ in 0..PUBLISHER_CHANNELS {
        let publisher = Publisher::open(connection, settings.amqp.confirm_window).await?;
        publishers.push(Arc::new(publisher));
    }
    let publisher = publishers[0].clone();
    let link = Arc::new(Link {
        publishers,
        turn: std::sync::atomic::AtomicUsize::new(0),
        stop: shutdown.child_token(),
    });

    let stream = Consumer::start_stream(
        connection,
        &topology.control_log_queue(),
        CONTROL_PREFETCH,
        StreamOffset::First,
    )
    .await?;
    let (caught_up, replayed) = oneshot::channel();
    let follower_stop = CancellationToken::new();
    let mut follower = tokio::spawn(control::follow(
        stream,
        shared.control.clone(),
        publisher.clone(),
        topology.control_exchange(),
        marker_id(),
        caught_up,
        follower_stop.clone(),
    ));
    tokio::select! {
        done = replayed => if done.is_err() {
            return Err(follower_end(&mut follower).await);
        },
        () = tokio::time::sleep(CONTROL_REPLAY_TIMEOUT) => {
            follower.abort();
            return Err(WorkerError::ControlReplay);
        }
        () = shutdown.cancelled() => {
            follower.abort();
            return Ok(());
        }
    }
    let halted = shared.control.halted_pages();
    info!(halted_pages = halted.len(), "Control log replayed.");

    // The priority lane first: its jobs are served ahead of bulk ones at each page's limiter,
    // and its own consumer (own prefetch) means they never wait behind a bulk backlog here.
    let mut priority = Consumer::start(
        connection,
        &topology.priority_queue(),
        settings.amqp.prefetch,
    )
    .await?;
    let mut consumer =
        Consumer::start(connection, &topology.send_queue(), settings.amqp.prefetch).await?;
    refresh_fleet(shared, connection).await?;
    // The others re-read the fleet size every `fleet_refresh`; until each has, our share
    // would come on top of theirs.
    shared
        .pacers
        .joined(settings.fleet_refresh + Duration::from_millis(100));
    health.set_ready(true);
    info!(queue = %topology.send_queue(), prefetch = settings.amqp.prefetch,
        concurrency = settings.concurrency, "Consuming jobs.");

    let tasks = TaskTracker::new();
    let mut fleet = tokio::time::interval(settings.fleet_refresh);
    let mut tokens = settings.tokens.subscribe();
    tokens.mark_unchanged();
    let mut known_tokens = settings.tokens.snapshot();
    let ended = loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break Ok(()),
            end = &mut follower => break Err(joined(end)),
            next = priority.next() => match delivered(next) {
                Ok(delivery) => { tasks.spawn(handle(shared.clone(), link.clone(), delivery)); }
                Err(error) => break Err(error),
            },
            next = consumer.next() => match delivered(next) {
                Ok(delivery) => { tasks.spawn(handle(shared.clone(), link.clone(), delivery)); }
                Err(error) => break Err(error),
            },
            // Broker calls made here are raced with shutdown: during a resource alarm the
            // broker reads nothing from this connection and they would wait for it to clear.
            _ = fleet.tick() => {
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => break Ok(()),
                    refreshed = refresh_fleet(shared, connection) => {
                        if let Err(error) = refreshed {
                            break Err(error);
                        }
                    }
                }
            }
            Ok(()) = tokens.changed() => {
                let current = tokens.borrow_and_update().clone();
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => break Ok(()),
                    () = tokens_replaced(shared, &link, &known_tokens, &current) => {}
                }
                known_tokens = current;
            }
        }
    };
    health.set_ready(false);
    // No new deliveries; jobs not yet sending give up (unacked, so the broker redelivers them);
    // jobs mid-send finish, publish and ack within the grace period. A connection the broker
    // blocks (a resource alarm) answers nothing: its consumers are left, not cancelled.
    let blocked = || *connection.blocked().borrow();
    if !blocked() {
        bounded(async {
            let _ = priority.stop().await;
            let _ = consumer.stop().await;
        })
        .await;
    }
    link.stop.cancel();
    tasks.close();
    let grace = settings.shutdown_grace;
    let drained = tokio::time::timeout(grace, tasks.wait()).await.is_ok();
    if !drained {
        warn!(
            grace_secs = grace.as_secs(),
            "Grace period over; unacked jobs will be redelivered to another worker."
        );
    }
    if blocked() {
        warn!(
            "RabbitMQ still blocks this connection (a resource alarm): leaving without closing \
             it; the broker returns its unacked jobs to the queue when the process exits."
        );
        follower.abort();
        return ended;
    }
    if ended.is_ok() {
        // Channels are closed one by one before the connection, so nothing is cut mid-close.
        follower_stop.cancel();
        if tokio::time::timeout(CHANNEL_CLOSE_TIMEOUT, &mut follower)
            .await
            .is_err()
        {
            follower.abort();
        }
        bounded(async {
            let _ = priority.close().await;
            let _ = consumer.close().await;
            drop(publisher);
            if let Ok(link) = Arc::try_unwrap(link) {
                for publisher in link
                    .publishers
                    .into_iter()
                    .filter_map(|p| Arc::try_unwrap(p).ok())
                {
                    let _ = publisher.close().await;
                }
            }
        })
        .await;
        if drained {
            info!("Worker drained; every finished job is acked.");
        }
    } else {
        follower.abort();
    }
    ended
}

/// A consumer's next item: a delivery, or why the session ends.
fn delivered(
    next: Option<Result<herald_amqp::Delivery, herald_amqp::AmqpError>>,
) -> Result<herald_amqp::Delivery, WorkerError> {
    match next {
        Some(Ok(delivery)) => Ok(delivery),
        Some(Err(error)) => Err(error.into()),
        None => Err(WorkerError::ConsumerCancelled),
    }
}

/// Re-reads the number of consumers on the send queue; a lost connection ends the session.
async fn refresh_fleet(shared: &Shared, connection: &Connection) -> Result<(), WorkerError> {
    match connection
        .consumer_count(&shared.settings.topology.send_queue())
        .await
    {
        Ok(consumers) => {
            shared.pacers.set_consumers(consumers);
            Ok(())
        }
        Err(error) if error.is_connection_lost() => Err(error.into()),
        Err(error) => {
            warn!(error = %error, "Could not read the fleet size; keeping the last one.");
            Ok(())
        }
    }
}

/// After the tokens were replaced: pages halted here whose token changed resume, fleet-wide.
async fn tokens_replaced(
    shared: &Shared,
    link: &Link,
    before: &std::collections::BTreeMap<String, herald_core::Secret>,
    after: &std::collections::BTreeMap<String, herald_core::Secret>,
) {
    shared.control.tokens_replaced();
    for page in shared.control.halted_pages() {
        let replaced = after
            .get(&page)
            .is_some_and(|token| before.get(&page) != Some(token));
        if replaced {
            info!(page_id = %page, "Page token replaced; resuming the page.");
            shared.control.resume(&page);
            let message = ControlMessage::for_page(
                ControlAction::ResumePage,
                &page,
                Some("page token replaced".to_owned()),
            );
            announce(link.publisher(), &shared.settings.topology, &message).await;
        }
    }
}

async fn follower_end(
    follower: &mut tokio::task::JoinHandle<Result<(), herald_amqp::AmqpError>>,
) -> WorkerError {
    joined(follower.await)
}

fn joined(end: Result<Result<(), herald_amqp::AmqpError>, tokio::task::JoinError>) -> WorkerError {
    match end {
        Ok(Err(error)) => error.into(),
        Ok(Ok(())) | Err(_) => WorkerError::ConsumerCancelled,
    }
}

/// Unique to this process and session.
fn marker_id() -> String {
    format!(
        "worker-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    )
}
