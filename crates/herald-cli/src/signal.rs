//! Waiting for the operator: SIGTERM (Kubernetes, systemd, docker stop) or SIGINT (Ctrl-C).

use tokio::signal::unix::{SignalKind, signal};

/// Resolves on the first SIGTERM or SIGINT.
pub(crate) async fn terminated() {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the process can only be killed; wait forever rather than exit.
        tracing::warn!("Cannot install signal handlers; stop this process with SIGKILL.");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received; shutting down."),
        _ = int.recv() => tracing::info!("SIGINT received; shutting down."),
    }
}
