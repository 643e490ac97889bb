//! Campaign runs: the document a run was started from, its state (running, paused, cancelled,
//! complete) and the producer's checkpoint (the same fields as its JSON run record: confirmed
//! line, published and skipped counts, malformed rows, complete), so `--resume` and the admin API
//! work from the store. Per-status result counts are not kept here: `run_status` derives them
//! from the delivery records. Who may change a state and when is the caller's decision; this file
//! only refuses transitions out of a final state.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::Row;
use time::OffsetDateTime;

use crate::backend::with_pool;
use crate::error::query;
use crate::run_state::RunState;
use crate::stamp::{count, from_ms, now_ms, to_i64, to_ms};
use crate::{Store, StoreError};

/// A run to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRun {
    /// The run's id.
    pub run_id: String,
    /// The campaign's id.
    pub campaign_id: String,
    /// The campaign document as JSON, kept verbatim.
    pub document: String,
    /// Where the users come from: a file path as given, or `store`.
    pub segment: String,
    /// When the run started.
    pub started_at: OffsetDateTime,
}

/// The producer's checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct RunProgress {
    /// Every row on or before this line (or position) has its job or result confirmed.
    pub confirmed_through_line: u64,
    /// Jobs confirmed so far.
    pub published: u64,
    /// Skipped results confirmed so far, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Rows that could not be read, so far.
    pub malformed: u64,
    /// True once every row is confirmed.
    pub complete: bool,
    /// For a store-sourced run, the audience position of `confirmed_through_line`
    /// (`AudienceCursor` as text); `None` for files, whose position is the line.
    pub cursor: Option<String>,
}

/// A run as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunRecord {
    /// The run's id.
    pub run_id: String,
    /// The campaign's id.
    pub campaign_id: String,
    /// The campaign document as JSON.
    pub document: String,
    /// Where the users come from.
    pub segment: String,
    /// Its state.
    pub state: RunState,
    /// When it started.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// When its state or progress last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// The producer's checkpoint.
    pub progress: RunProgress,
    /// Why its producer stopped before the end, when it did and none has saved progress
    /// since (an API-started run whose producer failed or whose serve stopped).
    pub producer_stopped: Option<String>,
}

const SELECT_RUN: &str = "\
SELECT run_id, campaign_id, document, segment, status, started_at_ms, updated_at_ms, \
       confirmed_through_line, published, skipped, malformed, complete, confirmed_cursor, \
       producer_stopped \
FROM campaign_runs WHERE run_id = $1";

impl Store {
    /// Creates a run in state `running` with an empty checkpoint. Fails with `RunExists` when
    /// the id is taken.
    pub async fn create_run(&self, run: &NewRun) -> Result<(), StoreError> {
        let sql = "INSERT INTO campaign_runs \
              (run_id, campaign_id, document, status, started_at_ms, updated_at_ms, segment) \
            VALUES ($1, $2, $3, 'running', $4, $5, $6) \
            ON CONFLICT (run_id) DO NOTHING";
        let inserted = with_pool!(&self.db, pool => {
            sqlx::query(sql)
                .bind(&run.run_id)
                .bind(&run.campaign_id)
                .bind(&run.document)
                .bind(to_ms(run.started_at))
                .bind(now_ms())
                .bind(&run.segment)
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
        })
        .map_err(query("create_run"))?;
        if inserted == 0 {
            return Err(StoreError::RunExists {
                run_id: run.run_id.clone(),
            });
        }
        Ok(())
    }

    /// Replaces a run's checkpoint (the producer calls it every few seconds); a producer that
    /// saves is running, so a recorded stop is cleared.
    pub async fn save_run_progress(
        &self,
        run_id: &str,
        progress: &RunProgress,
    ) -> Result<(), StoreError> {
        let sql = "UPDATE campaign_runs SET confirmed_through_line = $2, published = $3, \
              skipped = $4, malformed = $5, complete = $6, updated_at_ms = $7, \
              confirmed_cursor = $8, producer_stopped = NULL \
            WHERE run_id = $1";
        let skipped = serde_json::to_string(&progress.skipped).unwrap_or_else(|_| "{}".into());
        let updated = with_pool!(&self.db, pool => {
            sqlx::query(sql)
                .bind(run_id)
                .bind(to_i64(progress.confirmed_through_line))
                .bind(to_i64(progress.published))
                .bind(&skipped)
                .bind(to_i64(progress.malformed))
                .bind(progress.complete)
                .bind(now_ms())
                .bind(progress.cursor.as_deref())
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
        })
        .map_err(query("save_run_progress"))?;
        if updated == 0 {
            return Err(StoreError::UnknownRun {
                run_id: run_id.to_owned(),
            });
        }
        Ok(())
    }

    /// The run, or `None` when the store has no run with that id.
    pub async fn load_run(&self, run_id: &str) -> Result<Option<RunRecord>, StoreError> {
        let raw = with_pool!(&self.db, pool => {
            let row = sqlx::query(SELECT_RUN)
                .bind(run_id)
                .fetch_optional(pool)
                .await
                .map_err(query("load_run"))?;
            row.map(|row| -> Result<RawRun, sqlx::Error> {
                Ok(RawRun {
                    run_id: row.try_get(0)?,
                    campaign_id: row.try_get(1)?,
                    document: row.try_get(2)?,
                    segment: row.try_get(3)?,
                    status: row.try_get(4)?,
                    started_at_ms: row.try_get(5)?,
                    updated_at_ms: row.try_get(6)?,
                    confirmed_through_line: row.try_get(7)?,
                    published: row.try_get(8)?,
                    skipped: row.try_get(9)?,
                    malformed: row.try_get(10)?,
                    complete: row.try_get(11)?,
                    cursor: row.try_get(12)?,
                    producer_stopped: row.try_get(13)?,
                })
            })
            .transpose()
            .map_err(query("load_run"))?
        });
        raw.map(RawRun::into_record).transpose()
    }

