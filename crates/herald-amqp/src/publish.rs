//! `Publisher`: persistent, mandatory, confirmed publishing on a channel of its own. `publish`
//! returns once the message's frames are queued in lapin (not written: the confirm driver awaits
//! the write), with a `PendingConfirm` to await later, so callers keep up to `confirm_window`
//! messages in flight; `flush` waits for all of them. Matching confirms to
//! messages is `confirm.rs`; what to publish (jobs, results, retries) is the callers' business.
//! On an embedded connection the same calls route the message at once (`embedded/publisher.rs`)
//! and the confirm is already settled.

use std::sync::{Arc, Mutex};
use std::task::Poll;

use lapin::{
    BasicProperties,
    options::{BasicPublishOptions, ConfirmSelectOptions},
    types::AMQPValue,
};
use tokio::{
    sync::{Semaphore, mpsc, oneshot},
    task::JoinHandle,
};

use crate::{
    AmqpError, Connection, Headers,
    confirm::{Confirm, Driver, PUBLISH_ID_HEADER, Pending, Unobserved, Writing},
    connect::Backend,
    embedded::EmbeddedPublisher,
    topology::short_string,
};

/// Content type of every message Herald publishes through `publish`.
pub const CONTENT_TYPE_JSON: &str = "application/json";

/// A confirmed publisher. Share it by reference (or `Arc`) between tasks.
pub struct Publisher {
    inner: Inner,
}

enum Inner {
    Lapin(LapinPublisher),
    Embedded(EmbeddedPublisher),
}

/// A publisher on a RabbitMQ channel in confirm mode.
struct LapinPublisher {
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

/// The broker's verdict on one message, resolved by the broker's confirm. Dropping it is fine:
/// a failure nobody awaited is reported by the next `Publisher::flush`.
#[derive(Debug)]
pub struct PendingConfirm {
    outcome: Outcome,
}

#[derive(Debug)]
enum Outcome {
    /// Resolved by the confirm driver.
    Awaited(oneshot::Receiver<Result<(), AmqpError>>),
    /// Known when published (embedded broker); a failure dropped unread goes to `unobserved`.
    Settled {
        result: Option<Result<(), AmqpError>>,
        unobserved: Arc<Mutex<Unobserved>>,
    },
}

impl Publisher {
    /// Opens a channel in confirm mode. At most `confirm_window` (at least 1) messages await
    /// their confirm at any time; `publish` waits for room.
    pub async fn open(connection: &Connection, confirm_window: usize) -> Result<Self, AmqpError> {
        let inner = match connection.backend() {
            Backend::Lapin(lapin) => {
                Inner::Lapin(LapinPublisher::open(lapin, confirm_window).await?)
            }
            Backend::Embedded(embedded) => Inner::Embedded(EmbeddedPublisher::open(embedded)?),
        };
        Ok(Self { inner })
    }

    /// Publishes one persistent JSON message with `mandatory` set and returns as soon as its
    /// frames are queued, without waiting for the socket write or the broker's confirm (a failed
    /// write is that message's outcome). Waits while the confirm window is full.
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        headers: Headers,
    ) -> Result<PendingConfirm, AmqpError> {
        match &self.inner {
            Inner::Lapin(lapin) => lapin.publish(exchange, routing_key, body, headers).await,
            Inner::Embedded(embedded) => {
                short_string(exchange)?;
                short_string(routing_key)?;
                let result = embedded
                    .publish(exchange, routing_key, body, headers)
                    .await?;
                Ok(PendingConfirm {
                    outcome: Outcome::Settled {
                        result: Some(result),
                        unobserved: embedded.unobserved.clone(),
                    },
                })
            }
        }
    }

    /// Waits until every message published before this call has its outcome. Returns the failures
    /// nobody awaited (dropped `PendingConfirm`s) since the last flush, as `Unobserved`.
    pub async fn flush(&self) -> Result<(), AmqpError> {
        match &self.inner {
            Inner::Lapin(lapin) => lapin.flush().await,
            Inner::Embedded(embedded) => take_unobserved(&embedded.unobserved),
        }
    }

    /// Messages published and not yet settled (always 0 on the embedded broker).
    pub fn outstanding(&self) -> usize {
        match &self.inner {
            Inner::Lapin(lapin) => lapin.outstanding(),
            Inner::Embedded(_) => 0,
        }
    }

