//! Schedules: `GET /campaigns/schedules`, `GET /campaigns/schedules/{schedule_id}` and `POST
//! /campaigns/schedules/{schedule_id}/cancel`. A schedule is created by `POST /campaigns/runs`
//! with a document whose `[schedule]` has `send_at` or `cron`. Each calls one function of
//! `ops::schedules`.

use axum::Json;
use axum::extract::{Path, State};

use crate::api::ApiConfig;
use crate::api::error::ApiError;
use crate::ops::schedules::{self, ScheduleInfo};

/// Every schedule, newest first.
pub(crate) async fn list(
    State(api): State<ApiConfig>,
) -> Result<Json<Vec<ScheduleInfo>>, ApiError> {
    Ok(Json(schedules::list(&api.store).await?))
}

/// One schedule with the runs its occurrences started.
pub(crate) async fn get(
    State(api): State<ApiConfig>,
    Path(schedule_id): Path<String>,
) -> Result<Json<ScheduleInfo>, ApiError> {
    Ok(Json(schedules::get(&api.store, &schedule_id).await?))
}

/// Cancels the schedule's future occurrences.
pub(crate) async fn cancel(
    State(api): State<ApiConfig>,
    Path(schedule_id): Path<String>,
) -> Result<Json<ScheduleInfo>, ApiError> {
    Ok(Json(schedules::cancel(&api.store, &schedule_id).await?))
}
