//! `Headers`: the AMQP headers Herald puts on a message and reads back from a delivery. This
//! file owns every `x-herald-*` header name and its encoding on the wire (integers are written
//! as `LongLongInt`, text as `LongString`; integers are read back from any AMQP integer type, as
//! a broker or another client may re-encode them), so no other crate needs AMQP value types.
//! Other properties (persistence, content type) are fixed by the publisher, not chosen per
//! message.

use lapin::types::{AMQPValue, FieldTable};

/// Header carrying how many Graph calls a job has had so far.
pub const ATTEMPT_HEADER: &str = "x-herald-attempt";
/// Header carrying why a message was dead-lettered (`<p>.dead`).
pub const REASON_HEADER: &str = "x-herald-reason";
/// Header with the Graph code of the failure that dead-lettered a job.
pub const CODE_HEADER: &str = "x-herald-code";
/// Header counting how many times a job was held back without a Graph call.
pub const DEFERRALS_HEADER: &str = "x-herald-deferrals";
/// Header with the time the webhook received the body, in epoch milliseconds (an integer).
pub const RECEIVED_AT_HEADER: &str = "x-herald-received-at";
/// Header with Meta's `X-Hub-Signature-256` of a webhook body, as verified (`sha256=<hex>`): the
/// ingest checks it again, so whoever may publish to `<prefix>.events` still cannot inject
/// events without the app secret.
pub const WEBHOOK_SIGNATURE_HEADER: &str = "x-herald-webhook-signature";
/// Header marking a job that may have been sent already (redelivered after a crash, retried
/// after an answer that never came, republished by a resumed run), with the epoch milliseconds
/// from which an echo of that send could be expected: the worker checks the send ledger first.
pub const VERIFY_SINCE_HEADER: &str = "x-herald-verify-since";
/// Header marking a job of the priority lane (`"high"`): it arrives on `<p>.send.priority`,
/// and a retried copy, which comes back through `<p>.send`, keeps its place ahead of bulk jobs
/// at its page's limiter.
pub const PRIORITY_HEADER: &str = "x-herald-priority";
/// Header with the publisher-local sequence number the RabbitMQ confirm driver uses to match a
/// returned message to its publish (`rabbit/confirms.rs`).
pub(crate) const PUBLISH_ID_HEADER: &str = "x-herald-publish-id";

