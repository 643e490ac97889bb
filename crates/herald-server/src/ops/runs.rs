//! `start`: a campaign run from a campaign document (TOML, or the same document as JSON), run
//! by herald-producer in the background. The call validates the document (every problem
//! listed, nothing published), checks that the segment can be read, creates the run in the
//! store and returns its id; publishing goes on in a task of the server's `RunTasks`. Progress
//! is the producer's run record in the store, which `status` reads.
//!
//! A segment file named by an API call must be a regular file inside the server's segment
//! directory (`HERALD_SEGMENT_DIR`; without one, file segments are refused over the API): a
//! relative path is taken from that directory, and the path is resolved (symbolic links and
//! `..` included) before the check. Missing, outside, and not a regular file (a FIFO, a
//! device) get one and the same answer, so the API is no oracle for the server's files, and
//! the check runs off the async runtime. When the server stops while a run is publishing, the run
//! is left as the producer recorded it (every confirmed row counted), and
//! `herald campaign send CAMPAIGN --resume RUN_ID` continues it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use herald_core::campaign::{Campaign, CampaignErrors, EXIT_DATA, SegmentSource};
use herald_core::rates::PageRates;
use herald_producer::{
    DryRun, LaunchCheck, LaunchReport, ProducerError, Progress, Run, SegmentInput, SendSpec,
    dry_run, dry_run_store,
};
use herald_store::Store;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::ops::start_key::StartKey;
use crate::ops::{Broker, ErrorKind, OpsError, Problem};

/// How a campaign document is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentFormat {
    /// A campaign file's TOML.
    Toml,
    /// The same document as JSON.
    Json,
}

/// A run to start.
#[derive(Debug, Clone)]
pub struct StartRun {
    /// The campaign document's text.
    pub document: String,
    /// Its format.
    pub format: DocumentFormat,
    /// A segment file that replaces the document's `segment` source (`--segment FILE`).
    pub segment: Option<PathBuf>,
    /// Stop at the first malformed row instead of skipping it.
    pub strict: bool,
    /// The start's idempotency key (`start_key.rs`): a retry with it returns the same run.
    pub idempotency_key: Option<String>,
    /// The page's engaged users for the launch check, instead of the store's count.
    pub engaged_users: Option<u64>,
    /// Start even when the campaign would exceed the page's daily call budget.
    pub over_budget: bool,
    /// An occurrence of a schedule being started by `herald serve`: start now, whatever the
    /// document's `[schedule]` says.
    pub occurrence: bool,
}

/// What a run would do now, with the launch check (`POST /campaigns/runs?dry_run=true`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DryRunReport {
    /// The campaign's id.
    pub campaign_id: String,
    /// Where its users come from: a file path, or `store`.
    pub segment: String,
    /// The audience, the skips by reason and a few rendered requests.
    #[serde(flatten)]
    pub plan: DryRun,
    /// The page's daily call budget against the campaign, and its send time.
    pub launch: LaunchReport,
}

/// A run that was started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Started {
    /// The run's id (`campaign status` and the control commands take it).
    pub run_id: String,
    /// The campaign's id.
    pub campaign_id: String,
    /// Where its users come from: a file path, or `store`.
    pub segment: String,
    /// The idempotency key had started this run already: nothing new was published.
    #[serde(skip)]
    pub existing: bool,
}

/// The background runs of a process, and how to stop them.
#[derive(Debug, Clone, Default)]
pub struct RunTasks {
    tracker: TaskTracker,
    stop: CancellationToken,
}

impl RunTasks {
    /// No runs yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stops every background run where it is (its confirmed rows stay recorded) and waits
    /// for them to end.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }

    /// Runs still publishing.
    pub fn running(&self) -> usize {
        self.tracker.len()
    }
}

