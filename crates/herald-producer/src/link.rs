//! The publishing link of a run: connection, topology, confirmed publisher, and what happens
//! when the broker goes away (reconnect, then republish every unconfirmed message of the run
//! with the same bytes, so the same job ids). `run.rs` decides what to publish and when a row
//! counts; this file only gets messages to the broker and reports their fate.

use std::collections::VecDeque;
use std::sync::Arc;

use futures_util::FutureExt;
use herald_amqp::{AmqpError, Headers, PRIORITY_ROUTING_KEY, PendingConfirm, SEND_ROUTING_KEY};
use herald_core::campaign::Priority;
use tracing::warn;

use crate::shared::Connected;
use crate::spec::{ProducerError, SendSpec};

/// Reconnection attempts after a lost connection (each `connect` retries with backoff itself).
const RECONNECTS: u32 = 5;

/// One row's message and where it stands with the broker.
pub(crate) struct Message {
    to_results: bool,
    routing_key: String,
    body: Vec<u8>,
    /// `x-herald-verify-since` for a job that may have been published before (a resume).
    verify_since: Option<i64>,
    /// A job of the priority lane (`x-herald-priority: high`).
    high_priority: bool,
    state: Confirmation,
}

/// Where one message stands with the broker.
pub(crate) enum Confirmation {
    /// Not (successfully) written yet.
    Unsent,
    /// Written; the broker's confirm is awaited.
    Pending(PendingConfirm),
    /// Confirmed (seen while recovering from a lost connection).
    Confirmed,
}

impl Message {
    pub(crate) fn new(to_results: bool, routing_key: String, body: Vec<u8>) -> Self {
        Self {
            to_results,
            routing_key,
            body,
            verify_since: None,
            high_priority: false,
            state: Confirmation::Unsent,
        }
    }

    /// A job for `<p>.jobs`, routed to its lane's queue and marked when it is a priority one.
    pub(crate) fn job(body: Vec<u8>, priority: Priority) -> Self {
        let high_priority = priority == Priority::High;
        let routing_key = if high_priority {
            PRIORITY_ROUTING_KEY
        } else {
            SEND_ROUTING_KEY
        };
        Self {
            high_priority,
            ..Self::new(false, routing_key.to_owned(), body)
        }
    }

    /// Marks the job as possibly published already, since `epoch_ms`.
    pub(crate) fn verify_since(&mut self, epoch_ms: i64) {
        self.verify_since = Some(epoch_ms);
    }

    /// The outcome if it is known now: `None` while the confirm is outstanding.
    pub(crate) fn poll_settled(&mut self) -> Option<Result<(), AmqpError>> {
        let outcome = match &mut self.state {
            Confirmation::Confirmed => return Some(Ok(())),
            Confirmation::Unsent => return Some(Err(AmqpError::PublisherClosed)),
            Confirmation::Pending(pending) => pending.now_or_never()?,
        };
        Some(self.record(outcome))
    }

    pub(crate) async fn settled(&mut self) -> Result<(), AmqpError> {
        let outcome = match &mut self.state {
            Confirmation::Confirmed => return Ok(()),
            Confirmation::Unsent => return Err(AmqpError::PublisherClosed),
            Confirmation::Pending(pending) => pending.await,
        };
        self.record(outcome)
    }

    /// Keeps a confirm's outcome in the state, so the finished confirm is never polled again
    /// (a lost connection makes `recover` look at every tracked message, this one included).
    fn record(&mut self, outcome: Result<(), AmqpError>) -> Result<(), AmqpError> {
        self.state = match outcome {
            Ok(()) => Confirmation::Confirmed,
            Err(_) => Confirmation::Unsent,
        };
        outcome
    }
}

/// The connection and publisher of a run (its own, or the process's `SharedLink`), rebuilt
/// after a loss.
pub(crate) struct Link {
    connected: Arc<Connected>,
    shared: bool,
    jobs_exchange: String,
    results_exchange: String,
}

