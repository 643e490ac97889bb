//! `connect`: one AMQP connection with bounded, backed-off retries, and `Connection`, the handle
//! the rest of Herald holds (queue counts, channels, close). A `Connection` is either RabbitMQ
//! (lapin) or the in-process `EmbeddedBroker`, chosen by `AmqpSettings::embedded`; callers never
//! branch on which. Reconnecting after a loss is the caller's decision
//! (`AmqpError::is_connection_lost`); lapin's auto-recovery stays off so that publishers and
//! consumers are rebuilt explicitly, with their confirms and acks accounted for.

use backon::{ExponentialBuilder, Retryable};
use lapin::protocol::AMQPSoftError;
use lapin::{ConnectionProperties, options::QueueDeclareOptions, types::FieldTable};
use tracing::{info, warn};

use crate::embedded::EmbeddedConnection;
use crate::{AmqpError, AmqpSettings, BrokerAddress, error::soft_error};

/// An open connection to RabbitMQ or to an embedded broker. Cheap to share by reference;
/// channels are opened per use.
pub struct Connection {
    address: BrokerAddress,
    backend: Backend,
}

/// The broker behind a `Connection`.
pub(crate) enum Backend {
    Lapin(lapin::Connection),
    Embedded(EmbeddedConnection),
}

/// Connects to `settings.url`, retrying transport failures with exponential backoff, at most
/// `connect_attempts` times. Authentication and vhost errors are not retried. With
/// `settings.embedded` set, connects to that in-process broker instead (never fails).
pub async fn connect(settings: &AmqpSettings) -> Result<Connection, AmqpError> {
    if let Some(broker) = &settings.embedded {
        return Ok(broker.connect());
    }
    let (address, uri) = settings.lapin_uri()?;
    let properties = ConnectionProperties::default()
        .with_connection_name(settings.connection_name.clone().into());
    let timeout = settings.connect_timeout();
    let attempts = settings.connect_attempts.max(1);
    let backoff = ExponentialBuilder::default()
        .with_min_delay(std::time::Duration::from_millis(
            settings.connect_backoff_ms,
        ))
        .with_max_delay(std::time::Duration::from_millis(
            settings.connect_backoff_max_ms,
        ))
        .with_max_times(attempts as usize - 1)
        .with_jitter();
    let mut tried = 0_u32;
    let attempt = || {
        tried += 1;
        let (uri, properties) = (uri.clone(), properties.clone());
        async move {
            match tokio::time::timeout(timeout, lapin::Connection::connect_uri(uri, properties))
                .await
            {
                Ok(result) => result.map_err(Attempt::Failed),
                Err(_) => Err(Attempt::TimedOut),
            }
        }
    };
    let result = attempt
        .retry(backoff)
        .when(Attempt::worth_retrying)
        .notify(|error, delay| {
            warn!(broker = %address, error = %error, delay_ms = delay.as_millis() as u64,
                "Could not connect to RabbitMQ; retrying.");
        })
        .await;
    match result {
        Ok(inner) => {
            info!(broker = %address, "Connected to RabbitMQ.");
            Ok(Connection {
                address,
                backend: Backend::Lapin(inner),
            })
        }
        Err(Attempt::TimedOut) => Err(AmqpError::ConnectTimeout {
            address: address.host_port(),
            timeout_ms: settings.connect_timeout_ms,
        }),
        Err(Attempt::Failed(source)) if !source.is_io_error() => Err(AmqpError::Refused {
            address: address.host_port(),
            vhost: address.vhost.clone(),
            detail: refusal(&source),
            source: Box::new(source),
        }),
        Err(Attempt::Failed(source)) => Err(AmqpError::Connect {
            address: address.host_port(),
            vhost: address.vhost.clone(),
            attempts: tried,
            source: Box::new(source),
        }),
    }
}

/// The broker's own words for a refusal (`ACCESS_REFUSED - Login was refused ...`).
fn refusal(error: &lapin::Error) -> String {
    match error.kind() {
        lapin::ErrorKind::ProtocolError(amqp) => amqp.get_message().to_string(),
        _ => error.to_string(),
    }
}

