//! Herald's store: users and their attributes, Messenger identities (a PSID per page), campaign
//! runs, per-job delivery records with delivered/read receipts, and webhook dedupe keys. One
//! API over SQLite (the default, `sqlite://herald.db`) and PostgreSQL (`postgres://...`), with
//! the same migrations and the same behaviour. This is the only crate that imports sqlx.
//!
//! It does not parse files, webhooks or campaign documents, and it decides no policy (the
//! 24-hour window, opt-out skips): callers do, with what it returns.

mod audience;
mod backend;
mod batch;
mod campaigns;
mod caps;
mod claims;
mod deliveries;
mod echoes;
mod error;
mod events;
mod file_lock;
mod identities;
mod migrate;
mod run_starts;
mod run_state;
mod runs;
mod schedules;
mod stamp;
mod triggers;
mod users;

pub use audience::AudienceCursor;
pub use backend::Backend;
pub use batch::Batch;
pub use campaigns::StoredCampaign;
pub use deliveries::{
    ErrorCount, HistoryEntry, Outcome, RECEIPT_SLACK, Receipt, ReceiptKind, RecentResults,
    RunStatus, StatusCounts,
};
pub use echoes::Echo;
pub use error::StoreError;
pub use identities::Link;
pub use run_starts::RunStart;
pub use run_state::RunState;
pub use runs::{NewRun, RunProgress, RunRecord};
pub use schedules::ScheduleRecord;
pub use triggers::{
    ClaimedFire, FireDay, NewFire, OncePer, PendingFires, PreparedFire, SettledFire, TriggerEntry,
};
pub use users::{ANON_PREFIX, OPTED_OUT_AT_ATTRIBUTE, OPTED_OUT_ATTRIBUTE, UserRecord};

use herald_core::Secret;

use crate::backend::Db;

/// A connection pool to the store, migrated to the current schema. Cheap to clone: clones share
/// the pool.
#[derive(Clone)]
pub struct Store {
    db: Db,
}

impl Store {
    /// Connects to `url` (`sqlite://PATH`, `sqlite::memory:`, `postgres://...` or
    /// `postgresql://...`) and runs the migrations not yet applied. A SQLite file is created
    /// when missing. The URL may carry a password, so it is a `Secret`, and an error shows it
    /// only with the password masked.
    pub async fn connect(url: &Secret) -> Result<Self, StoreError> {
        let open = file_lock::lock(url.expose()).await?;
        let db = Db::connect(url.expose()).await?;
        migrate::run(&db).await?;
        drop(open);
        Ok(Self { db })
    }

    /// False when `url` names a SQLite file that does not exist yet (connecting would create
    /// it): a command that only reads the store can skip it then. Other databases are taken
    /// to exist.
    pub fn exists(url: &Secret) -> bool {
        file_lock::sqlite_file(url.expose()).is_none_or(|path| path.exists())
    }

    /// Which database this store is on.
    pub fn backend(&self) -> Backend {
        self.db.backend()
    }

    /// A PostgreSQL setting as a connection of the pool sees it (`current_setting`), e.g.
    /// `statement_timeout`; `None` on SQLite, which has no such settings. For checks of how
    /// the pool is configured.
    pub async fn postgres_setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        match &self.db {
            Db::Sqlite(_) => Ok(None),
            Db::Postgres(pool) => sqlx::query_scalar("SELECT current_setting($1)")
                .bind(name)
                .fetch_one(pool)
                .await
                .map(Some)
                .map_err(error::query("postgres_setting")),
        }
    }

    /// Closes every connection of the pool (waits for checked-out ones to come back).
    pub async fn close(&self) {
        self.db.close().await;
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}
