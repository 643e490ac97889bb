//! List and replay what sits in `herald.dead`. Both read the queue with manual acks and hold
//! every message until the end, then close the channel, which puts back whatever was not
//! replayed: listing never loses a message. Replay republishes the exact bytes to `herald.jobs`
//! with the attempt count reset, waits for the confirm, and only then acks the dead copy.
//! Poison (bytes that are not a job) is listed but never replayed.
//!
//! A list comes in pages. A queue has no stable positions (returned messages may come back in
//! another order), so a page is ordered by a key of each message's own: `job:<job id>` for a
//! job, `raw:<SHA-256 of the body>` for anything else. A page holds the first `limit` matching
//! messages after the cursor, and its cursor names the last key given and how many messages
//! with that key were given so far (identical copies share a key). Reading a page reads the
//! whole queue, but keeps only the page's summaries: no body outlives its own summary. A call
//! ends once the queue holds again what it returned, so the next page counts them all.

use std::collections::BinaryHeap;
use std::time::Duration;

use futures_util::StreamExt;
use herald_amqp::{
    AmqpError, Connection, Consumer, Delivery, Headers, Publisher, SEND_ROUTING_KEY,
};
use herald_core::SendJob;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ops::{Broker, ErrorKind, OpsError};

/// Stop reading when nothing arrived for this long (the queue's count was a snapshot).
const IDLE: Duration = Duration::from_secs(2);
/// How long a call waits for the messages it held to be back in the queue.
const RETURN_WAIT: Duration = Duration::from_secs(5);

/// Which dead messages an operation applies to; `None` matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// Only this run's jobs.
    pub run_id: Option<String>,
    /// Only jobs whose last Graph error had this code.
    pub code: Option<u32>,
}

/// One dead message, as read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadMessage {
    /// The job's id; `None` for poison (bytes that are not a job).
    pub job_id: Option<String>,
    /// The job's run; `None` for poison.
    pub run_id: Option<String>,
    /// Graph calls made (`x-herald-attempt`), when recorded.
    pub attempts: Option<u32>,
    /// The last Graph error code (`x-herald-code`), when there was one.
    pub code: Option<u32>,
    /// Why it was dead-lettered (`x-herald-reason`).
    pub reason: String,
}

/// Messages a page holds unless asked otherwise.
pub const DEFAULT_PAGE: usize = 100;
/// The most messages one page over the API holds.
pub const MAX_PAGE: usize = 1_000;

/// Which page of the matching messages to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// At most this many messages (`None`: all of them, for the CLI).
    pub limit: Option<usize>,
    /// The `next` cursor of the page before; `None` for the first page.
    pub after: Option<String>,
}

impl Page {
    /// Every matching message in one list.
    pub fn all() -> Self {
        Self {
            limit: None,
            after: None,
        }
    }
}

/// The result of `list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadList {
    /// Messages read from the queue (all of them, unless `truncated`).
    pub total: usize,
    /// Of those, the ones matching the filter (on every page, not only this one).
    pub matching: usize,
    /// This page of the matching messages, ordered by job id, the other messages after them.
    pub messages: Vec<DeadMessage>,
    /// The cursor of the next page (`?after=`), or `None` when this page is the last.
    pub next: Option<String>,
    /// True when the queue held more than one call can read (65,535).
    pub truncated: bool,
}

/// The result of `replay`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Replayed {
    /// Job ids sent back to the send queue, in queue order.
    pub replayed: Vec<String>,
    /// Messages left in the dead queue (not matching, or poison).
    pub kept: usize,
    /// True when the queue held more than one call can read (65,535).
    pub truncated: bool,
}

/// One page of the dead messages matching `filter`, leaving all of them in the queue.
pub async fn list(broker: &Broker, filter: &Filter, page: &Page) -> Result<DeadList, OpsError> {
    let after = page.after.as_deref().map(Cursor::parse).transpose()?;
    if page.limit == Some(0) {
        return Err(OpsError::invalid(
            ErrorKind::Usage,
            "limit",
            format!("must be 1 to {MAX_PAGE}"),
        ));
    }
    let connection = broker.connect().await?;
    let listed = list_on(&connection, broker, filter, page.limit, after.as_ref()).await;
    let _ = connection.close().await;
    Ok(listed?)
}

/// Sends every dead job matching `filter` back to `herald.jobs` (attempt count reset); each dead
/// copy is acked only once its replay is confirmed. Poison stays.
pub async fn replay(broker: &Broker, filter: &Filter) -> Result<Replayed, OpsError> {
    let connection = broker.connect().await?;
    let replayed = replay_on(&connection, broker, filter).await;
    let _ = connection.close().await;
    Ok(replayed?)
}

