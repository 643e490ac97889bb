//! `GET /webhook` (Meta's verification handshake) and `POST /webhook` (signature, body limit,
//! publish to `<prefix>.events`, 200), docs/messenger-platform.md §5.1–5.5. A verified body is
//! published byte for byte as one AMQP message: nothing is parsed here, so the answer is as fast as
//! the broker's confirm, and nothing Meta sent is lost or reinterpreted before the ingest reads it.
//! Checking the secrets is `signature.rs`; the broker connection is `sink.rs`.

mod limits;
mod signature;
mod sink;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use herald_core::Secret;
use herald_core::clock::now_ms;
use herald_telemetry::Metrics;
use tracing::{debug, info, warn};

pub(crate) use signature::{SignatureError, parse_signature, verify_body};
pub use sink::{EVENTS_ROUTING_KEY, EventSink, PUBLISH_TIMEOUT};

/// The signature header parser, for the property tests.
#[cfg(test)]
pub(crate) use signature::parse_signature as parse_signature_for_fuzzing;

use limits::{BodyBudget, REQUEST_DEADLINE, SMALL_BODY_BYTES};
use signature::{META_SIGNATURE_HEADER, verify_token_matches};

/// What the webhook needs to know.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// The Meta app secret: `X-Hub-Signature-256` is its HMAC-SHA256 of the body. Empty: every
    /// POST is refused (403), since an HMAC under an empty key proves nothing.
    pub app_secret: Secret,
    /// The string entered as "Verify token" in the App Dashboard. Empty: every handshake is
    /// refused (403).
    pub verify_token: Secret,
    /// Bodies larger than this are refused with 413 and not published.
    pub max_body_bytes: usize,
}

impl WebhookConfig {
    /// 4 MiB. Meta batches up to 1000 updates per POST (docs/messenger-platform.md §5.3); a
    /// messaging event is typically 300 bytes to 2 KiB (more with ad referrals or long text, which
    /// Meta escapes to `\uXXXX`, up to 6 bytes per character), so 4 MiB leaves room for a full
    /// batch of large events while bounding the memory one request can take. A refused body is
    /// retried by Meta and never published, so raise it rather than lower it if 413s appear in the
    /// metrics.
    pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

    /// A configuration with the default body limit.
    pub fn new(app_secret: Secret, verify_token: Secret) -> Self {
        Self {
            app_secret,
            verify_token,
            max_body_bytes: Self::DEFAULT_MAX_BODY_BYTES,
        }
    }
}

#[derive(Clone)]
struct Webhook {
    config: Arc<WebhookConfig>,
    events: EventSink,
    metrics: Metrics,
    budget: BodyBudget,
}

/// `GET /webhook` (handshake) and `POST /webhook` (signature, body limit, publish, 200).
pub fn router(config: WebhookConfig, events: EventSink, metrics: Metrics) -> Router {
    if config.app_secret.is_blank() {
        warn!("No app secret configured: every webhook POST will be refused (403).");
    }
    let limit = config.max_body_bytes;
    let state = Webhook {
        config: Arc::new(config),
        events,
        metrics,
        budget: BodyBudget::new(),
    };
    Router::new()
        .route("/webhook", get(handshake).post(receive))
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(deadline))
        .with_state(state)
}

/// Meta's verification request: 200 with the raw `hub.challenge` when `hub.mode` is `subscribe`
/// and `hub.verify_token` is ours, else 403.
async fn handshake(
    State(webhook): State<Webhook>,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let params = query.map(|Query(params)| params).unwrap_or_default();
    let param = |name: &str| params.get(name).map(String::as_str);
    let token_ok = param("hub.verify_token")
        .is_some_and(|given| verify_token_matches(webhook.config.verify_token.expose(), given));
    let outcome = match (param("hub.mode"), param("hub.challenge")) {
        (Some("subscribe"), Some(challenge)) if token_ok => Ok(challenge.to_owned()),
        _ => Err(()),
    };
    match outcome {
        Ok(challenge) => {
            webhook.count("handshake_ok");
            info!("Webhook verification handshake accepted.");
            let plain = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
            (StatusCode::OK, plain, challenge).into_response()
        }
        Err(()) => {
            webhook.count("handshake_refused");
            warn!(
                mode_subscribe = param("hub.mode") == Some("subscribe"),
                token_ok, "Webhook verification handshake refused."
            );
            (StatusCode::FORBIDDEN, "forbidden").into_response()
        }
    }
}