    /// Records why the run's producer stopped before the end (`campaign status` shows it until
    /// a producer saves progress again).
    pub async fn record_producer_stop(&self, run_id: &str, reason: &str) -> Result<(), StoreError> {
        let sql = "UPDATE campaign_runs SET producer_stopped = $2, updated_at_ms = $3 \
                   WHERE run_id = $1";
        with_pool!(&self.db, pool => {
            sqlx::query(sql)
                .bind(run_id)
                .bind(reason)
                .bind(now_ms())
                .execute(pool)
                .await
                .map(|_| ())
        })
        .map_err(query("record_producer_stop"))
    }

    /// Takes over an unfinished run to resume it, when its producer stopped (`producer_stopped`
    /// is set) or went silent (no update since `silent_since_ms`): clears the stop and touches
    /// the run in one statement, so of two callers at once only one gets it. Whether this one
    /// did; `false` for a complete run, an unknown one, or one whose producer is still busy.
    pub async fn take_stopped_run(
        &self,
        run_id: &str,
        silent_since_ms: i64,
    ) -> Result<bool, StoreError> {
        let sql = "UPDATE campaign_runs SET producer_stopped = NULL, updated_at_ms = $3 \
                   WHERE run_id = $1 AND NOT complete \
                   AND (producer_stopped IS NOT NULL OR updated_at_ms < $2)";
        let taken = with_pool!(&self.db, pool => {
            sqlx::query(sql)
                .bind(run_id)
                .bind(silent_since_ms)
                .bind(now_ms())
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
        })
        .map_err(query("take_stopped_run"))?;
        Ok(taken == 1)
    }

    /// Moves a run to `state`. Running and paused go back and forth; cancelled and complete
    /// are final (`Transition` error when leaving them); repeating the current state is a no-op.
    pub async fn set_run_status(&self, run_id: &str, state: RunState) -> Result<(), StoreError> {
        let sql = format!(
            "UPDATE campaign_runs SET status = $2, updated_at_ms = $3 \
             WHERE run_id = $1 AND status IN {}",
            state.allowed_from()
        );
        let updated = with_pool!(&self.db, pool => {
            sqlx::query(&sql)
                .bind(run_id)
                .bind(state.as_str())
                .bind(now_ms())
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
        })
        .map_err(query("set_run_status"))?;
        if updated > 0 {
            return Ok(());
        }
        match self.load_run(run_id).await? {
            None => Err(StoreError::UnknownRun {
                run_id: run_id.to_owned(),
            }),
            Some(run) => Err(StoreError::Transition {
                run_id: run_id.to_owned(),
                from: run.state,
                to: state,
            }),
        }
    }
}

/// A `campaign_runs` row as read, before checking its values.
struct RawRun {
    run_id: String,
    campaign_id: String,
    document: String,
    segment: String,
    status: String,
    started_at_ms: i64,
    updated_at_ms: i64,
    confirmed_through_line: i64,
    published: i64,
    skipped: String,
    malformed: i64,
    complete: bool,
    cursor: Option<String>,
    producer_stopped: Option<String>,
}

impl RawRun {
    fn into_record(self) -> Result<RunRecord, StoreError> {
        let state = RunState::parse(&self.status).ok_or_else(|| StoreError::Corrupt {
            what: "campaign_runs.status",
            value: self.status.clone(),
        })?;
        let skipped =
            serde_json::from_str::<BTreeMap<String, u64>>(&self.skipped).map_err(|_| {
                StoreError::Corrupt {
                    what: "campaign_runs.skipped",
                    value: self.skipped.clone(),
                }
            })?;
        Ok(RunRecord {
            run_id: self.run_id,
            campaign_id: self.campaign_id,
            document: self.document,
            segment: self.segment,
            state,
            started_at: from_ms(self.started_at_ms, "campaign_runs.started_at_ms")?,
            updated_at: from_ms(self.updated_at_ms, "campaign_runs.updated_at_ms")?,
            progress: RunProgress {
                confirmed_through_line: count(self.confirmed_through_line),
                published: count(self.published),
                skipped,
                malformed: count(self.malformed),
                complete: self.complete,
                cursor: self.cursor,
            },
            producer_stopped: self.producer_stopped,
        })
    }
}

impl crate::Batch {
    /// Which of `run_ids` the store has a run record for.
    pub async fn known_runs(
        &mut self,
        run_ids: &[&str],
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        if run_ids.is_empty() {
            return Ok(std::collections::HashSet::new());
        }
        let sql = format!(
            "SELECT run_id FROM campaign_runs WHERE run_id IN (VALUES {})",
            self.backend().values(run_ids.len(), 1, "")
        );
        crate::batch::with_tx!(&mut self.tx, tx => {
            let mut statement = sqlx::query_scalar::<_, String>(&sql);
            for run_id in run_ids {
                statement = statement.bind(*run_id);
            }
            statement.fetch_all(&mut **tx).await
        })
        .map(|known| known.into_iter().collect())
        .map_err(query("known_runs"))
    }
}
