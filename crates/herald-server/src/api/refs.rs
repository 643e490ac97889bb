//! `POST /refs`: mints a signed ref (`ops::refs::sign`) from a JSON body
//! `{"external_id", "page_id", "ttl"?}`.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use bytes::Bytes;
use time::OffsetDateTime;

use crate::api::ApiConfig;
use crate::api::body;
use crate::api::error::ApiError;
use crate::ops::refs::{self, SignRequest, SignedRef};

/// The signed ref for the body's user and page.
pub(crate) async fn sign(
    State(api): State<ApiConfig>,
    request: Result<Bytes, BytesRejection>,
) -> Result<Json<SignedRef>, ApiError> {
    let request: SignRequest = body::json(request, None)?;
    let signed = refs::sign(api.ref_keys.as_ref(), &request, OffsetDateTime::now_utc())?;
    Ok(Json(signed))
}
