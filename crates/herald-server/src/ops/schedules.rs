//! Schedules: campaigns whose `[schedule]` has `send_at` (one run, later) or `cron` (a run per
//! occurrence, on the clock of its `timezone`). `create` checks the document and its segment
//! now and stores it; `herald serve` calls `start_due` every second, which starts each due
//! occurrence exactly once however many serve processes run (the store's occurrence row is the
//! claim), each occurrence as a run of its own. Occurrences missed while no serve ran are not
//! started one by one: the first serve back starts one, then follows the schedule. `list`,
//! `get` and `cancel` are what `herald campaign schedules`, `status` and `cancel` and the API
//! show and do.

use std::path::{Path, PathBuf};

use herald_core::campaign::Campaign;
use herald_core::clock::now_ms;
use herald_core::rates::PageRates;
use herald_store::{ScheduleRecord, Store};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::{error, info};

use crate::ops::runs::{self, DocumentFormat, RunTasks, StartRun, segment_of};
use crate::ops::{Broker, ErrorKind, OpsError};

/// A schedule as the CLI and the API show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScheduleInfo {
    pub schedule_id: String,
    pub campaign_id: String,
    /// `scheduled` (an occurrence is ahead), `done` or `cancelled`.
    pub state: String,
    /// The next occurrence, RFC 3339 UTC.
    pub next_at: Option<String>,
    /// `send_at` as written (RFC 3339), for a one-off schedule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_at: Option<String>,
    /// The cron expression, for a recurring one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// The zone the cron expression is read in.
    pub timezone: String,
    /// Where its users come from: a file path, or `store`.
    pub segment: String,
    /// The occurrences started so far.
    pub runs: Vec<Occurrence>,
}

/// One started occurrence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Occurrence {
    /// When it was due, RFC 3339 UTC.
    pub at: String,
    /// The run it started; `None` when starting it failed (the log says why).
    pub run_id: Option<String>,
}

/// Stores `request`'s scheduled campaign (already parsed as `campaign`) after checking its
/// segment can be read now. Nothing is published until an occurrence is due.
pub async fn create(
    store: &Store,
    segment_dir: Option<&Path>,
    campaign: &Campaign,
    request: StartRun,
) -> Result<ScheduleInfo, OpsError> {
    let now = OffsetDateTime::now_utc();
    let Some(first) = campaign.schedule().next_start(now) else {
        return Err(OpsError::invalid(
            ErrorKind::Data,
            "schedule",
            "has no occurrence ahead: `send_at` is in the past, or the `cron` never comes",
        ));
    };
    let segment = segment_of(campaign, request.segment.clone(), segment_dir).await?;
    let record = ScheduleRecord {
        schedule_id: herald_core::id::time_id('s'),
        campaign_id: campaign.id().to_owned(),
        document: request.document,
        format: match request.format {
            DocumentFormat::Toml => "toml",
            DocumentFormat::Json => "json",
        }
        .to_owned(),
        segment: request.segment.map(|path| path.display().to_string()),
        strict: request.strict,
        state: "scheduled".to_owned(),
        next_at_ms: Some(ms(first)),
        created_at_ms: now_ms(),
        runs: Vec::new(),
    };
    store.create_schedule(&record).await?;
    info!(schedule_id = %record.schedule_id, campaign_id = %record.campaign_id,
        next_at = %rfc(first), "Campaign scheduled; herald serve starts it when it is due.");
    info_of(&record, Some(segment.describe()))
}

/// Every schedule, newest first.
pub async fn list(store: &Store) -> Result<Vec<ScheduleInfo>, OpsError> {
    store
        .schedules()
        .await?
        .iter()
        .map(|record| info_of(record, None))
        .collect()
}

/// One schedule.
pub async fn get(store: &Store, schedule_id: &str) -> Result<ScheduleInfo, OpsError> {
    let record = store
        .schedule(schedule_id)
        .await?
        .ok_or_else(|| unknown(schedule_id))?;
    info_of(&record, None)
}

