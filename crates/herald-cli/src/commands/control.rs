//! `herald campaign pause|resume|cancel RUN_ID` and `herald campaign resume --page PAGE_ID`:
//! thin wiring over `herald_server::ops::control` (which the admin API calls too). Prints
//! `pause_run: run RUN_ID` once the broker confirmed the command.

use std::process::ExitCode;

use herald_server::ops::control::{self, Command};

use crate::commands::ops::{broker, existing_store, failed};
use crate::commands::text::out;
use crate::config::Config;

pub(crate) async fn run(command: Command, config: &Config) -> ExitCode {
    let broker = match broker(config) {
        Ok(broker) => broker,
        Err(code) => return code,
    };
    let store = match &command {
        Command::ResumePage(_) => None,
        _ => existing_store(config, "herald campaign").await,
    };
    let applied = control::send(&broker, store.as_ref(), command).await;
    if let Some(store) = store {
        store.close().await;
    }
    match applied {
        Ok(applied) => {
            out(&applied.summary());
            if let Some(state) = applied.state {
                out(&format!("state: {state}"));
            }
            ExitCode::SUCCESS
        }
        Err(error) => failed("herald campaign", &error),
    }
}
