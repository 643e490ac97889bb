//! The test broker itself: reachable (or, under CI, a loud failure) and speaking AMQP 0-9-1.

use herald_amqp::Publisher;

use crate::broker;

#[tokio::test]
async fn broker_answers_and_opens_a_channel() {
    let Some(connection) = broker().await else {
        return;
    };
    assert!(connection.is_connected() && !connection.is_embedded());
    // A publisher opens a channel of its own and puts it in confirm mode.
    let publisher = Publisher::open(&connection, 1).await.expect("channel");
    assert!(publisher.is_usable());
    publisher.close().await.expect("close the channel");
    connection.close().await.expect("close");
}
