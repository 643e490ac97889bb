//! Acks on a RabbitMQ consumer channel, coalesced: `Acks` sends one `basic.ack` with `multiple`
//! for a run of settled deliveries instead of one frame per delivery. Each frame costs a wake-up
//! of lapin's I/O thread here and, on a quorum queue, a settle command in the broker's log; at a
//! few thousand jobs a second those were a large share of both processes' CPU.
//!
//! The invariant: a `multiple` ack up to tag T is sent only when every delivery this consumer
//! handed out with a tag at or below T is acked, nacked or rejected. Deliveries are registered
//! in tag order when the consumer yields them, so "handed out" is exactly the slots below T.
//! A delivery still being worked on (or dropped unsettled, so the broker must redeliver it)
//! blocks the run; acks behind it wait at most `HOLD` and then go out one by one.
//!
//! `Delivery::ack` returns when its frame is written (or with the error that stopped it), as
//! lapin's own ack does, so "acked" still means what callers think. When other deliveries are in
//! flight the flusher lingers up to `LINGER` to gather their acks; a consumer that handles one
//! delivery at a time never waits.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::options::{BasicAckOptions, BasicNackOptions, BasicRejectOptions};
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use crate::AmqpError;

/// How long the flusher waits for more acks while other deliveries are in flight.
const LINGER: Duration = Duration::from_millis(2);
/// How long an ack may wait behind an unsettled delivery before it is sent on its own.
const HOLD: Duration = Duration::from_millis(20);
/// How often a flusher whose consumer is gone checks whether every delivery is gone too.
const ORPHAN_CHECK: Duration = Duration::from_millis(100);

/// The ack queue of one consumer channel, shared by the consumer, its deliveries and the flusher.
pub(crate) struct Acks {
    channel: lapin::Channel,
    state: Mutex<State>,
    wake: Notify,
    consumer_gone: AtomicBool,
}

#[derive(Default)]
struct State {
    /// Deliveries handed out and not yet known to the broker as settled, in tag order.
    slots: VecDeque<(u64, Slot)>,
    /// Slots `Open` or `Settling`: deliveries still being worked on.
    working: usize,
    /// The flusher ended; an ack can no longer be sent.
    stopped: bool,
}

enum Slot {
    /// Handed out, not settled.
    Open,
    /// A nack or reject is being written; blocks the run like `Open`.
    Settling,
    /// Acked by its holder; waits for the flusher.
    Acked {
        reply: oneshot::Sender<Result<(), AmqpError>>,
        since: Instant,
    },
    /// No longer unacked on the broker (nacked, rejected, or acked on its own): a `multiple`
    /// ack may cover it harmlessly.
    Gone,
}

/// What one pass of the flusher sends.
#[derive(Default)]
struct Batch {
    /// Highest tag of the settled run at the front, with the acks it answers.
    run: Option<u64>,
    run_replies: Vec<oneshot::Sender<Result<(), AmqpError>>>,
    /// Acks that waited `HOLD` behind an unsettled delivery.
    singles: Vec<(u64, oneshot::Sender<Result<(), AmqpError>>)>,
    /// When the next held ack is due, if any waits.
    next_due: Option<Instant>,
}

impl Acks {
    /// The queue for `channel`, with its flusher task running.
    pub(crate) fn start(channel: lapin::Channel) -> Arc<Self> {
        let acks = Arc::new(Self {
            channel,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            consumer_gone: AtomicBool::new(false),
        });
        tokio::spawn(acks.clone().flush_loop());
        acks
    }

    /// Records a delivery the consumer is handing out. Tags rise on a channel.
    pub(crate) fn register(&self, tag: u64) {
        let mut state = self.lock();
        state.slots.push_back((tag, Slot::Open));
        state.working += 1;
    }

    /// Queues the ack and waits until it is written.
    pub(crate) async fn ack(&self, tag: u64) -> Result<(), AmqpError> {
        let (reply, written) = oneshot::channel();
        {
            let mut state = self.lock();
            if state.stopped {
                return Err(AmqpError::AckUnusable);
            }
            let slot = state.open_slot(tag)?;
            *slot = Slot::Acked {
                reply,
                since: Instant::now(),
            };
            state.working -= 1;
        }
        self.wake.notify_one();
        written.await.unwrap_or(Err(AmqpError::AckUnusable))
    }

