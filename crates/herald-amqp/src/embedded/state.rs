//! The embedded broker's whole state behind one lock: exchanges, queues and consumers, with the
//! operations on them that RabbitMQ performs on declare, bind, publish, expiry and dead-lettering.
//! Everything here runs with the lock held and never blocks; tasks it makes runnable are queued
//! in `wake` and woken after the lock is released (`Core::with`).

use std::collections::HashMap;
use std::sync::Arc;
use std::task::Waker;
use std::time::Instant;

use lapin::ExchangeKind;
use lapin::protocol::{AMQPError, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable};
use tracing::warn;

use super::consumer::ConsumerState;
use super::exchange::{Exchange, Kind};
use super::queue::{DeadLetter, Message, Queue, Queued, differing_argument};
use crate::AmqpError;

/// Header RabbitMQ sets on a message's first dead-lettering: the queue it left.
const FIRST_DEATH_QUEUE: &str = "x-first-death-queue";
/// ...why (`expired`, `rejected`).
const FIRST_DEATH_REASON: &str = "x-first-death-reason";
/// ...and the exchange it had been published to.
const FIRST_DEATH_EXCHANGE: &str = "x-first-death-exchange";

#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) exchanges: HashMap<String, Exchange>,
    pub(crate) queues: HashMap<String, Queue>,
    pub(crate) consumers: HashMap<u64, ConsumerState>,
    /// Tasks to wake once the lock is released.
    pub(crate) wake: Vec<Waker>,
    /// A TTL queue changed: the clock recomputes its next deadline.
    pub(crate) tick: bool,
    /// Messages left a queue: publishers waiting for room try again.
    pub(crate) freed: bool,
}

impl State {
    /// Declares an exchange; re-declaring with the same kind is a no-op.
    pub(crate) fn declare_exchange(
        &mut self,
        name: &str,
        kind: &ExchangeKind,
    ) -> Result<(), AmqpError> {
        let Some(kind) = Kind::from_lapin(kind) else {
            return Err(AmqpError::ExchangeMismatch {
                exchange: name.to_owned(),
                argument: Some("type".to_owned()),
                detail: format!("the embedded broker has no {kind:?} exchanges"),
            });
        };
        match self.exchanges.get(name) {
            Some(existing) if existing.kind != kind => Err(AmqpError::ExchangeMismatch {
                exchange: name.to_owned(),
                argument: Some("type".to_owned()),
                detail: format!(
                    "declared as {:?}, asked for {kind:?} (embedded broker)",
                    existing.kind
                ),
            }),
            Some(_) => Ok(()),
            None => {
                self.exchanges.insert(name.to_owned(), Exchange::new(kind));
                Ok(())
            }
        }
    }

    /// Declares a queue; re-declaring with the same arguments is a no-op, with others an error
    /// naming the first argument that differs, as RabbitMQ's 406 does.
    pub(crate) fn declare_queue(
        &mut self,
        name: &str,
        arguments: &FieldTable,
        ttl_divisor: u32,
    ) -> Result<(), AmqpError> {
        if let Some(existing) = self.queues.get(name) {
            return match differing_argument(&existing.arguments, arguments) {
                None => Ok(()),
                Some(argument) => Err(AmqpError::TopologyMismatch {
                    queue: name.to_owned(),
                    detail: format!(
                        "PRECONDITION_FAILED - inequivalent arg '{argument}' for queue '{name}' \
                         (embedded broker)"
                    ),
                    argument: Some(argument),
                }),
            };
        }
        let queue = Queue::declare(arguments, ttl_divisor).map_err(|detail| {
            AmqpError::TopologyMismatch {
                queue: name.to_owned(),
                argument: None,
                detail,
            }
        })?;
        self.queues.insert(name.to_owned(), queue);
        Ok(())
    }

    pub(crate) fn bind(&mut self, queue: &str, exchange: &str, key: &str) -> Result<(), AmqpError> {
        if !self.queues.contains_key(queue) {
            return Err(not_found("queue.bind", &format!("no queue '{queue}'")));
        }
        let Some(target) = self.exchanges.get_mut(exchange) else {
            return Err(not_found(
                "queue.bind",
                &format!("no exchange '{exchange}'"),
            ));
        };
        target.bind(queue, key);
        Ok(())
    }

    /// Deletes a queue with its messages; its consumers are cancelled. Missing is fine.
    pub(crate) fn delete_queue(&mut self, name: &str) {
        if self.queues.remove(name).is_none() {
            return;
        }
        for exchange in self.exchanges.values_mut() {
            exchange.unbind_queue(name);
        }
        for consumer in self.consumers.values_mut() {
            if consumer.queue == name {
                consumer.cancel(&mut self.wake);
            }
        }
    }

    pub(crate) fn delete_exchange(&mut self, name: &str) {
        self.exchanges.remove(name);
    }

    /// Routes one message; returns how many queues took it. A missing exchange is RabbitMQ's
    /// 404 channel error. The default exchange (`""`) routes to the queue named by the key.
    pub(crate) fn publish(
        &mut self,
        exchange: &str,
        routing_key: &str,
        message: Arc<Message>,
        now: Instant,
    ) -> Result<usize, AmqpError> {
        let targets = self.route(exchange, routing_key)?;
        self.deliver(&targets, message, now);
        Ok(targets.len())
    }

