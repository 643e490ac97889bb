//! Webhook dedupe: Meta delivers at least once, so the ingest asks `seen_event(key)` before
//! applying an event and skips it when the key was seen. What the key is (a `mid`, or sender and
//! watermark) is the ingest's choice; this file only remembers keys, and forgets old ones on
//! request.

use time::OffsetDateTime;

use crate::backend::with_pool;
use crate::batch::with_tx;
use crate::error::query;
use crate::stamp::{now_ms, to_ms};
use crate::{Batch, Store, StoreError};

impl Store {
    /// Remembers `key`; true the first time it is seen, false on every later call (also
    /// across processes: the insert is atomic in the database).
    pub async fn seen_event(&self, key: &str) -> Result<bool, StoreError> {
        let mut batch = self.batch().await?;
        let fresh = batch.seen_event(key).await?;
        batch.commit().await?;
        Ok(fresh)
    }

    /// Forgets keys first seen before `before` (Meta stops retrying long before a week is out)
    /// and returns how many.
    pub async fn prune_seen_events(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        let sql = "DELETE FROM seen_events WHERE seen_at_ms < $1";
        with_pool!(&self.db, pool => {
            sqlx::query(sql)
                .bind(to_ms(before))
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
        })
        .map_err(query("prune_seen_events"))
    }
}

impl Batch {
    /// `Store::seen_event` inside the batch: the key is remembered only if the batch commits,
    /// together with the writes it guards.
    pub async fn seen_event(&mut self, key: &str) -> Result<bool, StoreError> {
        let sql = "INSERT INTO seen_events (key, seen_at_ms) VALUES ($1, $2) \
                   ON CONFLICT (key) DO NOTHING";
        let inserted = with_tx!(&mut self.tx, tx => {
            sqlx::query(sql)
                .bind(key)
                .bind(now_ms())
                .execute(&mut **tx)
                .await
                .map(|done| done.rows_affected())
        })
        .map_err(query("seen_event"))?;
        Ok(inserted == 1)
    }
}
