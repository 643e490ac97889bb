//! `herald campaign send` and `--dry-run`: load and validate the campaign (every problem listed,
//! exit 64/65, nothing published; `common.rs`), pick the segment, check it against the page's
//! daily call budget (`launch.rs`), then run the producer with a progress line and a summary.
//! The run id is printed first because it is what `--resume` takes.

use std::process::ExitCode;
use std::sync::Arc;

use herald_core::campaign::Campaign;
use herald_producer::{
    DryRun, ProducerError, Progress, Run, SegmentInput, SendSpec, dry_run, dry_run_store,
};
use herald_server::ops::OpsError;
use herald_server::ops::start_key::StartKey;
use herald_store::Store;

use crate::cli::SendArgs;
use crate::commands::common::{
    exit_code, load_campaign, open_store, refuse_triggered, segment_input,
};
use crate::commands::text::out;
use crate::commands::{amqp_settings, progress, topology_for};
use crate::commands::{launch, schedules};
use crate::config::Config;

pub(crate) async fn send(args: SendArgs, config: &Config) -> ExitCode {
    let campaign = match load_campaign(&args.campaign) {
        Ok(campaign) => campaign,
        Err(code) => return code,
    };
    if let Err(code) = refuse_triggered("herald campaign send", &campaign) {
        return code;
    }
    let segment = match segment_input("herald", &args.campaign, &campaign, args.segment.as_deref())
    {
        Ok(segment) => segment,
        Err(code) => return code,
    };
    if args.dry_run {
        let report = match &segment {
            SegmentInput::File(path) => dry_run(&campaign, path, args.strict),
            SegmentInput::Store => match open_store(config).await {
                Ok(store) => dry_run_store(&campaign, &store).await,
                Err(code) => return code,
            },
            SegmentInput::Users(users) => Ok(herald_producer::dry_run_users(&campaign, users)),
        };
        return match report {
            Ok(report) => {
                print_dry_run(&report);
                let check = launch::gather(config, &campaign, args.engaged_users).await;
                launch::print(&check.report(report.jobs, args.rate));
                out("dry run: nothing was published");
                ExitCode::SUCCESS
            }
            Err(error) => producer_failed(&error),
        };
    }
    let Ok(topology) = topology_for(config) else {
        return ExitCode::from(64);
    };
    let store = match open_store(config).await {
        Ok(store) => store,
        Err(code) => return code,
    };
    if campaign.schedule().starts_later() && args.resume.is_none() {
        let code = schedules::create(&args, &campaign, &store, config).await;
        store.close().await;
        return code;
    }
    if args.resume.is_none() && !args.over_budget {
        let check = launch::gather(config, &campaign, args.engaged_users).await;
        if let Some(refusal) = check
            .over_budget(&campaign, &segment, &store, args.strict)
            .await
        {
            eprintln!("herald: {refusal}, or pass --over-budget to send it anyway");
            return ExitCode::from(65);
        }
    }
    let key = match &args.idempotency_key {
        None => None,
        Some(key) => match claim_key(key, &args, &campaign, &store).await {
            Ok(Claim::First(key)) => Some(key),
            Ok(Claim::Started(run_id)) => {
                out(&format!("run_id: {run_id}"));
                eprintln!(
                    "herald: idempotency key {key:?} already started run {run_id}; nothing was \
                     published (if it did not finish: herald campaign send {} --resume {run_id})",
                    args.campaign.display()
                );
                return ExitCode::SUCCESS;
            }
            Err(error) => {
                eprintln!("herald: {error}");
                return ExitCode::from(error.kind().exit_code());
            }
        },
    };
    let spec = SendSpec {
        campaign: Arc::new(campaign),
        segment,
        resume: args.resume,
        strict: args.strict,
        amqp: amqp_settings(config),
        topology,
        store: store.clone(),
        shared_link: None,
    };
    let run = match Run::prepare(spec).await {
        Ok(run) => run,
        Err(error) => {
            if let Some(key) = &key {
                key.release(&store).await;
            }
            return producer_failed(&error);
        }
    };
    if let Some(key) = &key
        && let Err(error) = key.bind(&store, run.run_id()).await
    {
        key.release(&store).await;
        eprintln!("herald: {error}; nothing was published");
        return ExitCode::from(error.kind().exit_code());
    }
    let run_id = run.run_id().to_owned();
    out(&format!("run_id: {run_id}"));
    let counters = Arc::new(Progress::default());
    let display = progress::spawn(counters.clone());
    // On SIGINT or SIGTERM the producer is dropped where it is, as if the process had died
    // (confirmed rows are recorded), but the run says why it stopped.
    let result = tokio::select! {
        result = run.execute(counters) => Some(result),
        () = crate::signal::terminated() => None,
    };
    display.finish().await;
    match result {
        Some(Ok(record)) => {
            out(&format!("published: {}", record.published));
            for (reason, count) in &record.skipped {
                out(&format!("skipped.{reason}: {count}"));
            }
            out(&format!("malformed: {}", record.malformed));
            ExitCode::SUCCESS
        }
        // The producer recorded why on the run.
        Some(Err(error)) => producer_failed(&error),
        None => {
            // So `campaign status` says so instead of showing a run that looks busy.
            let reason = "herald campaign send was interrupted";
            if let Err(error) = store.record_producer_stop(&run_id, reason).await {
                eprintln!("herald: could not record on the run why it stopped: {error}");
            }
            eprintln!(
                "herald: interrupted; confirmed work is recorded; continue with `herald campaign \
                 send CAMPAIGN --resume {run_id}`"
            );
            ExitCode::from(130)
        }
    }
}

