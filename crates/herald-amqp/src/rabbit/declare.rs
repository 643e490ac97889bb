//! Declaring and deleting a `Topology` on RabbitMQ. Declaration is idempotent; an existing queue
//! or exchange declared with other arguments becomes `TopologyMismatch`/`ExchangeMismatch`, never
//! a silent change: RabbitMQ cannot alter a queue's arguments in place. A broker user without
//! configure permission (the runtime roles of `deploy/rabbitmq/definitions.json`) cannot declare
//! at all; for it, declaring checks that every exchange and queue exists (passive declares need
//! no permission), and the topology is declared once by a user that may (`herald topology`).

use lapin::{
    options::{
        ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
        QueueDeleteOptions,
    },
    protocol::AMQPSoftError,
    types::FieldTable,
};

use super::RabbitConnection;
use super::connection::close_quietly;
use crate::{
    AmqpError, Topology,
    error::{inequivalent_argument, soft_error},
    topology::short_string,
};

/// What `RabbitConnection::declare` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Declared {
    /// Declared everything (or found it all declared alike).
    Declared,
    /// This broker user may not declare; every exchange and queue exists already.
    Checked,
}

impl RabbitConnection {
    /// Declares everything (durable), then binds it; a user that may not declare only checks
    /// that it all exists.
    pub(crate) async fn declare(&self, topology: &Topology) -> Result<Declared, AmqpError> {
        let channel = self.channel().await?;
        let result = topology.declare_on(&channel).await;
        close_quietly(&channel).await;
        match result {
            Ok(()) => Ok(Declared::Declared),
            Err(Refused) => {
                topology.check_declared(self).await?;
                Ok(Declared::Checked)
            }
            Err(Failed(error)) => Err(error),
        }
    }

    /// Deletes every queue (with its messages) and exchange of `topology`. Missing objects are
    /// not an error. Returns the first failure after trying all.
    pub(crate) async fn delete(&self, topology: &Topology) -> Result<(), AmqpError> {
        let mut first_error = None;
        let mut channel = self.channel().await?;
        for (queue, _) in topology.queues() {
            let result = channel.queue_delete(short_string(&queue)?, QueueDeleteOptions::default());
            if let Err(error) = result.await {
                first_error.get_or_insert(AmqpError::amqp("queue.delete")(error));
                channel = self.channel().await?;
            }
        }
        for (exchange, _) in topology.exchanges() {
            let name = short_string(&exchange)?;
            if let Err(error) = channel
                .exchange_delete(name, ExchangeDeleteOptions::default())
                .await
            {
                first_error.get_or_insert(AmqpError::amqp("exchange.delete")(error));
                channel = self.channel().await?;
            }
        }
        close_quietly(&channel).await;
        first_error.map_or(Ok(()), Err)
    }
}

impl Topology {
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
    async fn check_declared(&self, connection: &RabbitConnection) -> Result<(), AmqpError> {
        let channel = connection.channel().await?;
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
