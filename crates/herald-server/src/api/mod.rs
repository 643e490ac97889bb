//! The admin API (axum), behind a bearer token (`auth.rs`): the routes below, each a thin
//! handler over one function of `ops` (the CLI calls the same functions). Requests and answers
//! are JSON (user imports are CSV or JSONL); every refusal is a JSON `{"error", "problems"?}`
//! with a status that says what kind it is (`error.rs`). `openapi.json` describes all of it and
//! is served, without a token, at `GET /openapi.json`.
//!
//! | route | operation |
//! |---|---|
//! | `POST /campaigns/runs` | start a run from a campaign document (TOML or JSON) |
//! | `GET /campaigns/runs/{run_id}` | the run's status |
//! | `POST /campaigns/runs/{run_id}/pause` `/resume` `/cancel` | control the run |
//! | `POST /pages/{page_id}/resume` | resume a halted page |
//! | `GET /ledger/{job_id}` | one job's send ledger entry: its result and Meta's echo |
//! | `POST /ledger/{job_id}/claim` | claims a suspect job's send, so only one copy goes out |
//! | `GET /dead` | list dead letters (`run_id`, `code` filters) |
//! | `POST /dead/replay` | replay dead letters |
//! | `POST /users/import` | import users from a CSV or JSONL body |
//! | `POST /users/track` | Braze's `/users/track` attributes |
//! | `POST /refs` | mint a signed ref for an m.me link |

mod auth;
mod body;
mod campaigns;
mod dead;
mod error;
mod ledger;
mod refs;
mod runs;
mod schedules;
mod users;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, header};
use axum::middleware;
use axum::routing::{MethodRouter, delete, get, post, put};
use herald_core::Secret;
use herald_store::Store;

use crate::ops::Broker;
use crate::ops::runs::RunTasks;

/// The OpenAPI 3.1 document of this API.
pub const OPENAPI_JSON: &str = include_str!("../../openapi.json");

/// Body limit of JSON and TOML requests (campaign documents, replay filters).
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// Body limit of `POST /users/track` (about 10,000 attribute objects).
pub const MAX_TRACK_BYTES: usize = 8 * 1024 * 1024;
/// Default body limit of `POST /users/import` (streamed: memory stays flat whatever the size).
pub const DEFAULT_MAX_IMPORT_BYTES: u64 = 4 * 1024 * 1024 * 1024;

/// What the admin API needs.
#[derive(Clone)]
pub struct ApiConfig {
    /// `HERALD_API_TOKEN`; `None` makes every call 503 ("set HERALD_API_TOKEN").
    pub token: Option<Secret>,
    /// `HERALD_LEDGER_TOKEN`: accepted for the `/ledger` routes only.
    pub ledger_token: Option<Secret>,
    /// The store.
    pub store: Store,
    /// The broker and names.
    pub broker: Broker,
    /// Where runs started over the API publish.
    pub runs: RunTasks,
    /// Body limit of `POST /users/import`, in bytes.
    pub max_import_bytes: u64,
    /// The keys `POST /refs` signs with (`HERALD_REF_SECRET`).
    pub ref_keys: Option<herald_core::signed_ref::RefKeys>,
    /// Where segment files of runs started over the API must be (`HERALD_SEGMENT_DIR`);
    /// `None` refuses file segments.
    pub segment_dir: Option<std::path::PathBuf>,
    /// Whether the store has caught up, for the send ledger's "no record" answers.
    pub freshness: crate::freshness::Freshness,
    /// The page ceilings, for the launch check of runs started over the API.
    pub page_rates: herald_core::rates::PageRates,
    /// Wakes the dispatcher of triggered campaigns when `/users/track` recorded fires.
    pub fires: std::sync::Arc<tokio::sync::Notify>,
    /// The process's metrics (fires counted by `/users/track`).
    pub metrics: herald_telemetry::Metrics,
    /// The connection API triggers publish on, shared by their runs.
    pub trigger_link: std::sync::Arc<herald_producer::SharedLink>,
}