impl Link {
    pub(crate) async fn open(spec: &SendSpec) -> Result<Self, AmqpError> {
        Self::reopen(spec, None).await
    }

    async fn reopen(spec: &SendSpec, stale: Option<&Arc<Connected>>) -> Result<Self, AmqpError> {
        let (connected, shared) = match &spec.shared_link {
            Some(link) => (link.get(&spec.amqp, &spec.topology, stale).await?, true),
            None => {
                let connected = Connected::open(&spec.amqp, &spec.topology).await?;
                (Arc::new(connected), false)
            }
        };
        Ok(Self {
            connected,
            shared,
            jobs_exchange: spec.topology.jobs_exchange(),
            results_exchange: spec.topology.results_exchange(),
        })
    }

    pub(crate) async fn publish(&self, message: &mut Message) -> Result<(), AmqpError> {
        let exchange = if message.to_results {
            &self.results_exchange
        } else {
            &self.jobs_exchange
        };
        message.state = Confirmation::Unsent;
        let mut headers = match message.verify_since {
            Some(since) => Headers::new().with_verify_since(since),
            None => Headers::new(),
        };
        if message.high_priority {
            headers = headers.with_high_priority();
        }
        let pending = self
            .connected
            .publisher
            .publish(exchange, &message.routing_key, &message.body, headers)
            .await?;
        message.state = Confirmation::Pending(pending);
        Ok(())
    }

    /// After `cause`: a lost connection is rebuilt and every unconfirmed message republished (same
    /// bytes, same job id); anything else (unroutable, refused) ends the run, resumable. A
    /// shared connection declared the topology when it opened, so after an unroutable message
    /// (a queue deleted since) it declares it again: the next run on it routes, or a resume.
    pub(crate) async fn recover(
        &mut self,
        spec: &SendSpec,
        tracked: &mut VecDeque<Tracked>,
        cause: AmqpError,
    ) -> Result<(), ProducerError> {
        if !(cause.is_connection_lost() || cause.is_retryable()) {
            if self.shared
                && matches!(cause, AmqpError::Returned { .. })
                && let Err(error) = spec.topology.declare(&self.connected.connection).await
            {
                warn!(error = %error, "Could not declare the topology again after an unroutable message.");
            }
            return Err(cause.into());
        }
        let mut last = cause;
        for attempt in 1..=RECONNECTS {
            warn!(attempt, error = %last, "Broker connection lost; reconnecting to republish the unconfirmed tail.");
            match Self::reopen(spec, Some(&self.connected)).await {
                Ok(link) => {
                    *self = link;
                    match self.republish(tracked).await {
                        Ok(()) => return Ok(()),
                        Err(error) => last = error,
                    }
                }
                Err(error) => last = error,
            }
        }
        Err(last.into())
    }

    async fn republish(&self, tracked: &mut VecDeque<Tracked>) -> Result<(), AmqpError> {
        for entry in tracked.iter_mut() {
            let Some(message) = entry.message.as_mut() else {
                continue;
            };
            if matches!(message.poll_settled(), Some(Ok(()))) {
                message.state = Confirmation::Confirmed;
            } else {
                self.publish(message).await?;
            }
        }
        Ok(())
    }

    /// Closes the run's own connection; a shared one stays open for the next run.
    pub(crate) async fn close(self) {
        if self.shared {
            return;
        }
        if let Ok(connected) = Arc::try_unwrap(self.connected) {
            let _ = connected.publisher.close().await;
            let _ = connected.connection.close().await;
        }
    }
}

/// A row in flight: what it became, and its message until the broker confirms it.
pub(crate) struct Tracked {
    pub(crate) line: u64,
    pub(crate) cursor: Option<String>,
    pub(crate) kind: Kind,
    pub(crate) message: Option<Message>,
}

/// What a row became.
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    Job,
    Skip(&'static str),
    Malformed,
    Filtered,
}
