//! Routing by exchange kind, mandatory returns, retry tiers, dead letters, results and the
//! control stream on the embedded broker.

use std::time::Duration;

use futures_util::StreamExt;
use lapin::types::{AMQPValue, FieldTable};

use super::{next, nothing, publish, rig};
use crate::{
    AmqpError, Consumer, EmbeddedBroker, Headers, Publisher, RetryTier, SEND_ROUTING_KEY,
    StreamOffset, Topology,
};

#[tokio::test]
async fn declaring_is_idempotent_and_a_different_declaration_is_refused() {
    let (broker, topology, connection, _) = rig().await;
    topology.declare(&connection).await.unwrap();
    assert!(connection.is_embedded() && connection.is_connected());
    assert_eq!(connection.address().host, "embedded");
    // Another broker process would keep its queues; here a second declaration with other
    // arguments (a classic send queue) must be refused like RabbitMQ's 406.
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("classic".into()),
    );
    let error = broker
        .core
        .with(|state| state.declare_queue("p.send", &arguments, 1))
        .unwrap_err();
    assert!(
        matches!(&error, AmqpError::TopologyMismatch { argument: Some(arg), .. }
            if arg.starts_with("x-")),
        "{error:?}"
    );
    let error = connection.message_count("nope").await.unwrap_err();
    assert!(matches!(error, AmqpError::QueueMissing { .. }), "{error:?}");
    topology.delete(&connection).await.unwrap();
    let error = connection.consumer_count("p.send").await.unwrap_err();
    assert!(matches!(error, AmqpError::QueueMissing { .. }), "{error:?}");
}

