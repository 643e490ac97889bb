//! The HTTP/1.1 server: accept loop, one task per keep-alive connection, routing between the
//! Send API and `/_sim/*`, graceful shutdown. Plain hyper (no framework) keeps the hot path short.

use std::io;
use std::sync::Arc;

use hyper::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::app::App;
use crate::http::Answer;
use crate::{admin, send};

/// Serves until `app.cancel` fires, then closes idle connections and waits for the others.
pub(crate) async fn serve(listener: TcpListener, app: Arc<App>) {
    let connections = TaskTracker::new();
    loop {
        tokio::select! {
            biased;
            () = app.cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    connections.spawn(connection(stream, Arc::clone(&app)));
                }
                Err(error) => {
                    // Usually fd exhaustion; back off briefly instead of spinning.
                    warn!(error = %error, "Accept failed.");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            },
        }
    }
    connections.close();
    connections.wait().await;
}

async fn connection(stream: TcpStream, app: Arc<App>) {
    // Small request/response pairs on keep-alive connections: never wait for Nagle.
    let _ = stream.set_nodelay(true);
    let cancel = app.cancel.clone();
    let service = service_fn(move |request| route(Arc::clone(&app), request));
    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = cancel.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(error) = result {
        debug!(error = %error, "Connection closed with an error.");
    }
}

async fn route(app: Arc<App>, request: Request<Incoming>) -> Result<Answer, io::Error> {
    if request.uri().path().starts_with("/_sim/") {
        return Ok(admin::handle(app, request).await);
    }
    send::handle(app, request).await
}
