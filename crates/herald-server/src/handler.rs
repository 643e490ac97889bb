//! What the serve consumers (`consume.rs`) and their lanes (`lane.rs`) share: the `Handler`
//! trait that gives a queue's deliveries their meaning (`ingest.rs`, `results.rs`), the
//! `Pending` delivery whose items are in lanes, and the `Entry` of one item on its way to the
//! store.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use herald_amqp::{Delivery, Headers, Topology};
use herald_core::ControlMessage;
use herald_store::{Batch, Store, StoreError};

use crate::freshness::{InFlight, Ticket};

/// One consumer's meaning of its deliveries.
pub(crate) trait Handler: Send + Sync + 'static {
    /// `ingest` or `results`: the `consumer` metric label and log field.
    const NAME: &'static str;

    /// One unit of store work read from a delivery.
    type Item: Send + Sync + 'static;

    /// What a written batch reports once it is committed (e.g. counts for metrics).
    type Report: Send;

    /// The queue it reads.
    fn queue(topology: &Topology) -> String;

    /// The store it writes to.
    fn store(&self) -> &Store;

    /// How many lanes write at once. SQLite has one writer, so more lanes would only queue on
    /// its lock; PostgreSQL commits concurrent transactions in parallel.
    fn lanes(&self) -> usize {
        match self.store().backend() {
            herald_store::Backend::Sqlite => 1,
            herald_store::Backend::Postgres => 4,
        }
    }

    /// Reads one delivery into the items it holds, in order; `Err` says why it is poison (the
    /// reason names fields, never values).
    fn read(&self, body: &[u8], headers: &Headers) -> Result<Vec<Self::Item>, String>;

    /// Items with the same key are written in delivery order, by one lane.
    fn lane_key(item: &Self::Item) -> u64;

    /// Writes `items` into `batch` (the caller commits it) and returns the control messages to
    /// publish before the deliveries are acked. An item's `again` is true when it may have been
    /// written before (its delivery was redelivered, or an earlier try of this batch failed):
    /// dedupe must then not skip work an interrupted try may not have finished.
    fn write(
        &self,
        batch: &mut Batch,
        items: &[Entry<Self::Item>],
    ) -> impl Future<Output = Result<(Vec<ControlMessage>, Self::Report), StoreError>> + Send;

    /// Called once the batch that produced `report` is committed.
    fn committed(&self, report: Self::Report);

    /// The deliveries in hand, which the send ledger waits for (`freshness.rs`).
    fn in_flight(&self) -> &Arc<InFlight>;
}

/// A delivery whose items are in lanes: acked when the last of them is written.
pub(crate) struct Pending {
    pub(crate) delivery: Delivery,
    remaining: AtomicUsize,
    poison: std::sync::Mutex<Option<String>>,
    /// Open while the delivery is in hand.
    _ticket: Ticket,
}

impl Pending {
    pub(crate) fn new(
        delivery: Delivery,
        items: usize,
        poison: Option<String>,
        ticket: Ticket,
    ) -> Arc<Self> {
        Arc::new(Self {
            _ticket: ticket,
            delivery,
            remaining: AtomicUsize::new(items),
            poison: std::sync::Mutex::new(poison),
        })
    }

    /// Whether the broker may have handed this delivery out before.
    pub(crate) fn redelivered(&self) -> bool {
        self.delivery.redelivered()
    }

    /// Marks the delivery poison: when its last item is done it is dead-lettered, not stored.
    pub(crate) fn poison(&self, reason: String) {
        if let Ok(mut poison) = self.poison.lock() {
            poison.get_or_insert(reason);
        }
    }

    /// One item is done; true when it was the last.
    pub(crate) fn item_done(&self) -> bool {
        self.remaining.fetch_sub(1, Ordering::AcqRel) == 1
    }

    pub(crate) fn poison_reason(&self) -> Option<String> {
        self.poison.lock().ok().and_then(|poison| poison.clone())
    }
}

/// One item on its way to the store, with the delivery it came from.
pub(crate) struct Entry<I> {
    /// The item.
    pub(crate) item: I,
    /// It may have been written before (see `Handler::write`).
    pub(crate) again: bool,
    pub(crate) pending: Arc<Pending>,
}

impl<I> Entry<I> {
    pub(crate) fn new(item: I, again: bool, pending: Arc<Pending>) -> Self {
        Self {
            item,
            again,
            pending,
        }
    }
}

/// The error's sources, joined: sqlx's own explanation lives there.
pub(crate) fn causes(error: &dyn std::error::Error) -> String {
    let mut text = String::new();
    let mut next = error.source();
    while let Some(cause) = next {
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
}
