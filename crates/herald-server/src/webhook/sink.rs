//! `EventSink`: where a verified webhook body goes, `<prefix>.events`, one AMQP message per POST
//! with publisher confirms. It holds one broker connection, opened lazily (and by a background
//! task as soon as there is a runtime, so `/readyz` means something before Meta's first POST),
//! re-opened when lost, and never makes a request wait longer than `PUBLISH_TIMEOUT` (while the
//! broker blocks publishing, not at all): a webhook
//! that answers 503 quickly is retried by Meta, one that hangs near Meta's 20 s limit is not
//! better off. What to publish and what to answer is `mod.rs`'s business.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use herald_amqp::{AmqpError, AmqpSettings, Connection, Headers, Publisher, Topology};
use tokio::time::Instant;
use tracing::{info, warn};

use super::limits::SMALL_BODY_BYTES;
use super::signature::format_signature;
use crate::freshness::Refusals;

/// Routing key of every webhook body on `<prefix>.events` (a topic exchange; `<prefix>.events.ingest`
/// is bound to `#`, and other teams may bind their own queues).
pub const EVENTS_ROUTING_KEY: &str = "webhook";
/// The longest a POST waits for its body to be published and confirmed, connecting included.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest one connection attempt may take (inside `PUBLISH_TIMEOUT`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// After a failed connection attempt, requests fail at once (503) for this long instead of each
/// trying again: a down broker must not make every request wait.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);
/// How often the background task checks the connection and re-opens it.
const KEEPALIVE_EVERY: Duration = Duration::from_secs(2);

/// Publishes verified webhook bodies to `<prefix>.events` with publisher confirms; reconnects
/// on its own when the broker connection drops. Cheap to clone.
#[derive(Clone)]
pub struct EventSink {
    inner: Arc<Inner>,
}

struct Inner {
    amqp: AmqpSettings,
    topology: Topology,
    /// The current connection and publisher, when usable. A std mutex: never held across await.
    link: Mutex<Option<Arc<Link>>>,
    /// Serialises connection attempts; holds the time before which no new attempt is made.
    connecting: tokio::sync::Mutex<Option<Instant>>,
    /// When the webhook last refused a body (the send ledger reads it).
    refusals: Arc<Refusals>,
}

struct Link {
    connection: Connection,
    /// For ordinary bodies.
    publisher: Publisher,
    /// For bodies over `SMALL_BODY_BYTES`, on a channel of their own: confirms come in publish
    /// order per channel, so an ordinary delivery never waits behind megabytes being written.
    large: Publisher,
}

/// Why a body was not published.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SinkError {
    /// Connecting, publishing or the confirm failed.
    #[error(transparent)]
    Broker(#[from] AmqpError),
    /// A connection attempt failed moments ago; not trying again yet.
    #[error("the broker was unreachable moments ago; not retrying yet")]
    Paused,
    /// RabbitMQ blocks publishing (a memory or disk alarm): answered at once, so Meta retries
    /// later instead of waiting out the timeout.
    #[error("the broker blocks publishing (memory or disk alarm)")]
    Blocked,
    /// No confirm within `PUBLISH_TIMEOUT`.
    #[error("no broker confirm within {} s", PUBLISH_TIMEOUT.as_secs())]
    Timeout,
}

impl SinkError {
    /// Bounded label for logs.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Broker(error) => error.kind(),
            Self::Paused => "paused",
            Self::Blocked => "blocked",
            Self::Timeout => "timeout",
        }
    }
}

