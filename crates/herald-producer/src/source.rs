//! The reading side of a run, on a thread of its own because files block and rendering is CPU
//! work: rows are read, planned and serialised there, then handed to the async publisher over a
//! bounded channel, so memory stays flat whatever the segment's size. A store segment is read
//! by a task instead (the store is async), with the same planning and the same channel.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use herald_core::User;
use herald_core::campaign::Campaign;
use time::OffsetDateTime;
use tokio::sync::mpsc;

use futures_util::StreamExt;
use herald_store::{AudienceCursor, Store, StoreError};

use crate::plan::{CapCounts, Planned, Planner};
use crate::segment::{ReadError, RowError, SegmentError, SegmentReader};

/// One row's worth of work for the publisher. `line` is the file line, or the position in the
/// store's audience (counted from the run's start); `cursor` is the audience cursor of a store
/// row (what a resume starts after), `None` for files.
#[derive(Debug)]
pub(crate) enum Item {
    /// A serialised `SendJob`; `reserve` is its user's external id when the campaign is
    /// frequency-capped (the run records a reservation for it).
    Job {
        line: u64,
        cursor: Option<String>,
        body: Vec<u8>,
        reserve: Option<String>,
    },
    /// A serialised `skipped` result and its routing key.
    Skip {
        line: u64,
        cursor: Option<String>,
        body: Vec<u8>,
        routing_key: String,
        reason: &'static str,
    },
    /// A row that could not be read (already logged).
    Malformed(RowError),
    /// A row the filters left out.
    Filtered { line: u64, cursor: Option<String> },
    /// The store failed while streaming the audience; nothing after this arrives.
    Broken(StoreError),
    /// The file cannot be read past this point (a row over the length cap, a failed read);
    /// nothing after this arrives.
    Unreadable(SegmentError),
}

/// Counters the progress display reads while the run goes on.
#[derive(Debug, Default)]
pub struct Progress {
    /// Rows read so far (any kind).
    pub rows: AtomicU64,
    /// Bytes of the segment read so far.
    pub bytes: AtomicU64,
    /// Size of the segment file, when known.
    pub total_bytes: AtomicU64,
    /// Jobs confirmed by the broker.
    pub published: AtomicU64,
    /// Skipped results confirmed by the broker.
    pub skipped: AtomicU64,
}

