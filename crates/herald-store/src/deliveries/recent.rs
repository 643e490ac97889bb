//! `recent_results`: a run's results that finished since a given time, other than `skipped`
//! (the producer publishes those at its own pace, before any sending): their count and the
//! first and last `finished_at`. It is the basis of a run's current rate and ETA, which the
//! caller computes; this file decides nothing about them.

use serde::Serialize;
use time::OffsetDateTime;

use crate::backend::with_pool;
use crate::error::query;
use crate::stamp::{count, from_opt_ms, to_ms};
use crate::{Store, StoreError};

const RECENT_SQL: &str = "\
SELECT COUNT(*), MIN(finished_at_ms), MAX(finished_at_ms) \
FROM deliveries WHERE run_id = $1 AND status <> 'skipped' AND finished_at_ms >= $2";

/// A run's non-skipped results in a time window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct RecentResults {
    /// Results (sent, failed, dead, expired, cancelled) that finished in the window.
    pub count: u64,
    /// The earliest `finished_at` among them.
    #[serde(with = "time::serde::rfc3339::option")]
    pub first_finished_at: Option<OffsetDateTime>,
    /// The latest `finished_at` among them.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_finished_at: Option<OffsetDateTime>,
}

impl Store {
    /// The run's non-skipped results that finished at or after `since` (all zero for none, or
    /// an unknown run). Reads the run's rows through the `(run_id, status)` index.
    pub async fn recent_results(
        &self,
        run_id: &str,
        since: OffsetDateTime,
    ) -> Result<RecentResults, StoreError> {
        let (n, first, last): (i64, Option<i64>, Option<i64>) = with_pool!(&self.db, pool => {
            sqlx::query_as(RECENT_SQL)
                .bind(run_id)
                .bind(to_ms(since))
                .fetch_one(pool)
                .await
                .map_err(query("recent_results"))?
        });
        Ok(RecentResults {
            count: count(n),
            first_finished_at: from_opt_ms(first, "deliveries.finished_at_ms")?,
            last_finished_at: from_opt_ms(last, "deliveries.finished_at_ms")?,
        })
    }
}
