//! Frequency caps: `cap_reservations`, the jobs of capped campaigns recorded as they are
//! planned, and the count of what each user of a page received (or has reserved) in a period.
//! Capped campaigns on one page plan one at a time, under a claim on the page (`claims.rs`'s
//! table, key `frequency-cap:<page_id>`), so each sees every reservation of the one before.

use std::collections::HashMap;
use std::time::Duration;

use crate::backend::with_pool;
use crate::batch::{Batch, with_tx};
use crate::error::query;
use crate::{Store, StoreError};

/// Reservations written per statement.
const CHUNK: usize = 200;

impl Batch {
    /// Records that `run_id` planned a job for each of `external_ids` on `page_id` at `at_ms`
    /// (job ids `<run_id>:<external_id>`); a reservation already there stays as it was.
    pub async fn reserve_caps(
        &mut self,
        run_id: &str,
        page_id: &str,
        external_ids: &[String],
        at_ms: i64,
    ) -> Result<(), StoreError> {
        for chunk in external_ids.chunks(CHUNK) {
            let mut sql = String::from(
                "INSERT INTO cap_reservations \
                 (job_id, run_id, page_id, external_id, reserved_at_ms) VALUES ",
            );
            for (index, _) in chunk.iter().enumerate() {
                let base = index * 5;
                if index > 0 {
                    sql.push(',');
                }
                sql.push_str(&format!(
                    "(${}, ${}, ${}, ${}, ${})",
                    base + 1,
                    base + 2,
                    base + 3,
                    base + 4,
                    base + 5
                ));
            }
            sql.push_str(" ON CONFLICT (job_id) DO NOTHING");
            with_tx!(&mut self.tx, tx => {
                let mut statement = sqlx::query(&sql);
                for external_id in chunk {
                    statement = statement
                        .bind(format!("{run_id}:{external_id}"))
                        .bind(run_id)
                        .bind(page_id)
                        .bind(external_id)
                        .bind(at_ms);
                }
                statement.execute(&mut **tx).await.map(|_| ())
            })
            .map_err(query("reserve_caps"))?;
        }
        Ok(())
    }
}

impl Store {
    /// Records reservations in a batch of their own (see `Batch::reserve_caps`).
    pub async fn reserve_caps(
        &self,
        run_id: &str,
        page_id: &str,
        external_ids: &[String],
        at_ms: i64,
    ) -> Result<(), StoreError> {
        let mut batch = self.batch().await?;
        batch
            .reserve_caps(run_id, page_id, external_ids, at_ms)
            .await?;
        batch.commit().await
    }

    /// For each user of `page_id`, the messages of runs other than `except_run` that reached
    /// them or are on their way since `since_ms`: distinct jobs with a `sent` result, plus
    /// reservations whose job has no result yet. Users with none are left out.
    pub async fn cap_counts(
        &self,
        page_id: &str,
        since_ms: i64,
        except_run: &str,
    ) -> Result<HashMap<String, u32>, StoreError> {
        let sql = "SELECT external_id, CAST(COUNT(*) AS BIGINT) FROM ( \
                SELECT job_id, external_id FROM deliveries \
                WHERE page_id = $1 AND status = 'sent' AND finished_at_ms >= $2 \
                AND run_id <> $3 \
              UNION \
                SELECT r.job_id, r.external_id FROM cap_reservations r \
                WHERE r.page_id = $1 AND r.reserved_at_ms >= $2 AND r.run_id <> $3 \
                AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.job_id = r.job_id) \
            ) AS received GROUP BY external_id";
        let rows: Vec<(String, i64)> = with_pool!(&self.db, pool => {
            sqlx::query_as(sql)
                .bind(page_id)
                .bind(since_ms)
                .bind(except_run)
                .fetch_all(pool)
                .await
        })
        .map_err(query("cap_counts"))?;
        Ok(rows
            .into_iter()
            .map(|(id, count)| (id, u32::try_from(count).unwrap_or(u32::MAX)))
            .collect())
    }

    /// What one person (`psid` on `page_id`, known as `external_id`) received since `since_ms`
    /// or has reserved: `sent` results to the PSID plus reservations of theirs whose job has no
    /// result yet. For a single send (a triggered campaign), where `cap_counts` would read the
    /// whole page.
    pub async fn user_cap_count(
        &self,
        page_id: &str,
        psid: &str,
        external_id: &str,
        since_ms: i64,
    ) -> Result<u32, StoreError> {
        let sql = "SELECT CAST(COUNT(*) AS BIGINT) FROM ( \
                SELECT job_id FROM deliveries \
                WHERE page_id = $1 AND psid = $2 AND sent_at_ms >= $3 AND status = 'sent' \
              UNION \
                SELECT r.job_id FROM cap_reservations r \
                WHERE r.page_id = $1 AND r.reserved_at_ms >= $3 AND r.external_id = $4 \
                AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.job_id = r.job_id) \
            ) AS received";
        let count: i64 = with_pool!(&self.db, pool => {
            sqlx::query_scalar(sql)
                .bind(page_id)
                .bind(psid)
                .bind(since_ms)
                .bind(external_id)
                .fetch_one(pool)
                .await
        })
        .map_err(query("user_cap_count"))?;
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }

    /// Records one job's reservation under its own id (a triggered campaign's job id names its
    /// event); a reservation already there stays as it was.
    pub async fn reserve_cap_job(
        &self,
        job_id: &str,
        run_id: &str,
        page_id: &str,
        external_id: &str,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        let sql = "INSERT INTO cap_reservations \
                   (job_id, run_id, page_id, external_id, reserved_at_ms) \
                   VALUES ($1, $2, $3, $4, $5) ON CONFLICT (job_id) DO NOTHING";
        with_pool!(&self.db, pool => {
            sqlx::query(sql)
                .bind(job_id)
                .bind(run_id)
                .bind(page_id)
                .bind(external_id)
                .bind(at_ms)
                .execute(pool)
                .await
                .map(|_| ())
        })
        .map_err(query("reserve_cap_job"))
    }

    /// Takes the frequency-cap claim on `page_id` for `run_id` for `lease` (renew it by
    /// claiming again); false while another run holds it.
    pub async fn claim_cap(
        &self,
        page_id: &str,
        run_id: &str,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        self.claim_send(&cap_key(page_id), run_id, lease).await
    }

    /// Gives the frequency-cap claim on `page_id` back, if `run_id` holds it.
    pub async fn release_cap(&self, page_id: &str, run_id: &str) -> Result<(), StoreError> {
        let sql = "DELETE FROM send_claims WHERE job_id = $1 AND holder = $2";
        with_pool!(&self.db, pool => {
            sqlx::query(sql)
                .bind(cap_key(page_id))
                .bind(run_id)
                .execute(pool)
                .await
                .map(|_| ())
        })
        .map_err(query("release_cap"))
    }
}

fn cap_key(page_id: &str) -> String {
    format!("frequency-cap:{page_id}")
}