/// Cancels a schedule's future occurrences (runs it started go on; cancel those by run id).
pub async fn cancel(store: &Store, schedule_id: &str) -> Result<ScheduleInfo, OpsError> {
    if !store.cancel_schedule(schedule_id).await? {
        let record = store
            .schedule(schedule_id)
            .await?
            .ok_or_else(|| unknown(schedule_id))?;
        return Err(OpsError::Conflict(format!(
            "schedule {schedule_id} is {} already; nothing to cancel",
            record.state
        )));
    }
    info!(
        schedule_id,
        "Schedule cancelled; no further occurrence starts."
    );
    get(store, schedule_id).await
}

/// Where `start_due` starts runs.
pub struct Starter<'a> {
    pub store: &'a Store,
    pub broker: &'a Broker,
    pub tasks: &'a RunTasks,
    pub segment_dir: Option<&'a Path>,
    pub rates: &'a PageRates,
}

/// Starts every occurrence due now that no other serve process claimed first; returns how
/// many this call started.
pub async fn start_due(starter: &Starter<'_>) -> Result<usize, OpsError> {
    let now = now_ms();
    let mut started = 0;
    for record in starter.store.due_schedules(now).await? {
        let Some(occurrence) = record.next_at_ms else {
            continue;
        };
        if !starter
            .store
            .claim_occurrence(&record.schedule_id, occurrence, now)
            .await?
        {
            continue;
        }
        let format = if record.format == "json" {
            DocumentFormat::Json
        } else {
            DocumentFormat::Toml
        };
        // The next occurrence after now: occurrences missed while no serve ran are skipped.
        let next = runs::parse(&record.document, format)
            .ok()
            .and_then(|campaign| campaign.schedule().next_start(at(now.max(occurrence))))
            .map(ms);
        let request = StartRun {
            document: record.document.clone(),
            format,
            segment: record.segment.as_ref().map(PathBuf::from),
            strict: record.strict,
            idempotency_key: None,
            engaged_users: None,
            over_budget: false,
            occurrence: true,
        };
        let outcome = runs::start(
            starter.store,
            starter.broker,
            starter.tasks,
            starter.segment_dir,
            starter.rates,
            request,
        )
        .await;
        match outcome {
            Ok(run) => {
                starter
                    .store
                    .occurrence_started(&record.schedule_id, occurrence, &run.run_id)
                    .await?;
                info!(schedule_id = %record.schedule_id, run_id = %run.run_id,
                    occurrence = %rfc(at(occurrence)), "Scheduled occurrence started.");
                started += 1;
            }
            Err(failure) => error!(schedule_id = %record.schedule_id,
                occurrence = %rfc(at(occurrence)), error = %failure,
                "A scheduled occurrence could not start; the schedule goes on with the next. \
                 Check the campaign and its segment (`herald campaign status SCHEDULE_ID`)."),
        }
        starter
            .store
            .advance_schedule(&record.schedule_id, occurrence, next)
            .await?;
    }
    Ok(started)
}

fn info_of(record: &ScheduleRecord, segment: Option<String>) -> Result<ScheduleInfo, OpsError> {
    let format = if record.format == "json" {
        DocumentFormat::Json
    } else {
        DocumentFormat::Toml
    };
    let campaign = runs::parse(&record.document, format)?;
    let schedule = campaign.schedule();
    let segment = segment.unwrap_or_else(|| match &record.segment {
        Some(path) => path.clone(),
        None => match &campaign.segment().source {
            herald_core::campaign::SegmentSource::File(file) => file.clone(),
            _ => "store".to_owned(),
        },
    });
    Ok(ScheduleInfo {
        schedule_id: record.schedule_id.clone(),
        campaign_id: record.campaign_id.clone(),
        state: record.state.clone(),
        next_at: record.next_at_ms.map(|next| rfc(at(next))),
        send_at: schedule.send_at.map(rfc),
        cron: schedule.cron.as_ref().map(|cron| cron.as_str().to_owned()),
        timezone: schedule.timezone.clone(),
        segment,
        runs: record
            .runs
            .iter()
            .map(|(occurrence, run_id)| Occurrence {
                at: rfc(at(*occurrence)),
                run_id: run_id.clone(),
            })
            .collect(),
    })
}

fn unknown(schedule_id: &str) -> OpsError {
    OpsError::UnknownSchedule {
        schedule_id: schedule_id.to_owned(),
    }
}

fn ms(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn at(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn rfc(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}
