//! `herald sim`: the Graph API simulator as a long-running process, configured from flags.

use std::collections::HashMap;
use std::process::ExitCode;

use herald_sim::{Latency, SimConfig};

use crate::cli::SimArgs;
use crate::config::Config;

pub(crate) async fn run(args: SimArgs, config: &Config) -> ExitCode {
    let mut tokens = HashMap::new();
    for pair in &args.tokens {
        match pair.split_once('=') {
            Some((page, token)) if !page.is_empty() && !token.is_empty() => {
                tokens.insert(page.to_owned(), token.to_owned());
            }
            // Never echo the value: it is a token.
            _ => {
                eprintln!("herald sim: --token takes PAGE_ID=TOKEN");
                return ExitCode::from(64);
            }
        }
    }
    if !(0.0..=1.0).contains(&args.fail_rate) {
        eprintln!("herald sim: --fail-rate is a probability between 0 and 1");
        return ExitCode::from(64);
    }
    let budget_window = match herald_core::duration::parse_duration(&args.budget_window) {
        Ok(window) => window,
        Err(error) => {
            eprintln!("herald sim: --budget-window: {error}");
            return ExitCode::from(64);
        }
    };
    let defaults = SimConfig::default();
    let sim_config = SimConfig {
        rate_per_sec: args.rate_per_sec,
        engaged_users: args.engaged_users,
        budget_window_ms: u64::try_from(budget_window.as_millis()).unwrap_or(u64::MAX),
        latency: if args.latency_ms == 0 {
            Latency::None
        } else {
            Latency::Fixed {
                ms: args.latency_ms,
            }
        },
        fail_rate: args.fail_rate,
        app_secret: args
            .app_secret
            .or_else(|| config.app_secret.as_ref().map(|s| s.expose().to_owned())),
        tokens,
        webhook_url: args.webhook_url,
        receipts: args.receipts,
        delivery_delay_ms: args.delivery_delay_ms.unwrap_or(defaults.delivery_delay_ms),
        read_delay_ms: args.read_delay_ms.unwrap_or(defaults.read_delay_ms),
        echoes: args.echoes,
        echo_delay_ms: args.echo_delay_ms.unwrap_or(defaults.echo_delay_ms),
        lost_answer_rate: args.lost_answer_rate,
        ..defaults
    };
    if let Err(problems) = sim_config.validate() {
        for problem in problems {
            eprintln!("herald sim: {problem}");
        }
        return ExitCode::from(64);
    }
    tracing::info!(
        addr = %args.addr,
        rate_per_sec = args.rate_per_sec,
        engaged_users = args.engaged_users,
        budget_window = %args.budget_window,
        receipts = sim_config.receipts,
        echoes = sim_config.echoes,
        "Graph API simulator starting."
    );
    match herald_sim::run(sim_config, args.addr, crate::signal::terminated()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("herald sim: cannot serve on {}: {error}", args.addr);
            ExitCode::FAILURE
        }
    }
}
