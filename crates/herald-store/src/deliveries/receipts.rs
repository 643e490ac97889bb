//! Receipts in bulk: `Batch::mark_receipts` applies many delivery and read receipts with a few
//! statements each (the highest watermark per PSID into `receipts`, then one `UPDATE ... FROM
//! (VALUES ...)` for the records each kind covers), instead of three statements per receipt.
//! A webhook flood after a campaign is mostly receipts, so this is the ingest's bulk.
//!
//! Exactness: applying receipts one by one, a record gets the time of the first watermark that
//! covers it. So the receipts of one PSID are applied in rounds, in their order: round N holds
//! each PSID's N-th receipt (almost always there is one round). Receipts commute with every
//! other event (they touch only `receipts` and `deliveries`), so the ingest may apply them after
//! the batch's other events.

use std::collections::HashMap;

use time::OffsetDateTime;

use super::{SLACK_MS, mark_time, receipt_sql};
use crate::batch::with_tx;
use crate::error::query;
use crate::stamp::to_ms;
use crate::{Batch, StoreError};

/// Receipts per statement (at most 3 parameters each).
const PER_STATEMENT: usize = 1_000;

/// One receipt from a webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt<'a> {
    /// The page.
    pub page_id: &'a str,
    /// The person.
    pub psid: &'a str,
    /// Everything sent to the person before this time (see the module doc of `deliveries`
    /// for the slack) was delivered or read.
    pub watermark: OffsetDateTime,
    /// What the receipt says.
    pub kind: ReceiptKind<'a>,
}

/// A delivery receipt (with the message ids it names) or a read receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiptKind<'a> {
    /// Delivered; `mids` are marked delivered too, by message id.
    Delivered {
        /// Message ids the receipt names.
        mids: &'a [String],
    },
    /// Read (which implies delivered).
    Read,
}

