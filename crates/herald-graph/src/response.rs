//! Turns one Graph HTTP response (status, usage, body bytes) into `Sent` or `SendError`
//! (docs/messenger-platform.md §1.5 success shape, §3.1 error shape). No I/O: the client reads the
//! response, this file only interprets it, and `classify` decides what it means.

use serde_json::{Map, Value};

use crate::Usage;
use crate::classify::{Failure, classify};
use crate::error::{GraphError, SendError};

/// Graph accepted the message.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    /// Graph's `message_id` (opaque: `mid.…` or `m_…`).
    pub message_id: String,
    /// The PSID Graph resolved the recipient to; absent for `user_ref` / phone recipients.
    pub recipient_id: Option<String>,
    /// Usage headers of the response, for the page's rate limiter.
    pub usage: Option<Usage>,
}

/// Interprets a complete response. `secrets` are masked in Graph's message should it echo one.
pub(crate) fn interpret(
    status: u16,
    usage: Option<Usage>,
    body: &[u8],
    attempt: u32,
    secrets: &[&str],
) -> Result<Sent, SendError> {
    let json: Option<Map<String, Value>> = match serde_json::from_slice(body) {
        Ok(Value::Object(object)) => Some(object),
        _ => None,
    };
    // A Graph error wins over the HTTP status, whatever the status (docs/messenger-platform.md
    // §3.1).
    if let Some(error) = json
        .as_ref()
        .and_then(|object| graph_error(object, status, usage, attempt, secrets))
    {
        return Err(SendError::Graph(Box::new(error)));
    }
    if (200..300).contains(&status) {
        let message_id = json
            .as_ref()
            .and_then(|object| string(object, "message_id"));
        return match message_id {
            Some(message_id) => Ok(Sent {
                message_id,
                recipient_id: json
                    .as_ref()
                    .and_then(|object| string(object, "recipient_id")),
                usage,
            }),
            None => {
                let verdict = classify(&Failure::MalformedSuccess, usage.as_ref(), attempt);
                Err(SendError::MalformedSuccess {
                    status,
                    usage,
                    verdict,
                })
            }
        };
    }
    let verdict = classify(&Failure::Http { status }, usage.as_ref(), attempt);
    Err(SendError::Http {
        status,
        usage,
        verdict,
    })
}

/// `{"error": {...}}` with a numeric `code`, classified; `None` for any other body.
fn graph_error(
    object: &Map<String, Value>,
    status: u16,
    usage: Option<Usage>,
    attempt: u32,
    secrets: &[&str],
) -> Option<GraphError> {
    let Value::Object(error) = object.get("error")? else {
        return None;
    };
    let code = number(error.get("code"))?;
    let subcode = number(error.get("error_subcode"));
    let is_transient = error.get("is_transient").and_then(Value::as_bool);
    let message = mask(&string(error, "message").unwrap_or_default(), secrets);
    let failure = Failure::Graph {
        status,
        code,
        subcode,
        is_transient,
        message: &message,
    };
    let verdict = classify(&failure, usage.as_ref(), attempt);
    Some(GraphError {
        status,
        code,
        subcode,
        is_transient,
        message,
        error_type: string(error, "type"),
        fbtrace_id: string(error, "fbtrace_id"),
        usage,
        verdict,
    })
}

/// A non-empty string field.
fn string(object: &Map<String, Value>, key: &str) -> Option<String> {
    match object.get(key)? {
        Value::String(text) if !text.is_empty() => Some(text.clone()),
        _ => None,
    }
}

