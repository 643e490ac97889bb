//! Counting a run's terminal results as the store's results consumer settles them: one per job
//! id (delivery is at least once, so repeats are recognised and not counted twice), by status,
//! skipped by reason, failed by Graph code, and when the first attempts happened (for the
//! achieved rate). Results of other runs are acknowledged and ignored.

use std::collections::{BTreeMap, HashSet};

use herald_core::{DeliveryResult, ResultStatus};
use time::OffsetDateTime;

/// What the results of one run add up to.
#[derive(Debug)]
pub(crate) struct Tally {
    run_id: String,
    seen: HashSet<String>,
    /// Distinct results by status (`sent`, `failed`, `skipped`, `dead`, ...).
    pub(crate) by_status: BTreeMap<&'static str, u64>,
    /// `skipped` results by reason (`blank_psid`, `outside_window`, ...).
    pub(crate) skipped: BTreeMap<String, u64>,
    /// `failed` and `dead` results by status and Graph code (or error class when there is
    /// none): `failed.551`, `dead.2`.
    pub(crate) failed: BTreeMap<String, u64>,
    /// Sent results that needed more than one Graph call.
    pub(crate) retried: u64,
    /// Results that made at least one Graph call: one first attempt each.
    pub(crate) graph_jobs: u64,
    /// When the earliest and the latest one-attempt outcomes were decided.
    pub(crate) first_attempts: Option<(OffsetDateTime, OffsetDateTime)>,
    /// Results seen again (the same job id).
    pub(crate) repeats: u64,
}

impl Tally {
    pub(crate) fn new(run_id: &str) -> Self {
        Self {
            run_id: run_id.to_owned(),
            seen: HashSet::new(),
            by_status: BTreeMap::new(),
            skipped: BTreeMap::new(),
            failed: BTreeMap::new(),
            retried: 0,
            graph_jobs: 0,
            first_attempts: None,
            repeats: 0,
        }
    }

    /// Distinct results of this run so far.
    pub(crate) fn total(&self) -> u64 {
        self.seen.len() as u64
    }

    pub(crate) fn count(&self, status: ResultStatus) -> u64 {
        self.by_status.get(status.as_str()).copied().unwrap_or(0)
    }

    /// Counts one result; false when it belongs to another run or was counted already.
    pub(crate) fn add(&mut self, result: &DeliveryResult) -> bool {
        if result.run_id != self.run_id {
            return false;
        }
        if !self.seen.insert(result.job_id.clone()) {
            self.repeats += 1;
            return false;
        }
        *self.by_status.entry(result.status.as_str()).or_default() += 1;
        let error = result.error.as_ref();
        match result.status {
            ResultStatus::Skipped => {
                let message = error.map_or("", |e| e.message.as_str());
                let reason = message
                    .split_once(':')
                    .map_or(message, |(reason, _)| reason);
                *self.skipped.entry(reason.to_owned()).or_default() += 1;
            }
            ResultStatus::Failed | ResultStatus::Dead => {
                let code = match (error.and_then(|e| e.code), error.and_then(|e| e.class)) {
                    (Some(code), _) => code.to_string(),
                    (None, Some(class)) => class.as_str().to_owned(),
                    (None, None) => "unknown".to_owned(),
                };
                let key = format!("{}.{code}", result.status.as_str());
                *self.failed.entry(key).or_default() += 1;
            }
            ResultStatus::Sent if result.attempts > 1 => self.retried += 1,
            _ => {}
        }
        if result.attempts >= 1 {
            self.graph_jobs += 1;
        }
        if result.attempts == 1 {
            let at = result.finished_at;
            self.first_attempts = Some(match self.first_attempts {
                None => (at, at),
                Some((first, last)) => (first.min(at), last.max(at)),
            });
        }
        true
    }
}
