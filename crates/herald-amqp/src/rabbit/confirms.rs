//! The confirm driver: one task per `Publisher` that turns lapin's publisher confirms into one
//! exact outcome per message (ok, `Returned`, `Nacked`, or the channel's error). It also awaits
//! each message's socket write (`Confirm::Writing`), which `publisher.rs` leaves to it so callers
//! need not wait for lapin's I/O thread. It does not publish and does not bound the window;
//! `publisher.rs` does both.
//!
//! Why a driver and not lapin's `Confirmation` as is: lapin attaches a returned (unroutable)
//! message to whichever confirm completes first after the `basic.return` arrives. When the broker
//! acks several messages at once (`multiple`), lapin completes them in `HashMap` order, so the
//! returned message can ride on a *neighbour's* confirm, and that neighbour can complete after
//! the returned message's own confirm. So every message carries `x-herald-publish-id`, returns
//! are matched by that id, and a message is only declared ok once a fence (a `basic.qos`
//! round trip on the same channel, which lapin handles strictly after the ack frames that came
//! before it) proves that every confirm of its ack frame has been seen.

use std::{
    collections::{HashMap, VecDeque},
    future::{Future, poll_fn},
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use lapin::{
    Channel, Confirmation, PublisherConfirm, message::BasicReturnMessage, options::BasicQosOptions,
    types::AMQPValue,
};
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};

use crate::AmqpError;
use crate::headers::PUBLISH_ID_HEADER;
use crate::publisher::Unobserved;

/// A published message waiting for its outcome; holds its confirm-window permit until settled.
pub(crate) struct Pending {
    pub(crate) id: u64,
    pub(crate) exchange: String,
    pub(crate) routing_key: String,
    pub(crate) confirm: Confirm,
    pub(crate) reply: oneshot::Sender<Result<(), AmqpError>>,
    pub(crate) permit: OwnedSemaphorePermit,
}

type Fence = Pin<Box<dyn Future<Output = lapin::Result<()>> + Send>>;

/// lapin's `basic_publish` after its first poll: the frames are queued and the confirm numbered,
/// the write is still to come.
pub(crate) type Writing = Pin<Box<dyn Future<Output = lapin::Result<PublisherConfirm>> + Send>>;

/// A message's confirm, through its two stages: written to the socket, then confirmed.
pub(crate) enum Confirm {
    Writing(Writing),
    Waiting(PublisherConfirm),
}

impl Future for Confirm {
    type Output = lapin::Result<Confirmation>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match &mut *self {
                Self::Writing(writing) => match writing.as_mut().poll(cx) {
                    Poll::Ready(Ok(confirm)) => *self = Self::Waiting(confirm),
                    Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                    Poll::Pending => return Poll::Pending,
                },
                Self::Waiting(confirm) => return Pin::new(confirm).poll(cx),
            }
        }
    }
}

enum Seen {
    Acked,
    Nacked,
    Failed(lapin::Error),
}

struct Slot {
    pending: Pending,
    /// What the broker said, and the fence that must complete before we trust it.
    seen: Option<(Seen, u64)>,
}

struct Returned {
    reply_code: u16,
    reply_text: String,
}

pub(crate) struct Driver {
    channel: Channel,
    intake: mpsc::UnboundedReceiver<Pending>,
    intake_open: bool,
    /// In publish order. Confirms are observed in that order (polling stops at the first one
    /// still pending), so the observed slots are always a prefix and settle from the front.
    /// Polling every outstanding confirm on each wake-up cost O(window) per message.
    slots: VecDeque<Slot>,
    returned: HashMap<u64, Returned>,
    /// Highest id received; publishes reach the intake in id order (see `Publisher::publish`).
    last_registered: u64,
    fences_issued: u64,
    fence: Option<Fence>,
    unobserved: Arc<Mutex<Unobserved>>,
}

impl Driver {
    pub(crate) fn new(
        channel: Channel,
        intake: mpsc::UnboundedReceiver<Pending>,
        unobserved: Arc<Mutex<Unobserved>>,
    ) -> Self {
        Self {
            channel,
            intake,
            intake_open: true,
            slots: VecDeque::new(),
            returned: HashMap::new(),
            last_registered: 0,
            fences_issued: 0,
            fence: None,
            unobserved,
        }
    }

    /// Runs until the publisher is gone and every message has its outcome.
    pub(crate) async fn run(mut self) {
        poll_fn(|cx| self.poll_step(cx)).await;
    }

