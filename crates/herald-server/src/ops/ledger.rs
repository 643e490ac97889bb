//! `ledger`: what the store knows of one job's send, for a worker about to send a job that may
//! have gone out already (redelivered after a crash, or retried after an answer that never
//! came): its shown result, if any, and Meta's echo of its message, if any. Either one means
//! the message must not be sent again, except a `dead` result: a replayed dead job is meant to
//! be sent, so only its echo counts.

use std::time::Duration;

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

/// How long a granted claim keeps other copies of the job from sending: far longer than a
/// worker takes from its claim to its Graph call (pacing holds a job at most 10 s before it
/// goes back to a retry tier).
pub const CLAIM_LEASE: Duration = Duration::from_secs(60);

/// The answer to a claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Claim {
    /// The job claimed.
    pub job_id: String,
    /// True when the caller may send the job now.
    pub granted: bool,
    /// True when a result or an echo already settles the job (never granted then).
    pub settled: bool,
}

/// Claims the send of `job_id` for `holder` (`Store::claim_send`), unless the job is settled.
pub async fn claim(store: &Store, job_id: &str, holder: &str) -> Result<Claim, OpsError> {
    let entry = lookup(store, job_id).await?;
    let granted = !entry.settled && store.claim_send(job_id, holder, CLAIM_LEASE).await?;
    Ok(Claim {
        job_id: job_id.to_owned(),
        granted,
        settled: entry.settled,
    })
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
