//! `herald demo`: the first command a newcomer runs. It starts the Graph API simulator on a free
//! port (with a page token, a rate limit, realistic latency and scripted unreachable and flaky
//! users), writes a sample campaign and segment to a temporary directory (`demo/sample.rs`),
//! sends it with the same producer, workers and result counting as `herald run`, and prints a
//! summary table (`demo/summary.rs`). By default everything runs in this process over the
//! embedded queue; with `--amqp URL` the jobs go through RabbitMQ to `herald worker` processes
//! (`demo/fleet.rs`) on a topology prefix of their own, deleted afterwards.

mod fleet;
mod sample;
mod summary;

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald_amqp::{AmqpSettings, EmbeddedBroker, Topology};
use herald_core::Secret;
use herald_graph::GraphSettings;
use herald_producer::budget::CALLS_PER_ENGAGED_USER;
use herald_producer::{LaunchCheck, SegmentInput};
use herald_sim::{Latency, SimConfig, SimHandle};
use herald_store::Store;
use herald_worker::{PageRates, PageTokens, WorkerSettings};
use tokio_util::sync::CancellationToken;

use crate::cli::DemoArgs;
use crate::commands::common::load_campaign;
use crate::commands::deliver::{Delivered, Failed, RunInputs, Workers, deliver};
use crate::commands::text::{out, thousands};
use crate::config::Config;
use fleet::Fleet;
use sample::{PAGE_ID, PAGE_TOKEN, Sample};
use summary::Report;

/// Graph calls in flight per worker.
const CONCURRENCY: usize = 64;
/// How long the worker processes of `--amqp` get to attach to the send queue.
const FLEET_READY: Duration = Duration::from_secs(30);
/// `herald worker` re-reads the fleet size every 0.5 s and a joining one waits 0.6 s; waiting
/// longer than both after the last worker attached means each sends at its share of the limit.
const FLEET_SETTLE: Duration = Duration::from_millis(2_300);

pub(crate) async fn run(args: DemoArgs, config: &Config) -> ExitCode {
    if args.users == 0 || args.rate_per_sec == 0 || args.workers == 0 {
        eprintln!("herald demo: --users, --rate-per-sec and --workers must be at least 1");
        return ExitCode::from(2);
    }
    let started = Instant::now();
    let sample = match sample::write(args.dir.as_deref(), args.users as u64, args.rate_per_sec) {
        Ok(sample) => sample,
        Err(error) => {
            eprintln!("herald demo: cannot write the sample files: {error}");
            return ExitCode::FAILURE;
        }
    };
    // The people the page can message: everyone in the sample with a PSID.
    let engaged = sample.users - sample.blank_psid;
    let simulated = sim_config(args.rate_per_sec, engaged);
    let sim = match herald_sim::spawn(simulated, ([127, 0, 0, 1], 0).into()).await {
        Ok(sim) => sim,
        Err(error) => {
            eprintln!("herald demo: cannot start the Graph API simulator: {error}");
            return ExitCode::FAILURE;
        }
    };
    // Only the `--amqp` flag moves the demo to RabbitMQ, not HERALD_AMQP_URL.
    let amqp_url = config
        .amqp_from_flag
        .then(|| config.amqp_url.expose().to_owned());
    let broker = if amqp_url.is_some() {
        "RabbitMQ"
    } else {
        "the embedded queue"
    };
    out(&format!(
        "Herald demo: a Graph API simulator on {} (page {PAGE_ID}, {}/s), sample files in {}",
        sim.url(),
        args.rate_per_sec,
        sample.dir.display()
    ));
    out(&budget_line(&sample, engaged, args.rate_per_sec).await);
    out(&format!(
        "Sending {} personalised messages through {broker} with {} worker(s)...",
        thousands(sample.users),
        args.workers
    ));
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        crate::signal::terminated().await;
        on_signal.cancel();
    });
    let sent = match &amqp_url {
        None => embedded(&sample, &sim, &args, &shutdown).await,
        Some(url) => rabbitmq(url, &sample, &sim, &args, &shutdown).await,
    };
    let (done, metrics) = match sent {
        Ok(sent) => sent,
        Err(code) => {
            sim.shutdown().await;
            return code;
        }
    };
    let stats = sim.stats();
    let report = Report {
        sample: &sample,
        done: &done,
        broker,
        workers: args.workers,
        page_ceiling: args.rate_per_sec,
        busiest_second: stats.max_per_second.get(PAGE_ID).copied(),
        metrics: &metrics,
        wall: started.elapsed(),
    };
    summary::print(&report);
    summary::next_steps(&sample);
    sim.shutdown().await;
    ExitCode::SUCCESS
}

