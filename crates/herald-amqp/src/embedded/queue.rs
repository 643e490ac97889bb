//! Queues of the embedded broker: a FIFO of ready messages (classic and quorum queues are the same
//! thing in memory), or an append-only log for a stream, plus what the declaration's arguments
//! ask for: a message TTL and where expired or rejected messages are dead-lettered. Routing is
//! `exchange.rs`; consumers and acks are `consumer.rs`; expiry runs on `clock.rs`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

use lapin::types::{AMQPValue, FieldTable};

/// One published message, shared by every queue it was routed to.
#[derive(Debug)]
pub(crate) struct Message {
    /// The exchange it was published (or dead-lettered) to.
    pub(crate) exchange: String,
    /// Its routing key.
    pub(crate) routing_key: String,
    pub(crate) body: Vec<u8>,
    pub(crate) headers: FieldTable,
}

/// A message waiting in a queue.
#[derive(Debug, Clone)]
pub(crate) struct Queued {
    pub(crate) message: Arc<Message>,
    /// Delivered before and requeued (nack, or its consumer went away).
    pub(crate) redelivered: bool,
    /// When the queue's TTL dead-letters it.
    pub(crate) expires_at: Option<Instant>,
}

/// Where a queue sends the messages it dead-letters (`x-dead-letter-exchange`, `-routing-key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeadLetter {
    pub(crate) exchange: String,
    /// `None`: the message keeps its own routing key.
    pub(crate) routing_key: Option<String>,
}

/// A stream's retained messages: offsets count from the first message ever appended.
#[derive(Debug, Default)]
pub(crate) struct Log {
    pub(crate) messages: VecDeque<Arc<Message>>,
    /// Offset of `messages[0]`.
    pub(crate) base: u64,
    bytes: u64,
    /// `x-max-length-bytes`: the oldest messages are dropped past it.
    max_bytes: Option<u64>,
}

impl Log {
    /// The offset the next appended message gets.
    pub(crate) fn end(&self) -> u64 {
        self.base + self.messages.len() as u64
    }

    pub(crate) fn get(&self, offset: u64) -> Option<&Arc<Message>> {
        let index = usize::try_from(offset.checked_sub(self.base)?).ok()?;
        self.messages.get(index)
    }

    fn append(&mut self, message: Arc<Message>) {
        self.bytes += message.body.len() as u64;
        self.messages.push_back(message);
        while let Some(max) = self.max_bytes {
            if self.bytes <= max || self.messages.len() <= 1 {
                break;
            }
            if let Some(old) = self.messages.pop_front() {
                self.bytes -= old.body.len() as u64;
                self.base += 1;
            }
        }
    }
}

/// One queue.
#[derive(Debug)]
pub(crate) struct Queue {
    /// The arguments it was declared with; a later declaration must match them.
    pub(crate) arguments: FieldTable,
    pub(crate) stream: bool,
    /// Message TTL after the broker's `ttl_divisor`.
    pub(crate) ttl: Option<Duration>,
    pub(crate) dead_letter: Option<DeadLetter>,
    pub(crate) ready: VecDeque<Queued>,
    pub(crate) log: Log,
    /// Consumers waiting for a message to arrive.
    pub(crate) waiting: Vec<Waker>,
}

impl Queue {
    /// A queue as RabbitMQ would make it from these arguments; an argument the embedded broker
    /// does not understand is ignored, one it understands but cannot use is an error.
    pub(crate) fn declare(arguments: &FieldTable, ttl_divisor: u32) -> Result<Self, String> {
        let get = |key: &str| arguments.inner().get(key);
        let stream = match get("x-queue-type").and_then(text) {
            None => false,
            Some(kind) => match kind.as_str() {
                "classic" | "quorum" => false,
                "stream" => true,
                _ => return Err(format!("unknown x-queue-type '{kind}'")),
            },
        };
        let ttl = match get("x-message-ttl") {
            None => None,
            Some(value) => {
                let ms = integer(value)
                    .and_then(|ms| u64::try_from(ms).ok())
                    .ok_or("x-message-ttl must be a non-negative integer")?;
                Some(Duration::from_millis(ms) / ttl_divisor.max(1))
            }
        };
        let dead_letter = get("x-dead-letter-exchange")
            .and_then(text)
            .map(|exchange| DeadLetter {
                exchange,
                routing_key: get("x-dead-letter-routing-key").and_then(text),
            });
        let max_bytes = get("x-max-length-bytes")
            .and_then(integer)
            .and_then(|n| u64::try_from(n).ok());
        Ok(Self {
            arguments: arguments.clone(),
            stream,
            ttl,
            dead_letter,
            ready: VecDeque::new(),
            log: Log {
                max_bytes,
                ..Log::default()
            },
            waiting: Vec::new(),
        })
    }

    /// Adds a message at the back (or to the log), and hands over the wakers of the consumers
    /// waiting for one.
    pub(crate) fn push(&mut self, message: Arc<Message>, now: Instant, wake: &mut Vec<Waker>) {
        if self.stream {
            self.log.append(message);
        } else {
            self.ready.push_back(Queued {
                message,
                redelivered: false,
                expires_at: self.ttl.map(|ttl| now + ttl),
            });
        }
        wake.append(&mut self.waiting);
    }

    /// Puts messages given back by a consumer at the front, oldest first, marked redelivered.
    /// They keep their expiry (RabbitMQ keeps a requeued message's original expiry too).
    pub(crate) fn requeue(&mut self, messages: Vec<Queued>, wake: &mut Vec<Waker>) {
        if self.stream || messages.is_empty() {
            return;
        }
        for mut queued in messages.into_iter().rev() {
            queued.redelivered = true;
            self.ready.push_front(queued);
        }
        wake.append(&mut self.waiting);
    }

    /// Removes and returns the messages at the front whose TTL has passed.
    pub(crate) fn take_expired(&mut self, now: Instant) -> Vec<Queued> {
        let mut expired = Vec::new();
        while self
            .ready
            .front()
            .is_some_and(|q| q.expires_at.is_some_and(|at| at <= now))
        {
            expired.extend(self.ready.pop_front());
        }
        expired
    }

    /// When the front message expires, if it ever does.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.ready.front().and_then(|q| q.expires_at)
    }

    /// Ready messages (not counting unacked ones); a stream counts what it retains.
    pub(crate) fn message_count(&self) -> usize {
        if self.stream {
            self.log.messages.len()
        } else {
            self.ready.len()
        }
    }
}

/// The first argument whose value differs between two declarations, if any.
pub(crate) fn differing_argument(old: &FieldTable, new: &FieldTable) -> Option<String> {
    let (old, new) = (old.inner(), new.inner());
    old.keys()
        .chain(new.keys())
        .find(|key| old.get(*key) != new.get(*key))
        .map(|key| key.as_str().to_owned())
}

fn text(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

fn integer(value: &AMQPValue) -> Option<i64> {
    match value {
        AMQPValue::ShortShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::LongInt(n) => Some(i64::from(*n)),
        AMQPValue::LongUInt(n) => Some(i64::from(*n)),
        AMQPValue::LongLongInt(n) => Some(*n),
        _ => None,
    }
}
