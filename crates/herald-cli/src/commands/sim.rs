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
    let sim_config = SimConfig {
        rate_per_sec: args.rate_per_sec,
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
        ..SimConfig::default()
    };
    tracing::info!(addr = %args.addr, rate_per_sec = args.rate_per_sec, "Graph API simulator starting.");
    match herald_sim::run(sim_config, args.addr, crate::signal::terminated()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("herald sim: cannot serve on {}: {error}", args.addr);
            ExitCode::FAILURE
        }
    }
}
