//! Scheduled campaigns on the command line: `campaign send` of a document with `send_at` or
//! `cron` stores a schedule (`herald serve` starts each occurrence), `campaign schedules` lists
//! them, and `campaign status` / `campaign cancel` take a schedule id (`s…`) as well as a run
//! id. Thin wiring over `herald_server::ops::schedules`, which the admin API calls too.

use std::path::Path;
use std::process::ExitCode;

use herald_core::campaign::{Campaign, SegmentSource};
use herald_server::ops::runs::{DocumentFormat, StartRun};
use herald_server::ops::schedules::{self, ScheduleInfo};
use herald_store::Store;

use crate::cli::SendArgs;
use crate::commands::common::open_store;
use crate::commands::ops::failed;
use crate::commands::text::{json_out, out};
use crate::config::Config;

/// Whether `id` names a schedule (`s<time>-<hex>`) rather than a run or a campaign.
pub(crate) fn is_schedule(id: &str) -> bool {
    herald_core::is_time_id(id, 's')
}

/// Stores the campaign of `args` as a schedule; nothing is published now.
pub(crate) async fn create(
    args: &SendArgs,
    campaign: &Campaign,
    store: &Store,
    config: &Config,
) -> ExitCode {
    let document = match std::fs::read_to_string(&args.campaign) {
        Ok(text) => text,
        Err(error) => {
            eprintln!(
                "herald: cannot read campaign {}: {error}",
                args.campaign.display()
            );
            return ExitCode::from(66);
        }
    };
    let format = if args
        .campaign
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
    {
        DocumentFormat::Json
    } else {
        DocumentFormat::Toml
    };
    // serve reads the file when an occurrence is due: an absolute path, confined to
    // HERALD_SEGMENT_DIR as for runs started over the API.
    let segment = match (&args.segment, &campaign.segment().source) {
        (Some(file), _) => Some(absolute(file)),
        (None, SegmentSource::File(file)) => Some(absolute(
            &args.campaign.parent().unwrap_or(Path::new(".")).join(file),
        )),
        (None, _) => None,
    };
    let request = StartRun {
        document,
        format,
        segment,
        strict: args.strict,
        idempotency_key: None,
        engaged_users: None,
        over_budget: false,
        occurrence: false,
    };
    match schedules::create(store, config.segment_dir.as_deref(), campaign, request).await {
        Ok(info) => {
            out(&format!("schedule_id: {}", info.schedule_id));
            print(&info);
            out("herald serve starts each occurrence when it is due; nothing was published now");
            ExitCode::SUCCESS
        }
        Err(error) => failed("herald campaign send", &error),
    }
}

/// `herald campaign schedules [--json]`.
pub(crate) async fn list(json: bool, config: &Config) -> ExitCode {
    let store = match open_store(config).await {
        Ok(store) => store,
        Err(code) => return code,
    };
    let listed = schedules::list(&store).await;
    store.close().await;
    match listed {
        Ok(all) if json => json_out("herald campaign schedules", &all),
        Ok(all) => {
            if all.is_empty() {
                out("no schedules");
            }
            for info in &all {
                out(&format!(
                    "{}  {}  {}  next {}  {}",
                    info.schedule_id,
                    info.campaign_id,
                    info.state,
                    info.next_at.as_deref().unwrap_or("-"),
                    when(info)
                ));
            }
            ExitCode::SUCCESS
        }
        Err(error) => failed("herald campaign schedules", &error),
    }
}

/// `herald campaign status SCHEDULE_ID [--json]`.
pub(crate) async fn status(schedule_id: &str, json: bool, config: &Config) -> ExitCode {
    let store = match open_store(config).await {
        Ok(store) => store,
        Err(code) => return code,
    };
    let info = schedules::get(&store, schedule_id).await;
    store.close().await;
    match info {
        Ok(info) if json => json_out("herald campaign status", &info),
        Ok(info) => {
            out(&format!("schedule_id: {}", info.schedule_id));
            print(&info);
            ExitCode::SUCCESS
        }
        Err(error) => failed("herald campaign status", &error),
    }
}

/// `herald campaign cancel SCHEDULE_ID`.
pub(crate) async fn cancel(schedule_id: &str, config: &Config) -> ExitCode {
    let store = match open_store(config).await {
        Ok(store) => store,
        Err(code) => return code,
    };
    let cancelled = schedules::cancel(&store, schedule_id).await;
    store.close().await;
    match cancelled {
        Ok(info) => {
            out(&format!("cancel_schedule: schedule {}", info.schedule_id));
            out(&format!("state: {}", info.state));
            ExitCode::SUCCESS
        }
        Err(error) => failed("herald campaign cancel", &error),
    }
}

fn print(info: &ScheduleInfo) {
    out(&format!("campaign_id: {}", info.campaign_id));
    out(&format!("state: {}", info.state));
    out(&format!("when: {}", when(info)));
    out(&format!(
        "next: {}",
        info.next_at.as_deref().unwrap_or("none")
    ));
    out(&format!("segment: {}", info.segment));
    for run in &info.runs {
        out(&format!(
            "run: {} at {}",
            run.run_id
                .as_deref()
                .unwrap_or("(did not start; see serve's log)"),
            run.at
        ));
    }
}

fn when(info: &ScheduleInfo) -> String {
    match (&info.send_at, &info.cron) {
        (Some(at), _) => format!("once at {at}"),
        (None, Some(cron)) => format!("cron \"{cron}\" ({})", info.timezone),
        (None, None) => String::new(),
    }
}

fn absolute(path: &Path) -> std::path::PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}
