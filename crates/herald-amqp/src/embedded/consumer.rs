//! Consumers of the embedded broker: manual acks with a prefetch bound, ack / nack / reject with
//! or without requeue (a discarded message is dead-lettered when its queue says so), a stream
//! consumer that reads the log from an offset, and the AMQP rule that a consumer going away
//! (closed, dropped, its connection closed) gives its unacked messages back to the queue.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use futures_util::Stream;

use super::queue::{Message, Queued};
use super::state::State;
use super::{Core, EmbeddedConnection};
use crate::{AmqpError, Headers, StreamOffset};

/// One consumer as the broker tracks it.
#[derive(Debug)]
pub(crate) struct ConsumerState {
    pub(crate) queue: String,
    connection: u64,
    prefetch: usize,
    /// Deliveries not yet settled, by delivery tag.
    unacked: BTreeMap<u64, Queued>,
    next_tag: u64,
    /// For a stream consumer: the next offset to read.
    offset: Option<u64>,
    /// The consumer task, parked because its prefetch is used up.
    waker: Option<Waker>,
    /// Cancelled (`stop`, or its queue was deleted): no new deliveries; acks still work.
    stopped: bool,
}

impl ConsumerState {
    /// No new deliveries; wakes the consumer so its stream ends.
    pub(crate) fn cancel(&mut self, wake: &mut Vec<Waker>) {
        self.stopped = true;
        wake.extend(self.waker.take());
    }
}

/// What happens to a settled delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settle {
    Ack,
    Requeue,
    /// Dead-lettered if the queue has a dead-letter exchange, else dropped.
    Discard,
}

impl Settle {
    /// A nack or reject: back to the queue when `requeue`, else discarded.
    pub(crate) fn requeued(requeue: bool) -> Self {
        if requeue {
            Self::Requeue
        } else {
            Self::Discard
        }
    }
}

/// A message handed to a consumer.
pub(crate) struct Delivered {
    tag: u64,
    queued: Queued,
}

impl State {
    pub(crate) fn start_consumer(
        &mut self,
        id: u64,
        queue: &str,
        connection: u64,
        prefetch: u16,
        offset: Option<StreamOffset>,
    ) -> Result<(), AmqpError> {
        let found = self.queue(queue)?;
        let offset = found.stream.then(|| {
            let log = &found.log;
            // A stream consumer without an offset starts at `next`, as in RabbitMQ.
            match offset.unwrap_or(StreamOffset::Next) {
                StreamOffset::First => log.base,
                StreamOffset::Last => log.end().saturating_sub(1).max(log.base),
                StreamOffset::Next => log.end(),
            }
        });
        let consumer = ConsumerState {
            queue: queue.to_owned(),
            connection,
            prefetch: usize::from(prefetch.max(1)),
            unacked: BTreeMap::new(),
            next_tag: 1,
            offset,
            waker: None,
            stopped: false,
        };
        self.consumers.insert(id, consumer);
        Ok(())
    }

    /// The next message for consumer `id`, or `Pending` (with its waker parked) when the queue
    /// is empty or the prefetch is used up; `None` once it is stopped or gone.
    fn next_delivery(&mut self, id: u64, waker: &Waker) -> Poll<Option<Delivered>> {
        let Some(consumer) = self.consumers.get_mut(&id) else {
            return Poll::Ready(None);
        };
        if consumer.stopped {
            return Poll::Ready(None);
        }
        if consumer.unacked.len() >= consumer.prefetch {
            consumer.waker = Some(waker.clone());
            return Poll::Pending;
        }
        let Some(queue) = self.queues.get_mut(&consumer.queue) else {
            consumer.stopped = true;
            return Poll::Ready(None);
        };
        let next = match consumer.offset.as_mut() {
            Some(offset) => {
                // Retention may have dropped what this consumer had not read yet.
                *offset = (*offset).max(queue.log.base);
                let message = queue.log.get(*offset).cloned();
                if message.is_some() {
                    *offset += 1;
                }
                message.map(|message| Queued {
                    message,
                    redelivered: false,
                    expires_at: None,
                })
            }
            None => {
                let next = queue.ready.pop_front();
                self.freed |= next.is_some();
                next
            }
        };
        let Some(queued) = next else {
            if !queue.waiting.iter().any(|parked| parked.will_wake(waker)) {
                queue.waiting.push(waker.clone());
            }
            return Poll::Pending;
        };
        let tag = consumer.next_tag;
        consumer.next_tag += 1;
        consumer.unacked.insert(tag, queued.clone());
        Poll::Ready(Some(Delivered { tag, queued }))
    }

