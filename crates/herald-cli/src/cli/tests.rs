//! The clap surface documents itself: every argument a user can see has help text, and the
//! main commands end their `--help` with examples.

use clap::{CommandFactory, Parser};

use super::Cli;

/// Every visible argument of `command` and of its subcommands that has no help, as
/// `herald campaign send <campaign>`. clap's own `--help` and `--version` are not checked.
fn missing_help(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        if arg.is_hide_set() || id == "help" || id == "version" {
            continue;
        }
        if arg.get_help().is_none() && arg.get_long_help().is_none() {
            missing.push(format!("{path} <{id}>"));
        }
    }
    for sub in command.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        missing_help(sub, &format!("{path} {}", sub.get_name()), missing);
    }
}

#[test]
fn every_argument_has_help() {
    let mut command = Cli::command();
    command.build();
    let mut missing = Vec::new();
    missing_help(&command, "herald", &mut missing);
    assert!(missing.is_empty(), "arguments without help: {missing:?}");
}

#[test]
fn every_subcommand_has_help() {
    fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for sub in command.get_subcommands() {
            if sub.is_hide_set() || sub.get_name() == "help" {
                continue;
            }
            let here = format!("{path} {}", sub.get_name());
            if sub.get_about().is_none() {
                missing.push(here.clone());
            }
            walk(sub, &here, missing);
        }
    }
    let mut missing = Vec::new();
    walk(&Cli::command(), "herald", &mut missing);
    assert!(missing.is_empty(), "subcommands without help: {missing:?}");
}

#[test]
fn the_main_commands_show_examples() {
    let command = Cli::command();
    for path in [
        &["campaign", "send"][..],
        &["campaign", "status"],
        &["worker"],
        &["serve"],
        &["run"],
        &["demo"],
    ] {
        let mut sub = &command;
        for name in path {
            sub = sub
                .find_subcommand(name)
                .unwrap_or_else(|| panic!("no subcommand {name}"));
        }
        let after = sub.get_after_help().map(ToString::to_string);
        let after = after.unwrap_or_default();
        assert!(after.starts_with("Examples:"), "{path:?}: {after:?}");
        for line in after.lines().skip(1) {
            assert!(
                line.trim_start().starts_with("herald ") || line.contains(" herald "),
                "{path:?}: an example that does not run herald: {line}"
            );
        }
    }
}

#[test]
fn the_examples_parse() {
    use super::examples::{CAMPAIGN_SEND, CAMPAIGN_STATUS, DEMO, RUN, SERVE, WORKER};
    for text in [CAMPAIGN_SEND, CAMPAIGN_STATUS, WORKER, SERVE, RUN, DEMO] {
        for line in text.lines().skip(1) {
            let line = line.split(" # ").next().unwrap_or(line);
            let words: Vec<&str> = line
                .split_whitespace()
                .skip_while(|word| *word != "herald")
                .collect();
            if let Err(error) = Cli::try_parse_from(&words) {
                panic!("{line}: {error}");
            }
        }
    }
}

#[test]
fn the_command_tree_is_consistent() {
    Cli::command().debug_assert();
}
