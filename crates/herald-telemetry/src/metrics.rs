//! Every metric Herald exports, in one list a reviewer can read.
//! Names follow Prometheus conventions: `herald_` prefix, base units, counters end in `_total`.
//! Label values come from closed sets; never a PSID, user id, job id, message id or campaign id.
//! The producer has no metrics of its own: what it published and skipped is in the run record
//! (`herald campaign status`) and, once stored, in `herald_results_recorded_total` (see
//! docs/decisions.md).

use prometheus::{
    GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

/// Buckets for Graph call latency: 5 ms to 30 s.
const SEND_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Buckets for items per store transaction of the serve consumers: 1 to their batch limit.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0];
/// Buckets for time spent waiting on a page's rate limiter.
const WAIT_BUCKETS: &[f64] = &[0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0];
/// Buckets for publishing one webhook body and getting the broker's confirm: 1 ms to 10 s (the
/// webhook gives up well before Meta's 20 s timeout).
/// From a fire being due to its triggered job: tens of milliseconds to minutes.
const TRIGGER_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0, 86400.0,
];
const WEBHOOK_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The registry and every collector in it. Cheap to clone (collectors are shared handles).
#[derive(Clone)]
pub struct Metrics {
    /// The registry `/metrics` encodes.
    pub registry: Registry,
    /// Jobs a worker took off the queue.
    pub jobs_received: IntCounter,
    /// Graph calls by `outcome`: sent, retry, give_up, halt.
    pub send_attempts: IntCounterVec,
    /// Terminal results by `status` (sent, failed, dead, expired, skipped, cancelled).
    pub jobs_completed: IntCounterVec,
    /// Graph error answers by `code` (Graph's numeric code, or `transport`/`timeout`/`http`).
    pub graph_errors: IntCounterVec,
    /// Duration of one Graph call.
    pub send_duration: Histogram,
    /// Jobs republished to a retry tier, by `tier`.
    pub retries_scheduled: IntCounterVec,
    /// Jobs being processed right now.
    pub jobs_in_flight: IntGauge,
    /// The rate this process allows itself per page, by `page_id`.
    pub rate_limit_per_second: GaugeVec,
    /// Time spent waiting for a page's limiter.
    pub rate_limit_wait: Histogram,
    /// 1 while a page is halted (dead token, policy block), by `page_id`.
    pub page_halted: IntGaugeVec,
    /// The page's Graph usage as reported by usage headers (1.0 = 100 %), by `page_id`.
    pub graph_usage_ratio: GaugeVec,
    /// 1 while the broker connection is up: a worker's consuming connection, or the webhook's
    /// publishing connection in `herald serve`.
    pub broker_connected: IntGauge,
    /// `herald_broker_blocked`: 1 while RabbitMQ blocks this process's publishing.
    pub broker_blocked: IntGauge,
    /// Consumers on herald.send as last read from the broker (the fleet a page's rate is shared by).
    pub send_consumers: IntGauge,
    /// Jobs sent back to a retry tier without a Graph call, by `reason` (run_paused, page_halted,
    /// no_token, page_throttled, rate_limited).
    pub jobs_held: IntCounterVec,
    /// Messages published to herald.dead, by `reason` (poison, exhausted).
    pub jobs_dead_lettered: IntCounterVec,
    /// `herald_ledger_checks_total{outcome}`: send-ledger checks of jobs that may have been sent.
    pub ledger_checks: IntCounterVec,
    /// `herald_possible_duplicate_sends_total{reason}`: Graph calls made for a job that may have
    /// been sent already, without the ledger's word on it.
    pub possible_duplicate_sends: IntCounterVec,
    /// Control commands a worker applied from herald.control, by `action` (pause_run, ...).
    pub control_commands: IntCounterVec,
    /// `/webhook` requests by `outcome`: handshake_ok, handshake_refused, accepted,
    /// bad_signature, too_large, bad_request (body unreadable), unavailable (503: broker),
    /// busy (503: the budget of webhook bodies in memory is full).
    pub webhook_requests: IntCounterVec,
    /// Publishing one verified webhook body to herald.events, up to the broker's confirm.
    pub webhook_publish_duration: Histogram,
    /// Admin API requests by `route` (the route's template, e.g. `/campaigns/runs/{run_id}`)
    /// and `status` (the HTTP status code, refusals by the token check included).
    pub api_requests: IntCounterVec,
    /// Webhook events the ingest read, by `kind` (message, delivery, read, opt_out, echo, ...)
    /// and `outcome` (applied, duplicate, ignored).
    pub ingest_events: IntCounterVec,
    /// `ref`s of inbound actions (m.me links, plugins) the ingest read, by `outcome`: linked,
    /// unsigned, bad_signature, expired, kept_import, kept_newer.
    pub ingest_refs: IntCounterVec,
    /// Delivery results the results consumer stored, by `status`.
    pub results_recorded: IntCounterVec,
    /// Delivery results the store already held (a redelivery), ignored.
    pub results_duplicates: IntCounter,
    /// Runs whose results arrived with no run record in this store (counted once per run and
    /// process): the run was most likely started against another store.
    pub results_unknown_run: IntCounter,
    /// Messages the ingest and results consumers settled, by `consumer` (ingest, results) and
    /// `outcome` (processed, poison).
    pub consumer_messages: IntCounterVec,
    /// Store failures that made a consumer back off and retry a message, by `consumer`.
    pub consumer_store_errors: IntCounterVec,
    /// 1 while the consumer is attached to its queue, by `consumer`.
    pub consumer_connected: IntGaugeVec,
    /// Items (results, webhook events) stored per store transaction, by `consumer`.
    pub consumer_batch_items: HistogramVec,
    /// `messaging_policy_enforcement` webhook events, by `action` (warning, block, unblock, other).
    pub policy_enforcement: IntCounterVec,
    /// Events that fire a triggered campaign, by `kind` (event, postback, quick_reply, ref,
    /// keyword), one per campaign fired; an event delivered twice counts once.
    pub trigger_fired: IntCounterVec,
    /// Jobs of triggered campaigns the broker confirmed.
    pub trigger_enqueued: IntCounter,
    /// Fires that sent nothing, by `reason` (duplicate, once_per, filtered, and the producer's
    /// skip reasons such as blank_psid or outside_window).
    pub trigger_skipped: IntCounterVec,
    /// Seconds from a fire being due (Herald receiving its event, plus the campaign's
    /// `delay`) to its triggered job, by `stage`: `enqueued` (the broker confirmed the job) or
    /// `sent` (Graph accepted it).
    pub trigger_latency: HistogramVec,
    /// Fires due and not yet published.
    pub trigger_pending: IntGauge,
    /// Seconds since the longest due fire not yet published came due (0 when none).
    pub trigger_oldest_pending: IntGauge,
    /// Fires waiting for their campaign's `delay` (in the store, not yet due).
    pub trigger_waiting: IntGauge,
}

