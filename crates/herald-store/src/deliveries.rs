//! Per-job delivery records and what receipts say about them. `record_result` writes the
//! terminal result a job's record shows: the latest one, except that `sent` is final (a message
//! cannot be unsent). So a dead job replayed and then sent shows `sent`, and a repeat of a
//! result changes nothing. Every result the record does not show is kept in
//! `delivery_history` (`history.rs`). `mark_delivered` / `mark_read` apply Meta's
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

use crate::batch::with_tx;
use crate::error::query;
use crate::stamp::to_ms;
use crate::{Batch, Store, StoreError};

mod history;
mod outcomes;
mod receipts;
mod recent;
mod status;

pub use history::HistoryEntry;
pub use outcomes::Outcome;
pub use receipts::{Receipt, ReceiptKind};
pub use recent::RecentResults;
pub use status::{ErrorCount, RunStatus, StatusCounts};

/// How much later than a watermark our own `sent_at` may be and still count as covered by it.
pub const RECEIPT_SLACK: Duration = Duration::from_millis(SLACK_MS as u64);
const SLACK_MS: i64 = 5_000;

/// The PSID of a result without one, as the producer chose it from the store: the identity
/// linked to the user on the page, else the user's `messenger_id`, else the anonymous identity.
/// Rows come in `v`, a `VALUES` list. A job's record changes only to a later result, and never
/// once it is `sent` (`SUPERSEDES`); the receipts of a replaced record go with it.
const INSERT_SQL: &str = "\
WITH v (job_id, run_id, campaign_id, external_id, page_id, psid, status, message_id, \
   error_code, error_subcode, error_class, error_message, error_fbtrace_id, \
   attempts, finished_at_ms, sent_at_ms) AS (VALUES {values}) \
INSERT INTO deliveries \
  (job_id, run_id, campaign_id, external_id, page_id, psid, status, message_id, \
   error_code, error_subcode, error_class, error_message, error_fbtrace_id, \
   attempts, finished_at_ms, sent_at_ms) \
SELECT v.job_id, v.run_id, v.campaign_id, v.external_id, v.page_id, COALESCE(v.psid, \
    (SELECT i.psid FROM identities i WHERE i.page_id = v.page_id AND i.external_id = v.external_id \
     ORDER BY i.last_inbound_at_ms DESC NULLS LAST, i.psid LIMIT 1), \
    (SELECT u.messenger_id FROM users u WHERE u.external_id = v.external_id), \
    (SELECT i.psid FROM identities i WHERE i.page_id = v.page_id AND i.anon_id = v.external_id LIMIT 1)), \
  v.status, v.message_id, v.error_code, v.error_subcode, v.error_class, v.error_message, \
  v.error_fbtrace_id, v.attempts, v.finished_at_ms, v.sent_at_ms \
FROM v WHERE TRUE \
ON CONFLICT (job_id) DO UPDATE SET status = excluded.status, message_id = excluded.message_id, \
  error_code = excluded.error_code, error_subcode = excluded.error_subcode, \
  error_class = excluded.error_class, error_message = excluded.error_message, \
  error_fbtrace_id = excluded.error_fbtrace_id, attempts = excluded.attempts, \
  finished_at_ms = excluded.finished_at_ms, sent_at_ms = excluded.sent_at_ms, \
  delivered_at_ms = NULL, read_at_ms = NULL \
WHERE deliveries.status <> 'sent' AND excluded.finished_at_ms > deliveries.finished_at_ms \
RETURNING job_id, page_id, psid, sent_at_ms";
const INSERT_COLUMNS: usize = 16;

/// Results per `INSERT` statement (16 parameters each, well under both databases' limits).
const RESULTS_PER_STATEMENT: usize = 500;

/// `greatest(sent_at, watermark)`, the time a receipt marks: never earlier than the send.
fn mark_time(watermark: &str) -> String {
    format!("CASE WHEN sent_at_ms > {watermark} THEN sent_at_ms ELSE {watermark} END")
}

