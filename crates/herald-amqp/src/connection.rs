//! `connect` and `Connection`, the handle the rest of Herald holds (queue counts, close). A
//! `Connection` is either RabbitMQ (`rabbit/connection.rs`) or the in-process `EmbeddedBroker`
//! (`embedded/mod.rs`), chosen by `AmqpSettings::embedded`; callers never branch on which.
//! Reconnecting after a loss is the caller's decision (`AmqpError::is_connection_lost`).

use crate::embedded::EmbeddedConnection;
use crate::rabbit::RabbitConnection;
use crate::{AmqpError, AmqpSettings, BrokerAddress};

/// An open connection to RabbitMQ or to an embedded broker. Cheap to share by reference;
/// channels are opened per use.
pub struct Connection {
    address: BrokerAddress,
    backend: Backend,
}

/// The broker behind a `Connection`. `Publisher::open`, `Consumer::start` and
/// `Topology::declare` pick their own adapter from it.
pub(crate) enum Backend {
    Rabbit(RabbitConnection),
    Embedded(EmbeddedConnection),
}

/// Connects to `settings.url`, retrying transport failures with exponential backoff, at most
/// `connect_attempts` times. Authentication and vhost errors are not retried. With
/// `settings.embedded` set, connects to that in-process broker instead (never fails).
pub async fn connect(settings: &AmqpSettings) -> Result<Connection, AmqpError> {
    if let Some(broker) = &settings.embedded {
        return Ok(broker.connect());
    }
    let (address, rabbit) = RabbitConnection::connect(settings).await?;
    Ok(Connection {
        address,
        backend: Backend::Rabbit(rabbit),
    })
}

impl Connection {
    pub(crate) fn embedded(connection: EmbeddedConnection) -> Self {
        Self {
            address: EmbeddedConnection::address(),
            backend: Backend::Embedded(connection),
        }
    }

    pub(crate) fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Where this connection goes, safe to log (`embedded:0` for the embedded broker).
    pub fn address(&self) -> &BrokerAddress {
        &self.address
    }

    /// True while the connection is usable.
    pub fn is_connected(&self) -> bool {
        match &self.backend {
            Backend::Rabbit(inner) => inner.is_open(),
            Backend::Embedded(inner) => inner.is_open(),
        }
    }

    /// True while RabbitMQ blocks this connection's publishing (a memory or disk alarm); the
    /// receiver sees every change. Never true for the embedded broker.
    pub fn blocked(&self) -> tokio::sync::watch::Receiver<bool> {
        match &self.backend {
            Backend::Rabbit(inner) => inner.blocked(),
            Backend::Embedded(_) => tokio::sync::watch::channel(false).1,
        }
    }

    /// True for a connection to an embedded broker.
    pub fn is_embedded(&self) -> bool {
        matches!(self.backend, Backend::Embedded(_))
    }

    /// The lapin connection, for this crate's own integration tests (they set up what Herald
    /// never declares, e.g. a queue with `x-max-length`); `None` for the embedded broker. Hidden
    /// from the docs: no other crate may depend on lapin.
    #[doc(hidden)]
    pub fn lapin(&self) -> Option<&lapin::Connection> {
        match &self.backend {
            Backend::Rabbit(inner) => Some(inner.lapin()),
            Backend::Embedded(_) => None,
        }
    }

    /// Consumers currently attached to `queue`, as the broker counts them (passive declare). The
    /// worker divides a page's rate by this to share it across the fleet. `QueueMissing` when
    /// there is no such queue.
    pub async fn consumer_count(&self, queue: &str) -> Result<u32, AmqpError> {
        match &self.backend {
            Backend::Rabbit(inner) => inner.consumer_count(queue).await,
            Backend::Embedded(inner) => inner.consumer_count(queue),
        }
    }

    /// Messages ready in `queue` (not counting unacked ones), as the broker counts them.
    /// `QueueMissing` when there is no such queue.
    pub async fn message_count(&self, queue: &str) -> Result<u32, AmqpError> {
        match &self.backend {
            Backend::Rabbit(inner) => inner.message_count(queue).await,
            Backend::Embedded(inner) => inner.message_count(queue),
        }
    }

    /// Closes the connection cleanly (reply 200); unacked deliveries go back to their queues.
    pub async fn close(&self) -> Result<(), AmqpError> {
        match &self.backend {
            Backend::Rabbit(inner) => inner.close().await,
            Backend::Embedded(inner) => {
                inner.close();
                Ok(())
            }
        }
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("address", &self.address)
            .field("embedded", &self.is_embedded())
            .field("connected", &self.is_connected())
            .finish()
    }
}
