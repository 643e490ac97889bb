//! Per-job delivery records and what receipts say about them. `record_result` writes the one
//! terminal result of a job (first write wins: results are terminal, so a redelivered or
//! conflicting later one changes nothing); `mark_delivered` / `mark_read` apply Meta's
//! watermarks (and `mids`); `run_status` sums a run up by `GROUP BY` at read time, so there are
//! no counters to keep in step. Receipts are also remembered per PSID, so one that arrives
//! before the result it confirms is applied when the result is recorded.
//!
//! Times: a record's `sent_at` is the result's `finished_at` (our clock, just after Graph
//! answered), while a watermark is Meta's time of the last message delivered or read, a little
//! earlier than our `finished_at` for that same message. So a record counts as covered when
//! `sent_at <= watermark + RECEIPT_SLACK`; a campaign sends one message per user per run, so no
//! two of our messages to one PSID fall inside the slack of each other in practice.

use std::time::Duration;

use herald_core::{DeliveryResult, ResultStatus};
use sqlx::Row;
use time::OffsetDateTime;

use crate::backend::with_pool;
use crate::error::query;
use crate::stamp::to_ms;
use crate::{Store, StoreError};

mod recent;
mod status;

pub use recent::RecentResults;
pub use status::{ErrorCount, RunStatus, StatusCounts};

/// How much later than a watermark our own `sent_at` may be and still count as covered by it.
pub const RECEIPT_SLACK: Duration = Duration::from_millis(SLACK_MS as u64);
const SLACK_MS: i64 = 5_000;

/// The PSID of a result without one, as the producer chose it from the store: the identity
/// linked to the user on the page, else the user's `messenger_id`, else the anonymous identity.
const INSERT_SQL: &str = "\
INSERT INTO deliveries \
  (job_id, run_id, campaign_id, external_id, page_id, psid, status, message_id, \
   error_code, error_subcode, error_class, error_message, error_fbtrace_id, \
   attempts, finished_at_ms, sent_at_ms) \
VALUES ($1, $2, $3, $4, $5, COALESCE($6, \
    (SELECT i.psid FROM identities i WHERE i.page_id = $5 AND i.external_id = $4 \
     ORDER BY i.last_inbound_at_ms DESC NULLS LAST, i.psid LIMIT 1), \
    (SELECT u.messenger_id FROM users u WHERE u.external_id = $4), \
    (SELECT i.psid FROM identities i WHERE i.page_id = $5 AND i.anon_id = $4 LIMIT 1)), \
  $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
ON CONFLICT (job_id) DO NOTHING \
RETURNING psid";

/// `greatest(sent_at, watermark)`, the time a receipt marks: never earlier than the send.
fn mark_time(watermark: &str) -> String {
    format!("CASE WHEN sent_at_ms > {watermark} THEN sent_at_ms ELSE {watermark} END")
}

/// Message ids per `IN (...)` list.
const MIDS_PER_STATEMENT: usize = 500;

impl Store {
    /// Stores the terminal result of a job; true when it was new, false when the job already
    /// had one (which is kept). `psid` is the PSID the job went to, when the caller knows it;
    /// otherwise it is looked up as the producer chose it. Receipts already seen for that PSID
    /// are applied to a `sent` result.
    pub async fn record_result(
        &self,
        result: &DeliveryResult,
        psid: Option<&str>,
    ) -> Result<bool, StoreError> {
        let error = result.error.as_ref();
        let finished_ms = to_ms(result.finished_at);
        let sent_ms = (result.status == ResultStatus::Sent).then_some(finished_ms);
        with_pool!(&self.db, pool => {
            let mut tx = pool.begin().await.map_err(query("record_result"))?;
            let inserted = sqlx::query(INSERT_SQL)
                .bind(&result.job_id)
                .bind(&result.run_id)
                .bind(&result.campaign_id)
                .bind(&result.external_id)
                .bind(&result.page_id)
                .bind(psid)
                .bind(result.status.as_str())
                .bind(result.message_id.as_deref())
                .bind(error.and_then(|e| e.code).map(i64::from))
                .bind(error.and_then(|e| e.subcode).map(i64::from))
                .bind(error.and_then(|e| e.class).map(|c| c.as_str()))
                .bind(error.map(|e| e.message.as_str()))
                .bind(error.and_then(|e| e.fbtrace_id.as_deref()))
                .bind(i64::from(result.attempts))
                .bind(finished_ms)
                .bind(sent_ms)
                .fetch_optional(&mut *tx)
                .await
                .map_err(query("record_result"))?;
            let Some(row) = inserted else {
                return Ok(false);
            };
            let psid: Option<String> = row.try_get(0).map_err(query("record_result"))?;
            if let (Some(sent_ms), Some(psid)) = (sent_ms, psid) {
                let receipts: Option<(Option<i64>, Option<i64>)> = sqlx::query_as(
                    "SELECT delivered_watermark_ms, read_watermark_ms FROM receipts \
                     WHERE page_id = $1 AND psid = $2",
                )
                .bind(&result.page_id)
                .bind(&psid)
                .fetch_optional(&mut *tx)
                .await
                .map_err(query("record_result"))?;
                let covers = |watermark: Option<i64>| {
                    watermark.filter(|&w| sent_ms <= w.saturating_add(SLACK_MS)).map(|w| w.max(sent_ms))
                };
                let (delivered, read) = receipts.unwrap_or_default();
                let read = covers(read);
                let delivered = covers(delivered).or(read);
                if delivered.is_some() {
                    sqlx::query(
                        "UPDATE deliveries SET delivered_at_ms = $2, read_at_ms = $3 \
                         WHERE job_id = $1",
                    )
                    .bind(&result.job_id)
                    .bind(delivered)
                    .bind(read)
                    .execute(&mut *tx)
                    .await
                    .map_err(query("record_result"))?;
                }
            }
            tx.commit().await.map_err(query("record_result"))?;
            Ok(true)
        })
    }

