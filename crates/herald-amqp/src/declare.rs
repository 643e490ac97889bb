//! `Topology::declare` and `Topology::delete`: the port side, handing the work to the RabbitMQ
//! adapter (`rabbit/declare.rs`) or the embedded broker (`embedded/mod.rs`), which refuses a
//! changed declaration the same way RabbitMQ does. The names and arguments are `topology.rs`.

use tracing::info;

use crate::connection::Backend;
use crate::rabbit::Declared;
use crate::{AmqpError, Connection, Topology};

impl Topology {
    /// Declares everything (durable), then binds it. Re-running is a no-op; a queue or exchange
    /// that exists with other arguments is an error naming it and the argument. A broker user
    /// that may not declare (no configure permission) only checks that everything exists.
    pub async fn declare(&self, connection: &Connection) -> Result<(), AmqpError> {
        let declared = match connection.backend() {
            Backend::Rabbit(rabbit) => rabbit.declare(self).await?,
            Backend::Embedded(embedded) => {
                embedded.declare(self)?;
                Declared::Declared
            }
        };
        match declared {
            Declared::Declared => {
                info!(prefix = %self.prefix(), broker = %connection.address(), "Topology declared.");
            }
            Declared::Checked => {
                info!(prefix = %self.prefix(), broker = %connection.address(),
                    "This broker user may not declare the topology; it exists.");
            }
        }
        Ok(())
    }

    /// Deletes every queue (with its messages) and exchange of this topology; for tests and
    /// teardown. Missing objects are not an error. Returns the first failure after trying all.
    pub async fn delete(&self, connection: &Connection) -> Result<(), AmqpError> {
        match connection.backend() {
            Backend::Rabbit(rabbit) => rabbit.delete(self).await,
            Backend::Embedded(embedded) => embedded.delete(self),
        }
    }
}
