//! `herald serve` as a library: an HTTP server with the Messenger webhook (`webhook`), the admin
//! API (`api`) and the operations endpoints (`/metrics`, `/healthz`, `/readyz` from
//! herald-telemetry), plus the ingest and results consumers in the same process (each can be
//! turned off, to run it elsewhere). All on one address, or (`Listeners::admin`) the webhook,
//! `/healthz` and `/readyz` on the public one and the admin API and `/metrics` on another, so
//! that only what Meta must reach is exposed. `/readyz` answers 200, and
//! `herald_broker_connected` reads 1, while the webhook's broker connection is up: a webhook
//! that cannot publish must not receive traffic. (The consumers report their own connections in
//! `herald_consumer_connected`.)
//!
//! Shutdown (the caller cancels `shutdown`, e.g. on SIGTERM): the HTTP server stops accepting
//! and finishes the requests in flight, the consumers finish the message in hand, runs started
//! over the API stop where their confirmed rows are recorded, and the store is closed.
//! A consumer that stops on its own with a broker failure reconnecting cannot fix stops the
//! whole server with that error, so the process exits non-zero and gets restarted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{Method, StatusCode};
use axum::response::IntoResponse;
use herald_core::Secret;
use herald_core::signed_ref::RefKeys;
use herald_producer::SharedLink;
use herald_store::Store;
use herald_telemetry::{Health, Metrics};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::ConsumeError;
use crate::api::{self, ApiConfig};
use crate::consume::Wiring;
use crate::freshness::Freshness;
use crate::ops::Broker;
use crate::ops::runs::RunTasks;
use crate::webhook::{self, EventSink, WebhookConfig};

/// How often due scheduled campaigns are looked for.
const SCHEDULES_EVERY: Duration = Duration::from_secs(1);
/// How often `/readyz` re-reads the webhook's broker connection.
const READINESS_EVERY: Duration = Duration::from_secs(1);

/// Everything `herald serve` needs.
#[derive(Clone)]
pub struct ServeSettings {
    /// The app secret and verify token of the webhook, and its body limit.
    pub webhook: WebhookConfig,
    /// `HERALD_API_TOKEN`; without one the admin API answers 503 to every call.
    pub api_token: Option<Secret>,
    /// `HERALD_LEDGER_TOKEN`: a second token that opens `GET /ledger/{job_id}` and nothing else,
    /// for workers (they need not hold the admin token).
    pub ledger_token: Option<Secret>,
    /// The keys webhook refs are verified with (`HERALD_REF_SECRET`); without them no ref links.
    pub ref_keys: Option<RefKeys>,
    /// Where segment files of runs started over the API must be (`HERALD_SEGMENT_DIR`).
    pub segment_dir: Option<std::path::PathBuf>,
    /// The store.
    pub store: Store,
    /// The broker and exchange and queue names.
    pub broker: Broker,
    /// Run the ingest consumer (webhook events into the store) in this process.
    pub ingest: bool,
    /// Run the results consumer (delivery results into the store) in this process.
    pub results: bool,
    /// Meta may hold webhook deliveries it could not make while this serve was down (echoes
    /// among them): when true, the send ledger's "no record" answers are not current for a
    /// while after start, as after any refused delivery. `herald serve` sets it; a test rig
    /// that never missed a delivery need not.
    pub missed_while_down: bool,
    /// Body limit of `POST /users/import`, in bytes.
    pub max_import_bytes: u64,
    /// The page ceilings (`HERALD_PAGE_RATE_PER_SEC[_<PAGE_ID>]`), for the launch check.
    pub page_rates: herald_core::rates::PageRates,
}

