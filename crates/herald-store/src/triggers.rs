//! Triggered campaigns in the store: `campaign_triggers` (what each stored campaign with a
//! `[trigger]` waits for, kept by `put_campaign` and `delete_campaign`), `trigger_fires` (one
//! row per campaign and event: the dedupe of events delivered twice and the outbox of their
//! jobs) and `trigger_marks` (each person's last send of a campaign, for `once_per`).
//!
//! A fire's life: recorded `pending` in the same transaction as the event that caused it (the
//! ingest) or right after the event was counted (`/users/track`), due when its campaign's
//! `delay` has passed; once due, claimed by one `herald serve` for a lease (`claim_fires`, the
//! lease lapsing if that serve dies); then `published`,
//! `skipped` (with the reason) or `filtered`, once its job or result is confirmed by the
//! broker (`settle_fires`). A fire claimed more than once may have been published already: the
//! caller marks such a job for the workers to verify. What a fire means (which campaign, which
//! person, when due) is the caller's; this file keeps rows.

use std::collections::BTreeMap;

use crate::backend::{numbered, with_pool};
use crate::batch::{Batch, with_tx};
use crate::error::query;
use crate::stamp::{count, now_ms};
use crate::{Store, StoreError};

/// What a stored campaign waits for (its latest version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerEntry {
    pub campaign_id: String,
    pub version: i64,
    pub page_id: String,
    /// `event`, `postback`, `quick_reply`, `ref` or `keyword`.
    pub kind: String,
    /// The event name, payload or ref; a keyword in lower case.
    pub key: String,
    /// The campaign's `delay`: a fire is due this long after its event.
    pub delay_ms: i64,
}

/// An event that fires a campaign, to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFire {
    pub campaign_id: String,
    /// Names the event for this campaign: an event delivered twice has the same key.
    pub event_key: String,
    pub version: i64,
    pub page_id: String,
    /// Who acted: their external id (`/users/track`) or their PSID on the page (a webhook).
    pub external_id: Option<String>,
    pub psid: Option<String>,
    /// The event's properties as a JSON object, given to Liquid as `trigger`.
    pub properties: Option<String>,
    /// When Herald received the event.
    pub received_at_ms: i64,
    /// When it may be dispatched: `received_at_ms` plus the campaign's delay.
    pub due_at_ms: i64,
}

/// A pending fire, claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedFire {
    pub fire: NewFire,
    /// How often it was claimed, this time included: above 1, its job may be out already.
    pub claims: i64,
    /// When it was first claimed.
    pub first_claimed_at_ms: i64,
}

/// How a fire ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettledFire {
    pub campaign_id: String,
    pub event_key: String,
    /// `published`, `skipped` or `filtered`.
    pub state: &'static str,
    /// Why, for `skipped`.
    pub reason: Option<String>,
    /// The run it counts in, and its job (or skipped result) id, when it has one.
    pub run_id: Option<String>,
    pub job_id: Option<String>,
}

/// A fire about to be published: its job, and the `once_per` check its person must pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedFire {
    pub campaign_id: String,
    pub event_key: String,
    /// Recorded on the fire before publishing, so the job's result finds its fire.
    pub job_id: String,
    pub once_per: Option<OncePer>,
}

/// The `once_per` check of one send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OncePer {
    /// The person (their external id, or anonymous id).
    pub user_key: String,
    /// Their last send must be before this (epoch ms); `None`: they may get it once ever.
    pub since_ms: Option<i64>,
}

/// The pending fires at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PendingFires {
    /// Due and not yet published.
    pub due: u64,
    /// When the longest due of them came due (epoch ms).
    pub due_since_ms: Option<i64>,
    /// Waiting for their campaign's delay.
    pub waiting: u64,
}

/// One day of a triggered campaign: its fires by outcome.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FireDay {
    /// Fires recorded (events that matched).
    pub fired: u64,
    /// Still waiting to be published.
    pub pending: u64,
    /// Jobs published.
    pub published: u64,
    /// Left out by the segment's filters.
    pub filtered: u64,
    /// Skipped, by reason (`once_per`, and the producer's reasons).
    pub skipped: BTreeMap<String, u64>,
}

type FireRow = (
    String,
    String,
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
    i64,
    i64,
    Option<i64>,
);

/// Fires inserted per statement (9 parameters each).
const FIRES_PER_STATEMENT: usize = 200;

