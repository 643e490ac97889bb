//! The results consumer: consumes `<prefix>.results.store` (every `DeliveryResult` the producer
//! and the workers publish) and records them with `Batch::record_results`, many per store
//! transaction, acking after the commit (`consume.rs`). A job's record shows its latest
//! terminal result and `sent` is final (`herald-store`'s `deliveries.rs`), so a redelivered
//! result changes nothing and is counted as a duplicate (and kept in `delivery_history`), while
//! a replayed job's later result replaces its `dead`. Bytes that are not a `DeliveryResult` v1 go to `<prefix>.dead` with the reason; a
//! store failure keeps the results unacked and retries them.
//!
//! A result for a run the store has no record of is stored, and warned about once per run: it
//! almost always means the run was started against another store (a `campaign send` whose
//! `HERALD_DATABASE_URL` differs from serve's), and its `campaign status` would never move.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use herald_amqp::{AmqpSettings, Headers, Topology};
use herald_core::{ControlMessage, DeliveryResult, ResultStatus};
use herald_store::{Batch, Store, StoreError};
use herald_telemetry::Metrics;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::ConsumeError;
use crate::consume::{self, Wiring};
use crate::fires::is_day_run;
use crate::freshness::InFlight;
use crate::handler::Entry;
use crate::handler::Handler;

/// Run ids remembered as checked (known, or warned about) before the set starts over.
const RUNS_REMEMBERED: usize = 10_000;

/// Called, after the commit, with every result the consumer stored or found stored already
/// (so a redelivered result is seen again): `herald run` counts its run's results with it.
pub type ResultObserver = Arc<dyn Fn(&DeliveryResult) + Send + Sync>;

