//! `send_claims`: which copy of a job that may have been sent already may send it. Two copies
//! of one job can exist (a worker republished it to a retry tier and died before acking the
//! original; a resumed run republished it); both would find neither result nor echo and send.
//! A worker claims the send just before its Graph call; the first holder wins until its claim
//! lapses, and a claim by the same holder (a retried request) is granted again.

use std::time::Duration;

use crate::backend::with_pool;
use crate::error::query;
use crate::stamp::now_ms;
use crate::{Store, StoreError};

impl Store {
    /// Claims the send of `job_id` for `holder` for `lease`: true when the send is now
    /// `holder`'s (nobody held it, the last claim lapsed, or `holder` holds it already).
    pub async fn claim_send(
        &self,
        job_id: &str,
        holder: &str,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let expires = now.saturating_add(herald_core::clock::millis(lease));
        let sql = "INSERT INTO send_claims (job_id, holder, expires_at_ms) VALUES ($1, $2, $3) \
            ON CONFLICT (job_id) DO UPDATE \
            SET holder = excluded.holder, expires_at_ms = excluded.expires_at_ms \
            WHERE send_claims.expires_at_ms < $4 OR send_claims.holder = excluded.holder \
            RETURNING holder";
        let granted: Option<(String,)> = with_pool!(&self.db, pool => {
            sqlx::query_as(sql)
                .bind(job_id)
                .bind(holder)
                .bind(expires)
                .bind(now)
                .fetch_optional(pool)
                .await
                .map_err(query("claim_send"))?
        });
        Ok(granted.is_some())
    }
}
