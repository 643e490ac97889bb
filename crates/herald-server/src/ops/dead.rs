//! List and replay what sits in `herald.dead`. Both read the queue with manual acks and hold
//! every message until the end, then close the channel, which puts back whatever was not
//! replayed: listing never loses a message. Replay republishes the exact bytes to `herald.jobs`
//! with the attempt count reset, waits for the confirm, and only then acks the dead copy.
//! Poison (bytes that are not a job) is listed but never replayed.

use std::time::Duration;

use futures_util::StreamExt;
use herald_amqp::{
    AMQPValue, AmqpError, Connection, Consumer, Delivery, Headers, Publisher, SEND_ROUTING_KEY,
};
use herald_core::SendJob;
use herald_worker::CODE_HEADER;
use serde::{Deserialize, Serialize};

use crate::ops::{Broker, OpsError};

/// Stop reading when nothing arrived for this long (the queue's count was a snapshot).
const IDLE: Duration = Duration::from_secs(2);

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

/// The result of `list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadList {
    /// Messages read from the queue (all of them, unless `truncated`).
    pub total: usize,
    /// The ones matching the filter, in queue order.
    pub messages: Vec<DeadMessage>,
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

/// Every dead message matching `filter`, leaving all of them in the queue.
pub async fn list(broker: &Broker, filter: &Filter) -> Result<DeadList, OpsError> {
    let connection = broker.connect().await?;
    let listed = list_on(&connection, broker, filter).await;
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
) -> Result<DeadList, AmqpError> {
    let read = read_all(connection, broker).await?;
    let messages = read
        .deliveries
        .iter()
        .map(describe)
        .filter(|dead| matches(dead, filter))
        .collect();
    // Closing the channel returns every unacked message to the queue.
    let _ = read.consumer.close().await;
    Ok(DeadList {
        total: read.deliveries.len(),
        messages,
        truncated: read.truncated,
    })
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

/// Reads the dead queue; a prefetch (at most 65,535) caps how many one call can see.
async fn read_all(connection: &Connection, broker: &Broker) -> Result<Read, AmqpError> {
    let queue = broker.topology.dead_queue();
    let count = connection.message_count(&queue).await?;
    let prefetch = u16::try_from(count).unwrap_or(u16::MAX).max(1);
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
    let code = match headers.as_table().inner().get(CODE_HEADER) {
        Some(AMQPValue::LongLongInt(code)) => u32::try_from(*code).ok(),
        Some(AMQPValue::LongInt(code)) => u32::try_from(*code).ok(),
        _ => None,
    };
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
