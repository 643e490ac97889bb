//! Consuming a RabbitMQ queue: a channel of its own with `basic.qos` bounding unacked
//! deliveries, manual acks coalesced by `acks.rs`, and a stream queue's `x-stream-offset`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::Stream;
use lapin::{
    options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions},
    protocol::AMQPSoftError,
    types::{AMQPValue, FieldTable, ShortString},
};

use super::RabbitConnection;
use super::acks::Acks;
use crate::{AmqpError, Headers, StreamOffset, error::soft_error};

/// A subscription to one RabbitMQ queue.
pub(crate) struct RabbitConsumer {
    channel: lapin::Channel,
    consumer: lapin::Consumer,
    acks: AckHandle,
}

/// One message from a `RabbitConsumer`, with the ack queue of its channel.
pub(crate) struct RabbitDelivery {
    inner: lapin::message::Delivery,
    acks: Arc<Acks>,
}

impl RabbitConsumer {
    /// Consumes `queue` (already checked as the AMQP name `name`) with manual acks.
    pub(crate) async fn start(
        connection: &RabbitConnection,
        name: ShortString,
        queue: &str,
        prefetch: u16,
        offset: Option<StreamOffset>,
    ) -> Result<Self, AmqpError> {
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
        let channel = connection.channel().await?;
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
            channel,
            consumer,
            acks,
        })
    }

    pub(crate) async fn stop(&self) -> Result<(), AmqpError> {
        self.channel
            .basic_cancel(self.consumer.tag(), BasicCancelOptions::default())
            .await
            .map_err(AmqpError::amqp("basic.cancel"))
    }

    pub(crate) async fn close(self) -> Result<(), AmqpError> {
        self.channel
            .close(200, "bye".into())
            .await
            .map_err(AmqpError::amqp("channel.close"))
    }

    /// The next delivery, registered with the ack queue in the order the consumer yields it.
    pub(crate) fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<RabbitDelivery, AmqpError>>> {
        let acks = &self.acks.0;
        Pin::new(&mut self.consumer).poll_next(cx).map(|next| {
            next.map(|delivery| {
                delivery
                    .map(|inner| {
                        acks.register(inner.delivery_tag);
                        RabbitDelivery {
                            inner,
                            acks: acks.clone(),
                        }
                    })
                    .map_err(AmqpError::amqp("basic.consume"))
            })
        })
    }
}

impl RabbitDelivery {
    pub(crate) fn body(&self) -> &[u8] {
        &self.inner.data
    }

    pub(crate) fn headers(&self) -> Headers {
        self.inner
            .properties
            .headers()
            .clone()
            .map(Headers::from_table)
            .unwrap_or_default()
    }

    pub(crate) fn exchange(&self) -> &str {
        self.inner.exchange.as_str()
    }

    pub(crate) fn routing_key(&self) -> &str {
        self.inner.routing_key.as_str()
    }

    pub(crate) fn redelivered(&self) -> bool {
        self.inner.redelivered
    }

    pub(crate) async fn ack(&self) -> Result<(), AmqpError> {
        self.acks.ack(self.inner.delivery_tag).await
    }

    pub(crate) async fn nack(&self, requeue: bool) -> Result<(), AmqpError> {
        self.acks
            .nack(self.inner.delivery_tag, requeue, false)
            .await
    }

    pub(crate) async fn reject(&self, requeue: bool) -> Result<(), AmqpError> {
        self.acks.nack(self.inner.delivery_tag, requeue, true).await
    }
}

/// Tells the ack flusher its consumer is gone (closed or dropped), so it can end.
struct AckHandle(Arc<Acks>);

impl Drop for AckHandle {
    fn drop(&mut self) {
        self.0.consumer_dropped();
    }
}
