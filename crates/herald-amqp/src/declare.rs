//! Declaring and deleting a `Topology` on the broker. Declaration is idempotent; an existing queue
//! or exchange declared with other arguments becomes `TopologyMismatch`/`ExchangeMismatch`, never
//! a silent change: RabbitMQ cannot alter a queue's arguments in place (the embedded broker
//! refuses the same way). A broker user without configure permission (the runtime roles of
//! `deploy/rabbitmq/definitions.json`) cannot declare at all; for it, declaring checks that
//! every exchange and queue exists (passive declares need no permission), and the topology is
//! declared once by a user that may (`herald topology`). The names and arguments themselves are
//! `topology.rs`.

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
                match result {
                    Err(Refused) => {
                        self.check_declared(lapin).await?;
                        info!(prefix = %self.prefix(), broker = %connection.address(),
                            "This broker user may not declare the topology; it exists.");
                        return Ok(());
                    }
                    Ok(()) => Ok(()),
                    Err(Failed(error)) => Err(error),
                }
            }
        };
        if result.is_ok() {
            info!(prefix = %self.prefix(), broker = %connection.address(), "Topology declared.");
        }
        result
    }

    async fn declare_on(&self, channel: &lapin::Channel) -> Result<(), Declare> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        for (name, kind) in self.exchanges() {
            channel
                .exchange_declare(short_string(&name)?, kind, durable, FieldTable::default())
                .await
                .map_err(|error| declare_error(error, Object::Exchange, &name))?;
        }
        for (name, arguments) in self.queues() {
            let options = QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            };
            channel
                .queue_declare(short_string(&name)?, options, arguments)
                .await
                .map_err(|error| declare_error(error, Object::Queue, &name))?;
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
                .map_err(|error| match soft_error(&error) {
                    Some((AMQPSoftError::ACCESSREFUSED, _)) => Refused,
                    _ => Failed(AmqpError::amqp("queue.bind")(error)),
                })?;
        }
        Ok(())
    }

    /// For a user that may not declare: every exchange and queue must exist already (passive
    /// declares). Bindings cannot be checked this way; `herald topology` made them.
    async fn check_declared(&self, connection: &lapin::Connection) -> Result<(), AmqpError> {
        let channel = channel(connection).await?;
        let passive = ExchangeDeclareOptions {
            passive: true,
            ..ExchangeDeclareOptions::default()
        };
        for (name, kind) in self.exchanges() {
            let found = channel
                .exchange_declare(short_string(&name)?, kind, passive, FieldTable::default())
                .await;
            found.map_err(|error| missing_or(error, Object::Exchange, &name))?;
        }
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        for (name, _) in self.queues() {
            let found = channel
                .queue_declare(short_string(&name)?, passive, FieldTable::default())
                .await;
            found.map_err(|error| missing_or(error, Object::Queue, &name))?;
        }
        close_quietly(&channel).await;
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

impl Object {
    fn as_str(self) -> &'static str {
        match self {
            Self::Queue => "queue",
            Self::Exchange => "exchange",
        }
    }
}

/// How declaring failed: the user may not (403 ACCESS_REFUSED), or anything else.
enum Declare {
    Refused,
    Failed(AmqpError),
}
use Declare::{Failed, Refused};

impl From<AmqpError> for Declare {
    fn from(error: AmqpError) -> Self {
        Failed(error)
    }
}

fn declare_error(error: lapin::Error, object: Object, name: &str) -> Declare {
    match soft_error(&error) {
        Some((AMQPSoftError::ACCESSREFUSED, _)) => Refused,
        _ => Failed(mismatch_or(error, object, name)),
    }
}

/// 404 NOT_FOUND on a passive declare: the object is missing and this user cannot make it.
fn missing_or(error: lapin::Error, object: Object, name: &str) -> AmqpError {
    match soft_error(&error) {
        Some((AMQPSoftError::NOTFOUND, _)) => AmqpError::TopologyNotDeclared {
            object: object.as_str(),
            name: name.to_owned(),
        },
        _ => AmqpError::amqp("declare (passive)")(error),
    }
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
