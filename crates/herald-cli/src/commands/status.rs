//! `herald campaign status RUN_ID [--json]`: thin wiring over `herald_server::ops::status`
//! (which `GET /campaigns/runs/{id}` calls too): the table, or with `--json` the same JSON
//! object the API answers. Given the id of a stored campaign with a `[trigger]` instead, its
//! days (`ops::trigger_days`, as `GET /campaigns/{id}/days`).

use std::process::ExitCode;

use herald_server::ops::{OpsError, status, trigger_days};

use crate::commands::common::open_store;
use crate::commands::ops::failed;
use crate::commands::text::{json_out, out};
use crate::config::Config;

pub(crate) async fn run(run_id: &str, json: bool, config: &Config) -> ExitCode {
    let store = match open_store(config).await {
        Ok(store) => store,
        Err(code) => return code,
    };
    let report = status::status(&store, run_id).await;
    if let Err(OpsError::UnknownRun { .. }) = report
        && let Ok(days) = trigger_days::trigger_days(&store, run_id).await
    {
        // Not a run but a campaign with a [trigger]: its days.
        store.close().await;
        if json {
            return json_out("herald campaign status", &days);
        }
        out(trigger_days::render(&days).trim_end());
        return ExitCode::SUCCESS;
    }
    store.close().await;
    match report {
        Ok(report) if json => json_out("herald campaign status", &report),
        Ok(report) => {
            out(status::render(&report).trim_end());
            ExitCode::SUCCESS
        }
        Err(error) => failed("herald campaign status", &error),
    }
}
