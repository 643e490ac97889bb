//! The only user of lapin: connection (`connect`), topology (`Topology`, `RetryTier`), confirmed
//! publishing (`Publisher`) and manual-ack consuming (`Consumer`). Nothing here knows what a job
//! or a result is; the producer and the worker give meaning to the bytes. Callers never need to
//! import lapin: headers are `Headers`, errors are `AmqpError`.
//!
//! Every type works over RabbitMQ or over the in-process `EmbeddedBroker`, so that `herald run`
//! and `herald demo` need nothing installed: `AmqpSettings::embedded(&broker)` picks the broker,
//! and the producer and the worker run unchanged on either. The port types at this root
//! (`Connection`, `Publisher`, `Consumer`, `Delivery`, `Topology::declare`) dispatch over two
//! adapter folders that mirror each other, `rabbit/` (lapin) and `embedded/`, rather than being
//! generic over a trait, so no caller grows a type parameter.

mod connection;
mod consumer;
mod declare;
mod embedded;
mod error;
mod headers;
mod publisher;
mod rabbit;
mod settings;
mod tier;
mod topology;

pub use connection::{Connection, connect};
pub use consumer::{Consumer, Delivery, StreamOffset};
pub use embedded::{EmbeddedBroker, EmbeddedSettings};
pub use error::AmqpError;
pub use headers::{
    ATTEMPT_HEADER, CODE_HEADER, DEFERRALS_HEADER, Headers, PRIORITY_HEADER, REASON_HEADER,
    RECEIVED_AT_HEADER, VERIFY_SINCE_HEADER, WEBHOOK_SIGNATURE_HEADER,
};
pub use publisher::{CONTENT_TYPE_JSON, PendingConfirm, Publisher};
pub use settings::{AmqpSettings, BrokerAddress, DEFAULT_AMQP_URL};
pub use tier::RetryTier;
pub use topology::{DELIVERY_LIMIT, PRIORITY_ROUTING_KEY, SEND_ROUTING_KEY, Topology};