/// The simulator: the sample page's token and limit, 20 ms ± 6 ms per call, 551 and
/// fail-first users scripted by PSID prefix. A 613 (over the limit) asks for no regain delay,
/// so a demo that overshoots recovers in seconds rather than Meta's minute.
fn sim_config(rate_per_sec: u32, engaged_users: u64) -> SimConfig {
    SimConfig {
        rate_per_sec,
        engaged_users,
        latency: Latency::Normal {
            mean_ms: 20,
            jitter_ms: 6,
        },
        tokens: [(PAGE_ID.to_owned(), PAGE_TOKEN.to_owned())].into(),
        throttle_regain_minutes: 0,
        psid_rules: sample::psid_rules(),
        ..SimConfig::default()
    }
}

/// The producer, in-process workers and the result count over one embedded broker.
async fn embedded(
    sample: &Sample,
    sim: &SimHandle,
    args: &DemoArgs,
    shutdown: &CancellationToken,
) -> Result<(Delivered, Vec<String>), ExitCode> {
    let broker = EmbeddedBroker::new();
    let amqp = AmqpSettings::embedded(&broker);
    let topology = Topology::new("herald-demo").expect("a valid prefix");
    let settings = worker_settings(amqp.clone(), topology.clone(), sim, args.rate_per_sec);
    let workers = Workers::start(settings, args.workers);
    if let Err(error) = workers.ready(&amqp, &topology).await {
        eprintln!("herald demo: the workers did not start: {error}");
        workers.stop().await;
        return Err(ExitCode::FAILURE);
    }
    let job = delivery(sample, amqp, topology).await?;
    let guard = || workers.trouble(PAGE_ID);
    let outcome = deliver(job, &guard, shutdown).await;
    let metrics = workers.metrics_text();
    workers.stop().await;
    outcome
        .map(|done| (done, metrics))
        .map_err(|failed| failed.report("herald demo"))
}

