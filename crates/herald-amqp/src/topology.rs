//! `Topology`: every exchange, queue and binding Herald uses, named from one prefix (so tests
//! and the demo can isolate themselves on a shared broker), with the arguments each queue is
//! declared with. Talking to the broker about them (declare, delete) is `declare.rs`;
//! publishing and consuming live elsewhere.

use lapin::{
    ExchangeKind,
    types::{AMQPValue, FieldTable, ShortString},
};

use crate::{AmqpError, RetryTier};

/// Routing key of `<prefix>.send` on `<prefix>.jobs`, and where retry tiers dead-letter to.
pub const SEND_ROUTING_KEY: &str = "send";
/// Routing key of `<prefix>.send.priority` on `<prefix>.jobs`: the priority lane.
pub const PRIORITY_ROUTING_KEY: &str = "send.priority";

/// Control-log retention: the stream keeps at most this many bytes (old segments are dropped
/// whole). Size rather than age, so a page halted long ago is still in the history.
const CONTROL_LOG_MAX_BYTES: i64 = 256 * 1024 * 1024;
/// Stream segment size: retention drops whole segments, so keep them small next to the cap.
const CONTROL_LOG_SEGMENT_BYTES: i64 = 8 * 1024 * 1024;

/// The names of Herald's broker objects, all derived from one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    prefix: String,
}

/// Production names: prefix `herald`.
impl Default for Topology {
    fn default() -> Self {
        Self {
            prefix: "herald".to_owned(),
        }
    }
}

