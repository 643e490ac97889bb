//! What webhook events say about a person on a page: an inbound action (message, postback,
//! referral, opt-in) creates or updates the identity (page, PSID) and moves `last_inbound_at`
//! forward, and a `ref` / `user_ref` links it to an external id; a marketing stop or resume sets
//! `opted_out`. Every write is order-insensitive and idempotent (times only move forward; an
//! opt change applies only when newer than the last one), so a webhook delivered twice, or out of
//! order, changes nothing twice. Which events qualify is the ingest's decision, not this file's.

use time::OffsetDateTime;

use crate::batch::with_tx;
use crate::error::query;
use crate::stamp::{now_ms, to_ms};
use crate::users::new_anon_id;
use crate::{Batch, Store, StoreError};

const INBOUND_SQL: &str = "\
INSERT INTO identities \
  (page_id, psid, anon_id, external_id, first_seen_at_ms, last_inbound_at_ms, opted_out) \
VALUES ($1, $2, $3, $4, $5, $5, FALSE) \
ON CONFLICT (page_id, psid) DO UPDATE SET \
  external_id = COALESCE(excluded.external_id, identities.external_id), \
  first_seen_at_ms = CASE WHEN excluded.first_seen_at_ms < identities.first_seen_at_ms \
    THEN excluded.first_seen_at_ms ELSE identities.first_seen_at_ms END, \
  last_inbound_at_ms = CASE WHEN identities.last_inbound_at_ms IS NULL \
      OR excluded.last_inbound_at_ms > identities.last_inbound_at_ms \
    THEN excluded.last_inbound_at_ms ELSE identities.last_inbound_at_ms END";

/// A linked external id becomes a user (with no attributes yet) so that it is streamed.
const ENSURE_USER_SQL: &str = "\
INSERT INTO users (external_id, attributes, created_at_ms, updated_at_ms) \
VALUES ($1, $2, $3, $3) \
ON CONFLICT (external_id) DO NOTHING";

/// Opt changes are ordered by their time: an older or equal one is ignored.
const OPT_SQL: &str = "\
INSERT INTO identities \
  (page_id, psid, anon_id, external_id, first_seen_at_ms, last_inbound_at_ms, \
   opted_out, opted_out_at_ms, opt_changed_at_ms) \
VALUES ($1, $2, $3, NULL, $4, NULL, $5, $6, $4) \
ON CONFLICT (page_id, psid) DO UPDATE SET \
  opted_out = excluded.opted_out, \
  opted_out_at_ms = excluded.opted_out_at_ms, \
  opt_changed_at_ms = excluded.opt_changed_at_ms, \
  first_seen_at_ms = CASE WHEN excluded.first_seen_at_ms < identities.first_seen_at_ms \
    THEN excluded.first_seen_at_ms ELSE identities.first_seen_at_ms END \
WHERE identities.opt_changed_at_ms IS NULL \
   OR identities.opt_changed_at_ms < excluded.opt_changed_at_ms";

impl Store {
    /// `Batch::record_inbound` in a transaction of its own.
    pub async fn record_inbound(
        &self,
        page_id: &str,
        psid: &str,
        at: OffsetDateTime,
        ref_external_id: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut batch = self.batch().await?;
        batch
            .record_inbound(page_id, psid, at, ref_external_id)
            .await?;
        batch.commit().await
    }

    /// `Batch::set_opt_out` in a transaction of its own.
    pub async fn set_opt_out(
        &self,
        page_id: &str,
        psid: &str,
        opted_out: bool,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut batch = self.batch().await?;
        let applied = batch.set_opt_out(page_id, psid, opted_out, at).await?;
        batch.commit().await?;
        Ok(applied)
    }
}

impl Batch {
    /// Records an inbound action of `psid` on `page_id` at `at`: creates the identity if new
    /// (`first_seen_at` = the earliest action seen), sets `last_inbound_at` to the later of the
    /// stored time and `at`, and, when `ref_external_id` is given, links the PSID to that
    /// external id (a later ref relinks; no ref keeps the current link) and creates that user if
    /// the store does not have them.
    pub async fn record_inbound(
        &mut self,
        page_id: &str,
        psid: &str,
        at: OffsetDateTime,
        ref_external_id: Option<&str>,
    ) -> Result<(), StoreError> {
        let ref_external_id = ref_external_id.map(str::trim).filter(|id| !id.is_empty());
        let at_ms = to_ms(at);
        let empty = sqlx::types::Json(serde_json::Map::new());
        with_tx!(&mut self.tx, tx => {
            sqlx::query(INBOUND_SQL)
                .bind(page_id)
                .bind(psid)
                .bind(ref_external_id.is_none().then(new_anon_id))
                .bind(ref_external_id)
                .bind(at_ms)
                .execute(&mut **tx)
                .await
                .map_err(query("record_inbound"))?;
            if let Some(external_id) = ref_external_id {
                sqlx::query(ENSURE_USER_SQL)
                    .bind(external_id)
                    .bind(&empty)
                    .bind(now_ms())
                    .execute(&mut **tx)
                    .await
                    .map_err(query("record_inbound"))?;
            }
            Ok(())
        })
    }

    /// Records that `psid` stopped (`opted_out = true`) or resumed (`false`) `page_id`'s
    /// marketing messages at `at`. Returns whether it was applied: false when the store already
    /// holds an opt change at `at` or later (a duplicate, or an older event arriving late).
    /// Does not touch `last_inbound_at`: opting in does not open the messaging window.
    pub async fn set_opt_out(
        &mut self,
        page_id: &str,
        psid: &str,
        opted_out: bool,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let at_ms = to_ms(at);
        let result = with_tx!(&mut self.tx, tx => {
            sqlx::query(OPT_SQL)
                .bind(page_id)
                .bind(psid)
                .bind(new_anon_id())
                .bind(at_ms)
                .bind(opted_out)
                .bind(opted_out.then_some(at_ms))
                .execute(&mut **tx)
                .await
                .map(|done| done.rows_affected())
        });
        Ok(result.map_err(query("set_opt_out"))? > 0)
    }
}
