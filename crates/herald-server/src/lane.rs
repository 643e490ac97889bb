//! A lane of a serve consumer (`consume.rs`): one task that writes the items queued in it, in
//! queue order, as store transactions of up to `BATCH_MAX` items. It takes whatever has queued
//! while the previous transaction committed, so batches grow with the load and a lone item is
//! written at once (no timer to wait out). After a commit it publishes the batch's control
//! messages (confirmed) and hands every delivery whose last item this was back to the session
//! to be acked.
//!
//! Failures: a store error keeps the batch, backs off (doubling up to 30 s) and writes it again,
//! marked `again`; one the database will never accept is narrowed down by halving the batch
//! until the refused item stands alone, and that item poisons its delivery (dead-lettered by
//! the session) while the rest are stored. Not done
//! here: acking, dead-lettering, reading deliveries.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use herald_amqp::{AmqpError, Headers, Publisher};
use herald_telemetry::Metrics;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use crate::handler::{Entry, Handler, Pending, causes};

/// Most items in one store transaction.
pub(crate) const BATCH_MAX: usize = 500;
/// First pause after a store failure; it doubles up to `STORE_BACKOFF_MAX`.
const STORE_BACKOFF_MIN: Duration = Duration::from_millis(200);
const STORE_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// One lane's task state.
pub(crate) struct Lane<H: Handler> {
    handler: Arc<H>,
    publisher: Arc<Publisher>,
    control_exchange: String,
    metrics: Metrics,
    queue: mpsc::UnboundedReceiver<Entry<H::Item>>,
    done: mpsc::UnboundedSender<Arc<Pending>>,
    shutdown: CancellationToken,
}

/// How writing one group of entries ended.
enum Written {
    Stored,
    /// The database refuses the data: it will never be stored as it is.
    Refused(String),
    /// Shutdown interrupted a back-off; the entries stay unacked.
    Interrupted,
}

impl<H: Handler> Lane<H> {
    /// A lane and the sender that queues items in it. `done` receives each delivery whose last
    /// item the lane wrote.
    pub(crate) fn new(
        handler: Arc<H>,
        publisher: Arc<Publisher>,
        control_exchange: String,
        metrics: Metrics,
        done: mpsc::UnboundedSender<Arc<Pending>>,
        shutdown: CancellationToken,
    ) -> (mpsc::UnboundedSender<Entry<H::Item>>, Self) {
        let (tx, queue) = mpsc::unbounded_channel();
        let lane = Self {
            handler,
            publisher,
            control_exchange,
            metrics,
            queue,
            done,
            shutdown,
        };
        (tx, lane)
    }

    /// Writes batches until the sender is dropped and the queue is empty, or shutdown interrupts
    /// a back-off. `Err` only when publishing a control message failed (the broker is gone).
    pub(crate) async fn run(mut self) -> Result<(), AmqpError> {
        while let Some(first) = self.queue.recv().await {
            let mut batch = Vec::with_capacity(self.queue.len().min(BATCH_MAX - 1) + 1);
            batch.push(first);
            while batch.len() < BATCH_MAX {
                match self.queue.try_recv() {
                    Ok(entry) => batch.push(entry),
                    Err(_) => break,
                }
            }
            if !self.write(batch).await? {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Writes one batch, narrowing a refused one down to the refused items. False when shutdown
    /// interrupted it.
    async fn write(&self, batch: Vec<Entry<H::Item>>) -> Result<bool, AmqpError> {
        let mut groups = VecDeque::from([batch]);
        while let Some(mut group) = groups.pop_front() {
            match self.write_group(&mut group).await? {
                Written::Stored => self.finish(group),
                Written::Refused(reason) if group.len() == 1 => {
                    warn!(consumer = H::NAME, reason = %reason,
                        "The store refuses this item for good; its message goes to the dead letters.");
                    for entry in &group {
                        entry
                            .pending
                            .poison(format!("the store refuses it: {reason}"));
                    }
                    self.finish(group);
                }
                Written::Refused(_) => {
                    // Halves, the first half first: a few transactions find the refused item
                    // among hundreds, and the lane's order is kept.
                    let second = group.split_off(group.len() / 2);
                    groups.push_front(second);
                    groups.push_front(group);
                }
                Written::Interrupted => return Ok(false),
            }
        }
        Ok(true)
    }

    /// One transaction for `group`, tried until it commits, is refused, or shutdown comes.
    async fn write_group(&self, group: &mut [Entry<H::Item>]) -> Result<Written, AmqpError> {
        let mut backoff = STORE_BACKOFF_MIN;
        let mut tries = 0_u32;
        loop {
            let failure = match self.transaction(group).await {
                Ok((control, report)) => {
                    self.handler.committed(report);
                    self.metrics
                        .consumer_batch_items
                        .with_label_values(&[H::NAME])
                        .observe(group.len() as f64);
                    for message in &control {
                        self.publisher
                            .publish(
                                &self.control_exchange,
                                "",
                                &message.to_vec(),
                                Headers::new(),
                            )
                            .await?
                            .await?;
                    }
                    return Ok(Written::Stored);
                }
                Err(failure) => failure,
            };
            if failure.is_permanent() {
                let reason = format!("{failure}: {}", causes(&failure));
                return Ok(Written::Refused(reason));
            }
            tries += 1;
            self.metrics
                .consumer_store_errors
                .with_label_values(&[H::NAME])
                .inc();
            error!(consumer = H::NAME, error = %failure, cause = %causes(&failure), tries,
                items = group.len(), retry_in_ms = backoff.as_millis() as u64,
                "Store failed; the messages stay unacked and are written again.");
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = self.shutdown.cancelled() => return Ok(Written::Interrupted),
            }
            backoff = (backoff * 2).min(STORE_BACKOFF_MAX);
            for entry in group.iter_mut() {
                entry.again = true;
            }
        }
    }

    async fn transaction(
        &self,
        group: &[Entry<H::Item>],
    ) -> Result<(Vec<herald_core::ControlMessage>, H::Report), herald_store::StoreError> {
        let mut batch = self.handler.store().batch().await?;
        let written = self.handler.write(&mut batch, group).await?;
        batch.commit().await?;
        Ok(written)
    }

    /// Every entry of `group` is settled: hand back the deliveries this finishes.
    fn finish(&self, group: Vec<Entry<H::Item>>) {
        for entry in group {
            if entry.pending.item_done() {
                // Fails only when the session has ended (its connection lost): the delivery is
                // then dropped unacked and the broker hands it out again.
                let _ = self.done.send(entry.pending);
            }
        }
    }
}
