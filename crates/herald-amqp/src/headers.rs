//! `Headers`: the AMQP headers Herald puts on a message (`x-herald-attempt`, `x-herald-reason`)
//! and reads back from a delivery. Other properties (persistence, content type) are fixed by the
//! publisher, not chosen per message.

use lapin::types::{AMQPValue, FieldTable};

/// Header carrying how many Graph calls a job has had so far.
pub const ATTEMPT_HEADER: &str = "x-herald-attempt";
/// Header carrying why a message was dead-lettered (`<p>.dead`).
pub const REASON_HEADER: &str = "x-herald-reason";

/// The headers of one message. Wraps lapin's `FieldTable` so callers need not import lapin.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Headers(FieldTable);

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `x-herald-attempt`.
    pub fn with_attempt(mut self, attempt: u32) -> Self {
        self.0.insert(
            ATTEMPT_HEADER.into(),
            AMQPValue::LongLongInt(i64::from(attempt)),
        );
        self
    }

    /// Sets `x-herald-reason`.
    pub fn with_reason(mut self, reason: &str) -> Self {
        self.0
            .insert(REASON_HEADER.into(), AMQPValue::LongString(reason.into()));
        self
    }

    /// Sets any other header.
    pub fn with(mut self, key: &str, value: AMQPValue) -> Self {
        self.0.insert(key.into(), value);
        self
    }

    /// `x-herald-attempt`, if present and a non-negative integer that fits.
    pub fn attempt(&self) -> Option<u32> {
        let value = self.0.inner().get(ATTEMPT_HEADER)?;
        let number = match value {
            AMQPValue::ShortShortUInt(n) => i64::from(*n),
            AMQPValue::ShortShortInt(n) => i64::from(*n),
            AMQPValue::ShortUInt(n) => i64::from(*n),
            AMQPValue::ShortInt(n) => i64::from(*n),
            AMQPValue::LongUInt(n) => i64::from(*n),
            AMQPValue::LongInt(n) => i64::from(*n),
            AMQPValue::LongLongInt(n) => *n,
            _ => return None,
        };
        u32::try_from(number).ok()
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

    /// The raw table.
    pub fn as_table(&self) -> &FieldTable {
        &self.0
    }

    pub(crate) fn into_table(self) -> FieldTable {
        self.0
    }
}

impl From<FieldTable> for Headers {
    fn from(table: FieldTable) -> Self {
        Self(table)
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
}