/// One failed connection attempt.
#[derive(Debug)]
enum Attempt {
    Failed(lapin::Error),
    TimedOut,
}

impl Attempt {
    /// Transport trouble may pass; a refused login or a missing vhost will not.
    fn worth_retrying(&self) -> bool {
        match self {
            Self::TimedOut => true,
            Self::Failed(error) => error.is_io_error(),
        }
    }
}

impl std::fmt::Display for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Failed(error) => error.fmt(f),
            Self::TimedOut => f.write_str("timed out"),
        }
    }
}

impl Connection {
    pub(crate) fn embedded(connection: EmbeddedConnection) -> Self {
        Self {
            address: EmbeddedConnection::address(),
            backend: Backend::Embedded(connection),
        }
    }

    /// Where this connection goes, safe to log (`embedded:0` for the embedded broker).
    pub fn address(&self) -> &BrokerAddress {
        &self.address
    }

    /// True while the connection is usable.
    pub fn is_connected(&self) -> bool {
        match &self.backend {
            Backend::Lapin(inner) => inner.status().connected(),
            Backend::Embedded(inner) => inner.is_open(),
        }
    }

    /// True for a connection to an embedded broker.
    pub fn is_embedded(&self) -> bool {
        matches!(self.backend, Backend::Embedded(_))
    }

    /// The lapin connection, for this crate's tests; `None` for the embedded broker.
    pub fn lapin(&self) -> Option<&lapin::Connection> {
        match &self.backend {
            Backend::Lapin(inner) => Some(inner),
            Backend::Embedded(_) => None,
        }
    }

    pub(crate) fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Consumers currently attached to `queue`, as the broker counts them (passive declare). The
    /// worker divides a page's rate by this to share it across the fleet.
    pub async fn consumer_count(&self, queue: &str) -> Result<u32, AmqpError> {
        match &self.backend {
            Backend::Lapin(inner) => Ok(inspect(inner, queue).await?.consumer_count()),
            Backend::Embedded(inner) => inner.consumer_count(queue),
        }
    }

    /// Messages ready in `queue` (not counting unacked ones), as the broker counts them.
    pub async fn message_count(&self, queue: &str) -> Result<u32, AmqpError> {
        match &self.backend {
            Backend::Lapin(inner) => Ok(inspect(inner, queue).await?.message_count()),
            Backend::Embedded(inner) => inner.message_count(queue),
        }
    }

    /// Closes the connection cleanly (reply 200); unacked deliveries go back to their queues.
    pub async fn close(&self) -> Result<(), AmqpError> {
        match &self.backend {
            Backend::Lapin(inner) => inner
                .close(200, "bye".into())
                .await
                .map_err(AmqpError::amqp("connection.close")),
            Backend::Embedded(inner) => {
                inner.close();
                Ok(())
            }
        }
    }
}

/// Opens a fresh channel on a RabbitMQ connection.
pub(crate) async fn channel(connection: &lapin::Connection) -> Result<lapin::Channel, AmqpError> {
    connection
        .create_channel()
        .await
        .map_err(AmqpError::amqp("channel.open"))
}

/// A passive declare on a throwaway channel: a missing queue closes the channel it is asked
/// on, and that must never be a channel someone else is publishing or consuming on.
async fn inspect(connection: &lapin::Connection, queue: &str) -> Result<lapin::Queue, AmqpError> {
    let name = crate::topology::short_string(queue)?;
    let channel = channel(connection).await?;
    let options = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let result = channel
        .queue_declare(name, options, FieldTable::default())
        .await;
    match result {
        Ok(found) => {
            close_quietly(&channel).await;
            Ok(found)
        }
        Err(error) => match soft_error(&error) {
            Some((AMQPSoftError::NOTFOUND, _)) => Err(AmqpError::QueueMissing {
                queue: queue.to_owned(),
            }),
            _ => Err(AmqpError::amqp("queue.declare (passive)")(error)),
        },
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

/// Closes a channel we opened for one operation; a failure only means it is already gone.
pub(crate) async fn close_quietly(channel: &lapin::Channel) {
    if channel.status().connected() {
        let _ = channel.close(200, "done".into()).await;
    }
}
