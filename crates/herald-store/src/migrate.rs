//! The schema migrations, embedded in the binary: `migrations/sqlite/` and `migrations/postgres/`
//! hold the same versions with the same meaning, each in its dialect. sqlx's `Migrator` applies
//! them (recording versions and checksums in `_sqlx_migrations`, under an advisory lock on
//! PostgreSQL), so connecting twice, or from many processes at once, is a no-op. Not done here:
//! rollbacks (there are none; a fix is a new version).

use std::borrow::Cow;

use futures_util::future::BoxFuture;
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};

use crate::StoreError;
use crate::backend::{Backend, Db, with_pool};

/// One version: number, description, SQL for SQLite, SQL for PostgreSQL.
type Version = (i64, &'static str, &'static str, &'static str);

/// Every version, oldest first. Add a row (and two files) for each schema change.
const VERSIONS: &[Version] = &[
    (
        1,
        "initial",
        include_str!("../migrations/sqlite/0001_initial.sql"),
        include_str!("../migrations/postgres/0001_initial.sql"),
    ),
    (
        2,
        "run cursor",
        include_str!("../migrations/sqlite/0002_run_cursor.sql"),
        include_str!("../migrations/postgres/0002_run_cursor.sql"),
    ),
    (
        3,
        "link source",
        include_str!("../migrations/sqlite/0003_link_source.sql"),
        include_str!("../migrations/postgres/0003_link_source.sql"),
    ),
    (
        4,
        "run starts",
        include_str!("../migrations/sqlite/0004_run_starts.sql"),
        include_str!("../migrations/postgres/0004_run_starts.sql"),
    ),
    (
        5,
        "delivery history",
        include_str!("../migrations/sqlite/0005_delivery_history.sql"),
        include_str!("../migrations/postgres/0005_delivery_history.sql"),
    ),
    (
        6,
        "echoes",
        include_str!("../migrations/sqlite/0006_echoes.sql"),
        include_str!("../migrations/postgres/0006_echoes.sql"),
    ),
    (
        7,
        "send claims",
        include_str!("../migrations/sqlite/0007_send_claims.sql"),
        include_str!("../migrations/postgres/0007_send_claims.sql"),
    ),
    (
        8,
        "cap reservations",
        include_str!("../migrations/sqlite/0008_cap_reservations.sql"),
        include_str!("../migrations/postgres/0008_cap_reservations.sql"),
    ),
    (
        9,
        "schedules",
        include_str!("../migrations/sqlite/0009_schedules.sql"),
        include_str!("../migrations/postgres/0009_schedules.sql"),
    ),
    (
        10,
        "stored campaigns",
        include_str!("../migrations/sqlite/0010_stored_campaigns.sql"),
        include_str!("../migrations/postgres/0010_stored_campaigns.sql"),
    ),
    (
        11,
        "triggers",
        include_str!("../migrations/sqlite/0011_triggers.sql"),
        include_str!("../migrations/postgres/0011_triggers.sql"),
    ),
    (
        12,
        "fire due",
        include_str!("../migrations/sqlite/0012_fire_due.sql"),
        include_str!("../migrations/postgres/0012_fire_due.sql"),
    ),
    (
        13,
        "producer stopped",
        include_str!("../migrations/sqlite/0013_producer_stopped.sql"),
        include_str!("../migrations/postgres/0013_producer_stopped.sql"),
    ),
];

/// The embedded migrations of one backend.
#[derive(Debug, Clone, Copy)]
struct Embedded(Backend);

impl MigrationSource<'static> for Embedded {
    fn resolve(self) -> BoxFuture<'static, Result<Vec<Migration>, BoxDynError>> {
        let migrations = VERSIONS
            .iter()
            .map(|&(version, description, sqlite, postgres)| {
                let sql = match self.0 {
                    Backend::Sqlite => sqlite,
                    Backend::Postgres => postgres,
                };
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    Cow::Borrowed(sql),
                    false,
                )
            })
            .collect();
        Box::pin(async move { Ok(migrations) })
    }
}

/// Applies every migration the database does not have yet.
pub(crate) async fn run(db: &Db) -> Result<(), StoreError> {
    let backend = db.backend();
    let error = |source| StoreError::Migrate { backend, source };
    let migrator = Migrator::new(Embedded(backend)).await.map_err(error)?;
    with_pool!(db, pool => migrator.run(pool).await).map_err(error)
}
