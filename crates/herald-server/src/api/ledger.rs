//! `GET /ledger/{job_id}`: one job's send ledger entry (`ops::ledger::lookup`), the check a
//! worker makes before sending a job that may have gone out already; `POST
//! /ledger/{job_id}/claim?holder=H`: the claim it makes just before the Graph call, so only one
//! copy of such a job is sent (`ops::ledger::claim`).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::Deserialize;

use crate::api::ApiConfig;
use crate::api::body;
use crate::api::error::ApiError;
use crate::ops::ledger::{self, Claim, LedgerEntry};

/// Longest holder a claim accepts.
const MAX_HOLDER_BYTES: usize = 128;

#[derive(Deserialize)]
pub(crate) struct ClaimQuery {
    holder: String,
}

/// Claims the job's send for `holder`: `granted` true means send it now.
pub(crate) async fn claim(
    State(api): State<ApiConfig>,
    Path(job_id): Path<String>,
    query: Result<Query<ClaimQuery>, QueryRejection>,
) -> Result<Json<Claim>, ApiError> {
    let ClaimQuery { holder } = body::query(query)?;
    if holder.is_empty() || holder.len() > MAX_HOLDER_BYTES {
        return Err(ApiError::bad_request(format!(
            "holder must be 1 to {MAX_HOLDER_BYTES} bytes"
        )));
    }
    Ok(Json(ledger::claim(&api.store, &job_id, &holder).await?))
}

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
