//! `run_outcomes`: each user's terminal result in a run, for a small run whose recipients are
//! listed one by one (an API-triggered send's dispatch status).

use crate::backend::with_pool;
use crate::error::query;
use crate::{Store, StoreError};

/// One user's result in a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub external_id: String,
    /// `sent`, `failed`, `dead`, `expired`, `skipped` or `cancelled`.
    pub status: String,
    /// The result's error message (a skip's reason), if any.
    pub message: Option<String>,
    /// The Graph message id of a `sent` result.
    pub message_id: Option<String>,
}

impl Store {
    /// The results recorded for `run_id` so far, by external id (at most `limit`).
    pub async fn run_outcomes(&self, run_id: &str, limit: i64) -> Result<Vec<Outcome>, StoreError> {
        let sql = "SELECT external_id, status, error_message, message_id FROM deliveries \
                   WHERE run_id = $1 ORDER BY external_id LIMIT $2";
        let rows: Vec<(String, String, Option<String>, Option<String>)> =
            with_pool!(&self.db, pool => {
                sqlx::query_as(sql).bind(run_id).bind(limit).fetch_all(pool).await
            })
            .map_err(query("run_outcomes"))?;
        Ok(rows
            .into_iter()
            .map(|(external_id, status, message, message_id)| Outcome {
                external_id,
                status,
                message,
                message_id,
            })
            .collect())
    }
}
