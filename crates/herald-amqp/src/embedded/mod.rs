//! The embedded broker: RabbitMQ's semantics as Herald uses them, in this process, for
//! `herald run`, `herald demo` and tests of the pipeline logic. Direct, topic and fanout
//! exchanges as the topology declares them; queues with manual acks, prefetch, nack and requeue;
//! per-queue message TTL dead-lettering to `x-dead-letter-exchange` (the retry tiers back to
//! `<p>.jobs`/`send`); a stream replayable from its first message (`<p>.control.log`); mandatory
//! publishes with no route returned as `AmqpError::Returned`; confirms settled at once.
//!
//! **Nothing survives the process.** Messages live in memory only: a crash or an exit loses
//! every queued job, retry and result. That is what RabbitMQ is for; tests of delivery
//! guarantees use RabbitMQ.
//!
//! Not modelled: persistence, queue length limits other than a stream's byte cap, priorities,
//! `x-death` (only the `x-first-death-*` headers are set), exclusive and auto-delete queues,
//! headers exchanges, and quorum queues' delivery limit. A dead-lettered message with no route is
//! dropped (and logged) rather than kept in its queue.
//!
//! The rest of Herald never sees this module: `AmqpSettings::embedded(&broker)` makes
//! `connect` return a `Connection` to it, and `Publisher`, `Consumer`, `Delivery` and
//! `Topology::declare` dispatch to it.

mod clock;
mod consumer;
mod exchange;
mod publisher;
mod queue;
mod state;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

pub(crate) use consumer::{EmbeddedConsumer, EmbeddedDelivery, Settle};
pub(crate) use publisher::EmbeddedPublisher;

use crate::{AmqpError, BrokerAddress, Topology};
use state::State;

/// How an embedded broker differs from RabbitMQ on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbeddedSettings {
    /// Every queue's message TTL is divided by this, so the retry tiers wait 5 s / N, 30 s / N,
    /// and so on. 1 (the default) keeps RabbitMQ's timing; tests of retries use e.g. 100 (the
    /// 5 s tier then waits 50 ms). Values below 1 count as 1.
    pub ttl_divisor: u32,
    /// A publish waits while a queue it routes to holds this many ready messages, as RabbitMQ's
    /// flow control blocks a publisher, so memory stays bounded when the producer outruns the
    /// workers (`herald run` of a large segment). Messages moved by the broker itself (TTL
    /// dead-lettering) never wait. Streams are not counted. Default 100,000; values below 1
    /// count as 1.
    pub max_queue_messages: usize,
}

impl Default for EmbeddedSettings {
    fn default() -> Self {
        Self {
            ttl_divisor: 1,
            max_queue_messages: 100_000,
        }
    }
}

/// An in-process broker. Clones share it; it lives while a clone or a connection to it does.
#[derive(Clone)]
pub struct EmbeddedBroker {
    core: Arc<Core>,
}

/// The broker's state and the clock's wake-up signal.
pub(crate) struct Core {
    state: Mutex<State>,
    /// Signalled when a TTL queue gets a message (`clock.rs` sleeps on it).
    tick: Condvar,
    /// Notified when messages leave a queue: publishers waiting for room try again.
    space: tokio::sync::Notify,
    settings: EmbeddedSettings,
    ids: AtomicU64,
}

/// One connection to an embedded broker; closing it drops its consumers (their unacked
/// messages are requeued) and makes its publishers unusable.
#[derive(Clone)]
pub(crate) struct EmbeddedConnection {
    core: Arc<Core>,
    id: u64,
    open: Arc<AtomicBool>,
}

impl EmbeddedBroker {
    /// A broker with RabbitMQ's timing.
    pub fn new() -> Self {
        Self::with_settings(EmbeddedSettings::default())
    }