impl Progress {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Where to start and what to remember when resuming.
pub(crate) struct SourcePlan {
    pub(crate) segment: PathBuf,
    pub(crate) run_id: String,
    /// Rows on or before this line were handled by an earlier attempt.
    pub(crate) resume_after_line: u64,
    /// The page's frequency-cap counts, when the campaign is capped.
    pub(crate) caps: Option<CapCounts>,
}

/// Items travel in batches: one channel hand-off (and one task wake-up) per batch instead of
/// per row. Profiling showed cross-thread wake-ups dominating the producer's CPU time.
const BATCH: usize = 256;

/// Spawns the reading thread; batches of items arrive in file order on the returned channel.
pub(crate) fn spawn(
    campaign: Arc<Campaign>,
    plan: SourcePlan,
    progress: Arc<Progress>,
    now: OffsetDateTime,
) -> Result<mpsc::Receiver<Vec<Item>>, SegmentError> {
    if let Ok(meta) = std::fs::metadata(&plan.segment) {
        progress.total_bytes.store(meta.len(), Ordering::Relaxed);
    }
    let reader = SegmentReader::open(&plan.segment)?;
    let (sender, receiver) = mpsc::channel(16);
    std::thread::Builder::new()
        .name("herald-segment".into())
        .spawn(move || read_rows(&campaign, reader, plan, &progress, now, &sender))
        .map_err(SegmentError::Io)?;
    Ok(receiver)
}

fn read_rows(
    campaign: &Campaign,
    reader: SegmentReader,
    plan: SourcePlan,
    progress: &Progress,
    now: OffsetDateTime,
    sender: &mpsc::Sender<Vec<Item>>,
) {
    let mut planner = Planner::new(campaign, plan.run_id.clone()).with_caps(plan.caps);
    let mut reader = reader;
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(row) = reader.next() {
        Progress::add(&progress.rows, 1);
        progress.bytes.store(reader.bytes_read(), Ordering::Relaxed);
        let item = match row {
            Err(ReadError::Row(error)) if error.line <= plan.resume_after_line => continue,
            Err(ReadError::Row(error)) => Item::Malformed(error),
            Err(ReadError::Stopped(error)) => Item::Unreadable(error),
            Ok(row) if row.line <= plan.resume_after_line => {
                planner.remember(&row.user, now);
                continue;
            }
            Ok(row) => {
                let planned = planner.plan(&row.user, now);
                item(&planner, planned, row.line, None)
            }
        };
        batch.push(item);
        if batch.len() == BATCH {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
            // The publisher hung up (it failed or was stopped): stop reading.
            if sender.blocking_send(full).is_err() {
                return;
            }
        }
    }
    if !batch.is_empty() {
        let _ = sender.blocking_send(batch);
    }
}

/// The item for one planned user.
fn item(
    planner: &Planner<'_>,
    planned: Option<Planned>,
    line: u64,
    cursor: Option<String>,
) -> Item {
    match planned {
        None => Item::Filtered { line, cursor },
        Some(Planned::Job(job)) => Item::Job {
            line,
            cursor,
            body: serde_json::to_vec(&job).expect("job serialises"),
            reserve: planner.capped().then(|| job.external_id.clone()),
        },
        Some(Planned::Skip { result, reason }) => Item::Skip {
            line,
            cursor,
            routing_key: result.routing_key(),
            body: serde_json::to_vec(&result).expect("result serialises"),
            reason,
        },
    }
}

/// Where a store-sourced run starts.
pub(crate) struct StorePlan {
    pub(crate) store: Store,
    pub(crate) run_id: String,
    /// The audience position to continue after (`None`: from the start).
    pub(crate) after: Option<AudienceCursor>,
    /// Positions already handled; the next user is `after_line + 1`.
    pub(crate) after_line: u64,
    /// The page's frequency-cap counts, when the campaign is capped.
    pub(crate) caps: Option<CapCounts>,
}

/// Spawns the task that streams the campaign's page audience from the store and plans it;
/// batches arrive in audience order. Store users are unique by id, so a resume needs no
/// dedupe memory of what came before the cursor.
pub(crate) fn spawn_store(
    campaign: Arc<Campaign>,
    plan: StorePlan,
    progress: Arc<Progress>,
    now: OffsetDateTime,
) -> mpsc::Receiver<Vec<Item>> {
    let users = plan
        .store
        .audience(campaign.page_id(), plan.after)
        .map(|next| next.map(|(cursor, user)| (Some(cursor.to_string()), user)))
        .boxed();
    let start = Start {
        run_id: plan.run_id,
        after_line: plan.after_line,
        caps: plan.caps,
    };
    spawn_planning(campaign, users, start, progress, now)
}

/// Spawns the task that plans users given in memory (an API-triggered send), in their order;
/// a resume skips the first `after_line` of them.
pub(crate) fn spawn_users(
    campaign: Arc<Campaign>,
    users: Vec<User>,
    start: Start,
    progress: Arc<Progress>,
    now: OffsetDateTime,
) -> mpsc::Receiver<Vec<Item>> {
    let skip = usize::try_from(start.after_line).unwrap_or(usize::MAX);
    let users =
        futures_util::stream::iter(users.into_iter().skip(skip).map(|user| Ok((None, user))))
            .boxed();
    spawn_planning(campaign, users, start, progress, now)
}

/// Where a planning task starts.
pub(crate) struct Start {
    pub(crate) run_id: String,
    /// Positions already handled; the next user is `after_line + 1`.
    pub(crate) after_line: u64,
    /// The page's frequency-cap counts, when the campaign is capped.
    pub(crate) caps: Option<CapCounts>,
}

type Users = futures_util::stream::BoxStream<'static, Result<(Option<String>, User), StoreError>>;

/// Plans a stream of users (with their resume cursors) on a task; batches arrive in order.
fn spawn_planning(
    campaign: Arc<Campaign>,
    mut users: Users,
    start: Start,
    progress: Arc<Progress>,
    now: OffsetDateTime,
) -> mpsc::Receiver<Vec<Item>> {
    let (sender, receiver) = mpsc::channel(16);
    tokio::spawn(async move {
        let mut planner = Planner::new(&campaign, start.run_id.clone()).with_caps(start.caps);
        let mut line = start.after_line;
        let mut batch = Vec::with_capacity(BATCH);
        while let Some(next) = users.next().await {
            let (cursor, user) = match next {
                Ok(next) => next,
                Err(error) => {
                    batch.push(Item::Broken(error));
                    break;
                }
            };
            line += 1;
            Progress::add(&progress.rows, 1);
            let planned = planner.plan(&user, now);
            batch.push(item(&planner, planned, line, cursor));
            if batch.len() == BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                if sender.send(full).await.is_err() {
                    return;
                }
            }
        }
        if !batch.is_empty() {
            let _ = sender.send(batch).await;
        }
    });
    receiver
}