impl Store {
    /// Stores the terminal result of a job; true when the job's record now shows it, false when
    /// it changed nothing (a repeat, or older than the shown one, or the job is `sent`). `psid` is the PSID the job went to, when the caller knows it;
    /// otherwise it is looked up as the producer chose it. Receipts already seen for that PSID
    /// are applied to a `sent` result.
    pub async fn record_result(
        &self,
        result: &DeliveryResult,
        psid: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut batch = self.batch().await?;
        let new = batch.record_results(&[(result, psid)]).await?;
        batch.commit().await?;
        Ok(new.first().copied().unwrap_or(false))
    }

    /// A delivery receipt: every `sent` record to `psid` on `page_id` sent before `watermark`
    /// (see the module doc for the slack), and every one whose message id is in `mids`, that is
    /// not marked delivered yet, gets `delivered_at`. Returns how many records changed: a
    /// repeated receipt changes none. (The ingest applies receipts in bulk with
    /// `Batch::mark_receipts`.)
    pub async fn mark_delivered(
        &self,
        page_id: &str,
        psid: &str,
        watermark: OffsetDateTime,
        mids: &[String],
    ) -> Result<u64, StoreError> {
        let kind = ReceiptKind::Delivered { mids };
        self.mark_one(Receipt {
            page_id,
            psid,
            watermark,
            kind,
        })
        .await
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
        let kind = ReceiptKind::Read;
        self.mark_one(Receipt {
            page_id,
            psid,
            watermark,
            kind,
        })
        .await
    }

    /// One receipt in a transaction of its own.
    async fn mark_one(&self, receipt: Receipt<'_>) -> Result<u64, StoreError> {
        let mut batch = self.batch().await?;
        let changed = batch.mark_receipts(&[receipt]).await?;
        batch.commit().await?;
        Ok(changed)
    }
}

/// Receipt watermarks (delivered, read) by (page, PSID).
type Receipts = std::collections::HashMap<(String, String), (Option<i64>, Option<i64>)>;

/// A stored `sent` record that a receipt seen earlier may cover.
struct NewSent {
    job_id: String,
    page_id: String,
    psid: String,
    sent_ms: i64,
}

