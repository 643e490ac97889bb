//! `herald completions SHELL` and `herald man`: generated from the clap definitions, so they
//! never drift from the commands. Neither reads configuration.

use std::io::Write;
use std::process::ExitCode;

use clap::CommandFactory;

use crate::cli::{Cli, Command};

/// Runs `command` when it needs no configuration (completions, the man page).
pub(crate) fn standalone(command: &Command) -> Option<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    let written = match command {
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "herald", &mut stdout);
            Ok(())
        }
        Command::Man => clap_mangen::Man::new(Cli::command()).render(&mut stdout),
        _ => return None,
    };
    Some(match written.and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        // `herald man | head`: the reader has what it wanted.
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("herald: cannot write to standard output: {error}");
            ExitCode::FAILURE
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(command: &Command) -> String {
        let mut out = Vec::new();
        match command {
            Command::Completions { shell } => {
                clap_complete::generate(*shell, &mut Cli::command(), "herald", &mut out);
            }
            _ => clap_mangen::Man::new(Cli::command())
                .render(&mut out)
                .expect("render"),
        }
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn completions_know_the_subcommands_and_their_flags() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let script = render(&Command::Completions { shell });
            // fish names long flags without their dashes (`-l dry-run`).
            for word in ["campaign", "worker", "serve", "dry-run", "engaged-users"] {
                assert!(script.contains(word), "{shell}: no {word}");
            }
        }
    }

    #[test]
    fn the_man_page_names_the_commands() {
        let page = render(&Command::Man);
        assert!(
            page.starts_with(".ie") || page.contains(".TH herald"),
            "{page}"
        );
        for word in ["campaign", "worker", "serve", "completions"] {
            assert!(page.contains(word), "no {word}");
        }
    }
}
