//! What webhook events say about a person on a page: an inbound action (message, postback,
//! referral, opt-in) creates or updates the identity (page, PSID) and moves `last_inbound_at`
//! forward, and a verified `ref` links it to an external id (never over an import's link, and in
//! the events' time order); a marketing stop or resume sets
//! `opted_out`. Every write is order-insensitive and idempotent (times only move forward; an
//! opt change applies only when newer than the last one), so a webhook delivered twice, or out of
//! order, changes nothing twice. Which events qualify is the ingest's decision, not this file's.

use time::OffsetDateTime;

use crate::batch::with_tx;
use crate::error::query;
use crate::stamp::{now_ms, to_ms};
use crate::users::new_anon_id;
use crate::{Batch, Store, StoreError};

/// A ref moves the link only when the current one is not an import's and is not newer (by
/// the events' own times). `$4` is the ref's external id or NULL, `$5` the event's time.
const INBOUND_SQL: &str = "\
INSERT INTO identities \
  (page_id, psid, anon_id, external_id, first_seen_at_ms, last_inbound_at_ms, opted_out, \
   link_source, linked_at_ms) \
VALUES ($1, $2, $3, $4, $5, $5, FALSE, \
  CASE WHEN $4 IS NULL THEN NULL ELSE 'ref' END, CASE WHEN $4 IS NULL THEN NULL ELSE $5 END) \
ON CONFLICT (page_id, psid) DO UPDATE SET \
  external_id = CASE WHEN {moves} THEN excluded.external_id ELSE identities.external_id END, \
  link_source = CASE WHEN {moves} THEN 'ref' ELSE identities.link_source END, \
  linked_at_ms = CASE WHEN {moves} THEN excluded.linked_at_ms ELSE identities.linked_at_ms END, \
  first_seen_at_ms = CASE WHEN excluded.first_seen_at_ms < identities.first_seen_at_ms \
    THEN excluded.first_seen_at_ms ELSE identities.first_seen_at_ms END, \
  last_inbound_at_ms = CASE WHEN identities.last_inbound_at_ms IS NULL \
      OR excluded.last_inbound_at_ms > identities.last_inbound_at_ms \
    THEN excluded.last_inbound_at_ms ELSE identities.last_inbound_at_ms END \
RETURNING external_id, link_source";

/// When a ref moves an existing identity's link (see `INBOUND_SQL`).
const REF_MOVES_LINK: &str = "excluded.external_id IS NOT NULL \
  AND COALESCE(identities.link_source, 'ref') <> 'import' \
  AND (identities.linked_at_ms IS NULL OR excluded.linked_at_ms >= identities.linked_at_ms)";

/// What a ref did to an identity's link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// No ref came with the action.
    None,
    /// The identity is linked to the ref's external id (now, or already).
    Linked,
    /// An import ties the PSID to another external id; the import stands.
    KeptImport,
    /// A ref of a later event already linked the PSID elsewhere; the later one stands.
    KeptNewer,
}

impl Link {
    /// Bounded metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Linked => "linked",
            Self::KeptImport => "kept_import",
            Self::KeptNewer => "kept_newer",
        }
    }
}

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
    /// stored time and `at`, and, when `ref_external_id` is given (a verified ref: the caller
    /// checks signatures), links the PSID to that external id and creates that user if the
    /// store does not have them. A ref never moves a link an import made, nor one a later
    /// event's ref made: links follow the events' own times, not their arrival.
    pub async fn record_inbound(
        &mut self,
        page_id: &str,
        psid: &str,
        at: OffsetDateTime,
        ref_external_id: Option<&str>,
    ) -> Result<Link, StoreError> {
        let ref_external_id = ref_external_id.map(str::trim).filter(|id| !id.is_empty());
        let at_ms = to_ms(at);
        let empty = sqlx::types::Json(serde_json::Map::new());
        let sql = INBOUND_SQL.replace("{moves}", REF_MOVES_LINK);
        let (linked_to, source): (Option<String>, Option<String>) = with_tx!(&mut self.tx, tx => {
            let row = sqlx::query_as(&sql)
                .bind(page_id)
                .bind(psid)
                .bind(ref_external_id.is_none().then(new_anon_id))
                .bind(ref_external_id)
                .bind(at_ms)
                .fetch_one(&mut **tx)
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
            row
        });
        Ok(match ref_external_id {
            None => Link::None,
            Some(wanted) if linked_to.as_deref() == Some(wanted) => Link::Linked,
            Some(_) if source.as_deref() == Some("import") => Link::KeptImport,
            Some(_) => Link::KeptNewer,
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