impl Topology {
    /// Names under `prefix` (`herald` in production, `test-<random>` in tests). The prefix is
    /// ASCII letters, digits, `.`, `_` or `-`, at most 200 bytes, not starting with `amq.`.
    pub fn new(prefix: &str) -> Result<Self, AmqpError> {
        let invalid = |reason| AmqpError::InvalidName {
            name: prefix.to_owned(),
            reason,
        };
        if prefix.is_empty() || prefix.len() > 200 {
            return Err(invalid("a prefix has 1 to 200 bytes"));
        }
        if !prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(invalid(
                "a prefix uses only ASCII letters, digits, '.', '_' and '-'",
            ));
        }
        if prefix.starts_with("amq.") {
            return Err(invalid(
                "names starting with 'amq.' are reserved by RabbitMQ",
            ));
        }
        Ok(Self {
            prefix: prefix.to_owned(),
        })
    }

    /// The prefix every name starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<p>.jobs`: direct exchange the producer publishes jobs to.
    pub fn jobs_exchange(&self) -> String {
        format!("{}.jobs", self.prefix)
    }

    /// `<p>.send`: quorum queue the workers consume, bound with `SEND_ROUTING_KEY`.
    pub fn send_queue(&self) -> String {
        format!("{}.send", self.prefix)
    }

    /// `<p>.send.priority`: quorum queue of the priority lane, bound with
    /// `PRIORITY_ROUTING_KEY`. Workers consume it beside `<p>.send`, so its jobs never wait
    /// behind a bulk campaign's backlog in the broker.
    pub fn priority_queue(&self) -> String {
        format!("{}.send.priority", self.prefix)
    }

    /// `<p>.retry`: direct exchange; the routing key is the tier name.
    pub fn retry_exchange(&self) -> String {
        format!("{}.retry", self.prefix)
    }

    /// `<p>.retry.<tier>`: waits `tier.delay()`, then dead-letters to `<p>.jobs` / `send`.
    pub fn retry_queue(&self, tier: RetryTier) -> String {
        format!("{}.retry.{}", self.prefix, tier.name())
    }

    /// `<p>.dead`: fanout exchange for exhausted and poison jobs (reason in `x-herald-reason`).
    pub fn dead_exchange(&self) -> String {
        format!("{}.dead", self.prefix)
    }

    /// `<p>.dead`: the dead-letter queue itself (exchanges and queues have separate namespaces).
    pub fn dead_queue(&self) -> String {
        format!("{}.dead", self.prefix)
    }

    /// `<p>.results`: topic exchange, routing key `<status>.<campaign_id>`.
    pub fn results_exchange(&self) -> String {
        format!("{}.results", self.prefix)
    }

    /// `<p>.results.store`: bound to `#`, so a mandatory result publish always has a route.
    pub fn results_store_queue(&self) -> String {
        format!("{}.results.store", self.prefix)
    }

    /// `<p>.events`: topic exchange for verified webhook events.
    pub fn events_exchange(&self) -> String {
        format!("{}.events", self.prefix)
    }

    /// `<p>.events.ingest`: bound to `#`; the ingest consumer reads it.
    pub fn events_ingest_queue(&self) -> String {
        format!("{}.events.ingest", self.prefix)
    }

    /// `<p>.control`: fanout exchange for pause/resume/cancel and page halt/resume commands.
    pub fn control_exchange(&self) -> String {
        format!("{}.control", self.prefix)
    }

    /// `<p>.control.log`: a stream, so a worker starting later replays it from offset `first`.
    pub fn control_log_queue(&self) -> String {
        format!("{}.control.log", self.prefix)
    }

    pub(crate) fn exchanges(&self) -> Vec<(String, ExchangeKind)> {
        vec![
            (self.jobs_exchange(), ExchangeKind::Direct),
            (self.retry_exchange(), ExchangeKind::Direct),
            (self.dead_exchange(), ExchangeKind::Fanout),
            (self.results_exchange(), ExchangeKind::Topic),
            (self.events_exchange(), ExchangeKind::Topic),
            (self.control_exchange(), ExchangeKind::Fanout),
        ]
    }

    /// Every queue with its arguments. Quorum queues for anything holding jobs or results:
    /// replicated, and the retry tiers dead-letter at-least-once (RabbitMQ 3.10+, needs
    /// `x-overflow: reject-publish`), so a job is never lost on its way back to `<p>.send`.
    ///
    /// The queues consumers work from (`<p>.send`, `<p>.send.priority`, `<p>.results.store`,
    /// `<p>.events.ingest`) set their own delivery limit and dead-letter to `<p>.dead` once it
    /// is reached. Without
    /// that, a message that kills its consumer each time is redelivered forever on RabbitMQ
    /// 3.x, and dropped silently after 20 deliveries on 4.x; with it, both behave the same and
    /// the message is kept where an operator can see and replay it.
    pub(crate) fn queues(&self) -> Vec<(String, FieldTable)> {
        let mut queues = vec![
            (self.send_queue(), self.limited()),
            (self.priority_queue(), self.limited()),
        ];
        for tier in RetryTier::ALL {
            let mut arguments = quorum();
            let ttl_ms = herald_core::clock::millis(tier.delay());
            insert(
                &mut arguments,
                "x-message-ttl",
                AMQPValue::LongLongInt(ttl_ms),
            );
            insert(
                &mut arguments,
                "x-dead-letter-exchange",
                text(&self.jobs_exchange()),
            );
            insert(
                &mut arguments,
                "x-dead-letter-routing-key",
                text(SEND_ROUTING_KEY),
            );
            insert(
                &mut arguments,
                "x-dead-letter-strategy",
                text("at-least-once"),
            );
            insert(&mut arguments, "x-overflow", text("reject-publish"));
            queues.push((self.retry_queue(tier), arguments));
        }
        queues.push((self.dead_queue(), quorum()));
        queues.push((self.results_store_queue(), self.limited()));
        queues.push((self.events_ingest_queue(), self.limited()));
        let mut stream = FieldTable::default();
        insert(&mut stream, "x-queue-type", text("stream"));
        insert(
            &mut stream,
            "x-max-length-bytes",
            AMQPValue::LongLongInt(CONTROL_LOG_MAX_BYTES),
        );
        let segment = AMQPValue::LongLongInt(CONTROL_LOG_SEGMENT_BYTES);
        insert(&mut stream, "x-stream-max-segment-size-bytes", segment);
        queues.push((self.control_log_queue(), stream));
        queues
    }

    /// `(queue, exchange, routing key)`.
    pub(crate) fn bindings(&self) -> Vec<(String, String, String)> {
        let mut bindings = vec![
            (
                self.send_queue(),
                self.jobs_exchange(),
                SEND_ROUTING_KEY.into(),
            ),
            (
                self.priority_queue(),
                self.jobs_exchange(),
                PRIORITY_ROUTING_KEY.into(),
            ),
        ];
        for tier in RetryTier::ALL {
            bindings.push((
                self.retry_queue(tier),
                self.retry_exchange(),
                tier.name().into(),
            ));
        }
        bindings.push((self.dead_queue(), self.dead_exchange(), String::new()));
        bindings.push((
            self.results_store_queue(),
            self.results_exchange(),
            "#".into(),
        ));
        bindings.push((
            self.events_ingest_queue(),
            self.events_exchange(),
            "#".into(),
        ));
        bindings.push((
            self.control_log_queue(),
            self.control_exchange(),
            String::new(),
        ));
        bindings
    }
}

impl Topology {
    /// A quorum queue that dead-letters to `<p>.dead` after `DELIVERY_LIMIT` deliveries.
    fn limited(&self) -> FieldTable {
        let mut arguments = quorum();
        insert(
            &mut arguments,
            "x-delivery-limit",
            AMQPValue::LongLongInt(DELIVERY_LIMIT),
        );
        insert(
            &mut arguments,
            "x-dead-letter-exchange",
            text(&self.dead_exchange()),
        );
        insert(
            &mut arguments,
            "x-dead-letter-strategy",
            text("at-least-once"),
        );
        insert(&mut arguments, "x-overflow", text("reject-publish"));
        arguments
    }
}

