//! Topology against the real broker: idempotent declaration, mismatches named precisely, retry
//! tiers dead-lettering back to the send queue, the dead-letter route, and the control stream
//! replaying its history.

mod common;

use std::time::Duration;

use common::{Fixture, eventually};
use futures_util::StreamExt;
use herald_amqp::{
    AmqpError, Consumer, Headers, Publisher, RetryTier, SEND_ROUTING_KEY, StreamOffset,
};
use lapin::{options::QueueDeclareOptions, types::FieldTable};

#[tokio::test]
async fn declaring_twice_is_a_no_op() {
    let Some(fixture) = Fixture::declared().await else {
        return;
    };
    fixture
        .run(|fx| async move {
            let (connection, topology) = (&fx.connection, &fx.topology);
            let publisher = Publisher::open(connection, 16).await.unwrap();
            let job = br#"{"v":1}"#;
            let confirm = publisher
                .publish(
                    &topology.jobs_exchange(),
                    SEND_ROUTING_KEY,
                    job,
                    Headers::new(),
                )
                .await
                .unwrap();
            confirm.await.unwrap();

            topology
                .declare(connection)
                .await
                .expect("second declaration");

            // The queue kept its message: nothing was recreated or purged.
            assert_eq!(
                connection
                    .message_count(&topology.send_queue())
                    .await
                    .unwrap(),
                1
            );
            let mut queues = vec![
                topology.send_queue(),
                topology.dead_queue(),
                topology.results_store_queue(),
                topology.events_ingest_queue(),
                topology.control_log_queue(),
            ];
            queues.extend(RetryTier::ALL.map(|tier| topology.retry_queue(tier)));
            for queue in queues {
                connection
                    .message_count(&queue)
                    .await
                    .unwrap_or_else(|e| panic!("{queue}: {e}"));
            }
            publisher.close().await.unwrap();
        })
        .await;
}

#[tokio::test]
async fn a_send_queue_of_an_older_herald_is_a_mismatch_saying_how_to_migrate() {
    let Some(fixture) = Fixture::new().await else {
        return;
    };
    fixture
        .run(|fx| async move {
            let send = fx.topology.send_queue();
            let channel = fx
                .connection
                .lapin()
                .expect("RabbitMQ")
                .create_channel()
                .await
                .unwrap();
            // What earlier versions declared: a quorum queue without a delivery limit.
            let mut older = FieldTable::default();
            older.insert(
                "x-queue-type".into(),
                lapin::types::AMQPValue::LongString("quorum".into()),
            );
            let durable = QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            };
            channel
                .queue_declare(send.as_str().into(), durable, older)
                .await
                .unwrap();

            let error = fx.topology.declare(&fx.connection).await.unwrap_err();

            let named = match &error {
                AmqpError::TopologyMismatch {
                    queue, argument, ..
                } => {
                    assert_eq!(queue, &send);
                    argument.clone().expect("the broker names the argument")
                }
                other => panic!("expected a mismatch, got {other:?}"),
            };
            assert!(
                ["x-dead-letter-exchange", "x-delivery-limit", "x-overflow"]
                    .contains(&named.as_str()),
                "{named}"
            );
            assert!(!error.is_retryable());
            let shown = error.to_string();
            for part in [
                send.as_str(),
                named.as_str(),
                "older Herald",
                "herald topology",
            ] {
                assert!(shown.contains(part), "{part:?} missing in: {shown}");
            }
        })
        .await;
}

#[tokio::test]
async fn a_message_in_the_5s_retry_tier_comes_back_to_the_send_queue() {
    let Some(fixture) = Fixture::declared().await else {
        return;
    };
    fixture
        .run(|fx| async move {
            let (connection, topology) = (&fx.connection, &fx.topology);
            let publisher = Publisher::open(connection, 16).await.unwrap();
            let tier = RetryTier::FiveSeconds;
            let body = br#"{"job_id":"run-1:user-1"}"#;
            let headers = Headers::new().with_attempt(2);
            let confirm = publisher
                .publish(&topology.retry_exchange(), tier.name(), body, headers)
                .await;
            confirm.unwrap().await.expect("the tier queue takes it");

            let send = topology.send_queue();
            eventually(
                Duration::from_secs(15),
                "the job back on the send queue",
                || async { (connection.message_count(&send).await.unwrap() == 1).then_some(()) },
            )
            .await;
            let retry_queue = topology.retry_queue(tier);
            assert_eq!(connection.message_count(&retry_queue).await.unwrap(), 0);

            let mut consumer = Consumer::start(connection, &send, 1).await.unwrap();
            let delivery = consumer.next().await.expect("a delivery").unwrap();
            assert_eq!(delivery.body(), body);
            assert_eq!(
                delivery.attempt(),
                Some(2),
                "the attempt header survives the detour"
            );
            assert_eq!(delivery.routing_key(), SEND_ROUTING_KEY);
            delivery.ack().await.unwrap();
            consumer.close().await.unwrap();
            publisher.close().await.unwrap();
        })
        .await;
}