/// Validates `request`, creates the run and starts publishing it in `tasks`. Segment files
/// must be inside `segment_dir` (see the module doc). A campaign that would exceed its page's
/// daily call budget (as far as the store or `request.engaged_users` show it; `rates` gives
/// the page ceilings) is refused unless `request.over_budget`.
pub async fn start(
    store: &Store,
    broker: &Broker,
    tasks: &RunTasks,
    segment_dir: Option<&Path>,
    rates: &PageRates,
    request: StartRun,
) -> Result<Started, OpsError> {
    let campaign = parse(&request.document, request.format)?;
    if campaign.schedule().starts_later() && !request.occurrence {
        return Err(OpsError::Conflict(
            "the campaign has a [schedule] (send_at or cron): schedule it (`launch`), and \
             herald serve starts it when it is due"
                .to_owned(),
        ));
    }
    let named_segment = request
        .segment
        .as_ref()
        .map(|path| path.display().to_string());
    let segment = segment_of(&campaign, request.segment, segment_dir).await?;
    let key = match &request.idempotency_key {
        None => None,
        Some(key) => {
            let format = [request.format as u8];
            let parts: [&[u8]; 4] = [
                request.document.as_bytes(),
                &format,
                named_segment.as_deref().unwrap_or("").as_bytes(),
                &[u8::from(request.strict)],
            ];
            Some(StartKey::new(campaign.id(), key, &parts)?)
        }
    };
    if let Some(key) = &key
        && let Some(run_id) = key.claim(store).await?
    {
        info!(run_id = %run_id, "A start repeated with its idempotency key; nothing published.");
        return Ok(Started {
            run_id,
            campaign_id: campaign.id().to_owned(),
            segment: segment.describe(),
            existing: true,
        });
    }
    if !request.over_budget {
        let ceiling = rates.ceiling(campaign.page_id());
        let check = LaunchCheck::gather(&campaign, ceiling, request.engaged_users, Ok(store)).await;
        if let Some(refusal) = check
            .over_budget(&campaign, &segment, store, request.strict)
            .await
        {
            if let Some(key) = &key {
                key.release(store).await;
            }
            return Err(OpsError::invalid(
                ErrorKind::Data,
                "segment",
                format!("{refusal}, or add over_budget=true to start it anyway"),
            ));
        }
    }
    let spec = SendSpec {
        campaign: Arc::new(campaign),
        segment: segment.clone(),
        resume: None,
        strict: request.strict,
        amqp: broker.amqp.clone(),
        topology: broker.topology.clone(),
        store: store.clone(),
        shared_link: None,
    };
    let campaign_id = spec.campaign.id().to_owned();
    let run = match Run::prepare(spec).await {
        Ok(run) => run,
        Err(failure) => {
            if let Some(key) = &key {
                key.release(store).await;
            }
            return Err(producer_error(failure));
        }
    };
    let run_id = run.run_id().to_owned();
    if let Some(key) = &key
        && let Err(error) = key.bind(store, &run_id).await
    {
        // The run exists but publishes nothing: without the binding a retry would start
        // another, so this start fails and the key is given up.
        key.release(store).await;
        return Err(error);
    }
    let stop = tasks.stop.clone();
    let id = run_id.clone();
    let store = store.clone();
    tasks.tracker.spawn(async move {
        let progress = Arc::new(Progress::default());
        // A failed run records why itself; one stopped here is recorded here, so `campaign
        // status` shows it instead of a run that looks busy.
        tokio::select! {
            result = run.execute(progress) => match result {
                Ok(done) => info!(run_id = %id, published = done.published,
                    "Run started over the API is fully confirmed."),
                Err(failure) => error!(run_id = %id, error = %failure,
                    "Run started over the API stopped; confirmed rows are recorded, \
                     `herald campaign send CAMPAIGN --resume RUN_ID` continues it."),
            },
            () = stop.cancelled() => {
                warn!(run_id = %id,
                    "Server stopping with the run still publishing; confirmed rows are \
                     recorded, `herald campaign send CAMPAIGN --resume RUN_ID` continues it.");
                let reason = "herald serve stopped while it was publishing";
                if let Err(error) = store.record_producer_stop(&id, reason).await {
                    warn!(run_id = %id, error = %error, "Could not record why the run stopped.");
                }
            }
        }
    });
    Ok(Started {
        run_id,
        campaign_id,
        segment: segment.describe(),
        existing: false,
    })
}

/// What `request` would do now, publishing nothing: the dry run of its segment and the launch
/// check, with the send time at `what_if` per second as well when given.
pub async fn dry_run_report(
    store: &Store,
    segment_dir: Option<&Path>,
    rates: &PageRates,
    request: StartRun,
    what_if: Option<u32>,
) -> Result<DryRunReport, OpsError> {
    let campaign = parse(&request.document, request.format)?;
    let segment = segment_of(&campaign, request.segment, segment_dir).await?;
    let plan = match &segment {
        SegmentInput::File(path) => {
            let (campaign, path, strict) = (campaign.clone(), path.clone(), request.strict);
            tokio::task::spawn_blocking(move || dry_run(&campaign, &path, strict))
                .await
                .map_err(|error| OpsError::Internal(format!("the dry run stopped: {error}")))?
        }
        SegmentInput::Store => dry_run_store(&campaign, store).await,
        SegmentInput::Users(users) => Ok(herald_producer::dry_run_users(&campaign, users)),
    }
    .map_err(producer_error)?;
    let ceiling = rates.ceiling(campaign.page_id());
    let check = LaunchCheck::gather(&campaign, ceiling, request.engaged_users, Ok(store)).await;
    Ok(DryRunReport {
        campaign_id: campaign.id().to_owned(),
        segment: segment.describe(),
        launch: check.report(plan.jobs, what_if),
        plan,
    })
}

