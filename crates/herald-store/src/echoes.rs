//! `echoes`: the job ids Meta echoed back (a page's `message_echoes` carry the `metadata`
//! Herald set, the job id), with the message id and when. An echo proves that Meta took the
//! job's message even when the worker never got the answer (a timeout, a connection lost after
//! the request was written), so it is what tells a redelivered or retried job that its
//! message went out already.

use serde::Serialize;
use time::OffsetDateTime;

use crate::backend::with_pool;
use crate::batch::with_tx;
use crate::error::query;
use crate::stamp::{from_ms, to_ms};
use crate::{Batch, Store, StoreError};

/// A job's message, as Meta echoed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Echo {
    /// The page that sent it.
    pub page_id: String,
    /// Meta's message id.
    pub message_id: Option<String>,
    /// When Meta says it was sent.
    #[serde(with = "time::serde::rfc3339")]
    pub echoed_at: OffsetDateTime,
}

impl Batch {
    /// Records the echo of `job_id`; true when it is the job's first.
    pub async fn record_echo(
        &mut self,
        job_id: &str,
        page_id: &str,
        message_id: Option<&str>,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let sql = "INSERT INTO echoes (job_id, page_id, message_id, echoed_at_ms) \
            VALUES ($1, $2, $3, $4) ON CONFLICT (job_id) DO NOTHING";
        let inserted = with_tx!(&mut self.tx, tx => {
            sqlx::query(sql)
                .bind(job_id)
                .bind(page_id)
                .bind(message_id)
                .bind(to_ms(at))
                .execute(&mut **tx)
                .await
                .map(|done| done.rows_affected())
        })
        .map_err(query("record_echo"))?;
        Ok(inserted == 1)
    }
}

impl Store {
    /// The echo of `job_id`, if Meta echoed it.
    pub async fn echo_of(&self, job_id: &str) -> Result<Option<Echo>, StoreError> {
        let sql = "SELECT page_id, message_id, echoed_at_ms FROM echoes WHERE job_id = $1";
        let row: Option<(String, Option<String>, i64)> = with_pool!(&self.db, pool => {
            sqlx::query_as(sql)
                .bind(job_id)
                .fetch_optional(pool)
                .await
                .map_err(query("echo_of"))?
        });
        row.map(|(page_id, message_id, at_ms)| {
            Ok(Echo {
                page_id,
                message_id,
                echoed_at: from_ms(at_ms, "echoes.echoed_at_ms")?,
            })
        })
        .transpose()
    }
}
