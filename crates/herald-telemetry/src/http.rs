//! The operations endpoint every process serves on `--metrics-addr`: `/metrics` (Prometheus
//! text), `/healthz` (the process is alive) and `/readyz` (it is connected and doing its job).
//! What "ready" means is the caller's business; it flips the `Health` flag.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::Metrics;

/// Readiness, shared between the process and its endpoint.
#[derive(Clone, Default)]
pub struct Health {
    ready: Arc<AtomicBool>,
}

impl Health {
    /// Marks the process ready (true) or not (false).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Whether the process is ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

/// A running endpoint; dropping it does not stop it, `abort` does.
pub struct MetricsServer {
    /// The address actually bound (useful with port 0).
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl MetricsServer {
    /// Stops serving.
    pub fn abort(&self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Metrics,
}

/// Binds `addr` and serves the endpoint in a background task.
pub async fn serve_metrics(
    addr: SocketAddr,
    metrics: Metrics,
    health: Health,
) -> std::io::Result<MetricsServer> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let app = router(metrics, health);
    let task = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "Metrics endpoint stopped.");
        }
    });
    Ok(MetricsServer { addr, task })
}

/// `/metrics`, `/healthz` and `/readyz` as a router, for a process that serves them next to
/// its own routes on one address (`herald serve`).
pub fn router(metrics: Metrics, health: Health) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .with_state(AppState { metrics })
        .merge(health_router(health))
}

/// `/healthz` and `/readyz` only: for a public address that must not show `/metrics`.
pub fn health_router(health: Health) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(health)
}

async fn metrics_text(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.encode(),
    )
}

async fn ready(State(health): State<Health>) -> impl IntoResponse {
    if health.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, Empty};
    use hyper::body::Bytes;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    use super::*;

    async fn get_path(addr: SocketAddr, path: &str) -> (u16, String) {
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let response = client
            .get(format!("http://{addr}{path}").parse().expect("uri"))
            .await
            .expect("request");
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn serves_metrics_health_and_readiness() {
        let metrics = Metrics::new();
        metrics.jobs_received.inc();
        let health = Health::default();
        let server = serve_metrics(
            "127.0.0.1:0".parse().expect("addr"),
            metrics,
            health.clone(),
        )
        .await
        .expect("bind");
        let (status, body) = get_path(server.addr, "/metrics").await;
        assert_eq!(status, 200);
        assert!(body.contains("herald_jobs_received_total 1"), "{body}");
        assert_eq!(get_path(server.addr, "/healthz").await.0, 200);
        assert_eq!(get_path(server.addr, "/readyz").await.0, 503);
        health.set_ready(true);
        assert_eq!(get_path(server.addr, "/readyz").await.0, 200);
        server.abort();
    }
}
