//! `send`: one campaign run from a segment file to confirmed messages on RabbitMQ. Jobs go to
//! `herald.jobs`, skipped results to `herald.results`, with confirms pipelined (up to the
//! publisher's window in flight, never one round trip per message). The run record advances only
//! over rows whose messages are confirmed, so `--resume` continues with no gap; if the connection
//! drops, the unconfirmed tail is republished (same job ids) on a new connection.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use herald_amqp::{
    AmqpError, AmqpSettings, Connection, Headers, PendingConfirm, Publisher, SEND_ROUTING_KEY,
    Topology, connect,
};
use herald_core::campaign::Campaign;
use time::OffsetDateTime;
use tracing::{info, warn};

use crate::checkpoint::{CheckpointError, RunRecord, RunStore};
use crate::segment::{RowError, SegmentError};
use crate::source::{self, Item, Progress, SourcePlan};

/// The run record is saved at least this often...
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
/// ...and after this many rows, so a crash republishes at most this many confirmed rows plus the
/// publisher's confirm window (same job ids; downstream dedupes on them).
pub const CHECKPOINT_EVERY_ROWS: u64 = 2_000;
const RECONNECTS: u32 = 5;
/// Malformed rows logged one by one; past this only the count grows (the summary has it).
const MALFORMED_LOGGED: u64 = 100;

/// Everything a run needs.
pub struct SendSpec {
    /// The validated campaign.
    pub campaign: Arc<Campaign>,
    /// The segment file (CSV or JSONL).
    pub segment: PathBuf,
    /// Resume this run instead of starting a new one.
    pub resume: Option<String>,
    /// Abort on the first malformed row.
    pub strict: bool,
    /// Where and how to connect.
    pub amqp: AmqpSettings,
    /// Exchange and queue names.
    pub topology: Topology,
    /// Where run records live.
    pub runs: RunStore,
}

/// Why a run stopped before the end of its segment.
#[derive(Debug, thiserror::Error)]
pub enum ProducerError {
    /// The segment cannot be read at all.
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// `--strict` and a row is malformed.
    #[error("malformed row ({0}); stopped because of --strict")]
    Malformed(RowError),
    /// Run records.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The run to resume belongs to another campaign.
    #[error("run {run_id} belongs to campaign {expected}, not {found}")]
    WrongCampaign {
        /// The run.
        run_id: String,
        /// Its campaign.
        expected: String,
        /// The campaign given now.
        found: String,
    },
    /// The broker refused or lost messages and could not be recovered.
    #[error("broker: {0}")]
    Amqp(Box<AmqpError>),
}

impl From<AmqpError> for ProducerError {
    fn from(error: AmqpError) -> Self {
        Self::Amqp(Box::new(error))
    }
}

/// A prepared run: its id is known before anything is published.
pub struct Run {
    spec: SendSpec,
    record: RunRecord,
}

/// The publishing side's state while a run goes on.
struct Pipeline {
    link: Link,
    /// Rows in file order whose outcome is not yet counted.
    tracked: VecDeque<Tracked>,
    last_line: u64,
    saved_line: u64,
    last_save: Instant,
}

struct Tracked {
    line: u64,
    kind: Kind,
    message: Option<Message>,
}

#[derive(Clone, Copy)]
enum Kind {
    Job,
    Skip(&'static str),
    Malformed,
    Filtered,
}

struct Message {
    to_results: bool,
    routing_key: String,
    body: Vec<u8>,
    state: Delivery,
}

/// Where one message stands with the broker.
enum Delivery {
    /// Not (successfully) written yet.
    Unsent,
    /// Written; the broker's confirm is awaited.
    Pending(PendingConfirm),
    /// Confirmed (seen while recovering from a lost connection).
    Confirmed,
}

impl Message {
    fn new(to_results: bool, routing_key: String, body: Vec<u8>) -> Self {
        Self {
            to_results,
            routing_key,
            body,
            state: Delivery::Unsent,
        }
    }

    /// The outcome if it is known now: `None` while the confirm is outstanding.
    fn poll_settled(&mut self) -> Option<Result<(), AmqpError>> {
        match &mut self.state {
            Delivery::Confirmed => Some(Ok(())),
            Delivery::Unsent => Some(Err(AmqpError::PublisherClosed)),
            Delivery::Pending(pending) => pending.now_or_never(),
        }
    }

