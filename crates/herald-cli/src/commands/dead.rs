//! `herald dead list|replay`: inspect and requeue what sits in `herald.dead`. Both read the queue
//! with manual acks and hold every message until the end, then close the channel, which puts back
//! whatever was not replayed: listing never loses a message. Replay republishes the exact bytes to
//! `herald.jobs` with the attempt count reset, waits for the confirm, and only then acks the dead
//! copy. Poison (bytes that are not a job) is listed but never replayed.

use std::process::ExitCode;
use std::time::Duration;

use futures_util::StreamExt;
use herald_amqp::{
    AMQPValue, Connection, Consumer, Delivery, Headers, Publisher, SEND_ROUTING_KEY, Topology,
};
use herald_core::SendJob;
use herald_worker::CODE_HEADER;

use crate::commands::{amqp_settings, campaign::out, topology_for};
use crate::config::Config;

/// Stop reading when nothing arrived for this long (the queue's count was a snapshot).
const IDLE: Duration = Duration::from_secs(2);

/// Which dead messages a command applies to.
pub(crate) struct Filter {
    pub(crate) run: Option<String>,
    pub(crate) code: Option<u32>,
}

/// One dead message, as read.
struct Dead {
    job: Option<SendJob>,
    attempts: Option<u32>,
    code: Option<u32>,
    reason: String,
}

pub(crate) async fn list(filter: Filter, config: &Config) -> ExitCode {
    with_queue(config, |connection, topology| async move {
        let (consumer, deliveries) = read_all(&connection, &topology).await?;
        let mut shown = 0;
        for delivery in &deliveries {
            let dead = describe(delivery);
            if !matches(&dead, &filter) {
                continue;
            }
            shown += 1;
            let job_id = dead
                .job
                .as_ref()
                .map_or("(poison)", |job| job.job_id.as_str());
            let show = |n: Option<u32>| n.map_or_else(|| "-".to_owned(), |n| n.to_string());
            out(&format!(
                "{job_id}\tattempts={}\tcode={}\t{}",
                show(dead.attempts),
                show(dead.code),
                dead.reason
            ));
        }
        // Closing the channel returns every unacked message to the queue.
        let _ = consumer.close().await;
        eprintln!("{shown} of {} dead message(s) listed", deliveries.len());
        Ok(())
    })
    .await
}

pub(crate) async fn replay(filter: Filter, config: &Config) -> ExitCode {
    with_queue(config, |connection, topology| async move {
        let publisher = Publisher::open(&connection, 256).await?;
        let (consumer, deliveries) = read_all(&connection, &topology).await?;
        let (mut replayed, mut kept) = (0, 0);
        for delivery in &deliveries {
            let dead = describe(delivery);
            let Some(job) = dead.job.as_ref().filter(|_| matches(&dead, &filter)) else {
                kept += 1;
                continue;
            };
            // No attempt header: the job starts over at attempt 1.
            publisher
                .publish(
                    &topology.jobs_exchange(),
                    SEND_ROUTING_KEY,
                    delivery.body(),
                    Headers::new(),
                )
                .await?
                .await?;
            delivery.ack().await?;
            replayed += 1;
            out(&format!("replayed {}", job.job_id));
        }
        let _ = consumer.close().await;
        publisher.close().await?;
        out(&format!("replayed: {replayed}"));
        out(&format!("kept: {kept}"));
        Ok(())
    })
    .await
}

/// Connects, runs `body`, reports its error; exit 69 when the broker is the problem.
async fn with_queue<F, Fut>(config: &Config, body: F) -> ExitCode
where
    F: FnOnce(Connection, Topology) -> Fut,
    Fut: std::future::Future<Output = Result<(), herald_amqp::AmqpError>>,
{
    let Ok(topology) = topology_for(config) else {
        return ExitCode::from(64);
    };
    let connection = match herald_amqp::connect(&amqp_settings(config)).await {
        Ok(connection) => connection,
        Err(error) => {
            eprintln!("herald dead: {error}");
            return ExitCode::from(69);
        }
    };
    match body(connection, topology).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("herald dead: {error}; messages not yet replayed stay in the dead queue");
            ExitCode::from(69)
        }
    }
}

/// Every message in the dead queue, held unacked. A prefetch caps how many one call can see.
async fn read_all(
    connection: &Connection,
    topology: &Topology,
) -> Result<(Consumer, Vec<Delivery>), herald_amqp::AmqpError> {
    let queue = topology.dead_queue();
    let count = connection.message_count(&queue).await?;
    let prefetch = u16::try_from(count).unwrap_or(u16::MAX).max(1);
    if count > u32::from(prefetch) {
        eprintln!("herald dead: {count} messages; this call handles the first {prefetch}");
    }
    let mut consumer = Consumer::start(connection, &queue, prefetch).await?;
    let mut deliveries = Vec::new();
    while deliveries.len() < usize::from(prefetch) && count > 0 {
        match tokio::time::timeout(IDLE, consumer.next()).await {
            Ok(Some(delivery)) => deliveries.push(delivery?),
            Ok(None) | Err(_) => break,
        }
    }
    Ok((consumer, deliveries))
}

fn describe(delivery: &Delivery) -> Dead {
    let headers = delivery.headers();
    let code = match headers.as_table().inner().get(CODE_HEADER) {
        Some(AMQPValue::LongLongInt(code)) => u32::try_from(*code).ok(),
        Some(AMQPValue::LongInt(code)) => u32::try_from(*code).ok(),
        _ => None,
    };
    Dead {
        job: serde_json::from_slice(delivery.body()).ok(),
        attempts: headers.attempt(),
        code,
        reason: headers
            .reason()
            .unwrap_or_else(|| "(no reason given)".to_owned()),
    }
}

fn matches(dead: &Dead, filter: &Filter) -> bool {
    let run_ok = filter
        .run
        .as_deref()
        .is_none_or(|run| dead.job.as_ref().is_some_and(|job| job.run_id == run));
    let code_ok = filter.code.is_none_or(|code| dead.code == Some(code));
    run_ok && code_ok
}
