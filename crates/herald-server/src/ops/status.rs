//! `status`: where a run stands, from the producer's run record (`Store::load_run`), the
//! results so far (`Store::run_status`) and the results of the last minute
//! (`Store::recent_results`): totals by status, the top Graph error codes, delivered and read,
//! the current rate and the ETA. `RunReport` is the JSON object of `herald campaign status
//! --json` and `GET /campaigns/runs/{id}` (documented in `openapi.json`); `render` is the CLI's
//! table. How rate and ETA are estimated, and when they are "unknown", is `estimate.rs`.

mod estimate;
mod table;

use std::collections::BTreeMap;

use herald_store::{ErrorCount, RunState, Store};
use serde::Serialize;
use time::OffsetDateTime;

use crate::ops::OpsError;

pub use estimate::{Eta, RATE_WINDOW, Rate};
pub use table::render;

/// Everything `campaign status` shows about a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    /// The run.
    pub run_id: String,
    /// Its campaign.
    pub campaign_id: String,
    /// `running`, `paused`, `cancelled` or `complete`.
    pub state: RunState,
    /// Where its users come from: a file path, or `store`.
    pub segment: String,
    /// When it started.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// When its state or the producer's record last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// The producer's side: what it published, confirmed by the broker.
    pub producer: ProducerReport,
    /// Results recorded so far, by status.
    pub results: ResultCounts,
    /// Published jobs without a result yet (published − sent − failed − dead − expired −
    /// cancelled, never below 0).
    pub pending: u64,
    /// Sent messages a delivery receipt covers.
    pub delivered: u64,
    /// Sent messages a read receipt covers.
    pub read: u64,
    /// The most frequent Graph error codes, most frequent first (at most five).
    pub top_errors: Vec<ErrorCount>,
    /// Results per second lately.
    pub rate: Rate,
    /// When every published job should have its result.
    pub eta: Eta,
    /// The latest result's `finished_at`, if any.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_result_at: Option<OffsetDateTime>,
    /// When this report was made.
    #[serde(with = "time::serde::rfc3339")]
    pub as_of: OffsetDateTime,
}

/// The producer's run record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProducerReport {
    /// True once every row of the segment is confirmed by the broker.
    pub complete: bool,
    /// Jobs confirmed.
    pub published: u64,
    /// Users skipped by the producer, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Rows that could not be read.
    pub malformed: u64,
    /// Why the producer stopped before the end, when it did and nothing resumed it since
    /// (`herald campaign send CAMPAIGN --resume RUN_ID` continues it).
    pub stopped: Option<String>,
}

/// Results by status, and their sum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ResultCounts {
    /// Every result recorded.
    pub total: u64,
    /// Accepted by Graph.
    pub sent: u64,
    /// Refused for good (the user cannot be messaged, or the request is invalid).
    pub failed: u64,
    /// Every attempt used; the job is in the dead-letter queue.
    pub dead: u64,
    /// Not sent before `expires_after`.
    pub expired: u64,
    /// Skipped by the producer (results the store has recorded).
    pub skipped: u64,
    /// Cancelled before sending.
    pub cancelled: u64,
}

/// The run's report as of now. `UnknownRun` when the store has no such run.
pub async fn status(store: &Store, run_id: &str) -> Result<RunReport, OpsError> {
    let Some(record) = store.load_run(run_id).await? else {
        return Err(OpsError::UnknownRun {
            run_id: run_id.to_owned(),
        });
    };
    let now = OffsetDateTime::now_utc();
    let results = store.run_status(run_id).await?;
    let since = now - RATE_WINDOW;
    let recent = store.recent_results(run_id, since).await?;
    let counts = results.counts;
    let worker_results = results.total - counts.skipped;
    let pending = record.progress.published.saturating_sub(worker_results);
    let rate = estimate::rate(now, worker_results, &recent);
    let eta = estimate::eta(now, &record, pending, &rate);
    Ok(RunReport {
        run_id: record.run_id,
        campaign_id: record.campaign_id,
        state: record.state,
        segment: record.segment,
        started_at: record.started_at,
        updated_at: record.updated_at,
        producer: ProducerReport {
            complete: record.progress.complete,
            published: record.progress.published,
            skipped: record.progress.skipped,
            malformed: record.progress.malformed,
            stopped: record.producer_stopped,
        },
        results: ResultCounts {
            total: results.total,
            sent: counts.sent,
            failed: counts.failed,
            dead: counts.dead,
            expired: counts.expired,
            skipped: counts.skipped,
            cancelled: counts.cancelled,
        },
        pending,
        delivered: results.delivered,
        read: results.read,
        top_errors: results.top_errors,
        rate,
        eta,
        last_result_at: results.last_finished_at,
        as_of: now,
    })
}