impl Metrics {
    /// Creates and registers every collector.
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let g = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let int_gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let int_gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let consumer_batch_items = HistogramVec::new(
            HistogramOpts::new(
                "herald_consumer_batch_items",
                "Items (results, webhook events) stored per store transaction, by consumer.",
            )
            .buckets(BATCH_BUCKETS.to_vec()),
            &["consumer"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(consumer_batch_items.clone()))
            .expect("unique metric");
        let send_duration = Histogram::with_opts(
            HistogramOpts::new(
                "herald_send_duration_seconds",
                "Duration of one Graph Send API call.",
            )
            .buckets(SEND_BUCKETS.to_vec()),
        )
        .expect("valid metric");
        registry
            .register(Box::new(send_duration.clone()))
            .expect("unique metric");
        let rate_limit_wait = Histogram::with_opts(
            HistogramOpts::new(
                "herald_rate_limit_wait_seconds",
                "Time a send waited for its page's rate limiter.",
            )
            .buckets(WAIT_BUCKETS.to_vec()),
        )
        .expect("valid metric");
        registry
            .register(Box::new(rate_limit_wait.clone()))
            .expect("unique metric");
        let webhook_publish_duration = Histogram::with_opts(
            HistogramOpts::new(
                "herald_webhook_publish_duration_seconds",
                "Publishing one verified webhook body to herald.events, up to the broker's confirm.",
            )
            .buckets(WEBHOOK_BUCKETS.to_vec()),
        )
        .expect("valid metric");
        registry
            .register(Box::new(webhook_publish_duration.clone()))
            .expect("unique metric");

        let trigger_latency = HistogramVec::new(
            HistogramOpts::new(
                "herald_trigger_latency_seconds",
                "From a fire being due (its event plus the campaign's delay) to its triggered job, \
                 by stage (enqueued, sent).",
            )
            .buckets(TRIGGER_BUCKETS.to_vec()),
            &["stage"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(trigger_latency.clone()))
            .expect("unique metric");

        Self {
            jobs_received: counter("herald_jobs_received_total", "Jobs taken off herald.send."),
            send_attempts: counter_vec(
                "herald_send_attempts_total",
                "Graph calls, by outcome.",
                &["outcome"],
            ),
            jobs_completed: counter_vec(
                "herald_jobs_completed_total",
                "Terminal results, by status.",
                &["status"],
            ),
            graph_errors: counter_vec(
                "herald_graph_errors_total",
                "Graph error answers, by code.",
                &["code"],
            ),
            send_duration,
            retries_scheduled: counter_vec(
                "herald_retries_scheduled_total",
                "Jobs sent to a retry tier, by tier.",
                &["tier"],
            ),
            jobs_in_flight: int_gauge("herald_jobs_in_flight", "Jobs being processed now."),
            rate_limit_per_second: gauge_vec(
                "herald_rate_limit_per_second",
                "This process's send rate for a page.",
                &["page_id"],
            ),
            rate_limit_wait,
            page_halted: int_gauge_vec(
                "herald_page_halted",
                "1 while sending for the page is halted.",
                &["page_id"],
            ),
            graph_usage_ratio: gauge_vec(
                "herald_graph_usage_ratio",
                "Graph usage reported for the page (1 = 100 %).",
                &["page_id"],
            ),
            broker_connected: int_gauge(
                "herald_broker_connected",
                "1 while connected to the broker.",
            ),
            broker_blocked: int_gauge(
                "herald_broker_blocked",
                "1 while RabbitMQ blocks this process's publishing (a memory or disk alarm).",
            ),
            send_consumers: int_gauge(
                "herald_send_consumers",
                "Consumers on herald.send as last read from the broker.",
            ),
            jobs_held: counter_vec(
                "herald_jobs_held_total",
                "Jobs sent back to a retry tier without a Graph call, by reason.",
                &["reason"],
            ),
            jobs_dead_lettered: counter_vec(
                "herald_jobs_dead_lettered_total",
                "Messages published to herald.dead, by reason.",
                &["reason"],
            ),
            ledger_checks: counter_vec(
                "herald_ledger_checks_total",
                "Send-ledger checks of jobs that may have been sent already, by outcome.",
                &["outcome"],
            ),
            possible_duplicate_sends: counter_vec(
                "herald_possible_duplicate_sends_total",
                "Graph calls for a job that may have been sent already, made without the send ledger's word, by reason.",
                &["reason"],
            ),
            control_commands: counter_vec(
                "herald_control_commands_total",
                "Control commands applied from herald.control, by action.",
                &["action"],
            ),
            webhook_requests: counter_vec(
                "herald_webhook_requests_total",
                "Webhook requests, by outcome.",
                &["outcome"],
            ),
            webhook_publish_duration,
            api_requests: counter_vec(
                "herald_api_requests_total",
                "Admin API requests, by route template and HTTP status.",
                &["route", "status"],
            ),
            ingest_events: counter_vec(
                "herald_ingest_events_total",
                "Webhook events read by the ingest, by kind and outcome.",
                &["kind", "outcome"],
            ),
            ingest_refs: counter_vec(
                "herald_ingest_refs_total",
                "Refs of inbound actions the ingest read, by outcome (only `linked` links).",
                &["outcome"],
            ),
            results_recorded: counter_vec(
                "herald_results_recorded_total",
                "Delivery results that a job's record now shows, by status.",
                &["status"],
            ),
            results_duplicates: counter(
                "herald_results_duplicates_total",
                "Delivery results that changed no record (a repeat, an older result, one after sent).",
            ),
            results_unknown_run: counter(
                "herald_results_unknown_run_total",
                "Runs whose results arrived with no run record in this store (once per run).",
            ),
            consumer_messages: counter_vec(
                "herald_consumer_messages_total",
                "Messages settled by the ingest and results consumers, by consumer and outcome.",
                &["consumer", "outcome"],
            ),
            consumer_store_errors: counter_vec(
                "herald_consumer_store_errors_total",
                "Store failures a consumer backed off and retried on, by consumer.",
                &["consumer"],
            ),
            consumer_connected: int_gauge_vec(
                "herald_consumer_connected",
                "1 while the consumer is attached to its queue.",
                &["consumer"],
            ),
            consumer_batch_items,
            policy_enforcement: counter_vec(
                "herald_policy_enforcement_total",
                "messaging_policy_enforcement webhook events, by action.",
                &["action"],
            ),
            trigger_fired: counter_vec(
                "herald_trigger_fired_total",
                "Events that fired a triggered campaign, by kind (one per campaign fired).",
                &["kind"],
            ),
            trigger_enqueued: counter(
                "herald_trigger_enqueued_total",
                "Jobs of triggered campaigns confirmed by the broker.",
            ),
            trigger_skipped: counter_vec(
                "herald_trigger_skipped_total",
                "Fires of triggered campaigns that sent nothing, by reason.",
                &["reason"],
            ),
            trigger_latency,
            trigger_pending: int_gauge(
                "herald_trigger_pending",
                "Fires of triggered campaigns due and not yet published.",
            ),
            trigger_oldest_pending: int_gauge(
                "herald_trigger_oldest_pending_seconds",
                "Seconds since the longest due fire not yet published came due (0 when none).",
            ),
            trigger_waiting: int_gauge(
                "herald_trigger_waiting",
                "Fires of triggered campaigns waiting for their campaign's delay.",
            ),
            registry,
        }
    }

    /// The registry in Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Encoding our own registry only fails on invalid metric families, which `new` rules out.
        let _ = prometheus::TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Keeps `gauge` at 1 while `flag` is true and 0 otherwise, until the flag's sender is gone
/// (then 0). For states another crate reports through a watch channel, such as a broker
/// connection being blocked.
pub fn follow_flag(
    mut flag: tokio::sync::watch::Receiver<bool>,
    gauge: IntGauge,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            gauge.set(i64::from(*flag.borrow_and_update()));
            if flag.changed().await.is_err() {
                break;
            }
        }
        gauge.set(0);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_conventions() {
        let metrics = Metrics::new();
        // Touch every vector once so it appears in the output.
        metrics.send_attempts.with_label_values(&["sent"]).inc();
        metrics.jobs_completed.with_label_values(&["sent"]).inc();
        metrics.graph_errors.with_label_values(&["613"]).inc();
        metrics.retries_scheduled.with_label_values(&["5s"]).inc();
        metrics
            .rate_limit_per_second
            .with_label_values(&["1"])
            .set(1.0);
        metrics.rate_limit_wait.observe(0.1);
        metrics.page_halted.with_label_values(&["1"]).set(0);
        metrics.graph_usage_ratio.with_label_values(&["1"]).set(0.5);
        metrics.jobs_held.with_label_values(&["run_paused"]).inc();
        metrics
            .jobs_dead_lettered
            .with_label_values(&["poison"])
            .inc();
        metrics
            .webhook_requests
            .with_label_values(&["accepted"])
            .inc();
        metrics.webhook_publish_duration.observe(0.002);
        metrics
            .api_requests
            .with_label_values(&["/campaigns/runs/{run_id}", "200"])
            .inc();
        metrics
            .ingest_events
            .with_label_values(&["message", "applied"])
            .inc();
        metrics.results_recorded.with_label_values(&["sent"]).inc();
        metrics.results_duplicates.inc();
        metrics
            .consumer_messages
            .with_label_values(&["ingest", "processed"])
            .inc();
        metrics
            .consumer_store_errors
            .with_label_values(&["results"])
            .inc();
        metrics
            .consumer_connected
            .with_label_values(&["ingest"])
            .set(1);
        metrics
            .policy_enforcement
            .with_label_values(&["block"])
            .inc();
        metrics.trigger_fired.with_label_values(&["postback"]).inc();
        metrics
            .trigger_skipped
            .with_label_values(&["once_per"])
            .inc();
        metrics
            .trigger_latency
            .with_label_values(&["enqueued"])
            .observe(0.1);
        for family in metrics.registry.gather() {
            let name = family.name();
            assert!(name.starts_with("herald_"), "{name}");
            assert!(!name.ends_with("_ms"), "{name}");
            let counter = family.get_field_type() == prometheus::proto::MetricType::COUNTER;
            assert_eq!(counter, name.ends_with("_total"), "{name}");
        }
        assert!(
            metrics
                .encode()
                .contains("herald_send_attempts_total{outcome=\"sent\"} 1")
        );
    }
}
