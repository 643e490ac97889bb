//! `ApiError`: every refusal of the admin API as a JSON object,
//! `{"error": "what went wrong", "problems": [{"path", "line"?, "column"?, "message"}]}`
//! (`problems` only when there is a list), with the HTTP status that says what kind of failure
//! it is. No message carries a secret or a row's text.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::ops::{ErrorKind, OpsError, Problem};

/// A refused or failed API call.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    body: ErrorBody,
}

#[derive(Debug, Serialize)]
struct ErrorBody {
    error: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    problems: Vec<Problem>,
}

impl ApiError {
    /// An error with `status` and a message.
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                error: message.into(),
                problems: Vec::new(),
            },
        }
    }

    /// 400: the request itself is malformed (not JSON, a bad query parameter).
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 401, with `WWW-Authenticate: Bearer`.
    pub(crate) fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }
}

impl From<OpsError> for ApiError {
    fn from(error: OpsError) -> Self {
        let status = match error.kind() {
            ErrorKind::Usage | ErrorKind::Data => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::warn!(error = %error, status = status.as_u16(), "Admin API call failed.");
        }
        Self {
            status,
            body: ErrorBody {
                error: error.to_string(),
                problems: error.problems().to_vec(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"herald\""),
            );
        }
        response
    }
}