async fn list_on(
    connection: &Connection,
    broker: &Broker,
    filter: &Filter,
    limit: Option<usize>,
    after: Option<&Cursor>,
) -> Result<DeadList, AmqpError> {
    let queue = broker.topology.dead_queue();
    let count = connection.message_count(&queue).await?;
    let prefetch = prefetch_for(count);
    let mut consumer = Consumer::start(connection, &queue, prefetch).await?;
    let (mut total, mut matching, mut seq) = (0, 0, 0_u64);
    let mut same_as_cursor = 0_u64;
    // The smallest `limit + 1` candidates after the cursor (one more tells whether a next
    // page exists); the largest on top, to be pushed out.
    let mut page = BinaryHeap::new();
    while total < usize::from(prefetch) && count > 0 {
        let delivery = match tokio::time::timeout(IDLE, consumer.next()).await {
            Ok(Some(delivery)) => delivery?,
            Ok(None) | Err(_) => break,
        };
        total += 1;
        let message = describe(&delivery);
        if !matches(&message, filter) {
            continue;
        }
        matching += 1;
        let key = key_of(&delivery, &message);
        // The delivery stays unacked (the broker keeps it for us) but its body goes now.
        drop(delivery);
        if let Some(cursor) = after {
            if key < cursor.key {
                continue;
            }
            if key == cursor.key {
                same_as_cursor += 1;
                if same_as_cursor <= cursor.given {
                    continue;
                }
            }
        }
        seq += 1;
        page.push(Candidate { key, seq, message });
        if limit.is_some_and(|limit| page.len() > limit + 1) {
            page.pop();
        }
    }
    // Closing the channel returns every unacked message to the queue.
    let _ = consumer.close().await;
    returned(connection, &queue, total).await;
    let mut page = page.into_sorted_vec();
    let more = limit.is_some_and(|limit| page.len() > limit);
    page.truncate(limit.unwrap_or(usize::MAX));
    let next = match page.last() {
        Some(last) if more => {
            let mut given = page.iter().filter(|c| c.key == last.key).count() as u64;
            if let Some(cursor) = after.filter(|cursor| cursor.key == last.key) {
                given += cursor.given;
            }
            Some(
                Cursor {
                    key: last.key.clone(),
                    given,
                }
                .to_string(),
            )
        }
        _ => None,
    };
    Ok(DeadList {
        total,
        matching,
        messages: page.into_iter().map(|c| c.message).collect(),
        next,
        truncated: count > u32::from(prefetch),
    })
}

/// A message on its way into a page, ordered by its key (and arrival, among equal keys).
#[derive(Debug)]
struct Candidate {
    key: String,
    seq: u64,
    message: DeadMessage,
}

impl Candidate {
    fn order(&self) -> (&str, u64) {
        (&self.key, self.seq)
    }
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.order() == other.order()
    }
}

impl Eq for Candidate {}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.order().cmp(&other.order())
    }
}

/// Where a page ended: the last key given and how many messages with it were given so far.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cursor {
    key: String,
    given: u64,
}

impl Cursor {
    /// A cursor as `next` wrote it: `<given>.<key in hex>`.
    fn parse(text: &str) -> Result<Self, OpsError> {
        let bad = || {
            OpsError::invalid(
                ErrorKind::Usage,
                "after",
                "is not a cursor this API gave (use the `next` of the page before)",
            )
        };
        let (given, key) = text.split_once('.').ok_or_else(bad)?;
        let given = given.parse().map_err(|_| bad())?;
        let key = hex::decode(key).map_err(|_| bad())?;
        let key = String::from_utf8(key).map_err(|_| bad())?;
        Ok(Self { key, given })
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.given, hex::encode(&self.key))
    }
}

/// Whether `text` is a cursor `list` gave (`next`).
pub fn is_cursor(text: &str) -> bool {
    Cursor::parse(text).is_ok()
}

/// The message's own ordering key: its job id, or for anything else a digest of its bytes.
fn key_of(delivery: &Delivery, message: &DeadMessage) -> String {
    match &message.job_id {
        Some(job_id) => format!("job:{job_id}"),
        None => format!("raw:{}", hex::encode(Sha256::digest(delivery.body()))),
    }
}