impl EventSink {
    /// A sink for `topology.events_exchange()` on the broker of `amqp`. Connects lazily: the
    /// first publish opens the connection, and when called inside a tokio runtime a background
    /// task opens it right away and re-opens it whenever it is lost (it ends with the last clone).
    /// Each connection declares the topology (idempotent) before publishing.
    pub fn new(amqp: AmqpSettings, topology: Topology) -> Self {
        let mut amqp = amqp;
        // One attempt per request, bounded: the retrying is Meta's (and the keepalive task's).
        amqp.connect_attempts = 1;
        let bound = u64::try_from(CONNECT_TIMEOUT.as_millis()).unwrap_or(u64::MAX);
        amqp.connect_timeout_ms = amqp.connect_timeout_ms.clamp(1, bound);
        let inner = Arc::new(Inner {
            amqp,
            topology,
            link: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(None),
            refusals: Arc::new(Refusals::default()),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(keep_connected(Arc::downgrade(&inner)));
        }
        Self { inner }
    }

    /// Notes that the webhook refused a body (503): Meta holds it and retries later.
    pub fn refused(&self) {
        self.inner.refusals.note();
    }

    /// When the webhook refused bodies, shared with the send ledger.
    pub fn refusals(&self) -> Arc<Refusals> {
        self.inner.refusals.clone()
    }

    /// True while the broker connection is open and its publisher usable (for `/readyz`).
    pub fn is_connected(&self) -> bool {
        self.inner.current().is_some()
    }

    /// True while RabbitMQ blocks the sink's publishing (a memory or disk alarm).
    pub fn is_blocked(&self) -> bool {
        self.inner
            .current()
            .is_some_and(|link| *link.connection.blocked().borrow())
    }

    /// Publishes `body` byte for byte, persistent and mandatory, with `x-herald-received-at` and
    /// its verified `signature` (HMAC-SHA256 under the app secret) in `x-herald-webhook-signature`,
    /// and waits for the broker's confirm; gives up after `PUBLISH_TIMEOUT`.
    pub(crate) async fn publish(
        &self,
        body: &[u8],
        signature: &[u8; 32],
        received_at_ms: i64,
    ) -> Result<(), SinkError> {
        let headers = Headers::new()
            .with_received_at(received_at_ms)
            .with_webhook_signature(&format_signature(signature));
        tokio::time::timeout(PUBLISH_TIMEOUT, self.publish_now(body, headers))
            .await
            .map_err(|_| SinkError::Timeout)?
    }

    async fn publish_now(&self, body: &[u8], headers: Headers) -> Result<(), SinkError> {
        let link = self.inner.link().await?;
        if *link.connection.blocked().borrow() {
            return Err(SinkError::Blocked);
        }
        let exchange = self.inner.topology.events_exchange();
        let publisher = if body.len() > SMALL_BODY_BYTES {
            &link.large
        } else {
            &link.publisher
        };
        let outcome = async {
            publisher
                .publish(&exchange, EVENTS_ROUTING_KEY, body, headers)
                .await?
                .await
        }
        .await;
        if outcome.is_err() && !link.is_usable() {
            self.inner.forget(&link);
        }
        outcome.map_err(SinkError::from)
    }
}

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSink")
            .field("exchange", &self.inner.topology.events_exchange())
            .field("connected", &self.is_connected())
            .finish()
    }
}

impl Inner {
    /// The current link if it is still usable; an unusable one is dropped.
    fn current(&self) -> Option<Arc<Link>> {
        let mut slot = self.link.lock().unwrap_or_else(|e| e.into_inner());
        match slot.as_ref() {
            Some(link) if link.is_usable() => Some(link.clone()),
            Some(_) => {
                *slot = None;
                None
            }
            None => None,
        }
    }

    fn forget(&self, link: &Arc<Link>) {
        let mut slot = self.link.lock().unwrap_or_else(|e| e.into_inner());
        if slot
            .as_ref()
            .is_some_and(|current| Arc::ptr_eq(current, link))
        {
            *slot = None;
        }
    }

    /// The usable link, connecting when there is none (one attempt at a time; after a failure
    /// no new attempt for `RECONNECT_PAUSE`).
    async fn link(&self) -> Result<Arc<Link>, SinkError> {
        if let Some(link) = self.current() {
            return Ok(link);
        }
        let mut not_before = self.connecting.lock().await;
        if let Some(link) = self.current() {
            return Ok(link);
        }
        if not_before.is_some_and(|at| Instant::now() < at) {
            return Err(SinkError::Paused);
        }
        match self.open().await {
            Ok(link) => {
                *not_before = None;
                let link = Arc::new(link);
                *self.link.lock().unwrap_or_else(|e| e.into_inner()) = Some(link.clone());
                info!(exchange = %self.topology.events_exchange(), "Webhook sink connected.");
                Ok(link)
            }
            Err(error) => {
                *not_before = Some(Instant::now() + RECONNECT_PAUSE);
                warn!(error = %error, "Webhook sink cannot reach the broker; answering 503.");
                Err(error.into())
            }
        }
    }

    async fn open(&self) -> Result<Link, AmqpError> {
        let connection = herald_amqp::connect(&self.amqp).await?;
        let opened = async {
            self.topology.declare(&connection).await?;
            let publisher = Publisher::open(&connection, self.amqp.confirm_window).await?;
            let large = Publisher::open(&connection, self.amqp.confirm_window).await?;
            Ok((publisher, large))
        }
        .await;
        match opened {
            Ok((publisher, large)) => Ok(Link {
                connection,
                publisher,
                large,
            }),
            Err(error) => {
                let _ = connection.close().await;
                Err(error)
            }
        }
    }
}

impl Link {
    fn is_usable(&self) -> bool {
        self.connection.is_connected() && self.publisher.is_usable() && self.large.is_usable()
    }
}

/// Opens the connection at once and re-opens it whenever it is lost, until the sink is dropped.
async fn keep_connected(inner: Weak<Inner>) {
    loop {
        {
            let Some(inner) = inner.upgrade() else { return };
            if inner.current().is_none() {
                // Failures are logged by `link`; requests meanwhile get 503.
                let _ = inner.link().await;
            }
        }
        tokio::time::sleep(KEEPALIVE_EVERY).await;
    }
}
