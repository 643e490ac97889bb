//! `herald topology`: declare every exchange and queue, idempotently. A queue that exists with
//! other arguments is reported by name and argument, and nothing is changed.

use std::process::ExitCode;

use crate::commands::{amqp_settings, text::out, topology_for};
use crate::config::Config;

pub(crate) async fn run(config: &Config) -> ExitCode {
    let Ok(topology) = topology_for(config) else {
        return ExitCode::from(64);
    };
    let connection = match herald_amqp::connect(&amqp_settings(config)).await {
        Ok(connection) => connection,
        Err(error) => {
            eprintln!("herald topology: {error}");
            return ExitCode::from(69);
        }
    };
    let declared = topology.declare(&connection).await;
    let _ = connection.close().await;
    match declared {
        Ok(()) => {
            out(&format!("topology declared: {}.*", topology.prefix()));
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("herald topology: {error}");
            ExitCode::FAILURE
        }
    }
}