#[tokio::test]
async fn the_dead_letter_exchange_keeps_the_bytes_and_the_reason() {
    let Some(fixture) = Fixture::declared().await else {
        return;
    };
    fixture
        .run(|fx| async move {
            let (connection, topology) = (&fx.connection, &fx.topology);
            let publisher = Publisher::open(connection, 16).await.unwrap();
            let poison = b"\xff not json at all";
            let headers = Headers::new()
                .with_reason("unparseable job")
                .with_attempt(1);
            let sent = publisher
                .publish(&topology.dead_exchange(), "send", poison, headers)
                .await;
            sent.unwrap().await.unwrap();

            let mut consumer = Consumer::start(connection, &topology.dead_queue(), 1)
                .await
                .unwrap();
            let delivery = consumer.next().await.expect("a delivery").unwrap();
            assert_eq!(delivery.body(), poison);
            assert_eq!(
                delivery.headers().reason().as_deref(),
                Some("unparseable job")
            );
            delivery.ack().await.unwrap();
            consumer.close().await.unwrap();
            publisher.close().await.unwrap();
        })
        .await;
}

#[tokio::test]
async fn a_message_that_keeps_coming_back_is_dead_lettered_with_the_brokers_reason() {
    let Some(fixture) = Fixture::declared().await else {
        return;
    };
    fixture
        .run(|fx| async move {
            let (connection, topology) = (&fx.connection, &fx.topology);
            let publisher = Publisher::open(connection, 16).await.unwrap();
            let body = br#"{"object":"page","entry":"kills its consumer"}"#;
            publisher
                .publish(&topology.events_exchange(), "webhook", body, Headers::new())
                .await
                .unwrap()
                .await
                .unwrap();
            // A consumer that dies on it every time (its channel goes away with the message
            // unacked): the broker hands it back, up to the limit.
            let queue = topology.events_ingest_queue();
            let mut deliveries: i64 = 0;
            loop {
                let mut consumer = Consumer::start(connection, &queue, 1).await.unwrap();
                let next = tokio::time::timeout(Duration::from_secs(3), consumer.next()).await;
                let _ = consumer.close().await;
                match next {
                    Ok(Some(delivery)) => drop(delivery.unwrap()),
                    _ => break,
                }
                deliveries += 1;
                assert!(
                    deliveries <= 2 * herald_amqp::DELIVERY_LIMIT,
                    "redelivered forever"
                );
            }
            assert!(
                deliveries >= herald_amqp::DELIVERY_LIMIT,
                "dead-lettered after {deliveries} deliveries"
            );
            let mut dead = Consumer::start(connection, &topology.dead_queue(), 1)
                .await
                .unwrap();
            let delivery = tokio::time::timeout(Duration::from_secs(10), dead.next())
                .await
                .expect("dead-lettered")
                .unwrap()
                .unwrap();
            assert_eq!(delivery.body(), body);
            let reason = delivery.headers().reason().unwrap_or_default();
            assert!(
                reason.contains("delivery_limit") && reason.contains(&queue),
                "{reason}"
            );
            delivery.ack().await.unwrap();
            let _ = dead.close().await;
        })
        .await;
}

#[tokio::test]
async fn a_late_worker_replays_the_control_log_from_the_first_entry() {
    let Some(fixture) = Fixture::declared().await else {
        return;
    };
    fixture
        .run(|fx| async move {
            let (connection, topology) = (&fx.connection, &fx.topology);
            let publisher = Publisher::open(connection, 16).await.unwrap();
            let commands = [
                r#"{"halt":"p1"}"#,
                r#"{"pause":"r1"}"#,
                r#"{"resume":"p1"}"#,
            ];
            for command in commands {
                let confirm = publisher
                    .publish(
                        &topology.control_exchange(),
                        "",
                        command.as_bytes(),
                        Headers::new(),
                    )
                    .await
                    .unwrap();
                confirm.await.unwrap();
            }

            let log = topology.control_log_queue();
            let mut late = Consumer::start_stream(connection, &log, 10, StreamOffset::First)
                .await
                .unwrap();
            for expected in commands {
                let delivery = late.next().await.expect("a control entry").unwrap();
                assert_eq!(delivery.body(), expected.as_bytes());
                delivery.ack().await.unwrap();
            }
            late.close().await.unwrap();
            publisher.close().await.unwrap();
        })
        .await;
}

#[tokio::test]
async fn an_existing_exchange_of_another_type_is_a_mismatch_naming_it() {
    let Some(fixture) = Fixture::new().await else {
        return;
    };
    fixture
        .run(|fx| async move {
            let jobs = fx.topology.jobs_exchange();
            let channel = fx
                .connection
                .lapin()
                .expect("RabbitMQ")
                .create_channel()
                .await
                .unwrap();
            let durable = lapin::options::ExchangeDeclareOptions {
                durable: true,
                ..lapin::options::ExchangeDeclareOptions::default()
            };
            let fanout = lapin::ExchangeKind::Fanout;
            let declared = channel.exchange_declare(
                jobs.as_str().into(),
                fanout,
                durable,
                FieldTable::default(),
            );
            declared.await.unwrap();

            let error = fx.topology.declare(&fx.connection).await.unwrap_err();

            match &error {
                AmqpError::ExchangeMismatch {
                    exchange, argument, ..
                } => {
                    assert_eq!((exchange, argument.as_deref()), (&jobs, Some("type")));
                }
                other => panic!("expected an exchange mismatch, got {other:?}"),
            }
        })
        .await;
}
