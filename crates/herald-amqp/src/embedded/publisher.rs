//! Publishing to the embedded broker. A message is routed the moment it is published, so its
//! confirm is already settled: ok, `Returned` (312 NO_ROUTE) when a mandatory message reaches no
//! queue, or RabbitMQ's 404 channel error for a missing exchange, which also closes the
//! publisher as the broker closes the channel. A failure nobody awaited is reported by `flush`,
//! as with the RabbitMQ publisher. A publish waits while a queue it routes to is full, as
//! RabbitMQ's flow control makes a publisher wait.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::EmbeddedConnection;
use super::queue::Message;
use crate::publisher::Unobserved;
use crate::{AmqpError, Headers};

/// RabbitMQ's reply to a mandatory message with no route.
const NO_ROUTE: (u16, &str) = (312, "NO_ROUTE");

/// A publisher on an embedded connection.
pub(crate) struct EmbeddedPublisher {
    connection: EmbeddedConnection,
    /// Set once the "channel" is closed: by `close`, or by a publish to a missing exchange.
    closed: AtomicBool,
    pub(crate) unobserved: Arc<Mutex<Unobserved>>,
}

impl EmbeddedPublisher {
    pub(crate) fn open(connection: &EmbeddedConnection) -> Result<Self, AmqpError> {
        connection.check_open()?;
        Ok(Self {
            connection: connection.clone(),
            closed: AtomicBool::new(false),
            unobserved: Arc::default(),
        })
    }

    /// Routes the message and returns its outcome, waiting first while a queue it goes to is
    /// full (`EmbeddedSettings::max_queue_messages`).
    pub(crate) async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        headers: Headers,
    ) -> Result<Result<(), AmqpError>, AmqpError> {
        let message = Arc::new(Message {
            exchange: exchange.to_owned(),
            routing_key: routing_key.to_owned(),
            body: body.to_vec(),
            headers: headers.into_table(),
        });
        let core = &self.connection.core;
        let limit = core.settings.max_queue_messages;
        let routed = loop {
            if !self.is_usable() {
                return Err(AmqpError::PublisherClosed);
            }
            // Registered before looking, so room made in between is not missed.
            let room = core.space.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            let now = Instant::now();
            let published = core
                .with(|state| state.publish_within(exchange, routing_key, &message, now, limit));
            match published {
                Some(routed) => break routed,
                None => room.await,
            }
        };
        Ok(match routed {
            Ok(0) => Err(AmqpError::Returned {
                exchange: exchange.to_owned(),
                routing_key: routing_key.to_owned(),
                reply_code: NO_ROUTE.0,
                reply_text: NO_ROUTE.1.to_owned(),
            }),
            Ok(_) => Ok(()),
            Err(error) => {
                self.closed.store(true, Ordering::Relaxed);
                Err(error)
            }
        })
    }

    pub(crate) fn is_usable(&self) -> bool {
        !self.closed.load(Ordering::Relaxed) && self.connection.is_open()
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }
}
