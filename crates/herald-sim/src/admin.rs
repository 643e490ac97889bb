//! The `/_sim/*` control and observability endpoints: stats, accepted messages, reset, config
//! (read and partial update), token revoke/restore and inbound user messages. Not on Graph;
//! errors here are `{"error": "..."}`, never Graph error JSON.

use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde::Deserialize;

use crate::app::App;
use crate::events::Event;
use crate::events::Item;
use crate::http::{self, Answer, json, sim_error, unix_ms};
use crate::stats::message_id;

const MAX_ADMIN_BODY: usize = 1 << 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Inbound {
    page_id: String,
    psid: String,
    text: String,
    #[serde(default, rename = "ref")]
    reference: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    token: String,
}

/// Answers one `/_sim/...` request.
pub(crate) async fn handle(app: Arc<App>, request: Request<Incoming>) -> Answer {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().trim_end_matches('/');
    let query = parts.uri.query();
    let body = match http::read_body(body, MAX_ADMIN_BODY).await {
        Ok(body) => body,
        Err(()) => return sim_error(StatusCode::PAYLOAD_TOO_LARGE, "body too large"),
    };
    let segments: Vec<&str> = path.trim_start_matches("/_sim/").split('/').collect();
    match (&parts.method, segments.as_slice()) {
        (&Method::GET, ["health"]) => json(StatusCode::OK, &serde_json::json!({"ok": true})),
        (&Method::GET, ["stats"]) => {
            let summary = query_value(query, "summary").is_some_and(|v| v == "1" || v == "true");
            json(StatusCode::OK, &app.state().snapshot(!summary))
        }
        (&Method::GET, ["messages"]) => {
            let recipient = query_value(query, "recipient");
            json(
                StatusCode::OK,
                &app.state().messages(recipient.as_deref(), app.instance),
            )
        }
        (&Method::POST, ["reset"]) => {
            app.state().reset();
            json(StatusCode::OK, &serde_json::json!({"reset": true}))
        }
        (&Method::GET, ["config"]) => json(StatusCode::OK, &redacted_config(&app)),
        (&Method::POST, ["config"]) => update_config(&app, &body),
        (&Method::POST, ["pages", page_id, "revoke"]) => {
            app.revoke(page_id);
            json(
                StatusCode::OK,
                &serde_json::json!({"page_id": page_id, "revoked": true}),
            )
        }
        (&Method::POST, ["pages", page_id, "token"]) => {
            match serde_json::from_slice::<NewToken>(&body) {
                Ok(new) if !new.token.is_empty() => {
                    app.restore(page_id, &new.token);
                    json(
                        StatusCode::OK,
                        &serde_json::json!({"page_id": page_id, "revoked": false}),
                    )
                }
                _ => sim_error(StatusCode::BAD_REQUEST, "expected {\"token\": \"...\"}"),
            }
        }
        (&Method::POST, ["inbound"]) => inbound(&app, &body),
        (_, ["health" | "stats" | "messages" | "reset" | "config" | "inbound"]) => {
            sim_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => sim_error(StatusCode::NOT_FOUND, "no such simulator endpoint"),
    }
}

fn update_config(app: &App, body: &Bytes) -> Answer {
    let patch: serde_json::Value = match serde_json::from_slice(body) {
        Ok(patch) => patch,
        Err(error) => return sim_error(StatusCode::BAD_REQUEST, format!("invalid JSON: {error}")),
    };
    match app.reconfigure(|current| current.merged(&patch)) {
        Ok(()) => json(StatusCode::OK, &redacted_config(app)),
        Err(problems) => json(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({"error": problems}),
        ),
    }
}

/// The configuration with the app secret and token values replaced by `***`.
fn redacted_config(app: &App) -> serde_json::Value {
    let live = app.live();
    let mut value = serde_json::to_value(&live.config).unwrap_or_default();
    if live.config.app_secret.is_some() {
        value["app_secret"] = "***".into();
    }
    if let Some(tokens) = value["tokens"].as_object_mut() {
        for token in tokens.values_mut() {
            *token = "***".into();
        }
    }
    let mut revoked: Vec<&String> = live.revoked().iter().collect();
    revoked.sort();
    value["revoked_pages"] = serde_json::json!(revoked);
    value
}

fn inbound(app: &App, body: &Bytes) -> Answer {
    let inbound: Inbound = match serde_json::from_slice(body) {
        Ok(inbound) => inbound,
        Err(error) => {
            return sim_error(StatusCode::BAD_REQUEST, format!("invalid inbound: {error}"));
        }
    };
    if app.live().config.webhook_url.is_none() {
        return sim_error(StatusCode::CONFLICT, "no webhook_url configured");
    }
    let mid = message_id(app.instance, app.state().next_mid());
    let item = Item::Message {
        page: Arc::from(inbound.page_id.as_str()),
        psid: inbound.psid,
        mid: mid.clone(),
        text: inbound.text,
        reference: inbound.reference,
        at_ms: unix_ms(),
    };
    if !app.enqueue(Event::Now(item)) {
        return sim_error(StatusCode::SERVICE_UNAVAILABLE, "webhook queue full");
    }
    json(
        StatusCode::ACCEPTED,
        &serde_json::json!({"mid": mid, "queued": true}),
    )
}

fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}
