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

/// Keys per `INSERT` statement.
const KEYS_PER_STATEMENT: usize = 1_000;

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
        let fresh = self.seen_events(&[key]).await?;
        Ok(fresh.first().copied().unwrap_or(false))
    }

    /// `seen_event` for many keys with one statement per thousand: for each key, true when it
    /// was new. A key given twice is new only the first time.
    pub async fn seen_events(&mut self, keys: &[&str]) -> Result<Vec<bool>, StoreError> {
        let backend = self.backend();
        let now = now_ms();
        let mut inserted = std::collections::HashSet::new();
        for chunk in keys.chunks(KEYS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO seen_events (key, seen_at_ms) VALUES {} \
                 ON CONFLICT (key) DO NOTHING RETURNING key",
                backend.values(chunk.len(), 2, "")
            );
            let keys: Vec<String> = with_tx!(&mut self.tx, tx => {
                let mut statement = sqlx::query_scalar::<_, String>(&sql);
                for key in chunk {
                    statement = statement.bind(*key).bind(now);
                }
                statement.fetch_all(&mut **tx).await
            })
            .map_err(query("seen_event"))?;
            inserted.extend(keys);
        }
        Ok(keys.iter().map(|key| inserted.remove(*key)).collect())
    }
}
