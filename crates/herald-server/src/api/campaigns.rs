//! Stored campaigns and API-triggered sends: `GET /campaigns`, `PUT|GET|DELETE
//! /campaigns/{campaign_id}`, `POST /campaigns/{campaign_id}/trigger` and `GET
//! /campaigns/dispatches/{dispatch_id}`. Each calls one function of `ops::campaigns` or
//! `ops::trigger`.

use axum::Json;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use serde::Deserialize;

use crate::api::ApiConfig;
use crate::api::body;
use crate::api::error::ApiError;
use crate::api::runs::{document_format, idempotency_key};
use crate::ops::campaigns::{self, CampaignVersion};
use crate::ops::trigger::{self, DispatchStatus, Trigger};
use crate::ops::trigger_days::{self, TriggerReport};

/// `GET /campaigns/{campaign_id}` query parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VersionQuery {
    /// A saved version; the latest without it.
    version: Option<i64>,
}

/// Every stored campaign, its latest version.
pub(crate) async fn list(
    State(api): State<ApiConfig>,
) -> Result<Json<Vec<CampaignVersion>>, ApiError> {
    Ok(Json(campaigns::list(&api.store).await?))
}

/// Saves a campaign document under its id: 200 with the version (a new one when it changed).
pub(crate) async fn put(
    State(api): State<ApiConfig>,
    Path(campaign_id): Path<String>,
    headers: HeaderMap,
    document: Result<Bytes, BytesRejection>,
) -> Result<Json<CampaignVersion>, ApiError> {
    let format = document_format(&headers)?;
    let document = body::bytes(document)?;
    let document = String::from_utf8(document.to_vec())
        .map_err(|_| ApiError::bad_request("the campaign document is not valid UTF-8"))?;
    Ok(Json(
        campaigns::put(&api.store, &campaign_id, &document, format).await?,
    ))
}

/// A stored campaign's latest version, or `?version=N`.
pub(crate) async fn get(
    State(api): State<ApiConfig>,
    Path(campaign_id): Path<String>,
    query: Result<Query<VersionQuery>, QueryRejection>,
) -> Result<Json<CampaignVersion>, ApiError> {
    let query = body::query(query)?;
    Ok(Json(
        campaigns::get(&api.store, &campaign_id, query.version).await?,
    ))
}

/// Deletes a stored campaign (its versions stay for the runs that name them).
pub(crate) async fn delete(
    State(api): State<ApiConfig>,
    Path(campaign_id): Path<String>,
) -> Result<Json<CampaignVersion>, ApiError> {
    Ok(Json(campaigns::delete(&api.store, &campaign_id).await?))
}

/// Sends the campaign to the recipients of the body: 201 with the dispatch (200 when the
/// `Idempotency-Key` dispatched it before), `Location` to its status.
pub(crate) async fn trigger(
    State(api): State<ApiConfig>,
    Path(campaign_id): Path<String>,
    headers: HeaderMap,
    request: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let request = body::bytes(request)?;
    let at = Trigger {
        store: &api.store,
        broker: &api.broker,
        rates: &api.page_rates,
        link: &api.trigger_link,
    };
    let dispatch = trigger::trigger(&at, &campaign_id, &request, key.as_deref()).await?;
    let status = if dispatch.existing {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let location = format!("/campaigns/dispatches/{}", dispatch.dispatch_id);
    Ok(body::located(status, dispatch, &location))
}

/// Each recipient's outcome so far.
pub(crate) async fn dispatch(
    State(api): State<ApiConfig>,
    Path(dispatch_id): Path<String>,
) -> Result<Json<DispatchStatus>, ApiError> {
    Ok(Json(trigger::status(&api.store, &dispatch_id).await?))
}

/// A campaign with a `[trigger]`, day by day.
pub(crate) async fn days(
    State(api): State<ApiConfig>,
    Path(campaign_id): Path<String>,
) -> Result<Json<TriggerReport>, ApiError> {
    Ok(Json(
        trigger_days::trigger_days(&api.store, &campaign_id).await?,
    ))
}
