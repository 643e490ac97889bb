//! Bearer authentication of the admin API: `Authorization: Bearer <HERALD_API_TOKEN>`, compared
//! in constant time (both sides are hashed with SHA-256 first, so neither the content nor the
//! length of the token leaks through timing). Without the header, or with a wrong token: 401.
//! When no token is configured the admin API refuses every call with 503 and says to set
//! `HERALD_API_TOKEN`: an open admin API is never the default. A second, narrower token
//! (`HERALD_LEDGER_TOKEN`, for workers) opens the `/ledger` routes and nothing else. The
//! webhook and the operations endpoints are not behind this layer.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use herald_core::Secret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::api::error::ApiError;

/// The routes the ledger token opens.
const LEDGER_ROUTES: [&str; 2] = ["/ledger/{job_id}", "/ledger/{job_id}/claim"];

/// The configured tokens, hashed once.
#[derive(Clone)]
pub(crate) struct ApiToken {
    digest: Option<[u8; 32]>,
    ledger: Option<[u8; 32]>,
}

impl ApiToken {
    pub(crate) fn new(token: Option<&Secret>, ledger: Option<&Secret>) -> Self {
        let digest = |token: Option<&Secret>| {
            token
                .filter(|token| !token.is_blank())
                .map(|token| Sha256::digest(token.expose().as_bytes()).into())
        };
        Self {
            digest: digest(token),
            ledger: digest(ledger),
        }
    }
}

/// Whether `given` hashes to `expected`, compared in constant time.
fn token_matches(expected: &[u8; 32], given: &str) -> bool {
    let given: [u8; 32] = Sha256::digest(given.as_bytes()).into();
    bool::from(expected.ct_eq(&given))
}

/// The middleware: passes the request on only with the right bearer token.
pub(crate) async fn require_token(
    State(token): State<ApiToken>,
    request: Request,
    next: Next,
) -> Response {
    let ledger_route = request
        .extensions()
        .get::<MatchedPath>()
        .is_some_and(|path| LEDGER_ROUTES.contains(&path.as_str()));
    let ledger = token.ledger.filter(|_| ledger_route);
    if token.digest.is_none() && ledger.is_none() {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the admin API is disabled: set HERALD_API_TOKEN to enable it",
        )
        .into_response();
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    match given {
        None => {
            ApiError::unauthorized("missing `Authorization: Bearer <token>` header").into_response()
        }
        Some(given)
            if token
                .digest
                .is_some_and(|expected| token_matches(&expected, given))
                || ledger.is_some_and(|expected| token_matches(&expected, given)) =>
        {
            next.run(request).await
        }
        Some(_) => ApiError::unauthorized("wrong API token").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_configured_token_is_accepted() {
        let token = ApiToken::new(Some(&Secret::new("s3cret")), None);
        let expected = token.digest.expect("configured");
        assert!(token_matches(&expected, "s3cret"));
        for wrong in ["", "s3cre", "s3cret ", "S3CRET", "s3cret-and-more"] {
            assert!(!token_matches(&expected, wrong), "{wrong:?}");
        }
        assert!(ApiToken::new(None, None).digest.is_none());
        assert!(
            ApiToken::new(Some(&Secret::new("  ")), None)
                .digest
                .is_none()
        );
    }
}
