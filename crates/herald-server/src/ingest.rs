//! The ingest: consumes `<prefix>.events.ingest` (verified webhook bodies, one per POST, as the
//! webhook published them) and applies every event to the store, acking each body after the
//! store committed all of its events. Events are written in batches by lanes keyed by the
//! (page, PSID) they are about (`Event::order_key`), so one person's events keep Meta's order
//! while different people's are written concurrently (`consume.rs`). A body that is not a page
//! webhook goes to `<prefix>.dead` byte for byte with the reason; a store failure keeps the
//! bodies unacked and retries them.
//! Dedupe keys older than `SEEN_RETENTION` are pruned every `PRUNE_EVERY`.
//! Reading events is `parse.rs`, what they mean `event.rs`, applying them `apply.rs`.

mod apply;
mod event;
mod parse;

use std::time::Duration;

use herald_amqp::{AMQPValue, AmqpSettings, Headers, Topology};
use herald_core::ControlMessage;
use herald_core::signed_ref::RefKeys;
use herald_store::{Batch, Store, StoreError};
use herald_telemetry::Metrics;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::ConsumeError;
use crate::consume::{self, Handler};
use crate::lane::Entry;
use crate::webhook::RECEIVED_AT_HEADER;

use apply::Applied;
use event::Event;

/// How long dedupe keys are kept: Meta stops retrying a webhook within hours (reference §5.5
/// reports 8 hours before it disables the webhook, 36 h for other Graph webhooks).
const SEEN_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often old dedupe keys are pruned (also once at start).
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Consumes `<prefix>.events.ingest` into the store until `shutdown` is cancelled; reconnects.
/// Returns an error only for a broker failure that reconnecting cannot fix.
/// `refs` verifies the `ref` of m.me links and plugins; without keys no ref links anything.
pub async fn run_ingest(
    store: Store,
    refs: Option<RefKeys>,
    amqp: AmqpSettings,
    topology: Topology,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> Result<(), ConsumeError> {
    let prune = tokio::spawn(prune_seen(store.clone(), shutdown.child_token()));
    let ingest = Ingest {
        store,
        refs,
        metrics: metrics.clone(),
    };
    let ended = consume::run(ingest, amqp, topology, metrics, shutdown).await;
    prune.abort();
    ended
}

/// Forgets dedupe keys older than `SEEN_RETENTION`, now and every `PRUNE_EVERY`.
async fn prune_seen(store: Store, stop: CancellationToken) {
    let mut every = tokio::time::interval(PRUNE_EVERY);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        let before = OffsetDateTime::now_utc() - SEEN_RETENTION;
        match store.prune_seen_events(before).await {
            Ok(0) => {}
            Ok(pruned) => info!(pruned, "Old webhook dedupe keys pruned."),
            Err(error) => warn!(error = %error, "Could not prune old webhook dedupe keys."),
        }
    }
}

struct Ingest {
    store: Store,
    refs: Option<RefKeys>,
    metrics: Metrics,
}

impl Handler for Ingest {
    const NAME: &'static str = "ingest";
    type Item = Event;
    type Report = Vec<Applied>;

    fn queue(topology: &Topology) -> String {
        topology.events_ingest_queue()
    }

    fn store(&self) -> &Store {
        &self.store
    }

    fn read(&self, body: &[u8], headers: &Headers) -> Result<Vec<Event>, String> {
        let received_at_ms = received_at_ms(headers).unwrap_or_else(now_ms);
        parse::parse(body, received_at_ms)
    }

    fn lane_key(event: &Event) -> u64 {
        event.order_key()
    }

    async fn write(
        &self,
        batch: &mut Batch,
        items: &[Entry<Event>],
    ) -> Result<(Vec<ControlMessage>, Vec<Applied>), StoreError> {
        apply::apply_all(batch, self.refs.as_ref(), items).await
    }

    fn committed(&self, report: Vec<Applied>) {
        for applied in report {
            self.metrics
                .ingest_events
                .with_label_values(&[applied.kind, applied.outcome])
                .inc();
            if let Some(outcome) = applied.reference {
                self.metrics.ingest_refs.with_label_values(&[outcome]).inc();
            }
            if let Some(action) = applied.policy {
                self.metrics
                    .policy_enforcement
                    .with_label_values(&[action])
                    .inc();
            }
        }
    }
}

/// The webhook body parser, for the property tests.
#[cfg(test)]
pub(crate) use parse::parse as parse_for_fuzzing;

/// `x-herald-received-at`, as the webhook set it.
fn received_at_ms(headers: &Headers) -> Option<i64> {
    match headers.as_table().inner().get(RECEIVED_AT_HEADER)? {
        AMQPValue::LongLongInt(ms) => Some(*ms),
        AMQPValue::LongInt(ms) => Some(i64::from(*ms)),
        AMQPValue::LongUInt(ms) => Some(i64::from(*ms)),
        _ => None,
    }
}

fn now_ms() -> i64 {
    i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}