    /// Settles one delivery. An unknown consumer or tag (closed, or settled already) is
    /// `AckUnusable`, as with a closed RabbitMQ channel.
    pub(crate) fn settle(
        &mut self,
        id: u64,
        tag: u64,
        how: Settle,
        now: Instant,
    ) -> Result<(), AmqpError> {
        let consumer = self.consumers.get_mut(&id).ok_or(AmqpError::AckUnusable)?;
        let queued = consumer
            .unacked
            .remove(&tag)
            .ok_or(AmqpError::AckUnusable)?;
        self.wake.extend(consumer.waker.take());
        if consumer.offset.is_some() {
            // A stream keeps every message; settling only returns the credit.
            return Ok(());
        }
        let name = consumer.queue.clone();
        match how {
            Settle::Ack => {}
            Settle::Requeue => {
                if let Some(queue) = self.queues.get_mut(&name) {
                    queue.requeue(vec![queued], &mut self.wake);
                }
            }
            Settle::Discard => {
                let target = self.queues.get(&name).and_then(|q| q.dead_letter.clone());
                if let Some(target) = target {
                    self.dead_letter(&name, &target, &queued, "rejected", now);
                }
            }
        }
        Ok(())
    }

    pub(crate) fn stop_consumer(&mut self, id: u64) {
        if let Some(consumer) = self.consumers.get_mut(&id) {
            consumer.cancel(&mut self.wake);
        }
    }

    /// Forgets the consumer; its unacked messages go back to the front of its queue.
    pub(crate) fn remove_consumer(&mut self, id: u64) {
        let Some(mut consumer) = self.consumers.remove(&id) else {
            return;
        };
        self.wake.extend(consumer.waker.take());
        let unacked: Vec<Queued> = std::mem::take(&mut consumer.unacked)
            .into_values()
            .collect();
        if let Some(queue) = self.queues.get_mut(&consumer.queue) {
            queue.requeue(unacked, &mut self.wake);
        }
    }

    /// Every consumer opened on the connection goes away.
    pub(crate) fn close_connection(&mut self, connection: u64) {
        let ids: Vec<u64> = self
            .consumers
            .iter()
            .filter(|(_, consumer)| consumer.connection == connection)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.remove_consumer(id);
        }
    }

    /// Active (not stopped) consumers on `queue`, or `QueueMissing`.
    pub(crate) fn consumer_count(&self, queue: &str) -> Result<u32, AmqpError> {
        self.queue(queue)?;
        let count = self
            .consumers
            .values()
            .filter(|consumer| consumer.queue == queue && !consumer.stopped)
            .count();
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }
}

/// A subscription to one embedded queue; dropping it is closing it.
pub(crate) struct EmbeddedConsumer {
    core: Arc<Core>,
    id: u64,
}

impl EmbeddedConsumer {
    pub(crate) fn start(
        connection: &EmbeddedConnection,
        queue: &str,
        prefetch: u16,
        offset: Option<StreamOffset>,
    ) -> Result<Self, AmqpError> {
        connection.check_open()?;
        let core = connection.core.clone();
        let id = core.next_id();
        core.with(|state| state.start_consumer(id, queue, connection.id, prefetch, offset))?;
        Ok(Self { core, id })
    }

    /// No new deliveries; those already received can still be settled.
    pub(crate) fn stop(&self) {
        self.core.with(|state| state.stop_consumer(self.id));
    }

    pub(crate) fn poll_next(&self, cx: &Context<'_>) -> Poll<Option<EmbeddedDelivery>> {
        let next = self
            .core
            .with(|state| state.next_delivery(self.id, cx.waker()));
        next.map(|delivered| {
            delivered.map(|Delivered { tag, queued }| EmbeddedDelivery {
                core: self.core.clone(),
                consumer: self.id,
                tag,
                message: queued.message,
                redelivered: queued.redelivered,
            })
        })
    }
}

impl Drop for EmbeddedConsumer {
    fn drop(&mut self) {
        self.core.with(|state| state.remove_consumer(self.id));
    }
}

impl Stream for EmbeddedConsumer {
    type Item = EmbeddedDelivery;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        EmbeddedConsumer::poll_next(&self, cx)
    }
}

/// One message from an embedded consumer.
pub(crate) struct EmbeddedDelivery {
    core: Arc<Core>,
    consumer: u64,
    tag: u64,
    message: Arc<Message>,
    redelivered: bool,
}

impl EmbeddedDelivery {
    pub(crate) fn body(&self) -> &[u8] {
        &self.message.body
    }

    pub(crate) fn headers(&self) -> Headers {
        Headers::from_table(self.message.headers.clone())
    }

    pub(crate) fn exchange(&self) -> &str {
        &self.message.exchange
    }

    pub(crate) fn routing_key(&self) -> &str {
        &self.message.routing_key
    }

    pub(crate) fn redelivered(&self) -> bool {
        self.redelivered
    }

    pub(crate) fn settle(&self, how: Settle) -> Result<(), AmqpError> {
        let now = Instant::now();
        self.core
            .with(|state| state.settle(self.consumer, self.tag, how, now))
    }
}
