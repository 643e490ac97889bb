//! `GET /ledger/{job_id}`: one job's send ledger entry (`ops::ledger::lookup`), the check a
//! worker makes before sending a job that may have gone out already.

use axum::Json;
use axum::extract::{Path, State};

use crate::api::ApiConfig;
use crate::api::error::ApiError;
use crate::ops::ledger::{self, LedgerEntry};

/// The job's result and echo, each `null` when the store has none, and whether that "none" is
/// current (`freshness.rs`): when it is not, the worker waits and asks again.
pub(crate) async fn lookup(
    State(api): State<ApiConfig>,
    Path(job_id): Path<String>,
) -> Result<Json<LedgerEntry>, ApiError> {
    let entry = ledger::lookup(&api.store, &job_id).await?;
    if entry.settled {
        return Ok(Json(entry));
    }
    if !api.freshness.current(&api.broker).await {
        return Ok(Json(LedgerEntry {
            current: false,
            ..entry
        }));
    }
    // Whatever was on its way is in the store now: read again.
    Ok(Json(ledger::lookup(&api.store, &job_id).await?))
}
