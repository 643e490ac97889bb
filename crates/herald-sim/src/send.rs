//! `POST /{version}/{page-id|me}/messages`: the hot path. Order of checks, as Graph answers them:
//! path and version (2500), token (190), appsecret_proof (100), body (100), scripted faults,
//! then one critical section for bursts, the page rate (613), per-recipient outcomes and the accept.

use std::io;
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, StatusCode};
use serde_json::Value;

use crate::app::App;
use crate::auth::{self, Credentials, PageRef};
use crate::config::PsidOutcome;
use crate::events::Event;
use crate::faults::{self, Fault, pause};
use crate::graph_error::GraphError;
use crate::http::{self, Answer, MAX_BODY_BYTES, unix_ms};
use crate::limits::usage_header;
use crate::stats::{Admission, Decision, message_id};
use crate::validate::{self, Validated};

/// Answers one Send API call. An `Err` closes the connection without an answer (held calls).
pub(crate) async fn handle(app: Arc<App>, request: Request<Incoming>) -> Result<Answer, io::Error> {
    let (parts, body) = request.into_parts();
    let live = app.live();
    let (major, page) = match parse_path(parts.uri.path()) {
        Ok(route) => route,
        Err(error) => return Ok(reject(&app, &error, None)),
    };
    let Some(version) = live.served_version(major) else {
        return Ok(reject(
            &app,
            &GraphError::unknown_path(parts.uri.path()),
            None,
        ));
    };
    if parts.method != Method::POST {
        return Ok(reject(
            &app,
            &GraphError::unsupported_method(parts.method.as_str()),
            Some(version),
        ));
    }
    let Ok(body) = http::read_body(body, MAX_BODY_BYTES).await else {
        let error = GraphError::param("(#100) The request body is too large");
        return Ok(reject(&app, &error, Some(version)));
    };
    if let Some(delay) = faults::latency(&live.config.latency)
        && !pause(delay, &app.cancel).await
    {
        return Err(io::Error::other("simulator shutting down"));
    }

    let mut credentials = Credentials::from_query(parts.uri.query());
    let form = is_form(parts.headers.get(CONTENT_TYPE)).then(|| form_body(&body, &mut credentials));
    credentials.offer_bearer(parts.headers.get(AUTHORIZATION).map(HeaderValue::as_bytes));
    let wall_ms = unix_ms();
    let page_id = match auth::authorize(&live, page, &credentials, wall_ms / 1000) {
        Ok(page_id) => page_id,
        Err(error) => return Ok(reject(&app, &error, Some(version))),
    };
    let validated = match &form {
        Some(value) => validate::validate_value(value),
        None => validate::validate_json(&body),
    };
    let validated = match validated {
        Ok(validated) => validated,
        Err(error) => return Ok(reject(&app, &error, Some(version))),
    };

    let config = &live.config;
    let fault_error = match faults::pick(config) {
        None => None,
        Some(Fault::Hold(hold)) => {
            app.state().count_timeout();
            pause(hold, &app.cancel).await;
            return Err(io::Error::other("held call dropped unanswered"));
        }
        Some(Fault::ServerEmpty) => {
            app.state().count_empty_server_error();
            let mut answer = http::json_bytes(StatusCode::SERVICE_UNAVAILABLE, Bytes::new());
            answer.headers_mut().remove(CONTENT_TYPE);
            return Ok(answer);
        }
        Some(Fault::ServerCodeOne) => Some(GraphError::server(false)),
        Some(Fault::ServerCodeTwo) => Some(GraphError::server(true)),
        Some(Fault::Transient) => Some(GraphError::transient()),
    };
    if let Some(error) = fault_error {
        return Ok(reject(&app, &error, Some(version)));
    }

    let form_json = match &form {
        Some(value) if config.record_bodies => serde_json::to_vec(value).ok(),
        _ => None,
    };
    let recorded = config
        .record_bodies
        .then(|| form_json.as_deref().unwrap_or(&body));
    let rate = config.rate_for(page_id);
    let budget = (
        config.call_budget_for(page_id),
        Duration::from_millis(config.budget_window_ms),
    );
    let outcome = live.outcome_for(&validated.recipient);
    let decision = app.state().admit(Admission {
        page: page_id,
        recipient: &validated.recipient,
        rate,
        budget,
        burst_regain_minutes: config.throttle_regain_minutes,
        outcome,
        start_burst: faults::burst(config),
        sender_action: validated.sender_action,
        body: recorded,
        max_recorded: config.max_recorded,
        now: Instant::now(),
        wall_ms,
    });

    let (page, mid, usage_pct) = match decision {
        Decision::Accepted {
            page,
            mid,
            usage_pct,
        } => (page, mid, usage_pct),
        Decision::Rejected {
            error,
            usage_pct,
            regain_minutes,
        } => {
            let throttled = error.code == 613;
            let mut answer = http::json_bytes(error.status, error.body());
            let usage = (throttled || usage_pct >= config.usage_header_min_pct)
                .then(|| usage_header(page_id, usage_pct, regain_minutes))
                .flatten();
            http::graph_headers(&mut answer, Some(version), usage);
            return Ok(answer);
        }
    };
    let mid = mid.map(|n| message_id(app.instance, n));
    let mut answer = http::json_bytes(StatusCode::OK, success_body(&validated, mid.as_deref()));
    let usage = (usage_pct >= config.usage_header_min_pct)
        .then(|| usage_header(page_id, usage_pct, 0))
        .flatten();
    http::graph_headers(&mut answer, Some(version), usage);
    let lose =
        matches!(outcome, Some(PsidOutcome::LoseAnswer)) || faults::roll(config.lost_answer_rate);
    if (config.receipts || config.echoes)
        && config.webhook_url.is_some()
        && validated.echo_recipient
        && let Some(mid) = mid
    {
        let psid = validated.recipient.into_owned();
        app.enqueue(Event::Accepted {
            page,
            psid,
            mid,
            metadata: validated.metadata,
            at_ms: wall_ms,
        });
    }
    if lose {
        // Taken, recorded and echoed: only the answer goes missing.
        app.state().count_lost_answer();
        return Err(io::Error::other("accepted, answer lost on purpose"));
    }
    Ok(answer)
}

