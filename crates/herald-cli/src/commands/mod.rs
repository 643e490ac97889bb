//! Dispatch from a parsed command to the library that does the work. Commands that are not built
//! yet say so and exit 2: none pretends to work.

mod campaign;
mod control;
mod dead;
mod progress;
mod sim;
mod test_send;
mod topology;
mod worker;

use std::process::ExitCode;

use herald_core::ControlAction;

use crate::cli::{CampaignCommand, Command, DeadCommand, UsersCommand};
use crate::config::Config;

/// Runs one command to completion and returns the process exit code.
pub(crate) async fn run(command: Command, config: Config) -> ExitCode {
    match command {
        Command::Sim(args) => sim::run(args, &config).await,
        Command::Topology => topology::run(&config).await,
        Command::Worker(args) => worker::run(args, &config).await,
        Command::Campaign(CampaignCommand::Send(args)) => campaign::send(args, &config).await,
        Command::Campaign(CampaignCommand::Test(args)) => test_send::run(args, &config).await,
        Command::Campaign(CampaignCommand::Status { .. }) => not_built("herald campaign status", 5),
        Command::Campaign(CampaignCommand::Pause { run_id }) => {
            control::run(
                control::Command::Run(ControlAction::PauseRun, run_id),
                &config,
            )
            .await
        }
        Command::Campaign(CampaignCommand::Resume(args)) => {
            let command = match (args.page, args.run_id) {
                (Some(page), _) => control::Command::Page(ControlAction::ResumePage, page),
                (None, run_id) => {
                    control::Command::Run(ControlAction::ResumeRun, run_id.unwrap_or_default())
                }
            };
            control::run(command, &config).await
        }
        Command::Campaign(CampaignCommand::Cancel { run_id }) => {
            control::run(
                control::Command::Run(ControlAction::CancelRun, run_id),
                &config,
            )
            .await
        }
        Command::Run(_) => not_built("herald run", 6),
        Command::Users(UsersCommand::Import { .. }) => not_built("herald users import", 5),
        Command::Serve(_) => not_built("herald serve", 5),
        Command::Dead(DeadCommand::List { run }) => {
            dead::list(dead::Filter { run, code: None }, &config).await
        }
        Command::Dead(DeadCommand::Replay { run, code }) => {
            dead::replay(dead::Filter { run, code }, &config).await
        }
        Command::Demo => not_built("herald demo", 6),
    }
}

/// Broker settings from the configuration.
fn amqp_settings(config: &Config) -> herald_amqp::AmqpSettings {
    herald_amqp::AmqpSettings {
        url: config.amqp_url.clone(),
        ..herald_amqp::AmqpSettings::default()
    }
}

/// The exchange and queue names for this configuration.
fn topology_for(config: &Config) -> Result<herald_amqp::Topology, ()> {
    herald_amqp::Topology::new(&config.topology_prefix).map_err(|error| {
        eprintln!("herald: topology_prefix: {error}");
    })
}

fn not_built(command: &str, issue: u32) -> ExitCode {
    eprintln!("{command}: not built yet (tracked in issue {issue}); nothing was done.");
    ExitCode::from(2)
}
