//! The RabbitMQ adapter: the lapin side of each port type, file for file beside `embedded/`
//! (`connection.rs`, `publisher.rs`, `consumer.rs`, `declare.rs`), plus what only a real broker
//! needs: matching publisher confirms and returns to messages (`confirms.rs`) and coalescing
//! acks into `multiple` frames (`acks.rs`). Callers never see this module; `Connection`,
//! `Publisher`, `Consumer`, `Delivery` and `Topology::declare` dispatch to it.

mod acks;
mod confirms;
mod connection;
mod consumer;
mod declare;
mod publisher;

pub(crate) use connection::RabbitConnection;
pub(crate) use consumer::{RabbitConsumer, RabbitDelivery};
pub(crate) use declare::Declared;
pub(crate) use publisher::RabbitPublisher;