    /// A broker with `settings` (e.g. shorter retry tiers for tests).
    pub fn with_settings(settings: EmbeddedSettings) -> Self {
        let core = Arc::new(Core {
            state: Mutex::new(State::default()),
            tick: Condvar::new(),
            space: tokio::sync::Notify::new(),
            settings: EmbeddedSettings {
                ttl_divisor: settings.ttl_divisor.max(1),
                max_queue_messages: settings.max_queue_messages.max(1),
            },
            ids: AtomicU64::new(1),
        });
        clock::spawn(&core);
        Self { core }
    }

    /// Its settings.
    pub fn settings(&self) -> EmbeddedSettings {
        self.core.settings
    }

    /// A new connection; what `connect` returns for `AmqpSettings::embedded(&broker)`.
    pub fn connect(&self) -> crate::Connection {
        let connection = EmbeddedConnection {
            core: self.core.clone(),
            id: self.core.next_id(),
            open: Arc::new(AtomicBool::new(true)),
        };
        crate::Connection::embedded(connection)
    }
}

impl Default for EmbeddedBroker {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for EmbeddedBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.core.lock();
        f.debug_struct("EmbeddedBroker")
            .field("settings", &self.core.settings)
            .field("exchanges", &state.exchanges.len())
            .field("queues", &state.queues.len())
            .field("consumers", &state.consumers.len())
            .finish()
    }
}

impl Core {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` with the lock held, then (lock released) wakes the tasks it made runnable, the
    /// clock if a TTL queue changed, and publishers waiting for room if messages left a queue.
    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut state = self.lock();
        let out = f(&mut state);
        let wake = std::mem::take(&mut state.wake);
        let tick = state.tick;
        let freed = std::mem::take(&mut state.freed);
        drop(state);
        if tick {
            self.tick.notify_one();
        }
        if freed {
            self.space.notify_waiters();
        }
        for waker in wake {
            waker.wake();
        }
        out
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }
}

impl EmbeddedConnection {
    /// What logs show for an embedded connection.
    pub(crate) fn address() -> BrokerAddress {
        BrokerAddress {
            host: "embedded".to_owned(),
            port: 0,
            vhost: "/".to_owned(),
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        self.open.load(Ordering::Relaxed)
    }

    /// A closed connection fails like lapin's: the connection is lost, reconnect.
    pub(crate) fn check_open(&self) -> Result<(), AmqpError> {
        if self.is_open() {
            return Ok(());
        }
        let closed = lapin::ErrorKind::InvalidConnectionState(lapin::ConnectionState::Closed);
        Err(AmqpError::amqp("channel.open")(closed.into()))
    }

    pub(crate) fn close(&self) {
        if self.open.swap(false, Ordering::Relaxed) {
            self.core.with(|state| state.close_connection(self.id));
        }
    }

    pub(crate) fn declare(&self, topology: &Topology) -> Result<(), AmqpError> {
        self.check_open()?;
        let divisor = self.core.settings.ttl_divisor;
        self.core.with(|state| {
            for (name, kind) in topology.exchanges() {
                state.declare_exchange(&name, &kind)?;
            }
            for (name, arguments) in topology.queues() {
                state.declare_queue(&name, &arguments, divisor)?;
            }
            for (queue, exchange, key) in topology.bindings() {
                state.bind(&queue, &exchange, &key)?;
            }
            Ok(())
        })
    }

    pub(crate) fn delete(&self, topology: &Topology) -> Result<(), AmqpError> {
        self.check_open()?;
        self.core.with(|state| {
            for (queue, _) in topology.queues() {
                state.delete_queue(&queue);
            }
            for (exchange, _) in topology.exchanges() {
                state.delete_exchange(&exchange);
            }
        });
        Ok(())
    }

    pub(crate) fn consumer_count(&self, queue: &str) -> Result<u32, AmqpError> {
        self.check_open()?;
        self.core.with(|state| state.consumer_count(queue))
    }

    pub(crate) fn message_count(&self, queue: &str) -> Result<u32, AmqpError> {
        self.check_open()?;
        self.core.with(|state| state.message_count(queue))
    }
}
