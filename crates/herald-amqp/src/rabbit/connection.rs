//! One lapin connection to RabbitMQ: connecting with bounded, backed-off retries, channels
//! opened per use, and queue counts by passive declare. lapin's auto-recovery stays off so that
//! publishers and consumers are rebuilt explicitly, with their confirms and acks accounted for.

use backon::{ExponentialBuilder, Retryable};
use lapin::protocol::AMQPSoftError;
use lapin::{ConnectionProperties, options::QueueDeclareOptions, types::FieldTable};
use tracing::{info, warn};

use crate::{AmqpError, AmqpSettings, BrokerAddress, error::soft_error, topology::short_string};

/// An open lapin connection.
pub(crate) struct RabbitConnection {
    inner: lapin::Connection,
    /// True while the broker blocks this connection's publishing (`connection.blocked`).
    /// Boxed: a watch receiver is large next to the embedded connection.
    blocked: Box<tokio::sync::watch::Receiver<bool>>,
}

impl RabbitConnection {
    /// Connects to the first of `settings.url`'s nodes that answers, in the order given;
    /// when none does, retries the round with exponential backoff, at most `connect_attempts`
    /// times. Authentication and vhost errors are not retried.
    pub(crate) async fn connect(
        settings: &AmqpSettings,
    ) -> Result<(BrokerAddress, Self), AmqpError> {
        let nodes = settings.lapin_uris()?;
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
        // The node of the last failure, for the error.
        let last = std::sync::Mutex::new(nodes[0].0.clone());
        let attempt = || {
            tried += 1;
            let (nodes, properties, last) = (&nodes, properties.clone(), &last);
            async move {
                let mut failure = Attempt::TimedOut;
                for (address, uri) in nodes {
                    let connecting =
                        lapin::Connection::connect_uri(uri.clone(), properties.clone());
                    let outcome = match tokio::time::timeout(timeout, connecting).await {
                        Ok(result) => result.map_err(Attempt::Failed),
                        Err(_) => Err(Attempt::TimedOut),
                    };
                    match outcome {
                        Ok(inner) => return Ok((address.clone(), inner)),
                        Err(error) => {
                            *last.lock().unwrap_or_else(|e| e.into_inner()) = address.clone();
                            if !error.worth_retrying() {
                                return Err(error);
                            }
                            if nodes.len() > 1 {
                                warn!(broker = %address, error = %error,
                                    "RabbitMQ node does not answer; trying the next.");
                            }
                            failure = error;
                        }
                    }
                }
                Err(failure)
            }
        };
        let result = attempt
            .retry(backoff)
            .when(Attempt::worth_retrying)
            .notify(|error, delay| {
                let broker = last.lock().unwrap_or_else(|e| e.into_inner()).clone();
                warn!(broker = %broker, error = %error, delay_ms = delay.as_millis() as u64,
                    "Could not connect to RabbitMQ; retrying.");
            })
            .await;
        let address = last.into_inner().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok((address, inner)) => {
                info!(broker = %address, "Connected to RabbitMQ.");
                let blocked = Box::new(watch_blocked(&inner, &address));
                Ok((address, Self { inner, blocked }))
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

    pub(crate) fn lapin(&self) -> &lapin::Connection {
        &self.inner
    }

    pub(crate) fn is_open(&self) -> bool {
        self.inner.status().connected()
    }

    pub(crate) fn blocked(&self) -> tokio::sync::watch::Receiver<bool> {
        (*self.blocked).clone()
    }

    /// Opens a fresh channel.
    pub(crate) async fn channel(&self) -> Result<lapin::Channel, AmqpError> {
        self.inner
            .create_channel()
            .await
            .map_err(AmqpError::amqp("channel.open"))
    }

    pub(crate) async fn consumer_count(&self, queue: &str) -> Result<u32, AmqpError> {
        Ok(self.inspect(queue).await?.consumer_count())
    }

    pub(crate) async fn message_count(&self, queue: &str) -> Result<u32, AmqpError> {
        Ok(self.inspect(queue).await?.message_count())
    }

    pub(crate) async fn close(&self) -> Result<(), AmqpError> {
        self.inner
            .close(200, "bye".into())
            .await
            .map_err(AmqpError::amqp("connection.close"))
    }

    /// A passive declare on a throwaway channel: a missing queue closes the channel it is asked
    /// on, and that must never be a channel someone else is publishing or consuming on.
    async fn inspect(&self, queue: &str) -> Result<lapin::Queue, AmqpError> {
        let name = short_string(queue)?;
        let channel = self.channel().await?;
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
}

/// Follows `connection.blocked` / `connection.unblocked`: RabbitMQ stops reading from publishing
/// connections during a memory or disk alarm, so publishes and their confirms simply wait. The
/// log says so once each way; callers watch the value (a metric, the webhook's 503).
fn watch_blocked(
    connection: &lapin::Connection,
    address: &BrokerAddress,
) -> tokio::sync::watch::Receiver<bool> {
    use futures_util::StreamExt;
    let (sender, receiver) = tokio::sync::watch::channel(false);
    let mut events = connection.events_listener();
    let address = address.clone();
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            match event {
                lapin::Event::ConnectionBlocked(reason) => {
                    warn!(broker = %address, reason = %reason,
                        "RabbitMQ blocked publishing (a memory or disk alarm): publishes wait \
                         until it clears, nothing is lost. Free memory or disk on the broker.");
                    sender.send_replace(true);
                }
                lapin::Event::ConnectionUnblocked => {
                    info!(broker = %address, "RabbitMQ unblocked publishing; continuing.");
                    sender.send_replace(false);
                }
                _ => {}
            }
        }
    });
    receiver
}

/// Closes a channel we opened for one operation; a failure only means it is already gone.
pub(crate) async fn close_quietly(channel: &lapin::Channel) {
    if channel.status().connected() {
        let _ = channel.close(200, "done".into()).await;
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
