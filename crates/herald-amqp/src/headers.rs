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

    /// Why the message was dead-lettered: `x-herald-reason` when Herald put it there, else
    /// the broker's own reason (`x-first-death-reason`, e.g. `delivery_limit` when a work
    /// queue gave up on a message that kept coming back) with the queue it left.
    pub fn reason(&self) -> Option<String> {
        self.string(REASON_HEADER).or_else(|| {
            let reason = self.string("x-first-death-reason")?;
            Some(match self.string("x-first-death-queue") {
                Some(queue) => format!("the broker dead-lettered it from {queue}: {reason}"),
                None => format!("the broker dead-lettered it: {reason}"),
            })
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
}
