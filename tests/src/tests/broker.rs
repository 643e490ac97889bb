//! The test broker itself: reachable (or, under CI, a loud failure) and speaking AMQP 0-9-1.

use crate::broker;

#[tokio::test]
async fn broker_answers_and_opens_a_channel() {
    let Some(connection) = broker().await else {
        return;
    };
    let channel = connection.create_channel().await.expect("channel");
    assert!(channel.status().connected());
    connection.close(200, "done".into()).await.expect("close");
}
