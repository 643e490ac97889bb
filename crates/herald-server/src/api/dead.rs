//! Dead letters: `GET /dead` lists them (filters `run_id`, `code` in the query string) and
//! `POST /dead/replay` sends the matching jobs back (filters in a JSON body; an empty body or
//! `{}` replays every job). Each calls one function of `ops::dead`.

use axum::Json;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use bytes::Bytes;

use crate::api::ApiConfig;
use crate::api::body;
use crate::api::error::ApiError;
use crate::ops::dead::{self, DeadList, Filter, Replayed};

/// The dead letters matching the query's filters, left in place.
pub(crate) async fn list(
    State(api): State<ApiConfig>,
    query: Result<Query<Filter>, QueryRejection>,
) -> Result<Json<DeadList>, ApiError> {
    let filter = body::query(query)?;
    Ok(Json(dead::list(&api.broker, &filter).await?))
}

/// Replays the dead jobs matching the body's filters.
pub(crate) async fn replay(
    State(api): State<ApiConfig>,
    filter: Result<Bytes, BytesRejection>,
) -> Result<Json<Replayed>, ApiError> {
    let filter: Filter = body::json(filter, Some(Filter::default()))?;
    Ok(Json(dead::replay(&api.broker, &filter).await?))
}
