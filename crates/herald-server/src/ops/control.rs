//! Pause, resume and cancel a run, and resume a halted page: one `ControlMessage` published to
//! `herald.control` and confirmed by the broker. The stream behind the exchange keeps it, so
//! every worker (also one started later) acts on it within seconds; what workers do with it is
//! herald-worker's.
//!
//! When the store knows the run, its state follows (`running`, `paused`, `cancelled`), and a
//! command its state forbids (resuming a cancelled run) is refused before anything is
//! published. A run the store does not know (started before runs moved to the store, or by
//! another tool) still gets the command: workers act on run ids, not on store rows.

use herald_amqp::{Headers, Publisher};
use herald_core::{ControlAction, ControlMessage};
use herald_store::{RunState, Store, StoreError};
use serde::Serialize;

use crate::ops::{Broker, ErrorKind, OpsError};

/// What to ask of the fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Hold the run's jobs until resumed.
    PauseRun(String),
    /// Send the run's jobs again.
    ResumeRun(String),
    /// End the run; its unsent jobs become `cancelled`. Final.
    CancelRun(String),
    /// Send for a halted page again (e.g. after its token was replaced everywhere).
    ResumePage(String),
}

/// What was published, and the run's state afterwards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Applied {
    /// `pause_run`, `resume_run`, `cancel_run` or `resume_page`.
    pub action: &'static str,
    /// The run, for run commands.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The page, for page commands.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_id: Option<String>,
    /// The run's state in the store afterwards; `None` when the store does not know the run
    /// (the command was published all the same) or for page commands.
    pub state: Option<RunState>,
}

impl Applied {
    /// `pause_run: run r1` / `resume_page: page 1000000001`, the CLI's line.
    pub fn summary(&self) -> String {
        match (&self.run_id, &self.page_id) {
            (Some(run), _) => format!("{}: run {run}", self.action),
            (None, Some(page)) => format!("{}: page {page}", self.action),
            (None, None) => self.action.to_owned(),
        }
    }
}

/// Validates `command`, checks the run's state when `store` knows it, publishes the control
/// message, waits for the broker's confirm and then records the run's new state.
pub async fn send(
    broker: &Broker,
    store: Option<&Store>,
    command: Command,
) -> Result<Applied, OpsError> {
    let (action, target) = match &command {
        Command::PauseRun(run) => (ControlAction::PauseRun, Target::Run(run, RunState::Paused)),
        Command::ResumeRun(run) => (
            ControlAction::ResumeRun,
            Target::Run(run, RunState::Running),
        ),
        Command::CancelRun(run) => (
            ControlAction::CancelRun,
            Target::Run(run, RunState::Cancelled),
        ),
        Command::ResumePage(page) => (ControlAction::ResumePage, Target::Page(page)),
    };
    let message = match target {
        Target::Run(run_id, _) if run_id.trim().is_empty() => {
            return Err(OpsError::invalid(
                ErrorKind::Usage,
                "run_id",
                "the run id must not be blank",
            ));
        }
        Target::Run(run_id, _) => ControlMessage::for_run(action, run_id),
        Target::Page(page_id) if page_id.is_empty() || !is_digits(page_id) => {
            return Err(OpsError::invalid(
                ErrorKind::Usage,
                "page_id",
                "a Facebook Page id is digits only",
            ));
        }
        Target::Page(page_id) => ControlMessage::for_page(
            action,
            page_id,
            Some("resumed by an operator (CLI or admin API)".to_owned()),
        ),
    };
    let known = match (store, target) {
        (Some(store), Target::Run(run_id, wanted)) => check(store, run_id, wanted).await?,
        _ => false,
    };
    publish(broker, &message).await?;
    let (run_id, page_id, state) = match target {
        Target::Run(run_id, wanted) => {
            let state = match (store, known) {
                (Some(store), true) => Some(record(store, run_id, wanted).await?),
                _ => None,
            };
            (Some(run_id.to_owned()), None, state)
        }
        Target::Page(page_id) => (None, Some(page_id.to_owned()), None),
    };
    Ok(Applied {
        action: action.as_str(),
        run_id,
        page_id,
        state,
    })
}

#[derive(Clone, Copy)]
enum Target<'a> {
    Run(&'a str, RunState),
    Page(&'a str),
}

/// Whether the store knows the run; an error when its state forbids becoming `wanted`.
async fn check(store: &Store, run_id: &str, wanted: RunState) -> Result<bool, OpsError> {
    let Some(run) = store.load_run(run_id).await? else {
        return Ok(false);
    };
    let final_state = matches!(run.state, RunState::Cancelled | RunState::Complete);
    if final_state && run.state != wanted {
        return Err(OpsError::Conflict(format!(
            "run {run_id} is {}; it cannot become {wanted}",
            run.state
        )));
    }
    Ok(true)
}

/// Records the new state; when another command won a race to a final state, reports that one.
async fn record(store: &Store, run_id: &str, wanted: RunState) -> Result<RunState, OpsError> {
    match store.set_run_status(run_id, wanted).await {
        Ok(()) => Ok(wanted),
        Err(StoreError::Transition { from, .. }) => Ok(from),
        Err(error) => Err(error.into()),
    }
}

async fn publish(broker: &Broker, message: &ControlMessage) -> Result<(), OpsError> {
    let connection = broker.connect().await?;
    let published = async {
        // Idempotent, and makes sure the control log exists to keep the command.
        broker.topology.declare(&connection).await?;
        let publisher = Publisher::open(&connection, 1).await?;
        publisher
            .publish(
                &broker.topology.control_exchange(),
                "",
                &message.to_vec(),
                Headers::new(),
            )
            .await?
            .await?;
        publisher.close().await
    }
    .await;
    let _ = connection.close().await;
    published.map_err(OpsError::from)
}

fn is_digits(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_digit())
}
