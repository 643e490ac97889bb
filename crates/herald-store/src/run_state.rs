//! `RunState`: running, paused, cancelled or complete, and which states a run may move to
//! each from. Its own file because both the run records (`runs.rs`) and the errors that refuse
//! a transition (`error.rs`) name it.

use std::fmt;

use serde::Serialize;

/// The state of a run. `Cancelled` and `Complete` are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Publishing or waiting for results.
    Running,
    /// Paused by an operator; resumable.
    Paused,
    /// Cancelled by an operator.
    Cancelled,
    /// Every job has its result.
    Complete,
}

impl RunState {
    const ALL: [Self; 4] = [Self::Running, Self::Paused, Self::Cancelled, Self::Complete];

    /// The stored and displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Cancelled => "cancelled",
            Self::Complete => "complete",
        }
    }

    /// The state named `name`, if any.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == name)
    }

    /// The states a run may be in for it to become `self` (including `self`: a repeat is a
    /// no-op, not an error).
    pub(crate) fn allowed_from(self) -> &'static str {
        match self {
            Self::Running | Self::Paused => "('running', 'paused')",
            Self::Cancelled => "('running', 'paused', 'cancelled')",
            Self::Complete => "('running', 'paused', 'complete')",
        }
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