/// Why the server stopped without being asked to.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The HTTP server failed.
    #[error("the HTTP server failed: {0}")]
    Http(#[source] std::io::Error),
    /// A consumer stopped on a broker failure that reconnecting cannot fix.
    #[error(transparent)]
    Consumer(#[from] ConsumeError),
    /// A consumer task panicked.
    #[error("a consumer task panicked: {0}")]
    ConsumerPanicked(String),
}

/// Where `herald serve` listens.
#[derive(Debug)]
pub struct Listeners {
    /// The webhook, `/healthz` and `/readyz`; also the admin API and `/metrics` without `admin`.
    pub public: TcpListener,
    /// The admin API, `/metrics`, `/healthz` and `/readyz`, apart from the webhook.
    pub admin: Option<TcpListener>,
}

impl From<TcpListener> for Listeners {
    fn from(public: TcpListener) -> Self {
        Self {
            public,
            admin: None,
        }
    }
}

/// The whole HTTP surface on one address: webhook, admin API, operations endpoints, and a
/// JSON 404.
pub fn router(
    settings: &ServeSettings,
    events: EventSink,
    runs: RunTasks,
    metrics: Metrics,
    health: Health,
    freshness: Freshness,
    shared: Shared,
) -> Router {
    webhook::router(settings.webhook.clone(), events, metrics.clone()).merge(admin_router(
        settings, runs, metrics, health, freshness, shared,
    ))
}

/// What the admin API shares with the rest of the process.
#[derive(Clone)]
pub struct Shared {
    /// Wakes the dispatcher of triggered campaigns.
    pub fires: Arc<Notify>,
    /// The connection API triggers and the dispatcher of triggered campaigns publish on.
    pub trigger_link: Arc<SharedLink>,
}

/// The public address when the admin API has its own: the webhook, `/healthz` and `/readyz`.
fn public_router(
    settings: &ServeSettings,
    events: EventSink,
    metrics: Metrics,
    health: Health,
) -> Router {
    webhook::router(settings.webhook.clone(), events, metrics)
        .merge(herald_telemetry::health_router(health))
        .fallback(not_found)
}

/// The admin API and the operations endpoints, with a JSON 404.
fn admin_router(
    settings: &ServeSettings,
    runs: RunTasks,
    metrics: Metrics,
    health: Health,
    freshness: Freshness,
    shared: Shared,
) -> Router {
    let api = api::router(ApiConfig {
        fires: shared.fires,
        trigger_link: shared.trigger_link,
        metrics: metrics.clone(),
        token: settings.api_token.clone(),
        ledger_token: settings.ledger_token.clone(),
        store: settings.store.clone(),
        broker: settings.broker.clone(),
        runs,
        max_import_bytes: settings.max_import_bytes,
        ref_keys: settings.ref_keys.clone(),
        segment_dir: settings.segment_dir.clone(),
        freshness,
        page_rates: settings.page_rates.clone(),
    })
    .route_layer(axum::middleware::from_fn_with_state(
        metrics.clone(),
        count_api_request,
    ));
    api.merge(herald_telemetry::ops_router(metrics, health))
        .fallback(not_found)
}

async fn not_found() -> axum::response::Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({"error": "no such route (see GET /openapi.json)"})),
    )
        .into_response()
}

/// Counts an admin API request in `herald_api_requests_total` by route template and status, so
/// the label set stays closed (a run id never becomes a label).
async fn count_api_request(
    axum::extract::State(metrics): axum::extract::State<Metrics>,
    route: Option<axum::extract::MatchedPath>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = route.map_or_else(|| "unmatched".to_owned(), |r| r.as_str().to_owned());
    let response = next.run(request).await;
    metrics
        .api_requests
        .with_label_values(&[route.as_str(), response.status().as_str()])
        .inc();
    response
}

/// Every route `herald serve` answers, as `(method, path)`: the admin API's (`api::routes`,
/// built from the same table as its router), the webhook's and the operations endpoints'.
pub fn routes() -> Vec<(Method, &'static str)> {
    let mut routes = api::routes();
    routes.extend([
        (Method::GET, "/webhook"),
        (Method::POST, "/webhook"),
        (Method::GET, "/metrics"),
        (Method::GET, "/healthz"),
        (Method::GET, "/readyz"),
    ]);
    routes
}