/// A `u32` sent as a JSON number or, leniently, as a numeric string.
fn number(value: Option<&Value>) -> Option<u32> {
    match value? {
        Value::Number(number) => number.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

/// Replaces every non-blank secret in `text` with `***`.
fn mask(text: &str, secrets: &[&str]) -> String {
    secrets
        .iter()
        .filter(|secret| !secret.trim().is_empty())
        .fold(text.to_owned(), |text, secret| text.replace(secret, "***"))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use herald_core::ErrorClass;

    use super::*;

    /// The parts of an outcome a test compares: Ok(message_id, recipient_id) or
    /// Err(variant kind, code, subcode, class).
    type Shape =
        Result<(String, Option<String>), (&'static str, Option<u32>, Option<u32>, ErrorClass)>;

    fn check(status: u16, body: &str, expected: Shape) {
        let got = match interpret(status, None, body.as_bytes(), 1, &["TOKEN"]) {
            Ok(sent) => Ok((sent.message_id, sent.recipient_id)),
            Err(error) => Err((
                variant(&error),
                error.code(),
                error.subcode(),
                error.verdict().class,
            )),
        };
        assert_eq!(got, expected, "http {status}, body {body}");
    }

    fn variant(error: &SendError) -> &'static str {
        match error {
            SendError::Transport { .. } => "transport",
            SendError::Timeout { .. } => "timeout",
            SendError::Graph(_) => "graph",
            SendError::Http { .. } => "http",
            SendError::MalformedSuccess { .. } => "malformed",
            SendError::Oversize { .. } => "oversize",
        }
    }

    fn sent(message_id: &str, recipient_id: Option<&str>) -> Shape {
        Ok((message_id.to_owned(), recipient_id.map(str::to_owned)))
    }

    #[test]
    fn response_shapes() {
        // docs/messenger-platform.md §1.5 success shapes.
        check(
            200,
            r#"{"recipient_id":"1254477777772919","message_id":"m_AG5Hz2U"}"#,
            sent("m_AG5Hz2U", Some("1254477777772919")),
        );
        check(
            200,
            r#"{"message_id":"mid.1456970487936:c34767dfe57ee6e339"}"#,
            sent("mid.1456970487936:c34767dfe57ee6e339", None),
        );
        check(
            200,
            r#"{"recipient_id":"1"}"#,
            Err(("malformed", None, None, ErrorClass::Invalid)),
        );
        check(200, "", Err(("malformed", None, None, ErrorClass::Invalid)));
        // docs/messenger-platform.md §3.1 error shape; the status does not decide.
        check(
            400,
            r#"{"error":{"message":"Error validating access token","type":"OAuthException","code":190,"error_subcode":460,"is_transient":false,"fbtrace_id":"EJplcsCHuLu"}}"#,
            Err(("graph", Some(190), Some(460), ErrorClass::HaltPage)),
        );
        check(
            500,
            r#"{"error":{"message":"x","code":"10","error_subcode":"2018278"}}"#,
            Err(("graph", Some(10), Some(2_018_278), ErrorClass::DropUser)),
        );
        check(
            200,
            r#"{"error":{"message":"x","code":613}}"#,
            Err(("graph", Some(613), None, ErrorClass::SlowDown)),
        );
        // Bodies that are not Graph errors.
        check(
            502,
            "<html>Bad Gateway</html>",
            Err(("http", None, None, ErrorClass::Retry)),
        );
        check(503, "", Err(("http", None, None, ErrorClass::Retry)));
        check(
            400,
            r#"{"error":"nope"}"#,
            Err(("http", None, None, ErrorClass::Retry)),
        );
        check(
            400,
            r#"{"error":{"message":"no code"}}"#,
            Err(("http", None, None, ErrorClass::Retry)),
        );
    }

    #[test]
    fn graph_error_fields_and_usage_are_kept() {
        let usage = Usage {
            ratio: 1.07,
            regain_access: Some(Duration::from_secs(540)),
        };
        let body = r#"{"error":{"message":"(#613) Calls to this api have exceeded the rate limit. TOKEN","type":"OAuthException","code":613,"is_transient":true,"fbtrace_id":"AbC"}}"#;
        let Err(SendError::Graph(graph)) =
            interpret(400, Some(usage), body.as_bytes(), 1, &["TOKEN", " "])
        else {
            panic!("expected a Graph error");
        };
        assert_eq!(graph.error_type.as_deref(), Some("OAuthException"));
        assert_eq!(graph.fbtrace_id.as_deref(), Some("AbC"));
        assert_eq!(graph.is_transient, Some(true));
        assert_eq!(graph.usage, Some(usage));
        assert_eq!(graph.verdict.retry_after, Some(Duration::from_secs(540)));
        assert!(!graph.message.contains("TOKEN"));
    }
}
