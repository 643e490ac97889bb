//! `Consumer`: manual-ack consumption of one queue on a channel of its own, with a prefetch
//! bounding unacked deliveries, and `Delivery` with ack/nack/reject. It does not decide what a
//! delivery means or when to ack it (the worker acks only after its result is confirmed). Each
//! type wraps the RabbitMQ adapter (`rabbit/consumer.rs`, acks coalesced by `rabbit/acks.rs`) or
//! the embedded one (`embedded/consumer.rs`).

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;

use crate::connection::Backend;
use crate::embedded::{EmbeddedConsumer, EmbeddedDelivery, Settle};
use crate::rabbit::{RabbitConsumer, RabbitDelivery};
use crate::{AmqpError, Connection, Headers, topology::short_string};

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
    inner: ConsumerInner,
    queue: String,
}

// The RabbitMQ variants are as large as the types were before the embedded broker existed;
// boxing them would add an allocation per delivery on the production path to save the embedded
// one a few hundred bytes.
#[allow(clippy::large_enum_variant)]
enum ConsumerInner {
    Rabbit(RabbitConsumer),
    Embedded(EmbeddedConsumer),
}

/// One message from a `Consumer`; settle it with `ack`, `nack` or `reject`.
pub struct Delivery {
    inner: DeliveryInner,
}

#[allow(clippy::large_enum_variant)]
enum DeliveryInner {
    Rabbit(RabbitDelivery),
    Embedded(EmbeddedDelivery),
}

impl Consumer {
    /// Consumes `queue` with manual acks and at most `prefetch` unacked deliveries (0 is raised
    /// to 1: unbounded prefetch defeats the point).
    pub async fn start(
        connection: &Connection,
        queue: &str,
        prefetch: u16,
    ) -> Result<Self, AmqpError> {
        Self::start_with(connection, queue, prefetch, None).await
    }

    /// Consumes a stream queue from `offset`; streams require manual acks and a prefetch.
    pub async fn start_stream(
        connection: &Connection,
        queue: &str,
        prefetch: u16,
        offset: StreamOffset,
    ) -> Result<Self, AmqpError> {
        Self::start_with(connection, queue, prefetch, Some(offset)).await
    }

    async fn start_with(
        connection: &Connection,
        queue: &str,
        prefetch: u16,
        offset: Option<StreamOffset>,
    ) -> Result<Self, AmqpError> {
        let name = short_string(queue)?;
        let inner = match connection.backend() {
            Backend::Rabbit(rabbit) => ConsumerInner::Rabbit(
                RabbitConsumer::start(rabbit, name, queue, prefetch, offset).await?,
            ),
            Backend::Embedded(embedded) => {
                ConsumerInner::Embedded(EmbeddedConsumer::start(embedded, queue, prefetch, offset)?)
            }
        };
        Ok(Self {
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
        match &self.inner {
            ConsumerInner::Rabbit(consumer) => consumer.stop().await,
            ConsumerInner::Embedded(consumer) => {
                consumer.stop();
                Ok(())
            }
        }
    }

    /// Closes the channel; the broker requeues every delivery not yet acked. (Dropping an
    /// embedded consumer does the same.)
    pub async fn close(self) -> Result<(), AmqpError> {
        match self.inner {
            ConsumerInner::Rabbit(consumer) => consumer.close().await,
            ConsumerInner::Embedded(consumer) => {
                drop(consumer);
                Ok(())
            }
        }
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
        let wrap = |inner| Delivery { inner };
        match &mut self.inner {
            ConsumerInner::Rabbit(consumer) => consumer.poll_next(cx).map(|next| {
                next.map(|delivery| delivery.map(|inner| wrap(DeliveryInner::Rabbit(inner))))
            }),
            ConsumerInner::Embedded(consumer) => consumer
                .poll_next(cx)
                .map(|next| next.map(|inner| Ok(wrap(DeliveryInner::Embedded(inner))))),
        }
    }
}

impl Delivery {
    /// The message body, byte for byte.
    pub fn body(&self) -> &[u8] {
        match &self.inner {
            DeliveryInner::Rabbit(inner) => inner.body(),
            DeliveryInner::Embedded(inner) => inner.body(),
        }
    }

    /// The message headers (empty when it had none).
    pub fn headers(&self) -> Headers {
        match &self.inner {
            DeliveryInner::Rabbit(inner) => inner.headers(),
            DeliveryInner::Embedded(inner) => inner.headers(),
        }
    }

    /// `x-herald-attempt`, if set.
    pub fn attempt(&self) -> Option<u32> {
        self.headers().attempt()
    }

    /// The exchange it was published to.
    pub fn exchange(&self) -> &str {
        match &self.inner {
            DeliveryInner::Rabbit(inner) => inner.exchange(),
            DeliveryInner::Embedded(inner) => inner.exchange(),
        }
    }

    /// The routing key it was published with.
    pub fn routing_key(&self) -> &str {
        match &self.inner {
            DeliveryInner::Rabbit(inner) => inner.routing_key(),
            DeliveryInner::Embedded(inner) => inner.routing_key(),
        }
    }

    /// True when the broker delivered it before (to us or another consumer) without an ack.
    pub fn redelivered(&self) -> bool {
        match &self.inner {
            DeliveryInner::Rabbit(inner) => inner.redelivered(),
            DeliveryInner::Embedded(inner) => inner.redelivered(),
        }
    }

    /// Acknowledges it: the broker forgets it.
    pub async fn ack(&self) -> Result<(), AmqpError> {
        match &self.inner {
            DeliveryInner::Rabbit(inner) => inner.ack().await,
            DeliveryInner::Embedded(inner) => inner.settle(Settle::Ack),
        }
    }

    /// Negatively acknowledges it: back to the queue when `requeue`, else dropped/dead-lettered.
    pub async fn nack(&self, requeue: bool) -> Result<(), AmqpError> {
        match &self.inner {
            DeliveryInner::Rabbit(inner) => inner.nack(requeue).await,
            DeliveryInner::Embedded(inner) => inner.settle(Settle::requeued(requeue)),
        }
    }

    /// Rejects it: back to the queue when `requeue`, else dropped/dead-lettered.
    pub async fn reject(&self, requeue: bool) -> Result<(), AmqpError> {
        match &self.inner {
            DeliveryInner::Rabbit(inner) => inner.reject(requeue).await,
            DeliveryInner::Embedded(inner) => inner.settle(Settle::requeued(requeue)),
        }
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
