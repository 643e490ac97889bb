//! The embedded broker's semantics, checked through the same public types the producer and the
//! worker use (`connect`, `Topology::declare`, `Publisher`, `Consumer`, `Delivery`). `routing`:
//! exchange kinds, mandatory returns, retry-tier TTLs dead-lettering back to the send queue, the
//! dead queue, results fan-out and the control stream. `consumers`: prefetch, ack / nack /
//! requeue, consumer counts, wake-ups, flow control, and what closing gives back.

mod consumers;
mod routing;

use std::time::Duration;

use futures_util::StreamExt;

use crate::{
    AmqpSettings, Connection, Consumer, Delivery, EmbeddedBroker, EmbeddedSettings, Headers,
    Publisher, Topology, connect,
};

/// A broker whose 5 s tier waits 50 ms, a declared topology `p`, a connection and a publisher.
pub(super) async fn rig() -> (EmbeddedBroker, Topology, Connection, Publisher) {
    let broker = EmbeddedBroker::with_settings(EmbeddedSettings {
        ttl_divisor: 100,
        ..EmbeddedSettings::default()
    });
    let connection = connect(&AmqpSettings::embedded(&broker)).await.unwrap();
    let topology = Topology::new("p").unwrap();
    topology.declare(&connection).await.unwrap();
    let publisher = Publisher::open(&connection, 16).await.unwrap();
    (broker, topology, connection, publisher)
}

pub(super) async fn publish(
    publisher: &Publisher,
    exchange: &str,
    key: &str,
    body: &str,
    headers: Headers,
) {
    publisher
        .publish(exchange, key, body.as_bytes(), headers)
        .await
        .unwrap()
        .await
        .unwrap();
}

/// The next delivery, failing the test after two seconds.
pub(super) async fn next(consumer: &mut Consumer) -> Delivery {
    tokio::time::timeout(Duration::from_secs(2), consumer.next())
        .await
        .expect("a delivery within 2 s")
        .expect("consumer still open")
        .expect("delivery")
}

/// Nothing arrives within 100 ms.
pub(super) async fn nothing(consumer: &mut Consumer) {
    let waited = tokio::time::timeout(Duration::from_millis(100), consumer.next()).await;
    assert!(waited.is_err(), "unexpected delivery: {waited:?}");
}