impl Batch {
    /// Applies `receipts` in their order (see the module doc) and returns how many delivery
    /// records changed. A repeated receipt changes nothing.
    pub async fn mark_receipts(&mut self, receipts: &[Receipt<'_>]) -> Result<u64, StoreError> {
        // Round of each receipt: how many receipts of the same kind and PSID came before it.
        let mut seen: HashMap<(bool, &str, &str), usize> = HashMap::new();
        let mut rounds: Vec<Vec<&Receipt<'_>>> = Vec::new();
        for receipt in receipts {
            let read = matches!(receipt.kind, ReceiptKind::Read);
            let n = seen
                .entry((read, receipt.page_id, receipt.psid))
                .and_modify(|n| *n += 1)
                .or_insert(0);
            if rounds.len() <= *n {
                rounds.push(Vec::new());
            }
            rounds[*n].push(receipt);
        }
        let mut changed = 0;
        for round in rounds {
            let (read, delivered): (Vec<&Receipt<'_>>, Vec<&Receipt<'_>>) = round
                .into_iter()
                .partition(|receipt| matches!(receipt.kind, ReceiptKind::Read));
            self.watermarks("delivered_watermark_ms", &delivered)
                .await?;
            self.watermarks("read_watermark_ms", &read).await?;
            changed += self.mark_by_watermark(false, &delivered).await?;
            changed += self.mark_by_mids(&delivered).await?;
            changed += self.mark_by_watermark(true, &read).await?;
        }
        Ok(changed)
    }

    /// Raises one watermark column of `receipts` for each (page, PSID) of `round`, never
    /// lowering it. A round holds one receipt per PSID, so no row is touched twice; rows are
    /// written in key order, the order the results consumer locks them in (no deadlock).
    async fn watermarks(&mut self, column: &str, round: &[&Receipt<'_>]) -> Result<(), StoreError> {
        let backend = self.backend();
        let mut round = round.to_vec();
        round.sort_unstable_by_key(|receipt| (receipt.page_id, receipt.psid));
        for chunk in round.chunks(PER_STATEMENT) {
            let sql = receipt_sql(column, &backend.values(chunk.len(), 3, ""));
            self.execute_per_receipt(&sql, chunk).await?;
        }
        Ok(())
    }

    /// Runs `sql` with (page, PSID, watermark) bound for each receipt of `chunk`, in order;
    /// returns the rows it changed.
    async fn execute_per_receipt(
        &mut self,
        sql: &str,
        chunk: &[&Receipt<'_>],
    ) -> Result<u64, StoreError> {
        with_tx!(&mut self.tx, tx => {
            let mut statement = sqlx::query(sql);
            for receipt in chunk {
                statement = statement
                    .bind(receipt.page_id)
                    .bind(receipt.psid)
                    .bind(to_ms(receipt.watermark));
            }
            statement.execute(&mut **tx).await.map(|done| done.rows_affected())
        })
        .map_err(query("mark_receipts"))
    }

    /// Marks the `sent` records each receipt's watermark covers (with the slack) that are not
    /// marked yet: `delivered_at`, or for reads `read_at` (and `delivered_at` if missing).
    async fn mark_by_watermark(
        &mut self,
        read: bool,
        round: &[&Receipt<'_>],
    ) -> Result<u64, StoreError> {
        let mut changed = 0;
        let backend = self.backend();
        let at = mark_time("v.w");
        let set = if read {
            format!(
                "read_at_ms = {at}, delivered_at_ms = COALESCE(deliveries.delivered_at_ms, {at})"
            )
        } else {
            format!("delivered_at_ms = {at}")
        };
        let unmarked = if read {
            "read_at_ms"
        } else {
            "delivered_at_ms"
        };
        for chunk in round.chunks(PER_STATEMENT) {
            let sql = format!(
                "WITH v (page_id, psid, w) AS (VALUES {}) \
                 UPDATE deliveries SET {set} FROM v \
                 WHERE deliveries.page_id = v.page_id AND deliveries.psid = v.psid \
                   AND deliveries.sent_at_ms IS NOT NULL \
                   AND deliveries.sent_at_ms <= v.w + {SLACK_MS} \
                   AND deliveries.{unmarked} IS NULL",
                backend.values(chunk.len(), 3, "")
            );
            changed += self.execute_per_receipt(&sql, chunk).await?;
        }
        Ok(changed)
    }

    /// Marks delivered the `sent` records whose message ids the receipts name. By message id
    /// alone (Graph's ids are unique across pages): it also finds records whose PSID was not
    /// known, and it keeps SQLite's planner on the message_id index.
    async fn mark_by_mids(&mut self, round: &[&Receipt<'_>]) -> Result<u64, StoreError> {
        let mut changed = 0;
        let backend = self.backend();
        // A message id named twice in a round keeps its first (earliest-applied) watermark.
        let mut mids: Vec<(&str, i64)> = Vec::new();
        let mut named = std::collections::HashSet::new();
        for receipt in round {
            if let ReceiptKind::Delivered { mids: list } = &receipt.kind {
                for mid in *list {
                    if named.insert(mid.as_str()) {
                        mids.push((mid.as_str(), to_ms(receipt.watermark)));
                    }
                }
            }
        }
        let at = mark_time("v.w");
        for chunk in mids.chunks(PER_STATEMENT) {
            let sql = format!(
                "WITH v (mid, w) AS (VALUES {}) \
                 UPDATE deliveries SET delivered_at_ms = {at} FROM v \
                 WHERE deliveries.message_id = v.mid AND deliveries.sent_at_ms IS NOT NULL \
                   AND deliveries.delivered_at_ms IS NULL",
                backend.values(chunk.len(), 2, "")
            );
            changed += with_tx!(&mut self.tx, tx => {
                let mut statement = sqlx::query(&sql);
                for (mid, watermark) in chunk {
                    statement = statement.bind(*mid).bind(*watermark);
                }
                statement.execute(&mut **tx).await.map(|done| done.rows_affected())
            })
            .map_err(query("mark_receipts"))?;
        }
        Ok(changed)
    }
}
