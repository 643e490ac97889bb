//! `WorkerSettings`: everything one worker process needs (broker, names, Graph client, page tokens,
//! page ceilings, concurrency, backoff, shutdown grace), validated once. Layering defaults, files,
//! environment and flags is the binary's job (herald-cli `config.rs`); this is the composed result.

use std::time::Duration;

use herald_amqp::{AmqpSettings, Topology};
use herald_graph::GraphSettings;

use crate::{LedgerSettings, PageRates, PageTokens};

/// One worker's settings.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// How to reach RabbitMQ; `amqp.prefetch` is the worker's prefetch.
    pub amqp: AmqpSettings,
    /// Exchange and queue names.
    pub topology: Topology,
    /// How to reach the Graph API.
    pub graph: GraphSettings,
    /// Page id → page access token; replace it at run time (SIGHUP) through the shared handle.
    pub tokens: PageTokens,
    /// Each page's send ceiling for the whole fleet.
    pub rates: PageRates,
    /// Graph calls in flight at once (jobs waiting for their page's limiter do not count).
    pub concurrency: usize,
    /// After SIGTERM, how long in-flight sends get to finish and be acked.
    pub shutdown_grace: Duration,
    /// Delays between attempts of a failing job.
    pub backoff: Backoff,
    /// A job whose page limiter would make it wait longer than this goes back to a retry tier
    /// instead of holding a prefetch slot. At least the shortest retry tier (5 s): a shorter
    /// wait would send a saturated page's surplus round the tiers and leave the worker idle
    /// until it comes back.
    pub max_rate_wait: Duration,
    /// How often the number of consumers on the send queue (the fleet size) is re-read.
    pub fleet_refresh: Duration,
    /// How long to wait before reconnecting after the broker connection is lost.
    pub reconnect_delay: Duration,
    /// Where jobs that may have been sent already are checked first; `None` sends them again
    /// (counted as possible duplicates).
    pub ledger: Option<LedgerSettings>,
}

/// Exponential backoff with full jitter between attempts of one job, capped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The delay cap after the first failed attempt (before jitter).
    pub min_delay: Duration,
    /// The largest delay cap.
    pub max_delay: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            min_delay: Duration::from_secs(5),
            max_delay: Duration::from_secs(10 * 60),
        }
    }
}

impl WorkerSettings {
    /// Settings with production defaults for everything but where things are.
    pub fn new(
        amqp: AmqpSettings,
        topology: Topology,
        graph: GraphSettings,
        tokens: PageTokens,
    ) -> Self {
        Self {
            amqp,
            topology,
            graph,
            tokens,
            rates: PageRates::default(),
            concurrency: 64,
            shutdown_grace: Duration::from_secs(30),
            backoff: Backoff::default(),
            max_rate_wait: Duration::from_secs(10),
            fleet_refresh: Duration::from_millis(500),
            reconnect_delay: Duration::from_secs(1),
            ledger: None,
        }
    }

    /// Every problem at once, each naming its setting.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = self.amqp.validate().err().unwrap_or_default();
        if self.concurrency == 0 {
            problems.push("concurrency: must be at least 1".to_owned());
        }
        if self.rates.default_ceiling == 0 || self.rates.pages.values().any(|rate| *rate == 0) {
            problems.push("page rates: must be at least 1 per second".to_owned());
        }
        if self.backoff.min_delay.is_zero() || self.backoff.max_delay < self.backoff.min_delay {
            problems.push("backoff: need 0 < min_delay <= max_delay".to_owned());
        }
        if self.max_rate_wait < Duration::from_secs(5) {
            problems
                .push("max_rate_wait: must be at least the shortest retry tier, 5 s".to_owned());
        }
        if self.fleet_refresh.is_zero() {
            problems.push("fleet_refresh: must be above zero".to_owned());
        }
        if let Some(ledger) = &self.ledger {
            problems.extend(ledger.problems());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}