/// What an idempotency key said.
enum Claim {
    /// This send is the first with the key: it creates the run, then binds the key to it.
    First(StartKey),
    /// The key already started this run.
    Started(String),
}

/// Claims `--idempotency-key` for this campaign file, segment and options.
async fn claim_key(
    key: &str,
    args: &SendArgs,
    campaign: &Campaign,
    store: &Store,
) -> Result<Claim, OpsError> {
    let document = std::fs::read(&args.campaign)
        .map_err(|error| OpsError::Internal(format!("cannot read the campaign: {error}")))?;
    let segment = args
        .segment
        .as_ref()
        .map(|path| path.display().to_string())
        .unwrap_or_default();
    let parts: [&[u8]; 3] = [&document, segment.as_bytes(), &[u8::from(args.strict)]];
    let key = StartKey::new(campaign.id(), key, &parts)?;
    Ok(match key.claim(store).await? {
        None => Claim::First(key),
        Some(run_id) => Claim::Started(run_id),
    })
}

fn print_dry_run(report: &DryRun) {
    out(&format!("rows: {}", report.rows));
    out(&format!("audience (jobs): {}", report.jobs));
    out(&format!("filtered out: {}", report.filtered));
    for (reason, count) in &report.skipped {
        out(&format!("skipped.{reason}: {count}"));
    }
    out(&format!("malformed: {}", report.malformed));
    for example in &report.malformed_examples {
        out(&format!("  {example}"));
    }
    if let (Some(first), Some(last)) = (report.first_due, report.last_due) {
        let rfc = |at: time::OffsetDateTime| {
            at.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        };
        out(&format!(
            "due later: {} job(s), the first at {}, the last at {} (each user's local time, \
             outside quiet hours)",
            report.due_later,
            rfc(first),
            rfc(last)
        ));
    }
    for (index, sample) in report.samples.iter().enumerate() {
        out(&format!("sample {}: {sample}", index + 1));
    }
}

fn producer_failed(error: &ProducerError) -> ExitCode {
    eprintln!("herald: {error}");
    let code = exit_code(error);
    if matches!(
        error,
        ProducerError::Amqp(_) | ProducerError::Malformed(_) | ProducerError::Store(_)
    ) {
        eprintln!(
            "herald: confirmed work is recorded; continue with `herald campaign send CAMPAIGN --resume RUN_ID`"
        );
    }
    ExitCode::from(code)
}
