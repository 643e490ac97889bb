//! `Consumer`: manual-ack consumption of one queue on a channel of its own, with `basic.qos`
//! bounding unacked deliveries, and `Delivery` with ack/nack/reject. It does not decide what a
//! delivery means or when to ack it (the worker acks only after its result is confirmed).

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use futures_util::Stream;
use lapin::{
    options::{
        BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
        BasicQosOptions, BasicRejectOptions,
    },
    protocol::AMQPSoftError,
    types::{AMQPValue, FieldTable},
};

use crate::{AmqpError, Connection, Headers, error::soft_error, topology::short_string};

/// Where a consumer of a stream queue (`<p>.control.log`) starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamOffset {
    /// The oldest message still retained: replay the whole history.
    First,
    /// The last chunk written.
    Last,
    /// Only messages published from now on.
    Next,
}

/// A subscription to one queue. A `Stream` of deliveries; `None` means the broker cancelled it
/// (queue deleted) or `stop` was called.
pub struct Consumer {
    channel: lapin::Channel,
    inner: lapin::Consumer,
    queue: String,
}

/// One message from a `Consumer`; settle it with `ack`, `nack` or `reject`.
pub struct Delivery {
    inner: lapin::message::Delivery,
}

impl Consumer {
    /// Consumes `queue` with manual acks and at most `prefetch` unacked deliveries (0 is raised
    /// to 1: unbounded prefetch defeats the point).
    pub async fn start(
        connection: &Connection,
        queue: &str,
        prefetch: u16,
    ) -> Result<Self, AmqpError> {
        Self::start_with(connection, queue, prefetch, FieldTable::default()).await
    }

    /// Consumes a stream queue from `offset`; streams require manual acks and a prefetch.
    pub async fn start_stream(
        connection: &Connection,
        queue: &str,
        prefetch: u16,
        offset: StreamOffset,
    ) -> Result<Self, AmqpError> {
        let offset = match offset {
            StreamOffset::First => "first",
            StreamOffset::Last => "last",
            StreamOffset::Next => "next",
        };
        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-stream-offset".into(),
            AMQPValue::LongString(offset.into()),
        );
        Self::start_with(connection, queue, prefetch, arguments).await
    }

    async fn start_with(
        connection: &Connection,
        queue: &str,
        prefetch: u16,
        arguments: FieldTable,
    ) -> Result<Self, AmqpError> {
        let name = short_string(queue)?;
        let channel = connection.channel().await?;
        channel
            .basic_qos(prefetch.max(1), BasicQosOptions::default())
            .await
            .map_err(AmqpError::amqp("basic.qos"))?;
        let options = BasicConsumeOptions {
            no_ack: false,
            ..BasicConsumeOptions::default()
        };
        let inner = channel
            .basic_consume(name, "".into(), options, arguments)
            .await
            .map_err(|error| match soft_error(&error) {
                Some((AMQPSoftError::NOTFOUND, _)) => AmqpError::QueueMissing {
                    queue: queue.to_owned(),
                },
                _ => AmqpError::amqp("basic.consume")(error),
            })?;
        Ok(Self {
            channel,
            inner,
            queue: queue.to_owned(),
        })
    }

    /// The queue this consumer reads.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Stops new deliveries (`basic.cancel`); deliveries already received can still be settled.
    pub async fn stop(&self) -> Result<(), AmqpError> {
        self.channel
            .basic_cancel(self.inner.tag(), BasicCancelOptions::default())
            .await
            .map_err(AmqpError::amqp("basic.cancel"))
    }

    /// Closes the channel; the broker requeues every delivery not yet acked.
    pub async fn close(self) -> Result<(), AmqpError> {
        self.channel
            .close(200, "bye".into())
            .await
            .map_err(AmqpError::amqp("channel.close"))
    }
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

impl Stream for Consumer {
    type Item = Result<Delivery, AmqpError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.inner).poll_next(cx).map(|next| {
            next.map(|delivery| {
                delivery
                    .map(|inner| Delivery { inner })
                    .map_err(AmqpError::amqp("basic.consume"))
            })
        })
    }
}

impl Delivery {
    /// The message body, byte for byte.
    pub fn body(&self) -> &[u8] {
        &self.inner.data
    }

    /// The message headers (empty when it had none).
    pub fn headers(&self) -> Headers {
        self.inner
            .properties
            .headers()
            .clone()
            .map(Headers::from)
            .unwrap_or_default()
    }

    /// `x-herald-attempt`, if set.
    pub fn attempt(&self) -> Option<u32> {
        self.headers().attempt()
    }

    /// The exchange it was published to.
    pub fn exchange(&self) -> &str {
        self.inner.exchange.as_str()
    }

    /// The routing key it was published with.
    pub fn routing_key(&self) -> &str {
        self.inner.routing_key.as_str()
    }

    /// True when the broker delivered it before (to us or another consumer) without an ack.
    pub fn redelivered(&self) -> bool {
        self.inner.redelivered
    }

    /// Acknowledges it: the broker forgets it.
    pub async fn ack(&self) -> Result<(), AmqpError> {
        settled(
            self.inner.acker.ack(BasicAckOptions::default()).await,
            "basic.ack",
        )
    }

    /// Negatively acknowledges it: back to the queue when `requeue`, else dropped/dead-lettered.
    pub async fn nack(&self, requeue: bool) -> Result<(), AmqpError> {
        let options = BasicNackOptions {
            multiple: false,
            requeue,
        };
        settled(self.inner.acker.nack(options).await, "basic.nack")
    }

    /// Rejects it: back to the queue when `requeue`, else dropped/dead-lettered.
    pub async fn reject(&self, requeue: bool) -> Result<(), AmqpError> {
        settled(
            self.inner
                .acker
                .reject(BasicRejectOptions { requeue })
                .await,
            "basic.reject",
        )
    }
}

/// Bodies hold PSIDs and message text, which never reach logs: show the envelope only.
impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("exchange", &self.exchange())
            .field("routing_key", &self.routing_key())
            .field("redelivered", &self.redelivered())
            .field("attempt", &self.attempt())
            .field("body_bytes", &self.body().len())
            .finish()
    }
}

/// Lapin answers `Ok(false)` when the ack could not be sent (channel gone, or already settled).
fn settled(result: lapin::Result<bool>, during: &'static str) -> Result<(), AmqpError> {
    match result {
        Ok(true) => Ok(()),
        Ok(false) => Err(AmqpError::AckUnusable),
        Err(error) => Err(AmqpError::amqp(during)(error)),
    }
}
