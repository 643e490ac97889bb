//! `ledger`: what the store knows of one job's send, for a worker about to send a job that may
//! have gone out already (redelivered after a crash, or retried after an answer that never
//! came): its shown result, if any, and Meta's echo of its message, if any. Either one means
//! the message must not be sent again, except a `dead` result: a replayed dead job is meant to
//! be sent, so only its echo counts.

use herald_store::{Echo, HistoryEntry, Store};
use serde::Serialize;

use crate::ops::OpsError;

/// One job's entry in the send ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerEntry {
    /// The job asked about.
    pub job_id: String,
    /// The result its record shows.
    pub result: Option<HistoryEntry>,
    /// Meta's echo of its message.
    pub echo: Option<Echo>,
    /// True when either says the job is done (a result other than `dead`, or an echo): send
    /// nothing.
    pub settled: bool,
    /// False when records may still be on their way to the store (a queue holds some, or the
    /// webhook refused deliveries lately): an entry that is not settled then proves nothing.
    pub current: bool,
}

/// The ledger entry of `job_id` (both parts empty for a job the store has never heard of).
pub async fn lookup(store: &Store, job_id: &str) -> Result<LedgerEntry, OpsError> {
    let result = store
        .delivery_history(job_id)
        .await?
        .into_iter()
        .find(|entry| entry.shown);
    let echo = store.echo_of(job_id).await?;
    Ok(LedgerEntry {
        job_id: job_id.to_owned(),
        settled: result.as_ref().is_some_and(|shown| shown.status != "dead") || echo.is_some(),
        result,
        echo,
        current: true,
    })
}
