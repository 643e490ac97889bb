//! `herald campaign pause|resume|cancel`: publish one `ControlMessage` to `herald.control` and
//! wait for the broker's confirm. The stream behind the exchange keeps it, so every worker (also
//! one started later) acts on it within seconds. What workers do with it is herald-worker's.

use std::process::ExitCode;

use herald_amqp::{Headers, Publisher};
use herald_core::{ControlAction, ControlMessage};

use crate::commands::{amqp_settings, campaign::out, topology_for};
use crate::config::Config;

/// What to publish: a run command, or a page command.
pub(crate) enum Command {
    Run(ControlAction, String),
    Page(ControlAction, String),
}

pub(crate) async fn run(command: Command, config: &Config) -> ExitCode {
    let Ok(topology) = topology_for(config) else {
        return ExitCode::from(64);
    };
    let (message, done) = match &command {
        Command::Run(action, run_id) if !run_id.trim().is_empty() => (
            ControlMessage::for_run(*action, run_id),
            format!("{}: run {run_id}", action.as_str()),
        ),
        Command::Page(action, page_id)
            if !page_id.is_empty() && page_id.bytes().all(|b| b.is_ascii_digit()) =>
        {
            let reason = Some("herald campaign resume --page".to_owned());
            (
                ControlMessage::for_page(*action, page_id, reason),
                format!("{}: page {page_id}", action.as_str()),
            )
        }
        Command::Run(..) => {
            eprintln!("herald campaign: the run id must not be blank");
            return ExitCode::from(64);
        }
        Command::Page(..) => {
            eprintln!("herald campaign: --page takes a Facebook Page id (digits only)");
            return ExitCode::from(64);
        }
    };
    let connection = match herald_amqp::connect(&amqp_settings(config)).await {
        Ok(connection) => connection,
        Err(error) => {
            eprintln!("herald campaign: {error}");
            return ExitCode::from(69);
        }
    };
    let published = async {
        // Idempotent, and makes sure the control log exists to keep the command.
        topology.declare(&connection).await?;
        let publisher = Publisher::open(&connection, 1).await?;
        publisher
            .publish(
                &topology.control_exchange(),
                "",
                &message.to_vec(),
                Headers::new(),
            )
            .await?
            .await?;
        publisher.close().await
    }
    .await;
    let _ = connection.close().await;
    match published {
        Ok(()) => {
            out(&done);
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("herald campaign: the command was not confirmed by the broker: {error}");
            ExitCode::from(69)
        }
    }
}
