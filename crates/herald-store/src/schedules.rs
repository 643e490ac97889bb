//! `schedules`: campaigns that start later (`send_at`) or repeatedly (`cron`), kept for
//! `herald serve` to start when due, and `schedule_runs`, one row per occurrence started. The
//! occurrence row is inserted before the run starts, and its primary key is the exactly-once:
//! of several serve processes that see an occurrence due, only the one whose insert went in
//! starts it. Computing the next occurrence is the caller's (herald-core's `Schedule`).

use crate::backend::with_pool;
use crate::batch::{Batch, with_tx};
use crate::error::query;
use crate::{Store, StoreError};

/// A stored schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleRecord {
    pub schedule_id: String,
    pub campaign_id: String,
    /// The campaign document's text.
    pub document: String,
    /// `toml` or `json`.
    pub format: String,
    /// A segment file replacing the document's segment source.
    pub segment: Option<String>,
    pub strict: bool,
    /// `scheduled`, `done` or `cancelled`.
    pub state: String,
    /// The next occurrence (epoch ms); `None` once there is none.
    pub next_at_ms: Option<i64>,
    pub created_at_ms: i64,
    /// The runs started so far, oldest first: (occurrence ms, run id once known).
    pub runs: Vec<(i64, Option<String>)>,
}

type Row = (
    String,
    String,
    String,
    String,
    Option<String>,
    bool,
    String,
    Option<i64>,
    i64,
);

const COLUMNS: &str = "schedule_id, campaign_id, document, format, segment, strict, state, \
                       next_at_ms, created_at_ms";

impl Batch {
    /// Stores a new schedule whose first occurrence is `next_at_ms`.
    pub async fn create_schedule(&mut self, record: &ScheduleRecord) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO schedules ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        );
        with_tx!(&mut self.tx, tx => {
            sqlx::query(&sql)
                .bind(&record.schedule_id)
                .bind(&record.campaign_id)
                .bind(&record.document)
                .bind(&record.format)
                .bind(&record.segment)
                .bind(record.strict)
                .bind(&record.state)
                .bind(record.next_at_ms)
                .bind(record.created_at_ms)
                .execute(&mut **tx)
                .await
                .map(|_| ())
        })
        .map_err(query("create_schedule"))
    }
}

impl Store {
    /// Stores a new schedule (see `Batch::create_schedule`).
    pub async fn create_schedule(&self, record: &ScheduleRecord) -> Result<(), StoreError> {
        let mut batch = self.batch().await?;
        batch.create_schedule(record).await?;
        batch.commit().await
    }

