//! `send`: one campaign run from a segment (a file, or the store's audience of the page) to
//! confirmed messages on RabbitMQ. Jobs go to
//! `herald.jobs`, skipped results to `herald.results`, with confirms pipelined (up to the
//! publisher's window in flight, never one round trip per message). The run record advances only
//! over rows whose messages are confirmed, so `--resume` continues with no gap; if the connection
//! drops, the unconfirmed tail is republished (same job ids) on a new connection.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_store::RunProgress;
use time::OffsetDateTime;
use tracing::{info, warn};

use crate::cap::CapHold;
use crate::checkpoint::Checkpoint;
use crate::link::{Kind, Link, Message, Tracked};
use crate::source::{self, Item, Progress, SourcePlan, Start, StorePlan};
use crate::spec::{ProducerError, SegmentInput, SendSpec};

/// The run record is saved at least this often...
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
/// ...and after this many rows, so a crash republishes at most this many confirmed rows plus the
/// publisher's confirm window (same job ids; downstream dedupes on them).
pub const CHECKPOINT_EVERY_ROWS: u64 = 2_000;
/// `at` in epoch milliseconds.
fn epoch_ms(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// Malformed rows logged one by one; past this only the count grows (the summary has it).
const MALFORMED_LOGGED: u64 = 100;

/// A prepared run: its id is known before anything is published.
pub struct Run {
    spec: SendSpec,
    record: Checkpoint,
}

/// The publishing side's state while a run goes on.
struct Pipeline {
    link: Link,
    /// Rows in file order whose outcome is not yet counted.
    tracked: VecDeque<Tracked>,
    last_line: u64,
    saved_line: u64,
    last_save: Instant,
    /// Jobs still to publish that a crashed earlier attempt of this run may have published
    /// already, and since when (epoch ms): they carry `x-herald-verify-since`, so workers check
    /// the send ledger before sending them.
    maybe_published: u64,
    resumed_at_ms: i64,
    /// The page's frequency-cap claim, for a capped campaign.
    cap: Option<CapHold>,
}

impl Run {
    /// Starts a new run record, or loads the one to resume.
    pub async fn prepare(spec: SendSpec) -> Result<Self, ProducerError> {
        let store = spec.store.clone();
        let record = match &spec.resume {
            Some(run_id) => Checkpoint::resume(store, &spec.campaign, run_id).await?,
            None => Checkpoint::create(store, &spec.campaign, spec.segment.describe()).await?,
        };
        Ok(Self { spec, record })
    }

    /// The run's id (print it first: it is what `--resume` and `campaign status` take).
    pub fn run_id(&self) -> &str {
        &self.record.run_id
    }

    /// Publishes the whole segment and returns the final progress. When it fails, the run
    /// records why (`campaign status` shows `producer stopped` until a producer saves progress
    /// again, i.e. a resume).
    pub async fn execute(self, progress: Arc<Progress>) -> Result<RunProgress, ProducerError> {
        let (store, run_id) = (self.spec.store.clone(), self.record.run_id.clone());
        let result = self.publish(progress).await;
        if let Err(failure) = &result
            && let Err(error) = store
                .record_producer_stop(&run_id, &failure.to_string())
                .await
        {
            warn!(run_id = %run_id, error = %error, "Could not record on the run why it stopped.");
        }
        result
    }

    async fn publish(mut self, progress: Arc<Progress>) -> Result<RunProgress, ProducerError> {
        if self.record.progress.complete {
            info!(run_id = %self.record.run_id, "Run already fully confirmed; nothing to publish.");
            return Ok(self.record.progress);
        }
        self.record.save().await?;
        let capped = CapHold::take(&self.spec.store, &self.spec.campaign, &self.record.run_id);
        let (cap, caps) = capped.await?.unzip();
        let now = OffsetDateTime::now_utc();
        let done = self.record.progress.confirmed_through_line;
        let mut batches = match &self.spec.segment {
            SegmentInput::File(path) => {
                let plan = SourcePlan {
                    segment: path.clone(),
                    run_id: self.record.run_id.clone(),
                    resume_after_line: done,
                    caps,
                };
                source::spawn(self.spec.campaign.clone(), plan, progress.clone(), now)?
            }
            SegmentInput::Store => {
                let plan = StorePlan {
                    store: self.spec.store.clone(),
                    run_id: self.record.run_id.clone(),
                    after: self.record.cursor()?,
                    after_line: done,
                    caps,
                };
                source::spawn_store(self.spec.campaign.clone(), plan, progress.clone(), now)
            }
            SegmentInput::Users(users) => {
                let start = Start {
                    run_id: self.record.run_id.clone(),
                    after_line: done,
                    caps,
                };
                let (campaign, users) = (self.spec.campaign.clone(), users.clone());
                source::spawn_users(campaign, users, start, progress.clone(), now)
            }
        };
        let mut pipe = Pipeline {
            link: Link::open(&self.spec).await?,
            tracked: VecDeque::new(),
            last_line: done,
            saved_line: done,
            last_save: Instant::now(),
            maybe_published: self.maybe_published(),
            resumed_at_ms: epoch_ms(now),
            cap,
        };
        while let Some(batch) = batches.recv().await {
            for item in batch {
                self.take(&mut pipe, item, &progress).await?;
            }
        }
        self.settle(&mut pipe, &progress, true).await?;
        if let Some(cap) = pipe.cap.take() {
            cap.release().await?;
        }
        self.record.progress.complete = true;
        self.record.save().await?;
        pipe.link.close().await;
        let published = self.record.progress.published;
        info!(run_id = %self.record.run_id, published, "Run fully confirmed.");
        Ok(self.record.progress)
    }

    /// How many of the first jobs a resume publishes may have been published before the crash:
    /// rows confirmed but not yet saved (at most `CHECKPOINT_EVERY_ROWS`) plus the publisher's
    /// confirm window. None for a new run.
    fn maybe_published(&self) -> u64 {
        if self.spec.resume.is_none() {
            return 0;
        }
        let window = u64::try_from(self.spec.amqp.confirm_window).unwrap_or(u64::MAX);
        CHECKPOINT_EVERY_ROWS.saturating_add(window)
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
            Item::Job {
                line,
                cursor,
                body,
                reserve,
            } => {
                if let (Some(cap), Some(external_id)) = (pipe.cap.as_mut(), reserve) {
                    cap.reserve(external_id);
                }
                let mut message = Message::job(body, self.spec.campaign.priority());
                if pipe.maybe_published > 0 {
                    pipe.maybe_published -= 1;
                    message.verify_since(pipe.resumed_at_ms);
                }
                Tracked {
                    line,
                    cursor,
                    kind: Kind::Job,
                    message: Some(message),
                }
            }
            Item::Skip {
                line,
                cursor,
                body,
                routing_key,
                reason,
            } => Tracked {
                line,
                cursor,
                kind: Kind::Skip(reason),
                message: Some(Message::new(true, routing_key, body)),
            },
            Item::Malformed(error) if self.spec.strict => {
                self.settle(pipe, progress, true).await?;
                self.record.save().await?;
                return Err(ProducerError::Malformed(error));
            }
            Item::Broken(error) => {
                self.settle(pipe, progress, true).await?;
                self.record.save().await?;
                return Err(ProducerError::Store(error));
            }
            Item::Unreadable(error) => {
                self.settle(pipe, progress, true).await?;
                self.record.save().await?;
                return Err(ProducerError::Segment(error));
            }
            Item::Malformed(error) => {
                if self.record.progress.malformed < MALFORMED_LOGGED {
                    warn!(line = error.line, reason = %error.reason, "Malformed row skipped.");
                }
                Tracked {
                    line: error.line,
                    cursor: None,
                    kind: Kind::Malformed,
                    message: None,
                }
            }
            Item::Filtered { line, cursor } => Tracked {
                line,
                cursor,
                kind: Kind::Filtered,
                message: None,
            },
        };
        pipe.last_line = entry.line;
        pipe.tracked.push_back(entry);
        if let Some(message) = pipe.tracked.back_mut().and_then(|t| t.message.as_mut())
            && let Err(error) = pipe.link.publish(message).await
        {
            pipe.link
                .recover(&self.spec, &mut pipe.tracked, error)
                .await?;
        }
        self.settle(pipe, progress, false).await?;
        // `settle` moved the record's position to the last row popped: every row before the
        // oldest unsettled one.
        let confirmed = self.record.progress.confirmed_through_line;
        let due = pipe.last_save.elapsed() >= CHECKPOINT_EVERY
            || confirmed - pipe.saved_line >= CHECKPOINT_EVERY_ROWS;
        if confirmed > pipe.saved_line && due {
            if let Some(cap) = pipe.cap.as_mut() {
                cap.flush().await?;
            }
            self.record.save().await?;
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
            self.record.progress.confirmed_through_line = done.line;
            if done.cursor.is_some() {
                self.record.progress.cursor = done.cursor;
            }
        }
        Ok(())
    }

    fn count(&mut self, kind: Kind, progress: &Progress) {
        let record = &mut self.record.progress;
        match kind {
            Kind::Job => {
                record.published += 1;
                Progress::add(&progress.published, 1);
            }
            Kind::Skip(reason) => {
                *record.skipped.entry(reason.to_owned()).or_default() += 1;
                Progress::add(&progress.skipped, 1);
            }
            Kind::Malformed => record.malformed += 1,
            Kind::Filtered => {}
        }
    }
}
