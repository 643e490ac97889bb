//! `Consumer`: manual-ack consumption of one queue on a channel of its own, with `basic.qos`
//! bounding unacked deliveries, and `Delivery` with ack/nack/reject. It does not decide what a
//! delivery means or when to ack it (the worker acks only after its result is confirmed). Acks on
//! RabbitMQ are coalesced into `multiple` frames by `ack.rs`. On an embedded connection the same
//! types wrap `embedded/consumer.rs`.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use futures_util::Stream;
use lapin::{
    options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions},
    protocol::AMQPSoftError,
    types::{AMQPValue, FieldTable},
};

use crate::{
    AmqpError, Connection, Headers,
    ack::Acks,
    connect::Backend,
    embedded::{EmbeddedConsumer, EmbeddedDelivery, Settle},
    error::soft_error,
    topology::short_string,
};

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
    Lapin {
        channel: lapin::Channel,
        consumer: lapin::Consumer,
        acks: AckHandle,
    },
    Embedded(EmbeddedConsumer),
}

/// One message from a `Consumer`; settle it with `ack`, `nack` or `reject`.
pub struct Delivery {
    inner: DeliveryInner,
}

#[allow(clippy::large_enum_variant)]
enum DeliveryInner {
    Lapin(lapin::message::Delivery, Arc<Acks>),
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
        let lapin = match connection.backend() {
            Backend::Lapin(lapin) => lapin,
            Backend::Embedded(embedded) => {
                let consumer = EmbeddedConsumer::start(embedded, queue, prefetch, offset)?;
                return Ok(Self {
                    inner: ConsumerInner::Embedded(consumer),
                    queue: queue.to_owned(),
                });
            }
        };
        let mut arguments = FieldTable::default();
        if let Some(offset) = offset {
            let offset = match offset {
                StreamOffset::First => "first",
                StreamOffset::Last => "last",
                StreamOffset::Next => "next",
            };
            arguments.insert(
                "x-stream-offset".into(),
                AMQPValue::LongString(offset.into()),
            );
        }
        let channel = crate::connect::channel(lapin).await?;
        channel
            .basic_qos(prefetch.max(1), BasicQosOptions::default())
            .await
            .map_err(AmqpError::amqp("basic.qos"))?;
        let options = BasicConsumeOptions {
            no_ack: false,
            ..BasicConsumeOptions::default()
        };
        let consumer = channel
            .basic_consume(name, "".into(), options, arguments)
            .await
            .map_err(|error| match soft_error(&error) {
                Some((AMQPSoftError::NOTFOUND, _)) => AmqpError::QueueMissing {
                    queue: queue.to_owned(),
                },
                _ => AmqpError::amqp("basic.consume")(error),
            })?;
        let acks = AckHandle(Acks::start(channel.clone()));
        Ok(Self {
            inner: ConsumerInner::Lapin {
                channel,
                consumer,
                acks,
            },
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
            ConsumerInner::Lapin {
                channel, consumer, ..
            } => channel
                .basic_cancel(consumer.tag(), BasicCancelOptions::default())
                .await
                .map_err(AmqpError::amqp("basic.cancel")),
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
            ConsumerInner::Lapin { channel, .. } => channel
                .close(200, "bye".into())
                .await
                .map_err(AmqpError::amqp("channel.close")),
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
        match &mut self.inner {
            ConsumerInner::Lapin { consumer, acks, .. } => {
                Pin::new(consumer).poll_next(cx).map(|next| {
                    next.map(|delivery| {
                        delivery
                            .map(|inner| {
                                acks.0.register(inner.delivery_tag);
                                Delivery {
                                    inner: DeliveryInner::Lapin(inner, acks.0.clone()),
                                }
                            })
                            .map_err(AmqpError::amqp("basic.consume"))
                    })
                })
            }
            ConsumerInner::Embedded(consumer) => consumer.poll_next(cx).map(|next| {
                next.map(|inner| {
                    Ok(Delivery {
                        inner: DeliveryInner::Embedded(inner),
                    })
                })
            }),
        }
    }
}

impl Delivery {
    /// The message body, byte for byte.
    pub fn body(&self) -> &[u8] {
        match &self.inner {
            DeliveryInner::Lapin(inner, _) => &inner.data,
            DeliveryInner::Embedded(inner) => inner.body(),
        }
    }

    /// The message headers (empty when it had none).
    pub fn headers(&self) -> Headers {
        match &self.inner {
            DeliveryInner::Lapin(inner, _) => inner
                .properties
                .headers()
                .clone()
                .map(Headers::from)
                .unwrap_or_default(),
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
            DeliveryInner::Lapin(inner, _) => inner.exchange.as_str(),
            DeliveryInner::Embedded(inner) => inner.exchange(),
        }
    }

    /// The routing key it was published with.
    pub fn routing_key(&self) -> &str {
        match &self.inner {
            DeliveryInner::Lapin(inner, _) => inner.routing_key.as_str(),
            DeliveryInner::Embedded(inner) => inner.routing_key(),
        }
    }

    /// True when the broker delivered it before (to us or another consumer) without an ack.
    pub fn redelivered(&self) -> bool {
        match &self.inner {
            DeliveryInner::Lapin(inner, _) => inner.redelivered,
            DeliveryInner::Embedded(inner) => inner.redelivered(),
        }
    }

    /// Acknowledges it: the broker forgets it.
    pub async fn ack(&self) -> Result<(), AmqpError> {
        match &self.inner {
            DeliveryInner::Lapin(inner, acks) => acks.ack(inner.delivery_tag).await,
            DeliveryInner::Embedded(inner) => inner.settle(Settle::Ack),
        }
    }

    /// Negatively acknowledges it: back to the queue when `requeue`, else dropped/dead-lettered.
    pub async fn nack(&self, requeue: bool) -> Result<(), AmqpError> {
        match &self.inner {
            DeliveryInner::Lapin(inner, acks) => {
                acks.nack(inner.delivery_tag, requeue, false).await
            }
            DeliveryInner::Embedded(inner) => inner.settle(requeued(requeue)),
        }
    }

    /// Rejects it: back to the queue when `requeue`, else dropped/dead-lettered.
    pub async fn reject(&self, requeue: bool) -> Result<(), AmqpError> {
        match &self.inner {
            DeliveryInner::Lapin(inner, acks) => acks.nack(inner.delivery_tag, requeue, true).await,
            DeliveryInner::Embedded(inner) => inner.settle(requeued(requeue)),
        }
    }
}

fn requeued(requeue: bool) -> Settle {
    if requeue {
        Settle::Requeue
    } else {
        Settle::Discard
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

/// Tells the ack flusher its consumer is gone (closed or dropped), so it can end.
struct AckHandle(Arc<Acks>);

impl Drop for AckHandle {
    fn drop(&mut self) {
        self.0.consumer_dropped();
    }
}
