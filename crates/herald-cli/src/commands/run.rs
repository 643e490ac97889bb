//! `herald run CAMPAIGN --segment FILE`: the producer and a few workers in this process over the
//! embedded broker (herald-amqp's `EmbeddedBroker`), against the configured Graph API. It counts
//! the terminal results on the results exchange and exits once every user the producer
//! considered has one, then prints a summary. Nothing is durable: if the process dies, queued
//! jobs and retries die with it (use `herald campaign send` and `herald worker` over RabbitMQ
//! for that). `deliver` is also what `herald demo` runs, over either broker.

mod display;
mod tally;
mod workers;

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use herald_amqp::{AmqpError, AmqpSettings, EmbeddedBroker, Topology};
use herald_core::campaign::Campaign;
use herald_producer::{ProducerError, Progress, Run, SegmentInput, SendSpec};
use herald_store::{RunProgress, Store};
use tokio_util::sync::CancellationToken;

pub(crate) use tally::Tally;
pub(crate) use workers::{FLEET_REFRESH, Workers, worker_settings};

use crate::cli::{Cli, RunArgs};
use crate::commands::campaign::{exit_code, load_campaign, open_store};
use crate::commands::text::out;
use crate::commands::topology_for;
use crate::config::Config;

/// How often a stalled run is looked for (a halted page, a worker that died).
const GUARD_EVERY: Duration = Duration::from_millis(250);

pub(crate) async fn run(args: RunArgs, config: &Config) -> ExitCode {
    if amqp_flag().is_some() {
        eprintln!(
            "herald run: always uses the in-process queue; with RabbitMQ run `herald campaign \
             send` and `herald worker` instead"
        );
        return ExitCode::from(2);
    }
    if args.workers == 0 {
        eprintln!("herald run: --workers must be at least 1");
        return ExitCode::from(2);
    }
    let campaign = match load_campaign(&args.campaign) {
        Ok(campaign) => Arc::new(campaign),
        Err(code) => return code,
    };
    let segment = match crate::commands::campaign::segment_input(
        "herald run",
        &args.campaign,
        &campaign,
        args.segment.as_deref(),
    ) {
        Ok(segment) => segment,
        Err(code) => return code,
    };
    let page = campaign.page_id().to_owned();
    if !config.page_tokens.contains_key(&page) {
        eprintln!(
            "herald run: no access token for page {page}; set HERALD_PAGE_TOKEN_{page} (or a \
             tokens file). Without one every job would wait in the retry tiers."
        );
        return ExitCode::from(64);
    }
    let Ok(topology) = topology_for(config) else {
        return ExitCode::from(64);
    };
    let store = match open_store(config).await {
        Ok(store) => store,
        Err(code) => return code,
    };
    let broker = EmbeddedBroker::new();
    let mut amqp = AmqpSettings::embedded(&broker);
    amqp.prefetch = args.prefetch;
    let mut settings = worker_settings(config, amqp.clone(), topology.clone());
    settings.concurrency = args.concurrency;
    if let Err(problems) = settings.validate() {
        for problem in problems {
            eprintln!("herald run: {problem}");
        }
        return ExitCode::from(64);
    }
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        crate::signal::terminated().await;
        on_signal.cancel();
    });
    let started = Instant::now();
    let workers = Workers::start(settings, args.workers);
    if let Err(error) = workers.ready(&amqp, &topology).await {
        eprintln!("herald run: the workers did not start: {error}");
        workers.stop().await;
        return ExitCode::from(1);
    }
    let job = Delivery {
        campaign,
        segment,
        amqp,
        topology,
        store,
    };
    let guard = || workers.trouble(&page);
    let outcome = deliver(job, &guard, &shutdown).await;
    workers.stop().await;
    match outcome {
        Ok(done) => {
            print_summary(&done, started.elapsed());
            ExitCode::SUCCESS
        }
        Err(failed) => failed.report("herald run"),
    }
}

/// One campaign run to deliver: where the users come from and which broker carries the jobs.
pub(crate) struct Delivery {
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
    job: Delivery,
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

fn print_summary(done: &Delivered, elapsed: Duration) {
    let tally = &done.tally;
    out(&format!("published: {}", done.record.published));
    for (reason, count) in &done.record.skipped {
        out(&format!("skipped.{reason}: {count}"));
    }
    out(&format!("malformed: {}", done.record.malformed));
    for (status, count) in &tally.by_status {
        out(&format!("{status}: {count}"));
    }
    for (status_code, count) in &tally.failed {
        out(&format!("{status_code}: {count}"));
    }
    out(&format!("retried: {}", tally.retried));
    out(&format!("elapsed_secs: {:.1}", elapsed.as_secs_f64()));
}

/// The global `--amqp` flag as given on the command line. `Config` merges it with
/// `HERALD_AMQP_URL`, but only the flag may move `run` or `demo` off the embedded queue: a
/// variable exported for `herald worker` must not.
pub(crate) fn amqp_flag() -> Option<String> {
    Cli::try_parse_from(std::env::args_os())
        .ok()
        .and_then(|cli| cli.global.amqp_url)
}

fn lock(tally: &Mutex<Tally>) -> std::sync::MutexGuard<'_, Tally> {
    tally.lock().unwrap_or_else(|e| e.into_inner())
}