async fn replay_on(
    connection: &Connection,
    broker: &Broker,
    filter: &Filter,
) -> Result<Replayed, AmqpError> {
    let publisher = Publisher::open(connection, 256).await?;
    let read = read_all(connection, broker).await?;
    let (mut replayed, mut kept) = (Vec::new(), 0);
    for delivery in &read.deliveries {
        let dead = describe(delivery);
        let Some(job_id) = dead.job_id.clone().filter(|_| matches(&dead, filter)) else {
            kept += 1;
            continue;
        };
        // No attempt header: the job starts over at attempt 1.
        publisher
            .publish(
                &broker.topology.jobs_exchange(),
                SEND_ROUTING_KEY,
                delivery.body(),
                Headers::new(),
            )
            .await?
            .await?;
        delivery.ack().await?;
        replayed.push(job_id);
    }
    // Closing the channel returns every message not acked (not replayed) to the queue.
    let _ = read.consumer.close().await;
    returned(connection, &broker.topology.dead_queue(), kept).await;
    publisher.close().await?;
    Ok(Replayed {
        replayed,
        kept,
        truncated: read.truncated,
    })
}

/// Every message in the dead queue, held unacked.
struct Read {
    consumer: Consumer,
    deliveries: Vec<Delivery>,
    truncated: bool,
}

/// Waits (up to `RETURN_WAIT`) until the queue again holds the `held` messages this call
/// returned by closing its channel. A quorum queue takes them back asynchronously, and a call
/// that came right after (the next page) would otherwise count, and read, fewer.
async fn returned(connection: &Connection, queue: &str, held: usize) {
    let deadline = tokio::time::Instant::now() + RETURN_WAIT;
    while tokio::time::Instant::now() < deadline {
        match connection.message_count(queue).await {
            Ok(count) if count as usize >= held => return,
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(_) => return,
        }
    }
}

/// A prefetch (at most 65,535) caps how many messages one call can see.
fn prefetch_for(count: u32) -> u16 {
    u16::try_from(count).unwrap_or(u16::MAX).max(1)
}

/// Reads the dead queue, holding every delivery.
async fn read_all(connection: &Connection, broker: &Broker) -> Result<Read, AmqpError> {
    let queue = broker.topology.dead_queue();
    let count = connection.message_count(&queue).await?;
    let prefetch = prefetch_for(count);
    let mut consumer = Consumer::start(connection, &queue, prefetch).await?;
    let mut deliveries = Vec::new();
    while deliveries.len() < usize::from(prefetch) && count > 0 {
        match tokio::time::timeout(IDLE, consumer.next()).await {
            Ok(Some(delivery)) => deliveries.push(delivery?),
            Ok(None) | Err(_) => break,
        }
    }
    Ok(Read {
        consumer,
        deliveries,
        truncated: count > u32::from(prefetch),
    })
}

fn describe(delivery: &Delivery) -> DeadMessage {
    let headers = delivery.headers();
    let code = headers.code();
    let job: Option<SendJob> = serde_json::from_slice(delivery.body()).ok();
    DeadMessage {
        job_id: job.as_ref().map(|job| job.job_id.clone()),
        run_id: job.map(|job| job.run_id),
        attempts: headers.attempt(),
        code,
        reason: headers
            .reason()
            .unwrap_or_else(|| "(no reason given)".to_owned()),
    }
}

fn matches(dead: &DeadMessage, filter: &Filter) -> bool {
    let run_ok = filter
        .run_id
        .as_deref()
        .is_none_or(|run| dead.run_id.as_deref() == Some(run));
    let code_ok = filter.code.is_none_or(|code| dead.code == Some(code));
    run_ok && code_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_read_back_and_foreign_ones_are_refused() {
        let cursor = Cursor {
            key: "job:run-1:ü 1".to_owned(),
            given: 3,
        };
        assert_eq!(Cursor::parse(&cursor.to_string()).expect("parse"), cursor);
        for bad in ["", "3", "x.6a6f62", "3.zz", "3.ff"] {
            assert!(Cursor::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn filters_match_by_run_and_code_and_poison_matches_no_run() {
        let job = |run: Option<&str>, code: Option<u32>| DeadMessage {
            job_id: run.map(|run| format!("{run}:u1")),
            run_id: run.map(str::to_owned),
            attempts: Some(1),
            code,
            reason: "r".into(),
        };
        let filter = |run: Option<&str>, code: Option<u32>| Filter {
            run_id: run.map(str::to_owned),
            code,
        };
        let check = |dead: DeadMessage, filter: Filter, expected: bool| {
            assert_eq!(matches(&dead, &filter), expected, "{dead:?} {filter:?}");
        };
        check(job(Some("a"), Some(2)), filter(None, None), true);
        check(job(Some("a"), Some(2)), filter(Some("a"), None), true);
        check(job(Some("a"), Some(2)), filter(Some("b"), None), false);
        check(job(Some("a"), Some(2)), filter(Some("a"), Some(2)), true);
        check(job(Some("a"), Some(2)), filter(None, Some(1200)), false);
        check(job(Some("a"), None), filter(None, Some(2)), false);
        check(job(None, None), filter(None, None), true);
        check(job(None, None), filter(Some("a"), None), false);
    }
}
