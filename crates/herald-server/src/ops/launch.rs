//! `launch`: what `POST /campaigns/runs` and `herald campaign send` do with a campaign document:
//! start a run now (`runs::start`), or store it as a schedule when its `[schedule]` has
//! `send_at` or `cron` (`schedules::create`).

use std::path::Path;

use herald_core::rates::PageRates;
use herald_store::Store;

use crate::ops::runs::{self, RunTasks, StartRun, Started};
use crate::ops::schedules::{self, ScheduleInfo};
use crate::ops::{Broker, ErrorKind, OpsError};
use herald_core::campaign::SENT_BY_TRIGGER;

/// What starting a campaign document did: a run started now, or a schedule stored for later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launched {
    /// No `send_at` or `cron`: publishing in the background.
    Started(Started),
    /// `send_at` or `cron`: `herald serve` starts each occurrence.
    Scheduled(ScheduleInfo),
}

/// Starts `request` now (`start`), or stores it as a schedule when its document has `send_at`
/// or `cron` (`schedules::create`).
pub async fn launch(
    store: &Store,
    broker: &Broker,
    tasks: &RunTasks,
    segment_dir: Option<&Path>,
    rates: &PageRates,
    request: StartRun,
) -> Result<Launched, OpsError> {
    let campaign = runs::parse(&request.document, request.format)?;
    if campaign.trigger().is_some() {
        let message = format!("campaign {} {SENT_BY_TRIGGER}", campaign.id());
        return Err(OpsError::invalid(ErrorKind::Usage, "trigger", message));
    }
    if campaign.schedule().starts_later() && !request.occurrence {
        let info = schedules::create(store, segment_dir, &campaign, request).await?;
        return Ok(Launched::Scheduled(info));
    }
    runs::start(store, broker, tasks, segment_dir, rates, request)
        .await
        .map(Launched::Started)
}
