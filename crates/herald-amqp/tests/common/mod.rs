//! Helpers for the broker tests: connect (or skip when there is no broker and `CI` is unset),
//! unique `test-<random>` names, polling with a deadline, and teardown that runs even when the
//! test body panics, so runs do not pile up queues (quorum queues and streams cannot be
//! auto-delete).

#![allow(dead_code, unreachable_pub)]

use std::{
    future::Future,
    panic::{AssertUnwindSafe, resume_unwind},
    time::{Duration, Instant},
};

use futures_util::FutureExt;
use herald_amqp::{AmqpSettings, Connection, Topology, connect};
use herald_core::Secret;

/// `AMQP_ADDR`, else the default local broker.
pub fn settings() -> AmqpSettings {
    let url = std::env::var("AMQP_ADDR").unwrap_or_else(|_| herald_amqp::DEFAULT_AMQP_URL.into());
    AmqpSettings {
        url: Secret::new(url),
        connect_attempts: 2,
        ..AmqpSettings::default()
    }
}

/// A connection, or `None` (after printing `skipping: no broker`) when the broker is unreachable
/// and `CI` is unset. With `CI` set an unreachable broker fails the test.
pub async fn broker() -> Option<Connection> {
    match connect(&settings()).await {
        Ok(connection) => Some(connection),
        Err(error) if std::env::var_os("CI").is_none() => {
            eprintln!("skipping: no broker ({error})");
            None
        }
        Err(error) => panic!("CI is set but RabbitMQ is unreachable: {error}"),
    }
}

/// `test-<16 hex digits>`.
pub fn unique_prefix() -> String {
    format!("test-{:016x}", rand::random::<u64>())
}

/// Polls `check` until it returns `Some`, failing after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A connection and a topology with a unique prefix, deleted again by `finish`.
pub struct Fixture {
    pub connection: Connection,
    pub topology: Topology,
}

impl Fixture {
    /// Connects and names a fresh topology without declaring it.
    pub async fn new() -> Option<Self> {
        let connection = broker().await?;
        let topology = Topology::new(&unique_prefix()).expect("valid prefix");
        Some(Self {
            connection,
            topology,
        })
    }

    /// Connects and declares a fresh topology.
    pub async fn declared() -> Option<Self> {
        let fixture = Self::new().await?;
        fixture
            .topology
            .declare(&fixture.connection)
            .await
            .expect("declare topology");
        Some(fixture)
    }

    /// Runs `body`, then deletes the topology and closes the connection whatever happened, then
    /// re-raises a panic from `body`.
    pub async fn run<'a, Fut>(&'a self, body: impl FnOnce(&'a Self) -> Fut)
    where
        Fut: Future<Output = ()> + 'a,
    {
        let outcome = AssertUnwindSafe(body(self)).catch_unwind().await;
        let deleted = self.topology.delete(&self.connection).await;
        let _ = self.connection.close().await;
        if let Err(panic) = outcome {
            resume_unwind(panic);
        }
        deleted.expect("delete the test topology");
    }
}
