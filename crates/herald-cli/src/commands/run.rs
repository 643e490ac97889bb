//! `herald run CAMPAIGN --segment FILE`: the producer and a few workers in this process over the
//! embedded broker (herald-amqp's `EmbeddedBroker`), against the configured Graph API. It counts
//! the terminal results on the results exchange and exits once every user the producer
//! considered has one, then prints a summary. Nothing is durable: if the process dies, queued
//! jobs and retries die with it (use `herald campaign send` and `herald worker` over RabbitMQ
//! for that). Delivering and counting is `deliver/`, which `herald demo` runs too.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_amqp::{AmqpSettings, EmbeddedBroker};
use tokio_util::sync::CancellationToken;

use crate::cli::RunArgs;
use crate::commands::common::{load_campaign, open_store, refuse_triggered, segment_input};
use crate::commands::deliver::{Delivered, RunInputs, Workers, deliver, worker_settings};
use crate::commands::text::out;
use crate::commands::topology_for;
use crate::config::Config;

pub(crate) async fn run(args: RunArgs, config: &Config) -> ExitCode {
    if config.amqp_from_flag {
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
    if let Err(code) = refuse_triggered("herald run", &campaign) {
        return code;
    }
    let segment = match segment_input(
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
    let job = RunInputs {
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
