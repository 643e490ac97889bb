//! `OpsError`: why an operation did nothing, or did not finish, in words an operator can act
//! on, with its `ErrorKind` (which the CLI turns into an exit code and the API into an HTTP
//! status). No variant carries a secret, a PSID or a row's text.

use herald_amqp::AmqpError;
use herald_store::StoreError;
use serde::Serialize;

/// One thing wrong with the input: a campaign field, a row, a request field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Where: a field path (`delivery.max_attempts`, `attributes[2].external_id`); empty for the
    /// input as a whole.
    pub path: String,
    /// 1-based line, when the input format gives one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// 1-based column, when the input format gives one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u64>,
    /// What is wrong.
    pub message: String,
}

impl Problem {
    /// A problem at `path`, without a position.
    pub fn at(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            line: None,
            column: None,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(f, "{line}:{column}: ")?,
            (Some(line), None) => write!(f, "line {line}: ")?,
            _ => {}
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// What kind of failure an `OpsError` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input's shape is wrong (exit 64, HTTP 422).
    Usage,
    /// The input's values break a rule (exit 65, HTTP 422).
    Data,
    /// The run does not exist (exit 66, HTTP 404).
    NotFound,
    /// The run's state forbids it (exit 65, HTTP 409).
    Conflict,
    /// The broker or the database is unreachable or failing (exit 69, HTTP 503).
    Unavailable,
    /// Something that should not happen (exit 1, HTTP 500).
    Internal,
}

impl ErrorKind {
    /// The process exit code the CLI uses (sysexits).
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Usage => 64,
            Self::Data | Self::Conflict => 65,
            Self::NotFound => 66,
            Self::Unavailable => 69,
            Self::Internal => 1,
        }
    }
}

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The input is wrong; `problems` lists every issue found. Nothing was done.
    #[error("{message}")]
    Invalid {
        /// A one-line summary.
        message: String,
        /// Every problem, in input order.
        problems: Vec<Problem>,
        /// `Usage` (shape) or `Data` (values).
        kind: ErrorKind,
    },
    /// No such run.
    #[error("no run {run_id} (is HERALD_DATABASE_URL the store the run was started with?)")]
    UnknownRun {
        /// The run asked for.
        run_id: String,
    },
    /// No such stored campaign (or version).
    #[error("no stored campaign {campaign_id}{} (save it with `herald campaigns put FILE`)", .version.map(|v| format!(" version {v}")).unwrap_or_default())]
    UnknownCampaign {
        /// The campaign asked for.
        campaign_id: String,
        /// The version asked for, if one was.
        version: Option<i64>,
    },
    /// No such schedule.
    #[error("no schedule {schedule_id} (is HERALD_DATABASE_URL the store it was created in?)")]
    UnknownSchedule {
        /// The schedule asked for.
        schedule_id: String,
    },
    /// The run's state forbids the operation.
    #[error("{0}")]
    Conflict(String),
    /// A broker failure.
    #[error("broker: {0}")]
    Broker(Box<AmqpError>),
    /// A store failure.
    #[error("store: {0}")]
    Store(Box<StoreError>),
    /// A failure of this process (a thread, a file).
    #[error("{0}")]
    Internal(String),
}

impl OpsError {
    /// An `Invalid` error with one problem and no position.
    pub fn invalid(kind: ErrorKind, path: &str, message: impl Into<String>) -> Self {
        let problem = Problem::at(path, message);
        Self::Invalid {
            message: problem.to_string(),
            problems: vec![problem],
            kind,
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Invalid { kind, .. } => *kind,
            Self::UnknownRun { .. }
            | Self::UnknownSchedule { .. }
            | Self::UnknownCampaign { .. } => ErrorKind::NotFound,
            Self::Conflict(_) => ErrorKind::Conflict,
            Self::Broker(_) => ErrorKind::Unavailable,
            Self::Store(error) => match error.as_ref() {
                StoreError::Invalid { .. } => ErrorKind::Data,
                StoreError::UnknownRun { .. } => ErrorKind::NotFound,
                StoreError::RunExists { .. } | StoreError::Transition { .. } => ErrorKind::Conflict,
                StoreError::Corrupt { .. } => ErrorKind::Internal,
                StoreError::UnsupportedUrl { .. }
                | StoreError::Connect { .. }
                | StoreError::Migrate { .. }
                | StoreError::Query { .. } => ErrorKind::Unavailable,
            },
            Self::Internal(_) => ErrorKind::Internal,
        }
    }

    /// The problems, for `Invalid`; empty otherwise.
    pub fn problems(&self) -> &[Problem] {
        match self {
            Self::Invalid { problems, .. } => problems,
            _ => &[],
        }
    }
}

impl From<AmqpError> for OpsError {
    fn from(error: AmqpError) -> Self {
        Self::Broker(Box::new(error))
    }
}

impl From<StoreError> for OpsError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::UnknownRun { run_id } => Self::UnknownRun { run_id },
            other => Self::Store(Box::new(other)),
        }
    }
}