/// `/{version}/{page-id|me}/messages` → (major version, page). `vN.0` only.
fn parse_path(path: &str) -> Result<(u32, PageRef<'_>), GraphError> {
    let mut segments = path.strip_prefix('/').unwrap_or(path).split('/');
    let (Some(version), Some(page), Some("messages"), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err(GraphError::unknown_path(path));
    };
    let major = version
        .strip_prefix('v')
        .and_then(|v| v.strip_suffix(".0"))
        .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|digits| digits.parse::<u32>().ok())
        .filter(|major| *major > 0);
    match (major, page) {
        (Some(_), "") | (None, _) => Err(GraphError::unknown_path(path)),
        (Some(major), "me") => Ok((major, PageRef::Me)),
        (Some(major), page) => Ok((major, PageRef::Id(page))),
    }
}

fn is_form(content_type: Option<&HeaderValue>) -> bool {
    content_type.is_some_and(|v| {
        v.as_bytes()
            .starts_with(b"application/x-www-form-urlencoded")
    })
}

/// Form fields → a JSON object; values that are JSON objects or arrays are parsed (Meta's
/// `recipient={"id":"..."}` form), credentials are taken out.
fn form_body<'b>(body: &'b [u8], credentials: &mut Credentials<'b>) -> Value {
    let mut fields = serde_json::Map::new();
    for (key, value) in url::form_urlencoded::parse(body) {
        let Some(value) = credentials.offer(&key, value) else {
            continue;
        };
        let parsed = if value.trim_start().starts_with(['{', '[']) {
            serde_json::from_str(&value).ok()
        } else {
            None
        };
        fields.insert(
            key.into_owned(),
            parsed.unwrap_or_else(|| Value::String(value.into_owned())),
        );
    }
    Value::Object(fields)
}

fn success_body(validated: &Validated<'_>, mid: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + validated.recipient.len());
    out.push(b'{');
    if validated.echo_recipient {
        out.extend_from_slice(b"\"recipient_id\":");
        let _ = serde_json::to_writer(&mut out, validated.recipient.as_ref());
    }
    if let Some(mid) = mid {
        if validated.echo_recipient {
            out.push(b',');
        }
        let _ = write!(out, "\"message_id\":\"{mid}\"");
    }
    out.push(b'}');
    out
}

/// Counts the error and answers it.
fn reject(app: &App, error: &GraphError, version: Option<&HeaderValue>) -> Answer {
    app.state().count_rejection(error);
    http::graph_error(error, version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        fn ok(path: &str) -> Result<(u32, PageRef<'_>), u32> {
            parse_path(path).map_err(|e| e.code)
        }
        assert_eq!(ok("/v25.0/123/messages"), Ok((25, PageRef::Id("123"))));
        assert_eq!(ok("/v22.0/me/messages"), Ok((22, PageRef::Me)));
        for bad in [
            "/v25/1/messages",
            "/25.0/1/messages",
            "/v+25.0/1/messages",
            "/v25.0//messages",
            "/v25.0/1/messages/",
            "/v25.0/1/feed",
            "/1/messages",
            "/",
        ] {
            assert_eq!(ok(bad), Err(2500), "{bad}");
        }
    }

    #[test]
    fn form_fields_become_json() {
        let body = b"recipient=%7B%22id%22%3A%2242%22%7D&messaging_type=UPDATE&access_token=t&message=%7B%22text%22%3A%22hi%22%7D";
        let mut credentials = Credentials::default();
        let value = form_body(body, &mut credentials);
        assert_eq!(credentials.token.as_deref(), Some("t"));
        assert_eq!(
            value,
            serde_json::json!({"recipient": {"id": "42"}, "messaging_type": "UPDATE",
                "message": {"text": "hi"}})
        );
    }
}
