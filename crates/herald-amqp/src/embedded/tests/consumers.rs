//! Consumers of the embedded broker: prefetch, settling, counts, wake-ups, flow control, and
//! what a closed consumer or connection gives back to its queue.

use std::time::Duration;

use futures_util::StreamExt;

use super::{next, nothing, publish, rig};
use crate::{
    AmqpError, Consumer, EmbeddedBroker, EmbeddedSettings, Headers, Publisher, SEND_ROUTING_KEY,
    Topology,
};

#[tokio::test]
async fn prefetch_bounds_unacked_deliveries() {
    let (_broker, topology, connection, publisher) = rig().await;
    for i in 0..3 {
        let body = format!("job-{i}");
        publish(
            &publisher,
            &topology.jobs_exchange(),
            SEND_ROUTING_KEY,
            &body,
            Headers::new(),
        )
        .await;
    }
    let mut consumer = Consumer::start(&connection, &topology.send_queue(), 2)
        .await
        .unwrap();
    let first = next(&mut consumer).await;
    let second = next(&mut consumer).await;
    nothing(&mut consumer).await;
    first.ack().await.unwrap();
    let third = next(&mut consumer).await;
    assert_eq!(third.body(), b"job-2");
    second.ack().await.unwrap();
    third.ack().await.unwrap();
}

#[tokio::test]
async fn nack_with_requeue_redelivers_and_reject_dead_letters_to_the_dead_queue() {
    let (_broker, topology, connection, publisher) = rig().await;
    let send = topology.send_queue();
    publish(
        &publisher,
        &topology.jobs_exchange(),
        SEND_ROUTING_KEY,
        "a",
        Headers::new(),
    )
    .await;
    publish(
        &publisher,
        &topology.jobs_exchange(),
        SEND_ROUTING_KEY,
        "b",
        Headers::new(),
    )
    .await;
    let mut consumer = Consumer::start(&connection, &send, 1).await.unwrap();
    let a = next(&mut consumer).await;
    a.nack(true).await.unwrap();
    let again = next(&mut consumer).await;
    assert_eq!(again.body(), b"a", "requeued at the front");
    assert!(again.redelivered());
    again.reject(false).await.unwrap();
    let b = next(&mut consumer).await;
    assert_eq!(b.body(), b"b");
    b.nack(false).await.unwrap();
    nothing(&mut consumer).await;
    assert_eq!(connection.message_count(&send).await.unwrap(), 0);
    // The send queue dead-letters to `<p>.dead` (as it does on RabbitMQ), so what was rejected
    // or nacked without requeue is kept there.
    assert_eq!(
        connection
            .message_count(&topology.dead_queue())
            .await
            .unwrap(),
        2
    );
}

#[tokio::test]
async fn consumer_counts_follow_stop_and_close_and_unacked_messages_come_back() {
    let (_broker, topology, connection, publisher) = rig().await;
    let send = topology.send_queue();
    let mut one = Consumer::start(&connection, &send, 8).await.unwrap();
    let two = Consumer::start(&connection, &send, 8).await.unwrap();
    assert_eq!(connection.consumer_count(&send).await.unwrap(), 2);
    publish(
        &publisher,
        &topology.jobs_exchange(),
        SEND_ROUTING_KEY,
        "job",
        Headers::new(),
    )
    .await;
    let taken = next(&mut one).await;
    one.stop().await.unwrap();
    assert_eq!(connection.consumer_count(&send).await.unwrap(), 1);
    assert!(
        one.next().await.is_none(),
        "a stopped consumer's stream ends"
    );
    two.close().await.unwrap();
    assert_eq!(connection.consumer_count(&send).await.unwrap(), 0);
    assert_eq!(
        connection.message_count(&send).await.unwrap(),
        0,
        "still unacked"
    );
    drop(one);
    assert_eq!(
        connection.message_count(&send).await.unwrap(),
        1,
        "requeued on close"
    );
    let error = taken.ack().await.unwrap_err();
    assert!(matches!(error, AmqpError::AckUnusable), "{error:?}");
    let mut three = Consumer::start(&connection, &send, 8).await.unwrap();
    let again = next(&mut three).await;
    assert!(again.redelivered());
    assert_eq!(again.body(), b"job");
}

#[tokio::test]
async fn a_consumer_waiting_in_another_task_is_woken_by_a_publish() {
    let (_broker, topology, connection, publisher) = rig().await;
    let mut consumer = Consumer::start(&connection, &topology.send_queue(), 8)
        .await
        .unwrap();
    let waiter = tokio::spawn(async move { next(&mut consumer).await.body().to_vec() });
    tokio::time::sleep(Duration::from_millis(20)).await;
    publish(
        &publisher,
        &topology.jobs_exchange(),
        SEND_ROUTING_KEY,
        "late",
        Headers::new(),
    )
    .await;
    assert_eq!(waiter.await.unwrap(), b"late");
}

#[tokio::test]
async fn closing_a_connection_requeues_its_deliveries_and_closes_its_publishers() {
    let (broker, topology, connection, publisher) = rig().await;
    let send = topology.send_queue();
    publish(
        &publisher,
        &topology.jobs_exchange(),
        SEND_ROUTING_KEY,
        "job",
        Headers::new(),
    )
    .await;
    let mut consumer = Consumer::start(&connection, &send, 8).await.unwrap();
    let taken = next(&mut consumer).await;
    connection.close().await.unwrap();
    assert!(!connection.is_connected() && !publisher.is_usable());
    let error = taken.ack().await.unwrap_err();
    assert!(matches!(error, AmqpError::AckUnusable), "{error:?}");
    let error = Publisher::open(&connection, 1).await.unwrap_err();
    assert!(
        error.is_connection_lost() && error.is_retryable(),
        "{error:?}"
    );
    let fresh = broker.connect();
    assert_eq!(fresh.message_count(&send).await.unwrap(), 1, "requeued");
    assert_eq!(fresh.consumer_count(&send).await.unwrap(), 0);
}

#[tokio::test]
async fn a_full_queue_makes_publishers_wait_until_a_consumer_takes_a_message() {
    let broker = EmbeddedBroker::with_settings(EmbeddedSettings {
        max_queue_messages: 2,
        ..EmbeddedSettings::default()
    });
    let connection = broker.connect();
    let topology = Topology::new("p").unwrap();
    topology.declare(&connection).await.unwrap();
    let publisher = Publisher::open(&connection, 16).await.unwrap();
    let jobs = topology.jobs_exchange();
    publish(&publisher, &jobs, SEND_ROUTING_KEY, "1", Headers::new()).await;
    publish(&publisher, &jobs, SEND_ROUTING_KEY, "2", Headers::new()).await;
    let third = publisher.publish(&jobs, SEND_ROUTING_KEY, b"3", Headers::new());
    tokio::pin!(third);
    let waited = tokio::time::timeout(Duration::from_millis(100), third.as_mut()).await;
    assert!(waited.is_err(), "a publish into a full queue waits");
    // Other queues are not affected: results still flow.
    publish(
        &publisher,
        &topology.results_exchange(),
        "sent.c",
        "r",
        Headers::new(),
    )
    .await;
    let mut consumer = Consumer::start(&connection, &topology.send_queue(), 1)
        .await
        .unwrap();
    assert_eq!(next(&mut consumer).await.body(), b"1");
    let confirm = tokio::time::timeout(Duration::from_secs(2), third)
        .await
        .expect("room was made")
        .unwrap();
    confirm.await.unwrap();
    assert_eq!(
        connection
            .message_count(&topology.send_queue())
            .await
            .unwrap(),
        2
    );
}
