//! `ControlMessage` v1: one operator or worker command on `herald.control` (pause, resume or cancel
//! a run; halt or resume a page), kept in the `herald.control.log` stream so a worker that starts
//! later replays the history (ARCHITECTURE.md, "Topology"). It owns the wire shape and what makes a
//! message well-formed; folding the history into "what is paused now" is the worker's business.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The wire version this build writes and reads.
pub const CONTROL_VERSION: u32 = 1;

/// What a control message asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlAction {
    /// Stop sending the run's jobs; they wait in the retry tiers until resumed.
    PauseRun,
    /// Send the run's jobs again.
    ResumeRun,
    /// End the run: its unsent jobs become `cancelled` results. Final: a later resume is ignored.
    CancelRun,
    /// Stop sending for the page (dead token, policy block); its jobs wait in the retry tiers.
    HaltPage,
    /// Send for the page again (token replaced, or an operator decided so).
    ResumePage,
    /// Changes nothing: a worker publishes one with a unique `reason` and reads the log until
    /// it sees it, so it knows it has replayed every command issued before it started.
    Marker,
}

impl ControlAction {
    /// Bounded label for logs and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PauseRun => "pause_run",
            Self::ResumeRun => "resume_run",
            Self::CancelRun => "cancel_run",
            Self::HaltPage => "halt_page",
            Self::ResumePage => "resume_page",
            Self::Marker => "marker",
        }
    }

    /// What the action needs to name: a run, a page, or nothing (`Marker`).
    fn needs(self) -> Option<&'static str> {
        match self {
            Self::PauseRun | Self::ResumeRun | Self::CancelRun => Some("run_id"),
            Self::HaltPage | Self::ResumePage => Some("page_id"),
            Self::Marker => None,
        }
    }
}

/// One command, as published to `herald.control`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlMessage {
    /// Wire format version; `CONTROL_VERSION`.
    pub v: u32,
    /// What to do.
    pub action: ControlAction,
    /// The run, for run actions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The page, for page actions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_id: Option<String>,
    /// Why, for people reading the log (e.g. "graph error 190/460"). Never holds a token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it was issued.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// What a control message is about, once validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlTarget<'a> {
    /// A campaign run id.
    Run(&'a str),
    /// A Facebook Page id.
    Page(&'a str),
    /// Nothing: a `Marker`.
    Nothing,
}

/// Why bytes on the control stream are not a usable command.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Not JSON, or not this shape (including an unknown action).
    #[error("not a control message: {0}")]
    Malformed(#[from] serde_json::Error),
    /// A version this build does not read.
    #[error("control message version {0} is not supported (this build reads {CONTROL_VERSION})")]
    Version(u32),
    /// A run action without `run_id` or a page action without `page_id`.
    #[error("{action} needs a non-empty {field}")]
    MissingTarget {
        /// The action.
        action: &'static str,
        /// The missing field.
        field: &'static str,
    },
}

impl ControlMessage {
    /// A run command issued now.
    pub fn for_run(action: ControlAction, run_id: &str) -> Self {
        Self::new(action, Some(run_id.to_owned()), None)
    }

    /// A page command issued now, with a reason for the log.
    pub fn for_page(action: ControlAction, page_id: &str, reason: Option<String>) -> Self {
        let mut message = Self::new(action, None, Some(page_id.to_owned()));
        message.reason = reason;
        message
    }

    /// A marker carrying `id` (unique to its publisher) in `reason`.
    pub fn marker(id: &str) -> Self {
        let mut message = Self::new(ControlAction::Marker, None, None);
        message.reason = Some(id.to_owned());
        message
    }

    fn new(action: ControlAction, run_id: Option<String>, page_id: Option<String>) -> Self {
        Self {
            v: CONTROL_VERSION,
            action,
            run_id,
            page_id,
            reason: None,
            at: OffsetDateTime::now_utc(),
        }
    }

    /// Parses and validates one message from the control stream.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, ControlError> {
        let message: Self = serde_json::from_slice(bytes)?;
        if message.v != CONTROL_VERSION {
            return Err(ControlError::Version(message.v));
        }
        message.target()?;
        Ok(message)
    }

    /// The run or page this message is about.
    pub fn target(&self) -> Result<ControlTarget<'_>, ControlError> {
        let Some(field) = self.action.needs() else {
            return Ok(ControlTarget::Nothing);
        };
        let value = if field == "run_id" {
            &self.run_id
        } else {
            &self.page_id
        };
        match value.as_deref().filter(|id| !id.trim().is_empty()) {
            Some(id) if field == "run_id" => Ok(ControlTarget::Run(id)),
            Some(id) => Ok(ControlTarget::Page(id)),
            None => Err(ControlError::MissingTarget {
                action: self.action.as_str(),
                field,
            }),
        }
    }

    /// The JSON bytes to publish.
    pub fn to_vec(&self) -> Vec<u8> {
        // A struct of strings, an enum and a timestamp always serialises.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_validates() {
        let check = |text: &str, expected: Result<ControlTarget<'_>, &str>| {
            let parsed = ControlMessage::from_slice(text.as_bytes());
            match (&parsed, expected) {
                (Ok(message), Ok(target)) => assert_eq!(message.target().unwrap(), target),
                (Err(error), Err(kind)) => {
                    let got = match error {
                        ControlError::Malformed(_) => "malformed",
                        ControlError::Version(_) => "version",
                        ControlError::MissingTarget { .. } => "target",
                    };
                    assert_eq!(got, kind, "{text}");
                }
                _ => panic!("{text}: got {parsed:?}"),
            }
        };
        let at = r#""at":"2026-01-02T03:04:05Z""#;
        check(
            &format!(r#"{{"v":1,"action":"pause_run","run_id":"r1",{at}}}"#),
            Ok(ControlTarget::Run("r1")),
        );
        check(
            &format!(r#"{{"v":1,"action":"halt_page","page_id":"42","reason":"190",{at}}}"#),
            Ok(ControlTarget::Page("42")),
        );
        check(
            &format!(r#"{{"v":1,"action":"resume_page","page_id":"42","extra":1,{at}}}"#),
            Ok(ControlTarget::Page("42")),
        );
        check(
            &format!(r#"{{"v":1,"action":"cancel_run","page_id":"42",{at}}}"#),
            Err("target"),
        );
        check(
            &format!(r#"{{"v":1,"action":"halt_page","page_id":" ",{at}}}"#),
            Err("target"),
        );
        check(
            &format!(r#"{{"v":2,"action":"pause_run","run_id":"r",{at}}}"#),
            Err("version"),
        );
        check(
            &format!(r#"{{"v":1,"action":"explode","run_id":"r",{at}}}"#),
            Err("malformed"),
        );
        check("not json", Err("malformed"));
        check(
            &format!(r#"{{"v":1,"action":"marker","reason":"w1",{at}}}"#),
            Ok(ControlTarget::Nothing),
        );

        let message = ControlMessage::for_page(ControlAction::HaltPage, "7", Some("190".into()));
        let back = ControlMessage::from_slice(&message.to_vec()).unwrap();
        assert_eq!(back, message);
    }
}
