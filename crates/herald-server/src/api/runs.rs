//! Runs: `POST /campaigns/runs` (start a run from a campaign document, in the background),
//! `GET /campaigns/runs/{run_id}` (its status), `POST /campaigns/runs/{run_id}/pause|resume|
//! cancel` and `POST /pages/{page_id}/resume`. Each calls one function of `ops`.

use std::path::PathBuf;

use axum::Json;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;

use crate::api::ApiConfig;
use crate::api::body::{self, media_type};
use crate::api::error::ApiError;
use crate::ops::control::{self, Applied, Command};
use crate::ops::launch::{self, Launched};
use crate::ops::runs::{self, DocumentFormat, StartRun};
use crate::ops::status::{self, RunReport};

/// `POST /campaigns/runs` query parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StartQuery {
    /// A segment file on the server, replacing the document's `segment` source.
    segment: Option<PathBuf>,
    /// Stop at the first malformed row.
    #[serde(default)]
    strict: bool,
    /// Publish nothing: answer 200 with the dry run and the launch check.
    #[serde(default)]
    dry_run: bool,
    /// The page's engaged users for the launch check, instead of the store's count.
    engaged_users: Option<u64>,
    /// A what-if rate (per second) for the dry run's send time.
    rate: Option<u32>,
    /// Start even when the campaign would exceed the page's daily call budget.
    #[serde(default)]
    over_budget: bool,
}

/// Starts a run: 202 with `{run_id, campaign_id, segment}` and a `Location` to its status; with
/// an `Idempotency-Key` already used for this campaign and document, 200 with that run. With
/// `dry_run=true`, 200 with what the run would do and its launch check, publishing nothing; a
/// campaign over its page's daily call budget is refused (422) unless `over_budget=true`.
pub(crate) async fn start(
    State(api): State<ApiConfig>,
    query: Result<Query<StartQuery>, QueryRejection>,
    headers: HeaderMap,
    document: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let query = body::query(query)?;
    let format = document_format(&headers)?;
    let document = body::bytes(document)?;
    let document = String::from_utf8(document.to_vec())
        .map_err(|_| ApiError::bad_request("the campaign document is not valid UTF-8"))?;
    let idempotency_key = idempotency_key(&headers)?;
    let request = StartRun {
        document,
        format,
        segment: query.segment,
        strict: query.strict,
        idempotency_key,
        engaged_users: query.engaged_users,
        over_budget: query.over_budget,
        occurrence: false,
    };
    let segment_dir = api.segment_dir.as_deref();
    if query.dry_run {
        let report = runs::dry_run_report(
            &api.store,
            segment_dir,
            &api.page_rates,
            request,
            query.rate,
        )
        .await?;
        return Ok(Json(report).into_response());
    }
    if query.rate.is_some() {
        return Err(ApiError::bad_request(
            "rate is a what-if for dry_run=true; a run's rate is the campaign's rate_per_sec",
        ));
    }
    let launched = launch::launch(
        &api.store,
        &api.broker,
        &api.runs,
        segment_dir,
        &api.page_rates,
        request,
    )
    .await?;
    let started = match launched {
        Launched::Started(started) => started,
        Launched::Scheduled(schedule) => {
            let location = format!("/campaigns/schedules/{}", schedule.schedule_id);
            return Ok(body::located(StatusCode::ACCEPTED, schedule, &location));
        }
    };
    let location = format!("/campaigns/runs/{}", started.run_id);
    // A repeated start with its key: the run it started, 200 instead of 202.
    let status = if started.existing {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok(body::located(status, started, &location))
}

/// The run's report (the same JSON as `herald campaign status --json`).
pub(crate) async fn status(
    State(api): State<ApiConfig>,
    Path(run_id): Path<String>,
) -> Result<Json<RunReport>, ApiError> {
    Ok(Json(status::status(&api.store, &run_id).await?))
}

/// Pauses the run fleet-wide.
pub(crate) async fn pause(
    State(api): State<ApiConfig>,
    Path(run_id): Path<String>,
) -> Result<Json<Applied>, ApiError> {
    apply(&api, Command::PauseRun(run_id)).await
}

/// Resumes the run fleet-wide.
pub(crate) async fn resume(
    State(api): State<ApiConfig>,
    Path(run_id): Path<String>,
) -> Result<Json<Applied>, ApiError> {
    apply(&api, Command::ResumeRun(run_id)).await
}

/// Cancels the run fleet-wide (final).
pub(crate) async fn cancel(
    State(api): State<ApiConfig>,
    Path(run_id): Path<String>,
) -> Result<Json<Applied>, ApiError> {
    apply(&api, Command::CancelRun(run_id)).await
}

/// Resumes a halted page fleet-wide.
pub(crate) async fn resume_page(
    State(api): State<ApiConfig>,
    Path(page_id): Path<String>,
) -> Result<Json<Applied>, ApiError> {
    apply(&api, Command::ResumePage(page_id)).await
}

async fn apply(api: &ApiConfig, command: Command) -> Result<Json<Applied>, ApiError> {
    Ok(Json(
        control::send(&api.broker, Some(&api.store), command).await?,
    ))
}

/// The campaign document's format from `Content-Type`: JSON (the default) or TOML.
pub(crate) fn document_format(headers: &HeaderMap) -> Result<DocumentFormat, ApiError> {
    match media_type(headers).as_deref() {
        None | Some("application/json") => Ok(DocumentFormat::Json),
        Some("application/toml" | "text/toml" | "text/x-toml") => Ok(DocumentFormat::Toml),
        Some(other) => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Content-Type {other} is not a campaign document: use application/json or \
                 application/toml"
            ),
        )),
    }
}

/// The `Idempotency-Key` header, if given.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    match headers.get("idempotency-key") {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .map(|key| Some(key.to_owned()))
            .map_err(|_| ApiError::bad_request("Idempotency-Key must be visible ASCII")),
    }
}
