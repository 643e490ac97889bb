//! The two databases behind one `Db`: opening a pool from a URL, the connection settings each
//! needs, and `with_pool!`, which expands one block of sqlx code once per backend so that every
//! operation is written once. The few SQL fragments that differ between the dialects live here.
//! Queries use sqlx's runtime API (no compile-time macros, which need a live database).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::StoreError;

/// Which database a store is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// SQLite, one file (the default).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl Backend {
    /// `rows` groups of `per_row` placeholders, each group followed by `tail` inside its
    /// parentheses: `(?, ?), (?, ?)` on SQLite, `($1, $2), ($3, $4)` on PostgreSQL. SQLite
    /// gets anonymous `?` because sqlx looks every parameter's name up, and SQLite finds a
    /// name by walking the list of names: with thousands of `$N` per statement, that walk was
    /// half of an import's time.
    pub(crate) fn values(self, rows: usize, per_row: usize, tail: &str) -> String {
        let mut sql = String::with_capacity(rows * (per_row * 6 + tail.len() + 4));
        let mut n = 0;
        for row in 0..rows {
            sql.push_str(if row == 0 { "(" } else { ", (" });
            for column in 0..per_row {
                if column > 0 {
                    sql.push_str(", ");
                }
                n += 1;
                match self {
                    Self::Sqlite => sql.push('?'),
                    Self::Postgres => {
                        sql.push('$');
                        sql.push_str(&n.to_string());
                    }
                }
            }
            sql.push_str(tail);
            sql.push(')');
        }
        sql
    }
}

/// `count` numbered placeholders from `$first`, for an `IN (...)` list: `$2, $3, $4`.
pub(crate) fn numbered(first: usize, count: usize) -> String {
    let numbers: Vec<String> = (first..first + count).map(|n| format!("${n}")).collect();
    numbers.join(", ")
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        })
    }
}

/// A pool on one of the backends.
#[derive(Clone)]
pub(crate) enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the concrete pool of `$db`. The body is compiled once per
/// backend, so the same sqlx calls type-check against each driver.
macro_rules! with_pool {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::backend::Db::Sqlite($pool) => $body,
            $crate::backend::Db::Postgres($pool) => $body,
        }
    };
}
pub(crate) use with_pool;

impl Db {
    pub(crate) async fn connect(url: &str) -> Result<Self, StoreError> {
        let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
        match scheme {
            "sqlite" => connect_sqlite(url).await.map(Self::Sqlite),
            "postgres" | "postgresql" => connect_postgres(url).await.map(Self::Postgres),
            other => Err(StoreError::UnsupportedUrl {
                // Only the scheme, and only when it looks like one: never the rest of the URL.
                scheme: if (1..=16).contains(&other.len())
                    && other.chars().all(|c| c.is_ascii_alphanumeric())
                {
                    other.to_owned()
                } else {
                    "?".to_owned()
                },
            }),
        }
    }

    pub(crate) fn backend(&self) -> Backend {
        match self {
            Self::Sqlite(_) => Backend::Sqlite,
            Self::Postgres(_) => Backend::Postgres,
        }
    }

    pub(crate) async fn close(&self) {
        with_pool!(self, pool => pool.close().await);
    }

    /// `merged = old ⊕ new` for the JSON `attributes` column inside `ON CONFLICT DO UPDATE`:
    /// keys of the new object overwrite, the others are kept.
    pub(crate) fn merge_attributes(&self) -> &'static str {
        match self {
            // json_patch is RFC 7396; our values are strings, never null, so nothing is removed.
            Self::Sqlite(_) => "json_patch(users.attributes, excluded.attributes)",
            Self::Postgres(_) => "users.attributes || excluded.attributes",
        }
    }
}

async fn connect_sqlite(url: &str) -> Result<SqlitePool, StoreError> {
    let error = |source: sqlx::Error| StoreError::connect(Backend::Sqlite, url, &source);
    let options = SqliteConnectOptions::from_str(url)
        .map_err(error)?
        .create_if_missing(true)
        // WAL lets the producer stream users while the consumers write; NORMAL is durable
        // across application crashes (only an OS crash can lose the last transactions).
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10));
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    SqlitePoolOptions::new()
        // Each connection to `:memory:` is a database of its own: keep exactly one, forever.
        .max_connections(if in_memory { 1 } else { 4 })
        .idle_timeout((!in_memory).then_some(Duration::from_secs(600)))
        .max_lifetime((!in_memory).then_some(Duration::from_secs(1800)))
        .connect_with(options)
        .await
        .map_err(error)
}

/// PostgreSQL's `statement_timeout` for every connection of the pool.
const STATEMENT_TIMEOUT: &str = "60s";

async fn connect_postgres(url: &str) -> Result<PgPool, StoreError> {
    let error = |source: sqlx::Error| StoreError::connect(Backend::Postgres, url, &source);
    // A statement that runs this long is stuck (a lock held by a forgotten session, a runaway
    // plan): better an error the caller retries or reports than a consumer frozen forever.
    // A URL that sets its own `options=-c statement_timeout=...` keeps it.
    let mut options = PgConnectOptions::from_str(url).map_err(error)?;
    if !url.contains("statement_timeout") {
        options = options.options([("statement_timeout", STATEMENT_TIMEOUT)]);
    }
    PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .map_err(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_lists_use_each_dialects_placeholders() {
        let check = |backend: Backend, rows, per_row, tail, expected: &str| {
            assert_eq!(backend.values(rows, per_row, tail), expected);
        };
        check(Backend::Sqlite, 1, 2, "", "(?, ?)");
        check(Backend::Sqlite, 2, 1, ", FALSE", "(?, FALSE), (?, FALSE)");
        check(Backend::Postgres, 2, 2, "", "($1, $2), ($3, $4)");
        check(Backend::Postgres, 1, 3, ", 0", "($1, $2, $3, 0)");
    }
}
