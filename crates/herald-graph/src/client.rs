//! `GraphClient`: one pooled keep-alive HTTP client that POSTs pre-rendered Send API bodies to
//! `{graph_url}/{version}/{page_id}/messages` (docs/messenger-platform.md §1.1) with the page token
//! and the time-stamped `appsecret_proof` (§2). It owns the request and reading the response; what
//! the response means lives in `response` and `classify`, and rate limiting lives in the worker. A
//! response body is read up to `MAX_RESPONSE_BYTES` and no further: Graph's answers are a few
//! hundred bytes, and a larger one (a proxy's page, a hostile endpoint) is `SendError::Oversize`,
//! never held in memory.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use herald_core::Secret;
use reqwest::Url;
use reqwest::header::{CONTENT_TYPE, HeaderValue};

use crate::classify::{Failure, classify};
use crate::response::{Sent, interpret};
use crate::{SendError, Usage, appsecret_proof};

/// The largest response body read; a larger one is `SendError::Oversize`.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Where and how to reach the Graph API.
#[derive(Debug, Clone)]
pub struct GraphSettings {
    /// Base URL, e.g. `https://graph.facebook.com` (the simulator's address in tests).
    pub graph_url: String,
    /// Graph version path segment, e.g. `v25.0`.
    pub version: String,
    /// When set, every call carries `appsecret_proof` and `appsecret_time`.
    pub app_secret: Option<Secret>,
    /// Limit on establishing a TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// Limit on a whole call: connect, send, and read the response body.
    pub request_timeout: Duration,
    /// Idle keep-alive connections kept per host.
    pub max_idle_per_host: usize,
}

impl Default for GraphSettings {
    fn default() -> Self {
        Self {
            graph_url: "https://graph.facebook.com".to_owned(),
            version: "v25.0".to_owned(),
            app_secret: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_idle_per_host: 64,
        }
    }
}

/// Settings that cannot make a working client.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// `graph_url` does not parse as an absolute http(s) URL.
    #[error("graph_url is not an absolute http(s) URL: {reason}")]
    GraphUrl {
        /// Why (never the URL itself).
        reason: String,
    },
    /// `version` is blank or is not a single path segment.
    #[error("graph version must be one non-blank path segment such as v25.0")]
    Version,
    /// `app_secret` is set but blank.
    #[error("app_secret is set but blank")]
    BlankAppSecret,
    /// A timeout is zero.
    #[error("{field} must be greater than zero")]
    ZeroTimeout {
        /// The settings field.
        field: &'static str,
    },
    /// reqwest could not build the client (e.g. TLS roots).
    #[error("could not build the http client")]
    Client(#[source] reqwest::Error),
}

/// A Send API client; clones share one connection pool.
#[derive(Clone)]
pub struct GraphClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    version: String,
    app_secret: Option<Secret>,
}

impl fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphClient")
            .field("host", &self.inner.base.host_str())
            .field("version", &self.inner.version)
            .field("app_secret", &self.inner.app_secret)
            .finish_non_exhaustive()
    }
}