/// The producer and the result count here, `herald worker` processes, RabbitMQ in between.
async fn rabbitmq(
    url: &str,
    sample: &Sample,
    sim: &SimHandle,
    args: &DemoArgs,
    shutdown: &CancellationToken,
) -> Result<(Delivered, Vec<String>), ExitCode> {
    let amqp = AmqpSettings {
        url: Secret::new(url),
        connection_name: "herald demo".to_owned(),
        ..AmqpSettings::default()
    };
    if let Err(problems) = amqp.validate() {
        eprintln!("herald demo: --amqp: {}", problems.join("; "));
        return Err(ExitCode::from(64));
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let prefix = format!("herald-demo-{}-{nanos:x}", std::process::id());
    let topology = Topology::new(&prefix).expect("a valid prefix");
    let connection = match herald_amqp::connect(&amqp).await {
        Ok(connection) => connection,
        Err(error) => return Err(Failed::Broker(error).report("herald demo")),
    };
    if let Err(error) = topology.declare(&connection).await {
        return Err(Failed::Broker(error).report("herald demo"));
    }
    out(&format!(
        "RabbitMQ at {}: queues {prefix}.* (deleted at the end)",
        connection.address().host_port()
    ));
    let env: Vec<(String, String)> = vec![
        ("HERALD_AMQP_URL".into(), url.to_owned()),
        ("HERALD_TOPOLOGY_PREFIX".into(), prefix.clone()),
        ("HERALD_GRAPH_URL".into(), sim.url()),
        (
            format!("HERALD_PAGE_TOKEN_{PAGE_ID}"),
            PAGE_TOKEN.to_owned(),
        ),
        (
            "HERALD_PAGE_RATE_PER_SEC".into(),
            args.rate_per_sec.to_string(),
        ),
        ("HERALD_LOG_FORMAT".into(), "json".to_owned()),
    ];
    let result = async {
        let fleet = Fleet::spawn(args.workers, CONCURRENCY, &env, &sample.dir)
            .await
            .map_err(|error| {
                eprintln!("herald demo: {error}");
                ExitCode::FAILURE
            })?;
        let fleet = Mutex::new(fleet);
        let trouble = || fleet.lock().unwrap_or_else(|e| e.into_inner()).trouble();
        let ready = wait_for_consumers(&connection, &topology, args.workers, &trouble).await;
        let outcome = match ready {
            Ok(()) => {
                tokio::time::sleep(FLEET_SETTLE).await;
                match delivery(sample, amqp.clone(), topology.clone()).await {
                    Ok(job) => deliver(job, &trouble, shutdown)
                        .await
                        .map_err(|failed| failed.report("herald demo")),
                    Err(code) => Err(code),
                }
            }
            Err(reason) => {
                eprintln!("herald demo: the workers did not start: {reason}");
                Err(ExitCode::FAILURE)
            }
        };
        let fleet = fleet.into_inner().unwrap_or_else(|e| e.into_inner());
        let metrics = fleet.metrics().await;
        fleet.stop().await;
        outcome.map(|done| (done, metrics))
    }
    .await;
    if let Err(error) = topology.delete(&connection).await {
        eprintln!("herald demo: could not delete the demo's queues ({prefix}.*): {error}");
    }
    let _ = connection.close().await;
    result
}

async fn wait_for_consumers(
    connection: &herald_amqp::Connection,
    topology: &Topology,
    count: usize,
    trouble: &dyn Fn() -> Option<String>,
) -> Result<(), String> {
    let deadline = Instant::now() + FLEET_READY;
    loop {
        if let Some(reason) = trouble() {
            return Err(reason);
        }
        let consumers = connection
            .consumer_count(&topology.send_queue())
            .await
            .unwrap_or(0);
        if consumers as usize >= count {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{consumers} of {count} workers attached within 30 s"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The launch check in one line: the page's daily call budget (the simulator counts the
/// sample's people with a PSID as its engaged users, as Graph would), what the campaign uses
/// of it and how long it takes at the page's pace.
async fn budget_line(sample: &Sample, engaged: u64, rate_per_sec: u32) -> String {
    let Ok(campaign) = load_campaign(&sample.campaign) else {
        return "Daily budget: unknown (the sample campaign does not load)".to_owned();
    };
    let jobs = engaged - sample.outside_window;
    let none = Err("the demo reads no store".to_owned());
    let report = LaunchCheck::gather(&campaign, rate_per_sec, Some(engaged), none)
        .await
        .report(jobs, None);
    let Some(budget) = report.budget else {
        return "Daily budget: unknown".to_owned();
    };
    format!(
        "Daily budget: page {PAGE_ID} may make {} calls in 24 h ({CALLS_PER_ENGAGED_USER} × {} \
         engaged users); this campaign needs {} ({:.2} %), about {}s at {:.0}/s.",
        thousands(budget.daily_calls),
        thousands(budget.engaged_users),
        thousands(report.campaign_calls),
        report.campaign_calls as f64 * 100.0 / budget.daily_calls.max(1) as f64,
        report.send_time_secs,
        report.paced_per_sec
    )
}

/// The run to deliver: the sample campaign and segment, run records in a throwaway store.
async fn delivery(
    sample: &Sample,
    amqp: AmqpSettings,
    topology: Topology,
) -> Result<RunInputs, ExitCode> {
    let campaign = load_campaign(&sample.campaign)?;
    let store = Store::connect(&Secret::new("sqlite::memory:"))
        .await
        .map_err(|error| {
            eprintln!("herald demo: cannot open an in-memory store: {error}");
            ExitCode::FAILURE
        })?;
    Ok(RunInputs {
        campaign: Arc::new(campaign),
        segment: SegmentInput::File(sample.segment.clone()),
        amqp,
        topology,
        store,
    })
}

/// In-process workers for the simulator: its URL, the sample page's token and limit.
fn worker_settings(
    amqp: AmqpSettings,
    topology: Topology,
    sim: &SimHandle,
    rate_per_sec: u32,
) -> WorkerSettings {
    let graph = GraphSettings {
        graph_url: sim.url(),
        ..GraphSettings::default()
    };
    let tokens = PageTokens::new([(PAGE_ID.to_owned(), Secret::new(PAGE_TOKEN))].into());
    let mut settings = WorkerSettings::new(amqp, topology, graph, tokens);
    settings.concurrency = CONCURRENCY;
    settings.rates = PageRates {
        default_ceiling: rate_per_sec,
        ..PageRates::default()
    };
    settings.fleet_refresh = crate::commands::deliver::FLEET_REFRESH;
    settings
}