const ENTRY_COLUMNS: &str = "campaign_id, version, page_id, kind, trigger_key, delay_ms";

type EntryRow = (String, i64, String, String, String, i64);

impl Batch {
    /// Makes `entry` what `campaign_id` waits for, or (with `None`) says it waits for nothing.
    pub async fn index_trigger(
        &mut self,
        campaign_id: &str,
        entry: Option<&TriggerEntry>,
    ) -> Result<(), StoreError> {
        let delete = "DELETE FROM campaign_triggers WHERE campaign_id = $1";
        with_tx!(&mut self.tx, tx => {
            sqlx::query(delete).bind(campaign_id).execute(&mut **tx).await.map(|_| ())
        })
        .map_err(query("index_trigger"))?;
        let Some(entry) = entry else {
            return Ok(());
        };
        let insert = format!(
            "INSERT INTO campaign_triggers ({ENTRY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
        );
        with_tx!(&mut self.tx, tx => {
            sqlx::query(&insert)
                .bind(&entry.campaign_id)
                .bind(entry.version)
                .bind(&entry.page_id)
                .bind(&entry.kind)
                .bind(&entry.key)
                .bind(entry.delay_ms)
                .execute(&mut **tx)
                .await
                .map(|_| ())
        })
        .map_err(query("index_trigger"))
    }

    /// Every campaign waiting on one of `pages` (a handful per page): the ingest reads them
    /// once per batch of events and matches each event in memory.
    pub async fn triggers_on_pages(
        &mut self,
        pages: &[&str],
    ) -> Result<Vec<TriggerEntry>, StoreError> {
        if pages.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM campaign_triggers WHERE page_id IN ({})",
            numbered(1, pages.len())
        );
        let rows: Vec<EntryRow> = with_tx!(&mut self.tx, tx => {
            let mut statement = sqlx::query_as(&sql);
            for page in pages {
                statement = statement.bind(*page);
            }
            statement.fetch_all(&mut **tx).await
        })
        .map_err(query("triggers_on_pages"))?;
        Ok(rows.into_iter().map(entry).collect())
    }

    /// Records `fires`; each one whose (campaign, event) is recorded already is left as it is.
    /// How many were new.
    pub async fn record_fires(&mut self, fires: &[NewFire]) -> Result<u64, StoreError> {
        let backend = self.backend();
        let mut new = 0;
        for chunk in fires.chunks(FIRES_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO trigger_fires (campaign_id, event_key, version, page_id, \
                 external_id, psid, properties, received_at_ms, due_at_ms, state) VALUES {} \
                 ON CONFLICT (campaign_id, event_key) DO NOTHING",
                backend.values(chunk.len(), 9, ", 'pending'")
            );
            new += with_tx!(&mut self.tx, tx => {
                let mut statement = sqlx::query(&sql);
                for fire in chunk {
                    statement = statement
                        .bind(&fire.campaign_id)
                        .bind(&fire.event_key)
                        .bind(fire.version)
                        .bind(&fire.page_id)
                        .bind(&fire.external_id)
                        .bind(&fire.psid)
                        .bind(&fire.properties)
                        .bind(fire.received_at_ms)
                        .bind(fire.due_at_ms);
                }
                statement.execute(&mut **tx).await.map(|done| done.rows_affected())
            })
            .map_err(query("record_fires"))?;
        }
        Ok(new)
    }
}

impl Batch {
    /// When the fire behind each of `job_ids` (jobs of triggered campaigns) was due: its
    /// event's arrival plus the campaign's delay. (job id, epoch ms); other jobs are left out.
    pub async fn fire_due(&mut self, job_ids: &[&str]) -> Result<Vec<(String, i64)>, StoreError> {
        if job_ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT job_id, due_at_ms FROM trigger_fires WHERE job_id IN ({})",
            numbered(1, job_ids.len())
        );
        with_tx!(&mut self.tx, tx => {
            let mut statement = sqlx::query_as(&sql);
            for id in job_ids {
                statement = statement.bind(*id);
            }
            statement.fetch_all(&mut **tx).await
        })
        .map_err(query("fire_due"))
    }
}

