//! Declaring and deleting a `Topology` on the broker. Declaration is idempotent; an existing queue
//! or exchange declared with other arguments becomes `TopologyMismatch`/`ExchangeMismatch`, never
//! a silent change: RabbitMQ cannot alter a queue's arguments in place (the embedded broker
//! refuses the same way). The names and arguments themselves are `topology.rs`.

use lapin::{
    options::{
        ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
        QueueDeleteOptions,
    },
    protocol::AMQPSoftError,
    types::FieldTable,
};
use tracing::info;

use crate::{
    AmqpError, Connection, Topology,
    connect::{Backend, channel, close_quietly},
    error::{inequivalent_argument, soft_error},
    topology::short_string,
};

impl Topology {
    /// Declares everything (durable), then binds it. Re-running is a no-op; a queue or exchange
    /// that exists with other arguments is an error naming it and the argument.
    pub async fn declare(&self, connection: &Connection) -> Result<(), AmqpError> {
        let result = match connection.backend() {
            Backend::Embedded(embedded) => embedded.declare(self),
            Backend::Lapin(lapin) => {
                let channel = channel(lapin).await?;
                let result = self.declare_on(&channel).await;
                close_quietly(&channel).await;
                result
            }
        };
        if result.is_ok() {
            info!(prefix = %self.prefix(), broker = %connection.address(), "Topology declared.");
        }
        result
    }

    async fn declare_on(&self, channel: &lapin::Channel) -> Result<(), AmqpError> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        for (name, kind) in self.exchanges() {
            channel
                .exchange_declare(short_string(&name)?, kind, durable, FieldTable::default())
                .await
                .map_err(|error| mismatch_or(error, Object::Exchange, &name))?;
        }
        for (name, arguments) in self.queues() {
            let options = QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            };
            channel
                .queue_declare(short_string(&name)?, options, arguments)
                .await
                .map_err(|error| mismatch_or(error, Object::Queue, &name))?;
        }
        for (queue, exchange, key) in self.bindings() {
            channel
                .queue_bind(
                    short_string(&queue)?,
                    short_string(&exchange)?,
                    short_string(&key)?,
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(AmqpError::amqp("queue.bind"))?;
        }
        Ok(())
    }

    /// Deletes every queue (with its messages) and exchange of this topology; for tests and
    /// teardown. Missing objects are not an error. Returns the first failure after trying all.
    pub async fn delete(&self, connection: &Connection) -> Result<(), AmqpError> {
        let connection = match connection.backend() {
            Backend::Embedded(embedded) => return embedded.delete(self),
            Backend::Lapin(lapin) => lapin,
        };
        let mut first_error = None;
        let mut channel = channel(connection).await?;
        for (queue, _) in self.queues() {
            let result = channel.queue_delete(short_string(&queue)?, QueueDeleteOptions::default());
            if let Err(error) = result.await {
                first_error.get_or_insert(AmqpError::amqp("queue.delete")(error));
                channel = self::channel(connection).await?;
            }
        }
        for (exchange, _) in self.exchanges() {
            let name = short_string(&exchange)?;
            if let Err(error) = channel
                .exchange_delete(name, ExchangeDeleteOptions::default())
                .await
            {
                first_error.get_or_insert(AmqpError::amqp("exchange.delete")(error));
                channel = self::channel(connection).await?;
            }
        }
        close_quietly(&channel).await;
        first_error.map_or(Ok(()), Err)
    }
}

#[derive(Clone, Copy)]
enum Object {
    Queue,
    Exchange,
}

/// 406 PRECONDITION_FAILED on a declare means "exists with other arguments".
fn mismatch_or(error: lapin::Error, object: Object, name: &str) -> AmqpError {
    if let Some((AMQPSoftError::PRECONDITIONFAILED, text)) = soft_error(&error) {
        let (argument, detail) = (inequivalent_argument(text), text.to_owned());
        return match object {
            Object::Queue => AmqpError::TopologyMismatch {
                queue: name.to_owned(),
                argument,
                detail,
            },
            Object::Exchange => AmqpError::ExchangeMismatch {
                exchange: name.to_owned(),
                argument,
                detail,
            },
        };
    }
    match object {
        Object::Queue => AmqpError::amqp("queue.declare")(error),
        Object::Exchange => AmqpError::amqp("exchange.declare")(error),
    }
}
