//! `send`: one campaign run from a segment file to confirmed messages on RabbitMQ. Jobs go to
//! `herald.jobs`, skipped results to `herald.results`, with confirms pipelined (up to the
//! publisher's window in flight, never one round trip per message). The run record advances only
//! over rows whose messages are confirmed, so `--resume` continues with no gap; if the connection
//! drops, the unconfirmed tail is republished (same job ids) on a new connection.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_amqp::{AmqpError, AmqpSettings, SEND_ROUTING_KEY, Topology};
use herald_core::campaign::Campaign;
use time::OffsetDateTime;
use tracing::{info, warn};

use crate::checkpoint::{CheckpointError, RunRecord, RunStore};
use crate::link::{Link, Message};
use crate::segment::{RowError, SegmentError};
use crate::source::{self, Item, Progress, SourcePlan};

/// The run record is saved at least this often...
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
/// ...and after this many rows, so a crash republishes at most this many confirmed rows plus the
/// publisher's confirm window (same job ids; downstream dedupes on them).
pub const CHECKPOINT_EVERY_ROWS: u64 = 2_000;
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

pub(crate) struct Tracked {
    pub(crate) line: u64,
    kind: Kind,
    pub(crate) message: Option<Message>,
}

#[derive(Clone, Copy)]
enum Kind {
    Job,
    Skip(&'static str),
    Malformed,
    Filtered,
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
        self.settle(&mut pipe, &progress, true).await?;
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
                self.settle(pipe, progress, true).await?;
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
        self.settle(pipe, progress, false).await?;
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

    /// Pops the entries at the front whose message is confirmed (or that have none), counting
    /// them. With `wait`, waits for every tracked message; without, stops at the first one whose
    /// confirm is still outstanding.
    async fn settle(
        &mut self,
        pipe: &mut Pipeline,
        progress: &Progress,
        wait: bool,
    ) -> Result<(), ProducerError> {
        while let Some(front) = pipe.tracked.front_mut() {
            if let Some(message) = front.message.as_mut() {
                let outcome = if wait {
                    Some(message.settled().await)
                } else {
                    message.poll_settled()
                };
                match outcome {
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
