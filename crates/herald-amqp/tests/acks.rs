//! Coalesced acks against the real broker: acks settled out of order around deliveries still
//! being worked on, and a nack in the middle, never settle more (or less) than was asked.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Fixture, eventually};
use futures_util::StreamExt;
use futures_util::future::join_all;
use herald_amqp::{AmqpError, Consumer, Headers, Publisher, SEND_ROUTING_KEY};

const MESSAGES: usize = 300;
/// Never settled: the broker must still hold them when the consumer closes.
const HELD: [usize; 3] = [0, 117, 250];
/// Nacked with requeue while everything around it is acked.
const NACKED: usize = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_in_any_order_settle_exactly_the_acked_deliveries() {
    let Some(fixture) = Fixture::declared().await else {
        return;
    };
    fixture
        .run(|fx| async move {
            let (connection, topology) = (&fx.connection, &fx.topology);
            let publisher = Publisher::open(connection, 512).await.unwrap();
            for n in 0..MESSAGES {
                let body = n.to_string();
                publisher
                    .publish(
                        &topology.jobs_exchange(),
                        SEND_ROUTING_KEY,
                        body.as_bytes(),
                        Headers::new(),
                    )
                    .await
                    .unwrap();
            }
            publisher.flush().await.unwrap();
            let send = topology.send_queue();
            let mut consumer = Consumer::start(connection, &send, MESSAGES as u16)
                .await
                .unwrap();
            let mut deliveries = Vec::with_capacity(MESSAGES);
            for _ in 0..MESSAGES {
                deliveries.push(consumer.next().await.unwrap().unwrap());
            }
            let index = |d: &herald_amqp::Delivery| -> usize {
                std::str::from_utf8(d.body()).unwrap().parse().unwrap()
            };
            // Settle from the back, in bursts, each delivery after a pseudo-random pause, so
            // runs behind held deliveries form and break in every way.
            let (held, rest): (Vec<_>, Vec<_>) = deliveries
                .into_iter()
                .partition(|d| HELD.contains(&index(d)));
            let settled = rest
                .iter()
                .rev()
                .enumerate()
                .map(|(i, delivery)| async move {
                    tokio::time::sleep(Duration::from_millis((i as u64 * 37) % 29)).await;
                    if index(delivery) == NACKED {
                        delivery.nack(true).await
                    } else {
                        delivery.ack().await
                    }
                });
            for outcome in join_all(settled).await {
                outcome.unwrap();
            }
            assert!(
                matches!(rest[5].ack().await, Err(AmqpError::AckUnusable)),
                "a settled delivery acked again"
            );
            // The nacked one comes back to this consumer; ack it this time.
            let again = consumer.next().await.unwrap().unwrap();
            assert_eq!(index(&again), NACKED);
            assert!(again.redelivered());
            again.ack().await.unwrap();
            drop(held);
            consumer.close().await.unwrap();

            // Closing returned exactly the held deliveries to the queue.
            eventually(
                Duration::from_secs(10),
                "the held messages back",
                || async {
                    (connection.message_count(&send).await.unwrap() == HELD.len() as u32)
                        .then_some(())
                },
            )
            .await;
            let mut consumer = Consumer::start(connection, &send, 16).await.unwrap();
            let mut back = BTreeSet::new();
            for _ in 0..HELD.len() {
                let delivery = consumer.next().await.unwrap().unwrap();
                back.insert(index(&delivery));
                delivery.ack().await.unwrap();
            }
            assert_eq!(back, HELD.into_iter().collect());
            consumer.close().await.unwrap();
            publisher.close().await.unwrap();
        })
        .await;
}