/// One admin API route: its method, path, handler and body limit.
struct Route {
    method: Method,
    path: &'static str,
    handler: MethodRouter<ApiConfig>,
}

/// The admin API, one row per route. The router is built from this table, so `routes()` is
/// exactly what is served (the OpenAPI test compares it with `openapi.json`).
fn table() -> Vec<Route> {
    let document = DefaultBodyLimit::max(MAX_DOCUMENT_BYTES);
    let route = |method: Method, path, handler: MethodRouter<ApiConfig>| Route {
        method,
        path,
        handler,
    };
    vec![
        route(
            Method::POST,
            "/campaigns/runs",
            post(runs::start).layer(document),
        ),
        route(Method::GET, "/campaigns/runs/{run_id}", get(runs::status)),
        route(
            Method::POST,
            "/campaigns/runs/{run_id}/pause",
            post(runs::pause),
        ),
        route(
            Method::POST,
            "/campaigns/runs/{run_id}/resume",
            post(runs::resume),
        ),
        route(
            Method::POST,
            "/campaigns/runs/{run_id}/cancel",
            post(runs::cancel),
        ),
        route(Method::GET, "/campaigns/schedules", get(schedules::list)),
        route(Method::GET, "/campaigns", get(campaigns::list)),
        route(
            Method::PUT,
            "/campaigns/{campaign_id}",
            put(campaigns::put).layer(document),
        ),
        route(Method::GET, "/campaigns/{campaign_id}", get(campaigns::get)),
        route(
            Method::DELETE,
            "/campaigns/{campaign_id}",
            delete(campaigns::delete),
        ),
        route(
            Method::POST,
            "/campaigns/{campaign_id}/trigger",
            post(campaigns::trigger).layer(document),
        ),
        route(
            Method::GET,
            "/campaigns/{campaign_id}/days",
            get(campaigns::days),
        ),
        route(
            Method::GET,
            "/campaigns/dispatches/{dispatch_id}",
            get(campaigns::dispatch),
        ),
        route(
            Method::GET,
            "/campaigns/schedules/{schedule_id}",
            get(schedules::get),
        ),
        route(
            Method::POST,
            "/campaigns/schedules/{schedule_id}/cancel",
            post(schedules::cancel),
        ),
        route(
            Method::POST,
            "/pages/{page_id}/resume",
            post(runs::resume_page),
        ),
        route(Method::GET, "/ledger/{job_id}", get(ledger::lookup)),
        route(Method::POST, "/ledger/{job_id}/claim", post(ledger::claim)),
        route(Method::GET, "/dead", get(dead::list)),
        route(
            Method::POST,
            "/dead/replay",
            post(dead::replay).layer(document),
        ),
        route(
            Method::POST,
            "/users/track",
            post(users::track).layer(DefaultBodyLimit::max(MAX_TRACK_BYTES)),
        ),
        route(Method::POST, "/refs", post(refs::sign).layer(document)),
        // The import streams its body and counts bytes itself.
        route(
            Method::POST,
            "/users/import",
            post(users::import).layer(DefaultBodyLimit::disable()),
        ),
    ]
}

/// Every route of the admin API as `(method, path)`, paths in OpenAPI's `{name}` form; plus
/// `GET /openapi.json`.
pub fn routes() -> Vec<(Method, &'static str)> {
    let mut routes: Vec<_> = table()
        .into_iter()
        .map(|route| (route.method, route.path))
        .collect();
    routes.push((Method::GET, "/openapi.json"));
    routes
}

/// The admin API's routes (with the token check) and `GET /openapi.json` (without).
pub fn router(config: ApiConfig) -> Router {
    let token = auth::ApiToken::new(config.token.as_ref(), config.ledger_token.as_ref());
    let protected = table()
        .into_iter()
        .fold(Router::new(), |router, route| {
            router.route(route.path, route.handler)
        })
        .with_state(config)
        .route_layer(middleware::from_fn_with_state(token, auth::require_token));
    Router::new()
        .route(
            "/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON) }),
        )
        .merge(protected)
}