    /// Nacks (or rejects) one delivery at once. It is written before any `multiple` ack that
    /// could cover it, because its slot blocks the run until the frame is out.
    pub(crate) async fn nack(
        &self,
        tag: u64,
        requeue: bool,
        reject: bool,
    ) -> Result<(), AmqpError> {
        *self.lock().open_slot(tag)? = Slot::Settling;
        let written = if reject {
            self.channel
                .basic_reject(tag, BasicRejectOptions { requeue })
                .await
                .map_err(AmqpError::amqp("basic.reject"))
        } else {
            let options = BasicNackOptions {
                multiple: false,
                requeue,
            };
            self.channel
                .basic_nack(tag, options)
                .await
                .map_err(AmqpError::amqp("basic.nack"))
        };
        // Sent or not, the broker no longer expects an ack from us for it: a failed write means
        // the channel is gone and the broker requeues it anyway.
        {
            let mut state = self.lock();
            if let Some(slot) = state.slot(tag) {
                *slot = Slot::Gone;
                state.working -= 1;
            }
        }
        self.wake.notify_one();
        written
    }

    /// The consumer is gone; the flusher ends once its deliveries are gone too.
    pub(crate) fn consumer_dropped(&self) {
        self.consumer_gone.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn flush_loop(self: Arc<Self>) {
        let mut last_flush = Instant::now();
        let mut next_due: Option<Instant> = None;
        loop {
            let gone = self.consumer_gone.load(Ordering::Acquire);
            let wait = match (next_due, gone) {
                (Some(due), _) => Some(due),
                (None, true) => Some(Instant::now() + ORPHAN_CHECK),
                (None, false) => None,
            };
            match wait {
                Some(deadline) => {
                    tokio::select! {
                        () = self.wake.notified() => {}
                        () = tokio::time::sleep_until(deadline) => {}
                    }
                }
                None => self.wake.notified().await,
            }
            if gone && (Arc::strong_count(&self) == 1 || !self.channel.status().connected()) {
                break;
            }
            if self.lock().working > 0 {
                // Others are in flight: give their acks a moment to join this frame.
                tokio::time::sleep_until(last_flush + LINGER).await;
            }
            let batch = self.lock().take(Instant::now());
            next_due = batch.next_due;
            if batch.run.is_some() || !batch.singles.is_empty() {
                last_flush = Instant::now();
                self.send(batch).await;
            }
        }
        let mut state = self.lock();
        state.stopped = true;
        for (_, slot) in state.slots.drain(..) {
            if let Slot::Acked { reply, .. } = slot {
                let _ = reply.send(Err(AmqpError::AckUnusable));
            }
        }
    }

    async fn send(&self, batch: Batch) {
        if let Some(tag) = batch.run {
            let written = self
                .channel
                .basic_ack(tag, BasicAckOptions { multiple: true })
                .await;
            for reply in batch.run_replies {
                let _ = reply.send(
                    written
                        .clone()
                        .map_err(AmqpError::amqp("basic.ack (multiple)")),
                );
            }
        }
        for (tag, reply) in batch.singles {
            let written = self
                .channel
                .basic_ack(tag, BasicAckOptions { multiple: false })
                .await
                .map_err(AmqpError::amqp("basic.ack"));
            let _ = reply.send(written);
        }
    }
}

impl State {
    fn slot(&mut self, tag: u64) -> Option<&mut Slot> {
        let index = self.slots.binary_search_by_key(&tag, |(t, _)| *t).ok()?;
        self.slots.get_mut(index).map(|(_, slot)| slot)
    }

    /// The slot of a delivery not yet settled, or `AckUnusable` (settled twice, or unknown).
    fn open_slot(&mut self, tag: u64) -> Result<&mut Slot, AmqpError> {
        match self.slot(tag) {
            Some(slot) if matches!(slot, Slot::Open) => Ok(slot),
            _ => Err(AmqpError::AckUnusable),
        }
    }

    /// Pops the settled run at the front and takes the held acks that are due.
    fn take(&mut self, now: Instant) -> Batch {
        let mut batch = Batch::default();
        while let Some((tag, slot)) = self.slots.front() {
            match slot {
                Slot::Open | Slot::Settling => break,
                Slot::Gone => {}
                Slot::Acked { .. } => batch.run = Some(*tag),
            }
            if let Some((_, Slot::Acked { reply, .. })) = self.slots.pop_front() {
                batch.run_replies.push(reply);
            }
        }
        for (tag, slot) in self.slots.iter_mut() {
            match slot {
                Slot::Open | Slot::Settling | Slot::Gone => {}
                Slot::Acked { since, .. } => {
                    let due = *since + HOLD;
                    if due <= now {
                        if let Slot::Acked { reply, .. } = std::mem::replace(slot, Slot::Gone) {
                            batch.singles.push((*tag, reply));
                        }
                    } else {
                        batch.next_due = Some(batch.next_due.map_or(due, |d| d.min(due)));
                    }
                }
            }
        }
        batch
    }
}
