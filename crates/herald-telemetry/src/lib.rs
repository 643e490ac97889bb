//! Telemetry shared by every Herald process: tracing initialisation, every Prometheus metric in
//! one list (`metrics.rs`), and the small HTTP endpoint serving `/metrics`, `/healthz` and
//! `/readyz`. It knows nothing about jobs or brokers; callers record into it.

mod http;
pub mod metrics;
mod tracing_init;

pub use http::{Health, MetricsServer, health_router, router as ops_router, serve_metrics};
pub use metrics::Metrics;
pub use tracing_init::{LogFormat, init_tracing};
