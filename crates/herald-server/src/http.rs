//! Serving `herald serve`'s router over HTTP/1.1 with limits against slow and greedy clients:
//! the webhook faces the internet, so one client must not be able to hold the server.
//! - A connection that has not sent a request's headers within `HEADER_READ_TIMEOUT` is closed
//!   (a client trickling headers a byte a second holds nothing for long); so is a keep-alive
//!   connection idle that long, so Herald's own clients of serve (the worker's ledger) drop
//!   pooled connections sooner.
//! - At most `MAX_CONNECTIONS` connections are open; past that, new ones wait in the kernel's
//!   backlog until one closes.
//! - Shutdown stops accepting, lets requests in flight finish for up to `DRAIN`, then closes.
//!
//! The per-request limits of the webhook (a deadline, a budget of body bytes in memory) are
//! the webhook's (`webhook/limits.rs`); the routes are `serve.rs`'s.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{debug, warn};

/// How long a client may take to send a request's headers.
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections open at once.
pub(crate) const MAX_CONNECTIONS: usize = 4_096;
/// How long shutdown waits for requests in flight.
const DRAIN: Duration = Duration::from_secs(30);

/// Serves `app` on `listener` until `shutdown` completes, then drains.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors, mostly: wait a moment rather than spin.
                    warn!(error = %error, "Could not accept a connection.");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                debug!(error = %error, "Connection ended with an error.");
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN) => {
            warn!("Requests still in flight after the drain period; closing their connections.");
        }
    }
    Ok(())
}
