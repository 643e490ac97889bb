//! Dispatch from a parsed command to the library that does the work.

mod campaign;
mod common;
mod control;
mod dead;
mod deliver;
mod demo;
mod docs;
mod launch;
mod ops;
mod progress;
mod refs;
mod run;
mod schedules;
mod serve;
mod sim;
mod status;
mod stored;
mod test_send;
mod text;
mod topology;
mod users;
mod worker;

use std::process::ExitCode;

pub(crate) use docs::standalone;

use herald_server::ops::control::Command as Control;
use herald_server::ops::dead::Filter as DeadFilter;

use crate::cli::{CampaignCommand, Command, DeadCommand, RefsCommand, UsersCommand};
use crate::config::Config;

/// Runs one command to completion and returns the process exit code.
pub(crate) async fn run(command: Command, config: Config) -> ExitCode {
    match command {
        Command::Sim(args) => sim::run(args, &config).await,
        Command::Topology => topology::run(&config).await,
        Command::Worker(args) => worker::run(args, &config).await,
        Command::Campaign(CampaignCommand::Send(args)) => campaign::send(args, &config).await,
        Command::Campaign(CampaignCommand::Test(args)) => test_send::run(args, &config).await,
        Command::Campaign(CampaignCommand::Status { run_id, json }) => {
            if schedules::is_schedule(&run_id) {
                schedules::status(&run_id, json, &config).await
            } else {
                status::run(&run_id, json, &config).await
            }
        }
        Command::Campaign(CampaignCommand::Schedules { json }) => {
            schedules::list(json, &config).await
        }
        Command::Campaign(CampaignCommand::Pause { run_id }) => {
            control::run(Control::PauseRun(run_id), &config).await
        }
        Command::Campaign(CampaignCommand::Resume(args)) => {
            let command = match (args.page, args.run_id) {
                (Some(page), _) => Control::ResumePage(page),
                (None, run_id) => Control::ResumeRun(run_id.unwrap_or_default()),
            };
            control::run(command, &config).await
        }
        Command::Campaign(CampaignCommand::Cancel { run_id }) => {
            if schedules::is_schedule(&run_id) {
                schedules::cancel(&run_id, &config).await
            } else {
                control::run(Control::CancelRun(run_id), &config).await
            }
        }
        Command::Run(args) => run::run(args, &config).await,
        Command::Campaigns(command) => stored::run(command, &config).await,
        Command::Users(UsersCommand::Import { file, page }) => {
            users::import(&file, page, &config).await
        }
        Command::Serve(args) => serve::run(args, &config).await,
        Command::Refs(RefsCommand::Sign {
            external_id,
            page,
            ttl,
            json,
        }) => refs::sign(external_id, page, ttl, json, &config),
        Command::Dead(DeadCommand::List { run }) => {
            let filter = DeadFilter {
                run_id: run,
                code: None,
            };
            dead::list(filter, &config).await
        }
        Command::Dead(DeadCommand::Replay { run, code }) => {
            let filter = DeadFilter { run_id: run, code };
            dead::replay(filter, &config).await
        }
        Command::Demo(args) => demo::run(args, &config).await,
        // `main` runs these before reading the configuration.
        command @ (Command::Completions { .. } | Command::Man) => {
            standalone(&command).unwrap_or(ExitCode::SUCCESS)
        }
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