    fn poll_step(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            let mut progress = false;
            while self.intake_open {
                match self.intake.poll_recv(cx) {
                    Poll::Ready(Some(pending)) => {
                        self.last_registered = pending.id;
                        self.slots.push_back(Slot {
                            pending,
                            seen: None,
                        });
                        progress = true;
                    }
                    Poll::Ready(None) => self.intake_open = false,
                    Poll::Pending => break,
                }
            }
            // A confirm seen now is trusted after the next fence issued from here on.
            let trusted_after = self.fences_issued + 1;
            // A later confirm that completes first is observed once the earlier ones have: it
            // costs that message a little latency, never a wrong outcome.
            for slot in self.slots.iter_mut().skip_while(|slot| slot.seen.is_some()) {
                match Pin::new(&mut slot.pending.confirm).poll(cx) {
                    Poll::Ready(result) => {
                        slot.seen = Some((observe(result, &mut self.returned), trusted_after));
                        progress = true;
                    }
                    Poll::Pending => break,
                }
            }
            let fenced = match self.fence.as_mut() {
                Some(fence) => fence.as_mut().poll(cx),
                None => Poll::Pending,
            };
            if let Poll::Ready(result) = fenced {
                self.fence = None;
                self.settle(self.fences_issued, result.err());
                progress = true;
            }
            if self.fence.is_none() && self.slots.front().is_some_and(|slot| slot.seen.is_some()) {
                self.fences_issued += 1;
                let channel = self.channel.clone();
                self.fence = Some(Box::pin(async move {
                    channel.basic_qos(0, BasicQosOptions::default()).await
                }));
                progress = true;
            }
            if !progress {
                break;
            }
        }
        if !self.intake_open && self.slots.is_empty() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Gives every slot trusted by fence `completed` its outcome. If the fence failed the channel
    /// is gone; an ack we cannot vouch for becomes that error (a duplicate beats a loss).
    fn settle(&mut self, completed: u64, fence_error: Option<lapin::Error>) {
        while let Some(front) = self.slots.front() {
            if !matches!(front.seen, Some((_, fence)) if fence <= completed) {
                break;
            }
            let Slot { pending, seen } = self.slots.pop_front().expect("front exists");
            let Some((seen, _)) = seen else { continue };
            let returned = self.returned.remove(&pending.id);
            let outcome = match (seen, returned) {
                (_, Some(returned)) => Err(AmqpError::Returned {
                    exchange: pending.exchange,
                    routing_key: pending.routing_key,
                    reply_code: returned.reply_code,
                    reply_text: returned.reply_text,
                }),
                (Seen::Failed(source), None) => Err(AmqpError::amqp("publisher confirm")(source)),
                (Seen::Nacked, None) => Err(AmqpError::Nacked {
                    exchange: pending.exchange,
                    routing_key: pending.routing_key,
                }),
                (Seen::Acked, None) => match &fence_error {
                    None => Ok(()),
                    Some(error) => Err(AmqpError::amqp("publisher confirm")(error.clone())),
                },
            };
            if let Err(Err(error)) = pending.reply.send(outcome) {
                Unobserved::record(&self.unobserved, error);
            }
            // The outcome is recorded; only now may `flush` (which waits for permits) return.
            drop(pending.permit);
        }
        // Returns for ids already settled or abandoned (a publish cancelled mid-write) can never
        // be claimed; ids above `last_registered` may still be on their way to the intake.
        if !self.returned.is_empty() {
            let open: Vec<u64> = self.slots.iter().map(|slot| slot.pending.id).collect();
            let last = self.last_registered;
            self.returned
                .retain(|id, _| *id > last || open.contains(id));
        }
    }
}

/// What one confirm says, filing any returned message it carries under that message's own id.
fn observe(result: lapin::Result<Confirmation>, returned: &mut HashMap<u64, Returned>) -> Seen {
    let (seen, message) = match result {
        Ok(Confirmation::Ack(message)) => (Seen::Acked, message),
        Ok(Confirmation::Nack(message)) => (Seen::Nacked, message),
        // Confirms are always selected on a publisher channel; without one we cannot vouch.
        Ok(Confirmation::NotRequested) => (Seen::Nacked, None),
        Err(error) => (Seen::Failed(error), None),
    };
    if let Some(message) = message {
        if let Some(id) = publish_id(&message) {
            let text = message.reply_text.as_str().to_owned();
            returned.insert(
                id,
                Returned {
                    reply_code: message.reply_code,
                    reply_text: text,
                },
            );
        } else {
            tracing::warn!(exchange = %message.exchange, routing_key = %message.routing_key,
                "Broker returned a message without a publish id; ignoring it.");
        }
    }
    seen
}

fn publish_id(message: &BasicReturnMessage) -> Option<u64> {
    let headers = message.properties.headers().as_ref()?;
    match headers.inner().get(PUBLISH_ID_HEADER)? {
        AMQPValue::LongLongInt(id) => u64::try_from(*id).ok(),
        _ => None,
    }
}
