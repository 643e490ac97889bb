//! `herald worker`: compose `WorkerSettings` from the configuration and flags, serve `/metrics`,
//! `/healthz` and `/readyz`, run the worker until SIGTERM/SIGINT, and replace the page tokens on
//! SIGHUP or when the tokens file changes. The worker itself is herald-worker.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use herald_core::Secret;
use herald_graph::GraphSettings;
use herald_telemetry::{Health, Metrics, serve_metrics};
use herald_worker::{LedgerSettings, PageTokens, WorkerError, WorkerSettings};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::cli::WorkerArgs;
use crate::commands::{amqp_settings, text::out, topology_for};
use crate::config::{Config, read_tokens_file};

/// Worker settings from the configuration: Graph, page tokens and page rates (`herald worker`
/// and the in-process workers of `herald run` compose them the same way).
pub(crate) fn worker_settings(
    config: &Config,
    amqp: herald_amqp::AmqpSettings,
    topology: herald_amqp::Topology,
) -> WorkerSettings {
    let graph = GraphSettings {
        graph_url: config.graph_url.clone(),
        version: config.graph_version.clone(),
        app_secret: config.app_secret.clone(),
        ..GraphSettings::default()
    };
    let tokens = PageTokens::new(config.page_tokens.clone());
    let mut settings = WorkerSettings::new(amqp, topology, graph, tokens);
    settings.ledger = config.ledger_url.as_ref().map(|url| {
        let mut ledger = LedgerSettings::new(url.clone(), config.ledger_token.clone());
        ledger.horizon = Duration::from_secs(config.ledger_horizon_secs);
        ledger
    });
    settings.rates = config.page_rates();
    settings
}

/// How often the tokens file's modification time is checked.
const TOKENS_FILE_POLL: Duration = Duration::from_secs(5);

pub(crate) async fn run(args: WorkerArgs, config: &Config) -> ExitCode {
    let Ok(topology) = topology_for(config) else {
        return ExitCode::from(64);
    };
    let mut amqp = amqp_settings(config);
    amqp.prefetch = args.prefetch;
    amqp.connection_name = "herald worker".to_owned();
    let mut settings = worker_settings(config, amqp, topology);
    settings.concurrency = args.concurrency;
    let tokens = settings.tokens.clone();
    if let Err(problems) = settings.validate() {
        for problem in problems {
            eprintln!("herald worker: {problem}");
        }
        return ExitCode::from(64);
    }

    let (metrics, health) = (Metrics::new(), Health::default());
    let server = match serve_metrics(args.metrics_addr, metrics.clone(), health.clone()).await {
        Ok(server) => server,
        Err(error) => {
            eprintln!(
                "herald worker: cannot serve metrics on {}: {error}",
                args.metrics_addr
            );
            return ExitCode::from(69);
        }
    };
    out(&format!("metrics: http://{}/metrics", server.addr));
    if config.page_tokens.is_empty() {
        warn!("No page tokens configured; set HERALD_PAGE_TOKEN_<PAGE_ID> or a tokens file.");
    }

    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        crate::signal::terminated().await;
        on_signal.cancel();
    });
    let reloader = tokio::spawn(reload_tokens(
        config.tokens_file.clone(),
        config.page_tokens.clone(),
        tokens,
        shutdown.clone(),
    ));
    let result = herald_worker::run(settings, metrics, health, shutdown.clone()).await;
    shutdown.cancel();
    let _ = reloader.await;
    server.abort();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("herald worker: {error}");
            let broker_down =
                matches!(&error, WorkerError::Amqp(amqp) if amqp.is_connection_lost());
            ExitCode::from(if broker_down { 69 } else { 1 })
        }
    }
}

/// Replaces the tokens on SIGHUP and whenever the tokens file's modification time changes.
/// Tokens set in the environment or `herald.toml` win over the file, as at start, and cannot
/// change at run time.
async fn reload_tokens(
    file: Option<PathBuf>,
    at_start: BTreeMap<String, Secret>,
    tokens: PageTokens,
    shutdown: CancellationToken,
) {
    let Ok(mut hangup) = signal(SignalKind::hangup()) else {
        warn!("Cannot install a SIGHUP handler; page tokens are fixed until restart.");
        return;
    };
    // Tokens that did not come from the file were set by the environment or herald.toml.
    let from_file = file
        .as_deref()
        .and_then(|path| read_tokens_file(path).ok())
        .unwrap_or_default();
    let fixed: BTreeMap<String, Secret> = at_start
        .into_iter()
        .filter(|(page, token)| from_file.get(page) != Some(token))
        .collect();
    let mut seen = file.as_deref().and_then(modified);
    let mut poll = tokio::time::interval(TOKENS_FILE_POLL);
    loop {
        let reason = tokio::select! {
            () = shutdown.cancelled() => return,
            _ = hangup.recv() => "SIGHUP",
            _ = poll.tick() => {
                let now = file.as_deref().and_then(modified);
                if now == seen {
                    continue;
                }
                seen = now;
                "tokens file changed"
            }
        };
        let Some(path) = file.as_deref() else {
            info!(
                reason,
                "No tokens file configured; tokens from the environment stay as they are."
            );
            continue;
        };
        match read_tokens_file(path) {
            Ok(mut fresh) => {
                fresh.extend(fixed.clone());
                let changed = tokens.replace(fresh);
                info!(reason, changed_pages = ?changed, "Page tokens reloaded.");
            }
            Err(problems) => warn!(reason, problem = %problems.join("; "),
                "Could not reload the tokens file; keeping the current tokens."),
        }
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
