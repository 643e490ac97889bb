//! `StoreError`: everything the store can fail with. No variant carries the database URL's
//! password (a failed connection shows the URL through `herald_core::redact`) or a PSID;
//! database errors keep sqlx's error as the source.

use crate::backend::Backend;
use crate::run_state::RunState;

/// A failed store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL names no database this store supports.
    #[error("unsupported database URL scheme `{scheme}` (expected sqlite: or postgres://)")]
    UnsupportedUrl {
        /// What came before the first `:`.
        scheme: String,
    },
    /// The database could not be opened or reached.
    #[error("could not connect to the {backend} database at {url}: {detail}")]
    Connect {
        /// Which database.
        backend: Backend,
        /// The URL, its password masked.
        url: String,
        /// Why, with the password masked should the cause quote it. Text rather than sqlx's
        /// error, so that no chain of sources can print what was not masked.
        detail: String,
    },
    /// Applying the schema migrations failed (or the database holds a newer or edited schema).
    #[error("migrating the {backend} database failed")]
    Migrate {
        /// Which database.
        backend: Backend,
        /// Why.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// A query failed.
    #[error("database error in {operation}")]
    Query {
        /// The store operation, e.g. `upsert_users`.
        operation: &'static str,
        /// Why.
        #[source]
        source: sqlx::Error,
    },
    /// A record to store is not acceptable (e.g. an empty external_id).
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was refused.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A value read back is not one this version writes (e.g. an unknown status).
    #[error("unexpected stored value in {what}: {value}")]
    Corrupt {
        /// Where.
        what: &'static str,
        /// The value (never a PSID or attribute value).
        value: String,
    },
    /// `create_run` with an id that exists.
    #[error("run {run_id} already exists")]
    RunExists {
        /// The run.
        run_id: String,
    },
    /// No run with that id.
    #[error("no run {run_id} in the store")]
    UnknownRun {
        /// The run.
        run_id: String,
    },
    /// A state change that the run's current state forbids (e.g. resuming a cancelled run).
    #[error("run {run_id} is {from} and cannot become {to}")]
    Transition {
        /// The run.
        run_id: String,
        /// Its current state.
        from: RunState,
        /// The state asked for.
        to: RunState,
    },
}

impl StoreError {
    /// A failed connection to `url`, shown with its password masked.
    pub(crate) fn connect(backend: Backend, url: &str, error: &dyn std::error::Error) -> Self {
        let mut detail = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            // sqlx often repeats its source in its own message already.
            let text = cause.to_string();
            if !detail.contains(&text) {
                detail.push_str(": ");
                detail.push_str(&text);
            }
            source = cause.source();
        }
        Self::Connect {
            backend,
            url: herald_core::redact::redact_url(url),
            detail: herald_core::redact::scrub(&detail, url),
        }
    }
}

/// `map_err` helper: wraps a sqlx error with the operation's name.
pub(crate) fn query(operation: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { operation, source }
}

impl StoreError {
    /// True when the same write can never succeed, however often it is tried: the database
    /// refused the data itself (a value it cannot hold, a key longer than an index row allows,
    /// a broken constraint), not its own state (a lost connection, a lock, a full pool). A
    /// consumer sets such a message aside instead of retrying it forever.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Invalid { .. } => true,
            Self::Query { source, .. } => refuses_data(source),
            Self::UnsupportedUrl { .. }
            | Self::Connect { .. }
            | Self::Migrate { .. }
            | Self::Corrupt { .. }
            | Self::RunExists { .. }
            | Self::UnknownRun { .. }
            | Self::Transition { .. } => false,
        }
    }
}

/// Whether sqlx's error says the data was refused. PostgreSQL: SQLSTATE classes 22 (data
/// exception: a NUL byte in text, a number out of range) and 54 (program limit exceeded: an
/// index row too large), and the NOT NULL and CHECK violations of class 23 (a unique violation
/// may be a race another try resolves). SQLite: the primary result codes TOOBIG (18),
/// CONSTRAINT (19), MISMATCH (20) and RANGE (25).
fn refuses_data(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => {
            let Some(code) = db.code() else {
                return false;
            };
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                return code
                    .parse::<u32>()
                    .is_ok_and(|code| matches!(code & 0xff, 18 | 19 | 20 | 25));
            }
            code.starts_with("22") || code.starts_with("54") || code == "23502" || code == "23514"
        }
        sqlx::Error::Encode(_) => true,
        _ => false,
    }
}
