//! What a run is given (`SendSpec`, `SegmentInput`) and why it may stop (`ProducerError`):
//! the types the run (`run.rs`), its broker link (`link.rs`) and its record (`checkpoint.rs`)
//! share.

use std::path::PathBuf;
use std::sync::Arc;

use herald_amqp::{AmqpError, AmqpSettings, Topology};
use herald_core::campaign::Campaign;
use herald_store::{Store, StoreError};

use crate::segment::{RowError, SegmentError};

/// Where a run's users come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentInput {
    /// A CSV or JSONL file.
    File(PathBuf),
    /// The store's users on the campaign's page (`segment.source = "store"`).
    Store,
    /// Users given in memory, in order: the recipients of an API-triggered send, each with
    /// their stored profile and the trigger's properties.
    Users(Vec<herald_core::User>),
}

impl SegmentInput {
    /// How the run record names it: the path as given, or `store`.
    pub fn describe(&self) -> String {
        match self {
            Self::File(path) => path.display().to_string(),
            Self::Store => "store".to_owned(),
            Self::Users(users) => format!("trigger ({} recipients)", users.len()),
        }
    }
}

/// Everything a run needs.
pub struct SendSpec {
    /// The validated campaign.
    pub campaign: Arc<Campaign>,
    /// Where the users come from.
    pub segment: SegmentInput,
    /// Resume this run instead of starting a new one.
    pub resume: Option<String>,
    /// Abort on the first malformed row.
    pub strict: bool,
    /// Where and how to connect.
    pub amqp: AmqpSettings,
    /// Exchange and queue names.
    pub topology: Topology,
    /// Where run records live (and the users, for a store segment).
    pub store: Store,
    /// Publish on this process-wide connection instead of opening one for the run.
    pub shared_link: Option<std::sync::Arc<crate::shared::SharedLink>>,
}

/// Why a run stopped before the end of its segment.
#[derive(Debug, thiserror::Error)]
pub enum ProducerError {
    /// The segment cannot be read at all.
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// `--strict` and a row is malformed.
    #[error("malformed row ({0}); stopped because of --strict")]
    Malformed(RowError),
    /// The store (run records, or the audience) failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// `--resume` with a run the store does not have.
    #[error("no run {run_id} in the store (is HERALD_DATABASE_URL the one it was started with?)")]
    UnknownRun {
        /// The run asked for.
        run_id: String,
    },
    /// `--resume` with a cancelled run.
    #[error("run {run_id} was cancelled; start a new run instead of resuming it")]
    Cancelled {
        /// The run.
        run_id: String,
    },
    /// The run to resume belongs to another campaign.
    #[error("run {run_id} belongs to campaign {expected}, not {found}")]
    WrongCampaign {
        /// The run.
        run_id: String,
        /// Its campaign.
        expected: String,
        /// The campaign given now.
        found: String,
    },
    /// The broker refused or lost messages and could not be recovered.
    #[error("broker: {0}")]
    Amqp(Box<AmqpError>),
}

impl From<AmqpError> for ProducerError {
    fn from(error: AmqpError) -> Self {
        Self::Amqp(Box::new(error))
    }
}