    async fn settled(&mut self) -> Result<(), AmqpError> {
        match &mut self.state {
            Delivery::Confirmed => Ok(()),
            Delivery::Unsent => Err(AmqpError::PublisherClosed),
            Delivery::Pending(pending) => pending.await,
        }
    }
}

impl Run {
    /// Starts a new run record, or loads the one to resume.
    pub fn prepare(spec: SendSpec) -> Result<Self, ProducerError> {
        let record = match &spec.resume {
            Some(run_id) => {
                let record = spec.runs.load(run_id)?;
                if record.campaign_id != spec.campaign.id() {
                    return Err(ProducerError::WrongCampaign {
                        run_id: run_id.clone(),
                        expected: record.campaign_id,
                        found: spec.campaign.id().to_owned(),
                    });
                }
                record
            }
            None => RunRecord {
                run_id: new_run_id(),
                campaign_id: spec.campaign.id().to_owned(),
                segment: spec.segment.clone(),
                started_at: OffsetDateTime::now_utc(),
                confirmed_through_line: 0,
                published: 0,
                skipped: BTreeMap::new(),
                malformed: 0,
                complete: false,
            },
        };
        Ok(Self { spec, record })
    }

    /// The run's id (print it first: it is what `--resume` and `campaign status` take).
    pub fn run_id(&self) -> &str {
        &self.record.run_id
    }

    /// Publishes the whole segment and returns the final record.
    pub async fn execute(mut self, progress: Arc<Progress>) -> Result<RunRecord, ProducerError> {
        self.spec.runs.save(&self.record)?;
        let plan = SourcePlan {
            segment: self.spec.segment.clone(),
            run_id: self.record.run_id.clone(),
            resume_after_line: self.record.confirmed_through_line,
        };
        let now = OffsetDateTime::now_utc();
        let mut batches = source::spawn(self.spec.campaign.clone(), plan, progress.clone(), now)?;
        let mut pipe = Pipeline {
            link: Link::open(&self.spec).await?,
            tracked: VecDeque::new(),
            last_line: self.record.confirmed_through_line,
            saved_line: self.record.confirmed_through_line,
            last_save: Instant::now(),
        };
        while let Some(batch) = batches.recv().await {
            for item in batch {
                self.take(&mut pipe, item, &progress).await?;
            }
        }
        self.settle_all(&mut pipe, &progress).await?;
        self.record.confirmed_through_line = pipe.last_line;
        self.record.complete = true;
        self.spec.runs.save(&self.record)?;
        pipe.link.close().await;
        info!(run_id = %self.record.run_id, published = self.record.published, "Run fully confirmed.");
        Ok(self.record)
    }

    /// Tracks one row in file order, publishes its message if it has one, settles what the
    /// broker has confirmed and saves the run record when it is due.
    async fn take(
        &mut self,
        pipe: &mut Pipeline,
        item: Item,
        progress: &Progress,
    ) -> Result<(), ProducerError> {
        let entry = match item {
            Item::Job { line, body } => Tracked {
                line,
                kind: Kind::Job,
                message: Some(Message::new(false, SEND_ROUTING_KEY.to_owned(), body)),
            },
            Item::Skip {
                line,
                body,
                routing_key,
                reason,
            } => Tracked {
                line,
                kind: Kind::Skip(reason),
                message: Some(Message::new(true, routing_key, body)),
            },
            Item::Malformed(error) if self.spec.strict => {
                self.settle_all(pipe, progress).await?;
                self.spec.runs.save(&self.record)?;
                return Err(ProducerError::Malformed(error));
            }
            Item::Malformed(error) => {
                if self.record.malformed < MALFORMED_LOGGED {
                    warn!(line = error.line, reason = %error.reason, "Malformed row skipped.");
                }
                Tracked {
                    line: error.line,
                    kind: Kind::Malformed,
                    message: None,
                }
            }
            Item::Filtered { line } => Tracked {
                line,
                kind: Kind::Filtered,
                message: None,
            },
        };
        pipe.last_line = entry.line;
        pipe.tracked.push_back(entry);
        if let Some(message) = pipe.tracked.back_mut().and_then(|t| t.message.as_mut()) {
            if let Err(error) = pipe.link.publish(message).await {
                pipe.link
                    .recover(&self.spec, &mut pipe.tracked, error)
                    .await?;
            }
        }
        self.settle_ready(pipe, progress).await?;
        let confirmed = watermark(&pipe.tracked, pipe.last_line);
        let due = pipe.last_save.elapsed() >= CHECKPOINT_EVERY
            || confirmed - pipe.saved_line >= CHECKPOINT_EVERY_ROWS;
        if confirmed > pipe.saved_line && due {
            self.record.confirmed_through_line = confirmed;
            self.spec.runs.save(&self.record)?;
            (pipe.last_save, pipe.saved_line) = (Instant::now(), confirmed);
        }
        Ok(())
    }

