//! The only user of lapin: connection (`connect`), topology (`Topology`, `RetryTier`), confirmed
//! publishing (`Publisher`) and manual-ack consuming (`Consumer`). Nothing here knows what a job
//! or a result is; the producer and the worker give meaning to the bytes. Callers never need to
//! import lapin: headers are `Headers`, errors are `AmqpError`.
//!
//! Every type works over RabbitMQ or over the in-process `EmbeddedBroker` (DESIGN "one machine,
//! zero setup"): `AmqpSettings::embedded(&broker)` picks the broker, and the producer and the
//! worker run unchanged on either. The types dispatch over the two adapters rather than being
//! generic over a trait, so no caller grows a type parameter.

mod ack;
mod confirm;
mod connect;
mod consume;
mod declare;
mod embedded;
mod error;
mod headers;
mod publish;
mod settings;
mod tier;
mod topology;

pub use connect::{Connection, connect};
pub use consume::{Consumer, Delivery, StreamOffset};
pub use embedded::{EmbeddedBroker, EmbeddedSettings};
pub use error::AmqpError;
pub use headers::{ATTEMPT_HEADER, Headers, REASON_HEADER};
pub use lapin::types::AMQPValue;
pub use publish::{CONTENT_TYPE_JSON, PendingConfirm, Publisher};
pub use settings::{AmqpSettings, BrokerAddress, DEFAULT_AMQP_URL};
pub use tier::RetryTier;
pub use topology::{DELIVERY_LIMIT, SEND_ROUTING_KEY, Topology};
