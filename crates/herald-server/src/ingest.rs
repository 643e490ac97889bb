//! The ingest: consumes `<prefix>.events.ingest` (verified webhook bodies, one per POST, as the
//! webhook published them), checks each body's webhook signature again, and applies every event
//! to the store, acking each body after the
//! store committed all of its events. Events are written in batches by lanes keyed by the
//! (page, PSID) they are about (`Event::order_key`), so one person's events keep Meta's order
//! while different people's are written concurrently (`consume.rs`). A body that is not a page
//! webhook goes to `<prefix>.dead` byte for byte with the reason; a store failure keeps the
//! bodies unacked and retries them.
//! Dedupe keys older than `SEEN_RETENTION` are pruned every `PRUNE_EVERY`.
//! Reading events is `parse.rs`, what they mean `event.rs`, applying them `apply.rs`. An
//! inbound action that matches a triggered campaign records its fire in the same transaction
//! (`crate::fires`), and the dispatcher is woken after the commit.

mod apply;
mod event;
mod parse;

use std::sync::Arc;
use std::time::Duration;

use herald_amqp::{AmqpSettings, Headers, Topology, WEBHOOK_SIGNATURE_HEADER};
use herald_core::clock::now_ms;
use herald_core::signed_ref::RefKeys;
use herald_core::{ControlMessage, Secret};
use herald_store::{Batch, Store, StoreError};
use herald_telemetry::Metrics;
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::ConsumeError;
use crate::consume::{self, Wiring};
use crate::freshness::InFlight;
use crate::handler::Entry;
use crate::handler::Handler;
use crate::webhook::{SignatureError, parse_signature, verify_body};

use apply::Applied;
use event::Event;

/// How long dedupe keys are kept: Meta stops retrying a webhook within hours
/// (docs/messenger-platform.md §5.5 reports 8 hours before it disables the webhook, 36 h for other
/// Graph webhooks).
const SEEN_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Entries older than this (by their `time`, against when the webhook received them) are
/// ignored: their dedupe keys may be gone, so a replayed old body would otherwise apply again.
const MAX_ENTRY_AGE_MS: i64 = 7 * 24 * 3600 * 1000;
/// How often old dedupe keys are pruned (also once at start).
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// The secrets the ingest checks what it reads with.
#[derive(Debug, Clone)]
pub struct IngestKeys {
    /// `HERALD_APP_SECRET`: every body must carry the webhook's signature under it
    /// (`x-herald-webhook-signature`). The broker is not trusted with the body's origin: a body
    /// published by anyone but the webhook, or altered on the way, goes to `<prefix>.dead`.
    pub app_secret: Secret,
    /// `HERALD_REF_SECRET`: verifies the `ref` of m.me links and plugins; without keys no ref
    /// links anything.
    pub refs: Option<RefKeys>,
}

/// Consumes `<prefix>.events.ingest` into the store until `shutdown` is cancelled; reconnects.
/// Returns an error only for a broker failure that reconnecting cannot fix.
pub async fn run_ingest(
    store: Store,
    keys: IngestKeys,
    amqp: AmqpSettings,
    topology: Topology,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> Result<(), ConsumeError> {
    let wiring = Wiring {
        amqp,
        topology,
        metrics,
        shutdown,
    };
    run_ingest_tracked(store, keys, wiring, InFlight::new(), None).await
}

/// `run_ingest`, counting the deliveries in hand in `in_flight` (for the send ledger) and
/// waking `fires` (the dispatcher of triggered campaigns) when events fired some.
pub(crate) async fn run_ingest_tracked(
    store: Store,
    keys: IngestKeys,
    wiring: Wiring,
    in_flight: Arc<InFlight>,
    fires: Option<Arc<Notify>>,
) -> Result<(), ConsumeError> {
    let prune = tokio::spawn(prune_seen(store.clone(), wiring.shutdown.child_token()));
    if keys.app_secret.is_blank() {
        warn!(
            "No app secret configured: the ingest cannot verify any webhook body, so every one \
             goes to the dead-letter queue. Set HERALD_APP_SECRET."
        );
    }
    let ingest = Ingest {
        store,
        keys,
        metrics: wiring.metrics.clone(),
        in_flight,
        fires,
    };
    let ended = consume::run(ingest, wiring).await;
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
    keys: IngestKeys,
    metrics: Metrics,
    in_flight: Arc<InFlight>,
    fires: Option<Arc<Notify>>,
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
        check_signature(&self.keys.app_secret, body, headers)?;
        // When the webhook received the body (`x-herald-received-at`).
        let received_at_ms = headers.received_at().unwrap_or_else(now_ms);
        parse::parse(body, received_at_ms, MAX_ENTRY_AGE_MS)
    }

    fn lane_key(event: &Event) -> u64 {
        event.order_key()
    }

    async fn write(
        &self,
        batch: &mut Batch,
        items: &[Entry<Event>],
    ) -> Result<(Vec<ControlMessage>, Vec<Applied>), StoreError> {
        apply::apply_all(batch, self.keys.refs.as_ref(), items).await
    }

    fn in_flight(&self) -> &Arc<InFlight> {
        &self.in_flight
    }

    fn committed(&self, report: Vec<Applied>) {
        let mut fired = false;
        for applied in report {
            fired |= applied.fired.observe(&self.metrics);
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
        if fired && let Some(fires) = &self.fires {
            fires.notify_one();
        }
    }
}

/// The webhook body parser, for the property tests.
#[cfg(test)]
pub(crate) use parse::parse as parse_for_fuzzing;

/// Whether the body carries the webhook's signature of it under `app_secret`; else the reason it
/// is dead-lettered with.
fn check_signature(app_secret: &Secret, body: &[u8], headers: &Headers) -> Result<(), String> {
    let carried = headers.webhook_signature();
    let outcome = parse_signature(carried.as_deref().map(str::as_bytes))
        .and_then(|claimed| verify_body(app_secret.expose().as_bytes(), body, &claimed));
    outcome.map_err(|error| match error {
        SignatureError::Missing | SignatureError::Malformed => format!(
            "no valid {WEBHOOK_SIGNATURE_HEADER} header: the body was not published by Herald's \
             webhook; check who may publish to the events exchange"
        ),
        SignatureError::Mismatch => format!(
            "{WEBHOOK_SIGNATURE_HEADER} does not match the body under HERALD_APP_SECRET: forged, \
             altered, or signed under an app secret this ingest does not have"
        ),
        SignatureError::NoSecret => {
            "HERALD_APP_SECRET is not set: the body's signature cannot be verified".to_owned()
        }
    })
}