    /// Pops every entry at the front whose message is confirmed (or that has none).
    async fn settle_ready(
        &mut self,
        pipe: &mut Pipeline,
        progress: &Progress,
    ) -> Result<(), ProducerError> {
        loop {
            let Some(front) = pipe.tracked.front_mut() else {
                return Ok(());
            };
            if let Some(message) = front.message.as_mut() {
                match message.poll_settled() {
                    None => return Ok(()),
                    Some(Ok(())) => {}
                    Some(Err(error)) => {
                        pipe.link
                            .recover(&self.spec, &mut pipe.tracked, error)
                            .await?;
                        continue;
                    }
                }
            }
            let done = pipe.tracked.pop_front().expect("front exists");
            self.count(done.kind, progress);
        }
    }

    /// Waits for every tracked message, in order.
    async fn settle_all(
        &mut self,
        pipe: &mut Pipeline,
        progress: &Progress,
    ) -> Result<(), ProducerError> {
        while let Some(front) = pipe.tracked.front_mut() {
            if let Some(message) = front.message.as_mut() {
                if let Err(error) = message.settled().await {
                    pipe.link
                        .recover(&self.spec, &mut pipe.tracked, error)
                        .await?;
                    continue;
                }
            }
            let done = pipe.tracked.pop_front().expect("front exists");
            self.count(done.kind, progress);
            self.record.confirmed_through_line = done.line;
        }
        Ok(())
    }

    fn count(&mut self, kind: Kind, progress: &Progress) {
        match kind {
            Kind::Job => {
                self.record.published += 1;
                Progress::add(&progress.published, 1);
            }
            Kind::Skip(reason) => {
                *self.record.skipped.entry(reason.to_owned()).or_default() += 1;
                Progress::add(&progress.skipped, 1);
            }
            Kind::Malformed => self.record.malformed += 1,
            Kind::Filtered => {}
        }
    }
}

/// Every row before the oldest unsettled one is done; with nothing unsettled, all rows read are.
fn watermark(tracked: &VecDeque<Tracked>, last_line: u64) -> u64 {
    tracked
        .front()
        .map_or(last_line, |front| front.line.saturating_sub(1))
}

/// The connection and publisher, rebuilt after a loss.
struct Link {
    connection: Connection,
    publisher: Publisher,
    jobs_exchange: String,
    results_exchange: String,
}

impl Link {
    async fn open(spec: &SendSpec) -> Result<Self, AmqpError> {
        let connection = connect(&spec.amqp).await?;
        spec.topology.declare(&connection).await?;
        let publisher = Publisher::open(&connection, spec.amqp.confirm_window).await?;
        Ok(Self {
            connection,
            publisher,
            jobs_exchange: spec.topology.jobs_exchange(),
            results_exchange: spec.topology.results_exchange(),
        })
    }

    async fn publish(&self, message: &mut Message) -> Result<(), AmqpError> {
        let exchange = if message.to_results {
            &self.results_exchange
        } else {
            &self.jobs_exchange
        };
        message.state = Delivery::Unsent;
        let pending = self
            .publisher
            .publish(
                exchange,
                &message.routing_key,
                &message.body,
                Headers::new(),
            )
            .await?;
        message.state = Delivery::Pending(pending);
        Ok(())
    }

    /// After `cause`: a lost connection is rebuilt and every unconfirmed message republished (same
    /// bytes, same job id); anything else (unroutable, refused) ends the run, resumable.
    async fn recover(
        &mut self,
        spec: &SendSpec,
        tracked: &mut VecDeque<Tracked>,
        cause: AmqpError,
    ) -> Result<(), ProducerError> {
        if !(cause.is_connection_lost() || cause.is_retryable()) {
            return Err(cause.into());
        }
        let mut last = cause;
        for attempt in 1..=RECONNECTS {
            warn!(attempt, error = %last, "Broker connection lost; reconnecting to republish the unconfirmed tail.");
            match Self::open(spec).await {
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
                message.state = Delivery::Confirmed;
            } else {
                self.publish(message).await?;
            }
        }
        Ok(())
    }

    async fn close(self) {
        let _ = self.publisher.close().await;
        let _ = self.connection.close().await;
    }
}

/// `r<yyyymmddhhmmss>-<6 hex>`: sortable by start time, unique without coordination.
fn new_run_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let now = OffsetDateTime::now_utc();
    let mut hasher = std::hash::RandomState::new().build_hasher();
    hasher.write_i128(now.unix_timestamp_nanos());
    hasher.write_u32(std::process::id());
    format!(
        "r{:04}{:02}{:02}{:02}{:02}{:02}-{:06x}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        hasher.finish() & 0xff_ffff
    )
}