impl GraphClient {
    /// Validates the settings and builds the pooled client.
    pub fn new(settings: GraphSettings) -> Result<Self, BuildError> {
        let base = parse_base(&settings.graph_url)?;
        let version = settings.version.trim();
        if version.is_empty() || version.contains('/') {
            return Err(BuildError::Version);
        }
        if settings.app_secret.as_ref().is_some_and(Secret::is_blank) {
            return Err(BuildError::BlankAppSecret);
        }
        for (field, value) in [
            ("connect_timeout", settings.connect_timeout),
            ("request_timeout", settings.request_timeout),
        ] {
            if value.is_zero() {
                return Err(BuildError::ZeroTimeout { field });
            }
        }
        let http = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            .pool_max_idle_per_host(settings.max_idle_per_host)
            .tcp_keepalive(Duration::from_secs(60))
            .tcp_nodelay(true)
            // Graph never redirects a send; following one would carry the token elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| BuildError::Client(error.without_url()))?;
        let inner = Inner {
            http,
            base,
            version: version.to_owned(),
            app_secret: settings.app_secret,
        };
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// POSTs `body` (the job's rendered JSON, sent byte-for-byte) as Page `page_id`.
    /// `attempt` is 1-based and counts this call; some errors are retried only once or twice.
    pub async fn send(
        &self,
        page_id: &str,
        token: &Secret,
        body: Bytes,
        attempt: u32,
    ) -> Result<Sent, SendError> {
        let url = self.messages_url(page_id, token, unix_now());
        let result = self
            .inner
            .http
            .post(url)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(body)
            .send()
            .await;
        let outcome = match result {
            Ok(response) => {
                let status = response.status().as_u16();
                let usage = Usage::from_headers(response.headers());
                match read_capped(response, MAX_RESPONSE_BYTES).await {
                    Ok(Some(bytes)) => {
                        let secrets = [token.expose(), self.secret_text()];
                        interpret(status, usage, &bytes, attempt, &secrets)
                    }
                    Ok(None) => Err(oversize(status, usage, attempt)),
                    Err(error) => Err(unanswered(error, attempt)),
                }
            }
            Err(error) => Err(unanswered(error, attempt)),
        };
        if let Err(error) = &outcome {
            let verdict = error.verdict();
            tracing::debug!(
                page_id,
                attempt,
                kind = error.kind(),
                class = verdict.class.as_str(),
                code = error.code(),
                subcode = error.subcode(),
                status = error.status(),
                "Graph send failed."
            );
        }
        outcome
    }

    /// `{base}/{version}/{page_id}/messages?access_token=…[&appsecret_proof=…&appsecret_time=…]`.
    fn messages_url(&self, page_id: &str, token: &Secret, unix_secs: u64) -> Url {
        let inner = &self.inner;
        let mut url = inner.base.clone();
        // `parse_base` rejected URLs that cannot take path segments; `push` percent-encodes,
        // so a page id cannot escape its segment.
        if let Ok(mut segments) = url.path_segments_mut() {
            segments
                .pop_if_empty()
                .push(&inner.version)
                .push(page_id)
                .push("messages");
        }
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("access_token", token.expose());
            if let Some(secret) = &inner.app_secret {
                query.append_pair(
                    "appsecret_proof",
                    &appsecret_proof(secret, token, unix_secs),
                );
                query.append_pair("appsecret_time", &unix_secs.to_string());
            }
        }
        url
    }

    fn secret_text(&self) -> &str {
        self.inner.app_secret.as_ref().map_or("", Secret::expose)
    }
}

/// The body, or `None` once it passes `max` bytes (nothing more is read; the connection is
/// dropped rather than drained).
async fn read_capped(
    mut response: reqwest::Response,
    max: usize,
) -> Result<Option<Vec<u8>>, reqwest::Error> {
    if response
        .content_length()
        .is_some_and(|length| length > max as u64)
    {
        return Ok(None);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > max {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// An answer too large to read, classified as an unreadable body of its status is.
fn oversize(status: u16, usage: Option<Usage>, attempt: u32) -> SendError {
    let failure = if (200..300).contains(&status) {
        Failure::MalformedSuccess
    } else {
        Failure::Http { status }
    };
    let verdict = classify(&failure, usage.as_ref(), attempt);
    SendError::Oversize {
        status,
        max: MAX_RESPONSE_BYTES,
        usage,
        verdict,
    }
}

/// A request that got no complete response. The URL (holding the token) is stripped first.
fn unanswered(error: reqwest::Error, attempt: u32) -> SendError {
    let source = error.without_url();
    if source.is_timeout() {
        let verdict = classify(&Failure::Timeout, None, attempt);
        SendError::Timeout { source, verdict }
    } else {
        let verdict = classify(&Failure::Transport, None, attempt);
        SendError::Transport { source, verdict }
    }
}

fn parse_base(graph_url: &str) -> Result<Url, BuildError> {
    let mut base = Url::parse(graph_url.trim()).map_err(|error| BuildError::GraphUrl {
        reason: error.to_string(),
    })?;
    if !matches!(base.scheme(), "http" | "https") {
        return Err(BuildError::GraphUrl {
            reason: "scheme must be http or https".to_owned(),
        });
    }
    if base.path_segments_mut().is_err() {
        return Err(BuildError::GraphUrl {
            reason: "URL cannot take a path".to_owned(),
        });
    }
    base.set_query(None);
    base.set_fragment(None);
    Ok(base)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests;
