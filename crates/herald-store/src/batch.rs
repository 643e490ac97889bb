//! `Batch`: one transaction holding many writes, the unit in which the consumers of `herald
//! serve` store results and webhook events. A commit costs a WAL flush on PostgreSQL and a
//! write-lock hand-over on SQLite, so one commit for hundreds of writes is what lets the record
//! path keep up with the send path. Every write of the store (`record_results`, receipts,
//! inbound actions, opt changes, dedupe keys) is a method of `Batch`; `Store`'s one-off methods
//! open a batch, make that one write and commit, so each write is coded once.
//!
//! A batch that is dropped without `commit` rolls back: nothing of it is stored. On SQLite the
//! transaction starts `IMMEDIATE`, taking the write lock at once, so two writers queue on the
//! busy timeout instead of one failing when it upgrades a read lock.

use crate::backend::Db;
use crate::error::query;
use crate::{Store, StoreError};

/// An open transaction on the store. See the module doc.
pub struct Batch {
    pub(crate) tx: Tx,
}

/// The transaction of one backend.
pub(crate) enum Tx {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

/// Runs `$body` with `$conn` bound to the open transaction's connection of `$tx` (a `&mut Tx`),
/// usable as `&mut *$conn`-style executor: `sqlx::query(..).execute(&mut **$conn)`. The body
/// is compiled once per backend, as with `with_pool!`.
macro_rules! with_tx {
    ($tx:expr, $conn:ident => $body:expr) => {
        match $tx {
            $crate::batch::Tx::Sqlite($conn) => $body,
            $crate::batch::Tx::Postgres($conn) => $body,
        }
    };
}
pub(crate) use with_tx;

impl Store {
    /// Opens a batch: one transaction for many writes, stored together by `Batch::commit`.
    pub async fn batch(&self) -> Result<Batch, StoreError> {
        let tx = match &self.db {
            Db::Sqlite(pool) => Tx::Sqlite(
                pool.begin_with("BEGIN IMMEDIATE")
                    .await
                    .map_err(query("begin"))?,
            ),
            Db::Postgres(pool) => Tx::Postgres(pool.begin().await.map_err(query("begin"))?),
        };
        Ok(Batch { tx })
    }
}

impl Batch {
    /// Stores every write of the batch at once.
    pub async fn commit(self) -> Result<(), StoreError> {
        with_tx!(self.tx, tx => tx.commit().await).map_err(query("commit"))
    }

    /// Which database the batch is on (for the few SQL fragments that differ).
    pub(crate) fn backend(&self) -> crate::Backend {
        match self.tx {
            Tx::Sqlite(_) => crate::Backend::Sqlite,
            Tx::Postgres(_) => crate::Backend::Postgres,
        }
    }
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}