    /// Like `publish`, but `None` (nothing published) while a queue it routes to already holds
    /// `limit` ready messages: the publisher waits, as under RabbitMQ's flow control.
    pub(crate) fn publish_within(
        &mut self,
        exchange: &str,
        routing_key: &str,
        message: &Arc<Message>,
        now: Instant,
        limit: usize,
    ) -> Option<Result<usize, AmqpError>> {
        let targets = match self.route(exchange, routing_key) {
            Ok(targets) => targets,
            Err(error) => return Some(Err(error)),
        };
        let full = targets.iter().any(|name| {
            self.queues
                .get(name)
                .is_some_and(|queue| !queue.stream && queue.ready.len() >= limit)
        });
        if full {
            return None;
        }
        self.deliver(&targets, message.clone(), now);
        Some(Ok(targets.len()))
    }

    /// The queues a message goes to.
    fn route(&self, exchange: &str, routing_key: &str) -> Result<Vec<String>, AmqpError> {
        if exchange.is_empty() {
            return Ok(if self.queues.contains_key(routing_key) {
                vec![routing_key.to_owned()]
            } else {
                Vec::new()
            });
        }
        match self.exchanges.get(exchange) {
            Some(found) => Ok(found.route(routing_key)),
            None => {
                let text = format!("no exchange '{exchange}'");
                Err(not_found("basic.publish", &text))
            }
        }
    }

    fn deliver(&mut self, targets: &[String], message: Arc<Message>, now: Instant) {
        for name in targets {
            if let Some(queue) = self.queues.get_mut(name) {
                queue.push(message.clone(), now, &mut self.wake);
                self.tick |= queue.ttl.is_some();
            }
        }
    }

    /// Sends a message that left `queue` (expired or rejected) to the queue's dead-letter
    /// exchange, as RabbitMQ does: same body and headers plus the `x-first-death-*` ones, the
    /// dead-letter routing key if one is set. Without a route it is dropped (and logged).
    pub(crate) fn dead_letter(
        &mut self,
        queue: &str,
        target: &DeadLetter,
        queued: &Queued,
        reason: &str,
        now: Instant,
    ) {
        let old = &queued.message;
        let mut headers = old.headers.clone();
        if !headers.inner().contains_key(FIRST_DEATH_QUEUE) {
            let text = |value: &str| AMQPValue::LongString(value.into());
            headers.insert(FIRST_DEATH_QUEUE.into(), text(queue));
            headers.insert(FIRST_DEATH_REASON.into(), text(reason));
            headers.insert(FIRST_DEATH_EXCHANGE.into(), text(&old.exchange));
        }
        let key = target
            .routing_key
            .clone()
            .unwrap_or_else(|| old.routing_key.clone());
        let message = Arc::new(Message {
            exchange: target.exchange.clone(),
            routing_key: key.clone(),
            body: old.body.clone(),
            headers,
        });
        match self.publish(&target.exchange, &key, message, now) {
            Ok(0) | Err(_) => warn!(queue, reason, exchange = %target.exchange,
                "Embedded broker: a dead-lettered message has no route; it is dropped."),
            Ok(_) => {}
        }
    }

    /// Dead-letters every message whose TTL has passed; returns the next expiry, if any.
    pub(crate) fn expire(&mut self, now: Instant) -> Option<Instant> {
        let due: Vec<String> = self
            .queues
            .iter()
            .filter(|(_, queue)| queue.next_expiry().is_some_and(|at| at <= now))
            .map(|(name, _)| name.clone())
            .collect();
        for name in due {
            let Some(queue) = self.queues.get_mut(&name) else {
                continue;
            };
            let expired = queue.take_expired(now);
            self.freed = true;
            let Some(target) = queue.dead_letter.clone() else {
                continue;
            };
            for queued in &expired {
                self.dead_letter(&name, &target, queued, "expired", now);
            }
        }
        self.queues.values().filter_map(Queue::next_expiry).min()
    }

    /// Ready messages in `queue`, or `QueueMissing`.
    pub(crate) fn message_count(&self, queue: &str) -> Result<u32, AmqpError> {
        let found = self.queue(queue)?;
        Ok(u32::try_from(found.message_count()).unwrap_or(u32::MAX))
    }

    pub(crate) fn queue(&self, name: &str) -> Result<&Queue, AmqpError> {
        self.queues
            .get(name)
            .ok_or_else(|| AmqpError::QueueMissing {
                queue: name.to_owned(),
            })
    }
}

/// RabbitMQ's 404 channel error, as the lapin adapter reports it: permanent, not a lost
/// connection.
pub(crate) fn not_found(during: &'static str, what: &str) -> AmqpError {
    let text = format!("NOT_FOUND - {what} in vhost '/' (embedded broker)");
    let amqp = AMQPError::new(AMQPSoftError::NOTFOUND.into(), text.into());
    AmqpError::amqp(during)(lapin::ErrorKind::ProtocolError(amqp).into())
}
