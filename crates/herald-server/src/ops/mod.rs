//! The operations the CLI and the admin API share, one function per operation (ARCHITECTURE.md,
//! Invariants: "the CLI and the API share one code path per operation"): start a campaign run
//! now or as a schedule, a run's status, pause / resume / cancel a run and resume a page, list
//! and replay dead letters, import users from a CSV or JSONL stream, Braze-style
//! `/users/track`, stored campaigns, their API-triggered sends and the days of action-based
//! ones, and minting signed refs.
//!
//! Every function takes what it needs explicitly (a `Store`, a `Broker`) and returns plain data
//! (serialisable, documented in `openapi.json`) or an `OpsError` that says what went wrong and
//! what kind of failure it is. How to show it (a table, JSON, an exit code, an HTTP status) is
//! the caller's job: `herald-cli/src/commands/` and `api/`.

pub mod campaigns;
pub mod control;
pub mod dead;
mod error;
pub mod launch;
pub mod ledger;
pub mod refs;
pub mod runs;
pub mod schedules;
pub mod start_key;
pub mod status;
pub mod track;
pub mod trigger;
pub mod trigger_days;
pub mod users;

use herald_amqp::{AmqpSettings, Topology};

pub use error::{ErrorKind, OpsError, Problem};

/// Where the broker is and which exchange and queue names to use.
#[derive(Debug, Clone)]
pub struct Broker {
    /// How to connect.
    pub amqp: AmqpSettings,
    /// Exchange and queue names.
    pub topology: Topology,
}

impl Broker {
    /// Connects once (with the settings' bounded retries).
    pub(crate) async fn connect(&self) -> Result<herald_amqp::Connection, OpsError> {
        herald_amqp::connect(&self.amqp)
            .await
            .map_err(OpsError::from)
    }
}