#[tokio::test]
async fn jobs_reach_the_send_queue_with_their_headers() {
    let (_broker, topology, connection, publisher) = rig().await;
    let headers = Headers::new().with_attempt(2);
    publish(
        &publisher,
        &topology.jobs_exchange(),
        SEND_ROUTING_KEY,
        "job-1",
        headers,
    )
    .await;
    assert_eq!(
        connection
            .message_count(&topology.send_queue())
            .await
            .unwrap(),
        1
    );
    let mut consumer = Consumer::start(&connection, &topology.send_queue(), 8)
        .await
        .unwrap();
    let delivery = next(&mut consumer).await;
    assert_eq!(delivery.body(), b"job-1");
    assert_eq!(delivery.attempt(), Some(2));
    assert_eq!(delivery.exchange(), "p.jobs");
    assert_eq!(delivery.routing_key(), "send");
    assert!(!delivery.redelivered());
    delivery.ack().await.unwrap();
    let again = delivery.ack().await.unwrap_err();
    assert!(matches!(again, AmqpError::AckUnusable), "{again:?}");
    assert_eq!(
        connection
            .message_count(&topology.send_queue())
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn unroutable_mandatory_publishes_come_back_and_missing_exchanges_close_the_publisher() {
    let (_broker, topology, _connection, publisher) = rig().await;
    let confirm = publisher
        .publish(
            &topology.jobs_exchange(),
            "no-such-key",
            b"x",
            Headers::new(),
        )
        .await
        .unwrap();
    let error = confirm.await.unwrap_err();
    assert!(
        matches!(&error, AmqpError::Returned { reply_code: 312, routing_key, .. } if routing_key == "no-such-key"),
        "{error:?}"
    );
    assert!(!error.is_retryable());

    // Dropped unread, the failure is reported by the next flush, as with RabbitMQ.
    drop(
        publisher
            .publish(&topology.jobs_exchange(), "nope", b"x", Headers::new())
            .await,
    );
    let flushed = publisher.flush().await.unwrap_err();
    assert!(
        matches!(flushed, AmqpError::Unobserved { count: 1, .. }),
        "{flushed:?}"
    );
    publisher.flush().await.unwrap();

    let confirm = publisher
        .publish("p.missing", "k", b"x", Headers::new())
        .await
        .unwrap();
    let error = confirm.await.unwrap_err();
    assert!(matches!(error, AmqpError::Amqp { .. }), "{error:?}");
    assert!(
        !error.is_retryable() && !error.is_connection_lost(),
        "{error:?}"
    );
    assert!(!publisher.is_usable(), "a 404 closes the channel");
    let error = publisher
        .publish(
            &topology.jobs_exchange(),
            SEND_ROUTING_KEY,
            b"x",
            Headers::new(),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, AmqpError::PublisherClosed), "{error:?}");
}

#[tokio::test]
async fn retry_tiers_wait_their_ttl_then_dead_letter_back_to_the_send_queue() {
    let (_broker, topology, connection, publisher) = rig().await;
    let mut consumer = Consumer::start(&connection, &topology.send_queue(), 8)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let headers = Headers::new().with_attempt(1);
    publish(
        &publisher,
        &topology.retry_exchange(),
        RetryTier::FiveSeconds.name(),
        "job",
        headers,
    )
    .await;
    let tier = topology.retry_queue(RetryTier::FiveSeconds);
    assert_eq!(connection.message_count(&tier).await.unwrap(), 1);
    let back = next(&mut consumer).await;
    // 5 s / ttl_divisor 100 = 50 ms at least.
    assert!(
        started.elapsed() >= Duration::from_millis(50),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(back.body(), b"job");
    assert_eq!(back.exchange(), "p.jobs");
    assert_eq!(back.routing_key(), "send");
    let headers = back.headers();
    assert_eq!(headers.attempt(), Some(1), "headers survive dead-lettering");
    assert_eq!(
        headers.string("x-first-death-queue").as_deref(),
        Some("p.retry.5s")
    );
    assert_eq!(
        headers.string("x-first-death-reason").as_deref(),
        Some("expired")
    );
    assert_eq!(connection.message_count(&tier).await.unwrap(), 0);
    back.ack().await.unwrap();

    // The 30 s tier waits six times longer than the 5 s one.
    let started = std::time::Instant::now();
    publish(
        &publisher,
        &topology.retry_exchange(),
        "30s",
        "later",
        Headers::new(),
    )
    .await;
    let back = next(&mut consumer).await;
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(back.body(), b"later");
}

#[tokio::test]
async fn real_ttls_hold_a_retry_for_its_whole_tier() {
    let broker = EmbeddedBroker::new();
    let connection = broker.connect();
    let topology = Topology::new("p").unwrap();
    topology.declare(&connection).await.unwrap();
    let publisher = Publisher::open(&connection, 16).await.unwrap();
    let mut consumer = Consumer::start(&connection, &topology.send_queue(), 8)
        .await
        .unwrap();
    publish(
        &publisher,
        &topology.retry_exchange(),
        "5s",
        "job",
        Headers::new(),
    )
    .await;
    let waited = tokio::time::timeout(Duration::from_secs(1), consumer.next()).await;
    assert!(
        waited.is_err(),
        "the 5 s tier released a job within a second"
    );
    let tier = topology.retry_queue(RetryTier::FiveSeconds);
    assert_eq!(connection.message_count(&tier).await.unwrap(), 1);
}

#[tokio::test]
async fn dead_letters_keep_their_reason_and_results_reach_every_bound_queue() {
    let (broker, topology, connection, publisher) = rig().await;
    let headers = Headers::new()
        .with_reason("unparseable job")
        .with_attempt(0);
    publish(&publisher, &topology.dead_exchange(), "", "poison", headers).await;
    let mut dead = Consumer::start(&connection, &topology.dead_queue(), 8)
        .await
        .unwrap();
    let delivery = next(&mut dead).await;
    assert_eq!(delivery.body(), b"poison");
    assert_eq!(
        delivery.headers().reason().as_deref(),
        Some("unparseable job")
    );

    // Another team's queue bound to sent results only, next to `<p>.results.store` (`#`).
    broker
        .core
        .with(|state| {
            state.declare_queue("team.sent", &FieldTable::default(), 1)?;
            state.bind("team.sent", "p.results", "sent.*")
        })
        .unwrap();
    let results = topology.results_exchange();
    publish(&publisher, &results, "sent.welcome", "r1", Headers::new()).await;
    publish(
        &publisher,
        &results,
        "skipped.welcome",
        "r2",
        Headers::new(),
    )
    .await;
    let store = topology.results_store_queue();
    assert_eq!(connection.message_count(&store).await.unwrap(), 2);
    assert_eq!(connection.message_count("team.sent").await.unwrap(), 1);
    let mut team = Consumer::start(&connection, "team.sent", 8).await.unwrap();
    assert_eq!(next(&mut team).await.routing_key(), "sent.welcome");
}

#[tokio::test]
async fn the_control_stream_replays_from_first_and_keeps_its_messages() {
    let (_broker, topology, connection, publisher) = rig().await;
    let (exchange, log) = (topology.control_exchange(), topology.control_log_queue());
    publish(&publisher, &exchange, "", "pause", Headers::new()).await;
    publish(&publisher, &exchange, "", "resume", Headers::new()).await;
    let mut late = Consumer::start_stream(&connection, &log, 10, StreamOffset::First)
        .await
        .unwrap();
    let mut live = Consumer::start_stream(&connection, &log, 10, StreamOffset::Next)
        .await
        .unwrap();
    for expected in ["pause", "resume"] {
        let delivery = next(&mut late).await;
        assert_eq!(delivery.body(), expected.as_bytes());
        delivery.ack().await.unwrap();
    }
    nothing(&mut live).await;
    publish(&publisher, &exchange, "", "cancel", Headers::new()).await;
    assert_eq!(next(&mut late).await.body(), b"cancel");
    assert_eq!(next(&mut live).await.body(), b"cancel");
    // Reading does not consume: a third consumer from `first` sees all three.
    let mut third = Consumer::start_stream(&connection, &log, 10, StreamOffset::First)
        .await
        .unwrap();
    for expected in ["pause", "resume", "cancel"] {
        assert_eq!(next(&mut third).await.body(), expected.as_bytes());
    }
    assert_eq!(connection.message_count(&log).await.unwrap(), 3);
}
