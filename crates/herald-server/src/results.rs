//! The results consumer: consumes `<prefix>.results.store` (every `DeliveryResult` the producer
//! and the workers publish) and records each with `Store::record_result`, acking after the
//! commit. Results are terminal and the store keeps the first per job, so a redelivered result
//! changes nothing and is counted as a duplicate. Bytes that are not a `DeliveryResult` v1 go to
//! `<prefix>.dead` with the reason; a store failure keeps the result unacked and retries it
//! (`consume.rs`).

use herald_amqp::{AmqpSettings, Headers, Topology};
use herald_core::DeliveryResult;
use herald_store::{Store, StoreError};
use herald_telemetry::Metrics;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::ConsumeError;
use crate::consume::{self, Handler, Outcome};

/// Consumes `<prefix>.results.store` into the store (`record_result`) until `shutdown` is
/// cancelled; reconnects. Returns an error only for a broker failure that reconnecting cannot fix.
pub async fn run_results(
    store: Store,
    amqp: AmqpSettings,
    topology: Topology,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> Result<(), ConsumeError> {
    let results = Results {
        store,
        metrics: metrics.clone(),
    };
    consume::run(results, amqp, topology, metrics, shutdown).await
}

struct Results {
    store: Store,
    metrics: Metrics,
}

impl Handler for Results {
    const NAME: &'static str = "results";
    /// Results are independent (the first per job wins, atomically), so order does not matter.
    const CONCURRENCY: usize = 8;

    fn queue(topology: &Topology) -> String {
        topology.results_store_queue()
    }

    async fn handle(&self, body: &[u8], _headers: &Headers, _again: bool) -> Outcome {
        let result = match parse_result(body) {
            Ok(result) => result,
            Err(reason) => return Outcome::Poison(reason),
        };
        match self.store.record_result(&result, None).await {
            Ok(true) => {
                self.metrics
                    .results_recorded
                    .with_label_values(&[result.status.as_str()])
                    .inc();
                Outcome::Done(Vec::new())
            }
            Ok(false) => {
                debug!(job_id = %result.job_id, "Result already recorded; ignored.");
                self.metrics.results_duplicates.inc();
                Outcome::Done(Vec::new())
            }
            // The store refuses this result itself: trying again would never succeed.
            Err(StoreError::Invalid { what, reason }) => Outcome::Poison(format!(
                "the store refuses the result: invalid {what}: {reason}"
            )),
            Err(error) => Outcome::Retry(error),
        }
    }
}

/// Reads one `DeliveryResult` v1; `Err` holds why the bytes are poison. The reason names
/// fields, never values (an external id may be personal).
fn parse_result(body: &[u8]) -> Result<DeliveryResult, String> {
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