impl Batch {
    /// Stores the terminal results of many jobs: for each, true when the job's record now shows
    /// it, false when it changed nothing (see the module doc) or an earlier entry of `results`
    /// was for the same job (the first counts). Results not shown go to `delivery_history`. `psid` as in `Store::record_result`. Receipts already seen for a new `sent`
    /// record's PSID are applied to it.
    pub async fn record_results(
        &mut self,
        results: &[(&DeliveryResult, Option<&str>)],
    ) -> Result<Vec<bool>, StoreError> {
        let mut first = std::collections::HashSet::with_capacity(results.len());
        let unique: Vec<usize> = (0..results.len())
            .filter(|&i| first.insert(results[i].0.job_id.as_str()))
            .collect();
        let mut inserted = std::collections::HashSet::with_capacity(unique.len());
        let mut sent = Vec::new();
        let backend = self.backend();
        for chunk in unique.chunks(RESULTS_PER_STATEMENT) {
            let chunk_results: Vec<&DeliveryResult> = chunk.iter().map(|&i| results[i].0).collect();
            self.keep_superseded(&chunk_results).await?;
            let sql =
                INSERT_SQL.replace("{values}", &backend.values(chunk.len(), INSERT_COLUMNS, ""));
            let rows = with_tx!(&mut self.tx, tx => {
                let mut statement = sqlx::query(&sql);
                for &i in chunk {
                    let (result, psid) = results[i];
                    let error = result.error.as_ref();
                    let finished_ms = to_ms(result.finished_at);
                    statement = statement
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
                        .bind((result.status == ResultStatus::Sent).then_some(finished_ms));
                }
                statement
                    .fetch_all(&mut **tx)
                    .await
                    .and_then(|rows| rows
                    .iter()
                    .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?)))
                    .collect::<Result<Vec<(String, String, Option<String>, Option<i64>)>, sqlx::Error>>())
            })
            .map_err(query("record_results"))?;
            for (job_id, page_id, psid, sent_ms) in rows {
                if let (Some(psid), Some(sent_ms)) = (psid, sent_ms) {
                    sent.push(NewSent {
                        job_id: job_id.clone(),
                        page_id,
                        psid,
                        sent_ms,
                    });
                }
                inserted.insert(job_id);
            }
        }
        self.apply_earlier_receipts(&sent).await?;
        let mut new = vec![false; results.len()];
        for &i in &unique {
            new[i] = inserted.contains(&results[i].0.job_id);
        }
        let repeats: Vec<&DeliveryResult> = (0..results.len())
            .filter(|&i| !new[i])
            .map(|i| results[i].0)
            .collect();
        self.keep_repeats(&repeats).await?;
        Ok(new)
    }

    /// Marks new `sent` records with the receipts their PSIDs already had (a receipt may reach
    /// the ingest before the result it confirms reaches the results consumer).
    ///
    /// The receipts rows are read by an upsert, not a `SELECT`, so that this transaction holds
    /// their row locks: on PostgreSQL an ingest transaction storing a receipt for the same PSID
    /// at the same moment then waits for this one (and its `UPDATE` sees this record) or this
    /// one waits for it (and reads its watermark). With a plain read, each could miss the
    /// other's uncommitted row and the receipt would never be applied. Rows are locked in key
    /// order, so two such transactions cannot deadlock.
    async fn apply_earlier_receipts(&mut self, sent: &[NewSent]) -> Result<(), StoreError> {
        let backend = self.backend();
        let mut keys: Vec<(&str, &str)> = sent
            .iter()
            .map(|record| (record.page_id.as_str(), record.psid.as_str()))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        let mut receipts = Receipts::with_capacity(keys.len());
        for chunk in keys.chunks(RESULTS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO receipts (page_id, psid) VALUES {} \
                 ON CONFLICT (page_id, psid) DO UPDATE SET page_id = excluded.page_id \
                 RETURNING page_id, psid, delivered_watermark_ms, read_watermark_ms",
                backend.values(chunk.len(), 2, "")
            );
            let rows = with_tx!(&mut self.tx, tx => {
                let mut statement = sqlx::query(&sql);
                for (page_id, psid) in chunk {
                    statement = statement.bind(*page_id).bind(*psid);
                }
                statement
                    .fetch_all(&mut **tx)
                    .await
                    .and_then(|rows| rows
                    .iter()
                    .map(|row| Ok(((row.try_get(0)?, row.try_get(1)?), (row.try_get(2)?, row.try_get(3)?))))
                    .collect::<Result<Receipts, sqlx::Error>>())
            })
            .map_err(query("record_results"))?;
            receipts.extend(rows);
        }
        let mut marks: Vec<(&str, i64, Option<i64>)> = Vec::new();
        for record in sent {
            let key = (record.page_id.clone(), record.psid.clone());
            let Some(&(delivered, read)) = receipts.get(&key) else {
                continue;
            };
            let covers = |watermark: Option<i64>| {
                watermark
                    .filter(|&w| record.sent_ms <= w.saturating_add(SLACK_MS))
                    .map(|w| w.max(record.sent_ms))
            };
            let read = covers(read);
            if let Some(delivered) = covers(delivered).or(read) {
                marks.push((record.job_id.as_str(), delivered, read));
            }
        }
        for chunk in marks.chunks(RESULTS_PER_STATEMENT) {
            let sql = format!(
                "WITH v (job_id, delivered_at_ms, read_at_ms) AS (VALUES {}) \
                 UPDATE deliveries SET delivered_at_ms = v.delivered_at_ms, \
                   read_at_ms = v.read_at_ms \
                 FROM v WHERE deliveries.job_id = v.job_id",
                backend.values(chunk.len(), 3, "")
            );
            with_tx!(&mut self.tx, tx => {
                let mut statement = sqlx::query(&sql);
                for &(job_id, delivered, read) in chunk {
                    statement = statement.bind(job_id).bind(delivered).bind(read);
                }
                statement.execute(&mut **tx).await.map(|done| done.rows_affected())
            })
            .map_err(query("record_results"))?;
        }
        Ok(())
    }
}

/// Raises one watermark column of `receipts` for the (page, PSID, watermark) rows of `values`,
/// never lowering it. No two rows may name the same (page, PSID).
fn receipt_sql(column: &str, values: &str) -> String {
    format!(
        "INSERT INTO receipts (page_id, psid, {column}) VALUES {values} \
         ON CONFLICT (page_id, psid) DO UPDATE SET {column} = CASE \
           WHEN receipts.{column} IS NULL OR excluded.{column} > receipts.{column} \
           THEN excluded.{column} ELSE receipts.{column} END"
    )
}