/// Serves on `listener` until `shutdown` is cancelled (then drains) or a consumer fails.
pub async fn serve(
    listeners: Listeners,
    settings: ServeSettings,
    metrics: Metrics,
    health: Health,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let broker = settings.broker.clone();
    let events = EventSink::new(broker.amqp.clone(), broker.topology.clone());
    let freshness = Freshness::new(events.refusals());
    if settings.missed_while_down {
        events.refused();
    }
    let runs = RunTasks::new();
    // Woken when this process records fires of triggered campaigns (ingest, /users/track).
    let fires = Arc::new(Notify::new());
    let shared = Shared {
        fires: fires.clone(),
        trigger_link: Arc::new(SharedLink::new()),
    };
    let (app, admin) = match listeners.admin {
        None => {
            let app = router(
                &settings,
                events.clone(),
                runs.clone(),
                metrics.clone(),
                health.clone(),
                freshness.clone(),
                shared.clone(),
            );
            (app, None)
        }
        Some(admin) => {
            let public = public_router(&settings, events.clone(), metrics.clone(), health.clone());
            let routes = admin_router(
                &settings,
                runs.clone(),
                metrics.clone(),
                health.clone(),
                freshness.clone(),
                shared.clone(),
            );
            (public, Some((admin, routes)))
        }
    };
    let listener = listeners.public;
    let stop = shutdown.child_token();
    let mut consumers = JoinSet::new();
    if settings.ingest {
        let keys = crate::ingest::IngestKeys {
            app_secret: settings.webhook.app_secret.clone(),
            refs: settings.ref_keys.clone(),
        };
        consumers.spawn(crate::ingest::run_ingest_tracked(
            settings.store.clone(),
            keys,
            wiring(&broker, &metrics, &stop),
            freshness.ingest(),
            Some(fires.clone()),
        ));
    }
    if settings.results {
        consumers.spawn(crate::results::run_results_tracked(
            settings.store.clone(),
            wiring(&broker, &metrics, &stop),
            None,
            freshness.results(),
        ));
    }
    let scheduler = tokio::spawn(run_schedules(settings.clone(), runs.clone(), stop.clone()));
    let dispatcher = tokio::spawn(crate::fires::run_dispatcher(
        crate::fires::DispatchSettings {
            store: settings.store.clone(),
            broker: broker.clone(),
            metrics: metrics.clone(),
            wake: fires.clone(),
            link: shared.trigger_link.clone(),
        },
        stop.clone(),
    ));
    let readiness = tokio::spawn(track_readiness(
        events,
        health.clone(),
        metrics.clone(),
        stop.clone(),
    ));
    let addr = listener.local_addr().ok();
    info!(addr = ?addr, ingest = settings.ingest, results = settings.results, "Serving.");
    let admin_addr = admin
        .as_ref()
        .and_then(|(admin, _)| admin.local_addr().ok());
    if let Some(admin_addr) = admin_addr {
        info!(addr = ?admin_addr, "Admin API and /metrics on their own address.");
    }
    let public = crate::http::serve(listener, app, stop.clone().cancelled_owned());
    let admin = async {
        match admin {
            Some((admin, routes)) => {
                crate::http::serve(admin, routes, stop.clone().cancelled_owned()).await
            }
            None => Ok(()),
        }
    };
    // Either server failing ends both: the process exits with the error.
    let http = async { tokio::try_join!(public, admin).map(|_| ()) };
    let mut failure = None;
    tokio::pin!(http);
    let http_result = loop {
        tokio::select! {
            result = &mut http => break result,
            Some(ended) = consumers.join_next(), if !consumers.is_empty() => {
                if let Some(error) = consumer_failure(ended) {
                    warn!(error = %error, "A consumer stopped; stopping the server.");
                    failure = Some(error);
                    stop.cancel();
                }
            }
        }
    };
    stop.cancel();
    health.set_ready(false);
    while let Some(ended) = consumers.join_next().await {
        if let Some(error) = consumer_failure(ended) {
            failure.get_or_insert(error);
        }
    }
    let _ = readiness.await;
    let _ = scheduler.await;
    let _ = dispatcher.await;
    if runs.running() > 0 {
        info!(runs = runs.running(), "Stopping runs still publishing.");
    }
    runs.shutdown().await;
    shared.trigger_link.close().await;
    settings.store.close().await;
    if let Err(error) = http_result {
        return Err(ServeError::Http(error));
    }
    match failure {
        Some(error) => Err(error),
        None => {
            info!("Server stopped.");
            Ok(())
        }
    }
}

/// Starts due scheduled occurrences every `SCHEDULES_EVERY` until `stop` (every serve process
/// does; the store makes each start exactly-once).
async fn run_schedules(settings: ServeSettings, runs: RunTasks, stop: CancellationToken) {
    let mut every = tokio::time::interval(SCHEDULES_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = stop.cancelled() => return,
        }
        let starter = crate::ops::schedules::Starter {
            store: &settings.store,
            broker: &settings.broker,
            tasks: &runs,
            segment_dir: settings.segment_dir.as_deref(),
            rates: &settings.page_rates,
        };
        if let Err(error) = crate::ops::schedules::start_due(&starter).await {
            warn!(error = %error, "Could not look for due schedules; trying again.");
        }
    }
}

/// What a consumer of this serve runs on.
fn wiring(broker: &Broker, metrics: &Metrics, stop: &CancellationToken) -> Wiring {
    Wiring {
        amqp: broker.amqp.clone(),
        topology: broker.topology.clone(),
        metrics: metrics.clone(),
        shutdown: stop.clone(),
    }
}

/// The failure of a consumer that ended with one.
fn consumer_failure(
    ended: Result<Result<(), ConsumeError>, tokio::task::JoinError>,
) -> Option<ServeError> {
    match ended {
        Ok(Ok(())) => None,
        Ok(Err(error)) => Some(ServeError::Consumer(error)),
        Err(panic) => Some(ServeError::ConsumerPanicked(panic.to_string())),
    }
}

/// Keeps `/readyz`, `herald_broker_connected` and `herald_broker_blocked` in step with the
/// webhook's broker connection until `stop`, then reports it down.
async fn track_readiness(
    events: EventSink,
    health: Health,
    metrics: Metrics,
    stop: CancellationToken,
) {
    let mut every = tokio::time::interval(READINESS_EVERY);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = every.tick() => {
                let connected = events.is_connected();
                health.set_ready(connected);
                metrics.broker_connected.set(i64::from(connected));
                metrics.broker_blocked.set(i64::from(events.is_blocked()));
            }
        }
    }
    metrics.broker_connected.set(0);
    metrics.broker_blocked.set(0);
}

/// Binds `addr` (port 0 picks a free one; `local_addr` says which).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
