//! `SendError`: every way a send can fail, each carrying the `Verdict` decided where the
//! failure was seen (see `classify`). Owns the error's shape, labels and its `ErrorInfo`;
//! it never holds the request URL, so it can never print the page token or app secret.

use std::error::Error as _;
use std::fmt;

use herald_core::{ErrorInfo, Verdict};

use crate::Usage;

/// A failed send.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No HTTP response: DNS, connect, TLS or I/O error. The URL has been stripped.
    #[error("could not reach the graph api")]
    Transport {
        /// The underlying error, without the request URL.
        #[source]
        source: reqwest::Error,
        /// What to do next.
        verdict: Verdict,
    },
    /// The connect or request timeout fired. The URL has been stripped.
    #[error("graph api did not answer in time")]
    Timeout {
        /// The underlying error, without the request URL.
        #[source]
        source: reqwest::Error,
        /// What to do next.
        verdict: Verdict,
    },
    /// Graph answered with an error body (docs/messenger-platform.md §3.1). Boxed to keep `Result`
    /// small.
    #[error("{0}")]
    Graph(Box<GraphError>),
    /// An HTTP error whose body is not a Graph error (proxy page, empty 5xx, ...).
    #[error("graph api answered http {status} without a graph error")]
    Http {
        /// HTTP status.
        status: u16,
        /// Usage headers of the response.
        usage: Option<Usage>,
        /// What to do next.
        verdict: Verdict,
    },
    /// An answer whose body is over `MAX_RESPONSE_BYTES`; it was not read past the cap.
    /// Classified as an unreadable body of its status would be: a 2xx as `MalformedSuccess`,
    /// any other as `Http`.
    #[error("graph api answered http {status} with a body over {max} bytes")]
    Oversize {
        /// HTTP status.
        status: u16,
        /// The cap that was passed.
        max: usize,
        /// Usage headers of the response.
        usage: Option<Usage>,
        /// What to do next.
        verdict: Verdict,
    },
    /// A 2xx answer without a `message_id`: probably delivered, so never resent blindly.
    #[error("graph api answered http {status} without a message_id")]
    MalformedSuccess {
        /// HTTP status.
        status: u16,
        /// Usage headers of the response.
        usage: Option<Usage>,
        /// What to do next.
        verdict: Verdict,
    },
}

/// The fields of a Graph error body, and what it means.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphError {
    /// HTTP status (informational: classification goes by `code`).
    pub status: u16,
    /// Graph `code`.
    pub code: u32,
    /// Graph `error_subcode`.
    pub subcode: Option<u32>,
    /// Graph `is_transient`, when sent.
    pub is_transient: Option<bool>,
    /// Graph `message`, with our token and app secret masked should Graph ever echo them.
    pub message: String,
    /// Graph `type`, e.g. `OAuthException`.
    pub error_type: Option<String>,
    /// Graph's support trace id: log it.
    pub fbtrace_id: Option<String>,
    /// Usage headers of the response.
    pub usage: Option<Usage>,
    /// What to do next.
    pub verdict: Verdict,
}

impl fmt::Display for GraphError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "graph api error {}", self.code)?;
        if let Some(subcode) = self.subcode {
            write!(f, "/{subcode}")?;
        }
        write!(f, " (http {}): {}", self.status, self.message)
    }
}

impl SendError {
    /// What the caller should do next, decided when the error was built.
    pub fn verdict(&self) -> Verdict {
        match self {
            Self::Transport { verdict, .. }
            | Self::Timeout { verdict, .. }
            | Self::Http { verdict, .. }
            | Self::Oversize { verdict, .. }
            | Self::MalformedSuccess { verdict, .. } => *verdict,
            Self::Graph(graph) => graph.verdict,
        }
    }

    /// Bounded metric label (`error_kind`); never message text or a code.
    pub fn kind(&self) -> &'static str {
        use herald_core::ErrorClass;
        match self {
            Self::Transport { .. } => "transport",
            Self::Timeout { .. } => "timeout",
            Self::Http { .. } => "http_status",
            Self::MalformedSuccess { .. } => "malformed_response",
            Self::Oversize { .. } => "oversize_response",
            Self::Graph(graph) => match graph.verdict.class {
                ErrorClass::Retry => "graph_transient",
                ErrorClass::SlowDown => "throttled",
                ErrorClass::DropUser => "user_unavailable",
                ErrorClass::HaltPage => "page_blocked",
                ErrorClass::Invalid => "rejected",
            },
        }
    }

    /// True when Graph may have accepted the message although no answer said so: the request
    /// was (or may have been) written before the connection failed or the timeout fired. Only
    /// a failure to connect proves it never left. Resending such a job risks a duplicate.
    pub fn may_have_arrived(&self) -> bool {
        match self {
            Self::Transport { source, .. } | Self::Timeout { source, .. } => !source.is_connect(),
            Self::Graph(_)
            | Self::Http { .. }
            | Self::Oversize { .. }
            | Self::MalformedSuccess { .. } => false,
        }
    }

    /// Graph `code`, when Graph answered with an error body.
    pub fn code(&self) -> Option<u32> {
        self.graph().map(|graph| graph.code)
    }

    /// Graph `error_subcode`, when present.
    pub fn subcode(&self) -> Option<u32> {
        self.graph().and_then(|graph| graph.subcode)
    }

    /// HTTP status, when a response arrived.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Transport { .. } | Self::Timeout { .. } => None,
            Self::Http { status, .. }
            | Self::Oversize { status, .. }
            | Self::MalformedSuccess { status, .. } => Some(*status),
            Self::Graph(graph) => Some(graph.status),
        }
    }

    /// Usage headers of the response, when one arrived and carried them.
    pub fn usage(&self) -> Option<&Usage> {
        match self {
            Self::Transport { .. } | Self::Timeout { .. } => None,
            Self::Http { usage, .. }
            | Self::Oversize { usage, .. }
            | Self::MalformedSuccess { usage, .. } => usage.as_ref(),
            Self::Graph(graph) => graph.usage.as_ref(),
        }
    }

    /// The Graph error details, when Graph answered with an error body.
    pub fn graph(&self) -> Option<&GraphError> {
        match self {
            Self::Graph(graph) => Some(graph),
            Self::Transport { .. }
            | Self::Timeout { .. }
            | Self::Http { .. }
            | Self::Oversize { .. }
            | Self::MalformedSuccess { .. } => None,
        }
    }

    /// The `error` of a `DeliveryResult`: Graph's message for Graph errors, otherwise this
    /// error and its sources (none of which holds the URL).
    pub fn error_info(&self) -> ErrorInfo {
        let message = match self {
            Self::Graph(graph) if !graph.message.is_empty() => graph.message.clone(),
            other => chain_text(other),
        };
        ErrorInfo {
            code: self.code(),
            subcode: self.subcode(),
            class: Some(self.verdict().class),
            message,
            fbtrace_id: self.graph().and_then(|graph| graph.fbtrace_id.clone()),
        }
    }
}

impl From<&SendError> for ErrorInfo {
    fn from(error: &SendError) -> Self {
        error.error_info()
    }
}

/// `error: source: source ...`, one line.
pub(crate) fn chain_text(error: &SendError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