/// The headers of one message. Wraps lapin's `FieldTable`, which never leaves this crate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Headers(FieldTable);

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `x-herald-attempt`.
    pub fn with_attempt(self, attempt: u32) -> Self {
        self.with_integer(ATTEMPT_HEADER, i64::from(attempt))
    }

    /// Sets `x-herald-reason`.
    pub fn with_reason(self, reason: &str) -> Self {
        self.with_text(REASON_HEADER, reason)
    }

    /// Sets `x-herald-code`.
    pub fn with_code(self, code: u32) -> Self {
        self.with_integer(CODE_HEADER, i64::from(code))
    }

    /// Sets `x-herald-deferrals`.
    pub fn with_deferrals(self, deferrals: u32) -> Self {
        self.with_integer(DEFERRALS_HEADER, i64::from(deferrals))
    }

    /// Sets `x-herald-received-at` (epoch milliseconds).
    pub fn with_received_at(self, epoch_ms: i64) -> Self {
        self.with_integer(RECEIVED_AT_HEADER, epoch_ms)
    }

    /// Sets `x-herald-webhook-signature` (`sha256=<hex>`).
    pub fn with_webhook_signature(self, signature: &str) -> Self {
        self.with_text(WEBHOOK_SIGNATURE_HEADER, signature)
    }

    /// Sets `x-herald-verify-since` (epoch milliseconds).
    pub fn with_verify_since(self, epoch_ms: i64) -> Self {
        self.with_integer(VERIFY_SINCE_HEADER, epoch_ms)
    }

    /// Sets `x-herald-priority: high`: the job is in the priority lane.
    pub fn with_high_priority(self) -> Self {
        self.with_text(PRIORITY_HEADER, "high")
    }

    /// True when `x-herald-priority` is `high` (read per job: no allocation).
    pub fn is_high_priority(&self) -> bool {
        match self.0.inner().get(PRIORITY_HEADER) {
            Some(AMQPValue::LongString(value)) => value.as_bytes() == b"high",
            Some(AMQPValue::ShortString(value)) => value.as_str() == "high",
            _ => false,
        }
    }

    /// `x-herald-attempt`, if present and a non-negative integer that fits.
    pub fn attempt(&self) -> Option<u32> {
        u32::try_from(self.integer(ATTEMPT_HEADER)?).ok()
    }

    /// `x-herald-code`, if present and a non-negative integer that fits.
    pub fn code(&self) -> Option<u32> {
        u32::try_from(self.integer(CODE_HEADER)?).ok()
    }

    /// `x-herald-deferrals`, if present and a non-negative integer that fits.
    pub fn deferrals(&self) -> Option<u32> {
        u32::try_from(self.integer(DEFERRALS_HEADER)?).ok()
    }

    /// `x-herald-received-at` (epoch milliseconds), if present and an integer.
    pub fn received_at(&self) -> Option<i64> {
        self.integer(RECEIVED_AT_HEADER)
    }

    /// `x-herald-verify-since` (epoch milliseconds), if present and an integer.
    pub fn verify_since(&self) -> Option<i64> {
        self.integer(VERIFY_SINCE_HEADER)
    }

    /// `x-herald-webhook-signature`, if present and a string.
    pub fn webhook_signature(&self) -> Option<String> {
        self.string(WEBHOOK_SIGNATURE_HEADER)
    }

    /// Why the message was dead-lettered: `x-herald-reason` when Herald put it there, else the
    /// broker's own reason for the latest death (the first entry of `x-death`, e.g.
    /// `delivery_limit` when a work queue gave up on a message that kept coming back) with the
    /// queue it left. Not `x-first-death-reason`: a job that waited in a retry tier first died
    /// there (`expired`), which says nothing about why it is dead now.
    pub fn reason(&self) -> Option<String> {
        if let Some(reason) = self.string(REASON_HEADER) {
            return Some(reason);
        }
        let AMQPValue::FieldArray(deaths) = self.0.inner().get("x-death")? else {
            return None;
        };
        let AMQPValue::FieldTable(latest) = deaths.as_slice().first()? else {
            return None;
        };
        let latest = Headers(latest.clone());
        let reason = latest.string("reason")?;
        Some(match latest.string("queue") {
            Some(queue) => format!("the broker dead-lettered it from {queue}: {reason}"),
            None => format!("the broker dead-lettered it: {reason}"),
        })
    }

    /// Any string header (long or short string), lossily decoded as UTF-8.
    pub fn string(&self, key: &str) -> Option<String> {
        match self.0.inner().get(key)? {
            AMQPValue::LongString(value) => Some(String::from_utf8_lossy(value.as_bytes()).into()),
            AMQPValue::ShortString(value) => Some(value.as_str().to_owned()),
            _ => None,
        }
    }

    /// Any integer header, whichever AMQP integer type carries it.
    fn integer(&self, key: &str) -> Option<i64> {
        let number = match self.0.inner().get(key)? {
            AMQPValue::ShortShortUInt(n) => i64::from(*n),
            AMQPValue::ShortShortInt(n) => i64::from(*n),
            AMQPValue::ShortUInt(n) => i64::from(*n),
            AMQPValue::ShortInt(n) => i64::from(*n),
            AMQPValue::LongUInt(n) => i64::from(*n),
            AMQPValue::LongInt(n) => i64::from(*n),
            AMQPValue::LongLongInt(n) => *n,
            _ => return None,
        };
        Some(number)
    }

    fn with_integer(self, key: &str, value: i64) -> Self {
        self.with(key, AMQPValue::LongLongInt(value))
    }

    fn with_text(self, key: &str, value: &str) -> Self {
        self.with(key, AMQPValue::LongString(value.into()))
    }

    /// Sets any header to a raw AMQP value.
    pub(crate) fn with(mut self, key: &str, value: AMQPValue) -> Self {
        self.0.insert(key.into(), value);
        self
    }

    pub(crate) fn from_table(table: FieldTable) -> Self {
        Self(table)
    }

    pub(crate) fn into_table(self) -> FieldTable {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempt_reads_any_integer_type_the_broker_may_hand_back() {
        let check = |value: AMQPValue, expected: Option<u32>| {
            let headers = Headers::new().with(ATTEMPT_HEADER, value.clone());
            assert_eq!(headers.attempt(), expected, "{value:?}");
        };
        check(AMQPValue::LongLongInt(3), Some(3));
        check(AMQPValue::LongInt(4), Some(4));
        check(AMQPValue::ShortShortUInt(5), Some(5));
        check(AMQPValue::LongLongInt(-1), None);
        check(AMQPValue::LongLongInt(i64::from(u32::MAX) + 1), None);
        check(AMQPValue::LongString("3".into()), None);
        assert_eq!(Headers::new().with_attempt(7).attempt(), Some(7));
        assert_eq!(Headers::new().attempt(), None);
    }

    #[test]
    fn reason_round_trips() {
        let headers = Headers::new().with_reason("unparseable job: expected value at line 1");
        assert_eq!(
            headers.reason().as_deref(),
            Some("unparseable job: expected value at line 1")
        );
        assert_eq!(Headers::new().reason(), None);
    }

    #[test]
    fn without_our_reason_the_latest_broker_death_explains() {
        let death = |reason: &str, queue: &str| {
            let mut table = FieldTable::default();
            table.insert("reason".into(), AMQPValue::LongString(reason.into()));
            table.insert("queue".into(), AMQPValue::LongString(queue.into()));
            AMQPValue::FieldTable(table)
        };
        // Latest first, as RabbitMQ orders x-death: the limit, after an expiry in a retry tier.
        let deaths = vec![
            death("delivery_limit", "p.send"),
            death("expired", "p.retry.5s"),
        ];
        let headers = Headers::new().with("x-death", AMQPValue::FieldArray(deaths.into()));
        assert_eq!(
            headers.reason().as_deref(),
            Some("the broker dead-lettered it from p.send: delivery_limit")
        );
        assert_eq!(
            headers.with_reason("ours").reason().as_deref(),
            Some("ours"),
            "Herald's own reason wins"
        );
    }

    #[test]
    fn every_header_keeps_its_name_and_wire_encoding() {
        let headers = Headers::new()
            .with_attempt(3)
            .with_reason("why")
            .with_code(368)
            .with_deferrals(2)
            .with_received_at(1_700_000_000_123)
            .with_webhook_signature("sha256=ab");
        let table = headers.clone().into_table();
        let get = |key: &str| table.inner().get(key).cloned();
        assert_eq!(get("x-herald-attempt"), Some(AMQPValue::LongLongInt(3)));
        assert_eq!(
            get("x-herald-reason"),
            Some(AMQPValue::LongString("why".into()))
        );
        assert_eq!(get("x-herald-code"), Some(AMQPValue::LongLongInt(368)));
        assert_eq!(get("x-herald-deferrals"), Some(AMQPValue::LongLongInt(2)));
        let at = AMQPValue::LongLongInt(1_700_000_000_123);
        assert_eq!(get("x-herald-received-at"), Some(at));
        let signature = AMQPValue::LongString("sha256=ab".into());
        assert_eq!(get("x-herald-webhook-signature"), Some(signature));
        assert_eq!(table.inner().len(), 6);
        assert_eq!(headers.attempt(), Some(3));
        assert_eq!(headers.reason().as_deref(), Some("why"));
        assert_eq!(headers.code(), Some(368));
        assert_eq!(headers.deferrals(), Some(2));
        assert_eq!(headers.received_at(), Some(1_700_000_000_123));
        assert_eq!(headers.webhook_signature().as_deref(), Some("sha256=ab"));
    }

    #[test]
    fn integer_headers_read_any_integer_type_and_nothing_else() {
        for key in [CODE_HEADER, DEFERRALS_HEADER, RECEIVED_AT_HEADER] {
            let read = |value: AMQPValue| {
                let headers = Headers::new().with(key, value);
                (headers.code(), headers.deferrals(), headers.received_at())
            };
            let expect = |n: Option<u32>, ms: Option<i64>| match key {
                CODE_HEADER => (n, None, None),
                DEFERRALS_HEADER => (None, n, None),
                _ => (None, None, ms),
            };
            assert_eq!(
                read(AMQPValue::LongInt(7)),
                expect(Some(7), Some(7)),
                "{key}"
            );
            assert_eq!(
                read(AMQPValue::LongUInt(8)),
                expect(Some(8), Some(8)),
                "{key}"
            );
            assert_eq!(
                read(AMQPValue::ShortUInt(9)),
                expect(Some(9), Some(9)),
                "{key}"
            );
            assert_eq!(
                read(AMQPValue::LongLongInt(-1)),
                expect(None, Some(-1)),
                "{key}"
            );
            assert_eq!(
                read(AMQPValue::LongString("7".into())),
                expect(None, None),
                "{key}"
            );
        }
        assert_eq!(Headers::new().webhook_signature(), None);
        let short =
            Headers::new().with(WEBHOOK_SIGNATURE_HEADER, AMQPValue::ShortString("s".into()));
        assert_eq!(short.webhook_signature().as_deref(), Some("s"));
    }
}
