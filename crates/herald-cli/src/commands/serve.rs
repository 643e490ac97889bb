//! `herald serve [--addr ADDR] [--admin-addr ADDR] [--no-ingest] [--no-results]`: compose `ServeSettings` from the
//! configuration, refuse to start without the webhook's secrets (exit 64), and run
//! `herald_server::serve::serve` until SIGTERM/SIGINT, then drain and exit 0. Prints
//! `listening: http://ADDR` once the address is bound (port 0 picks a free one), and
//! `admin: http://ADDR` for `--admin-addr`.

use std::process::ExitCode;

use herald_server::api::DEFAULT_MAX_IMPORT_BYTES;
use herald_server::serve::{self, ServeError, ServeSettings};
use herald_server::webhook::WebhookConfig;
use herald_telemetry::{Health, Metrics};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::cli::ServeArgs;
use crate::commands::common::open_store;
use crate::commands::ops::broker;
use crate::commands::text::out;
use crate::config::Config;

/// The shortest admin API token serve accepts: 32 characters, 128 bits or more when random hex.
const MIN_API_TOKEN_CHARS: usize = 32;

pub(crate) async fn run(args: ServeArgs, config: &Config) -> ExitCode {
    let secret = |value: &Option<herald_core::Secret>| value.clone().filter(|s| !s.is_blank());
    let (app_secret, verify_token) = (secret(&config.app_secret), secret(&config.verify_token));
    let mut missing = Vec::new();
    if app_secret.is_none() {
        missing.push("HERALD_APP_SECRET (app_secret)");
    }
    if verify_token.is_none() {
        missing.push("HERALD_VERIFY_TOKEN (verify_token)");
    }
    let (Some(app_secret), Some(verify_token)) = (app_secret, verify_token) else {
        eprintln!(
            "herald serve: {} not set: the webhook cannot verify Meta's requests without the \
             app secret and the verify token; nothing was started",
            missing.join(" and ")
        );
        return ExitCode::from(64);
    };
    if let Some(token) = &config.api_token
        && token.expose().chars().count() < MIN_API_TOKEN_CHARS
    {
        eprintln!(
            "herald serve: HERALD_API_TOKEN (api_token) is shorter than {MIN_API_TOKEN_CHARS} \
             characters: anyone who reaches the admin API could guess it. Use a random one, \
             e.g. `openssl rand -hex 32`; nothing was started"
        );
        return ExitCode::from(64);
    }
    let mut broker = match broker(config) {
        Ok(broker) => broker,
        Err(code) => return code,
    };
    broker.amqp.connection_name = "herald serve".to_owned();
    if config.ref_keys.is_none() {
        warn!(
            "HERALD_REF_SECRET is not set: no m.me or plugin ref will link a PSID to a user \
               (mint signed refs with `herald refs sign` once it is set)."
        );
    }
    if config.api_token.is_none() {
        warn!("HERALD_API_TOKEN is not set: the admin API answers 503 to every call.");
    }
    let store = match open_store(config).await {
        Ok(store) => store,
        Err(code) => return code,
    };
    let listener = match serve::bind(args.addr).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("herald serve: cannot listen on {}: {error}", args.addr);
            return ExitCode::from(69);
        }
    };
    match listener.local_addr() {
        Ok(addr) => out(&format!("listening: http://{addr}")),
        Err(_) => out(&format!("listening: http://{}", args.addr)),
    }
    let admin = match args.admin_addr {
        None => None,
        Some(admin_addr) => match serve::bind(admin_addr).await {
            Ok(admin) => {
                let shown = admin.local_addr().unwrap_or(admin_addr);
                out(&format!("admin: http://{shown}"));
                Some(admin)
            }
            Err(error) => {
                eprintln!("herald serve: cannot listen on {admin_addr} (--admin-addr): {error}");
                return ExitCode::from(69);
            }
        },
    };
    let settings = ServeSettings {
        webhook: WebhookConfig::new(app_secret, verify_token),
        api_token: config.api_token.clone(),
        ledger_token: config.ledger_token.clone(),
        ref_keys: config.ref_keys.clone(),
        segment_dir: config.segment_dir.clone(),
        store,
        broker,
        ingest: !args.no_ingest,
        results: !args.no_results,
        missed_while_down: true,
        max_import_bytes: DEFAULT_MAX_IMPORT_BYTES,
        page_rates: config.page_rates(),
    };
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        crate::signal::terminated().await;
        on_signal.cancel();
    });
    let listeners = serve::Listeners {
        public: listener,
        admin,
    };
    let result = serve::serve(
        listeners,
        settings,
        Metrics::new(),
        Health::default(),
        shutdown,
    )
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("herald serve: {error}");
            let broker_down = matches!(error, ServeError::Consumer(_));
            ExitCode::from(if broker_down { 69 } else { 1 })
        }
    }
}
