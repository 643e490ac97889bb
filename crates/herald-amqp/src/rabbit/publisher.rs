//! Publishing on a RabbitMQ channel in confirm mode. `publish` returns once the message's frames
//! are queued in lapin (not written: the confirm driver awaits the write), with a receiver for
//! its outcome; a semaphore bounds the messages awaiting their confirm. Matching confirms and
//! returns to messages is `confirms.rs`.

use std::sync::{Arc, Mutex};
use std::task::Poll;

use lapin::{
    BasicProperties,
    options::{BasicPublishOptions, ConfirmSelectOptions},
    types::{AMQPValue, ShortString},
};
use tokio::{
    sync::{Semaphore, mpsc, oneshot},
    task::JoinHandle,
};

use super::RabbitConnection;
use super::confirms::{Confirm, Driver, Pending, Writing};
use super::connection::close_quietly;
use crate::headers::PUBLISH_ID_HEADER;
use crate::publisher::Unobserved;
use crate::{AmqpError, CONTENT_TYPE_JSON, Headers};

/// A publisher on a RabbitMQ channel in confirm mode.
pub(crate) struct RabbitPublisher {
    /// In an `Arc` because every publish moves a handle into its write future: one atomic
    /// increment, where cloning lapin's `Channel` copies a dozen shared handles.
    channel: Arc<lapin::Channel>,
    window: Arc<Semaphore>,
    window_size: u32,
    /// Serialises `basic.publish`: lapin numbers a confirm before it queues the frames, so two
    /// threads publishing on one channel at once could swap numbers. Holds the next publish id.
    next_id: tokio::sync::Mutex<u64>,
    intake: mpsc::UnboundedSender<Pending>,
    unobserved: Arc<Mutex<Unobserved>>,
    driver: JoinHandle<()>,
}

impl RabbitPublisher {
    pub(crate) async fn open(
        connection: &RabbitConnection,
        confirm_window: usize,
    ) -> Result<Self, AmqpError> {
        let window_size =
            u32::try_from(confirm_window.clamp(1, Semaphore::MAX_PERMITS)).unwrap_or(u32::MAX);
        let channel = connection.channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(AmqpError::amqp("confirm.select"))?;
        let (intake, receiver) = mpsc::unbounded_channel();
        let unobserved = Arc::new(Mutex::new(Unobserved::default()));
        let driver = Driver::new(channel.clone(), receiver, unobserved.clone());
        Ok(Self {
            channel: Arc::new(channel),
            window: Arc::new(Semaphore::new(window_size as usize)),
            window_size,
            next_id: tokio::sync::Mutex::new(1),
            intake,
            unobserved,
            driver: tokio::spawn(driver.run()),
        })
    }

    /// Queues the message's frames and returns the receiver of its outcome. `exchange_name` and
    /// `key` are `exchange` and `routing_key`, already checked as AMQP names.
    pub(crate) async fn publish(
        &self,
        exchange_name: ShortString,
        key: ShortString,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        headers: Headers,
    ) -> Result<oneshot::Receiver<Result<(), AmqpError>>, AmqpError> {
        let permit = self
            .window
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| AmqpError::PublisherClosed)?;
        let (reply, outcome) = oneshot::channel();
        let mut next_id = self.next_id.lock().await;
        let id = *next_id;
        *next_id += 1;
        let mut headers = headers.into_table();
        headers.insert(PUBLISH_ID_HEADER.into(), AMQPValue::LongLongInt(id as i64));
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type(CONTENT_TYPE_JSON.into())
            .with_headers(headers);
        let options = BasicPublishOptions {
            mandatory: true,
            immediate: false,
        };
        let (channel, body) = (self.channel.clone(), body.to_vec());
        let mut writing: Writing = Box::pin(async move {
            channel
                .basic_publish(exchange_name, key, options, &body, properties)
                .await
        });
        // lapin numbers the confirm and queues the frames before its first await; only the
        // socket write is left. Polling once here (under the lock, so numbers and frames keep
        // one order) and leaving the write to the driver means a caller does not wait for
        // lapin's I/O thread after every message: the frames of many messages go out together.
        let first = std::future::poll_fn(|cx| Poll::Ready(writing.as_mut().poll(cx))).await;
        let confirm = match first {
            Poll::Ready(Ok(confirm)) => Confirm::Waiting(confirm),
            Poll::Ready(Err(error)) => return Err(AmqpError::amqp("basic.publish")(error)),
            Poll::Pending => Confirm::Writing(writing),
        };
        // Still under the lock, so the driver receives messages in id order.
        let pending = Pending {
            id,
            exchange: exchange.to_owned(),
            routing_key: routing_key.to_owned(),
            confirm,
            reply,
            permit,
        };
        self.intake
            .send(pending)
            .map_err(|_| AmqpError::PublisherClosed)?;
        Ok(outcome)
    }

    pub(crate) async fn flush(&self) -> Result<(), AmqpError> {
        // Each unsettled message holds one permit; holding all of them means none is left.
        let all = self.window.acquire_many(self.window_size).await;
        drop(all);
        Unobserved::take(&self.unobserved)
    }

    pub(crate) fn outstanding(&self) -> usize {
        self.window_size as usize - self.window.available_permits()
    }

    pub(crate) fn is_usable(&self) -> bool {
        self.channel.status().connected() && !self.driver.is_finished()
    }

    pub(crate) async fn close(self) -> Result<(), AmqpError> {
        let flushed = self.flush().await;
        let Self {
            channel,
            intake,
            driver,
            ..
        } = self;
        drop(intake);
        close_quietly(&channel).await;
        let _ = driver.await;
        flushed
    }
}

/// lapin's channel `Debug` prints returned messages, bodies included; show counts only.
impl std::fmt::Debug for RabbitPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("channel", &self.channel.id())
            .field("confirm_window", &self.window_size)
            .field("outstanding", &self.outstanding())
            .finish()
    }
}