/// Consumes `<prefix>.results.store` into the store until `shutdown` is cancelled; reconnects.
/// Returns an error only for a broker failure that reconnecting cannot fix.
pub async fn run_results(
    store: Store,
    amqp: AmqpSettings,
    topology: Topology,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> Result<(), ConsumeError> {
    run_results_observed(store, amqp, topology, metrics, shutdown, None).await
}

/// `run_results`, telling `observer` about every result it settles.
pub async fn run_results_observed(
    store: Store,
    amqp: AmqpSettings,
    topology: Topology,
    metrics: Metrics,
    shutdown: CancellationToken,
    observer: Option<ResultObserver>,
) -> Result<(), ConsumeError> {
    let wiring = Wiring {
        amqp,
        topology,
        metrics,
        shutdown,
    };
    run_results_tracked(store, wiring, observer, InFlight::new()).await
}

/// `run_results_observed`, counting the deliveries in hand in `in_flight` (for the send ledger).
pub(crate) async fn run_results_tracked(
    store: Store,
    wiring: Wiring,
    observer: Option<ResultObserver>,
    in_flight: Arc<InFlight>,
) -> Result<(), ConsumeError> {
    let results = Results {
        store,
        metrics: wiring.metrics.clone(),
        checked_runs: Mutex::new(HashSet::new()),
        observer,
        in_flight,
    };
    consume::run(results, wiring).await
}

struct Results {
    store: Store,
    metrics: Metrics,
    /// Runs already looked up in the store (found, or warned about).
    checked_runs: Mutex<HashSet<String>>,
    observer: Option<ResultObserver>,
    in_flight: Arc<InFlight>,
}

/// What a committed batch of results did.
pub(crate) struct Recorded {
    /// Status of each result stored new.
    new: Vec<&'static str>,
    duplicates: u64,
    /// The batch's results, for the observer (empty without one).
    observed: Vec<DeliveryResult>,
    /// Seconds from event to send of each new `sent` result of a triggered campaign.
    trigger_latencies: Vec<f64>,
}

impl Handler for Results {
    const NAME: &'static str = "results";
    type Item = DeliveryResult;
    type Report = Recorded;

    fn queue(topology: &Topology) -> String {
        topology.results_store_queue()
    }

    fn store(&self) -> &Store {
        &self.store
    }

    fn read(&self, body: &[u8], _headers: &Headers) -> Result<Vec<DeliveryResult>, String> {
        parse_result(body).map(|result| vec![result])
    }

    /// Results of different jobs are independent; the key keeps the results of one job in one
    /// lane, so they are applied in the order they came.
    fn lane_key(result: &DeliveryResult) -> u64 {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        result.job_id.hash(&mut hasher);
        hasher.finish()
    }

    async fn write(
        &self,
        batch: &mut Batch,
        items: &[Entry<DeliveryResult>],
    ) -> Result<(Vec<ControlMessage>, Recorded), StoreError> {
        self.check_runs(batch, items).await?;
        let results: Vec<(&DeliveryResult, Option<&str>)> =
            items.iter().map(|entry| (&entry.item, None)).collect();
        let new = batch.record_results(&results).await?;
        let mut recorded = Recorded {
            new: Vec::with_capacity(new.len()),
            duplicates: 0,
            observed: Vec::new(),
            trigger_latencies: Vec::new(),
        };
        if self.observer.is_some() {
            recorded.observed = items.iter().map(|entry| entry.item.clone()).collect();
        }
        let mut triggered = Vec::new();
        for (entry, new) in items.iter().zip(new) {
            if new {
                recorded.new.push(entry.item.status.as_str());
                if entry.item.status == ResultStatus::Sent && is_day_run(&entry.item.run_id) {
                    triggered.push(&entry.item);
                }
            } else {
                recorded.duplicates += 1;
            }
        }
        if !triggered.is_empty() {
            // From the fire being due (its event, plus the campaign's delay) to Graph's
            // acceptance, for the trigger latency metric.
            let ids: Vec<&str> = triggered.iter().map(|r| r.job_id.as_str()).collect();
            let due: HashMap<String, i64> = batch.fire_due(&ids).await?.into_iter().collect();
            for result in triggered {
                if let Some(at_ms) = due.get(&result.job_id) {
                    let finished_ms = result.finished_at.unix_timestamp_nanos() / 1_000_000;
                    let seconds = (finished_ms - i128::from(*at_ms)) as f64 / 1000.0;
                    recorded.trigger_latencies.push(seconds.max(0.0));
                }
            }
        }
        Ok((Vec::new(), recorded))
    }

    fn in_flight(&self) -> &Arc<InFlight> {
        &self.in_flight
    }

    fn committed(&self, recorded: Recorded) {
        for status in recorded.new {
            self.metrics
                .results_recorded
                .with_label_values(&[status])
                .inc();
        }
        self.metrics.results_duplicates.inc_by(recorded.duplicates);
        for seconds in recorded.trigger_latencies {
            self.metrics
                .trigger_latency
                .with_label_values(&["sent"])
                .observe(seconds);
        }
        if let Some(observer) = &self.observer {
            for result in &recorded.observed {
                observer(result);
            }
        }
    }
}

impl Results {
    /// Warns (once per run and process) about results for runs the store does not know. A
    /// run is claimed as checked before the look-up, so lanes writing at once warn once, and
    /// released again if the look-up fails.
    async fn check_runs(
        &self,
        batch: &mut Batch,
        items: &[Entry<DeliveryResult>],
    ) -> Result<(), StoreError> {
        let claimed: Vec<String> = {
            let mut checked = self
                .checked_runs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if checked.len() + items.len() > RUNS_REMEMBERED {
                checked.clear();
            }
            let mut claimed = Vec::new();
            for entry in items {
                if checked.insert(entry.item.run_id.clone()) {
                    claimed.push(entry.item.run_id.clone());
                }
            }
            claimed
        };
        if claimed.is_empty() {
            return Ok(());
        }
        let run_ids: Vec<&str> = claimed.iter().map(String::as_str).collect();
        let known = match batch.known_runs(&run_ids).await {
            Ok(known) => known,
            Err(error) => {
                let mut checked = self
                    .checked_runs
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                for run_id in &claimed {
                    checked.remove(run_id);
                }
                return Err(error);
            }
        };
        for run_id in claimed.iter().filter(|run_id| !known.contains(*run_id)) {
            self.metrics.results_unknown_run.inc();
            warn!(run_id = %run_id,
                "Results arrive for a run this store has no record of: they are stored, but \
                 the run was probably started against another store, so `campaign status` \
                 there never moves. Point the sender's HERALD_DATABASE_URL at this store.");
        }
        Ok(())
    }
}

/// Reads one `DeliveryResult` v1; `Err` holds why the bytes are poison. The reason names
/// fields, never values (an external id may be personal).
pub(crate) fn parse_result(body: &[u8]) -> Result<DeliveryResult, String> {
    let result: DeliveryResult = herald_core::decode(body)?;
    let blank = [
        ("job_id", &result.job_id),
        ("run_id", &result.run_id),
        ("external_id", &result.external_id),
        ("page_id", &result.page_id),
    ]
    .into_iter()
    .find(|(_, value)| value.trim().is_empty());
    if let Some((field, _)) = blank {
        return Err(format!("not a DeliveryResult v1: `{field}` is blank"));
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poison_reasons() {
        let good = r#"{"v":1,"job_id":"r1:u1","run_id":"r1","campaign_id":"c","external_id":"u1",
            "page_id":"1","status":"sent","message_id":"m","error":null,"attempts":1,
            "finished_at":"2026-11-21T09:00:00Z"}"#;
        assert!(parse_result(good.as_bytes()).is_ok());
        let check = |body: &str, expected: &str| {
            let reason = parse_result(body.as_bytes()).expect_err(body);
            assert!(reason.starts_with(expected), "{body}: {reason}");
            assert!(!reason.contains("line "), "{reason}");
        };
        check("{oops", "not JSON");
        check(
            "[]",
            "not a DeliveryResult: the message is not a JSON object",
        );
        check("{}", "not a DeliveryResult: missing field `v`");
        check(
            &good.replace(r#""v":1"#, r#""v":2"#),
            "unknown DeliveryResult version 2",
        );
        check(
            &good.replace(r#""status":"sent""#, r#""status":"lost""#),
            "not a DeliveryResult v1: unknown variant `lost`",
        );
        check(
            &good.replace(r#""job_id":"r1:u1","#, ""),
            "not a DeliveryResult v1: missing field `job_id`",
        );
        check(
            &good.replace(r#""page_id":"1""#, r#""page_id":" ""#),
            "not a DeliveryResult v1: `page_id` is blank",
        );
    }
}