    /// One schedule with its runs, if it exists.
    pub async fn schedule(&self, schedule_id: &str) -> Result<Option<ScheduleRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM schedules WHERE schedule_id = $1");
        let row: Option<Row> = with_pool!(&self.db, pool => {
            sqlx::query_as(&sql).bind(schedule_id).fetch_optional(pool).await
        })
        .map_err(query("schedule"))?;
        match row {
            None => Ok(None),
            Some(row) => Ok(Some(self.with_runs(record(row)).await?)),
        }
    }

    /// Every schedule, newest first, with its runs.
    pub async fn schedules(&self) -> Result<Vec<ScheduleRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM schedules ORDER BY created_at_ms DESC");
        let rows: Vec<Row> = with_pool!(&self.db, pool => {
            sqlx::query_as(&sql).fetch_all(pool).await
        })
        .map_err(query("schedules"))?;
        let mut records = Vec::with_capacity(rows.len());
        for row in rows {
            records.push(self.with_runs(record(row)).await?);
        }
        Ok(records)
    }

    /// Schedules whose next occurrence is at or before `now_ms`.
    pub async fn due_schedules(&self, now_ms: i64) -> Result<Vec<ScheduleRecord>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM schedules WHERE next_at_ms IS NOT NULL AND next_at_ms <= $1 \
             AND state = 'scheduled' ORDER BY next_at_ms"
        );
        let rows: Vec<Row> = with_pool!(&self.db, pool => {
            sqlx::query_as(&sql).bind(now_ms).fetch_all(pool).await
        })
        .map_err(query("due_schedules"))?;
        Ok(rows.into_iter().map(record).collect())
    }

    /// Claims the occurrence `occurrence_ms` of `schedule_id` for starting: true for exactly one
    /// caller per occurrence, however many ask.
    pub async fn claim_occurrence(
        &self,
        schedule_id: &str,
        occurrence_ms: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let sql = "INSERT INTO schedule_runs (schedule_id, occurrence_ms, started_at_ms) \
                   VALUES ($1, $2, $3) ON CONFLICT (schedule_id, occurrence_ms) DO NOTHING";
        let inserted = with_pool!(&self.db, pool => {
            sqlx::query(sql)
                .bind(schedule_id)
                .bind(occurrence_ms)
                .bind(now_ms)
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
        })
        .map_err(query("claim_occurrence"))?;
        Ok(inserted == 1)
    }

    /// Records the run an occurrence started.
    pub async fn occurrence_started(
        &self,
        schedule_id: &str,
        occurrence_ms: i64,
        run_id: &str,
    ) -> Result<(), StoreError> {
        let sql = "UPDATE schedule_runs SET run_id = $3 \
                   WHERE schedule_id = $1 AND occurrence_ms = $2";
        with_pool!(&self.db, pool => {
            sqlx::query(sql)
                .bind(schedule_id)
                .bind(occurrence_ms)
                .bind(run_id)
                .execute(pool)
                .await
                .map(|_| ())
        })
        .map_err(query("occurrence_started"))
    }

    /// Moves a schedule from the occurrence `from_ms` to `next_ms` (`None`: done), unless
    /// someone moved it already or it was cancelled.
    pub async fn advance_schedule(
        &self,
        schedule_id: &str,
        from_ms: i64,
        next_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        let sql = "UPDATE schedules SET next_at_ms = $3, \
                   state = CASE WHEN $3 IS NULL THEN 'done' ELSE state END \
                   WHERE schedule_id = $1 AND next_at_ms = $2 AND state = 'scheduled'";
        with_pool!(&self.db, pool => {
            sqlx::query(sql)
                .bind(schedule_id)
                .bind(from_ms)
                .bind(next_ms)
                .execute(pool)
                .await
                .map(|_| ())
        })
        .map_err(query("advance_schedule"))
    }

    /// Cancels a schedule's future occurrences: true when it was scheduled, false when it was
    /// already done or cancelled. Runs it started are not touched.
    pub async fn cancel_schedule(&self, schedule_id: &str) -> Result<bool, StoreError> {
        let sql = "UPDATE schedules SET state = 'cancelled', next_at_ms = NULL \
                   WHERE schedule_id = $1 AND state = 'scheduled'";
        let changed = with_pool!(&self.db, pool => {
            sqlx::query(sql)
                .bind(schedule_id)
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
        })
        .map_err(query("cancel_schedule"))?;
        Ok(changed == 1)
    }

    async fn with_runs(&self, mut record: ScheduleRecord) -> Result<ScheduleRecord, StoreError> {
        let sql = "SELECT occurrence_ms, run_id FROM schedule_runs WHERE schedule_id = $1 \
                   ORDER BY occurrence_ms";
        record.runs = with_pool!(&self.db, pool => {
            sqlx::query_as(sql).bind(&record.schedule_id).fetch_all(pool).await
        })
        .map_err(query("schedule_runs"))?;
        Ok(record)
    }
}

fn record(row: Row) -> ScheduleRecord {
    let (schedule_id, campaign_id, document, format, segment, strict, state, next_at_ms, created) =
        row;
    ScheduleRecord {
        schedule_id,
        campaign_id,
        document,
        format,
        segment,
        strict,
        state,
        next_at_ms,
        created_at_ms: created,
        runs: Vec::new(),
    }
}