/// One webhook delivery: signature header, body (limited), HMAC over the raw bytes, publish with
/// confirm, then 200. Nothing is published unless the signature is good.
async fn receive(State(webhook): State<Webhook>, request: Request) -> Response {
    let received_at_ms = now_ms();
    let header_value = request
        .headers()
        .get(META_SIGNATURE_HEADER)
        .map(|value| value.as_bytes());
    // The header is checked before the body is read: a request without one costs nothing more.
    let claimed = match parse_signature(header_value) {
        Ok(claimed) => claimed,
        Err(error) => return webhook.forbidden(error.as_str(), None),
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<usize>().ok());
    let max = webhook.config.max_body_bytes;
    if declared.is_some_and(|declared| declared > max) {
        webhook.count("too_large");
        return (StatusCode::PAYLOAD_TOO_LARGE, "payload too large").into_response();
    }
    let Some(_room) = webhook.budget.reserve(declared.unwrap_or(max)).await else {
        webhook.count("busy");
        webhook.events.refused();
        warn!("Webhook bodies in memory are at their limit; answering 503 so that Meta retries.");
        return (StatusCode::SERVICE_UNAVAILABLE, "busy, retry later").into_response();
    };
    let body = match Bytes::from_request(request, &()).await {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            webhook.count("too_large");
            warn!(
                max_body_bytes = webhook.config.max_body_bytes,
                "Webhook body over the limit; refused (413), nothing published."
            );
            return (StatusCode::PAYLOAD_TOO_LARGE, "payload too large").into_response();
        }
        Err(rejection) => {
            webhook.count("bad_request");
            debug!(error = %rejection.body_text(), "Webhook body could not be read.");
            return (rejection.status(), "bad request").into_response();
        }
    };
    // Hashing megabytes takes milliseconds of CPU: large bodies are checked on the blocking
    // pool, so the runtime's threads keep answering ordinary deliveries meanwhile.
    let verified = if body.len() > SMALL_BODY_BYTES {
        let (config, large) = (webhook.config.clone(), body.clone());
        tokio::task::spawn_blocking(move || {
            verify_body(config.app_secret.expose().as_bytes(), &large, &claimed)
        })
        .await
        .unwrap_or(Err(SignatureError::Mismatch))
    } else {
        verify_body(
            webhook.config.app_secret.expose().as_bytes(),
            &body,
            &claimed,
        )
    };
    if let Err(error) = verified {
        return webhook.forbidden(error.as_str(), Some(body.len()));
    }
    let started = Instant::now();
    let published = webhook
        .events
        .publish(&body, &claimed, received_at_ms)
        .await;
    webhook
        .metrics
        .webhook_publish_duration
        .observe(started.elapsed().as_secs_f64());
    match published {
        Ok(()) => {
            webhook.count("accepted");
            debug!(body_bytes = body.len(), "Webhook body published.");
            (StatusCode::OK, "EVENT_RECEIVED").into_response()
        }
        Err(error) => {
            webhook.count("unavailable");
            webhook.events.refused();
            warn!(error = %error, kind = error.kind(), body_bytes = body.len(),
                "Webhook body not published; answering 503 so that Meta retries.");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "broker unavailable, retry later",
            )
                .into_response()
        }
    }
}

/// Ends a webhook request that takes longer than `REQUEST_DEADLINE` (a client trickling its
/// body) with 408, freeing what it held.
async fn deadline(request: Request, next: axum::middleware::Next) -> Response {
    match tokio::time::timeout(REQUEST_DEADLINE, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            warn!("Webhook request over its deadline; closed (408).");
            (StatusCode::REQUEST_TIMEOUT, "request took too long").into_response()
        }
    }
}

impl Webhook {
    fn count(&self, outcome: &str) {
        self.metrics
            .webhook_requests
            .with_label_values(&[outcome])
            .inc();
    }

    fn forbidden(&self, why: &'static str, body_bytes: Option<usize>) -> Response {
        self.count("bad_signature");
        warn!(
            why,
            body_bytes, "Webhook POST with a bad signature; refused (403), nothing published."
        );
        (StatusCode::FORBIDDEN, "forbidden").into_response()
    }
}
