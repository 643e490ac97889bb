//! Users: `POST /users/import` streams a CSV or JSONL body into the store (the format from
//! `Content-Type` or `?format=`), and `POST /users/track` takes Braze's attributes request.
//! Each calls one function of `ops`; the import's body goes to the parser as it arrives, so
//! memory stays flat whatever its size.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use herald_producer::SegmentFormat;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::api::ApiConfig;
use crate::api::body::{self, ChannelReader, media_type};
use crate::api::error::ApiError;
use crate::ops::track::track as track_users;
use crate::ops::users::{self, ImportOptions, ImportReport};

/// `POST /users/import` query parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ImportQuery {
    /// `csv` or `jsonl`; overrides the Content-Type.
    format: Option<String>,
    /// The page the `messenger_id`s belong to (links Messenger identities too).
    page_id: Option<String>,
}

/// `POST /users/track` query parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TrackQuery {
    /// The page the `messenger_id`s belong to.
    page_id: Option<String>,
}

/// How the body stopped arriving, when it did not simply end.
enum BodyEnd {
    Complete,
    TooLarge,
    Broken(String),
}

/// Imports every row of the body; 200 with the counts and the malformed rows' lines.
pub(crate) async fn import(
    State(api): State<ApiConfig>,
    query: Result<Query<ImportQuery>, QueryRejection>,
    headers: HeaderMap,
    request: Body,
) -> Result<Json<ImportReport>, ApiError> {
    let query = body::query(query)?;
    let format = import_format(query.format.as_deref(), media_type(&headers).as_deref())?;
    let (sender, receiver) = mpsc::channel(8);
    let limit = api.max_import_bytes;
    let forward = async move {
        let mut chunks = request.into_data_stream();
        let mut seen = 0_u64;
        while let Some(chunk) = chunks.next().await {
            let failure = match chunk {
                Ok(chunk) => {
                    seen += chunk.len() as u64;
                    if seen <= limit {
                        if sender.send(Ok(chunk)).await.is_err() {
                            // The parser stopped (a bad header): nothing more to read.
                            return BodyEnd::Complete;
                        }
                        continue;
                    }
                    BodyEnd::TooLarge
                }
                Err(error) => BodyEnd::Broken(error.to_string()),
            };
            let _ = sender
                .send(Err(std::io::Error::other("the request body was cut short")))
                .await;
            return failure;
        }
        BodyEnd::Complete
    };
    let options = ImportOptions {
        page_id: query.page_id,
    };
    let reader = Box::new(ChannelReader::new(receiver));
    let (end, report) = tokio::join!(forward, users::import(&api.store, reader, format, options));
    match end {
        BodyEnd::Complete => Ok(Json(report?)),
        BodyEnd::TooLarge => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the body exceeds {limit} bytes; the rows before the limit were imported \
                 (importing is an upsert: split the file and send the parts)"
            ),
        )),
        BodyEnd::Broken(reason) => Err(ApiError::bad_request(format!(
            "the request body could not be read to its end ({reason}); the rows before the \
             break were imported"
        ))),
    }
}

fn import_format(query: Option<&str>, media: Option<&str>) -> Result<SegmentFormat, ApiError> {
    match (query, media) {
        (Some("csv"), _) => Ok(SegmentFormat::Csv),
        (Some("jsonl"), _) => Ok(SegmentFormat::Jsonl),
        (Some(other), _) => Err(ApiError::bad_request(format!(
            "format={other}: use csv or jsonl"
        ))),
        (None, Some("text/csv")) => Ok(SegmentFormat::Csv),
        (
            None,
            Some(
                "application/x-ndjson"
                | "application/jsonl"
                | "application/x-jsonlines"
                | "application/ndjson",
            ),
        ) => Ok(SegmentFormat::Jsonl),
        (None, other) => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Content-Type {}: send text/csv or application/x-ndjson, or add ?format=csv|jsonl",
                other.unwrap_or("(none)")
            ),
        )),
    }
}

/// Braze's `/users/track`: 200 with `success` or `partial` and the refused objects, 422 when
/// no object could be stored.
pub(crate) async fn track(
    State(api): State<ApiConfig>,
    query: Result<Query<TrackQuery>, QueryRejection>,
    request: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let query = body::query(query)?;
    let request: Value = body::json(request, None)?;
    let report = track_users(&api.store, &request, query.page_id.as_deref()).await?;
    if report.fired.observe(&api.metrics) {
        api.fires.notify_one();
    }
    let status = if report.message == "failed" {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok((status, Json(report)).into_response())
}
