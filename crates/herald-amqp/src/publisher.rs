//! `Publisher`: persistent, mandatory, confirmed publishing on a channel of its own, and
//! `PendingConfirm`, one message's outcome to await later, so callers keep up to
//! `confirm_window` messages in flight; `flush` waits for all of them. On RabbitMQ the outcome
//! comes from the confirm driver (`rabbit/publisher.rs`, `rabbit/confirms.rs`); on an embedded
//! connection the message is routed at once (`embedded/publisher.rs`) and the confirm is
//! already settled. What to publish (jobs, results, retries) is the callers' business.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::sync::oneshot;

use crate::connection::Backend;
use crate::embedded::EmbeddedPublisher;
use crate::rabbit::RabbitPublisher;
use crate::{AmqpError, Connection, Headers, topology::short_string};

/// Content type of every message Herald publishes through `publish`.
pub const CONTENT_TYPE_JSON: &str = "application/json";

/// A confirmed publisher. Share it by reference (or `Arc`) between tasks.
pub struct Publisher {
    inner: Inner,
}

enum Inner {
    Rabbit(RabbitPublisher),
    Embedded(EmbeddedPublisher),
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

/// Failures nobody awaited, kept for `Publisher::flush`.
#[derive(Debug, Default)]
pub(crate) struct Unobserved {
    count: usize,
    first: Option<AmqpError>,
}

impl Unobserved {
    /// Counts a failure whose `PendingConfirm` was dropped unread.
    pub(crate) fn record(cell: &Mutex<Self>, error: AmqpError) {
        let mut unobserved = cell.lock().unwrap_or_else(|e| e.into_inner());
        unobserved.count += 1;
        unobserved.first.get_or_insert(error);
    }

    /// The failures recorded since the last call, as one `AmqpError::Unobserved`.
    pub(crate) fn take(cell: &Mutex<Self>) -> Result<(), AmqpError> {
        let mut unobserved = cell.lock().unwrap_or_else(|e| e.into_inner());
        let count = std::mem::take(&mut unobserved.count);
        match unobserved.first.take() {
            Some(first) => Err(AmqpError::Unobserved {
                count,
                first: Box::new(first),
            }),
            None => Ok(()),
        }
    }
}

impl Publisher {
    /// Opens a channel in confirm mode. At most `confirm_window` (at least 1) messages await
    /// their confirm at any time; `publish` waits for room.
    pub async fn open(connection: &Connection, confirm_window: usize) -> Result<Self, AmqpError> {
        let inner = match connection.backend() {
            Backend::Rabbit(rabbit) => {
                Inner::Rabbit(RabbitPublisher::open(rabbit, confirm_window).await?)
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
        let (exchange_name, key) = (short_string(exchange)?, short_string(routing_key)?);
        let outcome = match &self.inner {
            Inner::Rabbit(rabbit) => Outcome::Awaited(
                rabbit
                    .publish(exchange_name, key, exchange, routing_key, body, headers)
                    .await?,
            ),
            Inner::Embedded(embedded) => Outcome::Settled {
                result: Some(
                    embedded
                        .publish(exchange, routing_key, body, headers)
                        .await?,
                ),
                unobserved: embedded.unobserved.clone(),
            },
        };
        Ok(PendingConfirm { outcome })
    }

    /// Waits until every message published before this call has its outcome. Returns the failures
    /// nobody awaited (dropped `PendingConfirm`s) since the last flush, as `Unobserved`.
    pub async fn flush(&self) -> Result<(), AmqpError> {
        match &self.inner {
            Inner::Rabbit(rabbit) => rabbit.flush().await,
            Inner::Embedded(embedded) => Unobserved::take(&embedded.unobserved),
        }
    }

    /// Messages published and not yet settled (always 0 on the embedded broker).
    pub fn outstanding(&self) -> usize {
        match &self.inner {
            Inner::Rabbit(rabbit) => rabbit.outstanding(),
            Inner::Embedded(_) => 0,
        }
    }

    /// False once the channel is closed (by us, the broker or a lost connection); open a new one.
    pub fn is_usable(&self) -> bool {
        match &self.inner {
            Inner::Rabbit(rabbit) => rabbit.is_usable(),
            Inner::Embedded(embedded) => embedded.is_usable(),
        }
    }

    /// Flushes, closes the channel and waits for the confirm driver to finish.
    pub async fn close(self) -> Result<(), AmqpError> {
        match self.inner {
            Inner::Rabbit(rabbit) => rabbit.close().await,
            Inner::Embedded(embedded) => {
                embedded.close();
                Unobserved::take(&embedded.unobserved)
            }
        }
    }
}

/// lapin's channel `Debug` prints returned messages, bodies included; show counts only.
impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Inner::Rabbit(rabbit) => rabbit.fmt(f),
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

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.outcome {
            Outcome::Awaited(receiver) => std::pin::Pin::new(receiver)
                .poll(cx)
                .map(|received| received.unwrap_or(Err(AmqpError::PublisherClosed))),
            Outcome::Settled { result, .. } => {
                Poll::Ready(result.take().unwrap_or(Err(AmqpError::PublisherClosed)))
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
            Unobserved::record(unobserved, error);
        }
    }
}
