//! Idempotency keys of run starts (`run_starts`): a scheduler that retries a start (after a
//! timeout, say) with the same key gets the run the first attempt started instead of a second
//! run that sends to everyone again. A key is claimed before the run is created (atomically: of
//! two concurrent claims one wins), bound to the run once it exists, and released if creating
//! the run failed, so that a retry may try again.

use time::OffsetDateTime;

use crate::backend::with_pool;
use crate::error::query;
use crate::stamp::to_ms;
use crate::{Store, StoreError};

/// What claiming an idempotency key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunStart {
    /// The key is new (or expired): this caller creates the run, then binds or releases it.
    Claimed,
    /// The key started this run, with the same document.
    Existing {
        /// The run it started.
        run_id: String,
    },
    /// Another request holds the key and has not created its run yet.
    Pending,
    /// The key was used with a different document.
    Different,
}

impl Store {
    /// Claims `key` for a start of `campaign_id` with a document identified by `fingerprint`.
    /// A key claimed before `expired_before` is forgotten first, and so is one claimed before
    /// `abandoned_before` that never got its run (the process creating it died).
    pub async fn claim_run_start(
        &self,
        campaign_id: &str,
        key: &str,
        fingerprint: &str,
        now: OffsetDateTime,
        (expired_before, abandoned_before): (OffsetDateTime, OffsetDateTime),
    ) -> Result<RunStart, StoreError> {
        let forget = "DELETE FROM run_starts \
            WHERE campaign_id = $1 AND idempotency_key = $2 \
              AND (created_at_ms < $3 OR (run_id IS NULL AND created_at_ms < $4))";
        let claim = "INSERT INTO run_starts \
              (campaign_id, idempotency_key, fingerprint, run_id, created_at_ms) \
            VALUES ($1, $2, $3, NULL, $4) ON CONFLICT (campaign_id, idempotency_key) DO NOTHING";
        let read = "SELECT fingerprint, run_id FROM run_starts \
            WHERE campaign_id = $1 AND idempotency_key = $2";
        let found: Option<(String, Option<String>)> = with_pool!(&self.db, pool => {
            sqlx::query(forget)
                .bind(campaign_id)
                .bind(key)
                .bind(to_ms(expired_before))
                .bind(to_ms(abandoned_before))
                .execute(pool)
                .await
                .map_err(query("claim_run_start"))?;
            let claimed = sqlx::query(claim)
                .bind(campaign_id)
                .bind(key)
                .bind(fingerprint)
                .bind(to_ms(now))
                .execute(pool)
                .await
                .map_err(query("claim_run_start"))?
                .rows_affected();
            if claimed == 1 {
                None
            } else {
                sqlx::query_as(read)
                    .bind(campaign_id)
                    .bind(key)
                    .fetch_optional(pool)
                    .await
                    .map_err(query("claim_run_start"))?
            }
        });
        Ok(match found {
            None => RunStart::Claimed,
            Some((theirs, _)) if theirs != fingerprint => RunStart::Different,
            Some((_, Some(run_id))) => RunStart::Existing { run_id },
            Some((_, None)) => RunStart::Pending,
        })
    }

    /// Records the run a claimed key started.
    pub async fn bind_run_start(
        &self,
        campaign_id: &str,
        key: &str,
        run_id: &str,
    ) -> Result<(), StoreError> {
        let sql = "UPDATE run_starts SET run_id = $3 \
            WHERE campaign_id = $1 AND idempotency_key = $2";
        with_pool!(&self.db, pool => {
            sqlx::query(sql)
                .bind(campaign_id)
                .bind(key)
                .bind(run_id)
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
        })
        .map_err(query("bind_run_start"))?;
        Ok(())
    }

    /// Gives up a claimed key whose run was not created, so a retry may claim it again.
    pub async fn release_run_start(&self, campaign_id: &str, key: &str) -> Result<(), StoreError> {
        let sql = "DELETE FROM run_starts \
            WHERE campaign_id = $1 AND idempotency_key = $2 AND run_id IS NULL";
        with_pool!(&self.db, pool => {
            sqlx::query(sql)
                .bind(campaign_id)
                .bind(key)
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
        })
        .map_err(query("release_run_start"))?;
        Ok(())
    }
}
