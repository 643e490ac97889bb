//! Delivering one campaign run and counting its results, for `herald run` and `herald demo`:
//! `deliver` publishes the run with the producer, then waits until every user the producer
//! considered has its one terminal result (`tally.rs`), with a progress display
//! (`display.rs`); `workers.rs` runs workers as tasks of this process. The broker is the
//! caller's choice (the embedded queue, or RabbitMQ for `herald demo --amqp`).

mod display;
mod tally;
mod workers;

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_amqp::{AmqpError, AmqpSettings, Topology};
use herald_core::campaign::Campaign;
use herald_producer::{ProducerError, Progress, Run, SegmentInput, SendSpec};
use herald_store::{RunProgress, Store};
use tokio_util::sync::CancellationToken;

pub(crate) use tally::Tally;
pub(crate) use workers::{FLEET_REFRESH, Workers, worker_settings};

use crate::commands::common::exit_code;
use crate::commands::text::out;

/// How often a stalled run is looked for (a halted page, a worker that died).
const GUARD_EVERY: Duration = Duration::from_millis(250);

/// One campaign run to deliver: where the users come from and which broker carries the jobs.
pub(crate) struct RunInputs {
    pub(crate) campaign: Arc<Campaign>,
    pub(crate) segment: SegmentInput,
    pub(crate) amqp: AmqpSettings,
    pub(crate) topology: Topology,
    pub(crate) store: Store,
}

/// A run whose every considered user has a terminal result.
pub(crate) struct Delivered {
    pub(crate) record: RunProgress,
    pub(crate) tally: Tally,
}

/// Why a run did not reach its last result.
pub(crate) enum Failed {
    Producer(ProducerError),
    Broker(AmqpError),
    /// SIGINT or SIGTERM; `left` users had no result yet (unknown while still producing).
    Interrupted {
        left: Option<u64>,
    },
    /// Results cannot all arrive (a page halted, the workers gone).
    Stalled {
        reason: String,
        left: u64,
    },
}

impl Failed {
    /// Says what happened on stderr and returns the exit code.
    pub(crate) fn report(&self, command: &str) -> ExitCode {
        let (message, code) = match self {
            Self::Producer(error) => (error.to_string(), exit_code(error)),
            Self::Broker(error) => (format!("broker: {error}"), 69),
            Self::Interrupted { left: Some(left) } => (
                format!("interrupted; {left} user(s) had no result yet and their jobs are lost"),
                1,
            ),
            Self::Interrupted { left: None } => (
                "interrupted while publishing; jobs without a result are lost".to_owned(),
                1,
            ),
            Self::Stalled { reason, left } => (
                format!("{reason}; {left} user(s) had no result yet and their jobs are lost"),
                1,
            ),
        };
        eprintln!("{command}: {message}");
        ExitCode::from(code)
    }
}

/// Publishes the run, then waits until every user the producer considered has its one terminal
/// result on the results exchange, with a progress line. `trouble` is asked every 250 ms
/// whether the results can still come (e.g. `Some("page halted")` when they cannot).
pub(crate) async fn deliver(
    job: RunInputs,
    trouble: &dyn Fn() -> Option<String>,
    shutdown: &CancellationToken,
) -> Result<Delivered, Failed> {
    let connection = herald_amqp::connect(&job.amqp)
        .await
        .map_err(Failed::Broker)?;
    job.topology
        .declare(&connection)
        .await
        .map_err(Failed::Broker)?;
    let spec = SendSpec {
        campaign: job.campaign.clone(),
        segment: job.segment,
        resume: None,
        strict: false,
        amqp: job.amqp.clone(),
        topology: job.topology.clone(),
        store: job.store.clone(),
        shared_link: None,
    };
    let run = Run::prepare(spec).await.map_err(Failed::Producer)?;
    let run_id = run.run_id().to_owned();
    out(&format!("run_id: {run_id}"));
    let tally = Arc::new(Mutex::new(Tally::new(&run_id)));
    let stop_counting = CancellationToken::new();
    // The store's own results consumer records every result (so `campaign status` works for
    // this run too) and shows each to the tally once it is committed.
    let observer = {
        let tally = tally.clone();
        Arc::new(move |result: &herald_core::DeliveryResult| {
            lock(&tally).add(result);
        })
    };
    let counter = tokio::spawn(herald_server::results::run_results_observed(
        job.store.clone(),
        job.amqp.clone(),
        job.topology.clone(),
        herald_telemetry::Metrics::new(),
        stop_counting.clone(),
        Some(observer),
    ));
    let _ = connection.close().await;
    let progress = Arc::new(Progress::default());
    let display = display::spawn(progress.clone(), tally.clone());
    let produced = tokio::select! {
        produced = run.execute(progress) => produced.map_err(Failed::Producer),
        () = shutdown.cancelled() => Err(Failed::Interrupted { left: None }),
    };
    let waited = match produced {
        Ok(record) => {
            let expected = record.published + record.skipped.values().sum::<u64>();
            wait_for(expected, &tally, trouble, shutdown, &counter)
                .await
                .map(|()| record)
        }
        Err(failed) => Err(failed),
    };
    display.finish().await;
    stop_counting.cancel();
    // Every result is counted by now (or the run failed); how the consumer ended adds nothing.
    let _ = counter.await;
    let tally = std::mem::replace(&mut *lock(&tally), Tally::new(&run_id));
    waited.map(|record| Delivered { record, tally })
}

/// Waits until `expected` results have arrived.
async fn wait_for(
    expected: u64,
    tally: &Mutex<Tally>,
    trouble: &dyn Fn() -> Option<String>,
    shutdown: &CancellationToken,
    counter: &tokio::task::JoinHandle<Result<(), herald_server::ConsumeError>>,
) -> Result<(), Failed> {
    let mut every = tokio::time::interval(GUARD_EVERY);
    loop {
        let done = lock(tally).total();
        if done >= expected {
            return Ok(());
        }
        let left = expected - done;
        if counter.is_finished() {
            let reason = "the results consumer stopped".to_owned();
            return Err(Failed::Stalled { reason, left });
        }
        if let Some(reason) = trouble() {
            return Err(Failed::Stalled { reason, left });
        }
        tokio::select! {
            _ = every.tick() => {}
            () = shutdown.cancelled() => return Err(Failed::Interrupted { left: Some(left) }),
        }
    }
}

fn lock(tally: &Mutex<Tally>) -> std::sync::MutexGuard<'_, Tally> {
    tally.lock().unwrap_or_else(|e| e.into_inner())
}
