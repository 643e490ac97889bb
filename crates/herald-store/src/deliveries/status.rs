//! `run_status`: a run's delivery records summed up at read time (two `GROUP BY` queries over
//! the `(run_id, status)` index): counts by status, delivered, read, the most frequent Graph
//! error codes, and the first and last `finished_at` (from which callers derive rate and ETA).
//! The run's own state and checkpoint are `load_run`'s.

use herald_core::ResultStatus;
use serde::Serialize;
use sqlx::Row;
use time::OffsetDateTime;

use crate::backend::with_pool;
use crate::error::query;
use crate::stamp::{count, from_opt_ms};
use crate::{Store, StoreError};

/// How many error codes `run_status` lists.
const TOP_ERRORS: i64 = 5;

const BY_STATUS_SQL: &str = "\
SELECT status, COUNT(*), COUNT(delivered_at_ms), COUNT(read_at_ms), \
       MIN(finished_at_ms), MAX(finished_at_ms) \
FROM deliveries WHERE run_id = $1 GROUP BY status";

// Ties are broken by code, then subcode with "none" first on both databases.
const TOP_ERRORS_SQL: &str = "\
SELECT error_code, error_subcode, COUNT(*) \
FROM deliveries WHERE run_id = $1 AND error_code IS NOT NULL \
GROUP BY error_code, error_subcode \
ORDER BY 3 DESC, 1, COALESCE(error_subcode, -1) \
LIMIT $2";

/// Results of a run by status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct StatusCounts {
    /// Accepted by Graph.
    pub sent: u64,
    /// Permanent errors.
    pub failed: u64,
    /// Attempts exhausted.
    pub dead: u64,
    /// Not sent in time.
    pub expired: u64,
    /// Not sent by the producer's decision.
    pub skipped: u64,
    /// Cancelled before sending.
    pub cancelled: u64,
}

impl StatusCounts {
    /// The count for one status.
    pub fn get(&self, status: ResultStatus) -> u64 {
        *self.slot(status)
    }

    fn slot(&self, status: ResultStatus) -> &u64 {
        match status {
            ResultStatus::Sent => &self.sent,
            ResultStatus::Failed => &self.failed,
            ResultStatus::Dead => &self.dead,
            ResultStatus::Expired => &self.expired,
            ResultStatus::Skipped => &self.skipped,
            ResultStatus::Cancelled => &self.cancelled,
        }
    }

    fn slot_mut(&mut self, status: ResultStatus) -> &mut u64 {
        match status {
            ResultStatus::Sent => &mut self.sent,
            ResultStatus::Failed => &mut self.failed,
            ResultStatus::Dead => &mut self.dead,
            ResultStatus::Expired => &mut self.expired,
            ResultStatus::Skipped => &mut self.skipped,
            ResultStatus::Cancelled => &mut self.cancelled,
        }
    }
}

/// One Graph error code and how many results of the run ended with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ErrorCount {
    /// Graph `code`.
    pub code: u32,
    /// Graph `error_subcode`, when there was one.
    pub subcode: Option<u32>,
    /// Results with this code and subcode.
    pub count: u64,
}

/// A run's results so far.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct RunStatus {
    /// Results recorded, all statuses.
    pub total: u64,
    /// Results by status.
    pub counts: StatusCounts,
    /// Sent messages a receipt says were delivered.
    pub delivered: u64,
    /// Sent messages a receipt says were read.
    pub read: u64,
    /// The most frequent error codes, most frequent first (at most five).
    pub top_errors: Vec<ErrorCount>,
    /// The earliest `finished_at`.
    #[serde(with = "time::serde::rfc3339::option")]
    pub first_finished_at: Option<OffsetDateTime>,
    /// The latest `finished_at`.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_finished_at: Option<OffsetDateTime>,
}

impl Store {
    /// A run's results so far (all zero for a run with none, or an unknown run).
    pub async fn run_status(&self, run_id: &str) -> Result<RunStatus, StoreError> {
        type ByStatus = (String, i64, i64, i64, Option<i64>, Option<i64>);
        let (groups, errors) = with_pool!(&self.db, pool => {
            let groups: Vec<ByStatus> = sqlx::query_as(BY_STATUS_SQL)
                .bind(run_id)
                .fetch_all(pool)
                .await
                .map_err(query("run_status"))?;
            let errors = sqlx::query(TOP_ERRORS_SQL)
                .bind(run_id)
                .bind(TOP_ERRORS)
                .fetch_all(pool)
                .await
                .map_err(query("run_status"))?
                .iter()
                .map(|row| -> Result<(i64, Option<i64>, i64), sqlx::Error> {
                    Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?))
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(query("run_status"))?;
            (groups, errors)
        });
        let mut status = RunStatus::default();
        let (mut first, mut last) = (None::<i64>, None::<i64>);
        for (name, total, delivered, read, min, max) in groups {
            let result_status = parse_status(&name)?;
            *status.counts.slot_mut(result_status) += count(total);
            status.total += count(total);
            status.delivered += count(delivered);
            status.read += count(read);
            first = match (first, min) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            last = last.max(max);
        }
        status.first_finished_at = from_opt_ms(first, "deliveries.finished_at_ms")?;
        status.last_finished_at = from_opt_ms(last, "deliveries.finished_at_ms")?;
        status.top_errors = errors
            .into_iter()
            .map(|(code, subcode, n)| ErrorCount {
                code: u32::try_from(code).unwrap_or(u32::MAX),
                subcode: subcode.map(|s| u32::try_from(s).unwrap_or(u32::MAX)),
                count: count(n),
            })
            .collect();
        Ok(status)
    }
}

fn parse_status(name: &str) -> Result<ResultStatus, StoreError> {
    use ResultStatus::*;
    [Sent, Failed, Dead, Expired, Skipped, Cancelled]
        .into_iter()
        .find(|status| status.as_str() == name)
        .ok_or_else(|| StoreError::Corrupt {
            what: "deliveries.status",
            value: name.to_owned(),
        })
}