/// Parses and validates a campaign document, listing every problem.
pub fn parse(document: &str, format: DocumentFormat) -> Result<Campaign, OpsError> {
    let parsed = match format {
        DocumentFormat::Toml => Campaign::from_toml(document),
        DocumentFormat::Json => Campaign::from_json(document),
    };
    parsed.map_err(campaign_problems)
}

fn campaign_problems(errors: CampaignErrors) -> OpsError {
    let kind = if errors.exit_code() == EXIT_DATA {
        ErrorKind::Data
    } else {
        ErrorKind::Usage
    };
    let problems: Vec<Problem> = errors
        .problems()
        .iter()
        .map(|problem| Problem {
            path: problem.path.clone(),
            // serde_json says column 0 for "at the end": no position rather than a wrong one.
            line: problem
                .line_col
                .map(|(line, _)| line as u64)
                .filter(|&n| n > 0),
            column: problem
                .line_col
                .map(|(_, column)| column as u64)
                .filter(|&n| n > 0),
            message: problem.message.clone(),
        })
        .collect();
    OpsError::Invalid {
        message: format!(
            "the campaign document has {} problem(s); nothing was published",
            problems.len()
        ),
        problems,
        kind,
    }
}

/// Where the run's users come from; a file must be a readable file of `segment_dir` now, not
/// minutes later.
pub(crate) async fn segment_of(
    campaign: &Campaign,
    file: Option<PathBuf>,
    segment_dir: Option<&Path>,
) -> Result<SegmentInput, OpsError> {
    let file = match (file, &campaign.segment().source) {
        (Some(file), _) => file,
        (None, SegmentSource::File(file)) => PathBuf::from(file),
        (None, SegmentSource::Store) => return Ok(SegmentInput::Store),
        (None, SegmentSource::Unset) => {
            return Err(OpsError::invalid(
                ErrorKind::Usage,
                "segment",
                "names no source: set segment.file or segment.source = \"store\", \
                 or pass a segment file",
            ));
        }
    };
    let Some(dir) = segment_dir else {
        return Err(OpsError::invalid(
            ErrorKind::Usage,
            "segment.file",
            "file segments over the API need HERALD_SEGMENT_DIR on the server; use \
             segment.source = \"store\", or `herald campaign send` where the file is",
        ));
    };
    let dir = dir.to_owned();
    let confined = tokio::task::spawn_blocking(move || confine(&dir, &file))
        .await
        .map_err(|error| OpsError::Internal(format!("checking the segment file: {error}")))?;
    match confined {
        Some(path) => Ok(SegmentInput::File(path)),
        None => Err(OpsError::invalid(
            ErrorKind::Data,
            "segment.file",
            "is not a readable regular file in the server's segment directory",
        )),
    }
}

/// `file` (relative to `dir`, or absolute) resolved, if it is a regular file inside `dir` that
/// this process can open. Blocking.
fn confine(dir: &Path, file: &Path) -> Option<PathBuf> {
    let dir = dir.canonicalize().ok()?;
    let path = dir.join(file).canonicalize().ok()?;
    if !path.starts_with(&dir) || !std::fs::metadata(&path).ok()?.is_file() {
        return None;
    }
    std::fs::File::open(&path).ok()?;
    Some(path)
}

fn producer_error(error: ProducerError) -> OpsError {
    match error {
        ProducerError::Store(error) => error.into(),
        ProducerError::Amqp(error) => OpsError::Broker(error),
        ProducerError::UnknownRun { run_id } => OpsError::UnknownRun { run_id },
        other @ (ProducerError::Cancelled { .. } | ProducerError::WrongCampaign { .. }) => {
            OpsError::Conflict(other.to_string())
        }
        other @ (ProducerError::Segment(_) | ProducerError::Malformed(_)) => {
            OpsError::invalid(ErrorKind::Data, "segment", other.to_string())
        }
    }
}
