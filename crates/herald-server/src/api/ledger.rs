//! `GET /ledger/{job_id}`: one job's send ledger entry (`ops::ledger::lookup`), the check a
//! worker makes before sending a job that may have gone out already.

use axum::Json;
use axum::extract::{Path, State};

use crate::api::ApiConfig;
use crate::api::error::ApiError;
use crate::ops::ledger::{self, LedgerEntry};

/// The job's result and echo, each `null` when the store has none.
pub(crate) async fn lookup(
    State(api): State<ApiConfig>,
    Path(job_id): Path<String>,
) -> Result<Json<LedgerEntry>, ApiError> {
    Ok(Json(ledger::lookup(&api.store, &job_id).await?))
}