/// Deliveries of one message (returns to the queue after a consumer died or nacked it) before
/// a work queue dead-letters it: far more than any transient failure explains (Herald acks or
/// settles every message it can read), few enough that a poison message is set aside quickly.
pub const DELIVERY_LIMIT: i64 = 10;

/// A name as lapin wants it; lapin panics on names over 255 bytes, so check first.
pub(crate) fn short_string(name: &str) -> Result<ShortString, AmqpError> {
    ShortString::try_new(name).map_err(|_| AmqpError::InvalidName {
        name: name.to_owned(),
        reason: "AMQP names have at most 255 bytes",
    })
}

fn quorum() -> FieldTable {
    let mut arguments = FieldTable::default();
    insert(&mut arguments, "x-queue-type", text("quorum"));
    arguments
}

fn insert(table: &mut FieldTable, key: &str, value: AMQPValue) {
    table.insert(key.into(), value);
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(value.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_names() {
        let topology = Topology::default();
        assert_eq!(topology, Topology::new("herald").unwrap());
        let check = |name: String, expected: &str| assert_eq!(name, expected);
        check(topology.jobs_exchange(), "herald.jobs");
        check(topology.send_queue(), "herald.send");
        check(topology.priority_queue(), "herald.send.priority");
        check(topology.retry_exchange(), "herald.retry");
        check(
            topology.retry_queue(RetryTier::TwoMinutes),
            "herald.retry.2m",
        );
        check(topology.dead_exchange(), "herald.dead");
        check(topology.results_store_queue(), "herald.results.store");
        check(topology.events_ingest_queue(), "herald.events.ingest");
        check(topology.control_log_queue(), "herald.control.log");
    }

    #[test]
    fn rejects_unusable_prefixes() {
        for prefix in ["", "amq.x", "has space", "ünï", &"x".repeat(201)] {
            let error = Topology::new(prefix).unwrap_err();
            assert!(
                matches!(error, AmqpError::InvalidName { .. }),
                "{prefix}: {error}"
            );
        }
        assert!(Topology::new("test-0a1b").is_ok());
    }

    #[test]
    fn every_retry_tier_dead_letters_to_the_send_route_after_its_delay() {
        let topology = Topology::new("p").unwrap();
        let queues = topology.queues();
        for tier in RetryTier::ALL {
            let (_, arguments) = queues
                .iter()
                .find(|(name, _)| *name == topology.retry_queue(tier))
                .unwrap();
            let get = |key: &str| arguments.inner().get(key).cloned();
            let ms = tier.delay().as_millis() as i64;
            assert_eq!(get("x-message-ttl"), Some(AMQPValue::LongLongInt(ms)));
            assert_eq!(get("x-dead-letter-exchange"), Some(text("p.jobs")));
            assert_eq!(
                get("x-dead-letter-routing-key"),
                Some(text(SEND_ROUTING_KEY))
            );
            let bound = (
                topology.retry_queue(tier),
                "p.retry".into(),
                tier.name().into(),
            );
            assert!(topology.bindings().contains(&bound), "{tier}");
        }
    }

    #[test]
    fn work_queues_dead_letter_to_dead_after_their_delivery_limit() {
        let topology = Topology::new("p").unwrap();
        let queues = topology.queues();
        for queue in [
            topology.send_queue(),
            topology.priority_queue(),
            topology.results_store_queue(),
            topology.events_ingest_queue(),
        ] {
            let (_, arguments) = queues.iter().find(|(name, _)| *name == queue).unwrap();
            let get = |key: &str| arguments.inner().get(key).cloned();
            assert_eq!(
                get("x-delivery-limit"),
                Some(AMQPValue::LongLongInt(DELIVERY_LIMIT)),
                "{queue}"
            );
            assert_eq!(
                get("x-dead-letter-exchange"),
                Some(text("p.dead")),
                "{queue}"
            );
        }
    }

    #[test]
    fn every_queue_is_bound_and_every_binding_names_declared_objects() {
        let topology = Topology::new("p").unwrap();
        let queues: Vec<_> = topology
            .queues()
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        let exchanges: Vec<_> = topology
            .exchanges()
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        for queue in &queues {
            assert!(
                topology
                    .bindings()
                    .iter()
                    .any(|(bound, _, _)| bound == queue),
                "{queue}"
            );
        }
        for (queue, exchange, _) in topology.bindings() {
            assert!(
                queues.contains(&queue) && exchanges.contains(&exchange),
                "{queue} {exchange}"
            );
        }
    }
}
