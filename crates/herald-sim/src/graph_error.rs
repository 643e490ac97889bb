//! Graph API error answers: Meta's `{"error":{...}}` JSON (docs/messenger-platform.md §3.1) with
//! the codes, types and messages of its §3.2 table. It owns the wording; deciding *when* to
//! answer is elsewhere.

use std::borrow::Cow;

use hyper::StatusCode;
use rand::Rng;
use serde::Serialize;

use crate::config::PsidOutcome;

/// One Graph error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GraphError {
    pub(crate) status: StatusCode,
    pub(crate) code: u32,
    pub(crate) subcode: Option<u32>,
    pub(crate) kind: &'static str,
    pub(crate) message: Cow<'static, str>,
    pub(crate) transient: Option<bool>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Serialize)]
struct Body<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    code: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_subcode: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    is_transient: Option<bool>,
    fbtrace_id: &'a str,
}

const OAUTH: &str = "OAuthException";
const METHOD: &str = "GraphMethodException";
const API: &str = "FacebookApiException";

impl GraphError {
    fn new(code: u32, subcode: Option<u32>, kind: &'static str, message: &'static str) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code,
            subcode,
            kind,
            message: Cow::Borrowed(message),
            transient: None,
        }
    }

    /// Code 100 for a bad parameter; `message` should start with "(#100)" like Meta's.
    pub(crate) fn param(message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            message: message.into(),
            ..Self::new(100, None, OAUTH, "")
        }
    }

    pub(crate) fn unknown_path(path: &str) -> Self {
        let message = format!("Unknown path components: {path}");
        Self {
            message: message.into(),
            ..Self::new(2500, None, OAUTH, "")
        }
    }

    pub(crate) fn unsupported_method(method: &str) -> Self {
        let message = format!("Unsupported {} request.", method.to_ascii_lowercase());
        Self {
            message: message.into(),
            ..Self::new(100, None, METHOD, "")
        }
    }

    pub(crate) fn missing_token() -> Self {
        Self::new(
            190,
            None,
            OAUTH,
            "An access token is required to request this resource.",
        )
    }

    pub(crate) fn bad_token() -> Self {
        Self::new(
            190,
            None,
            OAUTH,
            "Invalid OAuth access token - Cannot parse access token",
        )
    }

    pub(crate) fn revoked_token() -> Self {
        Self::new(
            190,
            Some(460),
            OAUTH,
            "Error validating access token: The session has been invalidated because the user \
             changed their password or Facebook has changed the session for security reasons.",
        )
    }

    pub(crate) fn proof_missing() -> Self {
        Self::new(
            100,
            None,
            METHOD,
            "API calls from the server require an appsecret_proof argument",
        )
    }

    pub(crate) fn proof_invalid() -> Self {
        Self::new(
            100,
            None,
            METHOD,
            "Invalid appsecret_proof provided in the API argument",
        )
    }

    pub(crate) fn rate_limited() -> Self {
        Self::new(
            613,
            None,
            OAUTH,
            "(#613) Calls to this api have exceeded the rate limit.",
        )
    }

    pub(crate) fn transient() -> Self {
        Self {
            transient: Some(true),
            ..Self::new(
                2,
                None,
                OAUTH,
                "An unexpected error has occurred. Please retry your request later.",
            )
        }
    }

    /// A 5xx answer with a body: code 1 (unknown error) or code 2 (temporary).
    pub(crate) fn server(code_two: bool) -> Self {
        let inner = if code_two {
            Self::transient()
        } else {
            Self::new(1, None, OAUTH, "An unknown error occurred")
        };
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            ..inner
        }
    }

    /// The answer a scripted recipient outcome produces; `None` for outcomes that may succeed.
    pub(crate) fn for_outcome(outcome: &PsidOutcome) -> Option<Self> {
        Some(match outcome {
            PsidOutcome::Unavailable => {
                Self::new(551, None, API, "This person isn't available right now.")
            }
            PsidOutcome::OutsideWindow => Self::new(
                10,
                Some(2018278),
                OAUTH,
                "(#10) This message is sent outside of allowed window.",
            ),
            PsidOutcome::NoMatchingUser => {
                Self::new(100, Some(2018001), OAUTH, "(#100) No matching user found")
            }
            PsidOutcome::NotAvailable => Self::new(
                200,
                Some(1545041),
                OAUTH,
                "(#200) Message Not Sent: This person isn't available right now.",
            ),
            PsidOutcome::TokenRevoked => Self::revoked_token(),
            PsidOutcome::FailFirst | PsidOutcome::LoseAnswer => return None,
            PsidOutcome::Error { code, subcode } => Self {
                message: format!("(#{code}) Simulated error").into(),
                ..Self::new(*code, *subcode, OAUTH, "")
            },
        })
    }

    /// The JSON body, with a fresh `fbtrace_id`.
    pub(crate) fn body(&self) -> Vec<u8> {
        let trace = fbtrace_id();
        let envelope = Envelope {
            error: Body {
                message: &self.message,
                kind: self.kind,
                code: self.code,
                error_subcode: self.subcode,
                is_transient: self.transient,
                fbtrace_id: std::str::from_utf8(&trace).unwrap_or("A"),
            },
        };
        serde_json::to_vec(&envelope).unwrap_or_default()
    }
}

/// An 11-character id like Meta's (`EJplcsCHuLu`).
fn fbtrace_id() -> [u8; 11] {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
    let mut rng = rand::rng();
    let mut out = [0u8; 11];
    for byte in &mut out {
        *byte = ALPHABET[rng.random_range(0..ALPHABET.len())];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(error: GraphError, expected: serde_json::Value) {
        let mut actual: serde_json::Value = serde_json::from_slice(&error.body()).unwrap();
        let trace = actual["error"]
            .as_object_mut()
            .unwrap()
            .remove("fbtrace_id")
            .unwrap();
        assert_eq!(trace.as_str().unwrap().len(), 11);
        assert_eq!(actual, expected);
    }

    #[test]
    fn bodies_have_meta_shape() {
        check(
            GraphError::revoked_token(),
            serde_json::json!({"error": {"message": GraphError::revoked_token().message,
                "type": "OAuthException", "code": 190, "error_subcode": 460}}),
        );
        check(
            GraphError::proof_missing(),
            serde_json::json!({"error": {"type": "GraphMethodException", "code": 100,
                "message": "API calls from the server require an appsecret_proof argument"}}),
        );
        check(
            GraphError::transient(),
            serde_json::json!({"error": {"type": "OAuthException", "code": 2, "is_transient": true,
                "message": "An unexpected error has occurred. Please retry your request later."}}),
        );
    }
}
