//! The run record that makes `herald campaign send --resume RUN_ID` continue with no gap, kept
//! in the store (`campaign_runs`): the run id, the campaign document, the segment, and the
//! position of the last row such that every row up to it is confirmed by the broker (a line for
//! files, a line and an audience cursor for the store). Each save is one `UPDATE`, so a crash
//! leaves the previous record or the new one, never half of one.

use herald_core::campaign::Campaign;
use herald_store::{AudienceCursor, NewRun, RunProgress, RunState, Store, StoreError};
use time::OffsetDateTime;

use crate::spec::ProducerError;

/// A run's record as the producer advances it.
pub(crate) struct Checkpoint {
    store: Store,
    pub(crate) run_id: String,
    pub(crate) progress: RunProgress,
}

impl Checkpoint {
    /// Creates the record of a new run in state `running`.
    pub(crate) async fn create(
        store: Store,
        campaign: &Campaign,
        segment: String,
    ) -> Result<Self, ProducerError> {
        let run = NewRun {
            run_id: new_run_id(),
            campaign_id: campaign.id().to_owned(),
            document: campaign.to_json().to_string(),
            segment,
            started_at: OffsetDateTime::now_utc(),
        };
        store.create_run(&run).await?;
        Ok(Self {
            store,
            run_id: run.run_id,
            progress: RunProgress::default(),
        })
    }

    /// Loads the run to resume; refused when it belongs to another campaign or was cancelled.
    pub(crate) async fn resume(
        store: Store,
        campaign: &Campaign,
        run_id: &str,
    ) -> Result<Self, ProducerError> {
        let record = store
            .load_run(run_id)
            .await?
            .ok_or_else(|| ProducerError::UnknownRun {
                run_id: run_id.to_owned(),
            })?;
        if record.campaign_id != campaign.id() {
            return Err(ProducerError::WrongCampaign {
                run_id: run_id.to_owned(),
                expected: record.campaign_id,
                found: campaign.id().to_owned(),
            });
        }
        if record.state == RunState::Cancelled {
            return Err(ProducerError::Cancelled {
                run_id: run_id.to_owned(),
            });
        }
        Ok(Self {
            store,
            run_id: record.run_id,
            progress: record.progress,
        })
    }

    /// Writes the progress as it is now.
    pub(crate) async fn save(&self) -> Result<(), StoreError> {
        self.store
            .save_run_progress(&self.run_id, &self.progress)
            .await
    }

    /// Where a store-sourced run resumes; `None` from the start.
    pub(crate) fn cursor(&self) -> Result<Option<AudienceCursor>, ProducerError> {
        match &self.progress.cursor {
            None => Ok(None),
            Some(text) => AudienceCursor::parse(text).map(Some).ok_or_else(|| {
                ProducerError::Store(StoreError::Corrupt {
                    what: "campaign_runs.confirmed_cursor",
                    value: text.clone(),
                })
            }),
        }
    }
}

/// `r<yyyymmddhhmmss>-<6 hex>`: sortable by start time, unique without coordination.
fn new_run_id() -> String {
    herald_core::id::time_id('r')
}