    /// A delivery receipt: every `sent` record to `psid` on `page_id` sent before `watermark`
    /// (see the module doc for the slack), and every one whose message id is in `mids`, that is
    /// not marked delivered yet, gets `delivered_at`. Returns how many records changed: a
    /// repeated receipt changes none.
    pub async fn mark_delivered(
        &self,
        page_id: &str,
        psid: &str,
        watermark: OffsetDateTime,
        mids: &[String],
    ) -> Result<u64, StoreError> {
        let watermark_ms = to_ms(watermark);
        let covered_ms = watermark_ms.saturating_add(SLACK_MS);
        let by_watermark = format!(
            "UPDATE deliveries SET delivered_at_ms = {} \
             WHERE page_id = $1 AND psid = $2 AND sent_at_ms IS NOT NULL \
               AND sent_at_ms <= $4 AND delivered_at_ms IS NULL",
            mark_time("$3")
        );
        with_pool!(&self.db, pool => {
            let mut tx = pool.begin().await.map_err(query("mark_delivered"))?;
            sqlx::query(&receipt_sql("delivered_watermark_ms"))
                .bind(page_id)
                .bind(psid)
                .bind(watermark_ms)
                .execute(&mut *tx)
                .await
                .map_err(query("mark_delivered"))?;
            let mut changed = sqlx::query(&by_watermark)
                .bind(page_id)
                .bind(psid)
                .bind(watermark_ms)
                .bind(covered_ms)
                .execute(&mut *tx)
                .await
                .map_err(query("mark_delivered"))?
                .rows_affected();
            for chunk in mids.chunks(MIDS_PER_STATEMENT) {
                let list: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
                // By message id alone (Graph's ids are unique across pages): it also finds
                // records whose PSID was not known, and it keeps SQLite's planner on the
                // message_id index rather than scanning the page's records.
                let sql = format!(
                    "UPDATE deliveries SET delivered_at_ms = {} \
                     WHERE sent_at_ms IS NOT NULL AND delivered_at_ms IS NULL \
                       AND message_id IN ({})",
                    mark_time("$1"),
                    list.join(", ")
                );
                let mut statement = sqlx::query(&sql).bind(watermark_ms);
                for mid in chunk {
                    statement = statement.bind(mid);
                }
                changed += statement
                    .execute(&mut *tx)
                    .await
                    .map_err(query("mark_delivered"))?
                    .rows_affected();
            }
            tx.commit().await.map_err(query("mark_delivered"))?;
            Ok(changed)
        })
    }

    /// A read receipt: every `sent` record to `psid` on `page_id` sent before `watermark` (with
    /// the slack) and not marked read gets `read_at`, and `delivered_at` if it had none (read
    /// implies delivered). Returns how many records changed: a repeated receipt changes none.
    pub async fn mark_read(
        &self,
        page_id: &str,
        psid: &str,
        watermark: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        let watermark_ms = to_ms(watermark);
        let covered_ms = watermark_ms.saturating_add(SLACK_MS);
        let sql = format!(
            "UPDATE deliveries SET read_at_ms = {at}, delivered_at_ms = COALESCE(delivered_at_ms, {at}) \
             WHERE page_id = $1 AND psid = $2 AND sent_at_ms IS NOT NULL \
               AND sent_at_ms <= $4 AND read_at_ms IS NULL",
            at = mark_time("$3")
        );
        with_pool!(&self.db, pool => {
            let mut tx = pool.begin().await.map_err(query("mark_read"))?;
            sqlx::query(&receipt_sql("read_watermark_ms"))
                .bind(page_id)
                .bind(psid)
                .bind(watermark_ms)
                .execute(&mut *tx)
                .await
                .map_err(query("mark_read"))?;
            let changed = sqlx::query(&sql)
                .bind(page_id)
                .bind(psid)
                .bind(watermark_ms)
                .bind(covered_ms)
                .execute(&mut *tx)
                .await
                .map_err(query("mark_read"))?
                .rows_affected();
            tx.commit().await.map_err(query("mark_read"))?;
            Ok(changed)
        })
    }
}

/// Raises one watermark column of `receipts` for ($1 page, $2 PSID) to $3, never lowering it.
fn receipt_sql(column: &str) -> String {
    format!(
        "INSERT INTO receipts (page_id, psid, {column}) VALUES ($1, $2, $3) \
         ON CONFLICT (page_id, psid) DO UPDATE SET {column} = CASE \
           WHEN receipts.{column} IS NULL OR excluded.{column} > receipts.{column} \
           THEN excluded.{column} ELSE receipts.{column} END"
    )
}
