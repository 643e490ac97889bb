//! `ErrorClass`: what a failed send means for the job, the user and the page (ARCHITECTURE.md,
//! "Error classes"; the table is docs/messenger-platform.md §3.2). herald-graph decides the
//! class; the worker acts on it; results carry it.

use std::time::Duration;

/// The class of a failed Graph API call, and so what happens next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Transient: send the same request again later with backoff.
    Retry,
    /// Throttled: retry later *and* shrink the page's rate.
    SlowDown,
    /// Permanent for this user in this campaign: `failed` result, no retry.
    DropUser,
    /// The page cannot send (dead token, policy block): stop the page, keep its jobs waiting.
    HaltPage,
    /// Our request or configuration is wrong: `failed` result, no retry, loud log.
    Invalid,
}

impl ErrorClass {
    /// Bounded label for metrics and the `error.class` field of results.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Retry => "retry",
            Self::SlowDown => "slow_down",
            Self::DropUser => "drop_user",
            Self::HaltPage => "halt_page",
            Self::Invalid => "invalid",
        }
    }

    /// Whether a job that failed with this class should be attempted again.
    pub fn is_retryable(self) -> bool {
        match self {
            Self::Retry | Self::SlowDown | Self::HaltPage => true,
            Self::DropUser | Self::Invalid => false,
        }
    }
}

/// What the caller should do after a failed attempt, with an optional floor on the wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// The class of the failure.
    pub class: ErrorClass,
    /// The earliest time to try again (e.g. Meta's `estimated_time_to_regain_access`).
    pub retry_after: Option<Duration>,
}