impl Store {
    /// The campaigns (any page) that wait for `kind` with one of `keys`.
    pub async fn triggers_for(
        &self,
        kind: &str,
        keys: &[&str],
    ) -> Result<Vec<TriggerEntry>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }

        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM campaign_triggers WHERE kind = $1 AND trigger_key IN ({})",
            numbered(2, keys.len())
        );
        let rows: Vec<EntryRow> = with_pool!(&self.db, pool => {
            let mut statement = sqlx::query_as(&sql).bind(kind);
            for key in keys {
                statement = statement.bind(*key);
            }
            statement.fetch_all(pool).await
        })
        .map_err(query("triggers_for"))?;
        Ok(rows.into_iter().map(entry).collect())
    }

    /// Records `fires` in one transaction (see `Batch::record_fires`).
    pub async fn record_fires(&self, fires: &[NewFire]) -> Result<u64, StoreError> {
        if fires.is_empty() {
            return Ok(0);
        }
        let mut batch = self.batch().await?;
        let new = batch.record_fires(fires).await?;
        batch.commit().await?;
        Ok(new)
    }

    /// Claims up to `limit` due pending fires nobody holds (or whose holder's lease lapsed)
    /// for `lease_ms`, the longest due first, in one statement (on PostgreSQL, rows another serve is
    /// claiming are skipped, not waited for).
    pub async fn claim_fires(
        &self,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<ClaimedFire>, StoreError> {
        let now = now_ms();
        let skip_locked = match self.backend() {
            crate::Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            crate::Backend::Sqlite => "",
        };
        let free = "state = 'pending' AND due_at_ms <= $1 \
                    AND (claimed_until_ms IS NULL OR claimed_until_ms < $1)";
        // The pick is a CTE so that it is evaluated once: PostgreSQL may run an `IN (SELECT
        // ... LIMIT)` subquery again per row, claiming more than `limit`.
        let sql = format!(
            "WITH picked AS (SELECT campaign_id, event_key FROM trigger_fires WHERE {free} \
               ORDER BY due_at_ms LIMIT $2{skip_locked}) \
             UPDATE trigger_fires SET claims = claims + 1, claimed_until_ms = $3, \
             first_claimed_at_ms = COALESCE(first_claimed_at_ms, $1) \
             WHERE {free} AND (campaign_id, event_key) IN \
               (SELECT campaign_id, event_key FROM picked) \
             RETURNING campaign_id, event_key, version, page_id, external_id, psid, \
             properties, received_at_ms, due_at_ms, claims, first_claimed_at_ms"
        );
        let rows: Vec<FireRow> = with_pool!(&self.db, pool => {
            sqlx::query_as(&sql)
                .bind(now)
                .bind(limit)
                .bind(now.saturating_add(lease_ms))
                .fetch_all(pool)
                .await
        })
        .map_err(query("claim_fires"))?;
        let mut claimed: Vec<ClaimedFire> = rows.into_iter().map(claimed_fire).collect();
        claimed.sort_by_key(|claimed| (claimed.fire.due_at_ms, claimed.fire.received_at_ms));
        Ok(claimed)
    }

    /// Whether `user_key` may get `campaign_id` for the event `event_key`: true (and the event
    /// is remembered as their last send) when they never got it, their last send was before
    /// `since_ms` (`None`: once ever), or that last send was this same event (a retry).
    pub async fn mark_trigger_send(
        &self,
        campaign_id: &str,
        user_key: &str,
        event_key: &str,
        since_ms: Option<i64>,
    ) -> Result<bool, StoreError> {
        let fire = PreparedFire {
            campaign_id: campaign_id.to_owned(),
            event_key: event_key.to_owned(),
            job_id: String::new(),
            once_per: Some(OncePer {
                user_key: user_key.to_owned(),
                since_ms,
            }),
        };
        let granted = self.prepare_fires(std::slice::from_ref(&fire)).await?;
        Ok(granted.first().copied().unwrap_or(false))
    }

    /// For each of `fires`, in order and in one transaction: its `once_per` check (see
    /// `mark_trigger_send`; a later fire for the same person sees an earlier one), then, when
    /// it passed, its job id recorded on the fire. Whether each may be published.
    pub async fn prepare_fires(&self, fires: &[PreparedFire]) -> Result<Vec<bool>, StoreError> {
        if fires.is_empty() {
            return Ok(Vec::new());
        }
        let mark = "INSERT INTO trigger_marks (campaign_id, user_key, event_key, fired_at_ms) \
                    VALUES ($1, $2, $3, $4) ON CONFLICT (campaign_id, user_key) DO UPDATE \
                    SET event_key = excluded.event_key, fired_at_ms = excluded.fired_at_ms \
                    WHERE trigger_marks.event_key = excluded.event_key \
                    OR trigger_marks.fired_at_ms < $5 RETURNING event_key";
        let job = "UPDATE trigger_fires SET job_id = $3 \
                   WHERE campaign_id = $1 AND event_key = $2 AND state = 'pending'";
        let now = now_ms();
        let mut batch = self.batch().await?;
        let mut granted = Vec::with_capacity(fires.len());
        for fire in fires {
            if let Some(once) = &fire.once_per {
                let row: Option<(String,)> = with_tx!(&mut batch.tx, tx => {
                    sqlx::query_as(mark)
                        .bind(&fire.campaign_id)
                        .bind(&once.user_key)
                        .bind(&fire.event_key)
                        .bind(now)
                        .bind(once.since_ms.unwrap_or(i64::MIN))
                        .fetch_optional(&mut **tx)
                        .await
                })
                .map_err(query("prepare_fires"))?;
                if row.is_none() {
                    granted.push(false);
                    continue;
                }
            }
            with_tx!(&mut batch.tx, tx => {
                sqlx::query(job)
                    .bind(&fire.campaign_id)
                    .bind(&fire.event_key)
                    .bind(&fire.job_id)
                    .execute(&mut **tx)
                    .await
                    .map(|_| ())
            })
            .map_err(query("prepare_fires"))?;
            granted.push(true);
        }
        batch.commit().await?;
        Ok(granted)
    }

    /// Records how `fires` ended and adds their jobs and skips to their runs' records, in one
    /// transaction. A fire settled already (a retry) is left alone and counted once.
    pub async fn settle_fires(&self, fires: &[SettledFire]) -> Result<(), StoreError> {
        if fires.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        let mut batch = self.batch().await?;
        let sql = "UPDATE trigger_fires SET state = $3, reason = $4, run_id = $5, job_id = $6, \
                   settled_at_ms = $7, claimed_until_ms = NULL \
                   WHERE campaign_id = $1 AND event_key = $2 AND state = 'pending'";
        let mut runs: BTreeMap<&str, (i64, BTreeMap<String, u64>)> = BTreeMap::new();
        for fire in fires {
            let changed = with_tx!(&mut batch.tx, tx => {
                sqlx::query(sql)
                    .bind(&fire.campaign_id)
                    .bind(&fire.event_key)
                    .bind(fire.state)
                    .bind(&fire.reason)
                    .bind(&fire.run_id)
                    .bind(&fire.job_id)
                    .bind(now)
                    .execute(&mut **tx)
                    .await
                    .map(|done| done.rows_affected())
            })
            .map_err(query("settle_fires"))?;
            let Some(run_id) = fire.run_id.as_deref().filter(|_| changed > 0) else {
                continue;
            };
            let run = runs.entry(run_id).or_default();
            match (fire.state, &fire.reason, &fire.job_id) {
                ("published", _, _) => run.0 += 1,
                ("skipped", Some(reason), Some(_)) => {
                    *run.1.entry(reason.clone()).or_default() += 1;
                }
                _ => {}
            }
        }
        let lock = match self.backend() {
            crate::Backend::Postgres => " FOR UPDATE",
            crate::Backend::Sqlite => "",
        };
        let read = format!("SELECT skipped FROM campaign_runs WHERE run_id = $1{lock}");
        let write = "UPDATE campaign_runs SET published = published + $2, skipped = $3, \
                     updated_at_ms = $4 WHERE run_id = $1";
        for (run_id, (published, skipped)) in runs {
            let before: Option<(String,)> = with_tx!(&mut batch.tx, tx => {
                sqlx::query_as(&read).bind(run_id).fetch_optional(&mut **tx).await
            })
            .map_err(query("settle_fires"))?;
            let mut total: BTreeMap<String, u64> = before
                .and_then(|(text,)| serde_json::from_str(&text).ok())
                .unwrap_or_default();
            for (reason, n) in skipped {
                *total.entry(reason).or_default() += n;
            }
            let total = serde_json::to_string(&total).unwrap_or_else(|_| "{}".into());
            with_tx!(&mut batch.tx, tx => {
                sqlx::query(write)
                    .bind(run_id)
                    .bind(published)
                    .bind(&total)
                    .bind(now)
                    .execute(&mut **tx)
                    .await
                    .map(|_| ())
            })
            .map_err(query("settle_fires"))?;
        }
        batch.commit().await
    }

    /// Forgets settled fires received before `before_ms` (pending ones stay, however old);
    /// how many.
    pub async fn prune_fires(&self, before_ms: i64) -> Result<u64, StoreError> {
        let sql = "DELETE FROM trigger_fires WHERE state <> 'pending' AND received_at_ms < $1";
        with_pool!(&self.db, pool => {
            sqlx::query(sql)
                .bind(before_ms)
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
        })
        .map_err(query("prune_fires"))
    }

    /// The pending fires: how many are due, since when the longest due one is, and how many
    /// still wait for their delay.
    pub async fn pending_fires(&self) -> Result<PendingFires, StoreError> {
        let sql = "SELECT COALESCE(SUM(CASE WHEN due_at_ms <= $1 THEN 1 ELSE 0 END), 0), \
                   MIN(CASE WHEN due_at_ms <= $1 THEN due_at_ms END), COUNT(*) \
                   FROM trigger_fires WHERE state = 'pending'";
        let (due, oldest, all): (i64, Option<i64>, i64) = with_pool!(&self.db, pool => {
            sqlx::query_as(sql).bind(now_ms()).fetch_one(pool).await
        })
        .map_err(query("pending_fires"))?;
        Ok(PendingFires {
            due: count(due),
            due_since_ms: oldest,
            waiting: count(all.saturating_sub(due)),
        })
    }

    /// Which of `campaign_ids` are deleted.
    pub async fn deleted_campaigns(
        &self,
        campaign_ids: &[&str],
    ) -> Result<Vec<String>, StoreError> {
        if campaign_ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT DISTINCT campaign_id FROM stored_campaigns \
             WHERE deleted = TRUE AND campaign_id IN ({})",
            numbered(1, campaign_ids.len())
        );
        let rows: Vec<(String,)> = with_pool!(&self.db, pool => {
            let mut statement = sqlx::query_as(&sql);
            for id in campaign_ids {
                statement = statement.bind(*id);
            }
            statement.fetch_all(pool).await
        })
        .map_err(query("deleted_campaigns"))?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// A campaign's fires received at or after `since_ms`, by UTC day (the day's first
    /// millisecond), oldest first.
    pub async fn fire_days(
        &self,
        campaign_id: &str,
        since_ms: i64,
    ) -> Result<Vec<(i64, FireDay)>, StoreError> {
        let sql = "SELECT received_at_ms - received_at_ms % 86400000, state, reason, COUNT(*) \
                   FROM trigger_fires WHERE campaign_id = $1 AND received_at_ms >= $2 \
                   GROUP BY 1, 2, 3 ORDER BY 1";
        let rows: Vec<(i64, String, Option<String>, i64)> = with_pool!(&self.db, pool => {
            sqlx::query_as(sql).bind(campaign_id).bind(since_ms).fetch_all(pool).await
        })
        .map_err(query("fire_days"))?;
        let mut days: Vec<(i64, FireDay)> = Vec::new();
        for (day, state, reason, n) in rows {
            if days.last().is_none_or(|(last, _)| *last != day) {
                days.push((day, FireDay::default()));
            }
            let Some((_, counts)) = days.last_mut() else {
                continue;
            };
            let n = count(n);
            counts.fired += n;
            match state.as_str() {
                "pending" => counts.pending += n,
                "published" => counts.published += n,
                "filtered" => counts.filtered += n,
                _ => {
                    let reason = reason.unwrap_or_else(|| "unknown".to_owned());
                    *counts.skipped.entry(reason).or_default() += n;
                }
            }
        }
        Ok(days)
    }
}

fn entry(row: EntryRow) -> TriggerEntry {
    let (campaign_id, version, page_id, kind, key, delay_ms) = row;
    TriggerEntry {
        campaign_id,
        version,
        page_id,
        kind,
        key,
        delay_ms,
    }
}

fn claimed_fire(row: FireRow) -> ClaimedFire {
    let (
        campaign_id,
        event_key,
        version,
        page_id,
        external_id,
        psid,
        properties,
        received,
        due,
        claims,
        first,
    ) = row;
    ClaimedFire {
        fire: NewFire {
            campaign_id,
            event_key,
            version,
            page_id,
            external_id,
            psid,
            properties,
            received_at_ms: received,
            due_at_ms: due,
        },
        claims,
        first_claimed_at_ms: first.unwrap_or(received),
    }
}
