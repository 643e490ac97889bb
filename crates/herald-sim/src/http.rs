//! Small HTTP helpers shared by the Send API and `/_sim` handlers: answer building, header
//! constants, bounded body reading. No routing and no Graph semantics.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};
use serde::Serialize;

use crate::graph_error::GraphError;

/// Every answer of the simulator.
pub(crate) type Answer = Response<Full<Bytes>>;

/// Send API bodies above this size are refused (Graph's own limit is far above any message).
pub(crate) const MAX_BODY_BYTES: usize = 1 << 20;

pub(crate) static JSON: HeaderValue = HeaderValue::from_static("application/json; charset=UTF-8");
pub(crate) static API_VERSION: HeaderName = HeaderName::from_static("facebook-api-version");
pub(crate) static APP_USAGE: HeaderName = HeaderName::from_static("x-app-usage");
pub(crate) static BUC_USAGE: HeaderName = HeaderName::from_static("x-business-use-case-usage");
/// Meta sends all-zero app usage on page-token calls (docs/messenger-platform.md §4.2).
pub(crate) static APP_USAGE_ZERO: HeaderValue =
    HeaderValue::from_static(r#"{"call_count":0,"total_cputime":0,"total_time":0}"#);

/// A JSON answer with the given status.
pub(crate) fn json_bytes(status: StatusCode, body: impl Into<Bytes>) -> Answer {
    let mut answer = Response::new(Full::new(body.into()));
    *answer.status_mut() = status;
    answer.headers_mut().insert(CONTENT_TYPE, JSON.clone());
    answer
}

/// A serialisable value as a JSON answer.
pub(crate) fn json<T: Serialize>(status: StatusCode, value: &T) -> Answer {
    json_bytes(status, serde_json::to_vec(value).unwrap_or_default())
}

/// A `/_sim` error: `{"error": "..."}`.
pub(crate) fn sim_error(status: StatusCode, message: impl Into<String>) -> Answer {
    json(status, &serde_json::json!({ "error": message.into() }))
}

/// A Graph error answer with Meta's headers.
pub(crate) fn graph_error(error: &GraphError, version: Option<&HeaderValue>) -> Answer {
    let mut answer = json_bytes(error.status, error.body());
    graph_headers(&mut answer, version, None);
    answer
}

/// The headers Graph puts on every Send API answer, plus the page usage when given.
pub(crate) fn graph_headers(
    answer: &mut Answer,
    version: Option<&HeaderValue>,
    usage: Option<HeaderValue>,
) {
    let headers = answer.headers_mut();
    headers.insert(APP_USAGE.clone(), APP_USAGE_ZERO.clone());
    if let Some(version) = version {
        headers.insert(API_VERSION.clone(), version.clone());
    }
    if let Some(usage) = usage {
        headers.insert(BUC_USAGE.clone(), usage);
    }
}

/// Reads a whole body, refusing more than `limit` bytes. A body that arrives in one frame (the
/// usual case for small requests) is returned without copying.
pub(crate) async fn read_body(mut body: Incoming, limit: usize) -> Result<Bytes, ()> {
    let mut first: Option<Bytes> = None;
    let mut rest: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(drop)?.into_data() else {
            continue;
        };
        let so_far = if rest.is_empty() {
            first.as_ref().map_or(0, Bytes::len)
        } else {
            rest.len()
        };
        let total = so_far + data.len();
        if total > limit {
            return Err(());
        }
        match &first {
            None => first = Some(data),
            Some(head) => {
                if rest.is_empty() {
                    rest.extend_from_slice(head);
                }
                rest.extend_from_slice(&data);
            }
        }
    }
    if rest.is_empty() {
        Ok(first.unwrap_or_default())
    } else {
        Ok(Bytes::from(rest))
    }
}

/// Unix time in milliseconds.
pub(crate) fn unix_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}
