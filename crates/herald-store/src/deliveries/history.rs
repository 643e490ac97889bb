//! `delivery_history`: every result of a job that its record in `deliveries` does not show.
//! Before a later result replaces a record, the record is copied here (`superseded`); a result
//! that changes nothing (a repeat, an older one, anything after `sent`) is written here as it
//! came. Both are rare, so the common batch of new results costs one indexed lookup more.

use herald_core::DeliveryResult;
use serde::Serialize;
use time::OffsetDateTime;

use crate::backend::with_pool;
use crate::batch::with_tx;
use crate::error::query;
use crate::stamp::{from_ms, to_ms};
use crate::{Batch, Store, StoreError};

use super::RESULTS_PER_STATEMENT;

/// One result of a job, shown or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryEntry {
    /// `sent`, `failed`, `dead`, ...
    pub status: String,
    /// The Graph message id of a sent result.
    pub message_id: Option<String>,
    /// The Graph error code of a failed one.
    pub error_code: Option<i64>,
    /// Graph calls it took.
    pub attempts: i64,
    /// When it finished.
    #[serde(with = "time::serde::rfc3339")]
    pub finished_at: OffsetDateTime,
    /// Whether the job's record shows it now.
    pub shown: bool,
}

impl Batch {
    /// Copies the records that `results` are about to replace (see `deliveries.rs`'s rule).
    pub(super) async fn keep_superseded(
        &mut self,
        results: &[&DeliveryResult],
    ) -> Result<(), StoreError> {
        let backend = self.backend();
        for chunk in results.chunks(RESULTS_PER_STATEMENT) {
            let sql = format!(
                "WITH v (job_id, finished_at_ms) AS (VALUES {}) \
                 INSERT INTO delivery_history \
                   (job_id, status, message_id, error_code, attempts, finished_at_ms, superseded) \
                 SELECT d.job_id, d.status, d.message_id, d.error_code, d.attempts, \
                   d.finished_at_ms, TRUE \
                 FROM deliveries d JOIN v ON d.job_id = v.job_id \
                 WHERE d.status <> 'sent' AND v.finished_at_ms > d.finished_at_ms",
                backend.values(chunk.len(), 2, "")
            );
            with_tx!(&mut self.tx, tx => {
                let mut statement = sqlx::query(&sql);
                for result in chunk {
                    statement = statement.bind(&result.job_id).bind(to_ms(result.finished_at));
                }
                statement.execute(&mut **tx).await.map(|done| done.rows_affected())
            })
            .map_err(query("record_results"))?;
        }
        Ok(())
    }

    /// Writes results that changed no record.
    pub(super) async fn keep_repeats(
        &mut self,
        results: &[&DeliveryResult],
    ) -> Result<(), StoreError> {
        let backend = self.backend();
        for chunk in results.chunks(RESULTS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO delivery_history \
                   (job_id, status, message_id, error_code, attempts, finished_at_ms, superseded) \
                 VALUES {}",
                backend.values(chunk.len(), 6, ", FALSE")
            );
            with_tx!(&mut self.tx, tx => {
                let mut statement = sqlx::query(&sql);
                for result in chunk {
                    let code = result.error.as_ref().and_then(|e| e.code).map(i64::from);
                    statement = statement
                        .bind(&result.job_id)
                        .bind(result.status.as_str())
                        .bind(result.message_id.as_deref())
                        .bind(code)
                        .bind(i64::from(result.attempts))
                        .bind(to_ms(result.finished_at));
                }
                statement.execute(&mut **tx).await.map(|done| done.rows_affected())
            })
            .map_err(query("record_results"))?;
        }
        Ok(())
    }
}

/// status, message id, error code, attempts, finished at (ms), shown (1 or 0).
type HistoryRow = (String, Option<String>, Option<i64>, i64, i64, i32);

impl Store {
    /// Every result of `job_id`, oldest first, the shown one marked; empty for an unknown job.
    pub async fn delivery_history(&self, job_id: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        let sql = "\
            SELECT status, message_id, error_code, attempts, finished_at_ms, 1 AS shown \
            FROM deliveries WHERE job_id = $1 \
            UNION ALL \
            SELECT status, message_id, error_code, attempts, finished_at_ms, 0 AS shown \
            FROM delivery_history WHERE job_id = $1 \
            ORDER BY finished_at_ms, shown";
        let rows: Vec<HistoryRow> = with_pool!(&self.db, pool => {
            sqlx::query_as(sql)
                .bind(job_id)
                .fetch_all(pool)
                .await
                .map_err(query("delivery_history"))?
        });
        rows.into_iter()
            .map(
                |(status, message_id, error_code, attempts, finished_ms, shown)| {
                    Ok(HistoryEntry {
                        status,
                        message_id,
                        error_code,
                        attempts,
                        finished_at: from_ms(finished_ms, "delivery_history.finished_at_ms")?,
                        shown: shown == 1,
                    })
                },
            )
            .collect()
    }
}
