//! Dead letters: `GET /dead` lists them a page at a time (filters `run_id`, `code`, and
//! `limit`, `after` to page, in the query string) and
//! `POST /dead/replay` sends the matching jobs back (filters in a JSON body; an empty body or
//! `{}` replays every job). Each calls one function of `ops::dead`.

use axum::Json;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use bytes::Bytes;
use serde::Deserialize;

use crate::api::ApiConfig;
use crate::api::body;
use crate::api::error::ApiError;
use crate::ops::dead::{self, DEFAULT_PAGE, DeadList, Filter, MAX_PAGE, Page, Replayed};

/// `GET /dead` query parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    run_id: Option<String>,
    code: Option<u32>,
    /// Messages per page, 1 to `MAX_PAGE` (default `DEFAULT_PAGE`).
    limit: Option<usize>,
    /// The `next` cursor of the page before.
    after: Option<String>,
}

/// One page of the dead letters matching the query's filters, left in place.
pub(crate) async fn list(
    State(api): State<ApiConfig>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<DeadList>, ApiError> {
    let query = body::query(query)?;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit={limit}: a page holds 1 to {MAX_PAGE} messages"
        )));
    }
    if let Some(after) = query.after.as_deref()
        && !dead::is_cursor(after)
    {
        return Err(ApiError::bad_request(
            "after: not a cursor this API gave (use the `next` of the page before)",
        ));
    }
    let filter = Filter {
        run_id: query.run_id,
        code: query.code,
    };
    let page = Page {
        limit: Some(limit),
        after: query.after,
    };
    Ok(Json(dead::list(&api.broker, &filter, &page).await?))
}

/// Replays the dead jobs matching the body's filters.
pub(crate) async fn replay(
    State(api): State<ApiConfig>,
    filter: Result<Bytes, BytesRejection>,
) -> Result<Json<Replayed>, ApiError> {
    let filter: Filter = body::json(filter, Some(Filter::default()))?;
    Ok(Json(dead::replay(&api.broker, &filter).await?))
}
