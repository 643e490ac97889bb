//! `herald`: parse the command line, load configuration once, start telemetry, run the command.
//! Exit codes: 0 done, 2 command-line misuse, 64 bad configuration,
//! 65 bad data, 1 anything else.

mod cli;
mod commands;
mod config;
mod signal;

use std::collections::HashMap;
use std::process::ExitCode;

use clap::Parser;
use herald_telemetry::{LogFormat, init_tracing};

use crate::cli::{Cli, Command};
use crate::config::{Config, Overrides};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(code) = commands::standalone(&cli.command) {
        return code;
    }
    let env: HashMap<String, String> = std::env::vars().collect();
    let format_name = cli
        .global
        .log_format
        .clone()
        .or_else(|| env.get("HERALD_LOG_FORMAT").cloned());
    let format = match format_name.as_deref().map(LogFormat::parse) {
        None => LogFormat::Auto,
        Some(Some(format)) => format,
        Some(None) => {
            eprintln!("herald: --log-format must be auto, text or json");
            return ExitCode::from(64);
        }
    };
    init_tracing(env.get("HERALD_LOG").map(String::as_str), format);

    let overrides = Overrides {
        config_file: cli.global.config.clone(),
        amqp_url: cli.global.amqp_url.clone(),
        database_url: cli.global.database_url.clone(),
        graph_url: cli.global.graph_url.clone(),
    };
    let config = match Config::load(&overrides, &env) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("herald: {errors}");
            return ExitCode::from(64);
        }
    };
    // `herald serve` answers many webhook and API clients and runs two consumers: it gets a
    // thread per core. Every other command measured faster on one thread (the worker spends
    // less CPU per job without cross-thread wake-ups).
    let mut builder = match cli.command {
        Command::Serve(_) => tokio::runtime::Builder::new_multi_thread(),
        _ => tokio::runtime::Builder::new_current_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("herald: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(commands::run(cli.command, config));
    // Tasks still blocked on a dead peer (a worker's send past its grace period, a blocking
    // read) must not keep the process from exiting once the command is done.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    code
}
