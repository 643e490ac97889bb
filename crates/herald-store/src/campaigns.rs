//! `stored_campaigns`: campaign documents saved under their id, every version kept. A new
//! version is written only when the document changed; deleting marks the campaign (all its
//! versions stay, for the runs and triggers that name them). Validation is the caller's
//! (herald-server's `ops::campaigns`, the same as `campaign send`).

use crate::backend::with_pool;
use crate::batch::{Batch, with_tx};
use crate::error::query;
use crate::triggers::TriggerEntry;
use crate::{Store, StoreError};

/// One saved version of a campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCampaign {
    pub campaign_id: String,
    /// 1 for the first, then one more per changed document.
    pub version: i64,
    pub document: String,
    /// `toml` or `json`.
    pub format: String,
    pub created_at_ms: i64,
    pub deleted: bool,
}

type Row = (String, i64, String, String, i64, bool);

const COLUMNS: &str = "campaign_id, version, document, format, created_at_ms, deleted";

impl Batch {
    /// Saves `document` as the campaign's next version, unless it equals the latest (then
    /// that version is returned, and a deleted campaign is listed again). The version chosen.
    pub async fn put_campaign(
        &mut self,
        campaign_id: &str,
        document: &str,
        format: &str,
        at_ms: i64,
    ) -> Result<i64, StoreError> {
        let latest_sql = format!(
            "SELECT {COLUMNS} FROM stored_campaigns WHERE campaign_id = $1 \
             ORDER BY version DESC LIMIT 1"
        );
        let latest: Option<Row> = with_tx!(&mut self.tx, tx => {
            sqlx::query_as(&latest_sql).bind(campaign_id).fetch_optional(&mut **tx).await
        })
        .map_err(query("put_campaign"))?;
        if let Some((_, version, text, kind, _, _)) = &latest
            && text == document
            && kind == format
        {
            let sql = "UPDATE stored_campaigns SET deleted = FALSE WHERE campaign_id = $1";
            with_tx!(&mut self.tx, tx => {
                sqlx::query(sql).bind(campaign_id).execute(&mut **tx).await.map(|_| ())
            })
            .map_err(query("put_campaign"))?;
            return Ok(*version);
        }
        let version = latest.map_or(1, |row| row.1 + 1);
        let sql = "INSERT INTO stored_campaigns \
                   (campaign_id, version, document, format, created_at_ms) \
                   VALUES ($1, $2, $3, $4, $5)";
        with_tx!(&mut self.tx, tx => {
            sqlx::query(sql)
                .bind(campaign_id)
                .bind(version)
                .bind(document)
                .bind(format)
                .bind(at_ms)
                .execute(&mut **tx)
                .await
                .map(|_| ())
        })
        .map_err(query("put_campaign"))?;
        let undelete = "UPDATE stored_campaigns SET deleted = FALSE WHERE campaign_id = $1";
        with_tx!(&mut self.tx, tx => {
            sqlx::query(undelete).bind(campaign_id).execute(&mut **tx).await.map(|_| ())
        })
        .map_err(query("put_campaign"))?;
        Ok(version)
    }
}

impl Store {
    /// Saves a campaign document (see `Batch::put_campaign`) and what it waits for when it has
    /// a `[trigger]` (`trigger`'s version is set to the one saved); its version.
    pub async fn put_campaign(
        &self,
        campaign_id: &str,
        document: &str,
        format: &str,
        at_ms: i64,
        trigger: Option<TriggerEntry>,
    ) -> Result<i64, StoreError> {
        let mut batch = self.batch().await?;
        let version = batch
            .put_campaign(campaign_id, document, format, at_ms)
            .await?;
        let trigger = trigger.map(|entry| TriggerEntry { version, ..entry });
        batch.index_trigger(campaign_id, trigger.as_ref()).await?;
        batch.commit().await?;
        Ok(version)
    }

    /// A campaign's `version`, or its latest when `None`; deleted campaigns too (`deleted`
    /// says so).
    pub async fn stored_campaign(
        &self,
        campaign_id: &str,
        version: Option<i64>,
    ) -> Result<Option<StoredCampaign>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM stored_campaigns WHERE campaign_id = $1 \
             AND ($2 IS NULL OR version = $2) ORDER BY version DESC LIMIT 1"
        );
        let row: Option<Row> = with_pool!(&self.db, pool => {
            sqlx::query_as(&sql).bind(campaign_id).bind(version).fetch_optional(pool).await
        })
        .map_err(query("stored_campaign"))?;
        Ok(row.map(stored))
    }

    /// The latest version of every campaign not deleted, by id.
    pub async fn stored_campaigns(&self) -> Result<Vec<StoredCampaign>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM stored_campaigns s WHERE deleted = FALSE AND version = \
             (SELECT MAX(version) FROM stored_campaigns m WHERE m.campaign_id = s.campaign_id) \
             ORDER BY campaign_id"
        );
        let rows: Vec<Row> = with_pool!(&self.db, pool => {
            sqlx::query_as(&sql).fetch_all(pool).await
        })
        .map_err(query("stored_campaigns"))?;
        Ok(rows.into_iter().map(stored).collect())
    }

    /// Marks a campaign deleted; false when there is no such campaign (or it was deleted).
    /// Its trigger is forgotten with it: a deleted campaign fires no more.
    pub async fn delete_campaign(&self, campaign_id: &str) -> Result<bool, StoreError> {
        let sql = "UPDATE stored_campaigns SET deleted = TRUE \
                   WHERE campaign_id = $1 AND deleted = FALSE";
        let mut batch = self.batch().await?;
        let changed = with_tx!(&mut batch.tx, tx => {
            sqlx::query(sql)
                .bind(campaign_id)
                .execute(&mut **tx)
                .await
                .map(|done| done.rows_affected())
        })
        .map_err(query("delete_campaign"))?;
        batch.index_trigger(campaign_id, None).await?;
        batch.commit().await?;
        Ok(changed > 0)
    }
}

fn stored(row: Row) -> StoredCampaign {
    let (campaign_id, version, document, format, created_at_ms, deleted) = row;
    StoredCampaign {
        campaign_id,
        version,
        document,
        format,
        created_at_ms,
        deleted,
    }
}