    /// False once the channel is closed (by us, the broker or a lost connection); open a new one.
    pub fn is_usable(&self) -> bool {
        match &self.inner {
            Inner::Lapin(lapin) => lapin.is_usable(),
            Inner::Embedded(embedded) => embedded.is_usable(),
        }
    }

    /// Flushes, closes the channel and waits for the confirm driver to finish.
    pub async fn close(self) -> Result<(), AmqpError> {
        match self.inner {
            Inner::Lapin(lapin) => lapin.close().await,
            Inner::Embedded(embedded) => {
                embedded.close();
                take_unobserved(&embedded.unobserved)
            }
        }
    }
}

/// The failures nobody awaited since the last call, as one `Unobserved` error.
fn take_unobserved(unobserved: &Mutex<Unobserved>) -> Result<(), AmqpError> {
    let mut unobserved = unobserved.lock().unwrap_or_else(|e| e.into_inner());
    let count = std::mem::take(&mut unobserved.count);
    match unobserved.first.take() {
        Some(first) => Err(AmqpError::Unobserved {
            count,
            first: Box::new(first),
        }),
        None => Ok(()),
    }
}

impl LapinPublisher {
    async fn open(
        connection: &lapin::Connection,
        confirm_window: usize,
    ) -> Result<Self, AmqpError> {
        let window_size =
            u32::try_from(confirm_window.clamp(1, Semaphore::MAX_PERMITS)).unwrap_or(u32::MAX);
        let channel = crate::connect::channel(connection).await?;
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

    async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        headers: Headers,
    ) -> Result<PendingConfirm, AmqpError> {
        let (exchange_name, key) = (short_string(exchange)?, short_string(routing_key)?);
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
        Ok(PendingConfirm {
            outcome: Outcome::Awaited(outcome),
        })
    }

    async fn flush(&self) -> Result<(), AmqpError> {
        // Each unsettled message holds one permit; holding all of them means none is left.
        let all = self.window.acquire_many(self.window_size).await;
        drop(all);
        take_unobserved(&self.unobserved)
    }

    fn outstanding(&self) -> usize {
        self.window_size as usize - self.window.available_permits()
    }

    fn is_usable(&self) -> bool {
        self.channel.status().connected() && !self.driver.is_finished()
    }

    async fn close(self) -> Result<(), AmqpError> {
        let flushed = self.flush().await;
        let Self {
            channel,
            intake,
            driver,
            ..
        } = self;
        drop(intake);
        crate::connect::close_quietly(&channel).await;
        let _ = driver.await;
        flushed
    }
}

/// Lapin's channel `Debug` prints returned messages, bodies included; show counts only.
impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Inner::Lapin(lapin) => f
                .debug_struct("Publisher")
                .field("channel", &lapin.channel.id())
                .field("confirm_window", &lapin.window_size)
                .field("outstanding", &lapin.outstanding())
                .finish(),
            Inner::Embedded(embedded) => f
                .debug_struct("Publisher")
                .field("embedded", &true)
                .field("usable", &embedded.is_usable())
                .finish(),
        }
    }
}

impl std::future::Future for PendingConfirm {
    type Output = Result<(), AmqpError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        match &mut self.outcome {
            Outcome::Awaited(receiver) => std::pin::Pin::new(receiver)
                .poll(cx)
                .map(|received| received.unwrap_or(Err(AmqpError::PublisherClosed))),
            Outcome::Settled { result, .. } => {
                std::task::Poll::Ready(result.take().unwrap_or(Err(AmqpError::PublisherClosed)))
            }
        }
    }
}

/// An embedded confirm's failure that nobody read is reported by the next `flush`, as the
/// confirm driver does for RabbitMQ.
impl Drop for PendingConfirm {
    fn drop(&mut self) {
        if let Outcome::Settled {
            result: Some(Err(error)),
            unobserved,
        } = &mut self.outcome
        {
            let error = std::mem::replace(error, AmqpError::PublisherClosed);
            let mut unobserved = unobserved.lock().unwrap_or_else(|e| e.into_inner());
            unobserved.count += 1;
            unobserved.first.get_or_insert(error);
        }
    }
}
