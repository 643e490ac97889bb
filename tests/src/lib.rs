//! Helpers for Herald's end-to-end tests (STYLE.md, "Tests"): a broker connection that refuses to
//! skip under CI, an in-process simulator, unique names, and polling with a deadline instead of
//! fixed sleeps. The tests themselves live in `src/tests/` and build into one test binary.

use std::future::Future;
use std::time::{Duration, Instant};

#[cfg(test)]
mod tests;

/// The broker the tests use: `AMQP_ADDR`, else RabbitMQ's guest account on 127.0.0.1.
pub fn amqp_addr() -> String {
    std::env::var("AMQP_ADDR").unwrap_or_else(|_| "amqp://127.0.0.1:5672/%2f".to_owned())
}

/// Connects to the test broker. Without a broker: under `CI` this panics (a test that needs the
/// broker must never pass silently there); elsewhere it prints `skipping: no broker` and returns
/// `None`, and the caller returns early.
pub async fn broker() -> Option<lapin::Connection> {
    let addr = amqp_addr();
    match lapin::Connection::connect(&addr, lapin::ConnectionProperties::default()).await {
        Ok(connection) => Some(connection),
        Err(error) if std::env::var_os("CI").is_some() => {
            panic!("CI is set but the broker at {addr} is unreachable ({error}); run scripts/test")
        }
        Err(error) => {
            eprintln!("skipping: no broker at {addr} ({error})");
            None
        }
    }
}

/// A name no other test run uses: `test-<pid>-<counter>-<nanos>`.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}-{nanos}", std::process::id())
}

/// Polls `condition` every 20 ms until it returns true or `timeout` passes; returns whether it
/// became true. Use it instead of a fixed sleep.
pub async fn eventually<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
