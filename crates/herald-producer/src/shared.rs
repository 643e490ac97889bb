//! `SharedLink`: one broker connection, with the topology declared and a confirmed publisher,
//! shared by the many short runs of one process, and `Connected`, what a run's link holds
//! (its own, or the shared one). `link.rs` publishes on it.

use std::sync::Arc;

use herald_amqp::{AmqpError, AmqpSettings, Connection, Publisher, Topology, connect};

/// A connection with the topology declared and a confirmed publisher on it.
pub struct Connected {
    pub(crate) connection: Connection,
    pub(crate) publisher: Publisher,
}

impl Connected {
    pub(crate) async fn open(amqp: &AmqpSettings, topology: &Topology) -> Result<Self, AmqpError> {
        let connection = connect(amqp).await?;
        topology.declare(&connection).await?;
        let publisher = Publisher::open(&connection, amqp.confirm_window).await?;
        Ok(Self {
            connection,
            publisher,
        })
    }

    /// The confirmed publisher.
    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    fn is_usable(&self) -> bool {
        self.connection.is_connected() && self.publisher.is_usable()
    }
}

/// One connection and publisher shared by the many short runs of a process (`herald serve`'s
/// API triggers, a run of up to 50 recipients per call): connecting and declaring the topology
/// once, not per run, is most of what a small run costs. Opened on first use and again after
/// a loss; runs keep their own confirms, so sharing changes no run's guarantees.
#[derive(Default)]
pub struct SharedLink {
    current: tokio::sync::Mutex<Option<Arc<Connected>>>,
}

impl SharedLink {
    /// Nothing is opened until a run needs it.
    pub fn new() -> Self {
        Self::default()
    }

    /// The usable connection, opened when there is none; `stale` (a run's connection that
    /// failed) is replaced even when it still looks usable.
    pub async fn get(
        &self,
        amqp: &AmqpSettings,
        topology: &Topology,
        stale: Option<&Arc<Connected>>,
    ) -> Result<Arc<Connected>, AmqpError> {
        let mut current = self.current.lock().await;
        if let Some(connected) = current.as_ref()
            && connected.is_usable()
            && !stale.is_some_and(|stale| Arc::ptr_eq(stale, connected))
        {
            return Ok(connected.clone());
        }
        let fresh = Arc::new(Connected::open(amqp, topology).await?);
        *current = Some(fresh.clone());
        Ok(fresh)
    }

    /// Closes the connection (at shutdown).
    pub async fn close(&self) {
        let Some(connected) = self.current.lock().await.take() else {
            return;
        };
        match Arc::try_unwrap(connected) {
            Ok(connected) => {
                let _ = connected.publisher.close().await;
                let _ = connected.connection.close().await;
            }
            // A run still holds it: closing the connection ends its channel too.
            Err(connected) => {
                let _ = connected.connection.close().await;
            }
        }
    }
}
